//! The targets the attacher keeps, and the interfaces they hold.
//!
//! One parser serves every target (see src/attacher/bpf/loader.rs): attaching a target
//! means giving each of its interfaces a slot in the `links` array and putting
//! that slot's small programs on it. An interface belongs to one target at a
//! time; a reload that changes a target rewrites the interface's slot and
//! keeps the programs where they are, so nothing is missed in between and
//! nothing counted twice.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::attach::{self, Hook};
use crate::bpf::{maps, LinkConfig, Loader, SharedMaps};
use crate::netns::{self, Interface, Netns};
use hge_shared::abi;
use hge_shared::config::{AttachMode, Target};
use hge_shared::topology::{Attached, InterfaceName, Program, TargetNames, Topology};

mod discovered;
mod follow;

/// An interface: its network namespace (inode) and its ifindex there.
type LinkId = (u64, u32);

/// A target resolved in its namespace, not attached yet.
pub(super) struct Prepared {
    id: u16,
    target: Target,
    /// Opened once; entered to resolve, attach and (tc filters) detach.
    netns: Option<Arc<Netns>>,
    netns_key: u64,
    interfaces: Vec<Interface>,
    /// Set for a namespace a `[[discover]]` table found: its `container` label.
    container: Option<String>,
}

impl Prepared {
    /// What the slots of this target's interfaces say.
    fn link(&self) -> LinkConfig {
        LinkConfig { target_id: self.id, ports: self.target.ports.clone(), routes: self.target.routes.len() as u16 }
    }

    /// Legacy tc filters a killed run left on these interfaces still run
    /// (into maps nobody reads): remove them before attaching.
    pub(super) fn remove_left_behind(&self) {
        attach::remove_left_behind(&self.target.name, self.netns.as_deref(), &self.interfaces);
    }
}

/// A target whose interfaces are in `links`.
struct Running {
    id: u16,
    target: Target,
    netns_key: u64,
    interfaces: Vec<Interface>,
    /// Detached because its namespace went away: why, as last logged (follow.rs).
    waiting: Option<String>,
    /// Found by discovery (discovered.rs), not named in the config: kept
    /// across reloads, followed by the discovery that found it.
    container: Option<String>,
}

/// The programs on one interface (both directions), and its slot in `links`.
/// Dropping it detaches them.
struct Link {
    slot: u32,
    target_id: u16,
    hooks: Vec<Hook>,
}

pub(super) struct Targets {
    loader: Loader,
    maps: Arc<SharedMaps>,
    mode: AttachMode,
    running: Vec<Running>,
    links: HashMap<LinkId, Link>,
    /// Where the search for a free slot starts: a freed slot is reused last,
    /// so a packet still in flight on a just-detached interface cannot count
    /// for the interface that took its slot.
    next_slot: u32,
    next_id: std::cell::Cell<u16>,
    /// Growth failures already logged (target id, error): not every second.
    grow_failed: std::collections::HashSet<(u16, String)>,
    /// The namespace of targets without `netns`: ours.
    host_netns: u64,
}

/// What `apply` changed.
pub(super) struct Change {
    pub kept: usize,
    pub added: usize,
    pub removed: usize,
}

impl Targets {
    pub(super) fn new(loader: Loader, mode: AttachMode) -> Result<Targets> {
        let maps = loader.maps();
        let host_netns = Netns::open(std::path::Path::new("/proc/self/ns/net"))?.id()?;
        Ok(Targets {
            loader,
            maps,
            mode,
            running: Vec::new(),
            links: HashMap::new(),
            next_slot: 0,
            next_id: Default::default(),
            grow_failed: Default::default(),
            host_netns,
        })
    }

    pub(super) fn maps(&self) -> Arc<SharedMaps> {
        self.maps.clone()
    }

    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    pub(super) fn programs(&self) -> usize {
        self.links.values().map(|l| l.hooks.len()).sum()
    }

    /// The configured targets running now (discovered namespaces are not).
    pub(super) fn current(&self) -> Vec<Target> {
        self.running.iter().filter(|r| r.container.is_none()).map(|r| r.target.clone()).collect()
    }

    /// Resolve `target`'s interfaces in its namespace.
    pub(super) fn prepare(&self, target: &Target, id: u16) -> Result<Prepared> {
        let netns = Netns::of(target)?.map(Arc::new);
        let interfaces = netns::resolve(target, netns.as_deref())?;
        let netns_key = match &netns {
            Some(n) => n.id()?,
            None => self.host_netns,
        };
        Ok(Prepared { id, target: target.clone(), netns, netns_key, interfaces, container: None })
    }

