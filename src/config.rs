//! The TOML config file: every key, its default and its validation.
//!
//! Validation happens while deserializing wherever possible, so that toml's
//! error carries the line, column and key of the offending value.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/http-golden-exporter/config.toml";
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Fixed by the BPF histogram layout (HG_MAX_BUCKETS in bpf/http_golden.h).
pub const MAX_BUCKETS: usize = 30;
/// Fixed by HG_MAX_PORTS in bpf/http_golden.h.
pub const MAX_PORTS: usize = 64;
/// target_id is a u16 in the BPF keys.
pub const MAX_TARGETS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unprivileged user that serves /metrics. None: the packaged
    /// `http-golden-exporter`, or `nobody` where that user does not exist.
    #[serde(default, deserialize_with = "user")]
    pub user: Option<String>,
    #[serde(default)]
    pub web: Web,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub bpf: Bpf,
    #[serde(default, rename = "target", deserialize_with = "targets")]
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    #[serde(deserialize_with = "listen_address")]
    pub listen_address: String,
    #[serde(deserialize_with = "telemetry_path")]
    pub telemetry_path: String,
    /// Concurrent scrapes served at once; more get 503 (node_exporter's --web.max-requests).
    #[serde(deserialize_with = "max_requests")]
    pub max_requests: usize,
}

impl Default for Web {
    fn default() -> Self {
        Web { listen_address: ":10114".into(), telemetry_path: "/metrics".into(), max_requests: 40 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusLabel {
    Class,
    Code,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    #[serde(deserialize_with = "interval")]
    pub scrape_interval: Duration,
    #[serde(deserialize_with = "buckets")]
    pub buckets: Vec<f64>,
    pub status_label: StatusLabel,
    #[serde(deserialize_with = "max_series")]
    pub max_series: u32,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            scrape_interval: Duration::from_secs(5),
            buckets: DEFAULT_BUCKETS.to_vec(),
            status_label: StatusLabel::Class,
            max_series: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX links where the kernel has them (6.6+), else tc clsact filters.
    Auto,
    /// TCX links only; fail where the kernel lacks them.
    Tcx,
    /// Legacy clsact + cls_bpf direct-action filters.
    Tc,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::Tcx => "tcx",
            AttachMode::Tc => "tc",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bpf {
    pub attach_mode: AttachMode,
    /// Connections tracked at once (LRU): beyond it the least recently used flow is forgotten.
    #[serde(deserialize_with = "flow_table_size")]
    pub flow_table_size: u32,
}

impl Default for Bpf {
    fn default() -> Self {
        Bpf { attach_mode: AttachMode::Auto, flow_table_size: 65_536 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(deserialize_with = "label_value")]
    pub name: String,
    #[serde(deserialize_with = "interfaces")]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub netns: Option<PathBuf>,
    #[serde(default, deserialize_with = "ports")]
    pub ports: Vec<u16>,
    /// Set only on the built-in target: `interfaces` are those up, minus loopback.
    #[serde(skip)]
    pub up_non_loopback: bool,
}

impl Target {
    /// The built-in target: every interface of the host namespace that is up, but loopback.
    pub fn host_default() -> Target {
        Target { name: "host".into(), interfaces: vec!["*".into()], netns: None, ports: vec![], up_non_loopback: true }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user: None,
            web: Web::default(),
            metrics: Metrics::default(),
            bpf: Bpf::default(),
            targets: vec![Target::host_default()],
        }
    }
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Config {
    pub fn parse(text: &str, origin: &Path) -> Result<Config, Error> {
        let mut cfg: Config = toml::from_str(text)
            .map_err(|e| Error(format!("{}: {}", origin.display(), e.to_string().trim_end())))?;
        if cfg.targets.is_empty() {
            cfg.targets.push(Target::host_default());
        }
        Ok(cfg)
    }

    /// `explicit` is false when the path is the default one: then a missing file
    /// means "run on built-in defaults", as a fresh install expects.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                log::info!("no config file at {}: using built-in defaults", path.display());
                Ok(Config::default())
            }
            Err(e) => Err(Error(format!("reading config file {}: {e}", path.display()))),
        }
    }
}

fn invalid<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(msg)
}

fn user<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    valid_user(&s).map_err(invalid)?;
    Ok(Some(s))
}

/// A user name as passwd(5) can hold it: no empty name, separators or whitespace.
pub fn valid_user(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || s.contains([':', '/']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("user {s:?} is not a valid user name"));
    }
    Ok(())
}

fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    crate::web::parse_listen_address(&s).map_err(invalid)?;
    Ok(s)
}

fn telemetry_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with('/') || s == "/" || s.contains(char::is_whitespace) {
        return Err(invalid(format!(
            "telemetry_path must be an absolute path other than \"/\" without spaces, got {s:?}"
        )));
    }
    Ok(s)
}

fn max_requests<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    if !(1..=10_000).contains(&n) {
        return Err(invalid(format!("max_requests must be between 1 and 10000, got {n}")));
    }
    Ok(n as usize)
}

fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s)
        .map_err(|e| invalid(format!("scrape_interval {s:?} is not a duration like \"5s\" or \"200ms\": {e}")))?;
    if v < Duration::from_millis(100) || v > Duration::from_secs(3600) {
        return Err(invalid(format!("scrape_interval must be between 100ms and 1h, got {s:?}")));
    }
    Ok(v)
}

