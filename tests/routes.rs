//! Routes end to end: nginx in one namespace, clients in another, the
//! exporter on both ends of the veth with path templates. Each request's
//! route, per view, must be what this test's own matcher (a regular
//! expression per template, not the exporter's code) gives the path nginx
//! logged, and paths that match no template must all share `route="other"`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::netio::Client;
use common::nginx::{curl, Nginx};
use common::{Exporter, Metrics, Pair, SERVER_V4, SERVER_V6};

const TOOLS: &[&str] = &["ip", "nginx", "curl", "wrk"];
const TEMPLATES: &[&str] = &["/users/{id}", "/users/{id}/orders", "/static/*"];
const WITHIN: Duration = Duration::from_secs(10);

/// The two views' config, each target with `templates`.
fn config(pair: &Pair, templates: &[&str]) -> String {
    let list = templates.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
    pair.two_views("", None).replace("[[target]]\n", &format!("[[target]]\nroutes = [{list}]\n"))
}

/// The reference: each template as a regular expression over the path (the
/// request-target before '?'), the first that matches winning.
fn route_of(templates: &[&str], target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap();
    for t in templates {
        let (body, star) = t.strip_suffix("/*").map_or((*t, false), |b| (b, true));
        let mut re = String::from("^");
        for seg in body.split('/').skip(1) {
            re.push('/');
            re.push_str(&if seg.starts_with('{') { "[^/]+".to_string() } else { regex::escape(seg) });
        }
        re.push_str(if star { "(/.*)?$" } else { "$" });
        if regex::Regex::new(&re).unwrap().is_match(path) {
            return t.to_string();
        }
    }
    "other".into()
}

/// Requests per (route, status class) of `view` ("server" or "client") on port 8081.
fn by_route(m: &Metrics, view: &str) -> BTreeMap<(String, String), f64> {
    let name = format!("http_{view}_request_duration_seconds_count");
    let mut out = BTreeMap::new();
    for (n, labels, v) in &m.samples {
        if *n == name && labels["target"] == view && labels["port"] == "8081" {
            let route = labels.get("route").cloned().unwrap_or_else(|| "(none)".into());
            *out.entry((route, labels["status_class"].clone())).or_default() += v;
        }
    }
    out
}

/// What nginx logged on port 8081, mapped through the reference matcher.
fn expected(nginx: &Nginx, templates: &[&str]) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for (target, status) in nginx.requests() {
        let class = format!("{}xx", status / 100);
        *out.entry((route_of(templates, &target), class)).or_default() += 1.0;
    }
    out
}

fn url(v6: bool, path: &str) -> String {
    if v6 {
        format!("http://[{SERVER_V6}]:8081{path}")
    } else {
        format!("http://{SERVER_V4}:8081{path}")
    }
}

/// Every `route` label value the scrape shows for `view`'s HTTP series.
fn routes_shown(m: &Metrics, view: &str) -> BTreeSet<String> {
    m.samples
        .iter()
        .filter(|(n, l, _)| n.starts_with(&format!("http_{view}_request")) && l["target"] == view)
        .map(|(_, l, _)| l.get("route").cloned().unwrap_or_else(|| "(none)".into()))
        .collect()
}

#[test]
fn each_route_counts_exactly_what_nginx_logged_for_its_paths_in_both_views() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exporter = Exporter::start(&config(&pair, TEMPLATES));

    let paths = [
        "/users/1",
        "/users/abc?tab=orders",
        "/users/2/orders",
        "/users/2/orders/",
        "/users/",
        "/static/app.js",
        "/static/css/site.css",
        "/static",
        "/",
        "/nope",
        "/Users/1",
    ];
    for v6 in [false, true] {
        // One connection per path, and all of them on one keep-alive connection.
        for p in paths {
            curl(&pair, &[url(v6, p)]);
        }
        curl(&pair, &paths.iter().map(|p| url(v6, p)).collect::<Vec<_>>());
    }
    // Load, on keep-alive connections in parallel.
    let out = Pair::cmd(&pair.client_ns, "wrk")
        .args(["-t1", "-c8", "-d2s", &url(false, "/users/7/orders")])
        .output()
        .expect("running wrk");
    assert!(out.status.success(), "wrk: {}", String::from_utf8_lossy(&out.stderr));

    let want = expected(&nginx, TEMPLATES);
    assert_eq!(want[&("/users/{id}".to_string(), "2xx".to_string())], 4.0 * 2.0, "what curl sent");
    assert_eq!(want[&("/static/*".to_string(), "2xx".to_string())], 4.0 * 2.0, "two files");
    assert_eq!(want[&("/static/*".to_string(), "4xx".to_string())], 4.0, "/static, which nginx does not serve");
    assert!(want[&("/users/{id}/orders".to_string(), "5xx".to_string())] > 100.0, "wrk made load");
    assert_eq!(want[&("other".to_string(), "4xx".to_string())], 4.0 * 2.0, "/nope and /Users/1");
    let m = exporter.scrape_until(WITHIN, |m| by_route(m, "server") == want && by_route(m, "client") == want);
    assert_eq!(by_route(&m, "server"), want, "server view, by route and class");
    assert_eq!(by_route(&m, "client"), want, "client view, by route and class");
    for view in ["server", "client"] {
        let total: f64 = want.values().sum();
        let counted = m.sum(&format!("http_{view}_requests_total"), &[("target", view), ("port", "8081")]);
        assert_eq!(counted, total, "{view}: every request counted once");
        let other = m.sum(&format!("http_{view}_requests_total"), &[("target", view), ("route", "other")]);
        assert_eq!(other, want.iter().filter(|((r, _), _)| r == "other").map(|(_, v)| v).sum::<f64>());
    }
    assert_eq!(m.sum("http_golden_exporter_requests_paths_cut_total", &[]), 0.0, "no path was long");
}