    /// A target id no running target uses, nor any in `also`.
    /// Ids are given round-robin, like slots: series a packet still in flight
    /// adds under a just-removed target's id cannot be labelled as the next one.
    pub(super) fn free_id(&self, also: &[Prepared]) -> Result<u16> {
        let n = hge_shared::config::MAX_TARGETS as u16;
        let start = self.next_id.get();
        let id = (0..n)
            .map(|i| (start + i) % n)
            .find(|id| !self.running.iter().any(|r| r.id == *id) && !also.iter().any(|p| p.id == *id))
            .context("no free target id")?;
        self.next_id.set((id + 1) % n);
        Ok(id)
    }

    /// Put `fresh` in place and take out the configured targets not in `keep`
    /// (discovered ones stay): all of `fresh` or, on error, nothing changes.
    /// Interfaces that pass from a removed target to a fresh one keep their programs.
    pub(super) fn apply(&mut self, fresh: Vec<Prepared>, keep: &[Target]) -> Result<Change> {
        let (kept, leaving): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| r.container.is_some() || keep.contains(&r.target));
        self.running = kept;
        let result = self.set_routes(&fresh).and_then(|()| self.attach_fresh(&fresh, &leaving));
        let new_hooks = match result {
            Ok(h) => h,
            Err(e) => {
                for p in &fresh {
                    let _ = maps::set_routes(&self.maps, p.id, &[]);
                }
                self.running.extend(leaving);
                return Err(e);
            }
        };
        let (kept, added, removed) = (self.running.len(), fresh.len(), leaving.len());

