//! Holds bench/noop.bpf.c on an interface's TCX ingress and egress hooks
//! while bench/bench.py measures its "noop" variant:
//!
//!     ip netns exec NS target/release/examples/tcx-noop IFACE
//!
//! The exporter's attach (BPF_LINK_CREATE with BPF_TCX_INGRESS and
//! BPF_TCX_EGRESS), so the no-op variant pays exactly the hook cost the
//! exporter pays and nothing of the legacy clsact/cls_bpf path. Prints
//! "attached <prog ids>" and holds the links until stdin closes or SIGTERM
//! arrives; the kernel detaches TCX links when their fds close, even if this
//! process is killed.

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod noop {
    include!(concat!(env!("OUT_DIR"), "/noop.skel.rs"));
}

use std::ffi::CString;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// The harness stops us with SIGTERM: that is the normal end, exit 0.
extern "C" fn exit_0(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe; the kernel detaches the links as the fds close.
    unsafe { libc::_exit(0) }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, ifname] = &args[..] else {
        bail!("usage: tcx-noop IFACE   (inside the interface's namespace; bench/bench.py runs it)");
    };
    let name = CString::new(ifname.as_str())?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("tcx-noop: no interface {ifname}: {}", std::io::Error::last_os_error());
    }

    let mut storage = MaybeUninit::uninit();
    let skel = noop::NoopSkelBuilder::default().open(&mut storage)?.load().context("loading bench/noop.bpf.c")?;
    let mut links = Vec::new();
    let mut ids = Vec::new();
    for (prog, attach_type, dir) in [
        (&skel.progs.noop_ingress, libbpf_sys::BPF_TCX_INGRESS, "ingress"),
        (&skel.progs.noop_egress, libbpf_sys::BPF_TCX_EGRESS, "egress"),
    ] {
        // SAFETY: plain syscall wrapper on a live program fd; no options.
        let fd = unsafe {
            libbpf_sys::bpf_link_create(prog.as_fd().as_raw_fd(), ifindex as i32, attach_type, std::ptr::null())
        };
        if fd < 0 {
            bail!("tcx-noop: TCX attach of noop_{dir} to {ifname}: {}", std::io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: the kernel just handed us this fd and nothing else owns it.
        let link = unsafe { OwnedFd::from_raw_fd(fd) };
        ids.push(prog_id(&link)?);
        links.push(link);
    }
    // SAFETY: installs a handler that only calls _exit.
    unsafe { libc::signal(libc::SIGTERM, exit_0 as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    println!("attached {}", ids.join(" "));
    std::io::stdout().flush()?;
    // Until the harness closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(links);
    Ok(())
}

/// The id of the program a link holds, as its fdinfo says.
fn prog_id(link: &OwnedFd) -> Result<String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", link.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("prog_id:"))
        .map(|id| id.trim().to_string())
        .context("the link's fdinfo names no prog_id")
}
