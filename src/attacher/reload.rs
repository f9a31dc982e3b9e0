//! SIGHUP: the configuration read again, and applied to a running attacher.
//! Targets that did not change keep counting; settings that size the maps or
//! belong to the exporter process take a restart, and a reload says so.

use anyhow::{Context, Result};
use sd_notify::NotifyState;

use crate::discover::Discovery;
use crate::state::{notify, Attacher};
use hge_shared::config::Config;
use hge_shared::ipc::{Channel, Msg};

/// Re-reads the configuration (file plus command-line overrides) on SIGHUP.
pub type Reloader = Box<dyn Fn() -> Result<Config>>;

/// Read the configuration again and apply it, telling systemd (RELOADING=1,
/// then READY=1 and what happened) and the exporter (the new topology).
pub(crate) fn run(att: &mut Attacher, ch: &Channel, reload: &Reloader) -> Result<()> {
    log::info!("SIGHUP: reloading the configuration");
    let mut states = vec![NotifyState::Reloading];
    // For Type=notify-reload (systemd 253+); older systemd ignores it.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    let status = match reload().and_then(|new| apply(att, new)) {
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

/// Apply a new configuration's targets: attach the new and changed ones
/// first (if one fails, nothing changes), then detach the removed ones.
/// Unchanged targets are not touched, so their counters continue.
fn apply(att: &mut Attacher, new: Config) -> Result<String> {
    for key in restart_needed(&att.cfg, &new) {
        log::warn!("reload: {key} changed; that takes effect only after a restart (keeping the running value)");
    }
    let current = att.targets.current();
    let mut fresh = Vec::new();
    for t in new.targets.iter().filter(|t| !current.contains(t)) {
        let id = att.targets.free_id(&fresh)?;
        fresh.push(att.targets.prepare(t, id)?);
    }
    // A changed [[discover]] starts over: new watchers first (if they
    // fail, nothing changes), the old tables' namespaces let go after.
    let old_discover = att.discovery.as_ref().map(Discovery::config).unwrap_or_default();
    let restart = (new.discover != old_discover).then(|| Discovery::start(&new.discover)).transpose()?;
    if let Some(d) = att.discovery.as_mut() {
        d.yield_to(&new.targets, &mut att.targets);
    }
    let c = att.targets.apply(fresh, &new.targets)?;
    att.cfg.targets = new.targets;
    let mut summary = format!("reloaded: {} targets unchanged, {} added, {} removed", c.kept, c.added, c.removed);
    if let Some(fresh) = restart {
        if let Some(mut old) = att.discovery.replace(fresh) {
            old.release_all(&mut att.targets);
        }
        att.cfg.discover = new.discover;
        summary.push_str("; discovery restarted");
    }
    Ok(summary)
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
    check(old.metrics.native_histograms != new.metrics.native_histograms, "metrics.native_histograms");
    check(old.metrics.native_schema != new.metrics.native_schema, "metrics.native_schema");
    check(old.metrics.native_zero_threshold != new.metrics.native_zero_threshold, "metrics.native_zero_threshold");
    check(old.bpf.attach_mode != new.bpf.attach_mode, "bpf.attach_mode");
    check(old.bpf.flow_table_size != new.bpf.flow_table_size, "bpf.flow_table_size");
    v
}
