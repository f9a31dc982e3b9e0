//! The exporter's own metrics: what is attached, how full the maps are, and
//! the kernel side's self-metric counters. Built at each scrape (they are few).

use prometheus::proto::MetricFamily;

use super::text::{Desc, Sample};
use super::State;
use hge_shared::snapshot::FRAMING_LOST_REASONS;

const BUILD_INFO: Desc = Desc::gauge(
    "http_golden_exporter_build_info",
    "A metric with a constant '1' value labeled by the exporter's version.",
);
const ATTACHED: Desc = Desc::gauge(
    "http_golden_exporter_attached",
    "1 for every program the exporter has attached, by target, container (discovered namespaces only), interface, \
     direction and mode (tcx or tc).",
);
const SERIES: Desc = Desc::gauge(
    "http_golden_exporter_series",
    "Series held in the BPF aggregate maps, by map; each map holds at most max_series.",
);
const MAX_SERIES: Desc = Desc::gauge(
    "http_golden_exporter_max_series",
    "Configured capacity of each BPF aggregate map (metrics.max_series).",
);
const FLOWS: Desc = Desc::gauge(
    "http_golden_exporter_flows",
    "Connections currently tracked in the BPF flow table (bpf.flow_table_size).",
);
const SERIES_DROPPED: Desc = Desc::counter(
    "http_golden_exporter_series_dropped_total",
    "Observations not recorded because an aggregate map already held max_series series.",
);
const UNANSWERED: Desc = Desc::counter(
    "http_golden_exporter_requests_unanswered_total",
    "Requests still waiting for a response when the connection ended, by how it ended.",
);
const NO_REQUEST: Desc = Desc::counter(
    "http_golden_exporter_responses_without_request_total",
    "Status lines seen with no request waiting on that connection (for example, tracking began mid-connection).",
);
const PIPELINE_OVERFLOW: Desc = Desc::counter(
    "http_golden_exporter_pipelined_requests_beyond_depth_total",
    "Pipelined requests beyond the per-connection queue depth: counted as requests, not timed.",
);
const RETRANSMITS: Desc = Desc::counter(
    "http_golden_exporter_retransmits_ignored_total",
    "Data segments seen again with an old TCP sequence number (retransmissions), and not parsed twice.",
);
const UPGRADED: Desc = Desc::counter(
    "http_golden_exporter_upgraded_connections_total",
    "Connections switched away from HTTP/1 by 101 Switching Protocols; no longer parsed.",
);
const TLS: Desc = Desc::counter(
    "http_golden_exporter_tls_payloads_total",
    "TLS ClientHello messages seen on watched ports: traffic this exporter cannot read.",
);
const EVICTED: Desc = Desc::counter(
    "http_golden_exporter_flows_evicted_total",
    "Connections the full flow table forgot to make room for new ones (derived; a lower bound).",
);
const NEVER_CONFIRMED: Desc = Desc::counter(
    "http_golden_exporter_flows_never_confirmed_total",
    "Connections tracked from a request with no handshake seen that ended or were forgotten before the server \
     answered: spoofed segments, mostly. Their requests were not counted (derived; a lower bound).",
);
const NOT_LOCAL: Desc = Desc::counter(
    "http_golden_exporter_requests_not_local_total",
    "Requests on connections no socket of the interface's namespace is an end of: forwarded or bridged by this \
     host, and counted where the socket is (a container's namespace, another host).",
);
const FRAMING_LOST: Desc = Desc::counter(
    "http_golden_exporter_framing_lost_total",
    "Times a stream lost track of message boundaries and fell back to the request/response turn-around, by cause.",
);
const INSERT_FAILED: Desc = Desc::counter(
    "http_golden_exporter_flow_insert_failures_total",
    "Requests whose connection could not be tracked (flow map insert failed): counted, not timed.",
);
const DISCOVERED: Desc = Desc::gauge(
    "http_golden_exporter_discovered_namespaces",
    "Network namespaces a [[discover]] table has found and attached to, by discover table.",
);
const LIMIT_REACHED: Desc = Desc::counter(
    "http_golden_exporter_discover_limit_reached_total",
    "Namespaces a [[discover]] table found but left alone because max_namespaces were attached already.",
);
const VERIFIED: Desc = Desc::gauge(
    "http_golden_exporter_bpf_verified_instructions",
    "Instructions the kernel's verifier processed to accept each BPF program, by program (the parser's \
     hg_parse_ingress and hg_parse_egress, an interface's http_ingress and http_egress); the limit is 1,000,000.",
);
const READS: Desc =
    Desc::counter("http_golden_exporter_map_reads_total", "Reads of the BPF maps (one every scrape_interval).");
