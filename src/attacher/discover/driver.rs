//! The `[[discover]]` tables at work in the attacher: each owns a `Watcher`
//! (namespaces appearing and going) and a `LinkEvents` (interfaces appearing
//! and going inside the namespaces found), two fds in the attacher's poll,
//! and asks the attacher, through `Attach`, to attach, grow, rename or let go
//! of what they report. A namespace with no matching interface yet is
//! attached when the kernel announces one (and looked at again now and
//! then, should that announcement be missed); one found while
//! `max_namespaces` are attached waits, counted, until one goes. Attaching
//! happens a batch at a time, so that 200 containers starting at once do
//! not hold up signals and the watchdog.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::link_events::LinkEvents;
use super::{Attach, Event, Namespace, NsId, Settings, Watcher};
use crate::netns::Netns;
use hge_shared::config::Discover;
use hge_shared::topology::Discovered;

/// A namespace with nothing attached yet is looked at again: soon at first
/// (podman moves the container's interface in just after the namespace
/// file appears), then less often (a service's namespace with only
/// loopback never gets an interface to attach to).
fn retry_after(tries: u32) -> Duration {
    match tries {
        0..5 => Duration::from_millis(200),
        5..15 => Duration::from_secs(1),
        _ => Duration::from_secs(5),
    }
}
/// Attached namespaces are looked at for new interfaces when the kernel says
/// one appeared, and this often in case an announcement was missed.
const GROW_EVERY: Duration = Duration::from_secs(30);

/// A namespace found and not attached (yet).
struct Waiting {
    ns: Namespace,
    label: String,
    due: Instant,
    /// The last reason it is not attached, logged once.
    why: Option<String>,
    tries: u32,
}

/// A namespace found and attached: the target id the attacher gave it.
struct Claimed {
    ns: Namespace,
    id: u16,
    label: String,
}

struct Table {
    cfg: Discover,
    watcher: Watcher,
    /// Link changes in every namespace found, by inode.
    links: LinkEvents,
    attached: BTreeMap<NsId, Claimed>,
    waiting: BTreeMap<NsId, Waiting>,
    /// Found while max_namespaces were attached: each counted once.
    over: HashMap<NsId, (Namespace, String)>,
    limit_reached: u64,
    next_grow: Instant,
}

pub(crate) struct Discovery {
    tables: Vec<Table>,
}

impl Discovery {
    /// Start every table's watcher; what exists now waits to be attached.
    pub(crate) fn start(cfgs: &[Discover]) -> Result<Discovery> {
        let mut tables = Vec::new();
        for cfg in cfgs {
            let settings =
                Settings { netns_dirs: cfg.netns_dirs.clone(), processes: cfg.processes, ..Settings::default() };
            let (watcher, events) = Watcher::new(settings)?;
            let mut t = Table {
                cfg: cfg.clone(),
                watcher,
                links: LinkEvents::new()?,
                attached: BTreeMap::new(),
                waiting: BTreeMap::new(),
                over: HashMap::new(),
                limit_reached: 0,
                next_grow: Instant::now() + GROW_EVERY,
            };
            t.take(events, None);
            log::info!(
                "discover {:?}: watching {} for network namespaces{}",
                cfg.name,
                cfg.netns_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                if cfg.processes { " and every process's (/proc)" } else { "" }
            );
            tables.push(t);
        }
        Ok(Discovery { tables })
    }

    pub(crate) fn config(&self) -> Vec<Discover> {
        self.tables.iter().map(|t| t.cfg.clone()).collect()
    }

