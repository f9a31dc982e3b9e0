//! The numbers and layouts of bpf/http_golden.h, in Rust: the keys and values
//! of the maps, and the enums the kernel writes into them.
//!
//! Written here by hand, so that the exporter reads the maps without the
//! generated skeleton (which can load programs). The attacher has the
//! skeleton, generated from the object's BTF, and checks every size, field
//! offset and number below against it at compile time
//! (src/attacher/bpf/abi.rs): a change to the header that is not made here
//! does not build.

use anyhow::{bail, Result};

/// Histogram bounds the config may give (enum hg_limit HG_MAX_BUCKETS).
pub const MAX_BUCKETS: usize = 30;
/// Histogram slots: one per bound and +Inf.
pub const HIST_SLOTS: usize = MAX_BUCKETS + 1;
/// Requests a flow keeps for their responses (HG_PIPELINE_DEPTH).
pub const PIPELINE_DEPTH: usize = 4;
/// Server ports one target may watch (HG_MAX_PORTS).
pub const MAX_PORTS: usize = 64;
/// Target ids are below this (HG_MAX_TARGETS).
pub const MAX_TARGETS: usize = 1024;
/// Interfaces the programs can be on at once: slots of the `links` array (HG_MAX_LINKS).
pub const MAX_LINKS: u32 = 4096;
/// Bytes of a line cut by a segment's end kept for the next one, and one more (hg_stream.partial).
pub const PARTIAL_BYTES: usize = 32;
/// Route templates a target may have (HG_MAX_ROUTES).
pub const MAX_ROUTES: usize = 32;
/// Segments before a template's final `*` (HG_ROUTE_SEGS).
pub const ROUTE_SEGS: usize = 8;
/// Bytes of a template's literal segments, all together (HG_ROUTE_BYTES).
pub const ROUTE_BYTES: usize = 128;
/// Bytes of a request's path the kernel reads to match it (HG_PATH_MAX).
pub const PATH_MAX: usize = 128;
/// The route of a request whose path matched none of its target's templates (HG_ROUTE_OTHER).
pub const ROUTE_OTHER: u8 = 255;
/// Native bucket boundaries in the `native_bounds` table (HG_NATIVE_TABLE).
pub const NATIVE_TABLE: usize = 16384;
/// Bits after a latency's top one that pick its cell (HG_NATIVE_CELL_BITS), and the cells (HG_NATIVE_CELLS).
pub const NATIVE_CELL_BITS: u32 = 10;
pub const NATIVE_CELLS: usize = 64 << NATIVE_CELL_BITS;
/// enum hg_segment.
pub const SEG_LITERAL: u8 = 0;
pub const SEG_PARAM: u8 = 1;

/// enum hg_role.
pub const ROLE_SERVER: u8 = 0;
pub const ROLE_CLIENT: u8 = 1;

/// enum hg_method, in the kernel's numbering (0 is none).
pub mod method {
    pub const GET: u8 = 1;
    pub const HEAD: u8 = 2;
    pub const POST: u8 = 3;
    pub const PUT: u8 = 4;
    pub const DELETE: u8 = 5;
    pub const CONNECT: u8 = 6;
    pub const OPTIONS: u8 = 7;
    pub const TRACE: u8 = 8;
    pub const PATCH: u8 = 9;
}

