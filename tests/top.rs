//! `http-golden-exporter top` in a real terminal: tmux runs it (200x50), the
//! test reads the screen with `capture-pane` and types with `send-keys`. The
//! exporter is a stand-in serving text whose counters move by known amounts
//! on every read (tests/top/fake.rs), so rates, 5xx shares and quantiles have
//! exact expected values; the last test runs the real exporter and nginx.

mod common;
#[path = "top/fake.rs"]
mod fake;
#[path = "top/tmux.rs"]
mod tmux;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{issue, self_signed};
use common::{exporter_bin, exporter_bin_with_top, TempDir};
use fake::{Fake, Options, Series, PERIOD};
use tmux::{order, rows, Tmux};

/// Per read (every 100 ms): web:80 takes 10 + 5 requests on two interfaces,
/// 12 answered 2xx under 25 ms and 3 answered 5xx under 2.5 ms; the shop
/// container's 8080 takes 20 POSTs, all 2xx in (0.25 s, 0.5 s]; a client
/// sends 4 to port 443, one of them answered 5xx, all in (50 ms, 100 ms];
/// api:9000 is idle.
static ROWS: [Series; 4] = [
    Series {
        side: "server",
        target: "web",
        container: None,
        port: 80,
        method: "GET",
        requests: [10, 5],
        responses: &[("2xx", 12, 0.025), ("5xx", 3, 0.0025)],
    },
    Series {
        side: "server",
        target: "web",
        container: Some("shop"),
        port: 8080,
        method: "POST",
        requests: [20, 0],
        responses: &[("2xx", 20, 0.5)],
    },
    Series {
        side: "client",
        target: "host",
        container: None,
        port: 443,
        method: "GET",
        requests: [4, 0],
        responses: &[("2xx", 3, 0.1), ("5xx", 1, 0.1)],
    },
    Series {
        side: "server",
        target: "api",
        container: None,
        port: 9000,
        method: "GET",
        requests: [0, 0],
        responses: &[],
    },
];

/// What the screen must show for ROWS: rate (req/s), 5xx share, p50, p99. The
/// quantiles interpolate inside the bucket as Prometheus does: web:80's median
/// is rank 7.5 of 15, 4.5 of 12 into (10 ms, 25 ms]: 15.625 ms.
const WANT: [(&str, f64, &str, &str, &str); 4] = [
    ("web:80", 150.0, "20.0%", "15.6ms", "24.8ms"),
    ("web:8080", 200.0, "0.0%", "375.0ms", "497.5ms"),
    ("host:443", 40.0, "25.0%", "75.0ms", "99.5ms"),
    ("api:9000", 0.0, "-", "-", "-"),
];

fn top(url: &str, extra: &str) -> Tmux {
    Tmux::start(&format!("{} top --url {url} {extra}", exporter_bin_with_top()))
}

/// Every row is there with its rate. The fake states when each read was
/// taken, so the rates are exact; 2% only absorbs the rounding on screen.
fn measured(pane: &str) -> bool {
    let rows = rows(pane);
    WANT.iter().all(|(name, rate, ..)| {
        rows.iter().any(|r| {
            format!("{}:{}", r[1], r[3]) == *name
                && r[6].parse::<f64>().is_ok_and(|got| (got - rate).abs() <= rate * 0.02)
        })
    })
}

const SETTLE: Duration = Duration::from_secs(20);
/// How long a key, a signal or a lost terminal may take to show: a bound on a
/// wait that ends as soon as the pane shows it, so only a loaded machine nears it.
const EVENT: Duration = Duration::from_secs(30);

