//! Putting the programs on interfaces, and taking them off again.
//!
//! TCX links are preferred: they detach by themselves when their fd closes,
//! even on SIGKILL. Legacy clsact filters outlive the process (a killed run's
//! then do nothing: the tail-call array they call into is emptied when its
//! last fd closes). Ours sit at priority 1 with a handle in
//! TC_HANDLE..TC_HANDLE + TC_SLOTS and hold a program named http_ingress or
//! http_egress; that is how `--cleanup` and the next start recognise filters
//! a killed run left. One interface holds one filter of ours per direction; a
//! new filter always takes a free handle, so one a killed run left never
//! blocks it, and a filter is deleted only while it still holds the program
//! we attached.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use libbpf_rs::{TcHook, TC_EGRESS, TC_INGRESS};

use crate::bpf::Programs;
use crate::netns::{enter, list_interfaces, Interface, Netns};
use hge_shared::config::{AttachMode, Target};
use hge_shared::topology::{Direction, Mode};

/// Our legacy filters: handles "HG" and up, and the first priority so we
/// observe packets before anything else may drop or redirect them.
pub const TC_HANDLE: u32 = 0x4847;
/// Handles we may use on one interface and direction: ours, beside those
/// killed runs may have left.
pub const TC_SLOTS: u32 = 16;
pub const TC_PRIORITY: u32 = 1;
const OUR_PROG_NAMES: &[&str] = &["http_ingress", "http_egress"];

enum Handle {
    Link(OwnedFd),
    /// A legacy filter: found again by ifindex, direction, handle and priority
    /// (inside `netns`), and ours while it holds program `prog_id`.
    Filter {
        prog: OwnedFd,
        handle: u32,
        prog_id: u32,
        netns: Option<Arc<Netns>>,
    },
}

/// One program on one interface in one direction. Dropping it detaches.
pub struct Hook {
    pub target: String,
    pub interface: String,
    pub ifindex: u32,
    pub direction: Direction,
    pub mode: Mode,
    handle: Option<Handle>,
}

/// A filter's identity on one interface and direction, as netlink finds it.
fn tc_hook(prog: BorrowedFd<'_>, ifindex: u32, dir: Direction, handle: u32) -> TcHook {
    let mut hook = TcHook::new(prog);
    hook.ifindex(ifindex as i32)
        .attach_point(match dir {
            Direction::Ingress => TC_INGRESS,
            Direction::Egress => TC_EGRESS,
        })
        .handle(handle)
        .priority(TC_PRIORITY);
    hook
}

impl Hook {
    /// Whether the kernel still runs this hook. A TCX link whose interface
    /// was deleted stays open but is attached to nothing (ifindex 0). A tc
    /// filter goes with its interface too, but checking it means entering the
    /// namespace: it is taken as held.
    pub fn held(&self) -> bool {
        match &self.handle {
            Some(Handle::Link(fd)) => match libbpf_rs::query::LinkInfo::from_fd(fd.as_fd()).map(|l| l.info) {
                Ok(libbpf_rs::query::LinkTypeInfo::Tcx(t)) => t.ifindex != 0,
                _ => true,
            },
            Some(Handle::Filter { .. }) => true,
            None => false,
        }
    }

    pub fn detach(&mut self) -> Result<()> {
        match self.handle.take() {
            // Closing the last fd of a TCX link detaches it, in whatever namespace.
            Some(Handle::Link(fd)) => drop(fd),
            Some(Handle::Filter { prog, handle, prog_id, netns }) => {
                let (ifindex, dir, name) = (self.ifindex, self.direction, &self.interface);
                // Netlink works in the caller's namespace: go back to the interface's.
                enter(netns.as_deref(), move || {
                    let mut hook = tc_hook(prog.as_fd(), ifindex, dir, handle);
                    match hook.query() {
                        Ok(id) if id == prog_id => match hook.detach() {
                            Err(e) if !matches!(e.kind(), libbpf_rs::ErrorKind::NotFound) => Err(e.into()),
                            _ => Ok(()),
                        },
                        Ok(id) => {
                            log::warn!(
                                "the tc filter {handle:#x} on {name} {} now holds program id {id}, not ours \
                                 ({prog_id}); leaving it",
                                dir.as_str()
                            );
                            Ok(())
                        }
                        // The filter, the interface or its namespace is gone.
                        Err(_) => Ok(()),
                    }
                })
                .with_context(|| format!("detaching the tc filter from {}", self.interface))?;
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::error!("{e:#}");
        }
    }
}

/// Attach both programs to each of `interfaces` of the target, inside its namespace.
pub fn attach_target(
    target: &Target,
    netns: Option<&Arc<Netns>>,
    interfaces: &[Interface],
    progs: &Programs,
    mode: AttachMode,
) -> Result<Vec<Hook>> {
    let ingress = progs.ingress.as_fd();
    let egress = progs.egress.as_fd();
    enter(netns.map(|n| &**n), || {
        let mut hooks = Vec::new();
        for iface in interfaces {
            for (dir, prog) in [(Direction::Ingress, ingress), (Direction::Egress, egress)] {
                let (m, handle) = attach_one(prog, iface, dir, mode, netns).with_context(|| {
                    format!("target {:?}: attaching to {} ({})", target.name, iface.name, dir.as_str())
                })?;
                log::info!("target {:?}: attached to {} {} ({m})", target.name, iface.name, dir.as_str());
                hooks.push(Hook {
                    target: target.name.clone(),
                    interface: iface.name.clone(),
                    ifindex: iface.ifindex,
                    direction: dir,
                    mode: m,
                    handle: Some(handle),
                });
            }
        }
        Ok(hooks)
    })
}

fn attach_one(
    prog: BorrowedFd<'_>,
    iface: &Interface,
    dir: Direction,
    mode: AttachMode,
    netns: Option<&Arc<Netns>>,
) -> Result<(Mode, Handle)> {
    let filter = || -> Result<Handle> {
        let (handle, prog_id) = attach_tc(prog, iface, dir)?;
        Ok(Handle::Filter { prog: prog.try_clone_to_owned()?, handle, prog_id, netns: netns.cloned() })
    };
    match mode {
        AttachMode::Tcx => Ok((Mode::Tcx, Handle::Link(attach_tcx(prog, iface.ifindex, dir)?))),
        AttachMode::Tc => Ok((Mode::Tc, filter()?)),
        AttachMode::Auto => match attach_tcx(prog, iface.ifindex, dir) {
            Ok(fd) => Ok((Mode::Tcx, Handle::Link(fd))),
            // Kernels before 6.6 do not know the TCX attach types.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                log::info!("TCX links unavailable on {} ({e}); using a tc clsact filter", iface.name);
                Ok((Mode::Tc, filter()?))
            }
            Err(e) => Err(e.into()),
        },
    }
}

