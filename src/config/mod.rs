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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            scrape_interval: Duration::from_secs(5),
            buckets: DEFAULT_BUCKETS.to_vec(),
            status_label: StatusLabel::Class,
            max_series: 10_000,
            max_series_per_target: None,
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
    /// Series each target may hold in each aggregate map, so that no target
    /// (and no stranger choosing ports) can fill the maps for the others.
    pub fn series_budget(&self) -> u32 {
        let even = self.metrics.max_series.div_ceil(self.targets.len().max(1) as u32);
        self.metrics.max_series_per_target.unwrap_or(even).min(self.metrics.max_series)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Config, Error> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| Error(format!("{}: {}", origin.display(), e.to_string().trim_end())))?;
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
    fn the_example_config_shows_exactly_the_defaults() {
        // It says "the values shown are the defaults": hold it to that.
        let text = include_str!("../../config.example.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
    }

    #[test]
    fn every_key_of_a_full_config_is_read() {
        let cfg = parse(
            r#"
            user = "metrics"
            [web]
            listen_address = "127.0.0.1:9999"
            telemetry_path = "/m"
            max_requests = 3
            config_file = "/etc/hge/web.yml"
            max_connections = 100
            read_header_timeout = "2s"
            idle_timeout = "1m"
            write_timeout = "500ms"
            [metrics]
            scrape_interval = "200ms"
            buckets = [0.1, 0.2]
            status_label = "code"
            max_series = 50
            max_series_per_target = 20
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
        let want = Config {
            user: Some("metrics".into()),
            web: Web {
                listen_address: "127.0.0.1:9999".into(),
                telemetry_path: "/m".into(),
                max_requests: 3,
                config_file: Some(PathBuf::from("/etc/hge/web.yml")),
                max_connections: 100,
                read_header_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(60),
                write_timeout: Duration::from_millis(500),
            },
            metrics: Metrics {
                scrape_interval: Duration::from_millis(200),
                buckets: vec![0.1, 0.2],
                status_label: StatusLabel::Code,
                max_series: 50,
                max_series_per_target: Some(20),
            },
            bpf: Bpf { attach_mode: AttachMode::Tc, flow_table_size: 1024 },
            targets: vec![Target {
                name: "web".into(),
                interfaces: vec!["veth*".into(), "eth0".into()],
                netns: Some(PathBuf::from("/run/netns/web")),
                ports: vec![80, 8080],
                up_non_loopback: false,
            }],
        };
        assert_eq!(cfg, want);
        // None of the values above is a default, so no key can pass by being ignored.
        let d = Config::default();
        assert!(cfg.user != d.user && cfg.web.listen_address != d.web.listen_address);
        assert!(cfg.web.telemetry_path != d.web.telemetry_path && cfg.web.max_requests != d.web.max_requests);
        assert!(cfg.web.config_file != d.web.config_file && cfg.web.max_connections != d.web.max_connections);
        assert!(cfg.web.read_header_timeout != d.web.read_header_timeout && cfg.web.idle_timeout != d.web.idle_timeout);
        assert!(cfg.web.write_timeout != d.web.write_timeout);
        assert!(cfg.metrics.scrape_interval != d.metrics.scrape_interval && cfg.metrics.buckets != d.metrics.buckets);
        assert!(cfg.metrics.status_label != d.metrics.status_label && cfg.metrics.max_series != d.metrics.max_series);
        assert!(cfg.metrics.max_series_per_target != d.metrics.max_series_per_target);
        assert!(cfg.bpf.attach_mode != d.bpf.attach_mode && cfg.bpf.flow_table_size != d.bpf.flow_table_size);
    }

    #[test]
    fn the_series_budget_is_shared_evenly_unless_set() {
        let two = "[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[target]]\nname = \"b\"\ninterfaces = [\"y\"]\n";
        assert_eq!(parse("").unwrap().series_budget(), 10_000, "one target: all of it");
        assert_eq!(parse(two).unwrap().series_budget(), 5_000);
        assert_eq!(parse(&format!("[metrics]\nmax_series_per_target = 7000\n{two}")).unwrap().series_budget(), 7_000);
        let capped = format!("[metrics]\nmax_series = 100\nmax_series_per_target = 7000\n{two}");
        assert_eq!(parse(&capped).unwrap().series_budget(), 100, "never above max_series");
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
            ("[web]\nconfig_file = \"\"\n", "config_file"),
            ("[web]\nmax_connections = 1\n", "max_connections"),
            ("[web]\nwrite_timeout = \"0s\"\n", "between 100ms"),
            ("[[target]]\nname = \"a\"\ninterfaces = []\n", "at least one"),
            ("[[target]]\nname = \"a\"\ninterfaces = [\"eth0\"]\nports = [0]\n", "port 0"),
            ("[[target]]\nname = \"a\"\ninterfaces = [\"eth0\"]\nports = [80, 80]\n", "twice"),
            ("[[target]]\nname = \"\"\ninterfaces = [\"eth0\"]\n", "target name"),
            ("[bpf]\nattach_mode = \"xdp\"\n", "auto"),
            ("user = \"a b\"\n", "not a valid user name"),
            ("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nnetns = \"run/netns/a\"\n", "absolute path"),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?} gave {e}");
            assert!(e.contains("line "), "{text:?} gave no line: {e}");
        }
    }

    #[test]
    fn duplicate_target_names_are_rejected() {
        let e =
            parse("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[target]]\nname = \"a\"\ninterfaces = [\"y\"]\n")
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
