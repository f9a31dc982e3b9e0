//! From map snapshots to Prometheus metric families (a custom Collector), plus
//! the exporter's own metrics.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::attach::{Direction, Mode};
use crate::config::StatusLabel;
use crate::maps::{Histogram, Role, SeriesKey, Snapshot, FRAMING_LOST_REASONS};

/// Label values for the numbers in BPF keys.
#[derive(Debug, Default, Clone)]
pub struct Names {
    targets: HashMap<u16, String>,
    interfaces: HashMap<(u16, u32), String>,
}

impl Names {
    pub fn add_target(&mut self, id: u16, name: &str) {
        self.targets.insert(id, name.to_string());
    }

    pub fn add_interface(&mut self, target_id: u16, ifindex: u32, name: &str) {
        self.interfaces.insert((target_id, ifindex), name.to_string());
    }

    fn target(&self, id: u16) -> String {
        self.targets.get(&id).cloned().unwrap_or_else(|| format!("target{id}"))
    }

    fn interface(&self, target_id: u16, ifindex: u32) -> String {
        self.interfaces.get(&(target_id, ifindex)).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attached {
    pub target: String,
    pub interface: String,
    pub direction: Direction,
    pub mode: Mode,
}

#[derive(Default)]
struct State {
    snapshot: Snapshot,
    names: Names,
    attached: Vec<Attached>,
    reads: u64,
    read_errors: u64,
    last_read: Duration,
    max_series: u32,
    /// Last complete flow-table figures; evictions only ever grow (they are counters).
    flows_live: u64,
    flows_evicted: u64,
    evicted_unanswered: u64,
    /// The HTTP families of the last read, already encoded: a scrape then costs
    /// a copy-free send, not a rebuild of every series.
    http_text: Bytes,
}

/// What the web server exposes; updated by the map reader.
pub struct Exposition {
    buckets_s: Vec<f64>,
    status_label: StatusLabel,
    state: RwLock<State>,
    registry: Registry,
}

impl Exposition {
    pub fn new(buckets_s: Vec<f64>, status_label: StatusLabel, max_series: u32) -> Arc<Exposition> {
        let exp = Arc::new(Exposition {
            buckets_s,
            status_label,
            state: RwLock::new(State { max_series, ..Default::default() }),
            registry: Registry::new(),
        });
        exp.registry
            .register(Box::new(SelfCollector(Arc::downgrade(&exp))))
            .expect("descriptors of the exporter's own collector are unique");
        exp.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registers on a fresh registry");
        exp
    }

    pub fn set_topology(&self, names: Names, attached: Vec<Attached>) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.names = names;
        s.attached = attached;
        s.attached.sort();
    }

    pub fn record_read(&self, result: anyhow::Result<Snapshot>, took: Duration) -> anyhow::Result<()> {
        // Encode before taking the write lock: with full maps this takes a
        // while, and scrapes must not wait for it.
        let encoded = match &result {
            Ok(snap) => {
                let names = self.state.read().unwrap_or_else(|p| p.into_inner()).names.clone();
                Some(self.encode_http(snap, &names))
            }
            Err(_) => None,
        };
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.reads += 1;
        s.last_read = took;
        match result {
            Ok(snap) => {
                if let Some(f) = snap.flows {
                    s.flows_live = f.live;
                    s.flows_evicted = s.flows_evicted.max(f.evicted);
                    s.evicted_unanswered = s.evicted_unanswered.max(f.evicted_unanswered);
                }
                s.snapshot = snap;
                s.http_text = encoded.unwrap_or_default();
                Ok(())
            }
            Err(e) => {
                s.read_errors += 1;
                Err(e)
            }
        }
    }

    /// Series currently held in the aggregate maps (requests + histograms).
    pub fn series(&self) -> usize {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        s.snapshot.requests.len() + s.snapshot.latency.len()
    }

    /// The text exposition: the HTTP families encoded at the last map read,
    /// then the exporter's own metrics as of now. Two chunks, sent as they are.
    pub fn render(&self) -> Vec<Bytes> {
        let http = self.state.read().unwrap_or_else(|p| p.into_inner()).http_text.clone();
        let mut own = Vec::new();
        // Encoding into a Vec only fails on inconsistent families, which we build ourselves.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut own) {
            log::error!("encoding metrics: {e}");
        }
        vec![http, Bytes::from(own)]
    }

    /// Build and encode the HTTP families one at a time: each may hold
    /// max_series series, and only one is in memory as protobufs at once.
    fn encode_http(&self, snap: &Snapshot, names: &Names) -> Bytes {
        let mut buf = Vec::new();
        for which in 0..HTTP_FAMILIES {
            let f = self.http_family(snap, names, which);
            if f.get_metric().is_empty() {
                continue;
            }
            if let Err(e) = TextEncoder::new().encode(&[f], &mut buf) {
                log::error!("encoding metrics: {e}");
            }
        }
        Bytes::from(buf)
    }

