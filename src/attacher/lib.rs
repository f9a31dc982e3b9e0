//! The privileged side of http-golden-exporter: start-up before the fork
//! (`start`), then the attacher process, which keeps the programs attached
//! (`event_loop`, `targets`, `attach`, `netns`), finds namespaces
//! (`discover`), and watches the exporter it forked (`child`). The BPF
//! skeleton, its loader and the maps' writers are here too (`bpf`): nothing of
//! it is reachable from the exporter crate. docs/architecture.md has the
//! module map.

pub mod attach;
pub mod bpf;
mod child;
pub mod cli;
pub mod discover;
mod event_loop;
pub mod netns;
pub mod reload;
pub mod start;
mod state;
mod targets;
