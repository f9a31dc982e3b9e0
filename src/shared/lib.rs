//! What the attacher and the exporter share: the configuration both read, the
//! vocabulary of targets and attachments (`topology`), the layouts of the
//! maps' keys and values (`abi`) and the typed snapshot they decode into
//! (`snapshot`), the messages between the two processes (`ipc`), and the
//! users and capabilities each runs with (`privsep`). docs/architecture.md has
//! the module map.

pub mod abi;
pub mod config;
pub mod ipc;
pub mod native;
pub mod privsep;
pub mod routes;
pub mod snapshot;
pub mod topology;
