//! Privilege separation: who serves the network, and with which privileges.
//!
//! The process that attaches programs (the "attacher") keeps the capabilities
//! BPF and netlink need and never touches a network socket. The process that
//! parses HTTP requests from the network (the "exporter") runs as an
//! unprivileged user with every capability set empty and no_new_privs set, and
//! reads the maps through file descriptors opened before it dropped them.
//! See docs/architecture.md.

use std::fmt;

use anyhow::{anyhow, bail, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

/// The user the packages create (packaging/sysusers.conf).
pub const DEFAULT_USER: &str = "http-golden-exporter";
/// Where that user does not exist, as on a host without the package.
pub const FALLBACK_USER: &str = "nobody";

/// Capabilities the attacher keeps: load programs and create maps (BPF), attach
/// them to interfaces (NET_ADMIN), let the verifier accept pointer arithmetic
/// the parser needs (PERFMON), enter other network namespaces (SYS_ADMIN).
pub const ATTACHER_CAPS: [Capability; 4] =
    [Capability::CAP_BPF, Capability::CAP_NET_ADMIN, Capability::CAP_PERFMON, Capability::CAP_SYS_ADMIN];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}

/// The account the exporter process switches to. A user named in the config or
/// on the command line must exist; the default falls back to nobody.
pub fn resolve_user(configured: Option<&str>) -> Result<Account> {
    let account = resolve_any_user(configured)?;
    if account.uid.is_root() {
        bail!(
            "user {account} is root: the exporter process serves the network and never runs as uid 0; \
             name an unprivileged user (--user or the config key user)"
        );
    }
    Ok(account)
}

fn resolve_any_user(configured: Option<&str>) -> Result<Account> {
    let lookup = |name: &str| -> Result<Option<Account>> {
        let u = User::from_name(name).with_context(|| format!("looking up user {name:?}"))?;
        Ok(u.map(|u| Account { name: u.name, uid: u.uid, gid: u.gid }))
    };
    match configured {
        Some(name) => lookup(name)?.ok_or_else(|| {
            anyhow!("user {name:?} (--user or the config key user) does not exist; create it or name another")
        }),
        None => match lookup(DEFAULT_USER)? {
            Some(a) => Ok(a),
            None => {
                let a = lookup(FALLBACK_USER)?.ok_or_else(|| {
                    anyhow!("neither user {DEFAULT_USER:?} nor {FALLBACK_USER:?} exists; name one with --user")
                })?;
                log::warn!(
                    "user {DEFAULT_USER:?} does not exist (the deb and rpm packages create it); \
                     serving metrics as {FALLBACK_USER:?} instead"
                );
                Ok(a)
            }
        },
    }
}

/// Overrides the kernel release that decides whether the exporter keeps
/// CAP_BPF; for exercising the pre-5.19 path on a newer kernel (tests/privsep.rs).
pub const KERNEL_RELEASE_ENV: &str = "HGE_KERNEL_RELEASE";

/// Linux release as (major, minor), from uname (or HGE_KERNEL_RELEASE).
pub fn kernel_version() -> Option<(u32, u32)> {
    if let Ok(r) = std::env::var(KERNEL_RELEASE_ENV) {
        return parse_release(&r);
    }
    let uts = nix::sys::utsname::uname().ok()?;
    parse_release(uts.release().to_str()?)
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Since Linux 5.19 bpf() on a map fd one already holds needs no capability
/// (the checks moved to map creation and program load). Before, it needs CAP_BPF.
pub fn fd_reads_need_cap_bpf() -> bool {
    match kernel_version() {
        Some(v) => v < (5, 19),
        None => true,
    }
}

/// What the exporter kept after dropping privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Nothing,
    /// Kernels before 5.19: bpf() on held map fds still needs CAP_BPF.
    CapBpf,
}

fn set_of(caps: &[Capability]) -> CapsHashSet {
    caps.iter().copied().collect()
}

fn cap_err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {e}")
}

