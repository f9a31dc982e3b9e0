//! Network namespaces and the interfaces in them. setns() moves only the
//! calling thread, so whatever must happen inside a namespace runs on a
//! short-lived thread that entered it.
//!
//! A target's namespace file is opened once (`Netns::open`), checked to be a
//! network namespace, and that fd is what resolve, attach and detach enter:
//! the path is never opened again, so it cannot be swapped in between, and a
//! FIFO or a device cannot block the daemon.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

use hge_shared::config::Target;

/// An open network namespace, and the path it was opened from (for messages).
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    fd: OwnedFd,
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// What a file that is not a network namespace is, for the error message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a namespace file"
    }
}

impl Netns {
    /// Open `path` once (O_RDONLY|O_NONBLOCK|O_CLOEXEC: a FIFO cannot block)
    /// and check that it is a network namespace: a file of nsfs whose type
    /// the kernel says is CLONE_NEWNET. Every error names the path. The one
    /// opener of namespace files: configured targets and discovery use it.
    pub fn open(path: &Path) -> Result<Netns> {
        let shown = path.display();
        if !path.is_absolute() {
            bail!("network namespace {shown}: not an absolute path");
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!("network namespace {shown} does not exist"),
                std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
                    "network namespace {shown}: permission denied (/proc/PID/ns/net of another user's process \
                     needs CAP_SYS_PTRACE)"
                ),
                _ => anyhow::anyhow!("opening network namespace {shown}: {e}"),
            })?;
        let fs = nix::sys::statfs::fstatfs(file.as_fd()).with_context(|| format!("fstatfs {shown}"))?;
        if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
            let what = file.metadata().map(|m| kind_of(&m)).unwrap_or("not a namespace file");
            bail!("{shown} is not a network namespace ({what}, not a file of the nsfs filesystem)");
        }
        // SAFETY: NS_GET_NSTYPE takes no argument and only returns an int; the
        // fd is open for the whole call. nix has no wrapper for this ioctl.
        let ty = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
        if ty < 0 {
            let e = std::io::Error::last_os_error();
            bail!("{shown}: asking the kernel for the namespace type: {e}");
        }
        if ty != libc::CLONE_NEWNET {
            bail!("{shown} is a namespace, but not a network namespace (type {ty:#x})");
        }
        Ok(Netns { path: path.to_path_buf(), fd: file.into() })
    }

    /// A namespace discovery already holds open (`fd` is a dup of its), named
    /// `path` in messages: entered without opening any path again.
    pub fn held(path: &Path, fd: OwnedFd) -> Netns {
        Netns { path: path.to_path_buf(), fd }
    }

    /// The kernel's identity of the namespace (its nsfs inode number).
    pub fn id(&self) -> Result<u64> {
        Ok(self.dev_ino()?.1)
    }

    /// The namespace file's device and inode, as a stat of its path gives them.
    pub fn dev_ino(&self) -> Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(self.fd.as_raw_fd()).with_context(|| format!("fstat {self}"))?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The descriptor, for whoever keeps the namespace open.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The target's namespace, None for the host's.
    pub fn of(target: &Target) -> Result<Option<Netns>> {
        target.netns.as_deref().map(Netns::open).transpose().with_context(|| format!("target {:?}", target.name))
    }
}

/// Where tools keep bind-mounted network namespaces (ip netns, podman; docker).
pub const NAMESPACE_DIRS: &[&str] = &["/run/netns", "/run/docker/netns"];

