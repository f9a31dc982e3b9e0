//! The web endpoint with a web config file (exporter-toolkit format): TLS,
//! basic auth, client certificates, headers, re-reading on change; gzip
//! checked with curl and promtool; a real Prometheus scraping over TLS with
//! basic auth. Certificates are made with the openssl CLI in a temporary
//! directory; everything listens on 127.0.0.1 only.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{issue, self_signed};
use common::{free_port, http_get, Exporter, Pair, Proc, TempDir};

const TOOLS: &[&str] = &["ip", "curl", "openssl", "promtool", "prometheus", "gzip"];

fn target(pair: &Pair) -> String {
    format!(
        "[metrics]\nscrape_interval = \"1s\"\n[[target]]\nname = \"t\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
        pair.server_if,
        Pair::netns_path(&pair.server_ns)
    )
}

/// A CA, a certificate `name` it signs (server and client use), and the files
/// readable by the exporter's unprivileged user (as a deployment must make them).
fn pki(dir: &Path) {
    self_signed(dir, "ca", "hg-test-ca", &[]);
    issue(dir, "server", "hg-server-1", "serverAuth");
    issue(dir, "client", "hg-client", "clientAuth");
    // A client certificate no configured CA signed.
    self_signed(dir, "rogue", "rogue", &["-addext", "extendedKeyUsage=clientAuth"]);
    readable(dir);
}

