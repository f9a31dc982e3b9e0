//! The skeleton, generated from the object's BTF, against the layouts and
//! numbers src/shared/abi.rs writes by hand for the exporter: every size,
//! field offset and enum value, checked at compile time. A change to
//! bpf/http_golden.h that is not made there too does not build.

use std::mem::{offset_of, size_of};

use hge_shared::abi::{self, method, stat, Flow, FlowKey, Hist, Link, NativeBounds, NativeKeyRaw, Route, Routes};
use hge_shared::abi::{SeriesKeyRaw, Stream};

use super::skel::types::{hg_flow, hg_flow_flag, hg_flow_key, hg_hist, hg_limit, hg_link, hg_method, hg_parser};
use super::skel::types::{hg_native_bounds, hg_native_key};
use super::skel::types::{hg_role, hg_route, hg_routes, hg_segment, hg_series_key, hg_stat, hg_stream};

/// The two types have the same size, and each named field the same offset.
macro_rules! same_layout {
    ($skel:ty, $ours:ty, $($field:ident),+) => {
        const _: () = assert!(size_of::<$skel>() == size_of::<$ours>());
        $(const _: () = assert!(offset_of!($skel, $field) == offset_of!($ours, $field));)+
    };
}

same_layout!(hg_flow_key, FlowKey, client_addr, server_addr, pad, client_port, server_port, target_id, family, role);
same_layout!(hg_stream, Stream, left, end_seq, next_seq, state, flags, method, partial_len, partial);
same_layout!(
    hg_flow,
    Flow,
    req_ts,
    req_method,
    req_route,
    head,
    pending,
    flags,
    skipped,
    req,
    resp,
    handshake_ack,
    ifindex
);
same_layout!(hg_series_key, SeriesKeyRaw, ifindex, target_id, port, role, method, status, route, pad, pad2);
same_layout!(hg_hist, Hist, slots, sum_ns, count);
same_layout!(hg_native_key, NativeKeyRaw, series, index, zero);
same_layout!(hg_native_bounds, NativeBounds, ns, cell);
same_layout!(hg_link, Link, target_id, nports, active, routes, ports);
same_layout!(hg_route, Route, nseg, star, kind, len, off, pad, lit);
same_layout!(hg_routes, Routes, n, pad, whole, cut, r);

const _: () = assert!(abi::MAX_BUCKETS == hg_limit::HG_MAX_BUCKETS.0 as usize);
const _: () = assert!(abi::HIST_SLOTS == hg_limit::HG_HIST_SLOTS.0 as usize);
const _: () = assert!(abi::PIPELINE_DEPTH == hg_limit::HG_PIPELINE_DEPTH.0 as usize);
const _: () = assert!(abi::MAX_PORTS == hg_limit::HG_MAX_PORTS.0 as usize);
const _: () = assert!(abi::MAX_TARGETS == hg_limit::HG_MAX_TARGETS.0 as usize);
const _: () = assert!(abi::MAX_LINKS == hg_limit::HG_MAX_LINKS.0);
const _: () = assert!(abi::PARTIAL_BYTES == hg_limit::HG_PARTIAL_MAX.0 as usize + 1);
const _: () = assert!(abi::MAX_ROUTES == hg_limit::HG_MAX_ROUTES.0 as usize);
const _: () = assert!(abi::ROUTE_SEGS == hg_limit::HG_ROUTE_SEGS.0 as usize);
const _: () = assert!(abi::ROUTE_BYTES == hg_limit::HG_ROUTE_BYTES.0 as usize);
const _: () = assert!(abi::PATH_MAX == hg_limit::HG_PATH_MAX.0 as usize);
const _: () = assert!(abi::NATIVE_TABLE == hg_limit::HG_NATIVE_TABLE.0 as usize);
const _: () = assert!(abi::NATIVE_CELL_BITS == hg_limit::HG_NATIVE_CELL_BITS.0);
const _: () = assert!(abi::NATIVE_CELLS == hg_limit::HG_NATIVE_CELLS.0 as usize);
const _: () = assert!(abi::ROUTE_OTHER as u32 == hg_limit::HG_ROUTE_OTHER.0);
const _: () = assert!(abi::SEG_LITERAL as u32 == hg_segment::HG_SEG_LITERAL.0);
const _: () = assert!(abi::SEG_PARAM as u32 == hg_segment::HG_SEG_PARAM.0);

