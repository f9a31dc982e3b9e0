//! Namespaces appearing and disappearing, for a poll loop: the attacher
//! polls `Watcher`'s one fd (an epoll over an inotify and a timerfd) beside
//! its signalfd and calls `drain()` when it is readable. No thread, no async.
//!
//! Events where the kernel offers them: inotify on the netns directories
//! (on the nearest existing ancestor of one that does not exist yet). The
//! kernel has none for a process entering a namespace (unshare, setns,
//! clone), so /proc is scanned every `scan_interval` when `processes` is set.
//! A mount or unmount makes no inotify event, and `ip netns add` creates
//! the file before it mounts the namespace on it: the mount table's own
//! event (POLLPRI on /proc/self/mountinfo) is watched too, and a file seen
//! before its mount is also looked at again every RETRY for up to PENDING_FOR.
//!
//! Each namespace found is held open until it is gone: nsfs inode numbers
//! are reused once a namespace is freed, and holding it means an inode seen
//! again is the same namespace, not a new one that got its number.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::{enumerate, label, Label, Namespace, NsId, Origin, Settings};
use crate::netns::Netns;

const RETRY: Duration = Duration::from_millis(100);
const PENDING_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Appeared {
        ns: Namespace,
        label: Label,
    },
    Gone {
        id: NsId,
        label: String,
    },
    /// A better name became known (podman creates the namespace file before
    /// the container's first process is in it).
    Renamed {
        id: NsId,
        label: Label,
    },
}

struct Tracked {
    ns: Namespace,
    label: Label,
    fd: OwnedFd,
}

pub struct Watcher {
    settings: Settings,
    epoll: Epoll,
    inotify: Inotify,
    timer: TimerFd,
    /// Path watched → its watch; a netns dir itself, or the nearest
    /// existing ancestor of one that does not exist yet.
    watches: HashMap<PathBuf, WatchDescriptor>,
    known: BTreeMap<NsId, Tracked>,
    /// Files in a netns dir that are not a namespace, and since when: looked
    /// at again while younger than PENDING_FOR (an empty file left behind
    /// must not cost a rescan every RETRY forever).
    pending: HashMap<PathBuf, Instant>,
    next_scan: Option<Instant>,
    problems: Vec<String>,
    /// Directories inotify refused (the watch limit): kept across rescans.
    watch_problems: Vec<String>,
    /// Readable (POLLPRI) when the mount table changed; None without netns dirs.
    mounts: Option<std::fs::File>,
}

const DIR_EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);
const ANCESTOR_EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

impl AsFd for Watcher {
    /// Readable when `drain()` has something to look at.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

/// What to watch for `dir`: itself if it is a directory, else its nearest
/// existing ancestor (for the creation of the next component).
fn watch_point(dir: &Path) -> Option<(PathBuf, AddWatchFlags)> {
    if dir.is_dir() {
        return Some((dir.to_path_buf(), DIR_EVENTS));
    }
    dir.ancestors().skip(1).find(|a| a.is_dir()).map(|a| (a.to_path_buf(), ANCESTOR_EVENTS))
}

fn open_ns(ns: &Namespace) -> Result<OwnedFd> {
    let netns = Netns::open(&ns.path)?;
    if netns.dev_ino()? != (ns.id.dev, ns.id.ino) {
        anyhow::bail!("{} changed while it was opened", ns.path.display());
    }
    let fd = netns.into_fd();
    if ns.file.is_some() {
        return Ok(unpinned(&fd, ns.id).unwrap_or(fd));
    }
    Ok(fd)
}

/// The same namespace opened through nsfs's own mount rather than the bind
/// mount in a netns dir: an fd opened through a mount keeps it busy, and a
/// plain `umount` of /run/netns/NAME (anything but MNT_DETACH, which ip,
/// podman and docker use) would fail while the daemon holds it. Entering
/// needs CAP_SYS_ADMIN; without it, None and the caller keeps its fd.
fn unpinned(fd: &OwnedFd, id: NsId) -> Option<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            let own = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/proc/thread-self/ns/net")
                .ok()?;
            let m = own.metadata().ok()?;
            ((m.dev(), m.ino()) == (id.dev, id.ino)).then(|| own.into())
        })
        .join()
        .ok()
        .flatten()
    })
}

