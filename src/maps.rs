//! Reading the aggregate maps into typed values. The only place that touches
//! raw map bytes; everything above works on `Snapshot`.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::bpf::{check_len, hg_hist, hg_series_key, SharedMaps};

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
}

const STAT_SLOTS: u32 = 9;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub requests: Vec<(SeriesKey, u64)>,
    pub latency: Vec<(SeriesKey, Histogram)>,
    pub stats: Stats,
}

fn read_struct<T: Copy>(bytes: &[u8], what: &str) -> Result<T> {
    check_len::<T>(bytes, what)?;
    // SAFETY: length checked above; T is a plain-old-data mirror of a C struct.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

fn sum_u64(per_cpu: &[Vec<u8>], what: &str) -> Result<u64> {
    per_cpu.iter().try_fold(0u64, |acc, v| Ok(acc.wrapping_add(read_struct::<u64>(v, what)?)))
}

/// Read every map once. `nbuckets` is the configured number of bounds.
pub fn read(maps: &SharedMaps, nbuckets: usize) -> Result<Snapshot> {
    let mut snap = Snapshot::default();

    for key in maps.requests.keys() {
        let Some(per_cpu) = maps.requests.lookup_percpu(&key, MapFlags::ANY).context("reading requests")? else {
            continue;
        };
        let raw: hg_series_key = read_struct(&key, "requests key")?;
        if let Some(k) = SeriesKey::from_raw(&raw) {
            snap.requests.push((k, sum_u64(&per_cpu, "requests value")?));
        }
    }

    for key in maps.latency.keys() {
        let Some(per_cpu) = maps.latency.lookup_percpu(&key, MapFlags::ANY).context("reading latency")? else {
            continue;
        };
        let raw: hg_series_key = read_struct(&key, "latency key")?;
        let Some(k) = SeriesKey::from_raw(&raw) else { continue };
        let mut h = Histogram { buckets: vec![0; nbuckets + 1], ..Default::default() };
        for cpu in &per_cpu {
            let v: hg_hist = read_struct(cpu, "latency value")?;
            for (acc, slot) in h.buckets.iter_mut().zip(v.slots.iter()) {
                *acc += slot;
            }
            h.sum_ns += v.sum_ns;
            h.count += v.count;
        }
        snap.latency.push((k, h));
    }

    let mut stats = [0u64; STAT_SLOTS as usize];
    for (i, slot) in stats.iter_mut().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Some(per_cpu) = maps.stats.lookup_percpu(&key, MapFlags::ANY).context("reading stats")? {
            *slot = sum_u64(&per_cpu, "stats value")?;
        }
    }
    snap.stats = Stats {
        series_dropped: stats[0],
        unanswered_reset: stats[1],
        unanswered_closed: stats[2],
        response_no_request: stats[3],
        pipeline_overflow: stats[4],
        retransmit_ignored: stats[5],
        upgraded: stats[6],
        tls_seen: stats[7],
        flow_insert_failed: stats[8],
    };

    snap.requests.sort_by_key(|(k, _)| *k);
    snap.latency.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(snap)
}
