//! The exporter process: drops every privilege, then serves /metrics and
//! reads the maps through the file descriptors it inherited.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::collector::{self, Exposition};
use crate::maps::{self, ReadMaps};
use crate::web;
use hge_shared::config::Config;
use hge_shared::ipc::{wait_readable, Channel, Msg, Recv};
use hge_shared::privsep::{self, Account, Kept};

pub fn main(
    listener: std::net::TcpListener,
    maps: Arc<ReadMaps>,
    cfg: &Config,
    ch: Channel,
    account: &Account,
    keep_bpf: bool,
    mask: &SigSet,
) -> i32 {
    // Only the attacher, systemd's main process, talks to systemd.
    std::env::remove_var("NOTIFY_SOCKET");
    small_heap();
    if let Err(e) = mask.thread_unblock() {
        log::error!("exporter: unblocking signals: {e}");
        return 1;
    }
    // Reload is the attacher's business; a SIGHUP sent to the whole group must not kill us.
    // SAFETY: SIG_IGN runs no handler code, so nothing async-signal-unsafe can
    // run; nix marks every signal() unsafe because a handler could.
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

/// The attacher's first message: what is attached. None if it closed the
/// channel instead (it failed before anything was attached, and says why).
fn first_topology(ch: &mut Channel) -> Result<Option<hge_shared::topology::Topology>> {
    loop {
        match ch.recv().context("receiving the topology")? {
            Recv::Msg(Msg::Topology(t)) => return Ok(Some(t)),
            Recv::Msg(m) => bail!("expected the topology, got {}", m.kind()),
            Recv::Closed => return Ok(None),
            Recv::Partial | Recv::Empty => wait_readable(ch, None)?,
        }
    }
}

fn serve(listener: std::net::TcpListener, maps: Arc<ReadMaps>, cfg: &Config, mut ch: Channel) -> Result<i32> {
    let Some(topo) = first_topology(&mut ch)? else { return Ok(1) };
    // Read as the unprivileged user: the file, certificates and keys must be readable by it.
    let web_config = match &cfg.web.config_file {
        Some(p) => Some(Arc::new(web::load_config(p).with_context(|| {
            format!("the exporter (user {}) could not load its web config", nix::unistd::Uid::current())
        })?)),
        None => None,
    };
    raise_nofile(cfg.web.max_connections);
    let m = &cfg.metrics;
    let native = m.native_histograms.then(|| (i32::from(m.native_schema), m.native_zero_threshold.as_secs_f64()));
    let exposition = Exposition::with_native(m.buckets.clone(), m.status_label, m.max_series, native);
    exposition.set_topology(&topo);
    let nbuckets = cfg.metrics.buckets.len();
    let (snap, took) = collector::timed(|| maps::read(&maps, nbuckets));
    exposition
        .record_read(snap, took)
        .context("first read of the BPF maps (through inherited file descriptors, without capabilities)")?;
    ch.send(&Msg::Ready { series: exposition.series() as u64 })?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let code = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let web = Arc::new(web::Endpoint {
            exposition: exposition.clone(),
            telemetry_path: cfg.web.telemetry_path.clone(),
            max_requests: cfg.web.max_requests,
            limits: web::Limits {
                max_connections: cfg.web.max_connections,
                read_header_timeout: cfg.web.read_header_timeout,
                idle_timeout: cfg.web.idle_timeout,
                write_timeout: cfg.web.write_timeout,
            },
            config: web_config,
        });
        if let Some(c) = &web.config {
            log::info!("exporter: serving {} with the web config", if c.is_tls() { "HTTPS" } else { "HTTP" });
        }
        tokio::spawn(web::serve(listener, web));
        tokio::spawn(read_loop(maps.clone(), exposition.clone(), nbuckets, cfg.metrics.scrape_interval));
        tokio::select! {
            r = control_loop(ch, exposition.clone(), maps.clone(), cfg.metrics.scrape_interval * STALE_READS) => r,
            r = wait_for_shutdown() => r.map(|()| 0),
        }
    });
    rt.shutdown_background();
    code
}

/// For tests of the watchdog: every periodic map read after the first fails.
pub const FAIL_READS_ENV: &str = "HGE_TEST_FAIL_MAP_READS";

/// Reads older than this many scrape intervals make the exporter unhealthy.
const STALE_READS: u32 = 3;

