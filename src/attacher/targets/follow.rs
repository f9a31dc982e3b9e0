//! Static targets follow their namespace. A container that restarts gets a
//! new network namespace behind the same file (/run/netns/NAME); one that
//! stops leaves none. The links on a dead namespace's interfaces are gone
//! with it, so a target that stayed put would silently count nothing: each
//! second the attacher looks (one open and fstat per target with `netns`),
//! re-attaches a target whose file holds another namespace, and detaches one
//! whose file is gone until it is back. Each change is logged once. An
//! interface deleted under a target is let go the same way; one created
//! that the target names is attached (`grow`, which discovered namespaces
//! use too, told by rtnetlink).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::{Prepared, Targets};
use crate::netns::{self, Interface, Netns};
use hge_shared::config::Target;

/// What a target's `netns` path holds now.
fn namespace_at(path: &Path) -> Result<u64, String> {
    Netns::open(path).and_then(|n| n.id()).map_err(|e| format!("{e:#}"))
}

impl Targets {
    /// Follow every static target's namespace; a line saying what changed,
    /// if anything did (the caller then sends the exporter the new topology).
    pub(crate) fn follow_namespaces(&mut self) -> Option<String> {
        let watched: Vec<(u16, u64, bool)> = self
            .running
            .iter()
            .filter(|r| r.target.netns.is_some() && r.container.is_none())
            .map(|r| (r.id, r.netns_key, r.waiting.is_some()))
            .collect();
        let mut changed = Vec::new();
        for (id, key, waiting) in watched {
            let Some(r) = self.running.iter().find(|r| r.id == id) else { continue };
            let (target, path) = (r.target.clone(), r.target.netns.clone().unwrap_or_default());
            match namespace_at(&path) {
                Ok(now) if now == key && !waiting => {}
                Err(why) => {
                    if self.park(id, format!("{why}; detached until it is back")) {
                        changed.push(format!("{:?} detached", target.name));
                    }
                }
                // A /proc/PID path that comes back is another process that got the PID: never followed.
                Ok(_) if path.starts_with("/proc") => {
                    let why = format!("{} now names another process's namespace; not followed", path.display());
                    if self.park(id, why) {
                        changed.push(format!("{:?} detached", target.name));
                    }
                }
                Ok(_) => {
                    let others: Vec<_> = self.current().into_iter().filter(|t| t != &target).collect();
                    let fresh = self.free_id(&[]).and_then(|new_id| self.prepare(&target, new_id));
                    match fresh.and_then(|p| self.apply(vec![p], &others)) {
                        Ok(_) => {
                            log::info!(
                                "target {:?}: {} holds a new network namespace; attached there",
                                target.name,
                                path.display()
                            );
                            changed.push(format!("{:?} re-attached", target.name));
                        }
                        // Often the container's interfaces are not in it yet: tried again next second.
                        Err(e) => {
                            if self.park(id, format!("{e:#}")) {
                                changed.push(format!("{:?} detached", target.name));
                            }
                        }
                    }
                }
            }
        }
        changed.extend(self.drop_gone_interfaces());
        changed.extend(self.grow_configured());
        (!changed.is_empty()).then(|| format!("namespaces changed: {}", changed.join(", ")))
    }

    /// Interfaces deleted under a target (its namespace stays): their links
    /// hold nothing any more, so they are let go and no longer reported
    /// attached. One that comes back is attached again (grow_configured).
    fn drop_gone_interfaces(&mut self) -> Vec<String> {
        let gone: Vec<_> = self
            .links
            .iter()
            .filter(|(_, l)| l.hooks.iter().any(|h| !h.held()))
            .map(|(k, l)| (*k, l.hooks.first().map(|h| (h.target.clone(), h.interface.clone())).unwrap_or_default()))
            .collect();
        let mut changed = Vec::new();
        for (key, name) in gone {
            // A discovered namespace's interfaces go with it, and containers' veths
            // come and go under the built-in host target: that is no surprise.
            let named = |r: &super::Running| r.container.is_none() && !r.target.up_non_loopback;
            if self.running.iter().any(|r| r.netns_key == key.0 && named(r)) {
                log::warn!("target {:?}: interface {} is gone; detached", name.0, name.1);
            } else {
                log::debug!("target {:?}: interface {} is gone; detached", name.0, name.1);
            }
            self.drop_link(key);
            for r in self.running.iter_mut().filter(|r| r.netns_key == key.0) {
                r.interfaces.retain(|i| i.ifindex != key.1);
            }
            changed.push(format!("{:?} lost {}", name.0, name.1));
        }
        changed
    }