#[test]
fn each_row_shows_its_request_rate_5xx_share_and_quantiles() {
    if !tmux::available() {
        return;
    }
    let fake = Fake::start(&ROWS, Options { tls: None, authorization: None });
    let t = top(&fake.url("http"), "");
    let pane = t.wait_for("the four rows with their rates", SETTLE, measured);
    for (name, _, errors, p50, p99) in WANT {
        let r = rows(&pane).into_iter().find(|r| format!("{}:{}", r[1], r[3]) == name).unwrap();
        assert_eq!([&r[7], &r[8], &r[9]], [errors, p50, p99], "{name}:\n{pane}");
    }
    let shop = rows(&pane).into_iter().find(|r| r[3] == "8080").unwrap();
    assert_eq!(shop[..6], ["server", "web", "shop", "8080", "POST", "-"], "no route label: a dash\n{pane}");
    let host = rows(&pane).into_iter().find(|r| r[3] == "443").unwrap();
    assert_eq!(host[..5], ["client", "host", "-", "443", "GET"], "no container label: a dash\n{pane}");
    // Every column says which key sorts by it; rate, descending, is the default.
    for head in
        ["1 SIDE", "2 TARGET", "3 CONTAINER", "4 PORT", "5 METHOD", "6 ROUTE", "7 REQ/S▼", "8 5XX%", "9 P50", "0 P99"]
    {
        assert!(pane.contains(head), "header lacks {head:?}:\n{pane}");
    }
    assert!(pane.contains("exporter reads every"), "{pane}");
    // The fake answers the text even to top's protobuf-first Accept.
    assert!(pane.contains("quantiles from classic buckets"), "{pane}");
    if let Ok(path) = std::env::var("HG_SAVE_PANE") {
        std::fs::write(path, &pane).unwrap();
    }
}

#[test]
fn keys_sort_by_each_column_slash_filters_and_q_quits() {
    if !tmux::available() {
        return;
    }
    let fake = Fake::start(&ROWS, Options { tls: None, authorization: None });
    let t = top(&fake.url("http"), "");
    let pane = t.wait_for("measured rows", SETTLE, measured);
    assert_eq!(order(&pane), ["web:8080", "web:80", "host:443", "api:9000"], "rate, descending:\n{pane}");
    // Each key, and the order it must give; the same key again reverses.
    let steps: [(&str, &str, [&str; 4]); 6] = [
        ("4", "4 PORT▲", ["web:80", "host:443", "web:8080", "api:9000"]),
        ("4", "4 PORT▼", ["api:9000", "web:8080", "host:443", "web:80"]),
        ("8", "8 5XX%▼", ["host:443", "web:80", "web:8080", "api:9000"]),
        ("9", "9 P50▼", ["web:8080", "host:443", "web:80", "api:9000"]),
        ("2", "2 TARGET▲", ["api:9000", "host:443", "web:80", "web:8080"]),
        ("1", "1 SIDE▲", ["api:9000", "web:80", "web:8080", "host:443"]),
    ];
    for (key, head, want) in steps {
        t.keys(&[key]);
        t.wait_for(&format!("key {key}: {head} and the rows {want:?}"), EVENT, |p| {
            p.contains(head) && order(p) == want
        });
    }
    // A filter typed after '/', kept with Enter: only the rows it names.
    t.keys(&["/", "shop", "Enter"]);
    // "sh" alone already leaves only that row: wait for the whole filter.
    let pane = t.wait_for("filter shop", EVENT, |p| order(p) == ["web:8080"] && p.contains("filter: shop"));
    assert!(pane.contains("4 rows, 1 shown") && pane.contains("filter: shop"), "{pane}");
    t.keys(&["/", "client", "Enter"]);
    t.wait_for("filter client", EVENT, |p| order(p) == ["host:443"]);
    t.keys(&["Escape"]);
    t.wait_for("Esc clears the filter", EVENT, |p| order(p).len() == 4);
    t.keys(&["q"]);
    let pane = t.wait_for("q ends top", EVENT, |p| p.contains("top exited with 0"));
    assert!(rows(&pane).is_empty(), "the terminal is given back (alternate screen left):\n{pane}");
    t.wait_for("the terminal out of raw mode", EVENT, |p| p.contains("terminal: cooked"));
}

