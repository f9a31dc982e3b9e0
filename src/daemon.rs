//! Start-up, privilege separation, reload and shutdown.
//!
//! One process starts as root (or with the attacher's capabilities), binds the
//! listen socket, loads every program (the verifier speaks before anything
//! forks), and forks:
//!
//! - the parent, the **attacher**, closes the listen socket, attaches the
//!   programs, and keeps them attached: it owns the TCX links and tc filters,
//!   answers SIGHUP by attaching new targets and detaching removed ones, and
//!   talks to systemd (READY, STATUS, WATCHDOG, RELOADING, STOPPING);
//! - the child, the **exporter**, inherits only the listen socket and the map
//!   fds, switches to an unprivileged user with empty capability sets and
//!   no_new_privs, and only then serves HTTP and reads the maps.
//!
//! They talk over a socketpair (src/ipc.rs); either closing it ends the other.
//! See docs/architecture.md.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use sd_notify::NotifyState;

use crate::attach::{self, Hook, Interface};
use crate::bpf::{hg_series_key, Loader, MapSizes, ProgramConfig, Programs, SharedMaps};
use crate::config::{Config, Target};
use crate::ipc::{AttachedEntry, Channel, InterfaceName, Msg, Step, TargetNames, Topology};
use crate::maps;
use crate::metrics::{self, Attached, Exposition};
use crate::privsep::{self, Account, Kept};
use crate::web;

/// Re-reads the configuration (file plus command-line overrides) on SIGHUP.
pub type Reloader = Box<dyn Fn() -> Result<Config>>;

/// How long the attacher waits for the exporter to exit before SIGKILL.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the attacher asks the exporter for a map read when systemd has no watchdog.
const DEFAULT_PING: Duration = Duration::from_secs(10);

/// A target whose programs are loaded but not yet attached.
struct Prepared {
    id: u16,
    target: Target,
    interfaces: Vec<Interface>,
    progs: Programs,
}

/// A target whose programs are attached. Dropping it detaches them.
struct Running {
    id: u16,
    target: Target,
    interfaces: Vec<Interface>,
    hooks: Vec<Hook>,
}

fn prepare(loader: &mut Loader, cfg: &Config, target: &Target, id: u16) -> Result<Prepared> {
    attach::check_netns(target)?;
    let interfaces = attach::resolve(target)?;
    let progs = loader
        .load(&ProgramConfig {
            target_id: id,
            status_label: cfg.metrics.status_label,
            buckets_s: cfg.metrics.buckets.clone(),
            ports: target.ports.clone(),
        })
        .with_context(|| format!("target {:?}: loading the BPF programs", target.name))?;
    Ok(Prepared { id, target: target.clone(), interfaces, progs })
}

fn attach_prepared(p: Prepared, cfg: &Config) -> Result<Running> {
    // On error the hooks attached so far are dropped, which detaches them.
    let hooks = attach::attach_target(&p.target, &p.interfaces, &p.progs, cfg.bpf.attach_mode)?;
    // The links and filters hold the programs now; our program fds can go.
    Ok(Running { id: p.id, target: p.target, interfaces: p.interfaces, hooks })
}

/// Everything the attacher owns.
struct Attacher {
    cfg: Config,
    loader: Loader,
    maps: Arc<SharedMaps>,
    targets: Vec<Running>,
}

impl Attacher {
    fn programs(&self) -> usize {
        self.targets.iter().map(|t| t.hooks.len()).sum()
    }

    fn topology(&self) -> Topology {
        let mut topo = Topology::default();
        for t in &self.targets {
            topo.targets.push(TargetNames {
                id: t.id,
                name: t.target.name.clone(),
                interfaces: t
                    .interfaces
                    .iter()
                    .map(|i| InterfaceName { ifindex: i.ifindex, name: i.name.clone() })
                    .collect(),
            });
            for h in &t.hooks {
                topo.attached.push(AttachedEntry::from_attached(&Attached {
                    target: h.target.clone(),
                    interface: h.interface.clone(),
                    direction: h.direction,
                    mode: h.mode,
                }));
            }
        }
        topo
    }

