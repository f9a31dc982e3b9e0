//! Numbers and layouts shared with bpf/http_golden.h, taken from the generated
//! skeleton (which reads them from the object's BTF) rather than copied by
//! hand, and checked at compile time where Rust keeps its own copy.

use anyhow::{bail, Result};

pub use super::skel::types::{hg_flow, hg_flow_key, hg_hist, hg_link, hg_series_key};
use super::skel::types::{hg_flow_flag, hg_limit, hg_method, hg_parser, hg_role, hg_stat};
use super::snapshot::{Method, Role, SeriesKey, Stats, FRAMING_LOST_REASONS};
use crate::config;

/// Slots of the `stats` map (enum hg_stat).
pub const STAT_SLOTS: usize = hg_stat::HG_STAT_MAX.0 as usize;
/// A flow ended by FIN or RST, kept only to recognise late retransmissions.
pub const FLOW_CLOSED: u8 = hg_flow_flag::HG_FLOW_CLOSED.0 as u8;
/// A flow not yet shown to be a real connection: its requests are not counted yet.
pub const FLOW_UNVERIFIED: u8 = hg_flow_flag::HG_FLOW_UNVERIFIED.0 as u8;
/// The framing-loss slots, in the order of FRAMING_LOST_REASONS.
const LOST_FIRST: usize = hg_stat::HG_STAT_LOST_GAP.0 as usize;

// The config validates against limits the BPF layout fixes.
const _: () = assert!(config::MAX_BUCKETS == hg_limit::HG_MAX_BUCKETS.0 as usize);
const _: () = assert!(config::MAX_PORTS == hg_limit::HG_MAX_PORTS.0 as usize);
const _: () = assert!(config::MAX_TARGETS == hg_limit::HG_MAX_TARGETS.0 as usize);
// Histogram values: one slot per bound, +Inf, then sum and count.
const _: () = assert!(
    std::mem::size_of::<hg_hist>() == (hg_limit::HG_HIST_SLOTS.0 as usize + 2) * 8
        && hg_limit::HG_HIST_SLOTS.0 == hg_limit::HG_MAX_BUCKETS.0 + 1
);
// The framing-loss reasons are the last slots, in FRAMING_LOST_REASONS' order.
const _: () = assert!(LOST_FIRST + FRAMING_LOST_REASONS.len() == STAT_SLOTS);
const _: () = assert!(hg_stat::HG_STAT_LOST_TOO_COMPLEX.0 as usize == STAT_SLOTS - 1);
const _: () = assert!(METHODS.len() == hg_method::HG_METHOD_PATCH.0 as usize);

/// Each method by its C name, so no numbering is copied.
const METHODS: [(hg_method, Method); 9] = [
    (hg_method::HG_METHOD_GET, Method::Get),
    (hg_method::HG_METHOD_HEAD, Method::Head),
    (hg_method::HG_METHOD_POST, Method::Post),
    (hg_method::HG_METHOD_PUT, Method::Put),
    (hg_method::HG_METHOD_DELETE, Method::Delete),
    (hg_method::HG_METHOD_CONNECT, Method::Connect),
    (hg_method::HG_METHOD_OPTIONS, Method::Options),
    (hg_method::HG_METHOD_TRACE, Method::Trace),
    (hg_method::HG_METHOD_PATCH, Method::Patch),
];

/// Types that may be read from map bytes: plain C layouts (no pointers, no
/// padding that matters, every bit pattern a valid value).
///
/// # Safety
/// Implement only for `#[repr(C)]` integer-only structs and integers.
pub unsafe trait Plain: Copy {}

// SAFETY: generated #[repr(C)] structs of integers and integer arrays.
unsafe impl Plain for hg_flow {}
// SAFETY: as above.
unsafe impl Plain for hg_series_key {}
// SAFETY: as above.
unsafe impl Plain for hg_hist {}
// SAFETY: as above.
unsafe impl Plain for hg_link {}
// SAFETY: an integer.
unsafe impl Plain for u64 {}

// Written whole into the map: no padding the compiler could leave unset.
const _: () = assert!(std::mem::size_of::<hg_link>() == 8 + 2 * hg_limit::HG_MAX_PORTS.0 as usize);
/// Interfaces the programs can be on at once (slots of the `links` array).
pub const MAX_LINKS: u32 = hg_limit::HG_MAX_LINKS.0;
/// The parser's programs in the interface programs' tail-call array.
pub const HG_PARSE_INGRESS: u32 = hg_parser::HG_PARSE_INGRESS.0;
pub const HG_PARSE_EGRESS: u32 = hg_parser::HG_PARSE_EGRESS.0;
pub const HG_PARSERS: u32 = hg_parser::HG_PARSERS.0;

