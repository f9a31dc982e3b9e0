//! The attacher process: keeps the programs attached, answers SIGHUP by
//! attaching new targets and detaching removed ones, feeds systemd (READY,
//! STATUS, WATCHDOG, RELOADING, STOPPING) from the exporter's answers.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use sd_notify::NotifyState;

use crate::child::{describe_exit, judge_pong, reap, stop_child, MESSAGE_DEADLINE};
use crate::discover::Discovery;
use crate::reload::Reloader;
use crate::state::{notify, Attacher};
use crate::targets::Prepared;
use hge_shared::ipc::{Channel, Msg, Recv};
use hge_shared::privsep;

/// How often the attacher asks the exporter for a map read when systemd has no watchdog.
const DEFAULT_PING: Duration = Duration::from_secs(10);
/// How often static targets' namespace files are looked at (targets/follow.rs).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How long one turn of the loop attaches discovered namespaces before it
/// looks at signals and the exporter again.
const DISCOVERY_BATCH: Duration = Duration::from_millis(250);

/// Why the attacher's loop ended.
enum Exit {
    /// SIGTERM or SIGINT.
    Stop,
    /// The exporter died; it has been reaped.
    ChildGone(String),
}

pub(crate) fn main(
    mut att: Attacher,
    prepared: Vec<Prepared>,
    mut ch: Channel,
    child: Pid,
    mask: &SigSet,
    reload: Reloader,
) -> Result<()> {
    let result = (|| -> Result<Exit> {
        privsep::narrow_attacher()?;
        let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")?;
        notify(&[NotifyState::Status("attaching")]);
        prepared.iter().for_each(Prepared::remove_left_behind);
        att.targets.apply(prepared, &[])?;
        // What exists already is attached before READY, however long it takes.
        att.discovery = Some(Discovery::start(&att.cfg.discover)?);
        att.discover(&[], Duration::from_secs(3600));
        if let Err(e) = ch.send(&Msg::Topology(att.topology())) {
            // It died before it could serve; its own message says why.
            return Ok(Exit::ChildGone(format!("{} (sending it the topology: {e:#})", reap(child))));
        }
        Loop::new(&mut att, &mut ch, child, &reload).run(&sfd)
    })();

    let child_reaped = matches!(result, Ok(Exit::ChildGone(_)));
    if !child_reaped {
        stop_child(&ch, child);
    }
    drop(ch);
    let detached = att.targets.detach_all();
    match (result, detached) {
        (Ok(Exit::Stop), Ok(n)) => {
            log::info!("detached {n} programs; exiting");
            Ok(())
        }
        (Ok(Exit::Stop), Err(e)) => Err(e),
        (Ok(Exit::ChildGone(why)), _) => Err(anyhow!("{why}; detached every program")),
        (Err(e), _) => Err(e),
    }
}

/// When the loop next has something to do of its own.
struct Deadlines {
    /// Ask the exporter for a map read (the watchdog's and STATUS='s question).
    ping: Instant,
    /// Look at the configured targets' namespace files (targets/follow.rs).
    follow: Instant,
}

/// The attacher's state between two wake-ups: one handler for a signal, one
/// for a message from the exporter, one for a tick (a deadline passed, or a
/// discovery watcher has news).
struct Loop<'a> {
    att: &'a mut Attacher,
    ch: &'a mut Channel,
    child: Pid,
    reload: &'a Reloader,
    /// The exporter has read the maps once and serves: READY=1 was sent.
    ready: bool,
    /// A SIGHUP came; applied once the exporter is ready.
    reload_pending: bool,
    /// The ping whose answer feeds the watchdog; a newer ping replaces it.
    outstanding: Option<u64>,
    seq: u64,
    at: Deadlines,
    /// systemd's watchdog interval, if it has one.
    watchdog: Option<Duration>,
    ping_every: Duration,
    last_status: String,
}

