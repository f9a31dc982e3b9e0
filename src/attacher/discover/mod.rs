//! Discovery's one home: finding the network namespaces of containers,
//! services and other processes on the host, following them as they come and
//! go, naming them, and watching the interfaces inside them.
//!
//! - `scan`: one look at the namespace directories and at /proc.
//! - `watch`: a `Watcher` the attacher's poll loop owns (one fd, `drain()`).
//! - `name`: the `container` label, from the cgroup of a process in the
//!   namespace and the container runtimes' state files (`state`).
//! - `link_events`: interfaces appearing inside the namespaces found (rtnetlink).
//! - `driver`: the `[[discover]]` tables at work (`Discovery`), turning all
//!   of that into what the attacher does, through `Attach`.
//!
//! Discovery decides what and when; the attacher only attaches and lets go
//! (src/attacher/targets/discovered.rs implements `Attach`). Every namespace
//! file is opened by `netns::Netns::open`, which checks what it is.

use std::path::PathBuf;

use crate::netns::Netns;
use std::time::Duration;

mod driver;
pub(crate) mod link_events;
mod name;
mod scan;
mod state;
mod watch;

pub(crate) use driver::Discovery;
pub use name::{label, parse_cgroup, unescape_systemd, Label, Origin};
pub use scan::{enumerate, own_namespace, Scan};
pub use state::{docker_name, podman_name, read_bounded};
pub use watch::{Event, Watcher};

/// What discovery asks of the attacher: the one interface between the two.
pub(crate) trait Attach {
    /// Whether a running target already counts in namespace `ino`, or a
    /// configured one names its `file`: it is left to that one.
    fn covers(&self, ino: u64, file: Option<&std::path::Path>) -> bool;
    /// Attach `table`'s programs to a found namespace labelled `label`; its
    /// target id, or None while no interface matches.
    fn attach(
        &mut self,
        table: &hge_shared::config::Discover,
        netns: Netns,
        label: &str,
    ) -> anyhow::Result<Option<u16>>;
    /// Attach interfaces that appeared in found namespace `id`; true if any did.
    fn grow(&mut self, id: u16, table: &hge_shared::config::Discover, netns: Netns) -> anyhow::Result<bool>;
    /// Interfaces found namespace `id` still has attached.
    fn interfaces(&self, id: u16) -> usize;
    /// A better name for found namespace `id`.
    fn rename(&mut self, id: u16, label: &str);
    /// Let found namespace `id` go: programs detached, series removed.
    fn release(&mut self, id: u16);
}

/// Where runtimes and the kernel keep what discovery reads. Parameters so
/// tests can point them at fixture trees.
#[derive(Debug, Clone, PartialEq)]
pub struct Roots {
    /// procfs: /proc/PID/ns/net and /proc/PID/cgroup.
    pub proc: PathBuf,
    /// podman's (root) storage: overlay-containers/containers.json under it.
    pub podman: PathBuf,
    /// docker's data root: containers/ID/config.v2.json under it.
    pub docker: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots { proc: "/proc".into(), podman: "/var/lib/containers/storage".into(), docker: "/var/lib/docker".into() }
    }
}

/// What one `[[discover]]` table will ask for, once the config has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Directories whose files are bind-mounted network namespaces
    /// (ip netns, podman: /run/netns; docker: /run/docker/netns). Watched
    /// with inotify; one that does not exist yet is waited for.
    pub netns_dirs: Vec<PathBuf>,
    /// Also every namespace some process is in, found by scanning /proc
    /// every `scan_interval` (the kernel has no event for setns/unshare).
    pub processes: bool,
    pub scan_interval: Duration,
    pub roots: Roots,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            netns_dirs: vec!["/run/netns".into(), "/run/docker/netns".into()],
            processes: true,
            scan_interval: Duration::from_secs(1),
            roots: Roots::default(),
        }
    }
}

/// A network namespace's identity: the nsfs device and inode. The inode
/// alone is what `ip netns identify` and /proc/PID/ns/net show; the device
/// is the same for every namespace (one nsfs), kept so that a file of
/// another filesystem can never compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// Processes recorded per namespace: enough to read a cgroup from, and
/// bounded so a namespace shared by thousands of processes costs nothing.
pub const MAX_HOLDERS: usize = 4;

/// One network namespace other than the daemon's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub id: NsId,
    /// A path that opens it: the file in a netns dir if there is one (it
    /// outlives any process), else /proc/PID/ns/net of its first holder.
    pub path: PathBuf,
    /// The file in a netns dir that holds it, if any.
    pub file: Option<PathBuf>,
    /// Up to MAX_HOLDERS processes in it, lowest PIDs first.
    pub pids: Vec<u32>,
}

#[cfg(test)]
mod tests;
