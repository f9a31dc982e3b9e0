//! Start-up, the map-reading loop, and shutdown.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::attach::{self, Hook};
use crate::bpf::{Loader, MapSizes, ProgramConfig, SharedMaps};
use crate::config::Config;
use crate::maps;
use crate::metrics::{self, Attached, Exposition, Names};
use crate::web;

/// Everything attached, with the names that label it.
pub struct Attachment {
    pub hooks: Vec<Hook>,
    pub names: Names,
    pub maps: Arc<SharedMaps>,
}

impl Attachment {
    pub fn describe(&self) -> Vec<Attached> {
        self.hooks
            .iter()
            .map(|h| Attached {
                target: h.target.clone(),
                interface: h.interface.clone(),
                direction: h.direction,
                mode: h.mode,
            })
            .collect()
    }

    /// Detach everything now, reporting the first failure.
    pub fn detach(mut self) -> Result<usize> {
        let n = self.hooks.len();
        let mut first_err = None;
        for mut h in self.hooks.drain(..) {
            if let Err(e) = h.detach() {
                log::error!("{e:#}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(n), Err)
    }
}

/// Load one program instance per target and attach it everywhere the target says.
pub fn attach_all(cfg: &Config) -> Result<Attachment> {
    let mut loader = Loader::new(MapSizes { flows: cfg.bpf.flow_table_size, max_series: cfg.metrics.max_series });
    let mut names = Names::default();
    let mut hooks = Vec::new();
    for (id, target) in cfg.targets.iter().enumerate() {
        let id = u16::try_from(id).context("too many targets")?;
        attach::check_netns(target)?;
        let interfaces = attach::resolve(target)?;
        let progs = loader.load(&ProgramConfig {
            target_id: id,
            status_label: cfg.metrics.status_label,
            buckets_s: cfg.metrics.buckets.clone(),
            ports: target.ports.clone(),
        })?;
        names.add_target(id, &target.name);
        for i in &interfaces {
            names.add_interface(id, i.ifindex, &i.name);
        }
        // On error the hooks attached so far are dropped, which detaches them.
        hooks.extend(attach::attach_target(target, &interfaces, &progs, cfg.bpf.attach_mode)?);
    }
    let maps = loader.maps().context("no target was loaded")?;
    Ok(Attachment { hooks, names, maps })
}

pub fn run(cfg: Config) -> Result<()> {
    // Bind first: a port in use should fail before we touch the kernel.
    let std_listener = web::bind(&cfg.web.listen_address)?;

    let attachment = attach_all(&cfg)?;
    let exposition = Exposition::new(cfg.metrics.buckets.clone(), cfg.metrics.status_label, cfg.metrics.max_series);
    exposition.set_topology(attachment.names.clone(), attachment.describe());
    let nbuckets = cfg.metrics.buckets.len();
    let maps = attachment.maps.clone();
    let (snap, took) = metrics::timed(|| maps::read(&maps, nbuckets));
    exposition.record_read(snap, took).context("first read of the BPF maps")?;
    log::info!(
        "attached {} programs for {} targets; serving metrics on {}{}",
        attachment.hooks.len(),
        cfg.targets.len(),
        cfg.web.listen_address,
        cfg.web.telemetry_path
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result: Result<()> = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let web = Arc::new(web::Web {
            exposition: exposition.clone(),
            telemetry_path: cfg.web.telemetry_path.clone(),
            max_requests: cfg.web.max_requests,
        });
        tokio::spawn(web::serve(listener, web));
        tokio::spawn(read_loop(maps.clone(), exposition.clone(), nbuckets, cfg.metrics.scrape_interval));
        wait_for_shutdown().await
    });
    rt.shutdown_background();
    let n = attachment.detach()?;
    log::info!("detached {n} programs; exiting");
    result
}

async fn read_loop(maps: Arc<SharedMaps>, exposition: Arc<Exposition>, nbuckets: usize, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; start() already read once
    loop {
        tick.tick().await;
        let maps = maps.clone();
        let read = tokio::task::spawn_blocking(move || metrics::timed(|| maps::read(&maps, nbuckets))).await;
        match read {
            Ok((snap, took)) => {
                if let Err(e) = exposition.record_read(snap, took) {
                    log::warn!("reading the BPF maps: {e:#}");
                }
            }
            Err(e) => log::error!("map reader panicked: {e}"),
        }
    }
}

async fn wait_for_shutdown() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: shutting down"),
        _ = int.recv() => log::info!("SIGINT: shutting down"),
    }
    Ok(())
}
