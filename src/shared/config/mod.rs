//! The TOML config file: every key and its default (validation in validate.rs).
//!
//! A leaf: nothing here imports the rest of the program. Validation happens
//! while deserializing wherever possible, so that toml's error carries the
//! line, column and key of the offending value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod validate;

pub use validate::{parse_listen_address, seconds_to_ns, valid_telemetry_path, valid_user, valid_web_config_file};

pub const DEFAULT_PATH: &str = "/etc/http-golden-exporter/config.toml";
pub const DEFAULT_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Limits the layout of the maps fixes (bpf/http_golden.h).
pub use crate::abi::{MAX_BUCKETS, MAX_PORTS, MAX_TARGETS};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unprivileged user that serves /metrics. None: the packaged
    /// `http-golden-exporter`, or `nobody` where that user does not exist.
    #[serde(default, deserialize_with = "validate::user")]
    pub user: Option<String>,
    #[serde(default)]
    pub web: Web,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub bpf: Bpf,
    #[serde(default, rename = "target", deserialize_with = "validate::targets")]
    pub targets: Vec<Target>,
    #[serde(default, rename = "discover")]
    pub discover: Vec<Discover>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    #[serde(deserialize_with = "validate::listen_address")]
    pub listen_address: String,
    #[serde(deserialize_with = "validate::telemetry_path")]
    pub telemetry_path: String,
    /// Concurrent scrapes served at once, counted until the response is sent;
    /// more get 503 (node_exporter's --web.max-requests).
    #[serde(deserialize_with = "validate::max_requests")]
    pub max_requests: usize,
    /// exporter-toolkit web config (TLS, basic auth, headers); None: plain HTTP.
    #[serde(deserialize_with = "validate::web_config_file")]
    pub config_file: Option<PathBuf>,
    /// Open connections at most; past it the longest-idle one is closed.
    #[serde(deserialize_with = "validate::max_connections")]
    pub max_connections: usize,
    /// From accept (or the first byte of a keep-alive request) to the end of the request head.
    #[serde(deserialize_with = "validate::web_timeout")]
    pub read_header_timeout: Duration,
    /// A keep-alive connection waiting for its next request is closed after this.
    #[serde(deserialize_with = "validate::web_timeout")]
    pub idle_timeout: Duration,
    /// From the end of the request head to the last byte of the response.
    #[serde(deserialize_with = "validate::web_timeout")]
    pub write_timeout: Duration,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen_address: ":10114".into(),
            telemetry_path: "/metrics".into(),
            max_requests: 40,
            config_file: None,
            max_connections: 1024,
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(30),
        }
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
    #[serde(deserialize_with = "validate::interval")]
    pub scrape_interval: Duration,
    #[serde(deserialize_with = "validate::buckets")]
    pub buckets: Vec<f64>,
    pub status_label: StatusLabel,
    #[serde(deserialize_with = "validate::max_series")]
    pub max_series: u32,
    /// Series one target may hold in each map. None: max_series shared evenly
    /// among the targets configured at start (see `Config::series_budget`).
    #[serde(deserialize_with = "validate::max_series_per_target")]
    pub max_series_per_target: Option<u32>,
    /// Native (exponential) buckets counted in the kernel besides the classic ones.
    pub native_histograms: bool,
    /// 2^native_schema native buckets per doubling of latency.
    #[serde(deserialize_with = "validate::native_schema")]
    pub native_schema: u8,
    /// Latencies at or under it go to the native zero bucket.
    #[serde(deserialize_with = "validate::native_zero_threshold")]
    pub native_zero_threshold: Duration,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            scrape_interval: Duration::from_secs(5),
            buckets: DEFAULT_BUCKETS.to_vec(),
            status_label: StatusLabel::Class,
            max_series: 10_000,
            max_series_per_target: None,
            native_histograms: true,
            native_schema: 3,
            native_zero_threshold: Duration::from_micros(1),
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
    #[serde(deserialize_with = "validate::flow_table_size")]
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
    #[serde(deserialize_with = "validate::label_value")]
    pub name: String,
    #[serde(deserialize_with = "validate::interfaces")]
    pub interfaces: Vec<String>,
    #[serde(default, deserialize_with = "validate::netns")]
    pub netns: Option<PathBuf>,
    #[serde(default, deserialize_with = "validate::ports")]
    pub ports: Vec<u16>,
    /// Path templates, first match wins: the `route` label (src/shared/routes.rs).
    #[serde(default, deserialize_with = "validate::routes")]
    pub routes: Vec<String>,
    /// Set only on the built-in target: `interfaces` are those up, minus loopback.
    #[serde(skip)]
    pub up_non_loopback: bool,
}