/// Every network namespace this process can name, other than its own: the
/// given paths (a missing one is skipped) and the files in NAMESPACE_DIRS,
/// each once. Errors other than "missing" come back beside the namespaces.
pub fn other_namespaces(paths: &[PathBuf]) -> (Vec<Netns>, Vec<anyhow::Error>) {
    let mut candidates: Vec<PathBuf> = paths.to_vec();
    for dir in NAMESPACE_DIRS {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            found.sort();
            candidates.extend(found);
        }
    }
    let own = Netns::open(Path::new("/proc/self/ns/net")).and_then(|n| n.id()).ok();
    let (mut seen, mut out, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for p in candidates {
        if !p.exists() {
            continue;
        }
        match Netns::open(&p).and_then(|n| Ok((n.id()?, n))) {
            Ok((id, n)) if Some(id) != own && !seen.contains(&id) => {
                seen.push(id);
                out.push(n);
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

/// `enter` the namespace at `path` (opened once, checked as `Netns::open` does).
pub fn in_netns<R: Send>(path: Option<&Path>, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let ns = path.map(Netns::open).transpose()?;
    enter(ns.as_ref(), f)
}

/// Run `f` on a thread that has entered `netns`; setns() only moves the
/// calling thread, so the rest of the process stays where it is.
pub fn enter<R: Send>(netns: Option<&Netns>, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let Some(ns) = netns else { return f() };
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns.fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {ns} (needs CAP_SYS_ADMIN)"))?;
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
pub(super) fn list_interfaces() -> Result<Vec<Interface>> {
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
pub fn resolve(target: &Target, netns: Option<&Netns>) -> Result<Vec<Interface>> {
    enter(netns, || {
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
                bail!("target {:?}: no interface {pat:?}{ns} (there are: {})", target.name, have.join(", "));
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

/// The interfaces `target` names now, in its namespace: as `resolve`, but
/// a name or glob that matches nothing is no error (for a running target,
/// looking for interfaces created since).
pub fn named(target: &Target, netns: Option<&Netns>) -> Result<Vec<Interface>> {
    let globs: Vec<glob::Pattern> = target.interfaces.iter().filter_map(|g| glob::Pattern::new(g).ok()).collect();
    enter(netns, || {
        let all = list_interfaces()?;
        Ok(all
            .into_iter()
            .filter(
                |i| {
                    if target.up_non_loopback {
                        i.up && !i.loopback
                    } else {
                        globs.iter().any(|g| g.matches(&i.name))
                    }
                },
            )
            .collect())
    })
}

/// The interfaces of a discovered namespace that `globs` match (none: every
/// one but loopback). Matching nothing is no error: a container's interface
/// is often moved in after its namespace appears.
pub fn matching(globs: &[String], netns: &Netns) -> Result<Vec<Interface>> {
    let globs: Vec<glob::Pattern> = globs
        .iter()
        .map(|g| glob::Pattern::new(g).with_context(|| format!("interface glob {g:?}")))
        .collect::<Result<_>>()?;
    enter(Some(netns), || {
        let all = list_interfaces()?;
        Ok(all
            .into_iter()
            .filter(|i| if globs.is_empty() { !i.loopback } else { globs.iter().any(|g| g.matches(&i.name)) })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error opening `path`. A FIFO without a writer would block a plain
    /// open forever; an open still running after a minute is taken to hang.
    fn err(path: &Path) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || tx.send(Netns::open(&p).map(drop).map_err(|e| format!("{e:#}"))));
        let opened = rx.recv_timeout(std::time::Duration::from_secs(60));
        let e = opened.unwrap_or_else(|_| panic!("opening {path:?} hangs")).unwrap_err();
        assert!(e.contains(&path.display().to_string()), "the error names the path: {e}");
        e
    }

    #[test]
    fn only_network_namespaces_open_and_every_other_path_is_one_clear_error() {
        let dir = std::env::temp_dir().join(format!("hge-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        struct Rm(PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _rm = Rm(dir.clone());

        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(err(&fifo).contains("not a network namespace (a FIFO"));
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(err(&file).contains("not a network namespace (a regular file"));
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(err(&dangling).contains("does not exist"));
        assert!(err(Path::new("run/netns/x")).contains("not an absolute path"));
        assert!(err(&dir).contains("not a network namespace (a directory"));
        assert!(err(Path::new("/proc/self/ns/uts")).contains("not a network namespace (type"));

        let ns = Netns::open(Path::new("/proc/self/ns/net")).unwrap();
        let names = resolve(&Target::host_default(), Some(&ns));
        // Entering needs CAP_SYS_ADMIN: with it the host's interfaces resolve, without it the error says so.
        let caps = hge_shared::privsep::ProcCaps::of_self().unwrap();
        if caps.eff & (1 << caps::Capability::CAP_SYS_ADMIN.index()) != 0 {
            assert!(names.is_ok(), "{names:?}");
        } else {
            let e = format!("{:#}", names.unwrap_err());
            assert!(e.contains("CAP_SYS_ADMIN"), "{e}");
        }
    }
}
