//! http-golden-exporter: packet -> bpf/ parser -> maps -> collector -> exposition.

pub mod attach;
pub mod bpf;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod ipc;
pub mod maps;
pub mod metrics;
pub mod privsep;
pub mod web;
