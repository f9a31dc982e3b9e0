//! Reading the maps into a `Snapshot`, through read-only descriptors: the
//! only code of the exporter that handles map bytes (decoded through
//! `hge_shared::abi`). The maps are opened read-only by the attacher
//! (BPF_F_RDONLY): the kernel refuses any update or delete through them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};

use hge_shared::abi::{self, stat, Flow, Hist, NativeKeyRaw, SeriesKeyRaw, FLOW_CLOSED, FLOW_UNVERIFIED};
use hge_shared::snapshot::{Flows, Histogram, SeriesKey, Snapshot, Stats};

/// One map as a reader holds it: an fd and the sizes that shape its bytes.
pub struct MapFd {
    fd: OwnedFd,
    pub key_size: u32,
    pub value_size: u32,
}

impl MapFd {
    pub fn new(fd: OwnedFd) -> Result<MapFd> {
        // SAFETY: zeroed is a valid bpf_map_info (integers only).
        let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
        // SAFETY: info is as large as len says.
        let r = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(-r)).context("reading a map's info");
        }
        Ok(MapFd { fd, key_size: info.key_size, value_size: info.value_size })
    }
}

impl AsFd for MapFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The maps the exporter reads, and nothing else.
pub struct ReadMaps {
    pub flows: MapFd,
    pub requests: MapFd,
    pub latency: MapFd,
    /// The native buckets of the latency series (one entry, never used, when they are off).
    pub native: MapFd,
    pub stats: MapFd,
}

fn possible_cpus() -> Result<usize> {
    // SAFETY: a plain call; it reads /sys/devices/system/cpu/possible once.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    usize::try_from(n).map_err(|_| std::io::Error::from_raw_os_error(-n)).context("counting possible CPUs")
}

/// Sum of one u64 per CPU, from whatever slices hold them.
fn sum_u64<'a>(per_cpu: impl IntoIterator<Item = &'a [u8]>, what: &str) -> Result<u64> {
    per_cpu.into_iter().try_fold(0u64, |acc, v| Ok(acc.wrapping_add(abi::read::<u64>(v, what)?)))
}

/// Read every map once. `nbuckets` is the configured number of bounds.
pub fn read(maps: &ReadMaps, nbuckets: usize) -> Result<Snapshot> {
    let mut snap = Snapshot::default();

    let mut err = None;
    // Per-CPU values come in 8-byte-aligned slots, one per possible CPU.
    let req_stride = (maps.requests.value_size as usize).next_multiple_of(8);
    for_each_batched(&maps.requests, true, |key, per_cpu| {
        let n = sum_u64(per_cpu.chunks_exact(req_stride), "requests value");
        let (Ok(raw), Ok(n)) = (abi::read::<SeriesKeyRaw>(key, "requests key"), n) else {
            err = Some(anyhow::anyhow!("malformed requests entry"));
            return;
        };
        if let Some(k) = SeriesKey::from_raw(&raw) {
            snap.requests.push((k, n));
        }
    })
    .context("reading requests")?;
    let hist_size = maps.latency.value_size as usize;
    for_each_batched(&maps.latency, true, |key, per_cpu| {
        let Ok(raw) = abi::read::<SeriesKeyRaw>(key, "latency key") else {
            err = Some(anyhow::anyhow!("malformed latency key"));
            return;
        };
        let Some(k) = SeriesKey::from_raw(&raw) else { return };
        let mut h = Histogram { buckets: vec![0; nbuckets + 1], ..Default::default() };
        for cpu in per_cpu.chunks_exact(hist_size.next_multiple_of(8)) {
            let Ok(v) = abi::read::<Hist>(&cpu[..hist_size], "latency value") else {
                err = Some(anyhow::anyhow!("malformed latency value"));
                return;
            };
            for (acc, slot) in h.buckets.iter_mut().zip(v.slots.iter()) {
                *acc += slot;
            }
            h.sum_ns += v.sum_ns;
            h.count += v.count;
        }
        snap.latency.push((k, h));
    })
    .context("reading latency")?;
    // The classic histograms first, then the native buckets. Prometheus
    // refuses a native histogram whose count is not the sum of its buckets,
    // and the two maps cannot be read at one instant: so a series with native
    // buckets takes their sum as its count (classic `_count` and +Inf too).
    // The kernel counts an observation in both within one program run, and the
    // native map is read after, so that sum is at least the classic buckets
    // read before it: the classic histogram stays monotonic.
    let mut native: std::collections::HashMap<SeriesKey, (u64, Vec<(i32, u64)>)> = Default::default();
    for_each_batched(&maps.native, true, |key, per_cpu| {
        let n = sum_u64(per_cpu.chunks_exact(8), "native value");
        let (Ok(raw), Ok(n)) = (abi::read::<NativeKeyRaw>(key, "native key"), n) else {
            err = Some(anyhow::anyhow!("malformed native entry"));
            return;
        };
        let Some(k) = SeriesKey::from_raw(&raw.series) else { return };
        let e = native.entry(k).or_default();
        match raw.zero {
            0 => e.1.push((raw.index, n)),
            _ => e.0 += n,
        }
    })
    .context("reading native buckets")?;
    if let Some(e) = err {
        return Err(e);
    }
    for (k, h) in &mut snap.latency {
        if let Some((zero, mut buckets)) = native.remove(k) {
            buckets.sort_unstable();
            h.count = zero + buckets.iter().map(|(_, n)| n).sum::<u64>();
            h.native_zero = zero;
            h.native = buckets;
        }
    }

    // Evictions are not reported by the kernel; they are what is missing once
    // ended and live flows are accounted for. Counters that only grow are read
    // before the scan and those that settle flows after it, so concurrent
    // traffic can only make the estimate low, never high.
    let before = read_stats(maps)?;
    let scan = scan_flows(maps);
    let after = read_stats(maps)?;
    // Without a complete scan there is no estimate this time; the exported
    // values stay as they were.
    snap.flows = scan.map(|Scan { live, pending, unverified }| Flows {
        live,
        pending,
        never_confirmed: before[stat::UNVERIFIED_FLOWS]
            .saturating_sub(after[stat::UNVERIFIED_CONFIRMED])
            .saturating_sub(unverified),
        evicted: before[stat::FLOWS_CREATED].saturating_sub(after[stat::FLOWS_ENDED]).saturating_sub(live),
        evicted_unanswered: before[stat::REQUESTS_TRACKED]
            .saturating_sub(after[stat::REQUESTS_ANSWERED])
            .saturating_sub(after[stat::UNANSWERED_RESET])
            .saturating_sub(after[stat::UNANSWERED_CLOSED])
            .saturating_sub(pending),
    });
    snap.stats = after;

    snap.requests.sort_by_key(|(k, _)| *k);
    snap.latency.sort_by_key(|(k, _)| *k);
    Ok(snap)
}