    /// Server requests, server durations, client requests, client durations.
    fn http_family(&self, snap: &Snapshot, names: &Names, which: usize) -> MetricFamily {
        let (role, prefix, who) = if which < 2 {
            (Role::Server, "http_server", "received by a local server (seen on ingress)")
        } else {
            (Role::Client, "http_client", "sent by a local client (seen on egress)")
        };
        if which % 2 == 0 {
            let mut reqs = family(
                &format!("{prefix}_requests_total"),
                &format!("HTTP/1 requests {who}, counted when the request line passes."),
                MetricType::COUNTER,
            );
            for (k, v) in snap.requests.iter().filter(|(k, _)| k.role == role) {
                let mut m = proto::Metric::from_label(self.labels(names, k, None));
                let mut c = proto::Counter::default();
                c.set_value(*v as f64);
                m.set_counter(c);
                reqs.mut_metric().push(m);
            }
            return reqs;
        }
        let status_name = match self.status_label {
            StatusLabel::Class => "status_class",
            StatusLabel::Code => "status_code",
        };
        let mut hist = family(
            &format!("{prefix}_request_duration_seconds"),
            &format!(
                "Time from the packet carrying the request line to the packet carrying the final status line, \
                 for HTTP/1 requests {who}."
            ),
            MetricType::HISTOGRAM,
        );
        for (k, h) in snap.latency.iter().filter(|(k, _)| k.role == role) {
            let mut m = proto::Metric::from_label(self.labels(names, k, Some(status_name)));
            m.set_histogram(self.histogram(h));
            hist.mut_metric().push(m);
        }
        hist
    }

    /// The exporter's own metrics, built at each scrape (they are few).
    fn self_families(&self) -> Vec<MetricFamily> {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        out.push(gauge(
            "http_golden_exporter_build_info",
            "A metric with a constant '1' value labeled by the exporter's version.",
            vec![(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1.0)],
        ));
        out.push(gauge(
            "http_golden_exporter_attached",
            "1 for every program the exporter has attached, by target, interface, direction and mode (tcx or tc).",
            s.attached
                .iter()
                .map(|a| {
                    (
                        vec![
                            ("target", a.target.clone()),
                            ("interface", a.interface.clone()),
                            ("direction", a.direction.as_str().to_string()),
                            ("mode", a.mode.to_string()),
                        ],
                        1.0,
                    )
                })
                .collect(),
        ));
        out.push(gauge(
            "http_golden_exporter_series",
            "Series held in the BPF aggregate maps, by map; each map holds at most max_series.",
            vec![
                (vec![("map", "requests".into())], s.snapshot.requests.len() as f64),
                (vec![("map", "latency".into())], s.snapshot.latency.len() as f64),
            ],
        ));
        out.push(gauge(
            "http_golden_exporter_max_series",
            "Configured capacity of each BPF aggregate map (metrics.max_series).",
            vec![(vec![], s.max_series as f64)],
        ));
        out.push(gauge(
            "http_golden_exporter_flows",
            "Connections currently tracked in the BPF flow table (bpf.flow_table_size).",
            vec![(vec![], s.flows_live as f64)],
        ));
        let st = &s.snapshot.stats;
        let counters: [(&str, &str, Vec<(Vec<(&str, String)>, u64)>); 10] = [
            (
                "http_golden_exporter_series_dropped_total",
                "Observations not recorded because an aggregate map already held max_series series.",
                vec![(vec![], st.series_dropped)],
            ),
            (
                "http_golden_exporter_requests_unanswered_total",
                "Requests still waiting for a response when the connection ended, by how it ended.",
                vec![
                    (vec![("reason", "reset".into())], st.unanswered_reset),
                    (vec![("reason", "closed".into())], st.unanswered_closed),
                    (vec![("reason", "evicted".into())], s.evicted_unanswered),
                ],
            ),
            (
                "http_golden_exporter_responses_without_request_total",
                "Status lines seen with no request waiting on that connection (for example, tracking began mid-connection).",
                vec![(vec![], st.response_no_request)],
            ),
            (
                "http_golden_exporter_pipelined_requests_beyond_depth_total",
                "Pipelined requests beyond the per-connection queue depth: counted as requests, not timed.",
                vec![(vec![], st.pipeline_overflow)],
            ),
            (
                "http_golden_exporter_retransmits_ignored_total",
                "Data segments seen again with an old TCP sequence number (retransmissions), and not parsed twice.",
                vec![(vec![], st.retransmit_ignored)],
            ),
            (
                "http_golden_exporter_upgraded_connections_total",
                "Connections switched away from HTTP/1 by 101 Switching Protocols; no longer parsed.",
                vec![(vec![], st.upgraded)],
            ),
            (
                "http_golden_exporter_tls_payloads_total",
                "TLS ClientHello messages seen on watched ports: traffic this exporter cannot read.",
                vec![(vec![], st.tls_seen)],
            ),
            (
                "http_golden_exporter_flows_evicted_total",
                "Connections the full flow table forgot to make room for new ones (derived; a lower bound).",
                vec![(vec![], s.flows_evicted)],
            ),
            (
                "http_golden_exporter_framing_lost_total",
                "Times a stream lost track of message boundaries and fell back to the request/response turn-around, by cause.",
                FRAMING_LOST_REASONS.iter().zip(st.framing_lost).map(|(r, v)| (vec![("reason", r.to_string())], v)).collect(),
            ),
            (
                "http_golden_exporter_flow_insert_failures_total",
                "Requests whose connection could not be tracked (flow map insert failed): counted, not timed.",
                vec![(vec![], st.flow_insert_failed)],
            ),
        ];
        for (name, help, values) in counters {
            out.push(counter(name, help, values.into_iter().map(|(l, v)| (l, v as f64)).collect()));
        }
        out.push(counter(
            "http_golden_exporter_map_reads_total",
            "Reads of the BPF maps (one every scrape_interval).",
            vec![(vec![], s.reads as f64)],
        ));
        out.push(counter(
            "http_golden_exporter_map_read_errors_total",
            "Reads of the BPF maps that failed; the previous values are served meanwhile.",
            vec![(vec![], s.read_errors as f64)],
        ));
        out.push(gauge(
            "http_golden_exporter_map_read_duration_seconds",
            "How long the last read of the BPF maps took.",
            vec![(vec![], s.last_read.as_secs_f64())],
        ));
        out
    }