const _: () = assert!(abi::ROLE_SERVER as u32 == hg_role::HG_ROLE_SERVER.0);
const _: () = assert!(abi::ROLE_CLIENT as u32 == hg_role::HG_ROLE_CLIENT.0);

const _: () = assert!(abi::FLOW_UPGRADED as u32 == hg_flow_flag::HG_FLOW_UPGRADED.0);
const _: () = assert!(abi::FLOW_CLOSED as u32 == hg_flow_flag::HG_FLOW_CLOSED.0);
const _: () = assert!(abi::FLOW_UNVERIFIED as u32 == hg_flow_flag::HG_FLOW_UNVERIFIED.0);

const _: () = assert!(abi::PARSE_INGRESS == hg_parser::HG_PARSE_INGRESS.0);
const _: () = assert!(abi::PARSE_EGRESS == hg_parser::HG_PARSE_EGRESS.0);
const _: () = assert!(abi::PARSERS == hg_parser::HG_PARSERS.0);

/// Each method by its C name, against the number the exporter decodes.
const METHODS: [(hg_method, u8); 9] = [
    (hg_method::HG_METHOD_GET, method::GET),
    (hg_method::HG_METHOD_HEAD, method::HEAD),
    (hg_method::HG_METHOD_POST, method::POST),
    (hg_method::HG_METHOD_PUT, method::PUT),
    (hg_method::HG_METHOD_DELETE, method::DELETE),
    (hg_method::HG_METHOD_CONNECT, method::CONNECT),
    (hg_method::HG_METHOD_OPTIONS, method::OPTIONS),
    (hg_method::HG_METHOD_TRACE, method::TRACE),
    (hg_method::HG_METHOD_PATCH, method::PATCH),
];

const fn methods_match() -> bool {
    let mut i = 0;
    while i < METHODS.len() {
        if METHODS[i].0 .0 != METHODS[i].1 as u32 {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(methods_match());

/// Each stats slot by its C name, against the index the exporter reads it at.
const STATS: [(hg_stat, usize); 20] = [
    (hg_stat::HG_STAT_SERIES_DROPPED, stat::SERIES_DROPPED),
    (hg_stat::HG_STAT_UNANSWERED_RESET, stat::UNANSWERED_RESET),
    (hg_stat::HG_STAT_UNANSWERED_CLOSED, stat::UNANSWERED_CLOSED),
    (hg_stat::HG_STAT_RESPONSE_NO_REQUEST, stat::RESPONSE_NO_REQUEST),
    (hg_stat::HG_STAT_PIPELINE_OVERFLOW, stat::PIPELINE_OVERFLOW),
    (hg_stat::HG_STAT_RETRANSMIT_IGNORED, stat::RETRANSMIT_IGNORED),
    (hg_stat::HG_STAT_UPGRADED, stat::UPGRADED),
    (hg_stat::HG_STAT_TLS_SEEN, stat::TLS_SEEN),
    (hg_stat::HG_STAT_FLOW_INSERT_FAILED, stat::FLOW_INSERT_FAILED),
    (hg_stat::HG_STAT_FLOWS_CREATED, stat::FLOWS_CREATED),
    (hg_stat::HG_STAT_FLOWS_ENDED, stat::FLOWS_ENDED),
    (hg_stat::HG_STAT_REQUESTS_TRACKED, stat::REQUESTS_TRACKED),
    (hg_stat::HG_STAT_REQUESTS_ANSWERED, stat::REQUESTS_ANSWERED),
    (hg_stat::HG_STAT_UNVERIFIED_FLOWS, stat::UNVERIFIED_FLOWS),
    (hg_stat::HG_STAT_UNVERIFIED_CONFIRMED, stat::UNVERIFIED_CONFIRMED),
    (hg_stat::HG_STAT_NOT_LOCAL, stat::NOT_LOCAL),
    (hg_stat::HG_STAT_ROUTE_PATH_CUT, stat::ROUTE_PATH_CUT),
    (hg_stat::HG_STAT_LOST_GAP, stat::LOST_GAP),
    (hg_stat::HG_STAT_LOST_TOO_COMPLEX, stat::LOST_TOO_COMPLEX),
    (hg_stat::HG_STAT_MAX, stat::SLOTS),
];

const fn stats_match() -> bool {
    let mut i = 0;
    while i < STATS.len() {
        if STATS[i].0 .0 as usize != STATS[i].1 {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(stats_match());
