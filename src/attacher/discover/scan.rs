//! One look at the network namespaces present: the files in the netns
//! directories and the namespaces of the processes in /proc, deduplicated by
//! identity, without the daemon's own.
//!
//! Cheap by design: a stat per file and per process (no open, no read) for
//! everything already a namespace; only files in the netns directories are
//! opened, to ask the kernel whether they are network namespaces.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Namespace, NsId, Settings, MAX_HOLDERS};
use crate::netns::Netns;

/// What one scan found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scan {
    /// Sorted by identity.
    pub namespaces: Vec<Namespace>,
    /// Files in a netns directory that are not a namespace (yet): `ip netns
    /// add` creates the file before it bind-mounts the namespace on it, and
    /// a mount makes no inotify event, so the watcher looks again shortly.
    pub pending: Vec<PathBuf>,
    /// Processes whose namespace could not be read (EACCES: another user's
    /// process without CAP_SYS_PTRACE, or hidden by ProtectProc=).
    pub unreadable: usize,
    /// Directories that could not be listed, other than missing ones.
    pub errors: Vec<String>,
}

fn id_of(meta: &std::fs::Metadata) -> NsId {
    NsId { dev: meta.dev(), ino: meta.ino() }
}

/// The namespace discovery leaves out: the daemon's own (/proc/self, not
/// /proc/1). It is the one the static host target already covers, so
/// attaching it again would count its requests twice; and PID 1 may not
/// even be visible to the daemon (ProtectProc=invisible hides it from a
/// non-root attacher). Where the daemon runs in a namespace other than
/// init's, init's is then discovered like any other.
pub fn own_namespace() -> Result<NsId> {
    let meta = std::fs::metadata("/proc/self/ns/net").context("stat /proc/self/ns/net")?;
    Ok(id_of(&meta))
}

/// Whether the file at `path` is a network namespace, and still the one a
/// stat of it found: the file could have been replaced since.
fn is_network_namespace(path: &Path, want: NsId) -> bool {
    Netns::open(path).and_then(|n| n.dev_ino()).is_ok_and(|(dev, ino)| NsId { dev, ino } == want)
}

fn add_holder(ns: &mut Namespace, pid: u32) {
    if ns.pids.len() < MAX_HOLDERS || ns.pids.last().is_some_and(|&p| p > pid) {
        ns.pids.push(pid);
        ns.pids.sort_unstable();
        ns.pids.truncate(MAX_HOLDERS);
    }
}

/// Every network namespace named by a file in `settings.netns_dirs`, plus
/// (with `settings.processes`) every one a process is in; each once, the
/// daemon's own left out. Processes are read even without `processes`, to
/// record who holds the named ones (their cgroup names the container).
pub fn enumerate(settings: &Settings) -> Result<Scan> {
    let own = own_namespace()?;
    let mut scan = Scan::default();
    let mut found: BTreeMap<NsId, Namespace> = BTreeMap::new();

    for dir in &settings.netns_dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                scan.errors.push(format!("listing {}: {e}", dir.display()));
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let id = id_of(&meta);
            if id.dev != own.dev {
                if meta.is_file() && meta.len() == 0 {
                    scan.pending.push(path);
                }
                continue;
            }
            if id == own || found.contains_key(&id) || !is_network_namespace(&path, id) {
                continue;
            }
            found.insert(id, Namespace { id, path: path.clone(), file: Some(path), pids: Vec::new() });
        }
    }

    let procs = std::fs::read_dir(&settings.roots.proc)
        .with_context(|| format!("listing {}", settings.roots.proc.display()))?;
    let mut link = settings.roots.proc.clone();
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        link.push(&name);
        link.push("ns/net");
        let meta = std::fs::metadata(&link);
        link.pop();
        link.pop();
        link.pop();
        let id = match meta {
            Ok(m) => id_of(&m),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                scan.unreadable += 1;
                continue;
            }
            // Exited since the listing, or a kernel thread being torn down.
            Err(_) => continue,
        };
        if id == own || id.dev != own.dev {
            continue;
        }
        if let Some(ns) = found.get_mut(&id) {
            add_holder(ns, pid);
        } else if settings.processes {
            let path = settings.roots.proc.join(pid.to_string()).join("ns/net");
            found.insert(id, Namespace { id, path, file: None, pids: vec![pid] });
        }
    }
    scan.namespaces = found.into_values().collect();
    Ok(scan)
}