    fn labels(&self, names: &Names, k: &SeriesKey, status: Option<&str>) -> Vec<proto::LabelPair> {
        let mut l = vec![
            label("target", &names.target(k.target_id)),
            label("interface", &names.interface(k.target_id, k.ifindex)),
            label("port", &k.port.to_string()),
            label("method", k.method.as_str()),
        ];
        if let Some(name) = status {
            let value = match self.status_label {
                StatusLabel::Class => format!("{}xx", k.status),
                StatusLabel::Code => k.status.to_string(),
            };
            l.push(label(name, &value));
        }
        l
    }

    fn histogram(&self, h: &Histogram) -> proto::Histogram {
        let mut ph = proto::Histogram::default();
        ph.set_sample_count(h.count);
        ph.set_sample_sum(h.sum_ns as f64 / 1e9);
        // The kernel keeps per-bucket counts; exposition wants them cumulative.
        // The +Inf bucket is added by the encoder from sample_count.
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.buckets_s.len());
        for (bound, n) in self.buckets_s.iter().zip(&h.buckets) {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        ph.set_bucket(buckets);
        ph
    }
}

const HTTP_FAMILIES: usize = 4;

/// The exporter's own metrics, collected at each scrape, without keeping the
/// exposition alive (the registry lives inside it).
struct SelfCollector(std::sync::Weak<Exposition>);

const SELF_FAMILIES: &[(&str, &[&str])] = &[
    ("http_golden_exporter_build_info", &["version"]),
    ("http_golden_exporter_attached", &["target", "interface", "direction", "mode"]),
];

impl Collector for SelfCollector {
    fn desc(&self) -> Vec<&Desc> {
        static DESCS: std::sync::OnceLock<Vec<Desc>> = std::sync::OnceLock::new();
        DESCS
            .get_or_init(|| {
                SELF_FAMILIES
                    .iter()
                    .map(|(name, labels)| {
                        Desc::new(
                            name.to_string(),
                            "exporter self-metric".into(),
                            labels.iter().map(|s| s.to_string()).collect(),
                            HashMap::new(),
                        )
                        .expect("static descriptor is valid")
                    })
                    .collect()
            })
            .iter()
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match self.0.upgrade() {
            Some(exp) => exp.self_families(),
            None => Vec::new(),
        }
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn family(name: &str, help: &str, t: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(t);
    f
}

type Sample<'a> = (Vec<(&'a str, String)>, f64);

