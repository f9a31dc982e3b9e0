//! Network namespaces and the interfaces in them. setns() moves only the
//! calling thread, so whatever must happen inside a namespace runs on a
//! short-lived thread that entered it.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::config::Target;

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

/// Error for the operator when a namespace file is missing: say which.
pub fn check_netns(target: &Target) -> Result<()> {
    if let Some(p) = &target.netns {
        if !p.exists() {
            return Err(anyhow!("target {:?}: network namespace {} does not exist", target.name, p.display()));
        }
    }
    Ok(())
}