/// 120 rows on port 10001 to 10120, port 10000 + i taking i requests a read
/// (10·i per second): sorted by rate, 10120 first and 10001 last. The 50-line
/// pane has room for 46 (title, status, header and key lines aside).
fn many_rows() -> &'static [Series] {
    let rows = (1..=120u16).map(|i| Series {
        side: "server",
        target: "many",
        container: None,
        port: 10000 + i,
        method: "GET",
        requests: [u64::from(i), 0],
        responses: &[],
    });
    Vec::leak(rows.collect())
}

#[test]
fn more_rows_than_fit_scroll_with_page_down_end_and_home() {
    if !tmux::available() {
        return;
    }
    let fake = Fake::start(many_rows(), Options { tls: None, authorization: None });
    let t = top(&fake.url("http"), "");
    let ports = |p: &str| rows(p).into_iter().map(|r| r[3].clone()).collect::<Vec<_>>();
    let measured = |p: &str| rows(p).iter().all(|r| r[6] != "-") && ports(p).first().is_some_and(|f| f == "10120");
    let pane = t.wait_for("the first rows, by rate", SETTLE, |p| measured(p) && p.contains("rows 1-46 of 120"));
    assert!(pane.contains("120 rows, 120 shown"), "{pane}");
    assert_eq!(ports(&pane), (10075..=10120).rev().map(|p| p.to_string()).collect::<Vec<_>>(), "{pane}");
    assert!(pane.contains("PgUp/PgDn"), "the key line names the keys:\n{pane}");
    t.keys(&["NPage"]);
    let pane = t.wait_for("a page down", EVENT, |p| p.contains("rows 47-92 of 120"));
    assert_eq!(ports(&pane).first().map(String::as_str), Some("10074"), "{pane}");
    assert!(!ports(&pane).contains(&"10001".to_string()), "{pane}");
    t.keys(&["NPage"]);
    let pane = t.wait_for("the last page", EVENT, |p| p.contains("rows 75-120 of 120"));
    assert_eq!(ports(&pane).last().map(String::as_str), Some("10001"), "the last row:\n{pane}");
    t.keys(&["Home"]);
    let pane = t.wait_for("Home: the first rows", EVENT, |p| p.contains("rows 1-46 of 120"));
    assert_eq!(ports(&pane).first().map(String::as_str), Some("10120"), "{pane}");
    assert!(!ports(&pane).contains(&"10001".to_string()), "{pane}");
    t.keys(&["End"]);
    let pane = t.wait_for("End: the last rows", EVENT, |p| p.contains("rows 75-120 of 120"));
    assert_eq!(ports(&pane).last().map(String::as_str), Some("10001"), "{pane}");
    t.keys(&["PPage"]);
    t.wait_for("a page up", EVENT, |p| p.contains("rows 29-74 of 120"));
    // The cursor moving down past the last row on screen drags the screen along; k goes back up.
    t.keys(&["Home", "Down", &"j".repeat(45)]);
    let pane = t.wait_for("46 rows down", EVENT, |p| p.contains("rows 2-47 of 120"));
    assert_eq!(ports(&pane).first().map(String::as_str), Some("10119"), "{pane}");
    t.keys(&[&"k".repeat(46)]);
    t.wait_for("46 rows up", EVENT, |p| p.contains("rows 1-46 of 120"));
    // A filter that leaves fewer rows than fit: all of them, from the first.
    t.keys(&["/", "1000", "Enter"]);
    let pane = t.wait_for("filter 1000", EVENT, |p| p.contains("rows 1-9 of 9"));
    assert_eq!(ports(&pane), (10001..=10009).rev().map(|p| p.to_string()).collect::<Vec<_>>(), "{pane}");
}