/// Whether the exporter is healthy enough for a watchdog keep-alive: a bpf()
/// lookup through the held fds works now, and the periodic reads have
/// succeeded recently (a read loop that fails or hangs is not healthy).
fn health(probe: Result<(), String>, since_good_read: Option<Duration>, stale_after: Duration) -> Result<(), String> {
    probe?;
    match since_good_read {
        None => Err("no map read has succeeded yet".into()),
        Some(age) if age > stale_after => Err(format!("no map read has succeeded for {:.1} s", age.as_secs_f64())),
        Some(_) => Ok(()),
    }
}

/// glibc's allocator, for a process whose heap should stay a few MiB: one
/// arena for every thread (the map reads and gzip run on tokio's blocking
/// threads, and an arena each would keep their freed memory), and what the
/// attacher's loading left in the heap this process inherited given back.
fn small_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt and malloc_trim only tune and trim the allocator; the
    // process has one thread here (it has just been forked).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // A fixed threshold (glibc otherwise raises it up to 32 MiB as large
        // blocks are freed): the snapshot's arrays and the gzipped exposition
        // get their own mappings, unmapped when freed.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    trim_heap();
}

/// Return the free pages of the heap to the kernel (glibc keeps them otherwise).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Open connections need descriptors: raise the soft limit to the hard one (as
/// Go does; under the unit LimitNOFILE= sets both, and setrlimit is filtered).
fn raise_nofile(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    // The listen socket, the map fds, the IPC, the log, some slack.
    let need = max_connections as u64 + 64;
    if soft < need {
        log::warn!(
            "exporter: {soft} file descriptors allowed, but web.max_connections = {max_connections} needs about {need}; \
             raise LimitNOFILE= (or ulimit -n), or lower web.max_connections"
        );
    }
}

/// Messages from the attacher: topology updates, pings, stop; EOF means it died.
async fn control_loop(
    ch: Channel,
    exposition: Arc<Exposition>,
    maps: Arc<ReadMaps>,
    stale_after: Duration,
) -> Result<i32> {
    // SAFETY: the Channel owns its fd and keeps it open, unchanged, until the
    // AsyncFd drops it (tokio's safe constructor is deprecated for lacking this promise).
    let mut afd = unsafe { tokio::io::unix::AsyncFd::register(ch) }.map_err(|e| anyhow!("{e}"))?;
    loop {
        let got = afd.get_mut().recv().context("receiving from the attacher")?;
        match got {
            Recv::Empty => afd.readable_mut().await?.clear_ready(),
            Recv::Partial => {}
            Recv::Closed => {
                log::error!("exporter: the attacher process is gone; exiting");
                return Ok(1);
            }
            Recv::Msg(Msg::Topology(t)) => {
                log::info!("exporter: topology updated ({} targets, {} programs)", t.targets.len(), t.attached.len());
                exposition.set_topology(&t);
            }
            Recv::Msg(Msg::Ping { seq }) => {
                // A real bpf() read through the held fds, not just "the loop is alive".
                let probe = maps::probe(&maps).map_err(|e| format!("{e:#}"));
                let health = health(probe, exposition.since_good_read(), stale_after);
                let pong = Msg::Pong {
                    seq,
                    ok: health.is_ok(),
                    series: exposition.series() as u64,
                    error: health.err().unwrap_or_default(),
                };
                if let Err(e) = afd.get_ref().send(&pong) {
                    log::debug!("exporter: pong: {e:#}");
                }
            }
            Recv::Msg(Msg::Stop) => return Ok(0),
            Recv::Msg(m) => log::warn!("exporter: unexpected {} message", m.kind()),
        }
    }
}

async fn read_loop(maps: Arc<ReadMaps>, exposition: Arc<Exposition>, nbuckets: usize, every: Duration) {
    let fail = std::env::var_os(FAIL_READS_ENV).is_some();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; serve() already read once
    loop {
        tick.tick().await;
        let (maps, exposition) = (maps.clone(), exposition.clone());
        // The read runs off the runtime's one thread, which must stay free to
        // answer scrapes (a read of full maps takes ~15 ms).
        let done = tokio::task::spawn_blocking(move || {
            let (snap, took) = collector::timed(|| match fail {
                true => Err(anyhow!("failing on purpose ({FAIL_READS_ENV} is set)")),
                false => maps::read(&maps, nbuckets),
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_fed_only_while_reads_are_fresh_and_the_maps_answer() {
        let stale = Duration::from_secs(15);
        assert_eq!(health(Ok(()), Some(Duration::from_secs(1)), stale), Ok(()));
        assert!(health(Ok(()), Some(Duration::from_secs(16)), stale).unwrap_err().contains("16.0 s"));
        assert!(health(Ok(()), None, stale).is_err());
        assert_eq!(health(Err("EPERM".into()), Some(Duration::ZERO), stale), Err("EPERM".into()));
    }
}