impl<'a> Loop<'a> {
    fn new(att: &'a mut Attacher, ch: &'a mut Channel, child: Pid, reload: &'a Reloader) -> Loop<'a> {
        let mut usec = 0u64;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec));
        let ping_every = watchdog.map(|w| w / 2).unwrap_or(DEFAULT_PING);
        if let Some(w) = watchdog {
            log::info!("systemd watchdog of {w:?}: the exporter's map reads are checked every {ping_every:?}");
        }
        let now = Instant::now();
        Loop {
            att,
            ch,
            child,
            reload,
            ready: false,
            reload_pending: false,
            outstanding: None,
            seq: 0,
            at: Deadlines { ping: now + ping_every, follow: now + FOLLOW_EVERY },
            watchdog,
            ping_every,
            last_status: String::new(),
        }
    }

    fn run(&mut self, sfd: &SignalFd) -> Result<Exit> {
        loop {
            let woke = self.wait(sfd)?;
            if woke.signalled {
                while let Some(si) = sfd.read_signal().context("reading the signalfd")? {
                    if let Some(exit) = self.on_signal(si.ssi_signo as i32) {
                        return Ok(exit);
                    }
                }
            }
            // Never a blocking read: a child that sends half a message must not
            // hold up SIGTERM and SIGHUP (it gets MESSAGE_DEADLINE to finish it).
            if woke.from_child {
                loop {
                    match self.ch.recv().context("a malformed message from the exporter")? {
                        Recv::Msg(m) => self.on_message(m),
                        Recv::Partial => {}
                        Recv::Empty => break,
                        Recv::Closed => return Ok(Exit::ChildGone(reap(self.child))),
                    }
                }
            }
            self.on_tick(&woke.readable)?;
        }
    }

    /// Sleep in poll until a signal, a message, a discovery watcher or the
    /// next deadline.
    fn wait(&self, sfd: &SignalFd) -> Result<Woke> {
        let wake = [Some(self.at.ping), Some(self.at.follow), self.ch.partial_deadline(MESSAGE_DEADLINE)]
            .into_iter()
            .chain([self.att.discovery.as_ref().and_then(Discovery::next_due)])
            .flatten()
            .min()
            .unwrap_or_else(Instant::now);
        let timeout = PollTimeout::try_from(wake.saturating_duration_since(Instant::now())).unwrap_or(PollTimeout::MAX);
        let mut fds =
            vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(self.ch.as_fd(), PollFlags::POLLIN)];
        let watchers = self.att.discovery.as_ref().map(Discovery::fds).unwrap_or_default();
        fds.extend(watchers.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let has = |i: usize, f: PollFlags| fds[i].revents().is_some_and(|r| r.intersects(f));
        Ok(Woke {
            signalled: has(0, PollFlags::POLLIN),
            from_child: has(1, PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
            readable: (0..watchers.len()).filter(|i| has(2 + i, PollFlags::POLLIN)).collect(),
        })
    }

    /// SIGTERM and SIGINT stop; SIGHUP reloads once the exporter is ready; SIGCHLD may mean it died.
    fn on_signal(&mut self, signo: i32) -> Option<Exit> {
        match Signal::try_from(signo) {
            Ok(s @ (Signal::SIGTERM | Signal::SIGINT)) => {
                log::info!("{s}: shutting down");
                notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
                Some(Exit::Stop)
            }
            Ok(Signal::SIGHUP) => {
                self.reload_pending = true;
                None
            }
            Ok(Signal::SIGCHLD) => match waitpid(self.child, Some(WaitPidFlag::WNOHANG)) {
                Ok(st) if st != WaitStatus::StillAlive => Some(Exit::ChildGone(describe_exit(st))),
                _ => None,
            },
            _ => None,
        }
    }

    /// The exporter is ready (READY=1), or answers a ping (WATCHDOG=1, STATUS=).
    fn on_message(&mut self, m: Msg) {
        match m {
            Msg::Ready { series } if !self.ready => {
                self.ready = true;
                let (att, web) = (&self.att, &self.att.cfg.web);
                log::info!(
                    "attached {} programs for {} targets; the exporter serves metrics on {}{}",
                    att.targets.programs(),
                    att.targets.len(),
                    web.listen_address,
                    web.telemetry_path
                );
                self.last_status = status_line(self.att, series);
                notify(&[NotifyState::Ready, NotifyState::Status(&self.last_status)]);
                self.at.ping = Instant::now() + self.ping_every;
            }
            Msg::Pong { seq, ok, series, error } => {
                let att = &*self.att;
                let n = judge_pong(&mut self.outstanding, (seq, ok, series, &error), |s| status_line(att, s));
                if let Some(w) = &n.warning {
                    log::warn!("{w}");
                }
                if n.watchdog && self.watchdog.is_some() {
                    notify(&[NotifyState::Watchdog]);
                }
                if let Some(status) = n.status.filter(|s| *s != self.last_status) {
                    notify(&[NotifyState::Status(&status)]);
                    self.last_status = status;
                }
            }
            m => log::warn!("ignoring an unexpected {} message from the exporter", m.kind()),
        }
    }

    /// What is due: a pending reload, the namespaces to follow and discover
    /// (`readable`: discovery watchers with news), a ping.
    fn on_tick(&mut self, readable: &[usize]) -> Result<()> {
        if self.ch.partial_deadline(MESSAGE_DEADLINE).is_some_and(|d| Instant::now() > d) {
            anyhow::bail!("the exporter sent part of a message and not the rest within {MESSAGE_DEADLINE:?}");
        }
        if self.reload_pending && self.ready {
            self.reload_pending = false;
            crate::reload::run(self.att, self.ch, self.reload)?;
            self.last_status.clear();
            self.at.ping = Instant::now(); // fresh STATUS= with the new series count
        }
        let mut changed = false;
        if Instant::now() >= self.at.follow {
            if let Some(what) = self.att.targets.follow_namespaces() {
                log::info!("{what}");
                changed = true;
            }
            self.at.follow = Instant::now() + FOLLOW_EVERY;
        }
        changed |= self.att.discover(readable, DISCOVERY_BATCH);
        if changed {
            self.ch.send(&Msg::Topology(self.att.topology())).context("sending the topology to the exporter")?;
            self.at.ping = Instant::now(); // fresh STATUS=
        }
        if Instant::now() >= self.at.ping {
            if self.ready {
                self.seq += 1;
                self.outstanding = Some(self.seq);
                if let Err(e) = self.ch.send(&Msg::Ping { seq: self.seq }) {
                    log::debug!("ping: {e:#}");
                }
            }
            self.at.ping = Instant::now() + self.ping_every;
        }
        Ok(())
    }
}

/// What woke the loop.
struct Woke {
    signalled: bool,
    from_child: bool,
    /// Discovery watchers (their index in `Discovery::fds`) with something to read.
    readable: Vec<usize>,
}

fn status_line(att: &Attacher, series: u64) -> String {
    format!("{} targets, {} programs attached; {series} series", att.targets.len(), att.targets.programs())
}
