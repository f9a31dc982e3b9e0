//! The three formats of /metrics, negotiated from Accept as client_golang does
//! (src/exporter/web/negotiate.rs): the classic text, OpenMetrics text 1.0 and
//! delimited protobuf. Against the real exporter with nginx traffic in a test
//! namespace: protobuf and OpenMetrics carry every family, series and value of
//! the text of the same map read; auth and gzip hold for each; and a real
//! Prometheus 2.42 (Debian's) gets exact counts in protobuf (native histograms
//! on, which makes it ask for protobuf first) and in OpenMetrics (without).
//! Everything listens on 127.0.0.1 or inside the namespaces the test makes.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::nginx::{curl, Nginx, SLEEPS_MS};
use common::{free_port, Exporter, Metrics, Pair, Proc, TempDir, SERVER_V4};
use hge_exporter::collector::pb;
use hge_shared::native::boundary_ns_exact;

const TOOLS: &[&str] = &["ip", "nginx", "curl", "gzip", "prometheus", "promtool"];

const PROTO: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
const OM: &str = "application/openmetrics-text;version=1.0.0";
const PROTO_TYPE: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
const OM_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn config(pair: &Pair, interval: &str) -> String {
    format!(
        "[metrics]\nscrape_interval = \"{interval}\"\n[[target]]\nname = \"web\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
        pair.server_if,
        Pair::netns_path(&pair.server_ns)
    )
}

struct Response {
    status: u16,
    /// Lower-cased.
    headers: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }
}

/// GET /metrics over HTTP/1.0 with these request headers; the body as bytes.
fn get(port: u16, headers: &[(&str, &str)]) -> Response {
    try_get(port, headers).expect("scraping the exporter")
}

fn try_get(port: u16, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n".to_string();
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(Response { status, headers: head, body: all[split + 4..].to_vec() })
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut p = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = p.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `promtool check metrics` on `text`: Ok, or every problem it reported.
fn promtool(text: &str) -> Result<(), Vec<String>> {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        return Ok(());
    }
    Err(said.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect())
}

type Series = (String, BTreeMap<String, String>);

