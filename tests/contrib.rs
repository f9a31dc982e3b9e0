//! contrib/: the Prometheus rules and the Grafana dashboard. promtool checks
//! and unit-tests the rules; every metric and label they and the dashboard
//! name is checked against what the exporter's own code writes (the collector
//! rendering a made-up map read, and a real scrape when run as root); every
//! dashboard query, its Grafana variables substituted, goes through promtool
//! as a recording rule.

mod common;
#[path = "contrib/promql.rs"]
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hge_exporter::collector::Exposition;
use hge_shared::config::StatusLabel;
use hge_shared::snapshot::{Histogram, Method, Role, SeriesKey, Snapshot};
use hge_shared::topology::Topology;
use serde_json::{json, Value};
use serde_norway::Value as Yaml;

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: &[&str] = &["instance", "job"];

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib")
}

/// Files directly in `dir` whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *{suffix} in {}", dir.display());
    v
}

fn rule_files() -> Vec<PathBuf> {
    files(&contrib().join("prometheus"), ".yml")
}

fn dashboard() -> Value {
    let path = contrib().join("grafana/http-golden-exporter.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// promtool, or None (outside CI, with a message) where it is not installed.
fn promtool() -> Option<PathBuf> {
    let found = common::which("promtool");
    if found.is_none() {
        let msg = "this test needs the `promtool` command (Debian package prometheus; .ci/deps installs it)";
        assert!(!common::in_ci(), "{msg} (CI=true: it must run)");
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// Runs promtool; Err with everything it said when it fails.
fn run_promtool(promtool: &Path, args: &[&str], files: &[PathBuf]) -> Result<String, String> {
    let out = Command::new(promtool).args(args).args(files).output().expect("running promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("promtool {} failed ({}):\n{text}", args.join(" "), out.status))
    }
}

// ---------------------------------------------------------------------------
// What the exporter exports.

/// Every sample name the exporter writes (`_bucket`, `_sum`, `_count` of
/// histograms included) with its label names: the collector's own text for a
/// map read holding a server and a client series of each family, one attached
/// program and one discover table, as the daemon would hand it over; rendered
/// under both `metrics.status_label` settings (`status_class` and
/// `status_code` on the duration histograms), since the rules and the
/// dashboard must work with either.
fn exported() -> &'static BTreeMap<String, BTreeSet<String>> {
    static E: OnceLock<BTreeMap<String, BTreeSet<String>>> = OnceLock::new();
    E.get_or_init(|| {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // The status in a map key: the class digit, or the whole code.
        for (status_label, status) in [(StatusLabel::Class, 5), (StatusLabel::Code, 503)] {
            let text = render(status_label, status);
            for sample in hge_top::expo::samples(&text) {
                let sample = sample.unwrap_or_else(|e| panic!("the rendered exposition: {e}"));
                let names = sample.labels.iter().map(|(k, _)| k.to_string());
                out.entry(sample.name.to_string()).or_default().extend(names);
            }
            for family in ["http_server_requests_total", "http_client_request_duration_seconds_bucket"] {
                assert!(
                    out.get(family).is_some_and(|l| l.contains("container") && l.contains("route")),
                    "the made-up read exports no {family} with container and route:\n{text}"
                );
            }
            assert!(out.contains_key("http_golden_exporter_discovered_namespaces"), "{text}");
        }
        for family in ["http_server_request_duration_seconds_count", "http_client_request_duration_seconds_bucket"] {
            for label in ["status_class", "status_code"] {
                assert!(out[family].contains(label), "the made-up reads export no {family} with {label}: {out:?}");
            }
        }
        out
    })
}

/// The collector's text for the made-up map read, its duration histograms'
/// series keyed with `status`.
fn render(status_label: StatusLabel, status: u16) -> String {
    let exp = Exposition::new(vec![0.1, 0.25], status_label, 100);
    // From JSON: a field the topology gains later keeps its default here.
    let topology: Topology = serde_json::from_value(json!({
        "targets": [
            {"id": 1, "name": "web", "interfaces": [{"ifindex": 7, "name": "eth0"}]},
            {"id": 2, "name": "containers", "container": "shop", "interfaces": [{"ifindex": 7, "name": "eth0"}],
             "routes": ["/users/{id}"]},
        ],
        "attached": [
            {"target": "web", "interface": "eth0", "direction": "ingress", "mode": "tcx"},
            {"target": "containers", "container": "shop", "interface": "eth0", "direction": "egress", "mode": "tc"},
        ],
        "discovery": [{"name": "containers", "namespaces": 1, "limit_reached": 0}],
        "programs": [{"name": "hg_parse_ingress", "verified_instructions": 40000}],
    }))
    .expect("a topology");
    exp.set_topology(&topology);
    let mut snap = Snapshot::default();
    for target_id in [1, 2] {
        for role in [Role::Server, Role::Client] {
            // Target 2 has routes: its series carry the first.
            let route = u8::from(target_id == 2);
            let key = |status| SeriesKey { target_id, ifindex: 7, role, port: 80, method: Method::Get, status, route };
            snap.requests.push((key(0), 2));
            snap.latency.push((
                key(status),
                Histogram { buckets: vec![1, 1, 0], sum_ns: 200_000_000, count: 2, ..Default::default() },
            ));
        }
    }
    exp.record_read(Ok(snap), Duration::ZERO).expect("a good read");
    String::from_utf8(exp.render().concat()).unwrap()
}

/// `up`, which Prometheus writes for every scrape target; and, where it
/// ingests native histograms (from protobuf, which the text above does not
/// show), each latency family as one series under the family's own name, with
/// its `_count`'s labels.
fn synthetic() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = [("up".to_string(), BTreeSet::new())].into();
    for side in ["server", "client"] {
        let family = format!("http_{side}_request_duration_seconds");
        out.insert(family.clone(), exported()[&format!("{family}_count")].clone());
    }
    out
}

/// One rule of the rules files.
struct Rule {
    file: PathBuf,
    alert: bool,
    name: String,
    expr: String,
    /// Label names its `labels:` add.
    adds: Vec<String>,
}

fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for file in rule_files() {
        let doc: Yaml = serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for group in doc["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                let alert = rule.get("alert").is_some();
                let name = rule.get(if alert { "alert" } else { "record" }).and_then(Yaml::as_str).unwrap();
                let adds = rule
                    .get("labels")
                    .and_then(Yaml::as_mapping)
                    .map(|m| m.keys().filter_map(Yaml::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                let expr = rule["expr"].as_str().unwrap().to_string();
                out.push(Rule { file: file.clone(), alert, name: name.to_string(), expr, adds });
            }
        }
    }
    out
}

/// Whatever `expr` (from `whence`) names that is neither exported nor in `more`.
fn unknown_names(whence: &str, expr: &str, more: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let exported = exported();
    let known = |m: &str| exported.get(m).or_else(|| more.get(m));
    let mut all_labels: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    all_labels.extend(exported.values().chain(more.values()).flatten().map(String::as_str));
    let names = promql::names(expr);
    let mut bad = Vec::new();
    for m in &names.metrics {
        if known(m).is_none() {
            bad.push(format!("{whence}: metric {m} is not exported (nor recorded) in\n{expr}"));
        }
    }
    for (m, label) in &names.matchers {
        let Some(labels) = known(m) else { continue };
        // A recorded series keeps labels of the series it was made from.
        let ok = if exported.contains_key(m) {
            labels.contains(label) || TARGET_LABELS.contains(&label.as_str())
        } else {
            all_labels.contains(label.as_str())
        };
        if !ok {
            bad.push(format!("{whence}: {m} has no label {label:?} ({labels:?}) in\n{expr}"));
        }
    }
    for label in &names.grouping {
        if !all_labels.contains(label.as_str()) {
            bad.push(format!("{whence}: no series has the label {label:?} it groups by, in\n{expr}"));
        }
    }
    bad
}

// ---------------------------------------------------------------------------
// The rules.

#[test]
fn every_rules_file_passes_promtool_check_rules() {
    let Some(promtool) = promtool() else { return };
    let files = rule_files();
    assert!(files.len() >= 2, "recording rules and alerts: {files:?}");
    for f in &files {
        let out = run_promtool(&promtool, &["check", "rules", "--lint=all", "--lint-fatal"], std::slice::from_ref(f))
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}", out.trim());
    }
}

#[test]
fn the_rule_unit_tests_pass_and_show_each_alert_firing_and_not() {
    let Some(promtool) = promtool() else { return };
    let tests = files(&contrib().join("prometheus/tests"), ".yml");
    let out = run_promtool(&promtool, &["test", "rules"], &tests).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", out.trim());
    // For each alert: the cases expecting it to fire, and those expecting silence.
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in &tests {
        let doc: Yaml = serde_norway::from_str(&std::fs::read_to_string(t).unwrap()).unwrap();
        for test in doc["tests"].as_sequence().expect("tests") {
            for case in test.get("alert_rule_test").and_then(Yaml::as_sequence).into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_string();
                let firing = case.get("exp_alerts").and_then(Yaml::as_sequence).is_some_and(|a| !a.is_empty());
                let e = cases.entry(name).or_default();
                if firing {
                    e.0 += 1
                } else {
                    e.1 += 1
                }
            }
        }
    }
    let alerts: Vec<String> = rules().into_iter().filter(|r| r.alert).map(|r| r.name).collect();
    assert!(alerts.len() >= 8, "alerts: {alerts:?}");
    for a in &alerts {
        let (firing, silent) = cases.get(a).copied().unwrap_or_default();
        assert!(firing > 0, "no unit test shows {a} firing (contrib/prometheus/tests)");
        assert!(silent > 0, "no unit test shows {a} not firing (contrib/prometheus/tests)");
    }
    for name in cases.keys() {
        assert!(alerts.contains(name), "a unit test expects {name}, which no rules file defines");
    }
}