fn attach_tcx(prog: BorrowedFd<'_>, ifindex: u32, dir: Direction) -> std::io::Result<OwnedFd> {
    let attach_type = match dir {
        Direction::Ingress => libbpf_sys::BPF_TCX_INGRESS,
        Direction::Egress => libbpf_sys::BPF_TCX_EGRESS,
    };
    // BPF_F_BEFORE without a relative program: first in the chain, so we see
    // packets before another program can drop or redirect them.
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags: libbpf_sys::BPF_F_BEFORE,
        ..Default::default()
    };
    // SAFETY: opts lives across the call. libbpf-rs 0.27 has no TCX attach
    // (nor a link from an fd without its skeleton), so the syscall is made here.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the kernel just handed us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach a filter at the first free handle of ours; returns the handle and
/// the id of the program it holds.
fn attach_tc(prog: BorrowedFd<'_>, iface: &Interface, dir: Direction) -> Result<(u32, u32)> {
    // Creates clsact only if absent; we never delete a qdisc.
    tc_hook(prog, iface.ifindex, dir, TC_HANDLE).create().context("creating the clsact qdisc")?;
    for handle in TC_HANDLE..TC_HANDLE + TC_SLOTS {
        let mut hook = tc_hook(prog, iface.ifindex, dir, handle);
        if hook.query().is_ok() {
            continue; // taken: by another target of ours, or by someone else
        }
        // Without the replace flag: if the handle was taken meanwhile, this fails.
        hook.attach().context("attaching the tc filter")?;
        let id = hook.query().context("querying the tc filter just attached")?;
        return Ok((handle, id));
    }
    bail!(
        "no free tc filter handle on {} {} (handles {TC_HANDLE:#x} to {:#x} at priority {TC_PRIORITY} are taken; \
         `http-golden-exporter --cleanup` removes those killed runs left)",
        iface.name,
        dir.as_str(),
        TC_HANDLE + TC_SLOTS - 1
    )
}

/// The name of the program with this id, if it still exists.
fn prog_name(id: u32) -> Option<String> {
    libbpf_rs::query::ProgInfoIter::default().find(|p| p.id == id).and_then(|p| p.name.into_string().ok())
}

/// At start-up: remove the filters of ours a killed run left on a target's
/// interfaces (they still run, into maps nobody reads), and log each.
pub fn remove_left_behind(target: &str, netns: Option<&Netns>, interfaces: &[Interface]) {
    match remove_our_filters(netns, Some(interfaces)) {
        Ok(removed) => {
            for r in removed {
                log::info!("target {target:?}: removed our own tc filter left by an earlier run on {r}");
            }
        }
        Err(e) => log::warn!("target {target:?}: {e:#}"),
    }
}

/// Remove every tc filter of ours (by priority, handle range and program
/// name) from `interfaces` of the namespace (every interface when None):
/// what a killed run left behind. TCX links need no such thing.
/// Returns "interface direction" for each filter removed.
pub fn remove_our_filters(netns: Option<&Netns>, interfaces: Option<&[Interface]>) -> Result<Vec<String>> {
    enter(netns, || {
        let all;
        let interfaces = match interfaces {
            Some(i) => i,
            None => {
                all = list_interfaces()?;
                &all
            }
        };
        let mut removed = Vec::new();
        // Query and detach go by handle and priority: the fd is never used.
        let any_fd = std::io::stdin();
        for iface in interfaces {
            for dir in [Direction::Ingress, Direction::Egress] {
                for handle in TC_HANDLE..TC_HANDLE + TC_SLOTS {
                    let mut hook = tc_hook(any_fd.as_fd(), iface.ifindex, dir, handle);
                    let Ok(id) = hook.query() else { continue };
                    let name = prog_name(id).unwrap_or_default();
                    if !OUR_PROG_NAMES.contains(&name.as_str()) {
                        continue; // someone else's filter at a handle in our range: not touched
                    }
                    hook.detach().with_context(|| {
                        format!("removing our tc filter {handle:#x} from {} {}", iface.name, dir.as_str())
                    })?;
                    removed.push(format!("{} {} (handle {handle:#x}, {name} id {id})", iface.name, dir.as_str()));
                }
            }
        }
        Ok(removed)
    })
}