/// The samples the text format would write for these families: counters and
/// gauges as they are, histograms as `_bucket` (with `le`, +Inf from the
/// count), `_sum` and `_count`.
fn samples_of(families: &[pb::MetricFamily]) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for f in families {
        for m in &f.metric {
            let labels: BTreeMap<String, String> =
                m.label.iter().map(|l| (l.name().to_string(), l.value().to_string())).collect();
            let with = |suffix: &str, extra: Option<String>| {
                let mut l = labels.clone();
                if let Some(le) = extra {
                    l.insert("le".into(), le);
                }
                (format!("{}{suffix}", f.name()), l)
            };
            match f.r#type() {
                pb::MetricType::Counter => out.push((with("", None), m.counter.clone().unwrap().value())),
                pb::MetricType::Gauge => out.push((with("", None), m.gauge.clone().unwrap().value())),
                pb::MetricType::Histogram => {
                    let h = m.histogram.clone().unwrap();
                    for b in &h.bucket {
                        out.push((with("_bucket", Some(b.upper_bound().to_string())), b.cumulative_count() as f64));
                    }
                    out.push((with("_bucket", Some("+Inf".into())), h.sample_count() as f64));
                    out.push((with("_sum", None), h.sample_sum()));
                    out.push((with("_count", None), h.sample_count() as f64));
                }
                other => panic!("{}: the exporter has no {other:?}", f.name()),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn samples_of_text(m: &Metrics) -> Vec<(Series, f64)> {
    let mut out: Vec<(Series, f64)> = m.samples.iter().map(|(n, l, v)| ((n.clone(), l.clone()), *v)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Process metrics describe the exporter as it runs (CPU, memory): the same
/// series, not the same values, from one scrape to the next.
fn fixed(samples: Vec<(Series, f64)>) -> (Vec<Series>, Vec<(Series, u64)>) {
    let series = samples.iter().map(|(s, _)| s.clone()).collect();
    let values = samples.into_iter().filter(|((n, _), _)| !n.starts_with("process_")).map(|(s, v)| (s, v.to_bits()));
    (series, values.collect())
}

fn reads(m: &Metrics) -> f64 {
    m.sum("http_golden_exporter_map_reads_total", &[])
}

fn traffic(pair: &Pair) -> u64 {
    let mut urls = Vec::new();
    for (path, n) in [("/ok", 30), ("/missing", 7), ("/fail", 3)] {
        urls.extend((0..n).map(|_| format!("http://{SERVER_V4}{path}")));
    }
    curl(pair, &urls);
    urls.len() as u64
}

#[test]
fn protobuf_and_openmetrics_carry_every_series_and_value_of_the_text_of_one_read() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let before_start = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
    let exp = Exporter::start(&config(&pair, "2s"));
    let sent = traffic(&pair);
    assert_eq!(nginx.requests().len() as u64, sent);
    let m = exp.scrape_until(Duration::from_secs(20), |m| {
        m.sum("http_server_requests_total", &[]) == sent as f64
            && m.sum("http_server_request_duration_seconds_count", &[]) == sent as f64
    });
    assert_eq!(m.sum("http_server_requests_total", &[]), sent as f64, "{}", m.text);

    // Text, protobuf, OpenMetrics, text again: when both texts show the same
    // number of map reads, the four answers are of one read.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (text, proto, om) = loop {
        let t1 = get(exp.port, &[]);
        let p = get(exp.port, &[("Accept", PROTO)]);
        let o = get(exp.port, &[("Accept", OM)]);
        let t2 = get(exp.port, &[]);
        let (m1, m2) = (
            Metrics::parse(&String::from_utf8(t1.body.clone()).unwrap()),
            Metrics::parse(&String::from_utf8(t2.body).unwrap()),
        );
        if reads(&m1) == reads(&m2) {
            break (t1, p, o);
        }
        assert!(Instant::now() < deadline, "never four scrapes within one map read");
    };
    for (r, want) in [(&text, TEXT_TYPE), (&proto, PROTO_TYPE), (&om, OM_TYPE)] {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(&want.to_ascii_lowercase()[..]), "{}", r.headers);
        assert_eq!(r.header("vary"), Some("accept, accept-encoding"), "{}", r.headers);
    }
    let text = Metrics::parse(&String::from_utf8(text.body).unwrap());

    // Protobuf, decoded with the exporter's own messages: every family, series and value of the text.
    let families = pb::decode_delimited(&proto.body).expect("a delimited protobuf body");
    let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
    for family in ["http_server_requests_total", "http_server_request_duration_seconds", "process_cpu_seconds_total"] {
        assert!(names.contains(&family), "{family} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("http_golden_exporter_")), "{names:?}");
    let (text_series, text_values) = fixed(samples_of_text(&text));
    let (pb_series, pb_values) = fixed(samples_of(&families));
    assert_eq!(pb_series, text_series, "protobuf and text differ in their series");
    assert_eq!(pb_values, text_values, "protobuf and text differ in their values");
    let in_text = |name: &str| text.samples.iter().filter(|(n, _, _)| n == name).count();
    let requests = families.iter().find(|f| f.name() == "http_server_requests_total").unwrap();
    assert_eq!(requests.metric.len(), in_text("http_server_requests_total"));
    let total: f64 = requests.metric.iter().map(|m| m.counter.clone().unwrap().value()).sum();
    assert_eq!(total, sent as f64);

    // OpenMetrics: the text's samples, each counter and histogram with its _created, and # EOF.
    let om = String::from_utf8(om.body).unwrap();
    // promtool reads the classic text: it passes that, and of OpenMetrics it
    // fails only what the classic text lacks: `\"` escaped in a HELP (a parse
    // error to it), and _total and _created samples of a family named without
    // them (families of their own to it, with no HELP). Prometheus's
    // OpenMetrics parser reads it in the test below.
    promtool(&text.text).unwrap_or_else(|said| panic!("promtool check metrics on the text: {said:?}"));
    let said = promtool(&om).expect_err("promtool has learnt OpenMetrics: check it here");
    for line in &said {
        let only_om = match line.strip_suffix(" no help text") {
            Some(name) => name.ends_with("_total") || name.ends_with("_created"),
            None => line
                .strip_prefix("error while linting: text format parsing error in line ")
                .and_then(|l| l.strip_suffix(": invalid escape sequence '\\\"'"))
                .and_then(|n| om.lines().nth(n.parse::<usize>().ok()? - 1))
                .is_some_and(|l| l.starts_with("# HELP ") && l.contains("\\\"")),
        };
        assert!(only_om, "promtool on OpenMetrics: {line}\n{om}");
    }
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE http_server_requests counter\n"), "{om}");
    let om_metrics = Metrics::parse(&om);
    let now = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
    let (created, rest): (Vec<_>, Vec<_>) =
        om_metrics.samples.iter().cloned().partition(|(n, _, _)| n.ends_with("_created"));
    let (om_series, om_values) = fixed(samples_of_text(&Metrics { text: String::new(), samples: rest }));
    assert_eq!(om_series, text_series, "OpenMetrics and text differ in their series");
    assert_eq!(om_values, text_values, "OpenMetrics and text differ in their values");
    for (name, labels, _) in text
        .samples
        .iter()
        .filter(|(n, _, _)| n == "http_server_requests_total" || n == "http_server_request_duration_seconds_count")
    {
        let base = name.strip_suffix("_total").or_else(|| name.strip_suffix("_count")).unwrap();
        let c = created.iter().find(|(n, l, _)| *n == format!("{base}_created") && l == labels);
        let (_, _, t) = c.unwrap_or_else(|| panic!("no {base}_created for {labels:?} in\n{om}"));
        assert!(
            (before_start..=now).contains(t),
            "{base}_created {t} is not between the start {before_start} and now {now}"
        );
    }
    // Kept from read to read.
    let again = exp.scrape_until(Duration::from_secs(10), |m| reads(m) > reads(&text));
    assert!(reads(&again) > reads(&text));
    let om2 = Metrics::parse(&String::from_utf8(get(exp.port, &[("Accept", OM)]).body).unwrap());
    let created2: Vec<_> =
        om2.samples.into_iter().filter(|(n, _, _)| n.starts_with("http_server_") && n.ends_with("_created")).collect();
    let created1: Vec<_> = created.into_iter().filter(|(n, _, _)| n.starts_with("http_server_")).collect();
    assert_eq!(created2, created1, "a series' _created changed between reads");

    // The sizes and times at this series count (a few dozen series), for the record.
    for (what, accept) in [("text", None), ("protobuf", Some(PROTO)), ("openmetrics", Some(OM))] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let t = Instant::now();
        let n = (0..20).map(|_| get(exp.port, &headers).body.len()).max().unwrap();
        eprintln!("{what}: {n} bytes, {:?} a scrape", t.elapsed() / 20);
    }
}

#[test]
fn basic_auth_and_gzip_hold_for_every_format() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgfmt");
    let yml = dir.path().join("web.yml");
    let hash = bcrypt::hash("wonderland", 4).unwrap();
    std::fs::write(&yml, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), &yml] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // base64("alice:wonderland")
    let auth = ("Authorization", "Basic YWxpY2U6d29uZGVybGFuZA==");
    let exp = Exporter::launch(&format!("config_file = \"{}\"", yml.display()), &config(&pair, "1s"), &[], |port| {
        try_get(port, &[auth]).is_ok_and(|r| r.status == 200)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for (accept, want) in [(None, TEXT_TYPE), (Some(PROTO), PROTO_TYPE), (Some(OM), OM_TYPE)] {
        let mut h: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let refused = get(exp.port, &h);
        assert_eq!(refused.status, 401, "{accept:?} without credentials");
        assert!(refused.header("content-type").unwrap().starts_with("text/plain; charset"), "{}", refused.headers);
        h.push(auth);
        let plain = get(exp.port, &h);
        assert_eq!((plain.status, plain.header("content-type")), (200, Some(&want.to_ascii_lowercase()[..])));
        assert!(plain.header("content-encoding").is_none(), "{}", plain.headers);
        h.push(("Accept-Encoding", "gzip"));
        let zipped = get(exp.port, &h);
        assert_eq!((zipped.status, zipped.header("content-type")), (200, Some(&want.to_ascii_lowercase()[..])));
        assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{}", zipped.headers);
        let body = gunzip(&zipped.body);
        assert!(zipped.body.len() < body.len(), "{accept:?}: gzip made {} bytes of {}", zipped.body.len(), body.len());
        // The same families, plain or gzipped (values move: the process metrics).
        let family_names = |b: &[u8]| -> Vec<String> {
            if accept == Some(PROTO) {
                pb::decode_delimited(b).unwrap().iter().map(|f| f.name().to_string()).collect()
            } else {
                hge_top::expo::types(std::str::from_utf8(b).unwrap()).map(|(n, _)| n.to_string()).collect()
            }
        };
        let names = family_names(&body);
        assert_eq!(names, family_names(&plain.body), "{accept:?}");
        assert!(names.iter().any(|n| n.starts_with("process_")), "{accept:?}: {names:?}");
        if accept == Some(OM) {
            assert!(body.ends_with(b"# EOF\n"));
        }
    }
}

/// A Prometheus on loopback scraping the exporter every second; dropped, it stops.
struct Prometheus {
    _proc: Proc,
    port: u16,
    dir: TempDir,
}

impl Prometheus {
    fn start(exporter_port: u16, flags: &[&str]) -> Prometheus {
        Prometheus::with_rules(exporter_port, flags, None)
    }

    /// With a rules file too, evaluated every second.
    fn with_rules(exporter_port: u16, flags: &[&str], rules: Option<&std::path::Path>) -> Prometheus {
        let dir = TempDir::new("hgprom");
        let port = free_port();
        let rule_files = rules.map(|r| format!("rule_files: ['{}']\n", r.display())).unwrap_or_default();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}\
                 scrape_configs:\n  - job_name: hge\n\
                 \x20   static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        Prometheus { _proc: Proc::spawn(cmd, "prometheus"), port, dir }
    }

    /// The values of an instant query's result vector.
    fn query(&self, q: &str) -> Vec<f64> {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "--get", "--data-urlencode", &format!("query={q}")])
            .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        result.iter().filter_map(|r| r["value"][1].as_str()?.parse().ok()).collect()
    }

    /// Wait until `q` gives exactly `want`, or fail saying what Prometheus saw.
    fn wait_for(&self, q: &str, want: Vec<f64>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.query(q);
            if got == want {
                return;
            }
            if Instant::now() > deadline {
                let targets = Command::new("curl")
                    .arg("-s")
                    .arg(format!("http://127.0.0.1:{}/api/v1/targets", self.port))
                    .output()
                    .unwrap();
                panic!(
                    "{q}: {got:?}, not {want:?}\ntargets: {}\nlog: {}",
                    String::from_utf8_lossy(&targets.stdout),
                    std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn prometheus_gets_exact_counts_in_protobuf_with_native_histograms_and_in_openmetrics_without() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exp = Exporter::launch_args("", &config(&pair, "1s"), &["--log.level", "debug"], &[], |port| {
        common::http_get(port, "/metrics").is_ok_and(|r| r.0 == 200)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let sent = traffic(&pair) as f64;
    assert_eq!(nginx.requests().len() as f64, sent);
    let scrapes = |format: &str| exp.log().matches(&format!("scrape: {format}")).count();

    // Without the flag, 2.42 asks for OpenMetrics first: _created comes as series of its own.
    let om = Prometheus::start(exp.port, &[]);
    om.wait_for("sum(http_server_requests_total{job=\"hge\"})", vec![sent]);
    om.wait_for("sum(http_server_request_duration_seconds_count{job=\"hge\"})", vec![sent]);
    om.wait_for("sum(http_server_request_duration_seconds_bucket{job=\"hge\",le=\"+Inf\"})", vec![sent]);
    assert_eq!(om.query("count(http_server_requests_created{job=\"hge\"}) > 0").len(), 1);
    assert_eq!(om.query("up{job=\"hge\"}"), vec![1.0]);
    assert!(scrapes(OM_TYPE) > 0 && scrapes(PROTO_TYPE) == 0, "{}", exp.log());
    drop(om);
    // A scrape it had begun may still be logged.
    std::thread::sleep(Duration::from_millis(500));

    // With native histograms, it asks for protobuf: the same counts, the
    // latency histograms as native ones (2.42 keeps only those of a histogram
    // that has both).
    let before = scrapes(OM_TYPE);
    let proto = Prometheus::start(exp.port, &["--enable-feature=native-histograms"]);
    proto.wait_for("sum(http_server_requests_total{job=\"hge\"})", vec![sent]);
    proto.wait_for("histogram_count(sum(http_server_request_duration_seconds{job=\"hge\"}))", vec![sent]);
    assert_eq!(proto.query("up{job=\"hge\"}"), vec![1.0]);
    assert!(proto.query("http_golden_exporter_build_info{job=\"hge\"}") == vec![1.0]);
    assert!(proto.query("process_cpu_seconds_total{job=\"hge\"}").len() == 1, "the process metrics came too");
    assert!(scrapes(PROTO_TYPE) > 0, "Prometheus never asked for protobuf:\n{}", exp.log());
    assert_eq!(scrapes(OM_TYPE), before, "with native histograms, OpenMetrics was asked for again");
}

/// 40 requests answered after 5 ms, 30 after 20 ms, 25 after 45 ms, 5 after
/// 300 ms: the median (the 50th) among the 20 ms ones, the 99th percentile
/// among the 300 ms ones.
fn sleep_urls() -> Vec<String> {
    let mut urls = Vec::new();
    for (ms, n) in SLEEPS_MS.iter().zip([40, 30, 25, 5]) {
        urls.extend((0..n).map(|_| format!("http://{SERVER_V4}:8080/sleep/{ms}")));
    }
    urls
}

/// The true `q` quantile of `times` (seconds), as Prometheus ranks: the
/// smallest value with at least q * n values at or under it.
fn true_quantile(times: &[f64], q: f64) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let rank = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len());
    t[rank - 1]
}

/// The width in seconds of the schema's native bucket that holds `v` seconds.
fn bucket_width(schema: u8, v: f64) -> f64 {
    let per = f64::from(1u32 << schema);
    let k = (v.log2() * per).ceil() as i64;
    (boundary_ns_exact(schema, k) - boundary_ns_exact(schema, k - 1)) as f64 / 1e9
}

/// How far a quantile of the default schema (3) may be from nginx's `want`
/// seconds: the width of its bucket, and 1 ms, since nginx logs milliseconds.
fn within_a_bucket(want: f64) -> f64 {
    bucket_width(3, want) + 0.001
}

#[test]
fn prometheus_native_histograms_count_exactly_and_their_quantiles_fall_within_a_bucket() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    // The default schema (3) and zero threshold (1 µs).
    let exp = Exporter::start(&config(&pair, "1s"));
    let urls = sleep_urls();
    curl(&pair, &urls);
    let times = nginx.request_times();
    assert_eq!(times.len(), urls.len(), "nginx logged every request");
    let sent = urls.len() as f64;

    let prom = Prometheus::start(exp.port, &["--enable-feature=native-histograms"]);
    let latency = "sum(http_server_request_duration_seconds{job=\"hge\"})";
    prom.wait_for(&format!("histogram_count({latency})"), vec![sent]);
    for q in [0.5, 0.99] {
        let got = prom.query(&format!("histogram_quantile({q}, {latency})"));
        let want = true_quantile(&times, q);
        let tolerance = within_a_bucket(want);
        assert_eq!(got.len(), 1, "histogram_quantile({q}): {got:?}");
        assert!(
            (got[0] - want).abs() <= tolerance,
            "p{q}: Prometheus says {} s, nginx's log {want} s (one bucket: {tolerance} s)",
            got[0]
        );
        eprintln!("p{q}: Prometheus {} s, nginx {want} s, bucket width {} s", got[0], bucket_width(3, want));
    }
    // The native buckets, straight from the exporter: they add up to the count.
    let families = pb::decode_delimited(&get(exp.port, &[("Accept", PROTO)]).body).unwrap();
    let f = families.iter().find(|f| f.name() == "http_server_request_duration_seconds").unwrap();
    for m in &f.metric {
        let h = m.histogram.clone().unwrap();
        assert_eq!((h.schema(), h.zero_threshold()), (3, 1e-6));
        let mut n = 0i64;
        let total: i64 = h
            .positive_delta
            .iter()
            .map(|d| {
                n += d;
                n
            })
            .sum();
        assert_eq!(total as u64 + h.zero_count(), h.sample_count(), "{h:?}");
        let spans: u32 = h.positive_span.iter().map(|s| s.length()).sum();
        assert_eq!(spans as usize, h.positive_delta.len());
    }
}

/// contrib's native-histogram quantile rules, in a Prometheus that ingests
/// native histograms, over a window that holds a known set of nginx's
/// latencies: each recorded quantile within one bucket of nginx's log.
#[test]
fn the_native_quantile_recording_rules_fall_within_a_bucket_of_nginxs_latencies() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exp = Exporter::start(&config(&pair, "1s"));
    let urls = sleep_urls();
    // A first batch, all in Prometheus's first sample of the series: rate()
    // over the window then holds exactly the second batch.
    curl(&pair, &urls);
    let first = nginx.request_times().len();
    assert_eq!(first, urls.len());
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus/http-golden-exporter.rules.yml");
    let prom = Prometheus::with_rules(exp.port, &["--enable-feature=native-histograms"], Some(&rules));
    let count = "histogram_count(sum(http_server_request_duration_seconds{job=\"hge\"}))";
    prom.wait_for(count, vec![first as f64]);
    curl(&pair, &urls);
    prom.wait_for(count, vec![2.0 * first as f64]);
    let times = nginx.request_times()[first..].to_vec();
    assert_eq!(times.len(), urls.len());

    let recorded = "instance_target_container_port_method:http_server_request_duration_seconds:native_quantile_rate5m";
    for q in [0.5, 0.9, 0.99] {
        let want = true_quantile(&times, q);
        let tolerance = within_a_bucket(want);
        let query = format!("{recorded}{{job=\"hge\",target=\"web\",port=\"8080\",method=\"GET\",quantile=\"{q}\"}}");
        // The rule is evaluated every second: wait for an evaluation after the last scrape.
        let deadline = Instant::now() + Duration::from_secs(60);
        let got = loop {
            let got = prom.query(&query);
            if got.len() == 1 && (got[0] - want).abs() <= tolerance || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(got.len(), 1, "{query}: {got:?}");
        assert!(
            (got[0] - want).abs() <= tolerance,
            "{query}: {} s, nginx's log {want} s (one bucket: {tolerance} s)",
            got[0]
        );
        eprintln!("recorded p{q}: {} s, nginx {want} s, bucket width {} s", got[0], bucket_width(3, want));
    }
}

/// Prometheus refuses a native histogram whose count is not the sum of its
/// buckets, and the kernel's classic and native counts live in two maps read
/// one after the other. Scraped while requests keep coming, every histogram
/// still adds up, over protobuf, and its classic buckets never pass its count.
#[test]
fn under_traffic_every_native_histogram_adds_up_to_its_count_and_the_classic_stays_monotonic() {
    if !common::privileged(TOOLS) {
        return;
    }
    let pair = Pair::new();
    let _nginx = Nginx::start(&pair);
    let exp = Exporter::start(&config(&pair, "100ms"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, client_ns) = (stop.clone(), pair.client_ns.clone());
        std::thread::spawn(move || {
            let urls: Vec<String> = (0..200).map(|_| format!("http://{SERVER_V4}/ok")).collect();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut cmd: Command = Pair::cmd(&client_ns, "curl");
                cmd.args(["-s", "--max-time", "20"]);
                for u in &urls {
                    cmd.arg(u).args(["-o", "/dev/null"]);
                }
                let _ = cmd.status();
            }
        })
    };
    let mut checked = 0;
    let mut last_read = -1.0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while checked < 40 && Instant::now() < deadline {
        let families = pb::decode_delimited(&get(exp.port, &[("Accept", PROTO)]).body).unwrap();
        let read = families
            .iter()
            .find(|f| f.name() == "http_golden_exporter_map_reads_total")
            .and_then(|f| f.metric.first())
            .and_then(|m| m.counter.as_ref())
            .and_then(|c| c.value)
            .unwrap_or(-1.0);
        let Some(f) = families.iter().find(|f| f.name() == "http_server_request_duration_seconds") else {
            continue;
        };
        if read == last_read {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        last_read = read;
        for m in &f.metric {
            let h = m.histogram.clone().unwrap();
            let mut n = 0i64;
            let in_buckets: i64 = h
                .positive_delta
                .iter()
                .map(|d| {
                    n += d;
                    n
                })
                .sum();
            assert_eq!(in_buckets as u64 + h.zero_count(), h.sample_count(), "read {read}: {h:?}");
            for b in &h.bucket {
                assert!(b.cumulative_count() <= h.sample_count(), "read {read}: classic bucket over the count: {h:?}");
            }
        }
        checked += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(checked, 40, "40 map reads with latency series seen within 20 s");
}
