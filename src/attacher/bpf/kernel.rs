//! What the programs need of the kernel, and what the verifier made of them.
//!
//! Before the parser loads, each helper it calls is asked for with libbpf's
//! probes (a two-instruction program per helper): a kernel without one is
//! refused in one line that names what it lacks and the kernel that has it,
//! instead of a verifier log. After the load, `verified_insns` says how far
//! each program is from the verifier's limit of 1,000,000 instructions.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Context, Result};

/// The oldest kernel the programs are run on (tests/kernels.rs boots it).
pub const OLDEST_SUPPORTED: &str = "6.1";

/// One helper the parser calls, and the Linux release that brought it to tc programs.
pub struct Helper {
    pub name: &'static str,
    pub id: libbpf_sys::bpf_func_id,
    pub since: &'static str,
}

/// Every helper bpf/ calls (a test checks the sources against this list).
/// Only helpers are probed: every other feature the parser uses (its map
/// types, BPF_F_NO_PREALLOC, BTF, subprograms, tail calls from them) is older
/// than bpf_loop. And unlike libbpf's program and map type probes, which
/// answer "unsupported" to a caller without CAP_BPF, a helper probe then
/// answers "supported", so the load itself fails and says what privilege is
/// missing.
pub const HELPERS: &[Helper] = &[
    Helper { name: "bpf_map_lookup_elem", id: libbpf_sys::BPF_FUNC_map_lookup_elem, since: "3.19" },
    Helper { name: "bpf_map_update_elem", id: libbpf_sys::BPF_FUNC_map_update_elem, since: "3.19" },
    Helper { name: "bpf_map_delete_elem", id: libbpf_sys::BPF_FUNC_map_delete_elem, since: "3.19" },
    Helper { name: "bpf_ktime_get_ns", id: libbpf_sys::BPF_FUNC_ktime_get_ns, since: "4.1" },
    Helper { name: "bpf_tail_call", id: libbpf_sys::BPF_FUNC_tail_call, since: "4.2" },
    Helper { name: "bpf_skb_load_bytes", id: libbpf_sys::BPF_FUNC_skb_load_bytes, since: "4.5" },
    Helper { name: "bpf_skb_pull_data", id: libbpf_sys::BPF_FUNC_skb_pull_data, since: "4.9" },
    Helper { name: "bpf_sk_release", id: libbpf_sys::BPF_FUNC_sk_release, since: "4.20" },
    Helper { name: "bpf_skc_lookup_tcp", id: libbpf_sys::BPF_FUNC_skc_lookup_tcp, since: "5.2" },
    Helper { name: "bpf_loop", id: libbpf_sys::BPF_FUNC_loop, since: "5.17" },
];

/// The kernel lacks what the programs need: one line, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// `uname -r`.
    pub release: String,
    /// Each missing helper, and the release that has it.
    pub missing: Vec<(&'static str, &'static str)>,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<String> = self.missing.iter().map(|(name, since)| format!("{name} (Linux {since})")).collect();
        write!(
            f,
            "this kernel ({}) lacks {}; the oldest supported kernel is {OLDEST_SUPPORTED}",
            self.release,
            missing.join(" and ")
        )
    }
}

impl std::error::Error for Unsupported {}

/// Ask the kernel for every helper of `HELPERS` in tc (sched_cls) programs.
/// A probe that cannot tell (an error other than "unknown helper") counts
/// as present: the load that follows reports the real problem.
pub fn check_helpers() -> Result<(), Unsupported> {
    let missing: Vec<_> = HELPERS
        .iter()
        .filter(|h| {
            // SAFETY: a plain call; libbpf loads and closes a tiny program.
            let r = unsafe {
                libbpf_sys::libbpf_probe_bpf_helper(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, h.id, std::ptr::null())
            };
            r == 0
        })
        .map(|h| (h.name, h.since))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown release".to_string());
    Err(Unsupported { release, missing })
}

/// One loaded program and the instructions the verifier processed to accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub program: String,
    pub instructions: u64,
}

/// `bpf_prog_info.verified_insns` of a loaded program (Linux 5.16 and later; 0 before).
pub fn verified_instructions(prog: BorrowedFd<'_>) -> Result<u64> {
    // SAFETY: zeroed is a valid bpf_prog_info (plain integers and null pointers).
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is as large as len says; its pointers are null, so the
    // kernel writes nothing through them.
    let r = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(-r)).context("reading a program's info");
    }
    Ok(u64::from(info.verified_insns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_a_helper_is_named_in_one_line_with_the_release_that_has_it() {
        let u = Unsupported { release: "5.10.0-32-cloud-amd64".into(), missing: vec![("bpf_loop", "5.17")] };
        assert_eq!(
            u.to_string(),
            "this kernel (5.10.0-32-cloud-amd64) lacks bpf_loop (Linux 5.17); the oldest supported kernel is 6.1"
        );
        let two = Unsupported {
            release: "4.19.0".into(),
            missing: vec![("bpf_skc_lookup_tcp", "5.2"), ("bpf_loop", "5.17")],
        };
        assert_eq!(
            two.to_string(),
            "this kernel (4.19.0) lacks bpf_skc_lookup_tcp (Linux 5.2) and bpf_loop (Linux 5.17); the oldest \
             supported kernel is 6.1"
        );
    }

    /// Every `bpf_*(` call in the BPF sources that is a helper (not a
    /// byte-order macro) is probed before the load.
    #[test]
    fn every_helper_the_bpf_sources_call_is_probed() {
        const NOT_HELPERS: &[&str] = &["bpf_htons", "bpf_ntohs", "bpf_htonl", "bpf_ntohl"];
        let mut called = std::collections::BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("bpf_") {
                    let name: String =
                        text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    let before = text[..at].chars().next_back().unwrap_or(' ');
                    let word_start = !(before.is_ascii_alphanumeric() || before == '_');
                    if word_start && text[at + name.len()..].starts_with('(') && !NOT_HELPERS.contains(&name.as_str()) {
                        called.insert(name);
                    }
                }
            }
        }
        assert!(called.contains("bpf_loop"), "the scan finds the helpers: {called:?}");
        let probed: Vec<&str> = HELPERS.iter().map(|h| h.name).collect();
        let unprobed: Vec<&String> = called.iter().filter(|c| !probed.contains(&c.as_str())).collect();
        assert!(unprobed.is_empty(), "helpers bpf/ calls that HELPERS does not probe: {unprobed:?}");
    }
}
