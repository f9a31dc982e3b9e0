//! Container names from the runtimes' own state files on disk. Never a CLI
//! or an API socket: those can hang, need a daemon that may be down, and
//! would let a container runtime's latency into the attacher's loop.
//!
//! Everything read is bounded, and garbage is an error that says which file
//! and why, never a panic: these files belong to other programs.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// podman keeps every container in one file: about 400 bytes each, so this
/// is room for tens of thousands.
pub const PODMAN_STATE_LIMIT: u64 = 32 << 20;
/// One container's docker config (its environment and labels included).
pub const DOCKER_STATE_LIMIT: u64 = 8 << 20;
/// Longest label value kept (a DNS name's length; runtimes allow less).
pub const MAX_NAME: usize = 253;

/// The contents of a regular file of at most `limit` bytes. A FIFO or a
/// device cannot block (O_NONBLOCK, then it must be a regular file), and a
/// file that grows past the limit while read is refused, not cut.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > limit {
        bail!("{} is {} bytes, more than the {limit} read at most", path.display(), meta.len());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut buf).with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > limit {
        bail!("{} grew past the {limit} bytes read at most", path.display());
    }
    Ok(buf)
}

/// A name fit for a label value: control characters dropped, at most
/// MAX_NAME bytes; None if nothing is left.
pub(super) fn clean_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    for c in raw.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        out.push(c);
    }
    (!out.trim().is_empty()).then_some(out)
}

/// Container ids are 64 hex digits for both runtimes; checking it also keeps
/// a crafted cgroup name from becoming a path (`../..`).
pub(super) fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Deserialize)]
struct PodmanEntry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

/// The name of podman container `id`, from `ROOT/overlay-containers/containers.json`.
/// Ok(None): no such file, or the id is not in it.
pub fn podman_name(root: &Path, id: &str) -> Result<Option<String>> {
    if !is_container_id(id) {
        bail!("{id:?} is not a container id");
    }
    let path = root.join("overlay-containers/containers.json");
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(&path, PODMAN_STATE_LIMIT)?;
    let entries: Vec<PodmanEntry> =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not podman's container list", path.display()))?;
    let Some(entry) = entries.into_iter().find(|e| e.id == id) else { return Ok(None) };
    match entry.names.first().and_then(|n| clean_name(n)) {
        Some(name) => Ok(Some(name)),
        None => bail!("{}: container {id} has no usable name", path.display()),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name")]
    name: String,
}

/// The name of docker container `id`, from `ROOT/containers/ID/config.v2.json`
/// (`Name`, without docker's leading slash). Ok(None): no such file.
pub fn docker_name(root: &Path, id: &str) -> Result<Option<String>> {
    if !is_container_id(id) {
        bail!("{id:?} is not a container id");
    }
    let path = root.join("containers").join(id).join("config.v2.json");
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(&path, DOCKER_STATE_LIMIT)?;
    let config: DockerConfig =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a docker container config", path.display()))?;
    match clean_name(config.name.strip_prefix('/').unwrap_or(&config.name)) {
        Some(name) => Ok(Some(name)),
        None => bail!("{}: container {id} has no usable name", path.display()),
    }
}