    /// The fds to poll: readable when `drain` has something to read; two
    /// per table (its watcher, its link events).
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.tables.iter().flat_map(|t| [t.watcher.as_fd(), t.links.as_fd()]).collect()
    }

    /// Read what fd `i` of `fds()` reports; true if the topology changed.
    pub(crate) fn drain(&mut self, i: usize, targets: &mut dyn Attach) -> bool {
        let Some(t) = self.tables.get_mut(i / 2) else { return false };
        if i % 2 == 1 {
            return t.links_changed(targets);
        }
        match t.watcher.drain() {
            Ok(events) => t.take(events, Some(targets)),
            Err(e) => {
                log::error!("discover {:?}: {e:#}", t.cfg.name);
                false
            }
        }
    }

    /// When `work` next has something due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.tables.iter().flat_map(|t| t.waiting.values().map(|w| w.due).chain([t.next_grow])).min()
    }

    /// Attach what is due until `deadline`; true if anything changed.
    pub(crate) fn work(&mut self, targets: &mut dyn Attach, deadline: Instant) -> bool {
        let mut changed = false;
        for t in &mut self.tables {
            changed |= t.lose_emptied(targets);
            changed |= t.attach_due(targets, deadline);
            if Instant::now() >= t.next_grow {
                changed |= t.grow(targets);
                t.next_grow = Instant::now() + GROW_EVERY;
            }
        }
        changed
    }

    /// Let go of found namespaces whose file a configured target names (a
    /// reload added it): the target takes them; they wait meanwhile.
    pub(crate) fn yield_to(&mut self, configured: &[hge_shared::config::Target], targets: &mut dyn Attach) {
        for t in &mut self.tables {
            let named: Vec<NsId> = t
                .attached
                .iter()
                .filter(|(_, a)| {
                    a.ns.file.as_ref().is_some_and(|f| configured.iter().any(|c| c.netns.as_ref() == Some(f)))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in named {
                if let Some(a) = t.attached.remove(&id) {
                    log::info!("discover {:?}: {} is a configured target's now; let go", t.cfg.name, a.label);
                    targets.release(a.id);
                    let w = Waiting { ns: a.ns, label: a.label, due: Instant::now(), why: None, tries: 0 };
                    t.waiting.insert(id, w);
                }
            }
        }
    }

    /// Let every found namespace go (shutdown or a reload that changed the tables).
    pub(crate) fn release_all(&mut self, targets: &mut dyn Attach) {
        for t in &mut self.tables {
            for (_, a) in std::mem::take(&mut t.attached) {
                targets.release(a.id);
            }
        }
    }

    pub(crate) fn stats(&self) -> Vec<Discovered> {
        self.tables
            .iter()
            .map(|t| Discovered {
                name: t.cfg.name.clone(),
                namespaces: t.attached.len() as u64,
                limit_reached: t.limit_reached,
            })
            .collect()
    }
}

impl Table {
    /// Take the watcher's events in; true if a running target was renamed or let go.
    fn take(&mut self, events: Vec<Event>, mut targets: Option<&mut dyn Attach>) -> bool {
        let mut changed = false;
        for ev in events {
            match ev {
                Event::Appeared { ns, label } => {
                    log::debug!("discover {:?}: found {} ({})", self.cfg.name, ns.path.display(), label.value);
                    for note in &label.notes {
                        log::debug!("discover {:?}: {}: {note}", self.cfg.name, label.value);
                    }
                    if let Err(e) = self.open(&ns).and_then(|n| self.links.watch(ns.id.ino, &n)) {
                        log::debug!("discover {:?}: {e:#}; its interfaces are looked for now and then", self.cfg.name);
                    }
                    let w = Waiting { ns, label: label.value, due: Instant::now(), why: None, tries: 0 };
                    self.waiting.insert(w.ns.id, w);
                }
                Event::Gone { id, label } => {
                    self.links.unwatch(id.ino);
                    self.waiting.remove(&id);
                    self.over.remove(&id);
                    if let (Some(a), Some(targets)) = (self.attached.remove(&id), targets.as_deref_mut()) {
                        log::info!("discover {:?}: {label} is gone; detached", self.cfg.name);
                        targets.release(a.id);
                        changed = true;
                    }
                }
                Event::Renamed { id, label } => {
                    if let Some(w) = self.waiting.get_mut(&id) {
                        w.label = label.value.clone();
                    }
                    if let Some(o) = self.over.get_mut(&id) {
                        o.1 = label.value.clone();
                    }
                    if let (Some(a), Some(targets)) = (self.attached.get_mut(&id), targets.as_deref_mut()) {
                        log::info!("discover {:?}: {} is {}", self.cfg.name, a.label, label.value);
                        targets.rename(a.id, &label.value);
                        a.label = label.value;
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// Interfaces appeared or went in namespaces found: a waiting one is
    /// looked at now, an attached one grows now.
    fn links_changed(&mut self, targets: &mut dyn Attach) -> bool {
        let mut changed = false;
        for ino in self.links.drain() {
            if let Some(w) = self.waiting.values_mut().find(|w| w.ns.id.ino == ino) {
                w.due = Instant::now();
            }
            if let Some(a) = self.attached.values().find(|a| a.ns.id.ino == ino) {
                changed |= self.grow_one(a, targets);
            }
        }
        changed
    }

    /// The namespace `id` as the watcher holds it open.
    fn open(&self, ns: &Namespace) -> Result<Netns> {
        let fd = self.watcher.fd(ns.id).ok_or_else(|| anyhow::anyhow!("{} is no longer held", ns.path.display()))?;
        Ok(Netns::held(&ns.path, fd.try_clone_to_owned()?))
    }

    fn attach_due(&mut self, targets: &mut dyn Attach, deadline: Instant) -> bool {
        let now = Instant::now();
        let due: Vec<NsId> = self.waiting.iter().filter(|(_, w)| w.due <= now).map(|(id, _)| *id).collect();
        let mut changed = false;
        for id in due {
            if Instant::now() >= deadline {
                break;
            }
            let Some(mut w) = self.waiting.remove(&id) else { continue };
            if self.attached.len() >= self.cfg.max_namespaces as usize {
                self.limit_reached += 1;
                log::warn!(
                    "discover {:?}: {} not attached: max_namespaces ({}) are attached already",
                    self.cfg.name,
                    w.label,
                    self.cfg.max_namespaces
                );
                self.over.insert(id, (w.ns, w.label));
                changed = true;
                continue;
            }
            let result = if targets.covers(id.ino, w.ns.file.as_deref()) {
                Err(anyhow::anyhow!("another target counts in it already"))
            } else {
                self.open(&w.ns).and_then(|netns| targets.attach(&self.cfg, netns, &w.label))
            };
            match result {
                Ok(Some(tid)) => {
                    log::info!(
                        "discover {:?}: attached to {} ({}; container {:?})",
                        self.cfg.name,
                        w.ns.path.display(),
                        plural(targets.interfaces(tid), "interface"),
                        w.label
                    );
                    self.attached.insert(id, Claimed { ns: w.ns, id: tid, label: w.label });
                    changed = true;
                }
                other => {
                    let why = match other {
                        Err(e) => format!("{e:#}"),
                        _ => "no matching interface yet".to_string(),
                    };
                    if w.why.as_deref() != Some(why.as_str()) {
                        log::debug!("discover {:?}: {} waits: {why}", self.cfg.name, w.label);
                        w.why = Some(why);
                    }
                    w.tries += 1;
                    w.due = Instant::now() + retry_after(w.tries);
                    self.waiting.insert(id, w);
                }
            }
        }
        // Room again: those over the limit wait their turn.
        while self.attached.len() + self.waiting.len() < self.cfg.max_namespaces as usize {
            let Some(id) = self.over.keys().next().copied() else { break };
            if let Some((ns, label)) = self.over.remove(&id) {
                self.waiting.insert(id, Waiting { ns, label, due: Instant::now(), why: None, tries: 0 });
            }
        }
        changed
    }

    /// Namespaces whose every interface went: let go, and waiting again.
    fn lose_emptied(&mut self, targets: &mut dyn Attach) -> bool {
        let empty: Vec<NsId> =
            self.attached.iter().filter(|(_, a)| targets.interfaces(a.id) == 0).map(|(id, _)| *id).collect();
        for id in &empty {
            if let Some(a) = self.attached.remove(id) {
                targets.release(a.id);
                let w = Waiting { ns: a.ns, label: a.label, due: Instant::now() + retry_after(0), why: None, tries: 0 };
                self.waiting.insert(*id, w);
            }
        }
        !empty.is_empty()
    }

    fn grow(&mut self, targets: &mut dyn Attach) -> bool {
        let mut changed = false;
        for a in self.attached.values() {
            changed |= self.grow_one(a, targets);
        }
        changed
    }

    /// Attach interfaces that appeared in `a` since; true if there were any.
    fn grow_one(&self, a: &Claimed, targets: &mut dyn Attach) -> bool {
        match self.open(&a.ns).and_then(|n| targets.grow(a.id, &self.cfg, n)) {
            Ok(true) => {
                log::info!("discover {:?}: {}: new interfaces attached", self.cfg.name, a.label);
                true
            }
            Ok(false) => false,
            Err(e) => {
                log::debug!("discover {:?}: {}: {e:#}", self.cfg.name, a.label);
                false
            }
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