/// Slots of the `stats` map (enum hg_stat), in its order.
pub mod stat {
    pub const SERIES_DROPPED: usize = 0;
    pub const UNANSWERED_RESET: usize = 1;
    pub const UNANSWERED_CLOSED: usize = 2;
    pub const RESPONSE_NO_REQUEST: usize = 3;
    pub const PIPELINE_OVERFLOW: usize = 4;
    pub const RETRANSMIT_IGNORED: usize = 5;
    pub const UPGRADED: usize = 6;
    pub const TLS_SEEN: usize = 7;
    pub const FLOW_INSERT_FAILED: usize = 8;
    pub const FLOWS_CREATED: usize = 9;
    pub const FLOWS_ENDED: usize = 10;
    pub const REQUESTS_TRACKED: usize = 11;
    pub const REQUESTS_ANSWERED: usize = 12;
    pub const UNVERIFIED_FLOWS: usize = 13;
    pub const UNVERIFIED_CONFIRMED: usize = 14;
    pub const NOT_LOCAL: usize = 15;
    pub const ROUTE_PATH_CUT: usize = 16;
    /// The first of the framing-loss slots, in the order of FRAMING_LOST_REASONS.
    pub const LOST_GAP: usize = 17;
    pub const LOST_TOO_COMPLEX: usize = 21;
    /// Slots in all (HG_STAT_MAX).
    pub const SLOTS: usize = 22;
}

/// enum hg_flow_flag.
pub const FLOW_UPGRADED: u8 = 1 << 0;
pub const FLOW_CLOSED: u8 = 1 << 1;
pub const FLOW_UNVERIFIED: u8 = 1 << 2;

/// enum hg_parser: the parser's programs in the interface programs' tail-call array.
pub const PARSE_INGRESS: u32 = 0;
pub const PARSE_EGRESS: u32 = 1;
pub const PARSERS: u32 = 2;

/// struct hg_flow_key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    pub pad: u32,
    pub client_port: u16,
    pub server_port: u16,
    pub target_id: u16,
    pub family: u8,
    pub role: u8,
}

/// struct hg_stream.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stream {
    pub left: u64,
    pub end_seq: u32,
    pub next_seq: u32,
    pub state: u8,
    pub flags: u8,
    pub method: u8,
    pub partial_len: u8,
    pub partial: [u8; PARTIAL_BYTES],
}

/// struct hg_flow.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub req_ts: [u64; PIPELINE_DEPTH],
    pub req_method: [u8; PIPELINE_DEPTH],
    pub req_route: [u8; PIPELINE_DEPTH],
    pub head: u8,
    pub pending: u8,
    pub flags: u8,
    pub skipped: u8,
    pub req: Stream,
    pub resp: Stream,
    pub handshake_ack: u32,
    pub ifindex: u32,
}

/// struct hg_series_key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesKeyRaw {
    pub ifindex: u32,
    pub target_id: u16,
    pub port: u16,
    pub role: u8,
    pub method: u8,
    pub status: u16,
    pub route: u8,
    pub pad: u8,
    pub pad2: u16,
}

/// struct hg_hist: slot i counts bounds[i-1] < v <= bounds[i] (not cumulative).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hist {
    pub slots: [u64; HIST_SLOTS],
    pub sum_ns: u64,
    pub count: u64,
}

/// struct hg_native_key: one native bucket of one latency series.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeKeyRaw {
    pub series: SeriesKeyRaw,
    pub index: i32,
    /// 1: the zero bucket (index 0).
    pub zero: u32,
}

/// struct hg_native_bounds: the buckets' upper boundaries in ns (hge_shared::native).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeBounds {
    pub ns: [u64; NATIVE_TABLE],
    /// For the latencies of a power of two and the next NATIVE_CELL_BITS bits: where in `ns` to look.
    pub cell: [u16; NATIVE_CELLS],
}

/// struct hg_link.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub target_id: u16,
    pub nports: u16,
    pub active: u16,
    pub routes: u16,
    pub ports: [u16; MAX_PORTS],
}

impl Default for Link {
    fn default() -> Link {
        Link { target_id: 0, nports: 0, active: 0, routes: 0, ports: [0; MAX_PORTS] }
    }
}

/// struct hg_route: one template, compiled (src/shared/routes.rs).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub nseg: u8,
    pub star: u8,
    pub kind: [u8; ROUTE_SEGS],
    pub len: [u8; ROUTE_SEGS],
    pub off: [u8; ROUTE_SEGS],
    pub pad: [u8; 6],
    pub lit: [u8; ROUTE_BYTES + 8],
}

