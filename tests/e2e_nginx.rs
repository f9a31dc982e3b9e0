//! End to end: nginx in one namespace, curl and wrk in another, the exporter
//! binary attached to both ends of the veth. The scraped counts must equal
//! what the clients sent, per status class, in the server view and the client view.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::nginx::{curl, Nginx, SLOW_SECONDS};
use common::{Exporter, Metrics, Pair, CLIENT_V4, SERVER_V4, SERVER_V6};

const TOOLS: &[&str] = &["ip", "nginx", "curl", "wrk", "promtool"];

fn wrk(pair: &Pair, url: &str, connections: u32, seconds: u32) {
    let out = Pair::cmd(&pair.client_ns, "wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), url])
        .output()
        .expect("running wrk");
    assert!(out.status.success(), "wrk failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Requests per (role prefix, port, status class) as the exporter reports them.
fn counts(m: &Metrics, target: &str, prefix: &str) -> HashMap<(String, String), f64> {
    let mut out = HashMap::new();
    for (name, labels, v) in &m.samples {
        if name == &format!("{prefix}_request_duration_seconds_count") && labels["target"] == target {
            *out.entry((labels["port"].clone(), labels["status_class"].clone())).or_default() += v;
        }
    }
    out
}

#[test]
fn scraped_counts_equal_what_clients_sent_in_both_views() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exporter = Exporter::start(&pair.two_views("", None));

    let v4 = |p: &str| format!("http://{SERVER_V4}{p}");
    let v6 = |p: &str| format!("http://[{SERVER_V6}]{p}");
    // New connections: one curl per request, IPv4 and IPv6.
    for _ in 0..5 {
        curl(&pair, &[v4("/ok")]);
        curl(&pair, &[v6("/missing")]);
    }
    curl(&pair, &[v4("/fail")]);
    // Keep-alive: many requests on one connection, every class mixed.
    let mut mixed = Vec::new();
    for _ in 0..10 {
        mixed.extend([v4("/ok"), v4("/missing"), v4("/fail")]);
    }
    curl(&pair, &mixed);
    curl(&pair, &[v6("/ok"), v6("/ok"), v6("/fail"), v6("/big")]);
    // The delayed endpoint on its own port, so its series holds only slow
    // requests; one curl each, timed around it (process start included).
    let (slow_v4, slow_v6) = (format!("http://{SERVER_V4}:8080/slow"), format!("http://[{SERVER_V6}]:8080/slow"));
    let slow: Vec<f64> = [&slow_v4, &slow_v6, &slow_v4]
        .into_iter()
        .map(|url| {
            let t0 = Instant::now();
            curl(&pair, std::slice::from_ref(url));
            t0.elapsed().as_secs_f64()
        })
        .collect();
    // Load: keep-alive connections in parallel, IPv4 and IPv6.
    wrk(&pair, &v4("/ok"), 16, 2);
    wrk(&pair, &v6("/missing"), 4, 1);

    let expected: HashMap<(String, String), f64> = [
        (("80".to_string(), "2xx".to_string()), nginx.count('2', "/ok") + nginx.count('2', "/big")),
        (("80".to_string(), "4xx".to_string()), nginx.count('4', "/missing")),
        (("80".to_string(), "5xx".to_string()), nginx.count('5', "/fail")),
        (("8080".to_string(), "2xx".to_string()), nginx.count('2', "/slow")),
    ]
    .into_iter()
    .map(|(k, v)| (k, v as f64))
    .collect();
    let total: f64 = expected.values().sum();
    // What curl sent is known exactly; wrk's share comes from nginx's own log.
    assert_eq!(nginx.count('2', "/slow"), 3);
    assert_eq!(nginx.count('5', "/fail"), 1 + 10 + 1);
    // Everything before wrk sent /ok 5 + 10 + 2 times; wrk's share, however large the machine lets it be, comes on top.
    assert!(nginx.count('2', "/ok") > 5 + 10 + 2, "wrk sent requests");

    let m = exporter.scrape_until(Duration::from_secs(10), |m| {
        m.sum("http_server_requests_total", &[("target", "server")]) >= total
            && m.sum("http_client_requests_total", &[("target", "client")]) >= total
            && counts(m, "server", "http_server") == expected
            && counts(m, "client", "http_client") == expected
    });
    assert_eq!(counts(&m, "server", "http_server"), expected, "server view, by port and class");
    assert_eq!(counts(&m, "client", "http_client"), expected, "client view, by port and class");
    assert_eq!(m.sum("http_server_requests_total", &[("target", "server")]), total);
    assert_eq!(m.sum("http_client_requests_total", &[("target", "client")]), total);
    // Each side sees only its own role.
    assert_eq!(m.sum("http_client_requests_total", &[("target", "server")]), 0.0);
    assert_eq!(m.sum("http_server_requests_total", &[("target", "client")]), 0.0);

    // The delayed endpoint: nginx answers no sooner than SLOW_SECONDS, so every
    // observation lies above 0.25 s. Latency is timed with the kernel's monotonic
    // clock, which `Instant` reads too, so each lies within its curl's run: at or
    // below the smallest bucket holding the longest run, and their sum at most the
    // runs' sum. How long a run takes is the machine's business, not the test's.
    const { assert!(SLOW_SECONDS > 0.25) };
    let (longest, runs) = (slow.iter().copied().fold(0.0, f64::max), slow.iter().sum::<f64>());
    for (target, prefix) in [("server", "http_server"), ("client", "http_client")] {
        let name = format!("{prefix}_request_duration_seconds_bucket");
        let at = |le: &str| m.sum(&name, &[("target", target), ("port", "8080"), ("le", le)]);
        assert_eq!(at("0.25"), 0.0, "{target}: nothing at or below 0.25 s");
        let le = m
            .samples
            .iter()
            .filter(|(n, l, _)| *n == name && l["target"] == target)
            .filter_map(|(_, l, _)| Some((l.get("le")?.parse::<f64>().ok()?, l["le"].clone())))
            .filter(|(b, _)| *b >= longest)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or("+Inf".to_string(), |(_, le)| le);
        assert_eq!(at(&le), 3.0, "{target}: all three at or below le={le} (the longest curl took {longest} s)");
        let sum = m.sum(&format!("{prefix}_request_duration_seconds_sum"), &[("target", target), ("port", "8080")]);
        assert!(sum >= 3.0 * SLOW_SECONDS && sum <= runs, "{target}: sum {sum}, curls took {slow:?}");
    }

    // Clean traffic: no accuracy counter moved, nothing dropped.
    for name in [
        "http_golden_exporter_series_dropped_total",
        "http_golden_exporter_responses_without_request_total",
        "http_golden_exporter_pipelined_requests_beyond_depth_total",
        "http_golden_exporter_flow_insert_failures_total",
        "http_golden_exporter_framing_lost_total",
        "http_golden_exporter_flows_evicted_total",
        "http_golden_exporter_flows_never_confirmed_total",
    ] {
        assert!(m.has(name, &[]), "{name} is not exported");
        assert_eq!(m.sum(name, &[]), 0.0, "{name}");
    }
    for (t, i) in [("server", &pair.server_if), ("client", &pair.client_if)] {
        for dir in ["ingress", "egress"] {
            let labels = [("target", t), ("interface", i), ("direction", dir), ("mode", common::auto_mode())];
            assert!(m.has("http_golden_exporter_attached", &labels), "attached gauge for {t} {dir}");
            assert_eq!(m.sum("http_golden_exporter_attached", &labels), 1.0, "{t} {dir}: one program attached");
        }
    }

    // promtool (Debian package prometheus) must accept the exposition as is.
    let file = exporter.dir.path().join("scrape.prom");
    std::fs::write(&file, &m.text).unwrap();
    let out =
        Command::new("sh").arg("-c").arg(format!("promtool check metrics < {}", file.display())).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(dest) = std::env::var("HG_SAVE_SCRAPE") {
        std::fs::write(dest, &m.text).unwrap();
    }
    let _ = CLIENT_V4;
}

fn sigterm_detaches_everything(mode: &str) {
    if !common::privileged(&["ip", "tc"]) {
        return;
    }
    if mode == "tcx" && !common::tcx_kernel() {
        return;
    }
    let expect = common::ours(mode);
    let pair = Pair::new();
    let mut exporter = Exporter::start(&pair.two_views(&format!("[bpf]\nattach_mode = \"{mode}\""), None));
    for (ns, i) in [(&pair.server_ns, &pair.server_if), (&pair.client_ns, &pair.client_if)] {
        let shown = common::bpf_attached(ns, i);
        assert_eq!(shown.matches(&expect).count(), 2, "{mode}: both directions attached on {i}: {shown}");
    }
    exporter.proc.signal(nix::sys::signal::SIGTERM);
    let st = exporter.proc.wait_timeout(Duration::from_secs(10)).expect("exporter exits on SIGTERM");
    assert!(st.success(), "exit status {st}: {}", exporter.log());
    for (ns, i) in [(&pair.server_ns, &pair.server_if), (&pair.client_ns, &pair.client_if)] {
        let shown = common::bpf_attached(ns, i);
        assert!(!shown.contains("http_"), "{mode}: still attached on {i}: {shown}");
    }
}

#[test]
fn sigterm_detaches_tcx_links_and_exits_zero() {
    sigterm_detaches_everything("tcx");
}

#[test]
fn sigterm_removes_legacy_tc_filters_and_exits_zero() {
    sigterm_detaches_everything("tc");
}
