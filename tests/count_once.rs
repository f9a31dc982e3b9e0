//! Count once, where the socket is, and only for the
//! interface's own target. A host that only routes a request, between a
//! client and a server in other namespaces, counts nothing for it (a
//! self-metric says how many it passed on); the server's namespace counts it
//! once.
//!
//!   client ns 198.18.1.2 ── rc | router ns (forwarding) | rs ── 198.18.2.2 server ns (busybox httpd)

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run, unique, Exporter, Metrics, Pair, Proc, TempDir};

/// Network namespaces made here, each with lo up; all removed when dropped, also on failure.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn new(prefixes: &[&str]) -> Namespaces {
        let mut made = Namespaces(Vec::new());
        for p in prefixes {
            let ns = unique(p);
            run("ip", &["netns", "add", &ns]);
            made.0.push(ns.clone());
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        made
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Routed {
    client: String,
    router: String,
    server: String,
    rc: String,
    rs: String,
    s: String,
    _ns: Namespaces,
}

impl Routed {
    fn new() -> Routed {
        let ns = Namespaces::new(&["hgoc", "hgor", "hgos"]);
        let r = Routed {
            client: ns.0[0].clone(),
            router: ns.0[1].clone(),
            server: ns.0[2].clone(),
            rc: unique("hgorc"),
            rs: unique("hgors"),
            s: unique("hgoss"),
            _ns: ns,
        };
        let c = unique("hgoc");
        run("ip", &["link", "add", &r.rc, "netns", &r.router, "type", "veth", "peer", "name", &c, "netns", &r.client]);
        run(
            "ip",
            &["link", "add", &r.rs, "netns", &r.router, "type", "veth", "peer", "name", &r.s, "netns", &r.server],
        );
        for (ns, dev, addr) in [
            (&r.client, &c, "198.18.1.2/24"),
            (&r.router, &r.rc, "198.18.1.1/24"),
            (&r.router, &r.rs, "198.18.2.1/24"),
            (&r.server, &r.s, "198.18.2.2/24"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        run("ip", &["-n", &r.client, "route", "add", "default", "via", "198.18.1.1"]);
        run("ip", &["-n", &r.server, "route", "add", "default", "via", "198.18.2.1"]);
        run("ip", &["netns", "exec", &r.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        r
    }
}

/// The exporter's config: a 200 ms read interval and one `[[target]]` per (name, interfaces, namespace).
fn config(targets: &[(&str, &[&str], &str)]) -> String {
    let mut c = "[metrics]\nscrape_interval = \"200ms\"\n".to_string();
    for (name, interfaces, ns) in targets {
        let list: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
        c += &format!(
            "[[target]]\nname = \"{name}\"\ninterfaces = [{}]\nnetns = \"/run/netns/{ns}\"\n",
            list.join(", ")
        );
    }
    c
}

fn requests(m: &Metrics, target: &str) -> f64 {
    m.sum("http_server_requests_total", &[("target", target)])
        + m.sum("http_client_requests_total", &[("target", target)])
}

/// busybox httpd serving index.html at `addr` ("IP:PORT") inside namespace `ns`; it closes after each answer.
fn httpd(ns: &str, addr: &str) -> (TempDir, Proc) {
    let www = TempDir::new("hgocwww");
    std::fs::write(www.path().join("index.html"), "ok\n").unwrap();
    let mut cmd = Pair::cmd(ns, "busybox");
    cmd.args(["httpd", "-f", "-p", addr, "-h"]).arg(www.path());
    let proc = Proc::spawn(cmd, "busybox httpd");
    (www, proc)
}

/// `n` requests with curl from namespace `ns`, each on its own connection (retried until httpd listens).
fn get(ns: &str, url: &str, n: usize) {
    for _ in 0..n {
        let mut curl = Pair::cmd(ns, "curl");
        curl.args(["-s", "--retry", "20", "--retry-connrefused", "--retry-delay", "0", "-o", "/dev/null"]);
        assert!(curl.arg(url).status().unwrap().success(), "curl {url}");
    }
}

#[test]
fn a_routed_request_counts_once_in_the_servers_namespace_and_nothing_on_the_router() {
    if !common::privileged(&["ip", "curl", "busybox"]) {
        return;
    }
    let net = Routed::new();
    let _httpd = httpd(&net.server, "198.18.2.2:80");
    let exp =
        Exporter::start(&config(&[("router", &[&net.rc, &net.rs], &net.router), ("server", &[&net.s], &net.server)]));

    // busybox httpd closes after each answer: five connections, each through the router.
    get(&net.client, "http://198.18.2.2/index.html", 5);
    let m = exp.scrape_until(Duration::from_secs(10), |m| {
        m.sum("http_server_requests_total", &[("target", "server")]) >= 5.0
            && m.sum("http_golden_exporter_requests_not_local_total", &[]) >= 10.0
    });
    assert_eq!(m.sum("http_server_requests_total", &[("target", "server")]), 5.0, "{}", m.text);
    assert_eq!(requests(&m, "router"), 0.0, "the router only forwards: {}", m.text);
    // Each request passed the router twice: in on rc (no socket will take it), out on rs (no socket sent it).
    assert_eq!(m.sum("http_golden_exporter_requests_not_local_total", &[]), 10.0, "{}", m.text);
}

/// Ifindexes repeat across namespaces (every namespace's loopback is 1): each
/// interface's slot, not its ifindex, says which target a packet counts for.
#[test]
fn the_same_ifindex_in_two_namespaces_counts_for_its_own_target() {
    if !common::privileged(&["ip", "curl", "busybox"]) {
        return;
    }
    let pair = Pair::new();
    let _httpd = httpd(&pair.server_ns, "127.0.0.1:80");
    let exp = Exporter::start(&config(&[("a", &["lo"], &pair.server_ns), ("b", &["lo"], &pair.client_ns)]));
    get(&pair.server_ns, "http://127.0.0.1/index.html", 3);
    // On lo both ends are local: each request once as client, once as server (docs/accuracy.md).
    let m = exp.scrape_until(Duration::from_secs(10), |m| requests(m, "a") >= 6.0);
    assert_eq!(m.sum("http_server_requests_total", &[("target", "a")]), 3.0, "{}", m.text);
    assert_eq!(m.sum("http_client_requests_total", &[("target", "a")]), 3.0, "{}", m.text);
    assert_eq!(requests(&m, "b"), 0.0, "the other namespace's lo saw nothing: {}", m.text);
}

/// A local client's request that leaves through a bridge and then the
/// bridge's port is one client request, not two: the connection is one flow
/// of the target, parsed on the interface that saw it first.
#[test]
fn a_request_through_a_bridge_and_its_port_counts_once() {
    if !common::privileged(&["ip", "curl", "busybox"]) {
        return;
    }
    let ns = Namespaces::new(&["hgobx", "hgobs"]);
    let (x, s) = (ns.0[0].as_str(), ns.0[1].as_str());
    let (br, xv, sv) = (unique("hgobr"), unique("hgobv"), unique("hgobw"));
    run("ip", &["-n", x, "link", "add", &br, "type", "bridge"]);
    run("ip", &["link", "add", &xv, "netns", x, "type", "veth", "peer", "name", &sv, "netns", s]);
    run("ip", &["-n", x, "link", "set", &xv, "master", &br]);
    run("ip", &["-n", x, "addr", "add", "198.18.3.1/24", "dev", &br]);
    run("ip", &["-n", s, "addr", "add", "198.18.3.2/24", "dev", &sv]);
    for (ns, dev) in [(x, &br), (x, &xv), (s, &sv)] {
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }
    let _httpd = httpd(s, "198.18.3.2:80");
    let exp = Exporter::start(&config(&[("x", &[&br, &xv], x)]));
    get(x, "http://198.18.3.2/index.html", 3);
    let m = exp.scrape_until(Duration::from_secs(10), |m| {
        m.sum("http_client_request_duration_seconds_count", &[("target", "x")]) >= 3.0
    });
    assert_eq!(m.sum("http_client_requests_total", &[("target", "x")]), 3.0, "{}", m.text);
    assert_eq!(m.sum("http_client_request_duration_seconds_count", &[("target", "x")]), 3.0, "{}", m.text);
    assert_eq!(
        m.sum("http_client_requests_total", &[("target", "x"), ("interface", &br)]),
        3.0,
        "first seen on the bridge"
    );
    assert_eq!(m.sum("http_server_requests_total", &[("target", "x")]), 0.0, "{}", m.text);
}