#[test]
fn an_unreachable_exporter_is_an_error_line_and_top_recovers_when_it_answers() {
    if !tmux::available() {
        return;
    }
    let port = common::free_port();
    let t = top(&format!("http://127.0.0.1:{port}/metrics"), "");
    let pane = t.wait_for("the error line", Duration::from_secs(10), |p| p.contains("error: "));
    assert!(pane.contains("Connection refused") && pane.contains("retrying every 1s"), "{pane}");
    // It keeps retrying, and stays up.
    let pane = t.wait_for("still failing after 3 s", Duration::from_secs(10), |p| p.contains("failing for 3s"));
    assert!(!pane.contains("top exited"), "{pane}");
    let fake =
        Fake::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), &ROWS, Options { tls: None, authorization: None });
    let pane = t.wait_for("rows once the exporter answers", SETTLE, measured);
    assert!(!pane.contains("error: "), "the error line is gone:\n{pane}");
    drop(fake);
    t.keys(&["C-c"]);
    t.wait_for("Ctrl-C ends top", EVENT, |p| p.contains("top exited with 0"));
}

#[test]
fn sigterm_ends_top_and_gives_the_terminal_back() {
    if !tmux::available() {
        return;
    }
    let fake = Fake::start(&ROWS, Options { tls: None, authorization: None });
    let t = top(&fake.url("http"), "");
    t.wait_for("rows", SETTLE, |p| rows(p).len() == 4);
    let pid = nix::unistd::Pid::from_raw(t.command_pid());
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    let pane = t.wait_for("top ends on SIGTERM", EVENT, |p| p.contains("top exited with 0"));
    assert!(rows(&pane).is_empty(), "the alternate screen was left:\n{pane}");
    t.wait_for("the terminal out of raw mode", EVENT, |p| p.contains("terminal: cooked"));
}

#[test]
fn a_terminal_that_goes_away_ends_top() {
    if !tmux::available() {
        return;
    }
    let fake = Fake::start(&ROWS, Options { tls: None, authorization: None });
    let t = top(&fake.url("http"), "");
    t.wait_for("rows", SETTLE, |p| rows(p).len() == 4);
    let pid = t.command_pid();
    t.kill_server();
    // Gone, or a zombie waiting for its reaper; not spinning on a terminal that reads end-of-file.
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
    };
    let deadline = std::time::Instant::now() + EVENT;
    while state().is_some_and(|c| c != 'Z') {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            panic!("top (pid {pid}) still runs {EVENT:?} after its terminal went away");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ca.pem, and server.pem / client.pem signed by it.
fn pki(dir: &Path) {
    self_signed(dir, "ca", "hge-top-test-ca", &[]);
    issue(dir, "server", "hge-server", "serverAuth");
    issue(dir, "client", "hge-client", "clientAuth");
}

fn tls_config(dir: &Path, client_ca: bool) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let b =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let b = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        b.with_client_cert_verifier(v)
    } else {
        b.with_no_client_auth()
    };
    Arc::new(b.with_single_cert(certs, key).unwrap())
}

