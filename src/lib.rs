//! http-golden-exporter: packet -> bpf/ parser -> maps -> collector -> exposition.
//!
//! Module map (docs/architecture.md has the whole picture):
//! - `config`, `topology`: leaves. What the user asked for; what is attached.
//! - `bpf`: the skeleton, its loader, the ABI shared with bpf/http_golden.h,
//!   and reading the maps into typed snapshots.
//! - `collector`: snapshots to Prometheus text; `web`: serves it.
//! - `privileged`: attach/detach, network namespaces, dropping privileges.
//! - `daemon`: start-up and fork, the attacher and exporter processes, their IPC.
//! - `discover`: network namespaces of containers and services, watched and named.
//! - `cli`: the command-line flags.
//! - `top`: the `top` subcommand, a terminal view of an exporter's metrics
//!   fetched over HTTP; it imports nothing of the daemon.

pub mod bpf;
pub mod cli;
pub mod collector;
pub mod config;
pub mod daemon;
pub mod discover;
pub mod privileged;
pub mod top;
pub mod topology;
pub mod web;