#[test]
fn the_rules_name_only_exported_or_recorded_metrics_and_labels() {
    let mut more = synthetic();
    let rules = rules();
    let added: BTreeSet<String> = rules.iter().flat_map(|r| r.adds.clone()).collect();
    for r in rules.iter().filter(|r| !r.alert) {
        more.insert(r.name.clone(), added.clone());
    }
    let bad: Vec<String> = rules
        .iter()
        .flat_map(|r| unknown_names(&format!("{}: {}", r.file.display(), r.name), &r.expr, &more))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

// ---------------------------------------------------------------------------
// The dashboard.

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p.get("panels").and_then(Value::as_array).into_iter().flatten());
    }
    out
}

fn variables(dash: &Value) -> &Vec<Value> {
    dash["templating"]["list"].as_array().expect("templating.list")
}

/// A template variable's PromQL: `label_values(SELECTOR, label)` gives the
/// selector, a query variable's other PromQL is kept whole.
fn variable_query(v: &Value) -> Option<String> {
    if v["type"] != "query" {
        return None;
    }
    let q = v["query"].get("query").unwrap_or(&v["query"]).as_str().expect("a query variable's query");
    Some(match q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
        Some(args) => args.rsplit_once(',').map_or(args, |(selector, _label)| selector).trim().to_string(),
        None => q.to_string(),
    })
}

