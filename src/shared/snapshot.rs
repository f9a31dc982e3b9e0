//! What one read of the maps holds, as typed values: everything above the
//! bpf module (the collector, the tests) works on these, never on map bytes.

use crate::abi::{self, method, stat};

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
    /// 0 when the target has no routes; else 1 + the template's index, or ROUTE_OTHER.
    pub route: u8,
}

/// Per-bucket counts (not cumulative), the last one being +Inf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
    pub count: u64,
    /// Native buckets: the zero bucket's count, and each bucket hit (index,
    /// count), by index. Empty when native buckets are off.
    pub native_zero: u64,
    pub native: Vec<(i32, u64)>,
}

/// Counters of the `stats` map, by slot (hge_shared::abi::stat): what each
/// means, and the family it is exported as, is said once, in the exporter's
/// table of self-metrics (src/exporter/collector/own.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats(pub [u64; stat::SLOTS]);

impl Default for Stats {
    fn default() -> Stats {
        Stats([0; stat::SLOTS])
    }
}

impl std::ops::Index<usize> for Stats {
    type Output = u64;

    fn index(&self, slot: usize) -> &u64 {
        &self.0[slot]
    }
}

/// Label values of the framing-loss slots (the last ones), in their order.
pub const FRAMING_LOST_REASONS: [&str; 5] = ["gap", "not_a_message", "unreadable_header", "bad_chunk", "too_complex"];

// The framing-loss reasons are the last slots, in FRAMING_LOST_REASONS' order.
const _: () = assert!(stat::LOST_GAP + FRAMING_LOST_REASONS.len() == stat::SLOTS);

impl Stats {
    pub fn from_slots(slots: &[u64; stat::SLOTS]) -> Stats {
        Stats(*slots)
    }

    /// The framing-loss counters, in the order of FRAMING_LOST_REASONS.
    pub fn framing_lost(&self) -> &[u64] {
        &self.0[stat::LOST_GAP..]
    }

    pub fn framing_lost_total(&self) -> u64 {
        self.framing_lost().iter().sum()
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
    /// Flows never shown to be real connections (no acknowledged handshake,
    /// no answer from the server) that are gone now (lower bound).
    pub never_confirmed: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub requests: Vec<(SeriesKey, u64)>,
    pub latency: Vec<(SeriesKey, Histogram)>,
    pub stats: Stats,
    /// None when the flow table could not be scanned completely.
    pub flows: Option<Flows>,
}

impl Method {
    /// From enum hg_method; 0 and unknown numbers are None.
    pub fn from_raw(v: u8) -> Option<Method> {
        use Method::*;
        Some(match v {
            method::GET => Get,
            method::HEAD => Head,
            method::POST => Post,
            method::PUT => Put,
            method::DELETE => Delete,
            method::CONNECT => Connect,
            method::OPTIONS => Options,
            method::TRACE => Trace,
            method::PATCH => Patch,
            _ => return None,
        })
    }
}

impl SeriesKey {
    pub fn from_raw(k: &abi::SeriesKeyRaw) -> Option<SeriesKey> {
        Some(SeriesKey {
            target_id: k.target_id,
            ifindex: k.ifindex,
            role: if k.role == abi::ROLE_SERVER { Role::Server } else { Role::Client },
            port: k.port,
            method: Method::from_raw(k.method)?,
            status: k.status,
            route: k.route,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_decode_in_the_kernels_numbering() {
        assert_eq!(Method::from_raw(0), None);
        assert_eq!(Method::from_raw(1), Some(Method::Get));
        assert_eq!(Method::from_raw(3), Some(Method::Post));
        assert_eq!(Method::from_raw(9), Some(Method::Patch));
        assert_eq!(Method::from_raw(10), None);
    }
}
