//! The `container` label of a discovered namespace. The cgroup of a process
//! in it says who started it (podman, docker, systemd-nspawn, a systemd
//! service); the runtimes' state files turn a container id into its name.
//! Whatever cannot be read falls back to the namespace file's name, then to
//! `netns:INODE`, with a note saying why, so a label is always there.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::state::{self, clean_name, is_container_id};
use super::{Namespace, Roots};

/// /proc/PID/cgroup is one line per v1 hierarchy plus the unified one.
const CGROUP_FILE_LIMIT: u64 = 64 << 10;

/// Who a cgroup path says owns the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Podman(String),
    Docker(String),
    /// The machine name, unescaped.
    Nspawn(String),
    /// The unit name, as systemd spells it (`foo.service`).
    Service(String),
}

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Podman,
    Docker,
    Nspawn,
    Service,
    /// The name of the namespace's file in a netns directory.
    File,
    /// `netns:INODE`: nothing better was known.
    Inode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub value: String,
    pub origin: Origin,
    /// Why a better name was not used (a state file unreadable, an id not
    /// in it): for a debug log, never an error.
    pub notes: Vec<String>,
}

/// systemd's unit-name escaping undone: `\xNN` becomes that byte.
pub fn unescape_systemd(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = b.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok()) {
                if let Ok(v) = u8::from_str_radix(v, 16) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn podman_id(part: &str) -> Option<&str> {
    let rest = part.strip_prefix("libpod-")?;
    // podman under a systemd unit (quadlet, cgroups=split) nests the payload.
    let rest = rest.strip_prefix("payload-").unwrap_or(rest);
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_container_id(id).then_some(id)
}

fn docker_id(part: &str) -> Option<&str> {
    let id = part.strip_prefix("docker-")?.strip_suffix(".scope")?;
    is_container_id(id).then_some(id)
}

/// The owners one cgroup path names, innermost first: a container inside a
/// machine is tried before the machine (its runtime's state may not be on
/// this host, and then the machine's name is the next best). Machines and
/// services count only at the top of the host's tree: a unit inside a
/// machine (every machine has its nginx.service) would name nothing the
/// host's operator can tell apart.
pub fn parse_cgroup(path: &str) -> Vec<Owner> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        if let Some(id) = podman_id(part) {
            out.push(Owner::Podman(id.to_string()));
        } else if let Some(id) = docker_id(part) {
            out.push(Owner::Docker(id.to_string()));
        } else if parent == Some("docker") && is_container_id(part) {
            out.push(Owner::Docker(part.to_string()));
        } else if i == 1 && parent == Some("machine.slice") {
            let name = part.strip_prefix("machine-").and_then(|p| p.strip_suffix(".scope"));
            if let Some(name) = name.map(unescape_systemd).and_then(|n| clean_name(&n)) {
                out.push(Owner::Nspawn(name));
            }
        } else if i == 1
            && parent == Some("system.slice")
            && part.len() > ".service".len()
            && part.ends_with(".service")
        {
            if let Some(unit) = clean_name(part) {
                out.push(Owner::Service(unit));
            }
        }
    }
    out.reverse();
    out
}

/// Owners named by the contents of /proc/PID/cgroup, the unified (v2)
/// hierarchy first, each once.
fn owners_in(cgroup_file: &str) -> Vec<Owner> {
    let mut lines: Vec<&str> = cgroup_file.lines().collect();
    lines.sort_by_key(|l| !l.starts_with("0::"));
    let mut out: Vec<Owner> = Vec::new();
    for line in lines {
        let Some(path) = line.splitn(3, ':').nth(2) else { continue };
        for o in parse_cgroup(path) {
            if !out.contains(&o) {
                out.push(o);
            }
        }
    }
    out
}

fn from_owner(owner: &Owner, roots: &Roots, notes: &mut Vec<String>) -> Option<(String, Origin)> {
    let (found, runtime, id) = match owner {
        Owner::Nspawn(m) => return Some((m.clone(), Origin::Nspawn)),
        Owner::Service(u) => return Some((u.clone(), Origin::Service)),
        Owner::Podman(id) => {
            (state::podman_name(&roots.podman, id).map(|n| n.map(|n| (n, Origin::Podman))), "podman", id)
        }
        Owner::Docker(id) => {
            (state::docker_name(&roots.docker, id).map(|n| n.map(|n| (n, Origin::Docker))), "docker", id)
        }
    };
    match found {
        Ok(Some(named)) => return Some(named),
        Ok(None) => notes.push(format!("{runtime} container {id}: not in {runtime}'s state on this host")),
        Err(e) => notes.push(format!("{runtime} container {id}: {e:#}")),
    }
    None
}

/// The `container` label of `ns`: the container, machine or service name
/// from the cgroup of a process in it, else its file's name, else `netns:INODE`.
pub fn label(ns: &Namespace, roots: &Roots) -> Label {
    let mut notes = Vec::new();
    for pid in &ns.pids {
        // The PID may have exited and been reused by a process elsewhere.
        let netns = std::fs::metadata(roots.proc.join(pid.to_string()).join("ns/net"));
        if !netns.is_ok_and(|m| (m.dev(), m.ino()) == (ns.id.dev, ns.id.ino)) {
            notes.push(format!("process {pid} is no longer in the namespace"));
            continue;
        }
        let path = roots.proc.join(pid.to_string()).join("cgroup");
        let text = match state::read_bounded(&path, CGROUP_FILE_LIMIT) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                notes.push(format!("{e:#}"));
                continue;
            }
        };
        for owner in owners_in(&text) {
            if let Some((value, origin)) = from_owner(&owner, roots, &mut notes) {
                return Label { value, origin, notes };
            }
        }
    }
    let file_name = ns.file.as_deref().and_then(Path::file_name).and_then(|n| clean_name(&n.to_string_lossy()));
    match file_name {
        Some(value) => Label { value, origin: Origin::File, notes },
        None => Label { value: format!("netns:{}", ns.id.ino), origin: Origin::Inode, notes },
    }
}