#[test]
fn https_with_a_ca_file_basic_auth_and_a_client_certificate() {
    if !tmux::available() {
        return;
    }
    if common::which("openssl").is_none() {
        assert!(!common::in_ci(), "the `openssl` command is missing (.ci/deps installs it)");
        eprintln!("SKIPPED: this test needs the `openssl` command");
        return;
    }
    let dir = TempDir::new("hgtop");
    let d = dir.path();
    pki(d);
    std::fs::write(d.join("password"), "s3cret pass\n").unwrap();
    std::fs::write(d.join("wrong"), "guess\n").unwrap();
    // base64("prometheus:s3cret pass")
    let basic = "Basic cHJvbWV0aGV1czpzM2NyZXQgcGFzcw==".to_string();
    let auth = Fake::start(&ROWS, Options { tls: Some(tls_config(d, false)), authorization: Some(basic.clone()) });
    let mtls = Fake::start(&ROWS, Options { tls: Some(tls_config(d, true)), authorization: None });
    let (ca, pw, wrong) = (d.join("ca.pem"), d.join("password"), d.join("wrong"));
    let (ca, pw, wrong) = (ca.display(), pw.display(), wrong.display());
    let user = "--basic-auth.username prometheus";
    let cert = format!("--tls.cert-file {0}/client.pem --tls.key-file {0}/client.key", d.display());
    // Several at once, each in its own tmux server.
    let good = top(&auth.url("https"), &format!("--tls.ca-file {ca} {user} --basic-auth.password-file {pw}"));
    let bad_password =
        top(&auth.url("https"), &format!("--tls.ca-file {ca} {user} --basic-auth.password-file {wrong}"));
    let no_ca = top(&auth.url("https"), &format!("{user} --basic-auth.password-file {pw}"));
    let insecure =
        top(&auth.url("https"), &format!("--tls.insecure-skip-verify {user} --basic-auth.password-file {pw}"));
    let with_cert = top(&mtls.url("https"), &format!("--tls.ca-file {ca} {cert}"));
    let without_cert = top(&mtls.url("https"), &format!("--tls.ca-file {ca}"));

    good.wait_for("rows over https with basic auth", SETTLE, measured);
    assert!(auth.authorizations.lock().unwrap().contains(&basic), "the fake never saw {basic}");
    let pane = bad_password.wait_for("401", SETTLE, |p| p.contains("error: "));
    assert!(pane.contains("HTTP 401 Unauthorized (check --basic-auth.username"), "{pane}");
    let pane = no_ca.wait_for("an unknown issuer", SETTLE, |p| p.contains("error: "));
    assert!(pane.contains("UnknownIssuer"), "{pane}");
    insecure.wait_for("rows without verifying", SETTLE, measured);
    with_cert.wait_for("rows with a client certificate", SETTLE, measured);
    let pane = without_cert.wait_for("no client certificate: refused", SETTLE, |p| p.contains("error: "));
    assert!(rows(&pane).is_empty(), "{pane}");
}