/// A path no template can name, written as raw bytes on its own connection.
const HOSTILE: &[&[u8]] = &[
    b"GET users/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /users/../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /static/%2e%2e/%2e%2e HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /users/\x01\xff\x00 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET http://x/users/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
];

#[test]
fn distinct_random_and_hostile_paths_add_no_series_beyond_other() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let _nginx = Nginx::start(&pair);
    let mut exporter = Exporter::start(&config(&pair, TEMPLATES));
    const REQUESTS: u64 = 100_000;
    const CONNECTIONS: u64 = 4;
    const BATCH: u64 = 50;

    // Distinct random paths, pipelined in batches on a few keep-alive connections.
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let ns = pair.client_ns.clone();
            std::thread::spawn(move || {
                let mut client = Client::new(&ns, &format!("{SERVER_V4}:8081"));
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ c;
                for _ in 0..REQUESTS / CONNECTIONS / BATCH {
                    let mut batch = Vec::new();
                    for _ in 0..BATCH {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        let path = format!("/r{:x}/{:x}", seed >> 40, seed & 0xff_ffff);
                        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    }
                    client.send(&batch);
                    for _ in 0..BATCH {
                        assert_eq!(client.response(false), 404);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let long = format!("GET /static/{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(8 * 1024));
    for raw in HOSTILE.iter().copied().chain([long.as_bytes()]) {
        let mut client = Client::new(&pair.client_ns, &format!("{SERVER_V4}:8081"));
        client.send(raw);
        let status = client.response(false);
        assert!((200..600).contains(&status), "nginx answered {status}");
    }

    let other = |m: &Metrics| m.sum("http_server_requests_total", &[("target", "server"), ("route", "other")]);
    let m = exporter.scrape_until(WITHIN, |m| other(m) >= REQUESTS as f64);
    assert!(other(&m) >= REQUESTS as f64, "the random paths are route=\"other\":\n{}", m.text);
    for view in ["server", "client"] {
        let shown = routes_shown(&m, view);
        assert!(shown.iter().all(|r| r == "other" || r == "/static/*"), "{view}: {shown:?}");
        let series = m
            .samples
            .iter()
            .filter(|(n, l, _)| *n == format!("http_{view}_requests_total") && l["target"] == view)
            .count();
        assert!(series <= 2, "{view}: GET to other, and to /static/* (the 8 KiB path): {series} series");
    }
    let cut = m.sum("http_golden_exporter_requests_paths_cut_total", &[]);
    assert!(cut >= 1.0, "the 8 KiB path was cut");
    assert!(exporter.proc.child.try_wait().unwrap().is_none(), "the exporter still runs");
}

#[test]
fn a_reload_that_changes_the_templates_relabels_new_requests_without_detaching() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exporter = Exporter::start(&config(&pair, &["/users/{id}"]));
    let send = || {
        curl(&pair, &["/users/1", "/users/1/orders", "/static/x"].map(|p| url(false, p)));
    };
    send();
    let m = exporter.scrape_until(WITHIN, |m| routes_shown(m, "server").len() == 2);
    assert_eq!(routes_shown(&m, "server"), ["/users/{id}", "other"].map(String::from).into());

    let path = exporter.dir.path().join("config.toml");
    let old = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        old.replace(r#"routes = ["/users/{id}"]"#, r#"routes = ["/users/{id}/orders", "/static/*"]"#),
    )
    .unwrap();
    let log_before = exporter.log();
    exporter.proc.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = std::time::Instant::now() + WITHIN;
    while !exporter.log()[log_before.len()..].contains("reloaded:") {
        assert!(std::time::Instant::now() < reloaded, "no reload:\n{}", exporter.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = exporter.log()[log_before.len()..].to_string();
    // Each attach is logged ("target …: attached to IFACE DIRECTION"): the
    // programs on both ends stayed where they were.
    assert!(!after.contains("attached to"), "the programs stay attached, not attached again:\n{after}");
    std::fs::write(nginx.access_log(), "").unwrap();
    send();

    let want: BTreeSet<String> = ["/static/*", "/users/{id}/orders", "other"].map(String::from).into();
    let m = exporter.scrape_until(WITHIN, |m| routes_shown(m, "server") == want);
    assert_eq!(routes_shown(&m, "server"), want, "only the new templates label series:\n{}", m.text);
    assert_eq!(by_route(&m, "server"), expected(&nginx, &["/users/{id}/orders", "/static/*"]));
    assert_eq!(by_route(&m, "client"), expected(&nginx, &["/users/{id}/orders", "/static/*"]));
}
