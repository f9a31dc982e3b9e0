//! Loading the programs: the parser once, and per interface a small program
//! that hands it packets (bpf/link.bpf.c).
//!
//! What every target shares (status label, histogram bounds, series budget)
//! is read-only data the verifier sees when the parser loads. Which target an
//! interface belongs to, and the ports watched there, sit in the `links`
//! array at a slot of the interface's own; its program carries that slot as
//! read-only data and tail-calls the parser. So the parser is verified once,
//! whatever the number of targets, interfaces and namespaces.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, OpenObject, PrintLevel};

use super::kernel::{self, Verified};
use super::{link_skel, skel};
use hge_exporter::maps::{MapFd, ReadMaps};
use hge_shared::abi::bytes_of;
use hge_shared::abi::{PARSERS, PARSE_EGRESS, PARSE_INGRESS};
use hge_shared::config::{self, StatusLabel};
use hge_shared::native;

/// What every target shares, fixed when the parser loads.
#[derive(Debug, Clone)]
pub struct ProgramConfig {
    pub status_label: StatusLabel,
    pub buckets_s: Vec<f64>,
    /// Series each target may hold in each aggregate map; 0: no budget.
    pub series_budget: u32,
    /// Native (exponential) buckets counted too; None: classic buckets only.
    pub native: Option<NativeConfig>,
}

/// The native buckets: their schema and zero threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeConfig {
    pub schema: u8,
    pub zero_ns: u64,
}

impl NativeConfig {
    /// What the config asks for (None: `native_histograms = false`).
    pub fn of(m: &config::Metrics) -> Option<NativeConfig> {
        m.native_histograms.then(|| NativeConfig {
            schema: m.native_schema,
            zero_ns: u64::try_from(m.native_zero_threshold.as_nanos()).unwrap_or(u64::MAX),
        })
    }
}

/// Native buckets the `native` map holds per latency series, on average
/// (entries are allocated as buckets are first hit: no memory is reserved).
pub const NATIVE_BUCKETS_PER_SERIES: u32 = 32;

/// One interface's entry in `links`: its target and the server ports watched there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub target_id: u16,
    /// Empty: every port.
    pub ports: Vec<u16>,
    /// The target's route templates (written with `maps::set_routes`); 0: paths are not read.
    pub routes: u16,
}

/// Map sizes, fixed when the parser loads.
#[derive(Debug, Clone, Copy)]
pub struct MapSizes {
    pub flows: u32,
    pub max_series: u32,
}

/// The parser's maps. Plain fds: they outlive the skeleton.
pub struct SharedMaps {
    pub flows: MapHandle,
    pub requests: MapHandle,
    pub latency: MapHandle,
    /// The native buckets of the latency series (one entry when they are off).
    pub native: MapHandle,
    pub stats: MapHandle,
    /// Series each target holds (attacher only: reset when a target's series are deleted).
    pub series_count: MapHandle,
    /// Interface slots (attacher only: see `maps::set_link`).
    pub links: MapHandle,
    /// Each target's route templates (attacher only: see `maps::set_routes`).
    pub routes: MapHandle,
}

