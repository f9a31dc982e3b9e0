//! The exporter process: drops every privilege, then serves /metrics and
//! reads the maps through the file descriptors it inherited.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

use super::ipc::{Channel, Msg, Step};
use crate::bpf::{maps, ReadMaps};
use crate::collector::{self, Exposition};
use crate::config::Config;
use crate::privileged::privsep::{self, Account, Kept};
use crate::web;

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

fn serve(listener: std::net::TcpListener, maps: Arc<ReadMaps>, cfg: &Config, mut ch: Channel) -> Result<i32> {
    let topo = match ch.recv()? {
        Some(Msg::Topology(t)) => t,
        // The attacher failed before it had anything attached; it says why.
        None => return Ok(1),
        Some(m) => bail!("expected the topology, got {m:?}"),
    };
    let exposition = Exposition::new(cfg.metrics.buckets.clone(), cfg.metrics.status_label, cfg.metrics.max_series);
    exposition.set_topology(&topo);
    let nbuckets = cfg.metrics.buckets.len();
    let (snap, took) = collector::timed(|| maps::read(&maps, nbuckets));
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
async fn control_loop(ch: Channel, exposition: Arc<Exposition>, maps: Arc<ReadMaps>) -> Result<i32> {
    // SAFETY: the Channel owns its fd and keeps it open, unchanged, until the
    // AsyncFd drops it (tokio's safe constructor is deprecated for lacking this promise).
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
                log::info!("exporter: topology updated ({} targets, {} programs)", t.targets.len(), t.attached.len());
                exposition.set_topology(&t);
            }
            Step::Msg(Msg::Ping { seq }) => {
                // A real bpf() read through the held fds, not just "the loop is alive".
                let probe = maps::probe(&maps);
                let pong = Msg::Pong {
                    seq,
                    ok: probe.is_ok(),
                    series: exposition.series() as u64,
                    error: probe.err().map(|e| format!("{e:#}")).unwrap_or_default(),
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

async fn read_loop(maps: Arc<ReadMaps>, exposition: Arc<Exposition>, nbuckets: usize, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; serve() already read once
    loop {
        tick.tick().await;
        let (maps, exposition) = (maps.clone(), exposition.clone());
        // Reading and encoding both run off the runtime's one thread, which
        // must stay free to answer scrapes (an encode of full maps takes ~100 ms).
        let done = tokio::task::spawn_blocking(move || {
            let (snap, took) = collector::timed(|| maps::read(&maps, nbuckets));
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
