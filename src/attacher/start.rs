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
//! They talk over a socketpair (ipc.rs); either closing it ends the other.
//! See docs/architecture.md.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{fork, ForkResult};

use crate::bpf::{Loader, MapSizes, NativeConfig, ProgramConfig};
use crate::event_loop;
use crate::state::Attacher;
use crate::targets::Prepared;
use crate::{attach, netns, targets};
use hge_exporter::web;
use hge_shared::config::Config;
use hge_shared::ipc::Channel;
use hge_shared::privsep;

pub use crate::reload::Reloader;

/// `--cleanup`: remove the legacy tc filters of ours that a killed run left
/// behind (systemd runs it as ExecStopPost), on every interface of the host
/// namespace, of the configured targets' namespaces, of every namespace
/// bind-mounted where ip, podman and docker keep them and of every namespace
/// a process is in (discovery attaches there): the run that left them may
/// have had another configuration.
pub fn cleanup(cfg: &Config) -> Result<()> {
    // Queries on interfaces without a clsact qdisc make libbpf complain; a
    // real failure comes back as an error anyway.
    libbpf_rs::set_print(None);
    let mut paths: Vec<_> = cfg.targets.iter().filter_map(|t| t.netns.clone()).collect();
    let every = crate::discover::Settings {
        netns_dirs: cfg.discover.iter().flat_map(|d| d.netns_dirs.clone()).collect(),
        ..Default::default()
    };
    match crate::discover::enumerate(&every) {
        Ok(scan) => paths.extend(scan.namespaces.into_iter().map(|n| n.path)),
        Err(e) => log::warn!("looking for namespaces to clean up: {e:#}"),
    }
    let (spaces, errors) = netns::other_namespaces(&paths);
    let mut failed = errors.len();
    for e in errors {
        log::error!("{e:#}");
    }
    let host = std::iter::once(None).chain(spaces.iter().map(Some));
    for ns in host {
        let shown = ns.map(|n| format!(" in {n}")).unwrap_or_default();
        match attach::remove_our_filters(ns, None) {
            Ok(removed) => {
                for r in removed {
                    log::info!("removed the tc filter a killed run left on {r}{shown}");
                }
            }
            Err(e) => {
                log::error!("{e:#}{shown}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("could not clean up {failed} network namespaces");
    }
    Ok(())
}

/// Load the web config once, as `--check-config` and start-up do: a bad file
/// is one message and a non-zero exit before anything is touched.
pub fn check_web_config(cfg: &Config) -> Result<()> {
    if let Some(p) = &cfg.web.config_file {
        web::load_config(p)?;
    }
    Ok(())
}

pub fn run(cfg: Config, reload: Reloader) -> Result<()> {
    let account = privsep::resolve_user(cfg.user.as_deref())?;
    check_web_config(&cfg)?;
    // Bind first: a port in use should fail before we touch the kernel.
    let listener = web::bind(&cfg.web.listen_address)?;

    // Load the programs and resolve every target before forking, so the
    // exporter inherits the maps and no verifier failure is left for after.
    let (targets, prepared) = load(&cfg)?;
    let maps = targets.maps();
    // The exporter keeps only these: the maps it reads, each opened read-only.
    let read_only = Arc::new(maps.read_only().context("opening the maps read-only for the exporter")?);
    let keep_bpf = privsep::fd_reads_need_cap_bpf();
    // Loading parsed the object and its BTF: give what libbpf freed back
    // before the fork, so that neither process carries it.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }

    let (parent_end, child_end) = Channel::pair()?;
    let mask = block_signals_single_threaded()?;

    // SAFETY: the process has a single thread (checked by block_signals_single_threaded), so the child
    // inherits no lock held by another thread. There is no safe fork: the
    // exporter must be a child that inherits the map fds and the listen socket.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(parent_end);
            // Program fds and the read-write map fds: the exporter keeps only the read-only ones.
            drop(prepared);
            drop(targets);
            drop(maps);
            let code = hge_exporter::main(listener, read_only, &cfg, child_end, &account, keep_bpf, &mask);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(listener); // the attacher holds no network socket
            drop(child_end);
            drop(read_only);
            drop(maps);
            let attacher = Attacher::new(cfg, targets);
            event_loop::main(attacher, prepared, parent_end, child, &mask, reload)
        }
    }
}

/// Load and verify the programs, then resolve every configured target.
fn load(cfg: &Config) -> Result<(targets::Targets, Vec<Prepared>)> {
    let loader = Loader::new(
        MapSizes { flows: cfg.bpf.flow_table_size, max_series: cfg.metrics.max_series },
        ProgramConfig {
            status_label: cfg.metrics.status_label,
            buckets_s: cfg.metrics.buckets.clone(),
            series_budget: cfg.series_budget(),
            native: NativeConfig::of(&cfg.metrics),
        },
    )?;
    let verified: Vec<String> =
        loader.verified().iter().map(|v| format!("{} {} instructions", v.program, v.instructions)).collect();
    log::info!("BPF programs verified: {}", verified.join(", "));
    let targets = targets::Targets::new(loader, cfg.bpf.attach_mode)?;
    let mut prepared = Vec::new();
    for (id, target) in cfg.targets.iter().enumerate() {
        let id = u16::try_from(id).context("too many targets")?;
        prepared.push(targets.prepare(target, id)?);
    }
    targets.check_claims(&prepared)?;
    Ok((targets, prepared))
}

/// Block the signals the attacher reads from a signalfd before fork, so that
/// none is lost (the exporter unblocks them), and check that no other thread
/// exists: credentials are per thread, and fork copies only the caller.
fn block_signals_single_threaded() -> Result<SigSet> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let threads = privsep::thread_count();
    if threads != 1 {
        bail!("internal error: {threads} threads before fork (credentials are per thread)");
    }
    Ok(mask)
}
