//! The hard cases with real traffic: nginx (or a scripted server) in one
//! namespace, scripted clients, curl and wrk in another, the exporter watching
//! both ends of the veth. Every test states exactly what both views must show.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netio::{self, Client};
use common::nginx::Nginx;
use common::{Exporter, Metrics, Pair, TempDir, SERVER_V4, SERVER_V6};
use hge_attacher::netns::in_netns;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{TcHook, TC_INGRESS};

const TOOLS: &[&str] = &["ip", "nginx", "curl", "ethtool"];

struct World {
    pair: Pair,
    nginx: Nginx,
    exporter: Exporter,
}

impl World {
    fn new(extra: &str) -> Option<World> {
        if !common::privileged(TOOLS) {
            return None;
        }
        let pair = Pair::new();
        Some(Self::with_pair(pair, extra, None))
    }

    fn with_pair(pair: Pair, extra: &str, server_interfaces: Option<&str>) -> World {
        let nginx = Nginx::start(&pair);
        let exporter = Exporter::start(&pair.two_views(extra, server_interfaces));
        World { pair, nginx, exporter }
    }

    fn client(&self, port: u16) -> Client {
        Client::new(&self.pair.client_ns, &format!("{SERVER_V4}:{port}"))
    }

    /// Waits until both views equal `want` exactly, then asserts it (so a
    /// failure prints what was there). `want`: (method, "requests" or a
    /// status class, count).
    fn expect(&self, want: &[(&str, &str, u64)]) -> Metrics {
        let want: BTreeMap<(String, String), u64> =
            want.iter().map(|(m, k, n)| ((m.to_string(), k.to_string()), *n)).collect();
        let m = self
            .exporter
            .scrape_until(Duration::from_secs(20), |m| view(m, "server") == want && view(m, "client") == want);
        assert_eq!(view(&m, "server"), want, "server view");
        assert_eq!(view(&m, "client"), want, "client view");
        m
    }
}

/// Requests by method and responses by (method, class) in one view, all ports.
fn view(m: &Metrics, target: &str) -> BTreeMap<(String, String), u64> {
    let prefix = if target == "server" { "http_server" } else { "http_client" };
    let mut out = BTreeMap::new();
    for (name, labels, v) in &m.samples {
        if labels.get("target").map(String::as_str) != Some(target) {
            continue;
        }
        let key = if *name == format!("{prefix}_requests_total") {
            (labels["method"].clone(), "requests".to_string())
        } else if *name == format!("{prefix}_request_duration_seconds_count") {
            (labels["method"].clone(), labels["status_class"].clone())
        } else {
            continue;
        };
        *out.entry(key).or_default() += *v as u64;
    }
    out
}

/// A self-metric's value; a metric that is not exported at all fails (a sum
/// over nothing would read as 0, as if all were well).
fn stat(m: &Metrics, name: &str) -> u64 {
    stat_with(m, name, &[])
}

fn stat_with(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let name = format!("http_golden_exporter_{name}");
    assert!(m.has(&name, labels), "{name}{labels:?} is not exported");
    m.sum(&name, labels) as u64
}

fn assert_no_anomalies(m: &Metrics) {
    for name in [
        "framing_lost_total",
        "responses_without_request_total",
        "series_dropped_total",
        "flow_insert_failures_total",
        "flows_evicted_total",
        "flows_never_confirmed_total",
    ] {
        let lines: Vec<&str> = m.text.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(stat(m, name), 0, "{name}: {lines:?}");
    }
}

fn curl(w: &World, args: &[&str]) {
    let st = Pair::cmd(&w.pair.client_ns, "curl")
        .args(["-s", "--max-time", "60"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "curl {args:?}: {st}");
}

/// A scripted HTTP server in the server namespace: each accepted connection
/// runs `script` on its own thread.
fn scripted_server(w: &World, port: u16, script: fn(TcpStream)) {
    let listener = netio::listen(&w.pair.server_ns, &format!("{SERVER_V4}:{port}"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            conn.set_nodelay(true).unwrap();
            std::thread::spawn(move || script(conn));
        }
    });
}

fn read_request_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h == "\r\n" {
            return Some(first);
        }
    }
}

