//! Command-line flags, node_exporter style. Flags override the config file.
//! Parsed by the process that starts as root and becomes the attacher.

use std::path::PathBuf;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use hge_shared::config::{self, AttachMode};

#[derive(Debug, Parser)]
#[command(
    name = "http-golden-exporter",
    version,
    about = "HTTP/1 golden metrics (request rate, errors by status, latency) for every service on this host, from tc eBPF",
    long_about = None,
    // Without a subcommand it is the daemon; its flags do not mix with `top`.
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Path to the TOML config file. When the default path does not exist the
    /// built-in defaults are used; a path given here must exist.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Address to serve metrics on [default: :10114, or web.listen_address]
    #[arg(long = "web.listen-address", value_name = "ADDR", value_parser = listen_address)]
    pub listen_address: Option<String>,

    /// Path under which to expose metrics [default: /metrics, or web.telemetry_path]
    #[arg(long = "web.telemetry-path", value_name = "PATH", value_parser = telemetry_path)]
    pub telemetry_path: Option<String>,

    /// Maximum number of concurrent scrapes [default: 40, or web.max_requests]
    #[arg(long = "web.max-requests", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_requests: Option<u16>,

    /// Prometheus exporter-toolkit web config (YAML) for TLS, basic auth and
    /// response headers, re-read when it or its certificates change [default:
    /// none (plain HTTP), or web.config_file]
    #[arg(long = "web.config.file", value_name = "FILE", value_parser = web_config_file)]
    pub web_config_file: Option<PathBuf>,

    /// How to attach the tc programs [default: auto, or bpf.attach_mode]
    #[arg(long = "bpf.attach-mode", value_name = "MODE", value_enum)]
    pub attach_mode: Option<AttachMode>,

    /// Unprivileged user that serves metrics once everything is attached [default:
    /// http-golden-exporter, or nobody where it does not exist; or the config key user]
    #[arg(long = "user", value_name = "USER", value_parser = user)]
    pub user: Option<String>,

    /// Validate the config file, print what is wrong, and exit
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Remove tc filters left by a run that was killed (legacy tc mode), then exit
    #[arg(long = "cleanup", conflicts_with = "check_config")]
    pub cleanup: bool,

    /// Only log messages with the given severity or above
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live terminal view of a running exporter: request rate, 5xx share, p50
    /// and p99 per target, container, port and method (`top --help` lists its flags)
    #[command(disable_help_flag = true)]
    Top {
        /// Handed to http-golden-exporter-top, the program of the terminal view
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// The program `http-golden-exporter top` runs: the terminal view, a binary of
/// its own next to this one, so that the daemon links no terminal UI.
pub const TOP_PROGRAM: &str = "http-golden-exporter-top";

impl Cli {
    pub fn config_path(&self) -> (PathBuf, bool) {
        match &self.config_file {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(config::DEFAULT_PATH), false),
        }
    }

    /// Flags win over the file.
    pub fn apply(&self, cfg: &mut config::Config) {
        if let Some(a) = &self.listen_address {
            cfg.web.listen_address = a.clone();
        }
        if let Some(p) = &self.telemetry_path {
            cfg.web.telemetry_path = p.clone();
        }
        if let Some(n) = self.max_requests {
            cfg.web.max_requests = n as usize;
        }
        if let Some(f) = &self.web_config_file {
            cfg.web.config_file = Some(f.clone());
        }
        if let Some(m) = self.attach_mode {
            cfg.bpf.attach_mode = m;
        }
        if let Some(u) = &self.user {
            cfg.user = Some(u.clone());
        }
    }
}

fn listen_address(s: &str) -> Result<String, String> {
    config::parse_listen_address(s).map(|_| s.to_string())
}

fn telemetry_path(s: &str) -> Result<String, String> {
    config::valid_telemetry_path(s).map(|_| s.to_string())
}

fn web_config_file(s: &str) -> Result<PathBuf, String> {
    config::valid_web_config_file(s).map(|_| PathBuf::from(s))
}

fn user(s: &str) -> Result<String, String> {
    config::valid_user(s).map(|_| s.to_string())
}