/// Every PromQL expression of the dashboard, as (where, text with Grafana's
/// variables): panel targets and query variables.
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for (i, t) in p.get("targets").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {:?} target {i} has no expr", p["title"]));
            out.push((format!("panel {:?} target {i}", p["title"].as_str().unwrap_or("")), expr.to_string()));
        }
    }
    for v in variables(dash) {
        if let Some(q) = variable_query(v) {
            out.push((format!("variable {}", v["name"]), q));
        }
    }
    out
}

/// `expr` once for each value of the dashboard's custom variables, every
/// variable replaced by valid PromQL (`.*` for the query ones, whose
/// selectors all match with `=~`; a duration for Grafana's intervals).
fn substitute(dash: &Value, expr: &str) -> Vec<String> {
    let mut out = vec![expr.to_string()];
    let mut names: Vec<(String, Vec<String>)> =
        ["__rate_interval", "__interval", "__range"].iter().map(|n| (n.to_string(), vec!["5m".to_string()])).collect();
    for v in variables(dash) {
        let name = v["name"].as_str().unwrap().to_string();
        let values = match v["type"].as_str() {
            Some("custom") => {
                v["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap().into()).collect()
            }
            _ => vec![".*".to_string()],
        };
        names.push((name, values));
    }
    // Longest first: $__rate_interval before $__range... and $view before $v.
    names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, values) in &names {
        out = out
            .into_iter()
            .flat_map(|e| {
                let used = e.contains(&format!("${{{name}}}")) || e.contains(&format!("${name}"));
                let values = if used { values.clone() } else { vec![String::new()] };
                values.into_iter().map(move |v| e.replace(&format!("${{{name}}}"), &v).replace(&format!("${name}"), &v))
            })
            .collect();
    }
    out
}

