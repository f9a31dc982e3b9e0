//! From map snapshots to the Prometheus text exposition.
//!
//! The map reader hands each [`Snapshot`] to [`Exposition::record_read`], which
//! encodes the HTTP families once (http.rs, labelled by labels.rs); a scrape
//! sends that cached text and the exporter's own metrics (own.rs) as of now.

mod http;
mod labels;
mod own;
mod text;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::Registry;

use crate::bpf::Snapshot;
use crate::config::StatusLabel;
use crate::topology::{Attached, Topology};
use http::HttpFamilies;
pub use labels::Names;

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
    never_confirmed: u64,
    /// When the last read succeeded: the watchdog's measure of health.
    last_good_read: Option<Instant>,
    /// The HTTP families of the last read, already encoded: a scrape then costs
    /// a copy-free send, not a rebuild of every series.
    http_text: Bytes,
}

/// What the web server exposes; updated by the map reader.
pub struct Exposition {
    http: HttpFamilies,
    state: RwLock<State>,
    registry: Registry,
}

impl Exposition {
    pub fn new(buckets_s: Vec<f64>, status_label: StatusLabel, max_series: u32) -> Arc<Exposition> {
        let exp = Arc::new(Exposition {
            http: HttpFamilies { buckets_s, status_label },
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

    // A panic while the lock was held leaves plain data behind, still worth serving.
    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_topology(&self, topology: &Topology) {
        let mut s = self.state_mut();
        s.names = Names::from_topology(topology);
        s.attached = topology.attached.clone();
        s.attached.sort();
    }

    pub fn record_read(&self, result: anyhow::Result<Snapshot>, took: Duration) -> anyhow::Result<()> {
        // Encode before taking the write lock: with full maps this takes a
        // while, and scrapes must not wait for it.
        let encoded = match &result {
            Ok(snap) => {
                let names = self.state().names.clone();
                Some(self.http.encode(snap, &names))
            }
            Err(_) => None,
        };
        let mut s = self.state_mut();
        s.reads += 1;
        s.last_read = took;
        match result {
            Ok(snap) => {
                if let Some(f) = snap.flows {
                    s.flows_live = f.live;
                    s.flows_evicted = s.flows_evicted.max(f.evicted);
                    s.evicted_unanswered = s.evicted_unanswered.max(f.evicted_unanswered);
                    s.never_confirmed = s.never_confirmed.max(f.never_confirmed);
                }
                s.snapshot = snap;
                s.http_text = encoded.unwrap_or_default();
                s.last_good_read = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                s.read_errors += 1;
                Err(e)
            }
        }
    }

    /// How long ago a map read last succeeded (None: never).
    pub fn since_good_read(&self) -> Option<Duration> {
        self.state().last_good_read.map(|t| t.elapsed())
    }

    /// Series currently held in the aggregate maps (requests + histograms).
    pub fn series(&self) -> usize {
        let s = self.state();
        s.snapshot.requests.len() + s.snapshot.latency.len()
    }

    /// The text exposition: the HTTP families encoded at the last map read,
    /// then the exporter's own metrics as of now. Two chunks, sent as they are.
    pub fn render(&self) -> Vec<Bytes> {
        let http = self.state().http_text.clone();
        let mut own = Vec::new();
        text::encode(&self.registry.gather(), &mut own);
        vec![http, Bytes::from(own)]
    }
}

/// The exporter's own metrics, collected at each scrape, without keeping the
/// exposition alive (the registry lives inside it).
struct SelfCollector(std::sync::Weak<Exposition>);

impl Collector for SelfCollector {
    fn desc(&self) -> Vec<&Desc> {
        static DESCS: std::sync::OnceLock<Vec<Desc>> = std::sync::OnceLock::new();
        DESCS
            .get_or_init(|| {
                own::DECLARED
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
            Some(exp) => own::families(&exp.state()),
            None => Vec::new(),
        }
    }
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
    use crate::bpf::{Flows, Histogram, Method, Role, SeriesKey, Snapshot, Stats};
    use crate::topology::{InterfaceName, TargetNames, Topology};

    fn key(role: Role, status: u16) -> SeriesKey {
        SeriesKey { target_id: 0, ifindex: 7, role, port: 80, method: Method::Get, status }
    }

    fn exposition(label: StatusLabel) -> Arc<Exposition> {
        let exp = Exposition::new(vec![0.001, 0.01, 0.1], label, 100);
        exp.set_topology(&Topology {
            targets: vec![TargetNames {
                id: 0,
                name: "web".into(),
                interfaces: vec![InterfaceName { ifindex: 7, name: "veth0".into() }],
            }],
            attached: vec![],
        });
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
        assert!(
            t.contains(r#"http_server_requests_total{target="web",interface="veth0",port="80",method="GET"} 6"#),
            "{t}"
        );
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
        exp.record_read(
            Ok(Snapshot { requests: vec![(key(Role::Server, 0), 3)], ..Default::default() }),
            Duration::ZERO,
        )
        .unwrap();
        let good = exp.since_good_read().expect("one good read");
        assert!(exp.record_read(Err(anyhow::anyhow!("boom")), Duration::ZERO).is_err());
        assert!(exp.since_good_read().unwrap() >= good, "a failed read is not a good one");
        let t = text(&exp);
        assert!(t.contains("http_golden_exporter_map_read_errors_total 1"), "{t}");
        assert!(t.contains(r#"method="GET"} 3"#), "{t}");
    }

    #[test]
    fn evictions_are_counters_that_never_go_back() {
        let exp = exposition(StatusLabel::Class);
        let flows = |evicted, evicted_unanswered| {
            Some(Flows { live: 10, pending: 1, evicted, evicted_unanswered, never_confirmed: 0 })
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