const READ_ERRORS: Desc = Desc::counter(
    "http_golden_exporter_map_read_errors_total",
    "Reads of the BPF maps that failed; the previous values are served meanwhile.",
);
const READ_TIME: Desc = Desc::gauge(
    "http_golden_exporter_last_map_read_timestamp_seconds",
    "Unix time of the last successful read of the BPF maps: the moment the HTTP series were taken, one per \
     scrape_interval (rates between two reads divide by the difference of this, not of the scrape times).",
);
const READ_DURATION: Desc =
    Desc::gauge("http_golden_exporter_map_read_duration_seconds", "How long the last read of the BPF maps took.");

/// The families whose labels a Collector must declare up front.
pub(super) const DECLARED: [(&str, &[&str]); 2] =
    [(BUILD_INFO.name, &["version"]), (ATTACHED.name, &["target", "container", "interface", "direction", "mode"])];

fn by_reason(values: impl IntoIterator<Item = (&'static str, u64)>) -> Vec<Sample> {
    values.into_iter().map(|(r, v)| (vec![("reason", r.to_string())], v as f64)).collect()
}

pub(super) fn families(s: &State) -> Vec<MetricFamily> {
    let st = &s.snapshot().stats;
    let attached = s.attached.iter().map(|a| {
        let mut labels = vec![("target", a.target.clone())];
        labels.extend(a.container.clone().map(|c| ("container", c)));
        labels.extend([
            ("interface", a.interface.clone()),
            ("direction", a.direction.as_str().to_string()),
            ("mode", a.mode.to_string()),
        ]);
        (labels, 1.0)
    });
    vec![
        BUILD_INFO.with([(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1.0)]),
        ATTACHED.with(attached),
        SERIES.with([
            (vec![("map", "requests".into())], s.snapshot().requests.len() as f64),
            (vec![("map", "latency".into())], s.snapshot().latency.len() as f64),
        ]),
        MAX_SERIES.single(s.max_series as f64),
        FLOWS.single(s.flows_live as f64),
        SERIES_DROPPED.single(st.series_dropped as f64),
        UNANSWERED.with(by_reason([
            ("reset", st.unanswered_reset),
            ("closed", st.unanswered_closed),
            ("evicted", s.evicted_unanswered),
        ])),
        NO_REQUEST.single(st.response_no_request as f64),
        PIPELINE_OVERFLOW.single(st.pipeline_overflow as f64),
        RETRANSMITS.single(st.retransmit_ignored as f64),
        UPGRADED.single(st.upgraded as f64),
        TLS.single(st.tls_seen as f64),
        EVICTED.single(s.flows_evicted as f64),
        NEVER_CONFIRMED.single(s.never_confirmed as f64),
        NOT_LOCAL.single(st.not_local as f64),
        FRAMING_LOST.with(by_reason(FRAMING_LOST_REASONS.into_iter().zip(st.framing_lost))),
        INSERT_FAILED.single(st.flow_insert_failed as f64),
        DISCOVERED.with(s.discovery.iter().map(|d| (vec![("discover", d.name.clone())], d.namespaces as f64))),
        LIMIT_REACHED.with(s.discovery.iter().map(|d| (vec![("discover", d.name.clone())], d.limit_reached as f64))),
        VERIFIED.with(s.programs.iter().map(|p| (vec![("program", p.name.clone())], p.verified_instructions as f64))),
        READS.single(s.reads as f64),
        READ_ERRORS.single(s.read_errors as f64),
        READ_DURATION.single(s.last_read.as_secs_f64()),
        READ_TIME.single(s.last_good_read_unix),
    ]
}
