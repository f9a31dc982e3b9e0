//! The unprivileged exporter process: forked by the attacher with the listen
//! socket and read-only map descriptors, it drops every privilege, then reads
//! the maps (`maps`) into the exposition (`collector`) and serves it (`web`).
//! Nothing it depends on loads programs, writes maps or enters namespaces.
//! docs/architecture.md has the module map.

pub mod collector;
pub mod maps;
mod process;
pub mod web;

pub use process::{main, FAIL_READS_ENV};
