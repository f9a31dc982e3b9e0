//! A static target follows its namespace file: when the
//! namespace behind `netns = "/run/netns/NAME"` goes, the target is detached
//! and the `attached` gauge says so; when a new one appears under the same
//! name (a container restart), it is attached there, logged once, and its
//! requests are counted again, without restarting the exporter.

mod common;

use std::time::{Duration, Instant};

use common::nginx::{curl, Nginx};
use common::{Exporter, Metrics, Pair, SERVER_V4};

fn config(pair: &Pair) -> String {
    // The glob matches the server's veth before and after the restart (new name, same prefix).
    format!(
        "[metrics]\nscrape_interval = \"200ms\"\n[[target]]\nname = \"web\"\ninterfaces = [\"hgvs*\"]\nnetns = \"{}\"\n",
        Pair::netns_path(&pair.server_ns)
    )
}

fn attached_on(m: &Metrics, interface: &str) -> f64 {
    m.sum("http_golden_exporter_attached", &[("target", "web"), ("interface", interface)])
}

fn requests(m: &Metrics) -> f64 {
    m.sum("http_server_requests_total", &[("target", "web")])
}

#[test]
fn a_static_target_follows_its_namespace_when_the_container_restarts() {
    if !common::privileged(&["ip", "nginx", "curl"]) {
        return;
    }
    let mut pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exp = Exporter::start(&config(&pair));
    let first_if = pair.server_if.clone();
    for _ in 0..2 {
        curl(&pair, &[format!("http://{SERVER_V4}/ok")]);
    }
    let m = exp.scrape_until(Duration::from_secs(10), |m| requests(m) == 2.0);
    assert_eq!(requests(&m), 2.0, "{}", m.text);
    assert_eq!(attached_on(&m, &first_if), 2.0, "both directions: {}", m.text);

    // The container stops: its processes, then its namespace.
    drop(nginx);
    pair.stop_server_ns();
    let m = exp.scrape_until(Duration::from_secs(10), |m| attached_on(m, &first_if) == 0.0);
    assert_eq!(attached_on(&m, &first_if), 0.0, "the gauge follows the kernel: {}\n{}", m.text, exp.log());
    assert!(exp.log().contains("detached until it is back"), "{}", exp.log());

    // It starts again: a new namespace under the same name, a new veth.
    pair.start_server_ns();
    let restarted = Instant::now();
    let _nginx = Nginx::start(&pair);
    let m = exp.scrape_until(Duration::from_secs(10), |m| attached_on(m, &pair.server_if) == 2.0);
    assert_eq!(attached_on(&m, &pair.server_if), 2.0, "re-attached: {}\n{}", m.text, exp.log());
    eprintln!("re-attached {:?} after the namespace came back", restarted.elapsed());
    for _ in 0..3 {
        curl(&pair, &[format!("http://{SERVER_V4}/ok")]);
    }
    // A restarted container starts its counters anew, as its process does.
    let m = exp.scrape_until(Duration::from_secs(10), |m| requests(m) == 3.0);
    assert_eq!(requests(&m), 3.0, "{}", m.text);
    let log = exp.log();
    assert_eq!(log.matches("holds a new network namespace").count(), 1, "logged once: {log}");
}

/// An interface deleted under a target whose namespace stays: its TCX link
/// holds nothing any more, and the `attached` gauge stops saying otherwise.
#[test]
fn an_interface_deleted_under_a_target_is_no_longer_reported_attached() {
    // TCX links only: a tc filter is taken as held, since checking it would mean entering the namespace.
    if !common::privileged(&["ip"]) || !common::tcx_kernel() {
        return;
    }
    let pair = Pair::new();
    let exp = Exporter::start(&format!("[bpf]\nattach_mode = \"tcx\"\n{}", config(&pair)));
    let m = exp.scrape_until(Duration::from_secs(10), |m| attached_on(m, &pair.server_if) == 2.0);
    assert_eq!(attached_on(&m, &pair.server_if), 2.0, "{}", m.text);
    common::run("ip", &["-n", &pair.server_ns, "link", "del", &pair.server_if]);
    let m = exp.scrape_until(Duration::from_secs(10), |m| attached_on(m, &pair.server_if) == 0.0);
    assert_eq!(attached_on(&m, &pair.server_if), 0.0, "{}\n{}", m.text, exp.log());
    assert!(exp.log().contains(&format!("interface {} is gone", pair.server_if)), "{}", exp.log());
}

#[test]
fn interfaces_created_under_a_running_target_that_names_them_are_attached_and_let_go() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let ns = pair.server_ns.clone();
    let cfg = format!(
        "[metrics]\nscrape_interval = \"200ms\"\n[[target]]\nname = \"web\"\ninterfaces = [\"hg*\"]\nnetns = \"{}\"\n",
        Pair::netns_path(&ns)
    );
    let exp = Exporter::start(&cfg);
    let programs = |m: &Metrics| m.sum("http_golden_exporter_attached", &[("target", "web")]);
    assert_eq!(programs(&exp.scrape()), 2.0);
    let (a, b) = (common::unique("hgga"), common::unique("hggb"));
    common::run("ip", &["-n", &ns, "link", "add", &a, "type", "veth", "peer", "name", &b]);
    let t0 = Instant::now();
    // The attacher looks each second; the wait is a bound on a hang, not on that.
    let m = exp.scrape_until(Duration::from_secs(30), |m| programs(m) == 6.0);
    assert_eq!(programs(&m), 6.0, "both new ends attached:\n{}\n{}", m.text, exp.log());
    eprintln!("attached {:?} after ip link add", t0.elapsed());
    common::run("ip", &["-n", &ns, "link", "del", &a]);
    let m = exp.scrape_until(Duration::from_secs(30), |m| programs(m) == 2.0);
    assert_eq!(programs(&m), 2.0, "let go once deleted:\n{}", m.text);
    assert!(!exp.log().contains("ERROR"), "{}", exp.log());
}
