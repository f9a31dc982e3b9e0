//! Finding the network namespaces of containers, services and other
//! processes on the host, following them as they come and go, and naming
//! them (issue 11). Userspace only: what to attach where is the daemon's.
//!
//! - `scan`: one look at the namespace directories and at /proc.
//! - `watch`: a `Watcher` the attacher's poll loop owns (one fd, `drain()`).
//! - `name`: the `container` label, from the cgroup of a process in the
//!   namespace and the container runtimes' state files (`state`).
//!
//! Imports nothing of the program: the config fills `Settings` later, and
//! the attacher turns what is found into targets.

use std::path::PathBuf;
use std::time::Duration;

mod name;
mod scan;
mod state;
mod watch;

pub use name::{label, parse_cgroup, unescape_systemd, Label, Origin};
pub use scan::{enumerate, own_namespace, Scan};
pub use state::{docker_name, podman_name, read_bounded};
pub use watch::{Event, Watcher};

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
