//! The exporter's own metrics, each defined once, in one table: its name,
//! help, type, labels and where its values come from (a slot of the kernel's
//! `stats` map, or what the exporter knows). The table drives both reading
//! the stats and writing the families, with the same text writer as the HTTP
//! families. Written at each scrape (they are few).

use bytes::BytesMut;

use super::pb;
use super::text::{self, Kind};
use super::State;
use hge_shared::abi::stat;
use hge_shared::snapshot::FRAMING_LOST_REASONS;

/// One sample: its labels, in the order written, and its value.
type Sample = (Vec<(&'static str, String)>, f64);

/// Where a self-metric's samples come from.
enum Source {
    /// One slot of the kernel's `stats` map.
    Stat(usize),
    /// Slots of the `stats` map, one per value of the label named.
    Stats(&'static str, &'static [(&'static str, usize)]),
    /// What the exporter knows: the topology, its reads, what the flow table implies.
    Of(fn(&State) -> Vec<Sample>),
}

struct SelfMetric {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    source: Source,
}

const fn counter(name: &'static str, help: &'static str, source: Source) -> SelfMetric {
    SelfMetric { name, help, kind: Kind::Counter, source }
}

const fn gauge(name: &'static str, help: &'static str, source: Source) -> SelfMetric {
    SelfMetric { name, help, kind: Kind::Gauge, source }
}

fn one(v: impl Into<f64>) -> Vec<Sample> {
    vec![(vec![], v.into())]
}

fn by(label: &'static str, values: impl IntoIterator<Item = (String, f64)>) -> Vec<Sample> {
    values.into_iter().map(|(l, v)| (vec![(label, l)], v)).collect()
}

const FRAMING_LOST: [(&str, usize); 5] = [
    (FRAMING_LOST_REASONS[0], stat::LOST_GAP),
    (FRAMING_LOST_REASONS[1], stat::LOST_GAP + 1),
    (FRAMING_LOST_REASONS[2], stat::LOST_GAP + 2),
    (FRAMING_LOST_REASONS[3], stat::LOST_GAP + 3),
    (FRAMING_LOST_REASONS[4], stat::LOST_TOO_COMPLEX),
];

/// Every self-metric, by name (the order they are written in).
const SELF_METRICS: &[SelfMetric] = &[
    gauge(
        "http_golden_exporter_attached",
        "1 for every program the exporter has attached, by target, container (discovered namespaces only), \
         interface, direction and mode (tcx or tc).",
        Source::Of(|s| {
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
            attached.collect()
        }),
    ),
    gauge(
        "http_golden_exporter_bpf_verified_instructions",
        "Instructions the kernel's verifier processed to accept each BPF program, by program (the parser's \
         hg_parse_ingress and hg_parse_egress, an interface's http_ingress and http_egress); the limit is 1,000,000.",
        Source::Of(|s| by("program", s.programs.iter().map(|p| (p.name.clone(), p.verified_instructions as f64)))),
    ),
    gauge(
        "http_golden_exporter_build_info",
        "A metric with a constant '1' value labeled by the exporter's version.",
        Source::Of(|_| by("version", [(env!("CARGO_PKG_VERSION").to_string(), 1.0)])),
    ),
    counter(
        "http_golden_exporter_discover_limit_reached_total",
        "Namespaces a [[discover]] table found but left alone because max_namespaces were attached already.",
        Source::Of(|s| by("discover", s.discovery.iter().map(|d| (d.name.clone(), d.limit_reached as f64)))),
    ),
    gauge(
        "http_golden_exporter_discovered_namespaces",
        "Network namespaces a [[discover]] table has found and attached to, by discover table.",
        Source::Of(|s| by("discover", s.discovery.iter().map(|d| (d.name.clone(), d.namespaces as f64)))),
    ),
    counter(
        "http_golden_exporter_flow_insert_failures_total",
        "Requests whose connection could not be tracked (flow map insert failed): counted, not timed.",
        Source::Stat(stat::FLOW_INSERT_FAILED),
    ),
    gauge(
        "http_golden_exporter_flows",
        "Connections currently tracked in the BPF flow table (bpf.flow_table_size).",
        Source::Of(|s| one(s.flows_live as f64)),
    ),
    counter(
        "http_golden_exporter_flows_evicted_total",
        "Connections the full flow table forgot to make room for new ones (derived; a lower bound).",
        Source::Of(|s| one(s.flows_evicted as f64)),
    ),
    counter(
        "http_golden_exporter_flows_never_confirmed_total",
        "Connections tracked from a request with no handshake seen that ended or were forgotten before the server \
         answered: spoofed segments, mostly. Their requests were not counted (derived; a lower bound).",
        Source::Of(|s| one(s.never_confirmed as f64)),
    ),
    counter(
        "http_golden_exporter_framing_lost_total",
        "Times a stream lost track of message boundaries and fell back to the request/response turn-around, by \
         cause.",
        Source::Stats("reason", &FRAMING_LOST),
    ),
    gauge(
        "http_golden_exporter_last_map_read_timestamp_seconds",
        "Unix time of the last successful read of the BPF maps: the moment the HTTP series were taken, one per \
         scrape_interval (rates between two reads divide by the difference of this, not of the scrape times).",
        Source::Of(|s| one(s.last_good_read_unix)),
    ),
    gauge(
        "http_golden_exporter_map_read_duration_seconds",
        "How long the last read of the BPF maps took.",
        Source::Of(|s| one(s.last_read.as_secs_f64())),
    ),
    counter(
        "http_golden_exporter_map_read_errors_total",
        "Reads of the BPF maps that failed; the previous values are served meanwhile.",
        Source::Of(|s| one(s.read_errors as f64)),
    ),
    counter(
        "http_golden_exporter_map_reads_total",
        "Reads of the BPF maps (one every scrape_interval).",
        Source::Of(|s| one(s.reads as f64)),
    ),
    gauge(
        "http_golden_exporter_max_series",
        "Configured capacity of each BPF aggregate map (metrics.max_series).",
        Source::Of(|s| one(s.max_series)),
    ),
    counter(
        "http_golden_exporter_pipelined_requests_beyond_depth_total",
        "Pipelined requests beyond the per-connection queue depth: counted as requests, not timed.",
        Source::Stat(stat::PIPELINE_OVERFLOW),
    ),
    counter(
        "http_golden_exporter_requests_not_local_total",
        "Requests on connections no socket of the interface's namespace is an end of: forwarded or bridged by \
         this host, and counted where the socket is (a container's namespace, another host).",
        Source::Stat(stat::NOT_LOCAL),
    ),
    counter(
        "http_golden_exporter_requests_paths_cut_total",
        "Requests whose path was longer than the 128 bytes the kernel reads (or went on in the next segment): \
         its route is what its start decides, a template ending in *, or \"other\".",
        Source::Stat(stat::ROUTE_PATH_CUT),
    ),
    counter(
        "http_golden_exporter_requests_unanswered_total",
        "Requests still waiting for a response when the connection ended, by how it ended.",
        Source::Of(|s| {
            let st = &s.snapshot().stats;
            let reasons = [
                ("reset", st[stat::UNANSWERED_RESET]),
                ("closed", st[stat::UNANSWERED_CLOSED]),
                ("evicted", s.evicted_unanswered),
            ];
            by("reason", reasons.map(|(r, v)| (r.to_string(), v as f64)))
        }),
    ),
    counter(
        "http_golden_exporter_responses_without_request_total",
        "Status lines seen with no request waiting on that connection (for example, tracking began \
         mid-connection).",
        Source::Stat(stat::RESPONSE_NO_REQUEST),
    ),
    counter(
        "http_golden_exporter_retransmits_ignored_total",
        "Data segments seen again with an old TCP sequence number (retransmissions), and not parsed twice.",
        Source::Stat(stat::RETRANSMIT_IGNORED),
    ),
    gauge(
        "http_golden_exporter_series",
        "Series held in the BPF aggregate maps, by map; each map holds at most max_series.",
        Source::Of(|s| {
            let sizes = [("requests", s.snapshot().requests.len()), ("latency", s.snapshot().latency.len())];
            by("map", sizes.map(|(m, n)| (m.to_string(), n as f64)))
        }),
    ),
    counter(
        "http_golden_exporter_series_dropped_total",
        "Observations not recorded because an aggregate map already held max_series series.",
        Source::Stat(stat::SERIES_DROPPED),
    ),
    counter(
        "http_golden_exporter_tls_payloads_total",
        "TLS ClientHello messages seen on watched ports: traffic this exporter cannot read.",
        Source::Stat(stat::TLS_SEEN),
    ),
    counter(
        "http_golden_exporter_upgraded_connections_total",
        "Connections switched away from HTTP/1 by 101 Switching Protocols; no longer parsed.",
        Source::Stat(stat::UPGRADED),
    ),
];

impl Source {
    fn samples(&self, s: &State) -> Vec<Sample> {
        let stats = &s.snapshot().stats;
        match self {
            Source::Stat(slot) => one(stats[*slot] as f64),
            Source::Stats(label, slots) => {
                slots.iter().map(|(v, slot)| (vec![(*label, v.to_string())], stats[*slot] as f64)).collect()
            }
            Source::Of(f) => f(s),
        }
    }
}

/// Append every self-metric family to `buf`. Within a family, samples with
/// fewer labels come first, then by label values (the prometheus crate's order,
/// which the exposition had before this writer).
pub(super) fn write(s: &State, buf: &mut BytesMut) {
    for m in SELF_METRICS {
        let samples = m.sorted(s);
        text::header(buf, m.name, m.help, m.kind);
        for (labels, v) in samples {
            buf.extend_from_slice(m.name.as_bytes());
            for (i, (name, value)) in labels.iter().enumerate() {
                text::pair(buf, i == 0, name, value);
            }
            if !labels.is_empty() {
                buf.extend_from_slice(b"}");
            }
            buf.extend_from_slice(b" ");
            text::value(buf, v);
            buf.extend_from_slice(b"\n");
        }
    }
}

impl SelfMetric {
    fn sorted(&self, s: &State) -> Vec<Sample> {
        let mut samples = self.source.samples(s);
        samples.sort_by(|(a, _), (b, _)| {
            a.len().cmp(&b.len()).then_with(|| a.iter().map(|l| &l.1).cmp(b.iter().map(|l| &l.1)))
        });
        samples
    }
}

/// The same families as [`write`] writes, in the same order, as protobuf
/// messages (a family without samples left out); counters created at `started`
/// (Unix seconds), when the exporter started counting.
pub(super) fn families(s: &State, started: f64) -> Vec<pb::MetricFamily> {
    let created = Some(pb::Timestamp::from_unix(started));
    let families = SELF_METRICS.iter().map(|m| {
        let metric = m.sorted(s).into_iter().map(|(labels, v)| {
            let label = labels.iter().map(|(n, v)| pb::LabelPair::new(n, v.as_str())).collect();
            match m.kind {
                Kind::Counter => {
                    let counter = pb::Counter { value: Some(v), created_timestamp: created, exemplar: None };
                    pb::Metric { label, counter: Some(counter), ..Default::default() }
                }
                _ => pb::Metric { label, gauge: Some(pb::Gauge { value: Some(v) }), ..Default::default() },
            }
        });
        let kind = if m.kind == Kind::Counter { pb::MetricType::Counter } else { pb::MetricType::Gauge };
        pb::MetricFamily {
            name: Some(m.name.to_string()),
            help: Some(m.help.to_string()),
            r#type: Some(kind as i32),
            metric: metric.collect(),
            unit: None,
        }
    });
    families.filter(|f| !f.metric.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_name_order_and_names_each_family_once() {
        let names: Vec<&str> = SELF_METRICS.iter().map(|m| m.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn every_stats_slot_is_exported_or_used_for_a_derived_family() {
        // Read by the flow-table estimates (src/exporter/maps.rs), not exported on their own.
        let derived = [
            stat::FLOWS_CREATED,
            stat::FLOWS_ENDED,
            stat::REQUESTS_TRACKED,
            stat::REQUESTS_ANSWERED,
            stat::UNVERIFIED_FLOWS,
            stat::UNVERIFIED_CONFIRMED,
            stat::UNANSWERED_RESET,
            stat::UNANSWERED_CLOSED,
        ];
        for slot in 0..stat::SLOTS {
            let exported = SELF_METRICS.iter().any(|m| match &m.source {
                Source::Stat(s) => *s == slot,
                Source::Stats(_, slots) => slots.iter().any(|(_, s)| *s == slot),
                Source::Of(_) => false,
            });
            assert!(exported || derived.contains(&slot), "stats slot {slot} is read by no family");
        }
    }
}