/// A new fd on the map with id `id`, opened read-only (BPF_F_RDONLY): lookups
/// work through it, updates and deletes fail with EPERM. BPF_MAP_GET_FD_BY_ID
/// needs CAP_SYS_ADMIN: the attacher opens them for the exporter.
fn open_read_only(id: u32) -> Result<MapFd> {
    let opts = libbpf_sys::bpf_get_fd_by_id_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_get_fd_by_id_opts>() as _,
        open_flags: libbpf_sys::BPF_F_RDONLY,
        ..Default::default()
    };
    // SAFETY: opts lives across the call. libbpf-rs's MapHandle::from_map_id
    // takes no open flags and no MapHandle constructor takes an fd, so the
    // read-only fd is asked for here.
    let fd = unsafe { libbpf_sys::bpf_map_get_fd_by_id_opts(id, &opts) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd)).context("opening a map read-only (BPF_F_RDONLY)");
    }
    // SAFETY: the kernel just handed us this fd and nothing else owns it.
    MapFd::new(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl SharedMaps {
    /// New fds on the maps the exporter reads, each opened read-only: what the
    /// exporter keeps across the fork.
    pub fn read_only(&self) -> Result<ReadMaps> {
        let ro = |m: &MapHandle| open_read_only(m.info()?.info.id);
        Ok(ReadMaps {
            flows: ro(&self.flows)?,
            requests: ro(&self.requests)?,
            latency: ro(&self.latency)?,
            native: ro(&self.native)?,
            stats: ro(&self.stats)?,
        })
    }

    /// The same maps through duplicates of our own (read-write) fds, for
    /// reading in-process (tests).
    pub fn reader(&self) -> Result<ReadMaps> {
        let dup = |m: &MapHandle| MapFd::new(m.as_fd().try_clone_to_owned()?);
        Ok(ReadMaps {
            flows: dup(&self.flows)?,
            requests: dup(&self.requests)?,
            latency: dup(&self.latency)?,
            native: dup(&self.native)?,
            stats: dup(&self.stats)?,
        })
    }
}

/// libbpf's messages (the verifier log among them) for the load in progress.
static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn libbpf_print(level: PrintLevel, msg: String) {
    let msg = msg.trim_end().to_string();
    // Netlink's extended acks ("Exclusivity flag on", "Cannot find specified
    // filter chain") answer expected probes; real failures come back as errors.
    let expected_probe = msg.contains("Kernel error message:");
    match level {
        PrintLevel::Warn if expected_probe => log::debug!(target: "libbpf", "{msg}"),
        PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
        PrintLevel::Info => log::debug!(target: "libbpf", "{msg}"),
        PrintLevel::Debug => log::trace!(target: "libbpf", "{msg}"),
    }
    if level != PrintLevel::Debug {
        if let Ok(mut buf) = LIBBPF_LOG.lock() {
            buf.push(msg);
        }
    }
}

/// The two programs to put on one interface, kept alive by these fds alone.
pub struct Programs {
    pub ingress: OwnedFd,
    pub egress: OwnedFd,
}

/// The loaded parser, and what is needed to load interface programs for it.
pub struct Loader {
    maps: Arc<SharedMaps>,
    /// The tail-call array every interface program shares, holding the
    /// parser. The kernel empties it when its last fd closes: the programs
    /// left on interfaces (a killed run's tc filters) then do nothing.
    parsers: MapHandle,
    /// The parser's own programs, which the tail-call array refers to.
    parser: Programs,
    /// What the verifier processed for the parser's programs and an interface's.
    verified: Vec<Verified>,
}

impl Loader {
    /// Load the parser (the verifier speaks now) and create its maps. A
    /// kernel that lacks a helper the parser calls is refused first, with
    /// `kernel::Unsupported` (one line) rather than the verifier's log.
    pub fn new(sizes: MapSizes, cfg: ProgramConfig) -> Result<Loader> {
        libbpf_rs::set_print(Some((PrintLevel::Info, libbpf_print)));
        if cfg.buckets_s.len() > config::MAX_BUCKETS {
            anyhow::bail!("too many buckets for the BPF program");
        }
        kernel::check_helpers()?;
        let (parser, maps) = with_log(|| load_parser(&cfg, sizes))?;
        let parsers = MapHandle::create(
            libbpf_rs::MapType::ProgArray,
            Some("hg_parsers"),
            4,
            4,
            PARSERS,
            &libbpf_sys::bpf_map_create_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
                ..Default::default()
            },
        )
        .context("creating the tail-call array")?;
        for (slot, prog) in [(PARSE_INGRESS, &parser.ingress), (PARSE_EGRESS, &parser.egress)] {
            let fd = prog.as_raw_fd() as u32;
            parsers
                .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .context("putting the parser in the tail-call array")?;
        }
        let mut loader = Loader { maps: Arc::new(maps), parsers, parser, verified: Vec::new() };
        // Every interface's programs are the same code with another slot: one
        // copy, loaded and dropped here, measures them all.
        let link = loader.link_programs(0)?;
        for (program, fd) in [
            ("hg_parse_ingress", &loader.parser.ingress),
            ("hg_parse_egress", &loader.parser.egress),
            ("http_ingress", &link.ingress),
            ("http_egress", &link.egress),
        ] {
            let instructions = kernel::verified_instructions(fd.as_fd())?;
            loader.verified.push(Verified { program: program.to_string(), instructions });
        }
        Ok(loader)
    }

    pub fn maps(&self) -> Arc<SharedMaps> {
        self.maps.clone()
    }

    /// Instructions the verifier processed for each program: the parser's
    /// two, and an interface's two.
    pub fn verified(&self) -> &[Verified] {
        &self.verified
    }

    /// The programs for the interface at `links` slot `slot`: small, so
    /// loading them takes milliseconds. Load them after filling the slot.
    pub fn link_programs(&self, slot: u32) -> Result<Programs> {
        with_log(|| {
            let mut storage = MaybeUninit::<OpenObject>::uninit();
            let mut open =
                link_skel::LinkSkelBuilder::default().open(&mut storage).context("opening the interface program")?;
            let ro = open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("link object has no .rodata"))?;
            ro.cfg_link = slot;
            open.maps.hg_parsers.reuse_fd(self.parsers.as_fd())?;
            let skel = open.load().context("loading the interface program")?;
            Ok(Programs {
                ingress: skel.progs.http_ingress.as_fd().try_clone_to_owned()?,
                egress: skel.progs.http_egress.as_fd().try_clone_to_owned()?,
            })
        })
    }
}