        let mut new_hooks = new_hooks.into_iter();
        for p in fresh {
            let link = p.link();
            for iface in &p.interfaces {
                let id = (p.netns_key, iface.ifindex);
                if let Some(l) = self.links.get_mut(&id) {
                    // Taken over from a leaving target: only its slot changes.
                    if let Err(e) = maps::set_link(&self.maps, l.slot, &link) {
                        log::error!(
                            "target {:?}: {} keeps counting for the old target: {e:#}",
                            p.target.name,
                            iface.name
                        );
                    }
                    l.target_id = p.id;
                    l.hooks.iter_mut().for_each(|h| h.target = p.target.name.clone());
                } else if let Some((slot, hooks)) = new_hooks.next() {
                    self.links.insert(id, Link { slot, target_id: p.id, hooks });
                }
            }
            self.running.push(Running {
                id: p.id,
                target: p.target,
                netns_key: p.netns_key,
                interfaces: p.interfaces,
                waiting: None,
                container: p.container,
            });
        }
        for r in leaving {
            self.release(r);
        }
        Ok(Change { kept, added, removed })
    }

    /// The route templates of `fresh`, each under its target id, before any of
    /// their slots says they have some.
    fn set_routes(&self, fresh: &[Prepared]) -> Result<()> {
        for p in fresh {
            maps::set_routes(&self.maps, p.id, &p.target.routes)
                .with_context(|| format!("target {:?}: its routes", p.target.name))?;
        }
        Ok(())
    }

    /// An interface belongs to one target: `fresh` may name none that a
    /// running target or another of `fresh` names.
    pub(super) fn check_claims(&self, fresh: &[Prepared]) -> Result<()> {
        let mut claimed: HashMap<LinkId, &str> = HashMap::new();
        for r in &self.running {
            for i in &r.interfaces {
                claimed.insert((r.netns_key, i.ifindex), &r.target.name);
            }
        }
        for p in fresh {
            for i in &p.interfaces {
                if let Some(other) = claimed.insert((p.netns_key, i.ifindex), &p.target.name) {
                    let ns = p.netns.as_ref().map(|n| format!(" in {n}")).unwrap_or_default();
                    bail!(
                        "targets {other:?} and {:?} both name interface {}{ns}: an interface belongs to one target",
                        p.target.name,
                        i.name
                    );
                }
            }
        }
        Ok(())
    }

    /// Attach programs on the interfaces of `fresh` that hold none yet, each
    /// with a new slot filled first; the slot and hooks per such interface,
    /// in order. On error, undoes what it did.
    fn attach_fresh(&mut self, fresh: &[Prepared], leaving: &[Running]) -> Result<Vec<(u32, Vec<Hook>)>> {
        self.check_claims(fresh)?;
        let held =
            |id: &LinkId| leaving.iter().any(|r| r.netns_key == id.0 && r.interfaces.iter().any(|i| i.ifindex == id.1));
        let mut done: Vec<(u32, Vec<Hook>)> = Vec::new();
        let result = (|| -> Result<()> {
            for p in fresh {
                let link = p.link();
                for iface in p.interfaces.iter().filter(|i| !held(&(p.netns_key, i.ifindex))) {
                    let what = || format!("target {:?}: {}", p.target.name, iface.name);
                    let slot = self.free_slot(&done).with_context(what)?;
                    maps::set_link(&self.maps, slot, &link).with_context(what)?;
                    done.push((slot, Vec::new()));
                    let progs = self.loader.link_programs(slot).with_context(what)?;
                    let hooks = attach::attach_target(
                        &p.target,
                        p.netns.as_ref(),
                        std::slice::from_ref(iface),
                        &progs,
                        self.mode,
                    )?;
                    done.last_mut().expect("pushed above").1 = hooks;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(done),
            Err(e) => {
                for (slot, hooks) in done {
                    drop(hooks);
                    if let Err(e) = maps::clear_link(&self.maps, slot) {
                        log::warn!("{e:#}");
                    }
                }
                Err(e)
            }
        }
    }

    /// The next slot after the last one given that no interface holds.
    fn free_slot(&mut self, pending: &[(u32, Vec<Hook>)]) -> Result<u32> {
        for i in 0..abi::MAX_LINKS {
            let slot = (self.next_slot + i) % abi::MAX_LINKS;
            if !self.links.values().any(|l| l.slot == slot) && !pending.iter().any(|(s, _)| *s == slot) {
                self.next_slot = (slot + 1) % abi::MAX_LINKS;
                return Ok(slot);
            }
        }
        bail!("the programs are on {} interfaces already, the most they can be on", abi::MAX_LINKS)
    }

    /// Take a target out: its interfaces no one took over leave `links` and
    /// lose their programs; its series go (they would hold map capacity,
    /// unlabelled, forever).
    fn release(&mut self, r: Running) {
        log::info!("detaching target {:?}", r.target.name);
        self.release_links(&r);
    }

    /// Clear a target's slots, detach its programs, delete its series.
    fn release_links(&mut self, r: &Running) {
        for i in &r.interfaces {
            let id = (r.netns_key, i.ifindex);
            if self.links.get(&id).is_some_and(|l| l.target_id == r.id) {
                self.drop_link(id);
            }
        }
        if let Err(e) = maps::set_routes(&self.maps, r.id, &[]) {
            log::warn!("removing the routes of target {:?}: {e:#}", r.target.name);
        }
        if let Err(e) = maps::forget_series(&self.maps, r.id) {
            log::warn!("removing the series of target {:?}: {e:#}", r.target.name);
        }
    }

    /// Take an interface out of `links`: its slot cleared first (packets
    /// still handed over are ignored), then its programs detached.
    fn drop_link(&mut self, id: LinkId) {
        let Some(mut l) = self.links.remove(&id) else { return };
        if let Err(e) = maps::clear_link(&self.maps, l.slot) {
            log::warn!("{e:#}");
        }
        detach_logged(&mut l.hooks);
    }

    /// Detach everything; the number of programs detached, or the first error.
    pub(super) fn detach_all(&mut self) -> Result<usize> {
        let mut n = 0;
        let mut first_err = None;
        for (_, mut l) in self.links.drain() {
            for mut h in l.hooks.drain(..) {
                match h.detach() {
                    Ok(()) => n += 1,
                    Err(e) => {
                        log::error!("{e:#}");
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        self.running.clear();
        first_err.map_or(Ok(n), Err)
    }

    pub(super) fn topology(&self) -> Topology {
        let programs = self.loader.verified().iter();
        let mut topo = Topology {
            programs: programs
                .map(|v| Program { name: v.program.clone(), verified_instructions: v.instructions })
                .collect(),
            ..Default::default()
        };
        for t in &self.running {
            topo.targets.push(TargetNames {
                id: t.id,
                name: t.target.name.clone(),
                container: t.container.clone(),
                interfaces: t
                    .interfaces
                    .iter()
                    .map(|i| InterfaceName { ifindex: i.ifindex, name: i.name.clone() })
                    .collect(),
                routes: t.target.routes.clone(),
            });
            for i in &t.interfaces {
                let Some(l) = self.links.get(&(t.netns_key, i.ifindex)) else { continue };
                topo.attached.extend(l.hooks.iter().map(|h| Attached {
                    target: h.target.clone(),
                    container: t.container.clone(),
                    interface: h.interface.clone(),
                    direction: h.direction,
                    mode: h.mode,
                }));
            }
        }
        topo
    }
}

fn detach_logged(hooks: &mut Vec<Hook>) {
    for mut h in hooks.drain(..) {
        if let Err(e) = h.detach() {
            log::error!("{e:#}");
        }
    }
}