/// Latency is timed with the kernel's monotonic clock, which `Instant` reads
/// too, so every observation of `method`, in both views, lies within the
/// time the client measured around its exchange: their sum is at most the
/// sum of `windows` (one per exchange, or one around exchanges made one
/// after another), and each falls at or below the smallest bucket that holds
/// the longest window. Time outside the windows (idle gaps) can hide in neither.
fn within_windows(m: &Metrics, method: &str, windows: &[Duration]) {
    let total: Duration = windows.iter().sum();
    let longest = windows.iter().max().copied().unwrap_or_default().as_secs_f64();
    for (target, prefix) in [("server", "http_server"), ("client", "http_client")] {
        let labels = [("target", target), ("method", method)];
        let count = m.sum(&format!("{prefix}_request_duration_seconds_count"), &labels);
        let sum = m.sum(&format!("{prefix}_request_duration_seconds_sum"), &labels);
        assert!(sum <= total.as_secs_f64(), "{target} {method}: {sum} s of latency in exchanges that took {total:?}");
        let bucket = format!("{prefix}_request_duration_seconds_bucket");
        let le = m
            .samples
            .iter()
            .filter(|(n, l, _)| *n == bucket && l.get("target").map(String::as_str) == Some(target))
            .filter_map(|(_, l, _)| l.get("le").and_then(|le| le.parse::<f64>().ok()))
            .filter(|le| *le >= longest)
            .fold(f64::INFINITY, f64::min);
        let le = if le.is_infinite() { "+Inf".to_string() } else { le.to_string() };
        let within = m.sum(&bucket, &[("target", target), ("method", method), ("le", &le)]);
        assert_eq!(
            within, count,
            "{target} {method}: every observation at or below le={le} (the longest exchange took {longest} s)"
        );
    }
}

fn pause() {
    std::thread::sleep(Duration::from_millis(60));
}

#[test]
fn thousands_of_keep_alive_requests_and_idle_gaps() {
    let Some(w) = World::new("") else { return };
    // curl's URL globbing sends all 2000 on one connection, one after another.
    let t0 = Instant::now();
    curl(&w, &[&format!("http://{SERVER_V4}/ok?n=[1-2000]")]);
    let bulk = t0.elapsed();
    // Then HEAD on another connection, with idle gaps between the exchanges.
    let mut c = w.client(80);
    let mut exchanges = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        c.send(b"HEAD /ok HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response(true), 200);
        exchanges.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    let m = w.expect(&[("GET", "requests", 2000), ("GET", "2xx", 2000), ("HEAD", "requests", 3), ("HEAD", "2xx", 3)]);
    within_windows(&m, "GET", &[bulk]);
    // Two 300 ms gaps on that connection: leaked into latency, they would not fit.
    within_windows(&m, "HEAD", &exchanges);
    assert_no_anomalies(&m);
}

#[test]
fn pipelined_requests_in_one_segment_and_beyond_the_depth() {
    let Some(w) = World::new("") else { return };
    let mut c = w.client(80);
    let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send([req("/ok"), req("/missing"), req("/ok")].concat().as_bytes());
    let got: Vec<u16> = (0..3).map(|_| c.response(false)).collect();
    assert_eq!(got, [200, 404, 200]);
    // Six at once: two more than the per-connection queue holds. (nginx closes
    // the connection after a 500, so /fail goes last.)
    let six = ["/ok", "/ok", "/missing", "/missing", "/ok", "/fail"];
    c.send(six.iter().map(|p| req(p)).collect::<String>().as_bytes());
    let got: Vec<u16> = (0..6).map(|_| c.response(false)).collect();
    assert_eq!(got, [200, 200, 404, 404, 200, 500]);
    // The first four of the six are timed (ok, ok, missing, missing); the last two are not.
    let m = w.expect(&[("GET", "requests", 9), ("GET", "2xx", 4), ("GET", "4xx", 3)]);
    assert_eq!(stat(&m, "pipelined_requests_beyond_depth_total"), 4, "two per view");
    assert_eq!(stat(&m, "responses_without_request_total"), 0, "never mismatched");
    assert_eq!(stat(&m, "framing_lost_total"), 0);
}

#[test]
fn expect_100_continue_early_hints_and_upgrade() {
    let Some(w) = World::new("") else { return };
    let dir = TempDir::new("hgbody");
    let file = dir.path().join("body");
    std::fs::write(&file, vec![b'z'; 10 << 20]).unwrap();
    // curl sends Expect: 100-continue for a body this large; nginx answers 100 first.
    curl(
        &w,
        &[
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("http://{SERVER_V4}/upload"),
        ],
    );

    scripted_server(&w, 9000, |conn| {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while let Some(line) = read_request_head(&mut r) {
            if line.starts_with("GET /hints") {
                conn.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n").unwrap();
                pause();
                conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            } else if line.starts_with("GET /ws") {
                conn.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                )
                .unwrap();
                // Frames in both directions that look like HTTP are not HTTP any more.
                let mut frame = [0u8; 18];
                for _ in 0..3 {
                    r.read_exact(&mut frame).unwrap();
                    conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
                }
                return;
            }
        }
    });
    let mut c = w.client(9000);
    assert_eq!(c.get("/hints"), 200, "the reader skips the 103");
    c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(c.response(false), 101);
    let mut echo = [0u8; 19];
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        c.reader.read_exact(&mut echo).unwrap();
    }
    let m = w.expect(&[
        ("POST", "requests", 1),
        ("POST", "2xx", 1),
        ("GET", "requests", 2),
        ("GET", "2xx", 1),
        ("GET", "1xx", 1),
    ]);
    assert_eq!(stat(&m, "upgraded_connections_total"), 2, "one per view");
    assert_no_anomalies(&m);
}

