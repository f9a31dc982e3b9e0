//! Putting the programs on interfaces, and taking them off again.
//!
//! TCX links are preferred: they detach by themselves when their fd closes,
//! even on SIGKILL. Legacy clsact filters outlive the process, so they carry a
//! fixed handle and priority by which we recognise (and replace) our own.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use libbpf_rs::{TcHook, TC_EGRESS, TC_INGRESS};

use super::netns::{in_netns, list_interfaces, Interface};
use crate::bpf::Programs;
use crate::config::{AttachMode, Target};
use crate::topology::{Direction, Mode};

/// Our legacy filters: handle "HG", and the first priority so we observe
/// packets before anything else may drop or redirect them.
pub const TC_HANDLE: u32 = 0x4847;
pub const TC_PRIORITY: u32 = 1;
const OUR_PROG_NAMES: &[&str] = &["http_ingress", "http_egress"];

enum Handle {
    Link(OwnedFd),
    /// A legacy filter, found again by ifindex, direction, handle and priority.
    /// The program fd is what a TcHook is built from (detach never uses it).
    Filter(OwnedFd),
}

/// One program on one interface in one direction. Dropping it detaches.
pub struct Hook {
    pub target: String,
    pub interface: String,
    pub ifindex: u32,
    pub direction: Direction,
    pub mode: Mode,
    netns: Option<PathBuf>,
    handle: Option<Handle>,
}

/// Our filter's identity on one interface and direction, as netlink finds it.
fn tc_hook(prog: BorrowedFd<'_>, ifindex: u32, dir: Direction) -> TcHook {
    let mut hook = TcHook::new(prog);
    hook.ifindex(ifindex as i32)
        .attach_point(match dir {
            Direction::Ingress => TC_INGRESS,
            Direction::Egress => TC_EGRESS,
        })
        .handle(TC_HANDLE)
        .priority(TC_PRIORITY);
    hook
}

impl Hook {
    pub fn detach(&mut self) -> Result<()> {
        match self.handle.take() {
            // Closing the last fd of a TCX link detaches it, in whatever namespace.
            Some(Handle::Link(fd)) => drop(fd),
            Some(Handle::Filter(prog)) => {
                let (ifindex, dir) = (self.ifindex, self.direction);
                // Netlink works in the caller's namespace: go back to the interface's.
                in_netns(self.netns.as_deref(), move || match tc_hook(prog.as_fd(), ifindex, dir).detach() {
                    Ok(()) => Ok(()),
                    // The interface (or its namespace) is gone, and the filter with it.
                    Err(e) if matches!(e.kind(), libbpf_rs::ErrorKind::NotFound) => Ok(()),
                    Err(e) => Err(e.into()),
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

/// Attach both programs to every interface of the target, inside its namespace.
pub fn attach_target(
    target: &Target,
    interfaces: &[Interface],
    progs: &Programs,
    mode: AttachMode,
) -> Result<Vec<Hook>> {
    let ingress = progs.ingress.as_fd();
    let egress = progs.egress.as_fd();
    in_netns(target.netns.as_deref(), || {
        let mut hooks = Vec::new();
        for iface in interfaces {
            for (dir, prog) in [(Direction::Ingress, ingress), (Direction::Egress, egress)] {
                let (m, handle) = attach_one(prog, iface, dir, mode).with_context(|| {
                    format!("target {:?}: attaching to {} ({})", target.name, iface.name, dir.as_str())
                })?;
                log::info!("target {:?}: attached to {} {} ({m})", target.name, iface.name, dir.as_str());
                hooks.push(Hook {
                    target: target.name.clone(),
                    interface: iface.name.clone(),
                    ifindex: iface.ifindex,
                    direction: dir,
                    mode: m,
                    netns: target.netns.clone(),
                    handle: Some(handle),
                });
            }
        }
        Ok(hooks)
    })
}

fn attach_one(prog: BorrowedFd<'_>, iface: &Interface, dir: Direction, mode: AttachMode) -> Result<(Mode, Handle)> {
    match mode {
        AttachMode::Tcx => Ok((Mode::Tcx, Handle::Link(attach_tcx(prog, iface.ifindex, dir)?))),
        AttachMode::Tc => Ok((Mode::Tc, Handle::Filter(attach_tc(prog, iface.ifindex, dir)?))),
        AttachMode::Auto => match attach_tcx(prog, iface.ifindex, dir) {
            Ok(fd) => Ok((Mode::Tcx, Handle::Link(fd))),
            // Kernels before 6.6 do not know the TCX attach types.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                log::info!("TCX links unavailable on {} ({e}); using a tc clsact filter", iface.name);
                Ok((Mode::Tc, Handle::Filter(attach_tc(prog, iface.ifindex, dir)?)))
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

/// Returns a clone of the program fd: what the Hook detaches by later.
fn attach_tc(prog: BorrowedFd<'_>, ifindex: u32, dir: Direction) -> Result<OwnedFd> {
    let mut hook = tc_hook(prog, ifindex, dir);
    // Creates clsact only if absent; we never delete a qdisc.
    hook.create().context("creating the clsact qdisc")?;
    if let Ok(id) = hook.query() {
        match prog_name(id) {
            Some(name) if OUR_PROG_NAMES.contains(&name.as_str()) => {
                log::info!("replacing our own tc filter left by an earlier run (prog id {id})");
                hook.replace(true);
            }
            other => bail!(
                "another tc filter already uses handle {TC_HANDLE:#x} priority {TC_PRIORITY} (program {}); not replacing it",
                other.unwrap_or_else(|| format!("id {id}"))
            ),
        }
    }
    hook.attach().context("attaching the tc filter")?;
    Ok(prog.try_clone_to_owned()?)
}

/// The name of the program with this id, if it still exists.
fn prog_name(id: u32) -> Option<String> {
    libbpf_rs::query::ProgInfoIter::default().find(|p| p.id == id).and_then(|p| p.name.into_string().ok())
}

/// Remove the legacy tc filters an earlier run left behind because it was
/// killed before it could detach (TCX links need no such thing). Ours are
/// recognised by handle, priority and program name; nothing else is touched.
/// Returns "interface direction" for each filter removed.
pub fn remove_stale_filters(target: &Target) -> Result<Vec<String>> {
    if target.netns.as_ref().is_some_and(|p| !p.exists()) {
        return Ok(Vec::new());
    }
    in_netns(target.netns.as_deref(), || {
        let mut removed = Vec::new();
        for iface in list_interfaces()? {
            let named = target.up_non_loopback
                || target.interfaces.iter().any(|p| glob::Pattern::new(p).is_ok_and(|g| g.matches(&iface.name)));
            if !named {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                // Query and detach go by handle and priority: the fd is never used.
                let mut hook = tc_hook(std::io::stdin().as_fd(), iface.ifindex, dir);
                let Ok(id) = hook.query() else { continue };
                if prog_name(id).is_some_and(|n| OUR_PROG_NAMES.contains(&n.as_str())) {
                    hook.detach()
                        .with_context(|| format!("removing our tc filter from {} {}", iface.name, dir.as_str()))?;
                    removed.push(format!("{} {}", iface.name, dir.as_str()));
                }
            }
        }
        Ok(removed)
    })
}