impl Target {
    /// The built-in target: every interface of the host namespace that is up, but loopback.
    pub fn host_default() -> Target {
        Target {
            name: "host".into(),
            interfaces: vec!["*".into()],
            netns: None,
            ports: vec![],
            routes: vec![],
            up_non_loopback: true,
        }
    }
}

/// Network namespaces found rather than named: each one found becomes a
/// target of its own, labelled `target = name` and `container = ` who holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    #[serde(deserialize_with = "validate::label_value")]
    pub name: String,
    /// Directories whose files are network namespaces (watched with inotify).
    #[serde(default = "default_netns_dirs", deserialize_with = "validate::netns_dirs")]
    pub netns_dirs: Vec<PathBuf>,
    /// Also every namespace a process is in (/proc, scanned every second).
    #[serde(default = "yes")]
    pub processes: bool,
    /// Globs inside each namespace; empty: every interface but loopback.
    #[serde(default, deserialize_with = "validate::interfaces")]
    pub interfaces: Vec<String>,
    #[serde(default, deserialize_with = "validate::ports")]
    pub ports: Vec<u16>,
    /// Path templates for every namespace found, as a target's `routes`.
    #[serde(default, deserialize_with = "validate::routes")]
    pub routes: Vec<String>,
    /// Namespaces attached at most; more are counted and left alone.
    #[serde(default = "default_max_namespaces", deserialize_with = "validate::max_namespaces")]
    pub max_namespaces: u32,
}

fn default_netns_dirs() -> Vec<PathBuf> {
    vec!["/run/netns".into(), "/run/docker/netns".into()]
}

fn yes() -> bool {
    true
}

fn default_max_namespaces() -> u32 {
    512
}

impl Discover {
    /// The built-in discovery: every namespace in the usual directories or
    /// held by a process, every interface but loopback, target "containers".
    pub fn containers_default() -> Discover {
        Discover {
            name: "containers".into(),
            netns_dirs: default_netns_dirs(),
            processes: true,
            interfaces: vec![],
            ports: vec![],
            routes: vec![],
            max_namespaces: default_max_namespaces(),
        }
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
            discover: vec![Discover::containers_default()],
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
    /// Series each target may hold in each aggregate map, so that no target
    /// (and no stranger choosing ports) can fill the maps for the others.
    /// Each discovered namespace gets this budget too; a `[[discover]]` table
    /// counts as one target in the even share.
    pub fn series_budget(&self) -> u32 {
        let even = self.metrics.max_series.div_ceil((self.targets.len() + self.discover.len()).max(1) as u32);
        self.metrics.max_series_per_target.unwrap_or(even).min(self.metrics.max_series)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Config, Error> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| Error(format!("{}: {}", origin.display(), e.to_string().trim_end())))?;
        if cfg.targets.is_empty() && cfg.discover.is_empty() {
            cfg.discover.push(Discover::containers_default());
        }
        if cfg.targets.is_empty() {
            cfg.targets.push(Target::host_default());
        }
        validate::names_once(&cfg).map_err(|e| Error(format!("{}: {e}", origin.display())))?;
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

#[cfg(test)]
mod tests;
