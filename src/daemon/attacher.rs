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

use super::child::{describe_exit, judge_pong, reap, stop_child, MESSAGE_DEADLINE};
use super::discovery::Discovery;
use super::ipc::{Channel, Msg, Step};
use super::targets::{Prepared, Targets};
use super::Reloader;
use crate::config::Config;
use crate::privileged::privsep;
use crate::topology::Topology;

/// How often the attacher asks the exporter for a map read when systemd has no watchdog.
const DEFAULT_PING: Duration = Duration::from_secs(10);
/// How often static targets' namespace files are looked at (targets/follow.rs).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How long one turn of the loop attaches discovered namespaces before it
/// looks at signals and the exporter again.
const DISCOVERY_BATCH: Duration = Duration::from_millis(250);

/// Everything the attacher owns.
pub(super) struct Attacher {
    cfg: Config,
    targets: Targets,
    /// Started by `main`, after the configured targets are attached.
    discovery: Option<Discovery>,
}

impl Attacher {
    /// Nothing attached yet: `main` attaches what was prepared before the fork.
    pub(super) fn new(cfg: Config, targets: Targets) -> Attacher {
        Attacher { cfg, targets, discovery: None }
    }

    fn topology(&self) -> Topology {
        let mut t = self.targets.topology();
        t.discovery = self.discovery.as_ref().map(Discovery::stats).unwrap_or_default();
        t
    }

    /// Drain the watchers `readable` names and attach what is due, for at
    /// most `batch`; true if the topology changed.
    fn discover(&mut self, readable: &[usize], batch: Duration) -> bool {
        let Some(d) = self.discovery.as_mut() else { return false };
        let mut changed = false;
        for &i in readable {
            changed |= d.drain(i, &mut self.targets);
        }
        changed | d.work(&mut self.targets, Instant::now() + batch)
    }

    /// Apply a new configuration's targets: attach the new and changed ones
    /// first (if one fails, nothing changes), then detach the removed ones.
    /// Unchanged targets are not touched, so their counters continue.
    fn apply(&mut self, new: Config) -> Result<String> {
        for key in restart_needed(&self.cfg, &new) {
            log::warn!("reload: {key} changed; that takes effect only after a restart (keeping the running value)");
        }
        let current = self.targets.current();
        let mut fresh = Vec::new();
        for t in new.targets.iter().filter(|t| !current.contains(t)) {
            let id = self.targets.free_id(&fresh)?;
            fresh.push(self.targets.prepare(t, id)?);
        }
        // A changed [[discover]] starts over: new watchers first (if they
        // fail, nothing changes), the old tables' namespaces let go after.
        let old_discover = self.discovery.as_ref().map(Discovery::config).unwrap_or_default();
        let restart = (new.discover != old_discover).then(|| Discovery::start(&new.discover)).transpose()?;
        if let Some(d) = self.discovery.as_mut() {
            d.yield_to(&new.targets, &mut self.targets);
        }
        let c = self.targets.apply(fresh, &new.targets)?;
        self.cfg.targets = new.targets;
        let mut summary = format!("reloaded: {} targets unchanged, {} added, {} removed", c.kept, c.added, c.removed);
        if let Some(fresh) = restart {
            if let Some(mut old) = self.discovery.replace(fresh) {
                old.release_all(&mut self.targets);
            }
            self.cfg.discover = new.discover;
            summary.push_str("; discovery restarted");
        }
        Ok(summary)
    }
}

/// Settings that size the maps, specialise the programs or belong to the
/// exporter process: a reload logs that they need a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            v.push(key);
        }
    };
    check(old.user != new.user, "user");
    check(old.web.listen_address != new.web.listen_address, "web.listen_address");
    check(old.web.telemetry_path != new.web.telemetry_path, "web.telemetry_path");
    check(old.web.max_requests != new.web.max_requests, "web.max_requests");
    check(old.metrics.scrape_interval != new.metrics.scrape_interval, "metrics.scrape_interval");
    check(old.metrics.buckets != new.metrics.buckets, "metrics.buckets");
    check(old.metrics.status_label != new.metrics.status_label, "metrics.status_label");
    check(old.metrics.max_series != new.metrics.max_series, "metrics.max_series");
    check(old.metrics.max_series_per_target != new.metrics.max_series_per_target, "metrics.max_series_per_target");
    check(old.bpf.attach_mode != new.bpf.attach_mode, "bpf.attach_mode");
    check(old.bpf.flow_table_size != new.bpf.flow_table_size, "bpf.flow_table_size");
    v
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        log::debug!("sd_notify: {e}");
    }
}

/// Why the attacher's loop ended.
enum Exit {
    /// SIGTERM or SIGINT.
    Stop,
    /// The exporter died; it has been reaped.
    ChildGone(String),
}