/// The bytes of a `T`, to write into a map.
pub fn bytes_of<T: Plain>(v: &T) -> &[u8] {
    // SAFETY: T: Plain is integers only, with no padding the asserts above
    // allow; the slice borrows `v` for its whole life.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A `T` from the start of `bytes` (which may be unaligned).
pub fn read_plain<T: Plain>(bytes: &[u8], what: &str) -> Result<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        bail!("{what}: map returned {} bytes, expected {}", bytes.len(), std::mem::size_of::<T>());
    }
    // SAFETY: length checked above; T: Plain, so any bytes are a valid T. The
    // map APIs of libbpf-rs hand out bytes, not typed values.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

impl Method {
    /// From enum hg_method; 0 and unknown numbers are None.
    pub(super) fn from_raw(v: u8) -> Option<Method> {
        METHODS.iter().find(|(raw, _)| raw.0 == u32::from(v)).map(|(_, m)| *m)
    }
}

impl SeriesKey {
    pub(super) fn from_raw(k: &hg_series_key) -> Option<SeriesKey> {
        Some(SeriesKey {
            target_id: k.target_id,
            ifindex: k.ifindex,
            role: if u32::from(k.role) == hg_role::HG_ROLE_SERVER.0 { Role::Server } else { Role::Client },
            port: k.port,
            method: Method::from_raw(k.method)?,
            status: k.status,
        })
    }
}

impl Stats {
    pub(super) fn from_slots(v: &[u64; STAT_SLOTS]) -> Stats {
        let at = |s: hg_stat| v[s.0 as usize];
        let mut framing_lost = [0; FRAMING_LOST_REASONS.len()];
        framing_lost.copy_from_slice(&v[LOST_FIRST..]);
        Stats {
            series_dropped: at(hg_stat::HG_STAT_SERIES_DROPPED),
            unanswered_reset: at(hg_stat::HG_STAT_UNANSWERED_RESET),
            unanswered_closed: at(hg_stat::HG_STAT_UNANSWERED_CLOSED),
            response_no_request: at(hg_stat::HG_STAT_RESPONSE_NO_REQUEST),
            pipeline_overflow: at(hg_stat::HG_STAT_PIPELINE_OVERFLOW),
            retransmit_ignored: at(hg_stat::HG_STAT_RETRANSMIT_IGNORED),
            upgraded: at(hg_stat::HG_STAT_UPGRADED),
            tls_seen: at(hg_stat::HG_STAT_TLS_SEEN),
            flow_insert_failed: at(hg_stat::HG_STAT_FLOW_INSERT_FAILED),
            flows_created: at(hg_stat::HG_STAT_FLOWS_CREATED),
            flows_ended: at(hg_stat::HG_STAT_FLOWS_ENDED),
            requests_tracked: at(hg_stat::HG_STAT_REQUESTS_TRACKED),
            requests_answered: at(hg_stat::HG_STAT_REQUESTS_ANSWERED),
            unverified_flows: at(hg_stat::HG_STAT_UNVERIFIED_FLOWS),
            unverified_confirmed: at(hg_stat::HG_STAT_UNVERIFIED_CONFIRMED),
            not_local: at(hg_stat::HG_STAT_NOT_LOCAL),
            framing_lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_decode_in_the_kernels_numbering() {
        assert_eq!(Method::from_raw(0), None);
        assert_eq!(Method::from_raw(hg_method::HG_METHOD_GET.0 as u8), Some(Method::Get));
        assert_eq!(Method::from_raw(hg_method::HG_METHOD_POST.0 as u8), Some(Method::Post));
        assert_eq!(Method::from_raw(hg_method::HG_METHOD_PATCH.0 as u8), Some(Method::Patch));
        assert_eq!(Method::from_raw(hg_method::HG_METHOD_PATCH.0 as u8 + 1), None);
    }

    #[test]
    fn short_map_values_are_an_error_not_a_read() {
        assert!(read_plain::<u64>(&[0; 7], "v").is_err());
        assert_eq!(read_plain::<u64>(&5u64.to_ne_bytes(), "v").unwrap(), 5);
    }
}