fn simple(name: &str, help: &str, t: MetricType, values: Vec<Sample<'_>>) -> MetricFamily {
    let mut f = family(name, help, t);
    for (labels, v) in values {
        let mut m = proto::Metric::from_label(labels.iter().map(|(n, v)| label(n, v)).collect());
        if t == MetricType::COUNTER {
            let mut c = proto::Counter::default();
            c.set_value(v);
            m.set_counter(c);
        } else {
            let mut g = proto::Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        f.mut_metric().push(m);
    }
    f
}

fn gauge(name: &str, help: &str, values: Vec<Sample<'_>>) -> MetricFamily {
    simple(name, help, MetricType::GAUGE, values)
}

fn counter(name: &str, help: &str, values: Vec<Sample<'_>>) -> MetricFamily {
    simple(name, help, MetricType::COUNTER, values)
}

/// Time one map read.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{Flows, Method, Stats};

    fn key(role: Role, status: u16) -> SeriesKey {
        SeriesKey { target_id: 0, ifindex: 7, role, port: 80, method: Method::Get, status }
    }

    fn exposition(label: StatusLabel) -> Arc<Exposition> {
        let exp = Exposition::new(vec![0.001, 0.01, 0.1], label, 100);
        let mut names = Names::default();
        names.add_target(0, "web");
        names.add_interface(0, 7, "veth0");
        exp.set_topology(names, vec![]);
        exp
    }

    fn text(exp: &Exposition) -> String {
        String::from_utf8(exp.render().concat()).unwrap()
    }

    #[test]
    fn histogram_buckets_become_cumulative_with_inf_from_count() {
        let exp = exposition(StatusLabel::Class);
        let snap = Snapshot {
            requests: vec![(key(Role::Server, 0), 6)],
            latency: vec![(
                key(Role::Server, 2),
                Histogram { buckets: vec![1, 2, 0, 3], sum_ns: 1_500_000_000, count: 6 },
            )],
            stats: Stats::default(),
            flows: None,
        };
        exp.record_read(Ok(snap), Duration::ZERO).unwrap();
        let t = text(&exp);
        let base = r#"target="web",interface="veth0",port="80",method="GET",status_class="2xx""#;
        for (le, n) in [("0.001", 1), ("0.01", 3), ("0.1", 3), ("+Inf", 6)] {
            let line = format!("http_server_request_duration_seconds_bucket{{{base},le=\"{le}\"}} {n}");
            assert!(t.contains(&line), "missing {line} in\n{t}");
        }
        assert!(t.contains(&format!("http_server_request_duration_seconds_sum{{{base}}} 1.5")), "{t}");
        assert!(t.contains(r#"http_server_requests_total{target="web",interface="veth0",port="80",method="GET"} 6"#), "{t}");
        assert!(!t.contains("http_client_requests_total{"), "no client series expected:\n{t}");
    }

    #[test]
    fn status_code_mode_labels_by_code() {
        let exp = exposition(StatusLabel::Code);
        let snap = Snapshot {
            latency: vec![(key(Role::Client, 404), Histogram { buckets: vec![0, 0, 0, 1], sum_ns: 1, count: 1 })],
            ..Default::default()
        };
        exp.record_read(Ok(snap), Duration::ZERO).unwrap();
        let t = text(&exp);
        assert!(t.contains(r#"status_code="404""#), "{t}");
        assert!(t.contains("http_client_request_duration_seconds_count"), "{t}");
    }

    #[test]
    fn a_failed_read_keeps_the_last_values_and_is_counted() {
        let exp = exposition(StatusLabel::Class);
        exp.record_read(Ok(Snapshot { requests: vec![(key(Role::Server, 0), 3)], ..Default::default() }), Duration::ZERO)
            .unwrap();
        assert!(exp.record_read(Err(anyhow::anyhow!("boom")), Duration::ZERO).is_err());
        let t = text(&exp);
        assert!(t.contains("http_golden_exporter_map_read_errors_total 1"), "{t}");
        assert!(t.contains(r#"method="GET"} 3"#), "{t}");
    }

    #[test]
    fn evictions_are_counters_that_never_go_back() {
        let exp = exposition(StatusLabel::Class);
        let flows = |evicted, evicted_unanswered| {
            Some(Flows { live: 10, pending: 1, evicted, evicted_unanswered })
        };
        for (ev, un) in [(5, 2), (3, 1), (7, 2)] {
            exp.record_read(Ok(Snapshot { flows: flows(ev, un), ..Default::default() }), Duration::ZERO).unwrap();
        }
        // An incomplete scan (None) changes nothing.
        exp.record_read(Ok(Snapshot::default()), Duration::ZERO).unwrap();
        let t = text(&exp);
        assert!(t.contains("http_golden_exporter_flows_evicted_total 7"), "{t}");
        assert!(t.contains(r#"http_golden_exporter_requests_unanswered_total{reason="evicted"} 2"#), "{t}");
        assert!(t.contains("http_golden_exporter_flows 10"), "{t}");
    }

    #[test]
    fn self_metrics_are_present_from_the_start() {
        let t = text(&exposition(StatusLabel::Class));
        for name in [
            "http_golden_exporter_build_info{version=",
            "http_golden_exporter_series_dropped_total 0",
            "http_golden_exporter_requests_unanswered_total{reason=\"reset\"} 0",
            "process_resident_memory_bytes",
        ] {
            assert!(t.contains(name), "missing {name}:\n{t}");
        }
    }
}