/// Become `account` with empty capability sets (or only CAP_BPF when `keep_bpf`)
/// and no_new_privs. Must run while the process has a single thread:
/// credentials and capabilities are per thread.
pub fn drop_to(account: &Account, keep_bpf: bool) -> Result<Kept> {
    let keep: CapsHashSet = if keep_bpf { set_of(&[Capability::CAP_BPF]) } else { CapsHashSet::new() };

    // The bounding set, where we may (needs CAP_SETPCAP, which the unit does not grant):
    // then not even a setuid binary could hand a capability back.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for c in caps::read(None, CapSet::Bounding).map_err(cap_err("reading the bounding set"))? {
            if !keep.contains(&c) {
                caps::drop(None, CapSet::Bounding, c).map_err(cap_err("dropping from the bounding set"))?;
            }
        }
    }

    let (ruid, euid) = (Uid::current(), Uid::effective());
    if ruid != account.uid || euid != account.uid {
        let can_switch =
            euid.is_root() || caps::has_cap(None, CapSet::Effective, Capability::CAP_SETUID).unwrap_or(false);
        if !can_switch {
            log::warn!("running as uid {euid} without CAP_SETUID: cannot switch to user {account}; staying uid {euid}");
        } else {
            if keep_bpf {
                nix::sys::prctl::set_keepcaps(true).context("prctl(PR_SET_KEEPCAPS)")?;
            }
            nix::unistd::setgroups(&[account.gid]).context("setgroups")?;
            nix::unistd::setresgid(account.gid, account.gid, account.gid).context("setresgid")?;
            nix::unistd::setresuid(account.uid, account.uid, account.uid).context("setresuid")?;
            if keep_bpf {
                nix::sys::prctl::set_keepcaps(false).context("prctl(PR_SET_KEEPCAPS)")?;
            }
        }
    }

    caps::clear(None, CapSet::Ambient).map_err(cap_err("clearing the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(cap_err("clearing the inheritable set"))?;
    // Effective first: the kernel refuses a permitted set that no longer covers the effective one.
    caps::set(None, CapSet::Effective, &keep).map_err(cap_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(cap_err("setting the permitted set"))?;
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;

    // Trust, but verify: what the kernel says now.
    let now = ProcCaps::of_self()?;
    let want = if keep_bpf { 1u64 << (Capability::CAP_BPF as u8) } else { 0 };
    if now.eff != want || now.prm != want || now.inh != 0 || now.amb != 0 || !now.no_new_privs {
        bail!("capabilities after dropping privileges are not what was asked: {now:?}");
    }
    if Uid::current().is_root() || Uid::effective().is_root() {
        bail!("still uid 0 after dropping privileges; the exporter never serves as root");
    }
    if Uid::current() != account.uid && (euid.is_root() || ruid.is_root()) {
        bail!("still uid {} after switching to {account}", Uid::current());
    }
    Ok(if keep_bpf { Kept::CapBpf } else { Kept::Nothing })
}

/// Kept by the attacher where it has them (root; the unit grants them), for
/// discovery: opening /proc/PID/ns/net of a process whose capabilities are
/// not a subset of ours is a ptrace access check (bind-mounted namespace
/// files need none), and the runtimes' state files that name containers
/// (/var/lib/containers/storage, /var/lib/docker) are root's alone. Without
/// them, discovery finds fewer namespaces and names fewer containers.
pub const ATTACHER_OPTIONAL_CAPS: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// Reduce the attacher to what it needs: its effective and permitted sets keep
/// only ATTACHER_CAPS and ATTACHER_OPTIONAL_CAPS (of those it has), inheritable and ambient are cleared.
pub fn narrow_attacher() -> Result<()> {
    let have = caps::read(None, CapSet::Permitted).map_err(cap_err("reading the permitted set"))?;
    let keep: CapsHashSet =
        ATTACHER_CAPS.iter().chain(&ATTACHER_OPTIONAL_CAPS).copied().filter(|c| have.contains(c)).collect();
    caps::clear(None, CapSet::Ambient).map_err(cap_err("clearing the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(cap_err("clearing the inheritable set"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(cap_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(cap_err("setting the permitted set"))?;
    Ok(())
}

/// Capability sets and no_new_privs of a process, as /proc/PID/status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcCaps {
    pub inh: u64,
    pub prm: u64,
    pub eff: u64,
    pub bnd: u64,
    pub amb: u64,
    pub no_new_privs: bool,
}

impl ProcCaps {
    pub fn of_self() -> Result<ProcCaps> {
        Self::parse(&std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?)
    }

    pub fn of(pid: i32) -> Result<ProcCaps> {
        let path = format!("/proc/{pid}/status");
        Self::parse(&std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?)
    }

    pub fn parse(status: &str) -> Result<ProcCaps> {
        let mut c = ProcCaps::default();
        for line in status.lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            let hex = || u64::from_str_radix(v.trim(), 16).with_context(|| format!("bad {k} line: {line}"));
            match k {
                "CapInh" => c.inh = hex()?,
                "CapPrm" => c.prm = hex()?,
                "CapEff" => c.eff = hex()?,
                "CapBnd" => c.bnd = hex()?,
                "CapAmb" => c.amb = hex()?,
                "NoNewPrivs" => c.no_new_privs = v.trim() == "1",
                _ => {}
            }
        }
        Ok(c)
    }
}

/// Threads of this process; fork() copies only the calling one.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("5.19"), Some((5, 19)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn proc_status_capability_lines_parse() {
        let c = ProcCaps::parse(
            "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t0000008000000000\n\
             CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n",
        )
        .unwrap();
        assert_eq!(c.eff, 1 << 39); // CAP_BPF
        assert_eq!(c.prm, 0x1ff_ffff_ffff);
        assert!(c.no_new_privs);
        assert_eq!((c.inh, c.amb), (0, 0));
    }

    #[test]
    fn an_account_with_uid_0_is_refused() {
        let e = resolve_user(Some("root")).unwrap_err().to_string();
        assert!(e.contains("root") && e.contains("uid 0"), "{e}");
    }

    #[test]
    fn a_missing_user_named_explicitly_is_an_error() {
        let e = resolve_user(Some("hge-no-such-user")).unwrap_err().to_string();
        assert!(e.contains("hge-no-such-user") && e.contains("does not exist"), "{e}");
    }
}
