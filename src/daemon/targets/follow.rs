//! Static targets follow their namespace. A container that restarts gets a
//! new network namespace behind the same file (/run/netns/NAME); one that
//! stops leaves none. The links on a dead namespace's interfaces are gone
//! with it, so a target that stayed put would silently count nothing: each
//! second the attacher looks (one open and fstat per target with `netns`),
//! re-attaches a target whose file holds another namespace, and detaches one
//! whose file is gone until it is back. Each change is logged once. An
//! interface deleted under a target is let go the same way.

use std::path::Path;

use super::Targets;
use crate::privileged::netns::Netns;

/// What a target's `netns` path holds now.
fn namespace_at(path: &Path) -> Result<u64, String> {
    Netns::open(path).and_then(|n| n.id()).map_err(|e| format!("{e:#}"))
}

impl Targets {
    /// Follow every static target's namespace; a line saying what changed,
    /// if anything did (the caller then sends the exporter the new topology).
    pub(in crate::daemon) fn follow_namespaces(&mut self) -> Option<String> {
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
        (!changed.is_empty()).then(|| format!("namespaces changed: {}", changed.join(", ")))
    }

    /// Interfaces deleted under a target (its namespace stays): their links
    /// hold nothing any more, so they are let go and no longer reported
    /// attached. One that comes back is attached again by a reload.
    fn drop_gone_interfaces(&mut self) -> Vec<String> {
        let gone: Vec<_> = self
            .links
            .iter()
            .filter(|(_, l)| l.hooks.iter().any(|h| !h.held()))
            .map(|(k, l)| (*k, l.hooks.first().map(|h| (h.target.clone(), h.interface.clone())).unwrap_or_default()))
            .collect();
        let mut changed = Vec::new();
        for (key, name) in gone {
            // A discovered namespace's interfaces go with it: that is no surprise.
            if self.running.iter().any(|r| r.netns_key == key.0 && r.container.is_none()) {
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