fn read_stats(maps: &ReadMaps) -> Result<Stats> {
    let mut slots = [0u64; stat::SLOTS];
    let mut err = None;
    for_each_batched(&maps.stats, true, |key, per_cpu| {
        let i = <[u8; 4]>::try_from(key).map(|k| u32::from_ne_bytes(k) as usize);
        let i = i.map_err(|_| anyhow::anyhow!("stats key of {} bytes", key.len()));
        match (i, sum_u64(per_cpu.chunks_exact(8), "stats value")) {
            (Ok(i), Ok(n)) if i < stat::SLOTS => slots[i] = n,
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => err = Some(e),
        }
    })
    .context("reading stats")?;
    err.map_or(Ok(Stats::from_slots(&slots)), Err)
}

/// A real bpf() read through the held fds (the watchdog's question).
pub fn probe(maps: &ReadMaps) -> Result<()> {
    read_stats(maps).map(|_| ())
}

/// Every element of a hash map, in batches of BATCH (one syscall each instead
/// of two per element). `f` gets the key and the value bytes; for per-CPU maps
/// the value holds one 8-byte-aligned slot per possible CPU. Err if the kernel
/// refused part of the scan: callers must not mistake a partial read for a whole.
fn for_each_batched(map: &MapFd, per_cpu: bool, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
    // Small batches: the buffers are allocated per read, and a few syscalls
    // per thousand series cost less than zeroing megabytes every read.
    const BATCH: u32 = 256;
    let key_size = map.key_size as usize;
    let value_size = if per_cpu {
        possible_cpus()? * (map.value_size as usize).next_multiple_of(8)
    } else {
        map.value_size as usize
    };
    let mut keys = vec![0u8; key_size * BATCH as usize];
    let mut values = vec![0u8; value_size * BATCH as usize];
    let mut in_batch = vec![0u8; key_size];
    let mut out_batch = vec![0u8; key_size];
    let mut first = true;
    loop {
        let mut count = BATCH;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: every buffer is sized for BATCH elements of this map's key and
        // value sizes. libbpf-rs's lookup_batch refuses per-CPU maps, so the
        // call it would make is made here.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                if first { std::ptr::null_mut() } else { in_batch.as_mut_ptr().cast() },
                out_batch.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let done = match ret {
            0 => false,
            e if -e == libc::ENOENT => true, // the last batch; count is valid
            e => anyhow::bail!("batched map read: {}", std::io::Error::from_raw_os_error(-e)),
        };
        for (k, v) in keys.chunks_exact(key_size).zip(values.chunks_exact(value_size)).take(count as usize) {
            f(k, v);
        }
        if done {
            return Ok(());
        }
        in_batch.copy_from_slice(&out_batch);
        first = false;
    }
}

/// Live flows and their pending requests. None if the scan was refused
/// part-way: a partial count would overstate evictions.
/// What one scan of the flow table found.
#[derive(Default)]
struct Scan {
    live: u64,
    /// Requests waiting on live flows shown to be real (those on other flows were never counted).
    pending: u64,
    /// Live flows a request started with no handshake seen, not yet shown real.
    unverified: u64,
}

fn scan_flows(maps: &ReadMaps) -> Option<Scan> {
    let mut scan = Scan::default();
    let mut ok = true;
    for_each_batched(&maps.flows, false, |_, v| match abi::read::<Flow>(v, "flow value") {
        // Closed flows linger for late retransmissions; they are already counted as ended.
        Ok(f) if f.flags & FLOW_CLOSED == 0 => {
            scan.live += 1;
            if f.flags & FLOW_UNVERIFIED == 0 {
                scan.pending += u64::from(f.pending) + u64::from(f.skipped);
            } else if f.handshake_ack == 0 {
                // Started by a request with no handshake seen (the kernel counts only those).
                scan.unverified += 1;
            }
        }
        Ok(_) => {}
        Err(_) => ok = false,
    })
    .ok()?;
    ok.then_some(scan)
}