impl Watcher {
    /// Start watching; the namespaces present now come back as `Appeared`.
    pub fn new(settings: Settings) -> Result<(Watcher, Vec<Event>)> {
        let flags = InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC;
        let inotify = Inotify::init(flags).context("inotify_init1")?;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)
            .context("timerfd_create")?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        epoll.add(inotify.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 0)).context("epoll_ctl inotify")?;
        epoll.add(timer.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 1)).context("epoll_ctl timerfd")?;
        let mut w = Watcher {
            settings,
            epoll,
            inotify,
            timer,
            watches: HashMap::new(),
            known: BTreeMap::new(),
            pending: HashMap::new(),
            next_scan: None,
            problems: Vec::new(),
            watch_problems: Vec::new(),
            mounts: None,
        };
        if !w.settings.netns_dirs.is_empty() {
            let mounts = std::fs::File::open("/proc/self/mountinfo").context("opening /proc/self/mountinfo")?;
            let pri = EpollFlags::EPOLLPRI | EpollFlags::EPOLLERR;
            w.epoll.add(mounts.as_fd(), EpollEvent::new(pri, 2)).context("epoll_ctl mountinfo")?;
            w.mounts = Some(mounts);
        }
        w.arm_watches();
        let events = w.rescan()?;
        w.arm_timer()?;
        Ok((w, events))
    }

    /// What changed since the last call (or `new`). Call it when the fd is
    /// readable; a call without a cause costs one rescan, nothing else.
    pub fn drain(&mut self) -> Result<Vec<Event>> {
        let timer_fired = self.timer.wait().is_ok();
        let mut dirs_changed = false;
        loop {
            match self.inotify.read_events() {
                Ok(evs) if !evs.is_empty() => {
                    for ev in evs {
                        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                            self.watches.retain(|_, wd| *wd != ev.wd);
                        }
                        dirs_changed = true;
                    }
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e).context("reading inotify events"),
            }
        }
        let now = Instant::now();
        let retry_due = self.retrying();
        let scan_due = self.next_scan.is_some_and(|t| now >= t);
        // Empty epoll's ready list, so the fd is not left readable for
        // sources already read. The mount table reports a change once per
        // reader, and the caller's poll on our fd may be the reader that saw
        // it: so a wake-up with no other cause is taken as a mount change.
        let mut ready = [EpollEvent::empty(); 4];
        let _ = self.epoll.wait(&mut ready, nix::poll::PollTimeout::ZERO);
        let mounts_changed = self.mounts.is_some() && !timer_fired && !dirs_changed;
        let events = if dirs_changed || retry_due || scan_due || mounts_changed {
            if dirs_changed {
                self.arm_watches();
            }
            self.rescan()?
        } else {
            Vec::new()
        };
        self.arm_timer()?;
        Ok(events)
    }

    /// The namespaces known now, with their labels.
    pub fn namespaces(&self) -> impl Iterator<Item = (&Namespace, &Label)> {
        self.known.values().map(|t| (&t.ns, &t.label))
    }

    /// The open namespace `id` (to enter it without opening a path again).
    pub fn fd(&self, id: NsId) -> Option<BorrowedFd<'_>> {
        self.known.get(&id).map(|t| t.fd.as_fd())
    }

    /// Paths watched with inotify now (dirs, or ancestors of missing ones).
    pub fn watched(&self) -> Vec<&Path> {
        self.watches.keys().map(PathBuf::as_path).collect()
    }

    /// What the last scan could not read, for a log line or a metric.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Watch every netns dir, or its nearest existing ancestor; again until
    /// nothing moves, since a dir can appear between looking and watching.
    fn arm_watches(&mut self) {
        self.watch_problems.clear();
        for _ in 0..4 {
            let mut want: HashMap<PathBuf, AddWatchFlags> = HashMap::new();
            for dir in &self.settings.netns_dirs {
                if let Some((p, f)) = watch_point(dir) {
                    *want.entry(p).or_insert(AddWatchFlags::empty()) |= f;
                }
            }
            let stale: Vec<PathBuf> = self.watches.keys().filter(|p| !want.contains_key(*p)).cloned().collect();
            for p in stale {
                if let Some(wd) = self.watches.remove(&p) {
                    let _ = self.inotify.rm_watch(wd);
                }
            }
            let mut added = false;
            for (p, flags) in want {
                if self.watches.contains_key(&p) {
                    continue;
                }
                // Replacing the mask of an existing watch on the same inode is what we want.
                match self.inotify.add_watch(&p, flags) {
                    Ok(wd) => {
                        self.watches.insert(p, wd);
                        added = true;
                    }
                    Err(e) => {
                        let msg = format!("inotify on {}: {e}", p.display());
                        if !self.watch_problems.contains(&msg) {
                            self.watch_problems.push(msg);
                        }
                    }
                }
            }
            if !added {
                return;
            }
        }
    }

    fn rescan(&mut self) -> Result<Vec<Event>> {
        let scan = enumerate(&self.settings)?;
        let now = Instant::now();
        self.problems = self.watch_problems.iter().chain(&scan.errors).cloned().collect();
        if scan.unreadable > 0 {
            self.problems.push(format!("{} processes' namespaces were not readable (permission)", scan.unreadable));
        }
        if self.settings.netns_dirs.iter().any(|d| watch_point(d).is_none()) {
            self.problems.push("a netns dir has no existing ancestor to watch".into());
        }
        let mut pending = HashMap::new();
        for p in scan.pending {
            let since = self.pending.get(&p).copied().unwrap_or(now);
            pending.insert(p, since);
        }
        self.pending = pending;

        let mut events = Vec::new();
        let present: Vec<NsId> = scan.namespaces.iter().map(|n| n.id).collect();
        let gone: Vec<NsId> = self.known.keys().filter(|id| present.binary_search(id).is_err()).copied().collect();
        for id in gone {
            if let Some(t) = self.known.remove(&id) {
                events.push(Event::Gone { id, label: t.label.value });
            }
        }
        for ns in scan.namespaces {
            match self.known.get_mut(&ns.id) {
                Some(t) => {
                    let fallback = matches!(t.label.origin, Origin::File | Origin::Inode);
                    let holders_changed = t.ns.pids != ns.pids;
                    t.ns = ns;
                    if fallback && holders_changed && !t.ns.pids.is_empty() {
                        let l = label(&t.ns, &self.settings.roots);
                        if l.value != t.label.value {
                            t.label = l.clone();
                            events.push(Event::Renamed { id: t.ns.id, label: l });
                        }
                    }
                }
                None => match open_ns(&ns) {
                    Ok(fd) => {
                        let l = label(&ns, &self.settings.roots);
                        events.push(Event::Appeared { ns: ns.clone(), label: l.clone() });
                        self.known.insert(ns.id, Tracked { ns, label: l, fd });
                    }
                    // Gone already, or replaced: the next scan sees what is there.
                    Err(e) => self.problems.push(format!("{e:#}")),
                },
            }
        }
        self.next_scan = self.settings.processes.then(|| now + self.settings.scan_interval);
        Ok(events)
    }

    fn retrying(&self) -> bool {
        self.pending.values().any(|since| since.elapsed() < PENDING_FOR)
    }

    /// One shot at the earliest of: the next /proc scan, the next look at
    /// files not mounted yet. Disarmed when neither is due.
    fn arm_timer(&mut self) -> Result<()> {
        let retry = self.retrying().then(|| Instant::now() + RETRY);
        let when = match (self.next_scan, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match when {
            // A zero one-shot disarms a timerfd: never less than a microsecond.
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now()).max(Duration::from_micros(1));
                self.timer.set(Expiration::OneShot(TimeSpec::from_duration(d)), TimerSetTimeFlags::empty())
            }
            None => self.timer.unset(),
        }
        .context("timerfd_settime")
    }
}
