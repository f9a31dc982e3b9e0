//! The exposition of small reads: buckets, labels, failed reads, counters that never go back.

use super::*;
use hge_shared::snapshot::{Flows, Histogram, Method, Role, SeriesKey, Snapshot, Stats};
use hge_shared::topology::{InterfaceName, TargetNames, Topology};

fn key(role: Role, status: u16) -> SeriesKey {
    SeriesKey { target_id: 0, ifindex: 7, role, port: 80, method: Method::Get, status, route: 0 }
}

fn exposition(label: StatusLabel) -> Arc<Exposition> {
    let exp = Exposition::new(vec![0.001, 0.01, 0.1], label, 100);
    exp.set_topology(&Topology {
        targets: vec![TargetNames {
            id: 0,
            name: "web".into(),
            container: None,
            interfaces: vec![InterfaceName { ifindex: 7, name: "veth0".into() }],
            routes: vec![],
        }],
        attached: vec![],
        discovery: vec![],
        programs: vec![Program { name: "hg_parse_ingress".into(), verified_instructions: 123_456 }],
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
            Histogram { buckets: vec![1, 2, 0, 3], sum_ns: 1_500_000_000, count: 6, ..Default::default() },
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
        latency: vec![(
            key(Role::Client, 404),
            Histogram { buckets: vec![0, 0, 0, 1], sum_ns: 1, count: 1, ..Default::default() },
        )],
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
        "http_golden_exporter_bpf_verified_instructions{program=\"hg_parse_ingress\"} 123456",
    ] {
        assert!(t.contains(name), "missing {name}:\n{t}");
    }
}