pub(super) fn main(
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
        ch.set_send_timeout(Duration::from_secs(5))?;
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
        event_loop(&mut att, &mut ch, child, &sfd, &reload)
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

fn event_loop(att: &mut Attacher, ch: &mut Channel, child: Pid, sfd: &SignalFd, reload: &Reloader) -> Result<Exit> {
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec));
    let ping_every = watchdog.map(|w| w / 2).unwrap_or(DEFAULT_PING);
    let mut next_ping = Instant::now() + ping_every;
    let mut ready = false;
    let mut reload_pending = false;
    let mut seq = 0u64;
    // The ping whose answer feeds the watchdog; a newer ping replaces it.
    let mut outstanding = None;
    let mut last_status = String::new();
    let mut next_follow = Instant::now() + FOLLOW_EVERY;

    loop {
        let wake = next_ping.min(next_follow);
        let wake = ch.partial_deadline(MESSAGE_DEADLINE).map_or(wake, |d| d.min(wake));
        let wake = att.discovery.as_ref().and_then(Discovery::next_due).map_or(wake, |d| d.min(wake));
        let timeout = wake.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(ch.as_fd(), PollFlags::POLLIN)];
        let watchers = att.discovery.as_ref().map(Discovery::fds).unwrap_or_default();
        fds.extend(watchers.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let has = |i: usize, f: PollFlags| fds[i].revents().is_some_and(|r| r.intersects(f));
        let signalled = has(0, PollFlags::POLLIN);
        let from_child = has(1, PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR);
        let readable: Vec<usize> = (0..watchers.len()).filter(|i| has(2 + i, PollFlags::POLLIN)).collect();
        drop(fds);
        drop(watchers);

        let mut child_maybe_gone = false;
        if signalled {
            while let Some(si) = sfd.read_signal().context("reading the signalfd")? {
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(s @ (Signal::SIGTERM | Signal::SIGINT)) => {
                        log::info!("{s}: shutting down");
                        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
                        return Ok(Exit::Stop);
                    }
                    Ok(Signal::SIGHUP) => reload_pending = true,
                    Ok(Signal::SIGCHLD) => child_maybe_gone = true,
                    _ => {}
                }
            }
        }

        // Never a blocking read: a child that sends half a message must not
        // hold up SIGTERM and SIGHUP (it gets MESSAGE_DEADLINE to finish it).
        while let Some(step) =
            if from_child { ch.try_recv().context("a malformed message from the exporter")? } else { None }
        {
            match step {
                Step::Partial => {}
                Step::Eof => return Ok(Exit::ChildGone(reap(child))),
                Step::Msg(Msg::Ready { series }) if !ready => {
                    ready = true;
                    log::info!(
                        "attached {} programs for {} targets; the exporter serves metrics on {}{}",
                        att.targets.programs(),
                        att.targets.len(),
                        att.cfg.web.listen_address,
                        att.cfg.web.telemetry_path
                    );
                    last_status = status_line(att, series);
                    notify(&[NotifyState::Ready, NotifyState::Status(&last_status)]);
                    next_ping = Instant::now() + ping_every;
                }
                Step::Msg(Msg::Pong { seq, ok, series, error }) => {
                    let n = judge_pong(&mut outstanding, (seq, ok, series, &error), |s| status_line(att, s));
                    if let Some(w) = &n.warning {
                        log::warn!("{w}");
                    }
                    if n.watchdog && watchdog.is_some() {
                        notify(&[NotifyState::Watchdog]);
                    }
                    if let Some(status) = n.status.filter(|s| *s != last_status) {
                        notify(&[NotifyState::Status(&status)]);
                        last_status = status;
                    }
                }
                Step::Msg(m) => log::warn!("ignoring an unexpected {} message from the exporter", m.kind()),
            }
        }
        if ch.stalled(MESSAGE_DEADLINE) {
            anyhow::bail!("the exporter sent part of a message and not the rest within {MESSAGE_DEADLINE:?}");
        }

        if child_maybe_gone {
            if let Ok(st) = waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                if st != WaitStatus::StillAlive {
                    return Ok(Exit::ChildGone(describe_exit(st)));
                }
            }
        }

        if reload_pending && ready {
            reload_pending = false;
            do_reload(att, ch, reload)?;
            last_status.clear();
            next_ping = Instant::now(); // fresh STATUS= with the new series count
        }

        let mut changed = false;
        if Instant::now() >= next_follow {
            if let Some(what) = att.targets.follow_namespaces() {
                log::info!("{what}");
                changed = true;
            }
            next_follow = Instant::now() + FOLLOW_EVERY;
        }
        changed |= att.discover(&readable, DISCOVERY_BATCH);
        if changed {
            ch.send(&Msg::Topology(att.topology())).context("sending the topology to the exporter")?;
            next_ping = Instant::now(); // fresh STATUS=
        }

        if Instant::now() >= next_ping {
            if ready {
                seq += 1;
                outstanding = Some(seq);
                if let Err(e) = ch.send(&Msg::Ping { seq }) {
                    log::debug!("ping: {e:#}");
                }
            }
            next_ping = Instant::now() + ping_every;
        }
    }
}

fn status_line(att: &Attacher, series: u64) -> String {
    format!("{} targets, {} programs attached; {series} series", att.targets.len(), att.targets.programs())
}

fn do_reload(att: &mut Attacher, ch: &Channel, reload: &Reloader) -> Result<()> {
    log::info!("SIGHUP: reloading the configuration");
    let mut states = vec![NotifyState::Reloading];
    // For Type=notify-reload (systemd 253+); older systemd ignores it.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    let status = match reload().and_then(|new| att.apply(new)) {
        Ok(summary) => {
            log::info!("{summary}");
            ch.send(&Msg::Topology(att.topology())).context("sending the topology to the exporter")?;
            summary
        }
        Err(e) => {
            log::error!("reload failed, keeping the running configuration: {e:#}");
            format!("reload failed: {e}")
        }
    };
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    Ok(())
}