/// nginx's ETag for a static file: "<mtime hex>-<size hex>".
fn etag(path: &std::path::Path) -> String {
    let md = std::fs::metadata(path).unwrap();
    let mtime = md.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    format!("\"{mtime:x}-{:x}\"", md.len())
}

fn gro_on(w: &World) {
    for (ns, i) in [(&w.pair.server_ns, &w.pair.server_if), (&w.pair.client_ns, &w.pair.client_if)] {
        common::run("ip", &["netns", "exec", ns, "ethtool", "-K", i, "gro", "on", "tso", "on", "gso", "on"]);
    }
}

#[test]
fn bodies_never_count_as_messages_whatever_their_framing() {
    let Some(w) = World::new("") else { return };
    // Large aggregated skbs at both hooks (GRO on veth, TSO/GSO on the senders).
    gro_on(&w);
    let tag = etag(&w.nginx.dir.path().join("page"));
    let mut c = w.client(80);
    c.send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(true), 200);
    assert_eq!(c.get("/nocontent"), 204);
    assert_eq!(c.get("/page"), 200);
    c.send(format!("GET /page HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n").as_bytes());
    assert_eq!(c.response(false), 304);
    assert_eq!(c.get("/chunked"), 200);
    assert_eq!(c.get("/big"), 200);
    assert_eq!(c.get("/trap"), 200);
    // A 10 MiB upload made of 1448-byte units (one MSS here) that each begin
    // with a request line, written unit by unit.
    let mut unit = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    unit.resize(1448, b'.');
    let units = (10 << 20) / unit.len();
    c.send(format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", units * unit.len()).as_bytes());
    for _ in 0..units {
        c.send(&unit);
    }
    assert_eq!(c.response(false), 200);
    assert_eq!(c.get("/ok"), 200);
    let m = w.expect(&[
        ("HEAD", "requests", 1),
        ("HEAD", "2xx", 1),
        ("GET", "requests", 7),
        ("GET", "2xx", 6), // 204, page, chunked, big, trap, ok
        ("GET", "3xx", 1),
        ("POST", "requests", 1),
        ("POST", "2xx", 1),
    ]);
    assert_no_anomalies(&m);
}

