//! Reading the aggregate maps into typed values. The only place that touches
//! raw map bytes; everything above works on `Snapshot`.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::bpf::{check_len, hg_flow, hg_hist, hg_series_key, SharedMaps};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Server,
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl Method {
    /// Numbering of enum hg_method in bpf/http_golden.h.
    fn from_raw(v: u8) -> Option<Method> {
        use Method::*;
        Some(match v {
            1 => Get,
            2 => Head,
            3 => Post,
            4 => Put,
            5 => Delete,
            6 => Connect,
            7 => Options,
            8 => Trace,
            9 => Patch,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        use Method::*;
        match self {
            Get => "GET",
            Head => "HEAD",
            Post => "POST",
            Put => "PUT",
            Delete => "DELETE",
            Connect => "CONNECT",
            Options => "OPTIONS",
            Trace => "TRACE",
            Patch => "PATCH",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub target_id: u16,
    pub ifindex: u32,
    pub role: Role,
    pub port: u16,
    pub method: Method,
    /// Status class (2 for 2xx) or code (200), as the program was configured; 0 for requests.
    pub status: u16,
}

impl SeriesKey {
    fn from_raw(k: &hg_series_key) -> Option<SeriesKey> {
        Some(SeriesKey {
            target_id: k.target_id,
            ifindex: k.ifindex,
            role: if k.role == 0 { Role::Server } else { Role::Client },
            port: k.port,
            method: Method::from_raw(k.method)?,
            status: k.status,
        })
    }
}

/// Per-bucket counts (not cumulative), the last one being +Inf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
    pub count: u64,
}

/// Counters of the `stats` map, in the order of enum hg_stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub series_dropped: u64,
    pub unanswered_reset: u64,
    pub unanswered_closed: u64,
    pub response_no_request: u64,
    pub pipeline_overflow: u64,
    pub retransmit_ignored: u64,
    pub upgraded: u64,
    pub tls_seen: u64,
    pub flow_insert_failed: u64,
    pub flows_created: u64,
    pub flows_ended: u64,
    pub requests_tracked: u64,
    pub requests_answered: u64,
    /// Boundaries lost, by cause (see `FRAMING_LOST_REASONS`).
    pub framing_lost: [u64; 5],
}

/// Label values for `Stats::framing_lost`, in the order of the HG_STAT_LOST_* slots.
pub const FRAMING_LOST_REASONS: [&str; 5] = ["gap", "not_a_message", "unreadable_header", "bad_chunk", "too_complex"];

impl Stats {
    pub fn framing_lost_total(&self) -> u64 {
        self.framing_lost.iter().sum()
    }
}

/// HG_FLOW_CLOSED in bpf/http_golden.h.
const FLOW_CLOSED: u8 = 1 << 1;

/// HG_STAT_MAX in bpf/http_golden.h.
pub const STAT_SLOTS: u32 = 18;

impl Stats {
    fn from_slots(v: &[u64; STAT_SLOTS as usize]) -> Stats {
        Stats {
            series_dropped: v[0],
            unanswered_reset: v[1],
            unanswered_closed: v[2],
            response_no_request: v[3],
            pipeline_overflow: v[4],
            retransmit_ignored: v[5],
            upgraded: v[6],
            tls_seen: v[7],
            flow_insert_failed: v[8],
            flows_created: v[9],
            flows_ended: v[10],
            requests_tracked: v[11],
            requests_answered: v[12],
            framing_lost: [v[13], v[14], v[15], v[16], v[17]],
        }
    }
}

/// What the flow table holds right now, and what it must have lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flows {
    /// Connections tracked at the time of the read.
    pub live: u64,
    /// Requests waiting for a response on those connections.
    pub pending: u64,
    /// Flows the LRU map forgot to make room (lower bound at the time of the read).
    pub evicted: u64,
    /// Requests that were pending on flows the LRU map forgot (lower bound).
    pub evicted_unanswered: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub requests: Vec<(SeriesKey, u64)>,
    pub latency: Vec<(SeriesKey, Histogram)>,
    pub stats: Stats,
    /// None when the flow table could not be scanned completely.
    pub flows: Option<Flows>,
}

fn read_struct<T: Copy>(bytes: &[u8], what: &str) -> Result<T> {
    check_len::<T>(bytes, what)?;
    // SAFETY: length checked above; T is a plain-old-data mirror of a C struct.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// Sum of one u64 per CPU, from whatever slices hold them.
fn sum_u64<'a>(per_cpu: impl IntoIterator<Item = &'a [u8]>, what: &str) -> Result<u64> {
    per_cpu.into_iter().try_fold(0u64, |acc, v| Ok(acc.wrapping_add(read_struct::<u64>(v, what)?)))
}

/// Read every map once. `nbuckets` is the configured number of bounds.
pub fn read(maps: &SharedMaps, nbuckets: usize) -> Result<Snapshot> {
    let mut snap = Snapshot::default();

    let mut err = None;
    // Per-CPU values come in 8-byte-aligned slots, one per possible CPU.
    let req_stride = (maps.requests.value_size() as usize).next_multiple_of(8);
    for_each_batched(&maps.requests, true, |key, per_cpu| {
        let n = sum_u64(per_cpu.chunks_exact(req_stride), "requests value");
        let (Ok(raw), Ok(n)) = (read_struct::<hg_series_key>(key, "requests key"), n) else {
            err = Some(anyhow::anyhow!("malformed requests entry"));
            return;
        };
        if let Some(k) = SeriesKey::from_raw(&raw) {
            snap.requests.push((k, n));
        }
    })
    .context("reading requests")?;
    let hist_size = maps.latency.value_size() as usize;
    for_each_batched(&maps.latency, true, |key, per_cpu| {
        let Ok(raw) = read_struct::<hg_series_key>(key, "latency key") else {
            err = Some(anyhow::anyhow!("malformed latency key"));
            return;
        };
        let Some(k) = SeriesKey::from_raw(&raw) else { return };
        let mut h = Histogram { buckets: vec![0; nbuckets + 1], ..Default::default() };
        for cpu in per_cpu.chunks_exact(hist_size.next_multiple_of(8)) {
            let Ok(v) = read_struct::<hg_hist>(&cpu[..hist_size], "latency value") else {
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
    if let Some(e) = err {
        return Err(e);
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
    snap.flows = scan.map(|(live, pending)| Flows {
        live,
        pending,
        evicted: before.flows_created.saturating_sub(after.flows_ended).saturating_sub(live),
        evicted_unanswered: before
            .requests_tracked
            .saturating_sub(after.requests_answered)
            .saturating_sub(after.unanswered_reset)
            .saturating_sub(after.unanswered_closed)
            .saturating_sub(pending),
    });
    snap.stats = after;

    snap.requests.sort_by_key(|(k, _)| *k);
    snap.latency.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(snap)
}

fn read_stats(maps: &SharedMaps) -> Result<Stats> {
    let mut slots = [0u64; STAT_SLOTS as usize];
    for (i, slot) in slots.iter_mut().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Some(per_cpu) = maps.stats.lookup_percpu(&key, MapFlags::ANY).context("reading stats")? {
            *slot = sum_u64(per_cpu.iter().map(Vec::as_slice), "stats value")?;
        }
    }
    Ok(Stats::from_slots(&slots))
}

/// Every element of a hash map, in batches of BATCH (one syscall each instead
/// of two per element). `f` gets the key and the value bytes; for per-CPU maps
/// the value holds one 8-byte-aligned slot per possible CPU. Err if the kernel
/// refused part of the scan: callers must not mistake a partial read for a whole.
fn for_each_batched(map: &libbpf_rs::MapHandle, per_cpu: bool, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    // Small batches: the buffers are allocated per read, and a few syscalls
    // per thousand series cost less than zeroing megabytes every read.
    const BATCH: u32 = 256;
    let key_size = map.key_size() as usize;
    let value_size = if per_cpu {
        possible_cpus()? * (map.value_size() as usize).next_multiple_of(8)
    } else {
        map.value_size() as usize
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
        // SAFETY: every buffer is sized for BATCH elements of this map's key and value sizes.
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

fn possible_cpus() -> Result<usize> {
    // SAFETY: no arguments; returns a count or a negative errno.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    anyhow::ensure!(n > 0, "counting possible CPUs: {}", std::io::Error::from_raw_os_error(-n));
    Ok(n as usize)
}

/// Live flows and their pending requests. None if the scan was refused
/// part-way: a partial count would overstate evictions.
fn scan_flows(maps: &SharedMaps) -> Option<(u64, u64)> {
    let (mut live, mut pending) = (0u64, 0u64);
    let mut ok = true;
    for_each_batched(&maps.flows, false, |_, v| match read_struct::<hg_flow>(v, "flow value") {
        // Closed flows linger for late retransmissions; they are already counted as ended.
        Ok(f) if f.flags & FLOW_CLOSED == 0 => {
            live += 1;
            pending += u64::from(f.pending) + u64::from(f.skipped);
        }
        Ok(_) => {}
        Err(_) => ok = false,
    })
    .ok()?;
    ok.then_some((live, pending))
}
