//! Putting the programs on interfaces, and taking them off again.
//!
//! TCX links are preferred: they detach by themselves when their fd closes,
//! even on SIGKILL. Legacy clsact filters outlive the process, so they carry a
//! fixed handle and priority by which we recognise (and replace) our own.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{TcHook, TC_EGRESS, TC_INGRESS};
use nix::sched::{setns, CloneFlags};

use crate::bpf::Programs;
use crate::config::{AttachMode, Target};

/// Our legacy filters: handle "HG", and the first priority so we observe
/// packets before anything else may drop or redirect them.
pub const TC_HANDLE: u32 = 0x4847;
pub const TC_PRIORITY: u32 = 1;
const OUR_PROG_NAMES: &[&str] = &["http_ingress", "http_egress"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Tcx,
    Tc,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tcx => "tcx",
            Mode::Tc => "tc",
        })
    }
}

enum Handle {
    Link(OwnedFd),
    Filter(Filter),
}

/// A TcHook is plain data (ifindex, handle, priority, attach point), but
/// bindgen gives its C structs raw pointer fields, which are never set here.
#[derive(Clone, Copy)]
struct Filter(TcHook);

// SAFETY: see above; no pointer inside a TcHook we build refers to anything.
unsafe impl Send for Filter {}

impl Filter {
    // A method, so closures capture the whole Send wrapper, not its field.
    fn into_inner(self) -> TcHook {
        self.0
    }
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

impl Hook {
    pub fn detach(&mut self) -> Result<()> {
        match self.handle.take() {
            // Closing the last fd of a TCX link detaches it, in whatever namespace.
            Some(Handle::Link(fd)) => drop(fd),
            Some(Handle::Filter(Filter(hook))) => {
                // Netlink works in the caller's namespace: go back to the interface's.
                let filter = Filter(hook);
                in_netns(self.netns.as_deref(), move || {
                    let mut hook = filter.into_inner();
                    match hook.detach() {
                        Ok(()) => Ok(()),
                        // The interface (or its namespace) is gone, and the filter with it.
                        Err(e) if matches!(e.kind(), libbpf_rs::ErrorKind::NotFound) => Ok(()),
                        Err(e) => Err(e.into()),
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

/// Run `f` on a thread that has entered `netns`; setns() only moves the
/// calling thread, so the rest of the process stays where it is.
pub fn in_netns<R: Send>(netns: Option<&Path>, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let Some(path) = netns else { return f() };
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(path).with_context(|| format!("opening network namespace {}", path.display()))?;
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {} (needs CAP_SYS_ADMIN)", path.display()))?;
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    up: bool,
    loopback: bool,
}

/// Interfaces of the calling thread's namespace (netlink, unlike /sys, follows setns).
fn list_interfaces() -> Result<Vec<Interface>> {
    let mut out: Vec<Interface> = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().context("listing interfaces")? {
        if out.iter().any(|i| i.name == ifa.interface_name) {
            continue;
        }
        let Ok(ifindex) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else { continue };
        out.push(Interface {
            up: ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP),
            loopback: ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK),
            name: ifa.interface_name,
            ifindex,
        });
    }
    out.sort_by_key(|i| i.ifindex);
    Ok(out)
}

/// The interfaces a target names, resolved in its namespace. A name or glob
/// that matches nothing is an error: the operator asked for something not there.
pub fn resolve(target: &Target) -> Result<Vec<Interface>> {
    in_netns(target.netns.as_deref(), || {
        let all = list_interfaces()?;
        if target.up_non_loopback {
            let picked: Vec<_> = all.into_iter().filter(|i| i.up && !i.loopback).collect();
            if picked.is_empty() {
                bail!("target \"host\": no interface is up apart from loopback; name interfaces in the config file");
            }
            return Ok(picked);
        }
        let mut picked: Vec<Interface> = Vec::new();
        for pat in &target.interfaces {
            let glob = glob::Pattern::new(pat).with_context(|| format!("interface glob {pat:?}"))?;
            let matched: Vec<_> = all.iter().filter(|i| glob.matches(&i.name)).cloned().collect();
            if matched.is_empty() {
                let ns = target.netns.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default();
                let have: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
                bail!(
                    "target {:?}: no interface {pat:?}{ns} (there are: {})",
                    target.name,
                    have.join(", ")
                );
            }
            for i in matched {
                if !picked.iter().any(|p| p.ifindex == i.ifindex) {
                    picked.push(i);
                }
            }
        }
        Ok(picked)
    })
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
                let (m, handle) = attach_one(prog, iface, dir, mode)
                    .with_context(|| format!("target {:?}: attaching to {} ({})", target.name, iface.name, dir.as_str()))?;
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
        AttachMode::Tc => Ok((Mode::Tc, Handle::Filter(Filter(attach_tc(prog, iface.ifindex, dir)?)))),
        AttachMode::Auto => match attach_tcx(prog, iface.ifindex, dir) {
            Ok(fd) => Ok((Mode::Tcx, Handle::Link(fd))),
            // Kernels before 6.6 do not know the TCX attach types.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                log::info!("TCX links unavailable on {} ({e}); using a tc clsact filter", iface.name);
                Ok((Mode::Tc, Handle::Filter(Filter(attach_tc(prog, iface.ifindex, dir)?))))
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
    // SAFETY: plain syscall wrapper; opts lives across the call.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the kernel just handed us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn attach_tc(prog: BorrowedFd<'_>, ifindex: u32, dir: Direction) -> Result<TcHook> {
    let mut hook = TcHook::new(prog);
    hook.ifindex(ifindex as i32)
        .attach_point(match dir {
            Direction::Ingress => TC_INGRESS,
            Direction::Egress => TC_EGRESS,
        })
        .handle(TC_HANDLE)
        .priority(TC_PRIORITY);
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
    Ok(hook)
}

fn prog_name(id: u32) -> Option<String> {
    // SAFETY: plain syscall wrappers; info is sized for the kernel.
    unsafe {
        let fd = libbpf_sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut info: libbpf_sys::bpf_prog_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        if libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) != 0 {
            return None;
        }
        let name: Vec<u8> = info.name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8(name).ok()
    }
}

/// Error for the operator when a namespace file is missing: say which.
pub fn check_netns(target: &Target) -> Result<()> {
    if let Some(p) = &target.netns {
        if !p.exists() {
            return Err(anyhow!("target {:?}: network namespace {} does not exist", target.name, p.display()));
        }
    }
    Ok(())
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
            for (dir, point) in [(Direction::Ingress, TC_INGRESS), (Direction::Egress, TC_EGRESS)] {
                // Query and detach go by handle and priority: the fd is never used.
                let mut hook = TcHook::new(std::io::stdin().as_fd());
                hook.ifindex(iface.ifindex as i32).attach_point(point).handle(TC_HANDLE).priority(TC_PRIORITY);
                let Ok(id) = hook.query() else { continue };
                if prog_name(id).is_some_and(|n| OUR_PROG_NAMES.contains(&n.as_str())) {
                    hook.detach().with_context(|| format!("removing our tc filter from {} {}", iface.name, dir.as_str()))?;
                    removed.push(format!("{} {}", iface.name, dir.as_str()));
                }
            }
        }
        Ok(removed)
    })
}