#[test]
fn start_and_header_lines_split_across_segments() {
    let Some(w) = World::new("") else { return };
    let mut c = w.client(80);
    c.send(b"GE");
    pause();
    c.send(b"T /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false), 200);

    scripted_server(&w, 9001, |conn| {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while let Some(line) = read_request_head(&mut r) {
            if line.starts_with("GET /status") {
                conn.write_all(b"HTTP/1.1 2").unwrap();
                pause();
                conn.write_all(b"00 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            } else {
                // Content-Length cut in the middle: the body must still be skipped.
                conn.write_all(b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Le").unwrap();
                pause();
                conn.write_all(b"ngth: 17\r\n\r\nHTTP/1.1 500 no\r\n").unwrap();
            }
        }
    });
    let mut s = w.client(9001);
    assert_eq!(s.get("/status"), 200);
    assert_eq!(s.get("/header"), 200);
    assert_eq!(s.get("/status"), 200);
    let m = w.expect(&[("GET", "requests", 4), ("GET", "2xx", 4)]);
    assert_no_anomalies(&m);
}

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod drop_nth {
    include!(concat!(env!("OUT_DIR"), "/drop_nth.skel.rs"));
}

/// Attach the test-only dropper (tests/bpf/drop_nth.bpf.c, built by build.rs):
/// every Nth TCP data packet arriving on `dev` is dropped, after the
/// exporter's hook on the sending side. The filter holds the program, and
/// goes with the interface.
fn drop_every_nth(ns: &str, dev: &str, nth: u32) {
    let mut storage = MaybeUninit::uninit();
    let mut open = drop_nth::DropNthSkelBuilder::default().open(&mut storage).expect("opening drop_nth");
    open.maps.rodata_data.as_deref_mut().expect("drop_nth has a .rodata").cfg_nth = nth;
    let skel = open.load().expect("loading drop_nth");
    let prog = skel.progs.drop_nth.as_fd();
    in_netns(Some(Path::new(&format!("/run/netns/{ns}"))), move || {
        let ifindex = nix::net::if_::if_nametoindex(dev)?;
        // After any filter of the exporter's (priority 1), as tc's default priority would be.
        let mut hook = TcHook::new(prog);
        hook.ifindex(ifindex as i32).attach_point(TC_INGRESS).handle(1).priority(2);
        hook.create()?;
        hook.attach()?;
        Ok(())
    })
    .unwrap_or_else(|e| panic!("attaching drop_nth to {dev} in {ns}: {e:#}"));
}

#[test]
fn retransmissions_after_the_hook_are_counted_once() {
    let Some(w) = World::new("") else { return };
    // Server view: responses lost on the client's ingress are resent through the
    // server's egress hook. Client view: requests lost on the server's ingress
    // are resent through the client's egress hook.
    drop_every_nth(&w.pair.client_ns, &w.pair.client_if, 7);
    drop_every_nth(&w.pair.server_ns, &w.pair.server_if, 7);
    curl(&w, &[&format!("http://{SERVER_V4}/{{ok,missing,fail,big}}?n=[1-40]")]);
    let m = w.expect(&[("GET", "requests", 160), ("GET", "2xx", 80), ("GET", "4xx", 40), ("GET", "5xx", 40)]);
    assert!(stat(&m, "retransmits_ignored_total") > 0, "the dropper must have caused retransmissions");
    assert_eq!(stat(&m, "responses_without_request_total"), 0);
    let log = std::fs::read_to_string(w.nginx.access_log()).unwrap();
    assert_eq!(w.nginx.count('2', "/"), 80, "nginx saw each request once:\n{log}");
}

#[test]
fn reset_and_server_close_count_requests_as_unanswered() {
    let Some(w) = World::new("") else { return };
    // The client gives up on a slow request with a RST.
    let mut c = w.client(8080);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    pause();
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: plain setsockopt with a live struct.
    unsafe {
        libc::setsockopt(
            c.stream().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(c);
    // A server that closes without answering.
    scripted_server(&w, 9002, |conn| {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        read_request_head(&mut r);
        drop(conn);
    });
    let mut s = w.client(9002);
    s.send(b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut rest = Vec::new();
    let _ = s.reader.read_to_end(&mut rest);
    w.expect(&[("GET", "requests", 2)]);
    let m = w.exporter.scrape_until(Duration::from_secs(30), |m| {
        stat_with(m, "requests_unanswered_total", &[("reason", "reset")]) == 2
            && stat_with(m, "requests_unanswered_total", &[("reason", "closed")]) == 2
    });
    assert_eq!(stat_with(&m, "requests_unanswered_total", &[("reason", "reset")]), 2, "one per view");
    assert_eq!(stat_with(&m, "requests_unanswered_total", &[("reason", "closed")]), 2, "one per view");
    assert_eq!(stat_with(&m, "requests_unanswered_total", &[("reason", "evicted")]), 0);
}

/// Five times more idle connections than the flow table holds (50,000
/// against 10,000, say); a process here may hold only 20,000 descriptors (no
/// CAP_SYS_RESOURCE), so the same ratio at 18,000 / 3,600, and both views
/// share the table: 36,000 flows through 3,600 slots.
#[test]
fn five_times_more_idle_connections_than_the_flow_table_holds() {
    const CONNS: u64 = 18_000;
    const TABLE: u64 = 3_600;
    let Some(w) = World::new(&format!("[bpf]\nflow_table_size = {TABLE}\n")) else { return };
    // The connections plus the harness's own descriptors.
    let limit = common::raise_nofile(CONNS + 1_000);
    assert!(limit >= CONNS + 500, "RLIMIT_NOFILE hard limit {limit} is too low for {CONNS} connections");
    let mut idle = Vec::with_capacity(CONNS as usize);
    let mut exchanges = Vec::with_capacity(CONNS as usize);
    for _ in 0..CONNS {
        let mut c = w.client(80);
        let t0 = Instant::now();
        assert_eq!(c.get("/ok"), 200);
        exchanges.push(t0.elapsed());
        idle.push(c);
    }
    w.expect(&[("GET", "requests", CONNS), ("GET", "2xx", CONNS)]);
    let m = w
        .exporter
        .scrape_until(Duration::from_secs(10), |m| stat(m, "flows_evicted_total") + stat(m, "flows") == 2 * CONNS);
    let (evicted, live) = (stat(&m, "flows_evicted_total"), stat(&m, "flows"));
    assert!(live <= TABLE, "live {live}");
    assert_eq!(evicted + live, 2 * CONNS, "every flow is live or counted as evicted");
    assert_eq!(stat_with(&m, "requests_unanswered_total", &[("reason", "evicted")]), 0, "all were answered first");
    // No made-up latency: each observation within its own exchange.
    within_windows(&m, "GET", &exchanges);
    // The oldest connections were forgotten, and the kernel said nothing: had
    // they still been tracked, their next request would create no flow. Each
    // creates one in both views (200), and making room for them evicts more
    // flows (the LRU frees in batches, so not exactly 200), which only the
    // derived count reports.
    for c in idle.iter_mut().take(100) {
        assert_eq!(c.get("/missing"), 404);
    }
    w.expect(&[("GET", "requests", CONNS + 100), ("GET", "2xx", CONNS), ("GET", "4xx", 100)]);
    let tracked = |m: &Metrics| stat(m, "flows_evicted_total") + stat(m, "flows");
    let m = w.exporter.scrape_until(Duration::from_secs(10), |m| tracked(m) == evicted + live + 200);
    assert_eq!(tracked(&m), evicted + live + 200, "each forgotten connection became a new flow in both views");
    assert!(stat(&m, "flows_evicted_total") > evicted, "room for them was made by evicting others");
    assert!(stat(&m, "flows") <= TABLE);
    drop(idle);
}

/// A local server behind a bridge: its SYN-ACKs leave through the bridge
/// first, then the port; requests arrive on the port first, then the bridge.
/// One target watching both counts each request once, on the bridge, whose
/// flow it is (counted once).
#[test]
fn the_same_traffic_on_a_bridge_and_its_port_counts_once_on_the_interface_that_saw_it_first() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let ns = pair.server_ns.clone();
    // The server's address moves to a bridge; the veth becomes its port.
    common::run("ip", &["-n", &ns, "link", "add", "hgbr0", "type", "bridge"]);
    common::run("ip", &["-n", &ns, "link", "set", &pair.server_if, "master", "hgbr0"]);
    common::run("ip", &["-n", &ns, "addr", "flush", "dev", &pair.server_if]);
    common::run("ip", &["-n", &ns, "addr", "add", "198.18.0.1/24", "dev", "hgbr0"]);
    common::run("ip", &["-n", &ns, "addr", "add", "fd00::1/64", "dev", "hgbr0", "nodad"]);
    common::run("ip", &["-n", &ns, "link", "set", "hgbr0", "up"]);
    let server_if = pair.server_if.clone();
    let w = World::with_pair(pair, "", Some(&format!("\"{server_if}\", \"hgbr0\"")));
    curl(&w, &[&format!("http://{SERVER_V4}/ok?n=[1-40]")]);
    let m = w.exporter.scrape_until(Duration::from_secs(10), |m| {
        m.sum("http_server_request_duration_seconds_count", &[("interface", "hgbr0")]) == 40.0
    });
    assert_eq!(m.sum("http_server_requests_total", &[("interface", "hgbr0")]), 40.0, "{}", m.text);
    assert_eq!(m.sum("http_server_request_duration_seconds_count", &[("interface", "hgbr0")]), 40.0);
    assert_eq!(m.sum("http_server_requests_total", &[("interface", &server_if)]), 0.0, "{}", m.text);
    assert_eq!(m.sum("http_server_request_duration_seconds_count", &[("interface", &server_if)]), 0.0);
    assert_eq!(m.sum("http_client_requests_total", &[("target", "client")]), 40.0);
}

#[test]
fn ipv4_options_and_ipv6_in_real_traffic() {
    let Some(w) = World::new("") else { return };
    // NOP NOP NOP EOL: IHL 6 on every packet this socket sends.
    let stream = netio::connect_with_ip_options(&w.pair.client_ns, &format!("{SERVER_V4}:80"), &[1, 1, 1, 0]);
    let mut c = Client::from_stream(stream);
    for _ in 0..20 {
        assert_eq!(c.get("/ok"), 200);
    }
    let mut v6 = Client::new(&w.pair.client_ns, &format!("[{SERVER_V6}]:80"));
    for _ in 0..20 {
        assert_eq!(v6.get("/missing"), 404);
    }
    let m = w.expect(&[("GET", "requests", 40), ("GET", "2xx", 20), ("GET", "4xx", 20)]);
    assert_no_anomalies(&m);
}