    fn detach_all(&mut self) -> Result<usize> {
        let mut n = 0;
        let mut first_err = None;
        for mut t in self.targets.drain(..) {
            for mut h in t.hooks.drain(..) {
                match h.detach() {
                    Ok(()) => n += 1,
                    Err(e) => {
                        log::error!("{e:#}");
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(n), Err)
    }

    /// Apply a new configuration's targets: attach the new ones first (if one
    /// fails, nothing changes), then detach the removed ones. Unchanged targets
    /// are not touched, so their counters continue.
    fn apply(&mut self, new: Config) -> Result<String> {
        for key in restart_needed(&self.cfg, &new) {
            log::warn!("reload: {key} changed; that takes effect only after a restart (keeping the running value)");
        }
        let mut used: HashSet<u16> = self.targets.iter().map(|t| t.id).collect();
        let mut fresh = Vec::new();
        for t in new.targets.iter().filter(|t| !self.targets.iter().any(|r| &r.target == *t)) {
            let id = (0..=u16::MAX).find(|id| !used.contains(id)).context("no free target id")?;
            used.insert(id);
            let p = prepare(&mut self.loader, &self.cfg, t, id)?;
            fresh.push(attach_prepared(p, &self.cfg)?);
        }
        let added = fresh.len();

        let mut current = std::mem::take(&mut self.targets);
        let mut next = Vec::with_capacity(new.targets.len());
        for t in &new.targets {
            if let Some(i) = current.iter().position(|r| &r.target == t) {
                next.push(current.swap_remove(i));
            } else if let Some(i) = fresh.iter().position(|r| &r.target == t) {
                next.push(fresh.swap_remove(i));
            }
        }
        let removed = current.len();
        for mut r in current {
            log::info!("reload: detaching target {:?}", r.target.name);
            for mut h in r.hooks.drain(..) {
                if let Err(e) = h.detach() {
                    log::error!("{e:#}");
                }
            }
            // Its series would otherwise hold map capacity, unlabelled, forever.
            if let Err(e) = forget_series(&self.maps, r.id) {
                log::warn!("reload: removing the series of target {:?}: {e:#}", r.target.name);
            }
        }
        let kept = next.len() - added;
        self.targets = next;
        self.cfg.targets = new.targets;
        Ok(format!("reloaded: {kept} targets unchanged, {added} added, {removed} removed"))
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
    check(old.bpf.attach_mode != new.bpf.attach_mode, "bpf.attach_mode");
    check(old.bpf.flow_table_size != new.bpf.flow_table_size, "bpf.flow_table_size");
    v
}

/// Delete a removed target's series from the aggregate maps.
fn forget_series(maps: &SharedMaps, target_id: u16) -> Result<usize> {
    let mut n = 0;
    for map in [&maps.requests, &maps.latency] {
        let doomed: Vec<Vec<u8>> = map
            .keys()
            .filter(|k| {
                k.len() >= std::mem::size_of::<hg_series_key>()
                    // SAFETY: length checked; the key is a plain C struct.
                    && unsafe { std::ptr::read_unaligned(k.as_ptr() as *const hg_series_key) }.target_id == target_id
            })
            .collect();
        for k in doomed {
            match map.delete(&k) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

/// `--cleanup`: remove the legacy tc filters of every configured target that
/// a killed run left behind (systemd runs it as ExecStopPost).
pub fn cleanup(cfg: &Config) -> Result<()> {
    // Queries on interfaces without a clsact qdisc make libbpf complain; a
    // real failure comes back as an error anyway.
    libbpf_rs::set_print(None);
    let mut failed = 0;
    for t in &cfg.targets {
        match attach::remove_stale_filters(t) {
            Ok(removed) => {
                for r in removed {
                    log::info!("target {:?}: removed the tc filter a killed run left on {r}", t.name);
                }
            }
            Err(e) => {
                log::error!("target {:?}: {e:#}", t.name);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("could not clean up {failed} targets");
    }
    Ok(())
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        log::debug!("sd_notify: {e}");
    }
}

pub fn run(cfg: Config, reload: Reloader) -> Result<()> {
    let account = privsep::resolve_user(cfg.user.as_deref())?;
    // Bind first: a port in use should fail before we touch the kernel.
    let listener = web::bind(&cfg.web.listen_address)?;

    // Load every program before forking, so the exporter inherits the maps and
    // no verifier failure is left for after the fork.
    let mut loader = Loader::new(MapSizes { flows: cfg.bpf.flow_table_size, max_series: cfg.metrics.max_series });
    let mut prepared = Vec::new();
    for (id, target) in cfg.targets.iter().enumerate() {
        let id = u16::try_from(id).context("too many targets")?;
        prepared.push(prepare(&mut loader, &cfg, target, id)?);
    }
    let maps = loader.maps().context("no target was loaded")?;
    let keep_bpf = privsep::fd_reads_need_cap_bpf();

    let (parent_end, child_end) = Channel::pair()?;
    // Blocked before fork so that none is lost; the attacher reads them from a
    // signalfd, the exporter unblocks them.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let threads = privsep::thread_count();
    if threads != 1 {
        bail!("internal error: {threads} threads before fork (credentials are per thread)");
    }

    // SAFETY: the process has a single thread (checked above), so the child
    // inherits no lock held by another thread.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(parent_end);
            drop(prepared); // program fds: the exporter keeps only the maps
            drop(loader);
            let code = exporter_main(listener, maps, &cfg, child_end, &account, keep_bpf, &mask);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(listener); // the attacher holds no network socket
            drop(child_end);
            let attacher = Attacher { cfg, loader, maps, targets: Vec::new() };
            attacher_main(attacher, prepared, parent_end, child, &mask, reload)
        }
    }
}

/// Why the attacher's loop ended.
enum Exit {
    /// SIGTERM or SIGINT.
    Stop,
    /// The exporter died; it has been reaped.
    ChildGone(String),
}

fn attacher_main(
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
        for p in prepared {
            let r = attach_prepared(p, &att.cfg)?;
            att.targets.push(r);
        }
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
    let detached = att.detach_all();
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
    let mut last_status = String::new();

    loop {
        let timeout = next_ping.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(ch.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let has = |i: usize, f: PollFlags| fds[i].revents().is_some_and(|r| r.intersects(f));
        let signalled = has(0, PollFlags::POLLIN);
        let from_child = has(1, PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR);

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

        if from_child {
            match ch.recv()? {
                None => return Ok(Exit::ChildGone(reap(child))),
                Some(Msg::Ready { series }) => {
                    ready = true;
                    log::info!(
                        "attached {} programs for {} targets; the exporter serves metrics on {}{}",
                        att.programs(),
                        att.targets.len(),
                        att.cfg.web.listen_address,
                        att.cfg.web.telemetry_path
                    );
                    last_status = status_line(att, series);
                    notify(&[NotifyState::Ready, NotifyState::Status(&last_status)]);
                    next_ping = Instant::now() + ping_every;
                }
                Some(Msg::Pong { ok: true, series, .. }) => {
                    if watchdog.is_some() {
                        notify(&[NotifyState::Watchdog]);
                    }
                    let status = status_line(att, series);
                    if status != last_status {
                        notify(&[NotifyState::Status(&status)]);
                        last_status = status;
                    }
                }
                Some(Msg::Pong { ok: false, error, .. }) => {
                    // No WATCHDOG=1: if this persists, systemd restarts the service.
                    log::warn!("the exporter cannot read the BPF maps: {error}");
                    last_status = format!("map reads failing: {error}");
                    notify(&[NotifyState::Status(&last_status)]);
                }
                Some(m) => log::warn!("unexpected message from the exporter: {m:?}"),
            }
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

        if Instant::now() >= next_ping {
            if ready {
                seq += 1;
                if let Err(e) = ch.send(&Msg::Ping { seq }) {
                    log::debug!("ping: {e:#}");
                }
            }
            next_ping = Instant::now() + ping_every;
        }
    }
}

fn status_line(att: &Attacher, series: u64) -> String {
    format!("{} targets, {} programs attached; {series} series", att.targets.len(), att.programs())
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

fn describe_exit(st: WaitStatus) -> String {
    match st {
        WaitStatus::Exited(pid, code) => format!("the exporter process {pid} exited with status {code}"),
        WaitStatus::Signaled(pid, sig, _) => format!("the exporter process {pid} was killed by {sig}"),
        other => format!("the exporter process ended: {other:?}"),
    }
}

/// The exporter closed its end: collect its exit status (it is on its way out).
fn reap(child: Pid) -> String {
    let deadline = Instant::now() + CHILD_STOP_TIMEOUT;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(WaitStatus::StillAlive) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return format!("the exporter process {child} closed its channel and was killed");
            }
            Ok(st) => return describe_exit(st),
            Err(e) => return format!("the exporter process {child} is gone ({e})"),
        }
    }
}

/// Ask the exporter to exit, wait a little, then insist.
fn stop_child(ch: &Channel, child: Pid) {
    let _ = ch.send_now(&Msg::Stop);
    let deadline = Instant::now() + CHILD_STOP_TIMEOUT;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(WaitStatus::StillAlive) => {
                log::warn!("the exporter process {child} did not stop within {CHILD_STOP_TIMEOUT:?}; killing it");
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return;
            }
            Ok(WaitStatus::Exited(_, 0)) | Err(_) => return,
            Ok(st) => {
                log::warn!("{}", describe_exit(st));
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The exporter (child) process.

fn exporter_main(
    listener: std::net::TcpListener,
    maps: Arc<SharedMaps>,
    cfg: &Config,
    ch: Channel,
    account: &Account,
    keep_bpf: bool,
    mask: &SigSet,
) -> i32 {
    // Only the attacher, systemd's main process, talks to systemd.
    std::env::remove_var("NOTIFY_SOCKET");
    if let Err(e) = mask.thread_unblock() {
        log::error!("exporter: unblocking signals: {e}");
        return 1;
    }
    // Reload is the attacher's business; a SIGHUP sent to the whole group must not kill us.
    // SAFETY: installing SIG_IGN involves no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn) };

    match privsep::drop_to(account, keep_bpf) {
        Ok(Kept::Nothing) => {
            log::info!("exporter process {}: serving as user {account}, with no capabilities", std::process::id())
        }
        Ok(Kept::CapBpf) => {
            let (maj, min) = privsep::kernel_version().unwrap_or((0, 0));
            log::warn!(
                "exporter process {}: Linux {maj}.{min} is older than 5.19, where reading BPF maps through held \
                 file descriptors needs CAP_BPF: serving as user {account} with CAP_BPF kept (and no other capability)",
                std::process::id()
            );
        }
        Err(e) => {
            log::error!("exporter: dropping privileges: {e:#}");
            return 1;
        }
    }
    match serve(listener, maps, cfg, ch) {
        Ok(code) => code,
        Err(e) => {
            log::error!("exporter: {e:#}");
            1
        }
    }
}

fn serve(listener: std::net::TcpListener, maps: Arc<SharedMaps>, cfg: &Config, mut ch: Channel) -> Result<i32> {
    let topo = match ch.recv()? {
        Some(Msg::Topology(t)) => t,
        // The attacher failed before it had anything attached; it says why.
        None => return Ok(1),
        Some(m) => bail!("expected the topology, got {m:?}"),
    };
    let exposition = Exposition::new(cfg.metrics.buckets.clone(), cfg.metrics.status_label, cfg.metrics.max_series);
    exposition.set_topology(topo.names(), topo.attached()?);
    let nbuckets = cfg.metrics.buckets.len();
    let (snap, took) = metrics::timed(|| maps::read(&maps, nbuckets));
    exposition
        .record_read(snap, took)
        .context("first read of the BPF maps (through inherited file descriptors, without capabilities)")?;
    ch.send(&Msg::Ready { series: exposition.series() as u64 })?;
    ch.set_nonblocking()?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let code = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let web = Arc::new(web::Web {
            exposition: exposition.clone(),
            telemetry_path: cfg.web.telemetry_path.clone(),
            max_requests: cfg.web.max_requests,
        });
        tokio::spawn(web::serve(listener, web));
        tokio::spawn(read_loop(maps.clone(), exposition.clone(), nbuckets, cfg.metrics.scrape_interval));
        tokio::select! {
            r = control_loop(ch, exposition.clone(), maps.clone()) => r,
            r = wait_for_shutdown() => r.map(|()| 0),
        }
    });
    rt.shutdown_background();
    code
}

/// Messages from the attacher: topology updates, pings, stop; EOF means it died.
async fn control_loop(ch: Channel, exposition: Arc<Exposition>, maps: Arc<SharedMaps>) -> Result<i32> {
    // SAFETY: the Channel owns its fd and keeps it open, unchanged, until dropped.
    let mut afd = unsafe { tokio::io::unix::AsyncFd::register(ch) }.map_err(|e| anyhow!("{e}"))?;
    loop {
        let step = {
            let mut guard = afd.readable_mut().await?;
            match guard.try_io(|inner| inner.get_mut().recv_step()) {
                Ok(r) => r.context("receiving from the attacher")?,
                Err(_would_block) => continue,
            }
        };
        match step {
            Step::Partial => {}
            Step::Eof => {
                log::error!("exporter: the attacher process is gone; exiting");
                return Ok(1);
            }
            Step::Msg(Msg::Topology(t)) => {
                let attached = t.attached()?;
                log::info!("exporter: topology updated ({} targets, {} programs)", t.targets.len(), attached.len());
                exposition.set_topology(t.names(), attached);
            }
            Step::Msg(Msg::Ping { seq }) => {
                // A real bpf() read through the held fds, not just "the loop is alive".
                let probe = maps.stats.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY);
                let pong = Msg::Pong {
                    seq,
                    ok: probe.is_ok(),
                    series: exposition.series() as u64,
                    error: probe.err().map(|e| e.to_string()).unwrap_or_default(),
                };
                if let Err(e) = afd.get_ref().send_now(&pong) {
                    log::debug!("exporter: pong: {e:#}");
                }
            }
            Step::Msg(Msg::Stop) => return Ok(0),
            Step::Msg(m) => log::warn!("exporter: unexpected message {m:?}"),
        }
    }
}

async fn read_loop(maps: Arc<SharedMaps>, exposition: Arc<Exposition>, nbuckets: usize, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; serve() already read once
    loop {
        tick.tick().await;
        let (maps, exposition) = (maps.clone(), exposition.clone());
        // Reading and encoding both run off the runtime's one thread, which
        // must stay free to answer scrapes (an encode of full maps takes ~100 ms).
        let done = tokio::task::spawn_blocking(move || {
            let (snap, took) = metrics::timed(|| maps::read(&maps, nbuckets));
            exposition.record_read(snap, took)
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("reading the BPF maps: {e:#}"),
            Err(e) => log::error!("map reader panicked: {e}"),
        }
    }
}

async fn wait_for_shutdown() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("exporter: SIGTERM: shutting down"),
        _ = int.recv() => log::info!("exporter: SIGINT: shutting down"),
    }
    Ok(())
}