#[test]
fn the_dashboard_has_the_datasource_variable_and_the_filters() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "schemaVersion {}", dash["schemaVersion"]);
    let vars = variables(&dash);
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).unwrap_or_else(|| panic!("no variable {n}"));
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for n in ["instance", "target", "container", "port", "route"] {
        let v = var(n);
        assert_eq!(v["type"], "query", "{n}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "variable {n}");
        // "All" must also match series without the label (static targets have no
        // container, targets without routes no route).
        assert_eq!(v["allValue"], ".*", "{n}");
    }
    let (mut rows, mut with_queries) = (Vec::new(), 0);
    for p in panels(&dash) {
        if p["type"] == "row" {
            rows.push(p["title"].as_str().unwrap().to_string());
            continue;
        }
        with_queries += 1;
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {:?}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {:?}", p["title"]);
        }
    }
    assert!(panels(&dash).iter().any(|p| p["type"] == "heatmap"), "a latency heatmap");
    for row in ["Traffic", "Errors", "Latency", "Exporter health"] {
        assert!(rows.iter().any(|r| r.starts_with(row)), "no row {row:?} in {rows:?}");
    }
    assert!(with_queries >= 10, "{with_queries} panels");
}

#[test]
fn the_dashboard_names_only_exported_metrics_and_labels() {
    let dash = dashboard();
    let queries = dashboard_queries(&dash);
    let mut bad = Vec::new();
    let mut used = BTreeSet::new();
    for (whence, expr) in &queries {
        for e in substitute(&dash, expr) {
            used.extend(promql::names(&e).metrics);
            bad.extend(unknown_names(whence, &e, &synthetic()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    // The health row shows what the issue asks for.
    for m in [
        "http_golden_exporter_attached",
        "http_golden_exporter_series",
        "http_golden_exporter_series_dropped_total",
        "http_golden_exporter_map_read_duration_seconds",
        "http_golden_exporter_framing_lost_total",
        "http_golden_exporter_flows_evicted_total",
        "http_golden_exporter_requests_not_local_total",
        "http_golden_exporter_discovered_namespaces",
        "http_server_request_duration_seconds_bucket",
        "http_client_requests_total",
    ] {
        assert!(used.contains(m), "the dashboard shows no {m}");
    }
}

#[test]
fn every_dashboard_query_parses_with_promtool() {
    let Some(promtool) = promtool() else { return };
    let dash = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for (whence, expr) in dashboard_queries(&dash) {
        for e in substitute(&dash, &expr) {
            n += 1;
            let quoted = serde_json::to_string(&e).unwrap(); // a JSON string is a YAML string
            rules.push_str(&format!("      # {whence}\n      - record: dashboard:query{n}\n        expr: {quoted}\n"));
        }
    }
    let dir = common::TempDir::new("hgcontrib");
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let out = run_promtool(&promtool, &["check", "rules"], &[path]).unwrap_or_else(|e| panic!("{e}\n{rules}"));
    assert!(out.contains(&format!("{n} rules found")), "{out}");
}

// ---------------------------------------------------------------------------
// The list of exported names, against the daemon.

#[test]
fn a_real_scrape_has_no_family_the_rendered_list_lacks() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = common::Pair::new();
    let exporter = common::Exporter::start(&pair.two_views("", None));
    let text = exporter.scrape().text;
    let families: BTreeSet<&str> = hge_top::expo::types(&text).map(|(name, _)| name).collect();
    let exported = exported();
    assert!(families.contains("http_golden_exporter_attached"), "{text}");
    for f in &families {
        assert!(
            exported.contains_key(*f) || exported.contains_key(&format!("{f}_count")),
            "the daemon exports {f}, which the collector's text in this test lacks"
        );
    }
}

#[test]
fn the_golden_exposition_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/exposition.prom");
    let text = std::fs::read(&golden).unwrap();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running promtool");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &text).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics on {}:\n{said}", golden.display());
}