/// Run a load, turning libbpf's messages (the verifier's among them) into the error.
fn with_log<T>(load: impl FnOnce() -> Result<T>) -> Result<T> {
    LIBBPF_LOG.lock().map(|mut b| b.clear()).ok();
    load().map_err(|e| {
        let log = LIBBPF_LOG.lock().map(|b| b.join("\n")).unwrap_or_default();
        // EPERM is a missing privilege; EACCES is the verifier saying no (its log follows).
        let hint = match e.downcast_ref::<libbpf_rs::Error>().map(|e| e.kind()) {
            Some(libbpf_rs::ErrorKind::PermissionDenied) if !log.contains("PROG LOAD LOG") => {
                "\nloading BPF programs needs root or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
            }
            _ => "",
        };
        if log.is_empty() {
            anyhow!("{e:#}{hint}")
        } else {
            anyhow!("{e:#}{hint}\nlibbpf and verifier output:\n{log}")
        }
    })
}

fn load_parser(cfg: &ProgramConfig, sizes: MapSizes) -> Result<(Programs, SharedMaps)> {
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let mut open = skel::HttpGoldenSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;

    let ro = open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("BPF object has no .rodata"))?;
    ro.cfg_status_code = u8::from(cfg.status_label == StatusLabel::Code);
    ro.cfg_nbuckets = cfg.buckets_s.len() as u32;
    for (slot, b) in ro.cfg_bounds_ns.iter_mut().zip(&cfg.buckets_s) {
        *slot = config::seconds_to_ns(*b);
    }
    ro.cfg_series_budget = cfg.series_budget;
    let table = match cfg.native {
        Some(n) => {
            let (kstart, bounds) = native::bounds(n.schema, n.zero_ns)?;
            ro.cfg_native = 1;
            ro.cfg_native_zero_ns = n.zero_ns;
            ro.cfg_native_kstart = kstart;
            Some(bounds)
        }
        None => None,
    };
    open.maps.flows.set_max_entries(sizes.flows)?;
    open.maps.requests.set_max_entries(sizes.max_series)?;
    open.maps.latency.set_max_entries(sizes.max_series)?;
    let native_entries = match table {
        Some(_) => sizes.max_series.saturating_mul(NATIVE_BUCKETS_PER_SERIES),
        None => 1,
    };
    open.maps.native.set_max_entries(native_entries)?;

    let skel = open.load().context("loading the BPF programs")?;
    if let Some(bounds) = table {
        skel.maps
            .native_bounds
            .update(&0u32.to_ne_bytes(), bytes_of(&*bounds), MapFlags::ANY)
            .context("writing the native bucket boundaries")?;
    }
    let maps = SharedMaps {
        flows: MapHandle::try_from(&skel.maps.flows)?,
        requests: MapHandle::try_from(&skel.maps.requests)?,
        latency: MapHandle::try_from(&skel.maps.latency)?,
        native: MapHandle::try_from(&skel.maps.native)?,
        stats: MapHandle::try_from(&skel.maps.stats)?,
        series_count: MapHandle::try_from(&skel.maps.series_count)?,
        links: MapHandle::try_from(&skel.maps.links)?,
        routes: MapHandle::try_from(&skel.maps.routes)?,
    };
    let progs = Programs {
        ingress: skel.progs.hg_parse_ingress.as_fd().try_clone_to_owned()?,
        egress: skel.progs.hg_parse_egress.as_fd().try_clone_to_owned()?,
    };
    Ok((progs, maps))
}

/// Result of running a program once on a crafted packet (BPF_PROG_TEST_RUN).
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8]) -> Result<i32> {
    test_run_timed(prog, packet, 1).map(|(ret, _)| ret)
}

/// Run a program `repeat` times on a crafted packet; its return value and the
/// kernel's mean time per run (bench/micro.rs measures with it).
pub fn test_run_timed(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> Result<(i32, std::time::Duration)> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: packet.as_ptr() as *const _,
        data_size_in: packet.len() as u32,
        repeat: repeat.max(1) as _,
        ..Default::default()
    };
    // SAFETY: opts points at a live buffer of the stated size for the whole call.
    // libbpf-rs offers test runs only on a skeleton's Program; ours outlive
    // their skeleton as plain fds, so the raw call it wraps is used.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_PROG_TEST_RUN");
    }
    Ok((opts.retval as i32, std::time::Duration::from_nanos(u64::from(opts.duration))))
}