    /// Interfaces created under a configured target since it was attached,
    /// that it names (a glob, or the built-in target's "every interface
    /// that is up"): attached too. A namespace is opened again by its path
    /// and used only if it is still the one attached; none is held open,
    /// so a deleted one can go.
    fn grow_configured(&mut self) -> Vec<String> {
        let watched: Vec<(u16, Target, u64)> = self
            .running
            .iter()
            .filter(|r| r.container.is_none() && r.waiting.is_none())
            .map(|r| (r.id, r.target.clone(), r.netns_key))
            .collect();
        let mut changed = Vec::new();
        for (id, target, key) in watched {
            let netns = match target.netns.as_deref().map(Netns::open).transpose() {
                Ok(n) if n.as_ref().map_or(Ok(self.host_netns), Netns::id).ok() == Some(key) => n.map(Arc::new),
                _ => continue, // gone or replaced: follow_namespaces deals with it
            };
            let Ok(now) = netns::named(&target, netns.as_deref()) else { continue };
            match self.grow(id, netns, now) {
                Ok(true) => changed.push(format!("{:?} gained interfaces", target.name)),
                Ok(false) => {}
                Err(e) => {
                    if self.grow_failed.insert((id, format!("{e:#}"))) {
                        log::warn!("target {:?}: {e:#}", target.name);
                    }
                }
            }
        }
        changed
    }

    /// Attach running target `id` to those of `candidates` (interfaces of
    /// its namespace, `netns`) that no target holds yet; true if any.
    pub(super) fn grow(&mut self, id: u16, netns: Option<Arc<Netns>>, candidates: Vec<Interface>) -> Result<bool> {
        let Some(r) = self.running.iter().find(|r| r.id == id) else { return Ok(false) };
        let key = r.netns_key;
        let held = |i: &Interface| {
            self.links.contains_key(&(key, i.ifindex))
                || self
                    .running
                    .iter()
                    .any(|o| o.netns_key == key && o.interfaces.iter().any(|x| x.ifindex == i.ifindex))
        };
        let new: Vec<Interface> = candidates.into_iter().filter(|i| !held(i)).collect();
        if new.is_empty() {
            return Ok(false);
        }
        let more = Prepared {
            id,
            target: r.target.clone(),
            netns,
            netns_key: key,
            interfaces: new,
            container: r.container.clone(),
        };
        let hooks = self.attach_fresh(std::slice::from_ref(&more), &[])?;
        for (iface, (slot, hooks)) in more.interfaces.iter().zip(hooks) {
            self.links.insert((key, iface.ifindex), super::Link { slot, target_id: id, hooks });
        }
        if let Some(r) = self.running.iter_mut().find(|r| r.id == id) {
            r.interfaces.extend(more.interfaces);
        }
        Ok(true)
    }

    /// Detach target `id` and mark it waiting for `why`; logs when the reason
    /// is new. True if it was attached until now.
    fn park(&mut self, id: u16, why: String) -> bool {
        let Some(i) = self.running.iter().position(|r| r.id == id) else { return false };
        if self.running[i].waiting.as_deref() != Some(why.as_str()) {
            log::warn!("target {:?}: {why}", self.running[i].target.name);
        }
        let mut r = self.running.remove(i);
        let was_attached = r.waiting.is_none();
        if was_attached {
            self.release_links(&r);
            r.interfaces.clear();
            r.netns_key = 0;
        }
        r.waiting = Some(why);
        self.running.insert(i, r);
        was_attached
    }
}