fn readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Curl {
    code: u16,
    headers: String,
    body: String,
    stderr: String,
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "-D", "/dev/stderr", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("running curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Curl { code: code.trim().parse().unwrap_or(0), headers: stderr.to_ascii_lowercase(), body: body.into(), stderr }
}

fn url(port: u16, path: &str) -> String {
    format!("https://127.0.0.1:{port}{path}")
}

fn start(pair: &Pair, web_yml: &Path, ready_args: &[&str]) -> Exporter {
    let ready_args: Vec<String> = ready_args.iter().map(|s| s.to_string()).collect();
    Exporter::launch(&format!("config_file = \"{}\"", web_yml.display()), &target(pair), &[], move |port| {
        let mut a: Vec<&str> = ready_args.iter().map(String::as_str).collect();
        let u = url(port, "/metrics");
        a.push(&u);
        curl(&a).code == 200
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fetch with Accept-Encoding: gzip into a file, check the header, gunzip with
/// gzip(1), compare with what curl --compressed decodes, lint with promtool.
fn check_gzip(dir: &Path, auth: &[&str], u: &str) {
    let raw = dir.join("scrape.gz");
    let mut a = auth.to_vec();
    a.extend(["-H", "Accept-Encoding: gzip", "-o", raw.to_str().unwrap(), u]);
    let r = curl(&a);
    assert_eq!(r.code, 200, "{}", r.stderr);
    assert!(r.headers.contains("content-encoding: gzip"), "{}", r.headers);
    let out = Command::new("gzip").arg("-dc").arg(&raw).output().unwrap();
    assert!(out.status.success(), "gzip -dc: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("http_golden_exporter_build_info{"), "{text}");
    promtool_check(&text);
    let mut a = auth.to_vec();
    a.extend(["--compressed", u]);
    let r = curl(&a);
    assert_eq!(r.code, 200);
    assert!(r.body.contains("http_golden_exporter_build_info{") && r.body.contains("process_resident_memory_bytes"));
    // Without Accept-Encoding: identity.
    let mut a = auth.to_vec();
    a.push(u);
    let r = curl(&a);
    assert!(!r.headers.contains("content-encoding"), "{}", r.headers);
    assert!(r.body.contains("http_golden_exporter_build_info{"));
}

#[test]
fn tls_and_basic_auth_with_curl_gzip_and_a_real_prometheus() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgweb");
    pki(dir.path());
    let hash = bcrypt::hash("wonderland", 6).unwrap();
    // Relative paths are relative to the web config's directory.
    let yml = dir.path().join("web.yml");
    std::fs::write(
        &yml,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
        basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
    )
    .unwrap();
    readable(dir.path());
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let exp = start(&pair, &yml, &["--cacert", ca, "-u", "alice:wonderland"]);
    let port = exp.port;

    let ok = curl(&["--cacert", ca, "-u", "alice:wonderland", &url(port, "/metrics")]);
    assert_eq!(ok.code, 200);
    assert!(ok.body.contains("http_golden_exporter_build_info{"), "{}", ok.body);
    assert!(ok.headers.contains("x-frame-options: deny"), "{}", ok.headers);
    for (who, path) in
        [(None, "/metrics"), (Some("alice:wrong"), "/metrics"), (Some("bob:wonderland"), "/metrics"), (None, "/")]
    {
        let mut a = vec!["--cacert", ca];
        if let Some(w) = who {
            a.extend(["-u", w]);
        }
        let u = url(port, path);
        a.push(&u);
        let r = curl(&a);
        assert_eq!(r.code, 401, "{who:?} {path}: {}", r.headers);
        assert!(r.headers.contains("www-authenticate: basic"), "{}", r.headers);
        assert!(r.headers.contains("x-frame-options: deny"), "{}", r.headers);
    }
    let landing = curl(&["--cacert", ca, "-u", "alice:wonderland", &url(port, "/")]);
    assert_eq!(landing.code, 200);
    // Plain HTTP on the TLS port gets no HTTP answer at all.
    assert_eq!(http_get(port, "/metrics").map(|r| r.0).unwrap_or(0), 0, "plain HTTP on the TLS port");
    check_gzip(dir.path(), &["--cacert", ca, "-u", "alice:wonderland"], &url(port, "/metrics"));

    // A real Prometheus: scheme https, tls_config, basic_auth; it asks for gzip.
    let pdir = TempDir::new("hgprom");
    let pport = free_port();
    std::fs::write(
        pdir.path().join("prometheus.yml"),
        format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: hge\n    scheme: https\n\
         \x20   tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: alice\n      password: wonderland\n\
         \x20   static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let log = std::fs::File::create(pdir.path().join("prometheus.log")).unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", pdir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", pdir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _prom = Proc::spawn(cmd, "prometheus");
    let query = |q: &str| {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "--get", "--data-urlencode", &format!("query={q}")])
            .arg(format!("http://127.0.0.1:{pport}/api/v1/query"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let up = query("up{job=\"hge\"} == 1");
        let build = query("http_golden_exporter_build_info{job=\"hge\"}");
        if up.contains("\"value\"") && build.contains("\"value\":[") {
            break build;
        }
        if Instant::now() > deadline {
            let targets = Command::new("curl")
                .arg("-s")
                .arg(format!("http://127.0.0.1:{pport}/api/v1/targets"))
                .output()
                .unwrap();
            panic!(
                "Prometheus never scraped the exporter over TLS:\nup: {up}\nbuild: {build}\ntargets: {}\nlog: {}",
                String::from_utf8_lossy(&targets.stdout),
                std::fs::read_to_string(pdir.path().join("prometheus.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(answer.contains("\"1\""), "{answer}");
}

#[test]
fn a_client_certificate_is_required_when_client_auth_type_says_so() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgweb");
    pki(dir.path());
    let yml = dir.path().join("web.yml");
    std::fs::write(
        &yml,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
        \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS12\n\
        \x20 cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n",
    )
    .unwrap();
    readable(dir.path());
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let exp = start(&pair, &yml, &["--cacert", &ca, "--cert", &cert, "--key", &key]);
    let u = url(exp.port, "/metrics");
    let with = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &u]);
    assert_eq!(with.code, 200, "{}", with.stderr);
    // Refused in the handshake: no HTTP status at all (curl's 000), not an error page.
    let without = curl(&["--cacert", &ca, &u]);
    assert_eq!(without.code, 0, "no client certificate: {}", without.stderr);
    let (rc, rk) = (p("rogue.pem"), p("rogue.key"));
    let rogue = curl(&["--cacert", &ca, "--cert", &rc, "--key", &rk, &u]);
    assert_eq!(rogue.code, 0, "a certificate of another CA: {}", rogue.stderr);
    // TLS 1.2 with the one configured suite works; a suite not configured does not.
    let v12 = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, "--tls-max", "1.2", &u]);
    assert_eq!(v12.code, 200, "{}", v12.stderr);
    let other = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        &u,
    ]);
    assert_eq!(other.code, 0, "a cipher suite not configured: {}", other.stderr);
}

#[test]
fn certificates_rotate_without_restart_and_a_bad_file_keeps_the_last_good_one() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgweb");
    pki(dir.path());
    let yml = dir.path().join("web.yml");
    let hash = bcrypt::hash("pw", 4).unwrap();
    let good = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  u: {hash}\n"
    );

    // A bad file at start: one clear message, non-zero exit.
    std::fs::write(&yml, "tls_server_config:\n  cert_file: server.pem\n  key_file: nope.key\n").unwrap();
    readable(dir.path());
    let err = Exporter::launch(&format!("config_file = \"{}\"", yml.display()), &target(&pair), &[], |_| false)
        .err()
        .expect("a bad web config must stop the start");
    assert!(err.contains("exited with exit status: 1") && err.contains("reading key_file"), "{err}");

    std::fs::write(&yml, &good).unwrap();
    readable(dir.path());
    let ca = dir.path().join("ca.pem").to_str().unwrap().to_string();
    let exp = start(&pair, &yml, &["--cacert", &ca, "-u", "u:pw"]);
    let u = url(exp.port, "/metrics");
    let subject = || curl(&["-v", "--cacert", &ca, "-u", "u:pw", &u]);
    assert!(subject().stderr.contains("CN=hg-server-1"));

    // Rotate: a new key and certificate moved into place.
    let new = TempDir::new("hgrot");
    std::fs::copy(dir.path().join("ca.pem"), new.path().join("ca.pem")).unwrap();
    std::fs::copy(dir.path().join("ca.key"), new.path().join("ca.key")).unwrap();
    issue(new.path(), "server", "hg-server-2", "serverAuth");
    readable(new.path());
    std::fs::rename(new.path().join("server.key"), dir.path().join("server.key")).unwrap();
    std::fs::rename(new.path().join("server.pem"), dir.path().join("server.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = subject();
        if r.stderr.contains("CN=hg-server-2") && r.code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not served:\n{}\n{}", r.stderr, exp.log());
        std::thread::sleep(Duration::from_millis(300));
    }

    // A broken file: once the exporter has read it (and said so), the last
    // good config still serves (TLS, the new certificate, auth). The files are
    // checked when a request comes, at most once a second: scrapes until then.
    std::fs::write(&yml, "tls_server_config: [\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exp.log().contains("keeping the last good web config") {
        assert!(Instant::now() < deadline, "the bad file was never read:\n{}", exp.log());
        let _ = subject();
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = subject();
    assert_eq!(r.code, 200, "{}", r.stderr);
    assert!(r.stderr.contains("CN=hg-server-2"), "{}", r.stderr);
    assert_eq!(curl(&["--cacert", &ca, &u]).code, 401);
    let mut exp = exp;
    assert!(matches!(exp.proc.child.try_wait(), Ok(None)), "the exporter still runs:\n{}", exp.log());
    assert!(exp.log().lines().all(|l| !l.contains("panicked")), "{}", exp.log());
}

#[test]
fn without_a_web_config_plain_http_serves_gzip_and_identity() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgweb");
    let exp = Exporter::start(&target(&pair));
    check_gzip(dir.path(), &[], &format!("http://127.0.0.1:{}/metrics", exp.port));
}

#[test]
fn rate_limit_refuses_requests_beyond_its_burst_with_429() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgweb");
    let yml = dir.path().join("web.yml");
    // One token an hour: none comes back while the test runs.
    std::fs::write(&yml, "rate_limit:\n  interval: 1h\n  burst: 3\n").unwrap();
    readable(dir.path());
    // Ready at the first scrape answered 200: the first of the three tokens.
    let exp = Exporter::launch(&format!("config_file = \"{}\"", yml.display()), &target(&pair), &[], |port| {
        http_get(port, "/metrics").is_ok_and(|r| r.0 == 200)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(http_get(exp.port, "/metrics").unwrap().0, 200, "the second token");
    assert_eq!(http_get(exp.port, "/").unwrap().0, 200, "the third, on the landing page");
    for path in ["/metrics", "/"] {
        assert_eq!(http_get(exp.port, path).unwrap().0, 429, "{path}: beyond the burst");
    }
}

#[test]
fn what_rustls_lacks_is_refused_at_start_saying_so_and_tls_below_1_2_is_never_served() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgweb");
    pki(dir.path());
    let yml = dir.path().join("web.yml");
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    for (extra, says) in [
        ("  max_version: TLS11\n", "max_version TLS11: rustls implements TLS 1.2 and 1.3 only"),
        ("  max_version: TLS10\n", "max_version TLS10: rustls implements TLS 1.2 and 1.3 only"),
        (
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n",
            "cipher suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not supported by rustls (it has no CBC suites)",
        ),
        ("  curve_preferences: [CurveP521]\n", "curve CurveP521 is not supported by rustls"),
        ("  client_allowed_sans: [client.example]\n", "client_allowed_sans is not supported"),
    ] {
        std::fs::write(&yml, format!("{tls}{extra}")).unwrap();
        readable(dir.path());
        let err = Exporter::launch(&format!("config_file = \"{}\"", yml.display()), &target(&pair), &[], |_| false)
            .err()
            .unwrap_or_else(|| panic!("{extra:?} was accepted"));
        assert!(err.contains("exited with exit status: 1") && err.contains(says), "{extra:?}: {err}");
    }

    // A min_version below TLS 1.2 is served as TLS 1.2, with a warning; a TLS 1.1 client is refused by the server.
    std::fs::write(&yml, format!("{tls}  min_version: TLS10\n")).unwrap();
    readable(dir.path());
    let ca = dir.path().join("ca.pem").to_str().unwrap().to_string();
    let exp = start(&pair, &yml, &["--cacert", &ca]);
    assert!(exp.log().contains("min_version TLS10: rustls serves TLS 1.2 at least"), "{}", exp.log());
    assert_eq!(curl(&["--cacert", &ca, "--tls-max", "1.2", &url(exp.port, "/metrics")]).code, 200);
    // SECLEVEL=0 lets this openssl offer TLS 1.1 at all: the refusal is the
    // server's alert (handshake_failure: rustls shares no version, and no suite,
    // with a TLS 1.1 client), and nothing is negotiated.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", exp.port), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let refused = said.contains("alert handshake failure") || said.contains("alert protocol version");
    assert!(!out.status.success() && refused, "TLS 1.1 was not refused by the server:\n{said}");
    assert!(said.contains("Cipher is (NONE)"), "nothing negotiated:\n{said}");
}