impl Default for Route {
    fn default() -> Route {
        Route {
            nseg: 0,
            star: 0,
            kind: [0; ROUTE_SEGS],
            len: [0; ROUTE_SEGS],
            off: [0; ROUTE_SEGS],
            pad: [0; 6],
            lit: [0; ROUTE_BYTES + 8],
        }
    }
}

/// struct hg_routes: a target's templates, the value of the `routes` map.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes {
    pub n: u32,
    pub pad: u32,
    /// By segment count (ROUTE_SEGS + 1: that many or more), the templates
    /// (bit i: the i-th) a whole path, or a cut one, may match.
    pub whole: [u32; ROUTE_SEGS + 2],
    pub cut: [u32; ROUTE_SEGS + 2],
    pub r: [Route; MAX_ROUTES],
}

impl Default for Routes {
    fn default() -> Routes {
        Routes { n: 0, pad: 0, whole: [0; ROUTE_SEGS + 2], cut: [0; ROUTE_SEGS + 2], r: [Route::default(); MAX_ROUTES] }
    }
}

// Written whole into the maps: no padding the compiler could leave unset.
const _: () = assert!(std::mem::size_of::<Link>() == 8 + 2 * MAX_PORTS);
const _: () = assert!(std::mem::size_of::<SeriesKeyRaw>() == 16);
const _: () = assert!(std::mem::size_of::<Route>() == 32 + ROUTE_BYTES + 8);
const _: () =
    assert!(std::mem::size_of::<Routes>() == 8 + 2 * 4 * (ROUTE_SEGS + 2) + MAX_ROUTES * std::mem::size_of::<Route>());
const _: () = assert!(std::mem::size_of::<Hist>() == (HIST_SLOTS + 2) * 8);
const _: () = assert!(std::mem::size_of::<NativeKeyRaw>() == 24);
// The framing-loss slots are the last ones.
const _: () = assert!(stat::LOST_TOO_COMPLEX == stat::SLOTS - 1);

/// Types that may be read from, and written as, map bytes: plain C layouts
/// (no pointers, no padding that matters, every bit pattern a valid value).
///
/// # Safety
/// Implement only for `#[repr(C)]` integer-only structs and integers.
pub unsafe trait KernelLayout: Copy {}

// SAFETY: #[repr(C)] structs of integers and integer arrays.
unsafe impl KernelLayout for Flow {}
// SAFETY: as above.
unsafe impl KernelLayout for SeriesKeyRaw {}
// SAFETY: as above.
unsafe impl KernelLayout for Hist {}
// SAFETY: as above.
unsafe impl KernelLayout for Link {}
// SAFETY: as above.
unsafe impl KernelLayout for NativeKeyRaw {}
// SAFETY: as above.
unsafe impl KernelLayout for NativeBounds {}
// SAFETY: as above.
unsafe impl KernelLayout for Routes {}
// SAFETY: an integer.
unsafe impl KernelLayout for u64 {}

/// The bytes of a `T`, to write into a map.
pub fn bytes_of<T: KernelLayout>(v: &T) -> &[u8] {
    // SAFETY: T: KernelLayout is integers only, with no padding that matters;
    // the slice borrows `v` for its whole life.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A `T` from the start of `bytes` (which may be unaligned).
pub fn read<T: KernelLayout>(bytes: &[u8], what: &str) -> Result<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        bail!("{what}: map returned {} bytes, expected {}", bytes.len(), std::mem::size_of::<T>());
    }
    // SAFETY: length checked above; T: KernelLayout, so any bytes are a valid T.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_map_values_are_an_error_not_a_read() {
        assert!(read::<u64>(&[0; 7], "v").is_err());
        assert_eq!(read::<u64>(&5u64.to_ne_bytes(), "v").unwrap(), 5);
    }
}