fn buckets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<f64>::deserialize(d)?;
    if v.is_empty() || v.len() > MAX_BUCKETS {
        return Err(invalid(format!("buckets must hold 1 to {MAX_BUCKETS} bounds, got {}", v.len())));
    }
    for (i, b) in v.iter().enumerate() {
        // One nanosecond is the resolution of the kernel clock we bucket with.
        if !b.is_finite() || *b < 1e-9 || *b > 3600.0 {
            return Err(invalid(format!("bucket bound {b} must be a number of seconds in [1e-9, 3600]")));
        }
        if i > 0 && seconds_to_ns(*b) <= seconds_to_ns(v[i - 1]) {
            return Err(invalid(format!(
                "buckets must be strictly increasing: {} follows {}",
                b,
                v[i - 1]
            )));
        }
    }
    Ok(v)
}

pub fn seconds_to_ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

fn max_series<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    if !(1..=1_000_000).contains(&n) {
        return Err(invalid(format!("max_series must be between 1 and 1000000, got {n}")));
    }
    Ok(n as u32)
}

fn flow_table_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    if !(64..=16_777_216).contains(&n) {
        return Err(invalid(format!("flow_table_size must be between 64 and 16777216, got {n}")));
    }
    Ok(n as u32)
}

fn label_value<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(invalid(format!(
            "target name must be 1 to 128 printable characters, got {s:?}"
        )));
    }
    Ok(s)
}

fn interfaces<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.is_empty() {
        return Err(invalid("interfaces must name at least one interface or glob"));
    }
    for name in &v {
        // IFNAMSIZ is 16 including the NUL.
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
            return Err(invalid(format!("{name:?} is not a valid interface name or glob")));
        }
        glob::Pattern::new(name).map_err(|e| invalid(format!("bad interface glob {name:?}: {e}")))?;
    }
    Ok(v)
}

fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let v = Vec::<i64>::deserialize(d)?;
    if v.len() > MAX_PORTS {
        return Err(invalid(format!("at most {MAX_PORTS} ports per target, got {}", v.len())));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(v.len());
    for p in v {
        if !(1..=65535).contains(&p) {
            return Err(invalid(format!("port {p} is not in 1..65535")));
        }
        if !seen.insert(p) {
            return Err(invalid(format!("port {p} is listed twice")));
        }
        out.push(p as u16);
    }
    Ok(out)
}

fn targets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Target>, D::Error> {
    let v = Vec::<Target>::deserialize(d)?;
    if v.len() > MAX_TARGETS {
        return Err(invalid(format!("at most {MAX_TARGETS} targets, got {}", v.len())));
    }
    let mut names = HashSet::new();
    for t in &v {
        if !names.insert(t.name.as_str()) {
            return Err(invalid(format!("target name {:?} is used twice", t.name)));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_the_built_in_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../config.example.toml");
        let cfg = parse(text).unwrap();
        assert_eq!(cfg.web.listen_address, ":10114");
        assert_eq!(cfg.metrics.buckets, DEFAULT_BUCKETS);
        assert!(!cfg.targets.is_empty());
    }

    #[test]
    fn full_config_round_trips_every_key() {
        let cfg = parse(
            r#"
            user = "metrics"
            [web]
            listen_address = "127.0.0.1:9999"
            telemetry_path = "/m"
            max_requests = 3
            [metrics]
            scrape_interval = "200ms"
            buckets = [0.1, 0.2]
            status_label = "code"
            max_series = 50
            [bpf]
            attach_mode = "tc"
            flow_table_size = 1024
            [[target]]
            name = "web"
            interfaces = ["veth*", "eth0"]
            netns = "/run/netns/web"
            ports = [80, 8080]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.user.as_deref(), Some("metrics"));
        assert_eq!(cfg.web.listen_address, "127.0.0.1:9999");
        assert_eq!(cfg.web.max_requests, 3);
        assert_eq!(cfg.metrics.scrape_interval, Duration::from_millis(200));
        assert_eq!(cfg.metrics.status_label, StatusLabel::Code);
        assert_eq!(cfg.bpf.attach_mode, AttachMode::Tc);
        assert_eq!(cfg.targets[0].netns.as_deref(), Some(Path::new("/run/netns/web")));
        assert_eq!(cfg.targets[0].ports, vec![80, 8080]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_line_and_key() {
        let e = parse("[metrics]\nscrape_interval = \"5s\"\nbukets = [1.0]\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("bukets"), "{e}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let cases = [
            ("[metrics]\nbuckets = [0.5, 0.1]\n", "strictly increasing"),
            ("[metrics]\nbuckets = []\n", "1 to 30"),
            ("[metrics]\nscrape_interval = \"soon\"\n", "not a duration"),
            ("[metrics]\nscrape_interval = \"1ms\"\n", "between 100ms"),
            ("[metrics]\nstatus_label = \"both\"\n", "class"),
            ("[metrics]\nmax_series = 0\n", "max_series"),
            ("[web]\nlisten_address = \"nowhere\"\n", "listen"),
            ("[web]\ntelemetry_path = \"metrics\"\n", "absolute"),
            ("[[target]]\nname = \"a\"\ninterfaces = []\n", "at least one"),
            ("[[target]]\nname = \"a\"\ninterfaces = [\"eth0\"]\nports = [0]\n", "port 0"),
            ("[[target]]\nname = \"a\"\ninterfaces = [\"eth0\"]\nports = [80, 80]\n", "twice"),
            ("[[target]]\nname = \"\"\ninterfaces = [\"eth0\"]\n", "target name"),
            ("[bpf]\nattach_mode = \"xdp\"\n", "auto"),
            ("user = \"a b\"\n", "not a valid user name"),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?} gave {e}");
            assert!(e.contains("line "), "{text:?} gave no line: {e}");
        }
    }

    #[test]
    fn duplicate_target_names_are_rejected() {
        let e = parse(
            "[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[target]]\nname = \"a\"\ninterfaces = [\"y\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_missing_named_file_is_an_error() {
        let p = Path::new("/nonexistent/http-golden-exporter.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        assert!(Config::load(p, true).unwrap_err().to_string().contains("reading config file"));
    }
}