#[test]
fn bad_flags_and_unreadable_files_are_errors_before_the_terminal_is_taken() {
    let run = |args: &[&str]| {
        let out = Command::new(exporter_bin_with_top()).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (args, says) in [
        (&["top", "--url", "localhost:10114"][..], "--url"),
        (&["top", "--url", "http://prometheus:secret@localhost:10114/metrics"], "no credentials in the URL"),
        (&["top", "--interval", "10ms"], "100ms"),
        (&["top", "--basic-auth.username", "u"], "--basic-auth.password-file"),
        (&["top", "--tls.cert-file", "c.pem"], "--tls.key-file"),
        (&["top", "--tls.ca-file", "ca.pem", "--tls.insecure-skip-verify"], "cannot be used with"),
        (&["--check-config", "top"], "cannot be used with"),
        (&["top", "--basic-auth.username", "u", "--basic-auth.password-file", "/nonexistent/pw"], "/nonexistent/pw"),
        (&["top", "--tls.ca-file", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
    ] {
        let (ok, err) = run(args);
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("\x1b[?1049h"), "{args:?}: the alternate screen was entered");
    }
    let (ok, out) = {
        let o = Command::new(exporter_bin_with_top()).args(["top", "--help"]).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert!(ok && out.contains("http://localhost:10114/metrics"), "{out}");
    let _ = PERIOD;
}

/// `cargo run` and `cargo install --path .` make the daemon alone: `top` says
/// where the terminal program should be and what builds it.
#[test]
fn top_without_its_program_beside_the_daemon_says_what_builds_it() {
    let dir = TempDir::new("hgtop-alone");
    let alone = dir.path().join("http-golden-exporter");
    std::fs::copy(exporter_bin(), &alone).unwrap();
    let out = Command::new(&alone).args(["top", "--url", "http://127.0.0.1:1/metrics"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let missing = dir.path().join("http-golden-exporter-top");
    assert!(err.contains(&format!("running {}: No such file or directory", missing.display())), "{err}");
    assert!(err.contains("`cargo build --release --locked` builds it"), "{err}");
}

/// A steady load from the client namespace until dropped: every 100 ms four
/// GET /ok and one GET /fail on port 80 (50 requests/s, 20% 5xx), and GET /slow
/// on 8080 back to back (each answered after 0.3 s: 3.3 requests/s).
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(pair: &common::Pair) -> Load {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        let (ns, addr) = (pair.client_ns.clone(), format!("{}:80", common::SERVER_V4));
        let mut fast = common::netio::Client::new(&ns, &addr);
        let mut slow = common::netio::Client::new(&pair.client_ns, &format!("{}:8080", common::SERVER_V4));
        let s = stop.clone();
        threads.push(std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut tick = 0u32;
            while !s.load(Ordering::Relaxed) {
                for _ in 0..4 {
                    assert_eq!(fast.get("/ok"), 200);
                }
                // nginx closes the connection after a 500: a new one each time.
                assert_eq!(common::netio::Client::new(&ns, &addr).get("/fail"), 500);
                tick += 1;
                let next = start + Duration::from_millis(100) * tick;
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
            }
        }));
        let s = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                slow.get("/slow");
            }
        }));
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn the_real_exporter_with_nginx_traffic_shows_its_rates_errors_and_latency() {
    if !common::privileged(&["ip", "nginx"]) || !tmux::available() {
        return;
    }
    let pair = common::Pair::new();
    let _nginx = common::nginx::Nginx::start(&pair);
    let exp = common::Exporter::start(&pair.two_views("", None));
    let _load = Load::start(&pair);
    let t = top(&format!("http://127.0.0.1:{}/metrics", exp.port), "");
    // Both ends of the veth: target "server" sees nginx's side, target "client" the client's.
    // How many requests the load gets through a second depends on the machine; what it
    // sends does not: on port 80, /ok and /fail; on 8080, only /slow, answered no
    // sooner than 0.3 s, so never within the first eight buckets (0.25 s and below).
    let measured = |cell: &str| cell.parse::<f64>().is_ok_and(|v| v > 0.0);
    let some_errors = |cell: &str| cell.trim_end_matches('%').parse::<f64>().is_ok_and(|e| e > 0.0 && e < 100.0);
    let pane = t.wait_for("four rows, each with a rate, and 5xx among port 80's", SETTLE, |p| {
        let r = rows(p);
        r.len() == 4 && r.iter().all(|r| measured(&r[6]) && (r[3] != "80" || some_errors(&r[7])))
    });
    let ms = |cell: &str| -> f64 {
        let v = |s: &str, unit: f64| s.parse::<f64>().ok().map(|v| v * unit);
        let parsed = if let Some(x) = cell.strip_suffix("ms") {
            v(x, 1.0)
        } else if let Some(x) = cell.strip_suffix("µs") {
            v(x, 0.001)
        } else {
            cell.strip_suffix('s').and_then(|x| v(x, 1000.0))
        };
        parsed.unwrap_or_else(|| panic!("not a duration: {cell:?}\n{pane}"))
    };
    let mut seen = Vec::new();
    for r in rows(&pane) {
        seen.push(format!("{} {} {} {} {}", r[0], r[1], r[2], r[3], r[4]));
        if r[3] == "80" {
            // One request in five fails; over a window that cuts ticks, neither none nor all.
            let errors: f64 = r[7].trim_end_matches('%').parse().unwrap();
            assert!(errors > 0.0 && errors < 100.0, "both /ok and /fail seen:\n{pane}");
        } else {
            assert_eq!(r[7], "0.0%", "/slow never fails:\n{pane}");
            let (p50, p99) = (ms(&r[8]), ms(&r[9]));
            assert!(p50 > 250.0 && p99 >= p50, "every /slow response above 0.25 s:\n{pane}");
            // top asks for protobuf and takes the quantiles from the native
            // buckets (about 9% wide): the median is near 0.3 s. The classic
            // bucket (0.25 s, 0.5 s] would put it at 375 ms.
            assert!(p50 < 360.0, "the median from native buckets, not classic ones:\n{pane}");
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["client client - 80 GET", "client client - 8080 GET", "server server - 80 GET", "server server - 8080 GET"],
        "{pane}"
    );
    assert!(pane.contains("quantiles from native buckets"), "the status line says where quantiles come from:\n{pane}");
    if let Ok(path) = std::env::var("HG_SAVE_REAL_PANE") {
        std::fs::write(path, &pane).unwrap();
    }
}
