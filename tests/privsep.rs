//! Privilege separation as the kernel sees it: the process that serves the
//! network holds no capability, the one that holds capabilities holds no
//! network socket, SIGHUP re-attaches without a restart, and killing either
//! process leaves nothing attached.

mod common;

use std::time::{Duration, Instant};

use common::nginx::{curl, Nginx};
use common::{bpf_attached, Exporter, Metrics, Pair, Proc, TempDir, SERVER_V4};
use hge_shared::privsep::{self, ProcCaps, ATTACHER_CAPS, ATTACHER_OPTIONAL_CAPS};
use nix::sys::signal::Signal;

fn target(name: &str, ns: &str, ifname: &str) -> String {
    format!("[[target]]\nname = \"{name}\"\ninterfaces = [\"{ifname}\"]\nnetns = \"{}\"\n", Pair::netns_path(ns))
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The exporter (web-facing) process: the attacher's only child.
fn exporter_pid(exp: &Exporter) -> i32 {
    let c = children(exp.proc.pid());
    assert_eq!(c.len(), 1, "the attacher has exactly one child: {c:?}\n{}", exp.log());
    c[0]
}

fn status_field(pid: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string())).unwrap_or_default()
}

/// What the fds of a process point at ("socket:[123]", "anon_inode:bpf-map", ...).
fn fd_targets(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// Socket inode of the TCP listener on 127.0.0.1:port, from /proc/net/tcp.
fn listener_inode(port: u16) -> String {
    let want = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1] == want && f[3] == "0A")
        .map(|f| f[9].to_string())
        .unwrap_or_else(|| panic!("no listener on {want} in\n{table}"))
}

fn gone_or_zombie(pid: i32) -> bool {
    matches!(status_field(pid, "State").chars().next(), None | Some('Z') | Some('X'))
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn server_requests(m: &Metrics, target: &str) -> f64 {
    m.sum("http_server_requests_total", &[("target", target)])
}

fn client_requests(m: &Metrics, target: &str) -> f64 {
    m.sum("http_client_requests_total", &[("target", target)])
}

#[test]
fn the_web_facing_process_has_no_capabilities_while_it_serves_correct_metrics() {
    if !common::privileged(&["ip", "nginx", "curl"]) {
        return;
    }
    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let exp = Exporter::start(&format!(
        "[metrics]\nscrape_interval = \"200ms\"\n{}",
        target("server", &pair.server_ns, &pair.server_if)
    ));
    for _ in 0..4 {
        curl(&pair, &[format!("http://{SERVER_V4}/ok")]);
    }
    curl(&pair, &[format!("http://{SERVER_V4}/missing")]);
    let sent = (nginx.count('2', "/ok") + nginx.count('4', "/missing")) as f64;
    assert_eq!(sent, 5.0);
    let m = exp.scrape_until(Duration::from_secs(10), |m| server_requests(m, "server") == sent);
    assert_eq!(server_requests(&m, "server"), sent, "correct metrics:\n{}", m.text);
    assert_eq!(
        m.sum("http_server_request_duration_seconds_count", &[("target", "server"), ("status_class", "4xx")]),
        1.0
    );

    // While it serves them: every capability set of the web-facing process is empty.
    let child = exporter_pid(&exp);
    let caps = ProcCaps::of(child).unwrap();
    assert_eq!((caps.eff, caps.prm, caps.inh, caps.amb), (0, 0, 0, 0), "exporter {child}: {caps:x?}");
    assert!(caps.no_new_privs, "exporter {child} has no_new_privs");
    // The expected user read from /etc/passwd here, not from the code under test.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let uid_of = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[2].to_string())
        })
    };
    let (name, want_uid) = match uid_of("http-golden-exporter") {
        Some(u) => ("http-golden-exporter", u),
        None => ("nobody", uid_of("nobody").expect("a nobody user")),
    };
    assert_ne!(want_uid, "0", "{name} must not be root");
    let uids = status_field(child, "Uid");
    assert!(uids.split_whitespace().all(|u| u == want_uid), "exporter runs as {name} ({want_uid}): Uid {uids}");
    if name == privsep::FALLBACK_USER {
        assert!(exp.log().contains("serving metrics as \"nobody\""), "the fallback is logged:\n{}", exp.log());
    }

    // It holds the listen socket and the maps, and no program or link.
    let inode = format!("socket:[{}]", listener_inode(exp.port));
    let child_fds = fd_targets(child);
    assert!(child_fds.contains(&inode), "exporter holds the listener {inode}: {child_fds:?}");
    assert!(child_fds.iter().any(|f| f == "anon_inode:bpf-map"), "{child_fds:?}");
    assert!(!child_fds.iter().any(|f| f.contains("bpf-prog") || f.contains("bpf_link")), "{child_fds:?}");

    // The attacher holds the links and no network socket at all, and only its capabilities.
    let parent = exp.proc.pid();
    let parent_fds = fd_targets(parent);
    assert!(!parent_fds.contains(&inode), "the attacher does not hold the listener: {parent_fds:?}");
    assert!(parent_fds.iter().any(|f| f == "anon_inode:bpf_link"), "{parent_fds:?}");
    let pcaps = ProcCaps::of(parent).unwrap();
    // Started as root, it had every capability: it keeps exactly the four it needs and the two discovery uses.
    let six: u64 = ATTACHER_CAPS.iter().chain(&ATTACHER_OPTIONAL_CAPS).map(|c| 1u64 << c.index()).sum();
    assert_eq!(six.count_ones(), 6);
    assert_eq!((pcaps.eff, pcaps.prm), (six, six), "attacher keeps exactly its six capabilities: {pcaps:x?}");
    assert_eq!((pcaps.inh, pcaps.amb), (0, 0));
    let sockets: Vec<_> = parent_fds.iter().filter(|f| f.starts_with("socket:")).collect();
    assert_eq!(sockets.len(), 1, "the attacher's only socket is its channel to the exporter: {parent_fds:?}");
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    let ino = sockets[0].trim_start_matches("socket:[").trim_end_matches(']');
    assert!(unix.lines().any(|l| l.split_whitespace().nth(6) == Some(ino)), "socket {ino} is a UNIX socket");
}

#[test]
fn sighup_attaches_new_targets_detaches_removed_ones_and_keeps_counters() {
    if !common::privileged(&["ip", "nginx", "curl"]) {
        return;
    }
    let pair = Pair::new();
    let _nginx = Nginx::start(&pair);
    let server = target("server", &pair.server_ns, &pair.server_if);
    let client = target("client", &pair.client_ns, &pair.client_if);
    let head = "[metrics]\nscrape_interval = \"200ms\"\n";
    let exp = Exporter::start(&format!("{head}{server}"));
    let config_path = exp.dir.path().join("config.toml");
    let web = format!("[web]\nlisten_address = \"127.0.0.1:{}\"\n", exp.port);
    let rewrite = |body: &str| std::fs::write(&config_path, format!("{web}{body}")).unwrap();
    let ok = || curl(&pair, &[format!("http://{SERVER_V4}/ok")]);

    for _ in 0..3 {
        ok();
    }
    let m = exp.scrape_until(Duration::from_secs(10), |m| server_requests(m, "server") == 3.0);
    assert_eq!(server_requests(&m, "server"), 3.0);
    assert!(bpf_attached(&pair.client_ns, &pair.client_if).is_empty());

    // Add a target.
    rewrite(&format!("{head}{server}{client}"));
    exp.proc.signal(Signal::SIGHUP);
    let m = exp.scrape_until(Duration::from_secs(10), |m| {
        m.has("http_golden_exporter_attached", &[("target", "client"), ("direction", "egress")])
    });
    assert!(m.has("http_golden_exporter_attached", &[("target", "client")]), "{}\n{}", m.text, exp.log());
    assert_eq!(bpf_attached(&pair.client_ns, &pair.client_if).matches(&common::ours(common::auto_mode())).count(), 2);
    for _ in 0..2 {
        ok();
    }
    let m = exp.scrape_until(Duration::from_secs(10), |m| {
        server_requests(m, "server") == 5.0 && client_requests(m, "client") == 2.0
    });
    assert_eq!(server_requests(&m, "server"), 5.0, "the unchanged target kept counting from 3:\n{}", m.text);
    assert_eq!(client_requests(&m, "client"), 2.0, "the new target counts from the reload on");

    // A broken file is refused as a whole: everything stays as it was.
    rewrite("[metrics]\nbukets = [1]\n");
    exp.proc.signal(Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || exp.log().contains("reload failed")), "{}", exp.log());
    assert!(exp.log().contains("bukets"), "{}", exp.log());
    ok();
    let m = exp.scrape_until(Duration::from_secs(10), |m| server_requests(m, "server") == 6.0);
    assert_eq!(server_requests(&m, "server"), 6.0);
    assert_eq!(client_requests(&m, "client"), 3.0);

    // Remove the new target again; a setting that needs a restart is named.
    let series_before = m.sum("http_golden_exporter_series", &[]);
    rewrite(&format!("[metrics]\nscrape_interval = \"200ms\"\nmax_series = 77\n{server}"));
    exp.proc.signal(Signal::SIGHUP);
    let m = exp.scrape_until(Duration::from_secs(10), |m| {
        !m.has("http_golden_exporter_attached", &[("target", "client")]) && client_requests(m, "client") == 0.0
    });
    assert!(!m.has("http_golden_exporter_attached", &[("target", "client")]), "{}", m.text);
    // Gone from the maps, not just unnamed: no series of any other target
    // (a leftover would show as target="target1"), and fewer series held.
    for (name, labels, _) in &m.samples {
        if name.starts_with("http_server_") || name.starts_with("http_client_") {
            assert_eq!(labels.get("target").map(String::as_str), Some("server"), "{name}{labels:?} is left over");
        }
    }
    assert!(m.sum("http_golden_exporter_series", &[]) < series_before, "the series gauge dropped:\n{}", m.text);
    assert_eq!(server_requests(&m, "server"), 6.0);
    assert!(bpf_attached(&pair.client_ns, &pair.client_if).is_empty(), "client side detached");
    assert!(exp.log().contains("metrics.max_series changed"), "{}", exp.log());
    ok();
    let m = exp.scrape_until(Duration::from_secs(10), |m| server_requests(m, "server") == 7.0);
    assert_eq!(server_requests(&m, "server"), 7.0);
    assert_eq!(children(exp.proc.pid()).len(), 1, "still the same two processes");
}

fn kill_attacher_leaves_nothing(mode: &str, expect_left: &str) {
    let pair = Pair::new();
    let mut exp =
        Exporter::start(&format!("[bpf]\nattach_mode = \"{mode}\"\n{}", target("s", &pair.server_ns, &pair.server_if)));
    let child = exporter_pid(&exp);
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if).matches(&common::ours(mode)).count(), 2);
    exp.proc.signal(Signal::SIGKILL);
    exp.proc.wait_timeout(Duration::from_secs(30)).expect("the attacher dies");
    assert!(wait_until(Duration::from_secs(30), || gone_or_zombie(child)), "the exporter exits with its attacher");
    let left = bpf_attached(&pair.server_ns, &pair.server_if);
    assert_eq!(left, expect_left, "{mode}: after SIGKILL");
    if mode == "tc" {
        // Legacy filters outlive the process: the next start replaces them, SIGTERM removes them.
        let mut again =
            Exporter::start(&format!("[bpf]\nattach_mode = \"tc\"\n{}", target("s", &pair.server_ns, &pair.server_if)));
        assert!(again.log().contains("removed our own tc filter left by an earlier run"), "{}", again.log());
        assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if).matches("tc:http_").count(), 2);
        // Killed again: ExecStopPost's --cleanup removes exactly our filters.
        let config = again.dir.path().join("config.toml");
        again.proc.signal(Signal::SIGKILL);
        again.proc.wait_timeout(Duration::from_secs(30)).expect("the attacher dies");
        assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), expect_left);
        let out = std::process::Command::new(common::exporter_bin())
            .arg("--cleanup")
            .arg("--config.file")
            .arg(&config)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert_eq!(log.matches("removed the tc filter").count(), 2, "{log}");
        assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "");
    }
}

#[test]
fn sigkill_of_the_attacher_leaves_no_tcx_link_and_ends_the_exporter() {
    if !common::privileged(&["ip"]) {
        return;
    }
    if !common::tcx_kernel() {
        return;
    }
    kill_attacher_leaves_nothing("tcx", "");
}

#[test]
fn sigkill_in_legacy_tc_mode_leaves_filters_that_the_next_start_replaces() {
    if !common::privileged(&["ip", "tc"]) {
        return;
    }
    kill_attacher_leaves_nothing("tc", "tc:http_egress tc:http_ingress");
}

#[test]
fn when_the_exporter_dies_the_attacher_detaches_and_fails() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let mut exp = Exporter::start(&target("s", &pair.server_ns, &pair.server_if));
    let child = exporter_pid(&exp);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL).unwrap();
    let st = exp.proc.wait_timeout(Duration::from_secs(10)).expect("the attacher exits");
    assert!(!st.success(), "a dead exporter is a failure (systemd restarts on it): {st}");
    assert!(exp.log().contains("killed by SIGKILL"), "{}", exp.log());
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "");
}

fn stops_both_processes_and_exits_zero(signal: Signal) {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let mut exp = Exporter::start(&target("s", &pair.server_ns, &pair.server_if));
    let child = exporter_pid(&exp);
    exp.proc.signal(signal);
    let st = exp.proc.wait_timeout(Duration::from_secs(60)).unwrap_or_else(|| panic!("no exit on {signal}"));
    assert!(st.success(), "{signal}: {st}: {}", exp.log());
    assert!(exp.log().contains(&format!("{signal}: shutting down")), "{}", exp.log());
    assert!(gone_or_zombie(child));
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "");
}

#[test]
fn sigterm_stops_both_processes_and_exits_zero() {
    stops_both_processes_and_exits_zero(Signal::SIGTERM);
}

#[test]
fn sigint_stops_both_processes_and_exits_zero() {
    stops_both_processes_and_exits_zero(Signal::SIGINT);
}

/// The daemon as the unit runs it: the attacher as an unprivileged user
/// holding the unit's capabilities as ambient ones (as AmbientCapabilities=
/// gives them), the exporter as the same user. Returns the attacher, the port
/// it serves on once it answers, and its log file.
fn start_as_the_unit_does(dir: &TempDir, config: &str) -> (Proc, u16, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let port = common::free_port();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("user = \"nobody\"\n[web]\nlisten_address = \"127.0.0.1:{port}\"\n{config}"))
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.path().join("exporter.log");
    let out = std::fs::File::create(&log).unwrap();
    let caps = "+bpf,+net_admin,+perfmon,+sys_admin";
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    cmd.args([format!("--inh-caps={caps}"), format!("--ambient-caps={caps}")]);
    cmd.arg("--").arg(common::exporter_bin()).arg("--config.file").arg(&path);
    cmd.stdout(out.try_clone().unwrap()).stderr(out);
    let mut p = Proc::spawn(cmd, "setpriv http-golden-exporter");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::http_get(port, "/metrics").is_ok_and(|r| r.0 == 200) {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(matches!(p.child.try_wait(), Ok(None)), "the daemon exited:\n{said}");
        assert!(Instant::now() < deadline, "not serving after a minute:\n{said}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, port, log)
}

/// The attacher gives an exporter that does not stop (it is stopped itself
/// here, SIGSTOP) 5 s, then kills it, detaches and still exits 0. It runs as
/// the unit runs it: the exporter as the attacher's own user, whom it may signal.
#[test]
fn after_sigterm_an_exporter_that_does_not_stop_gets_five_seconds_then_sigkill() {
    if !common::privileged(&["ip", "setpriv"]) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgunit");
    let (mut attacher, _, log) = start_as_the_unit_does(&dir, &target("s", &pair.server_ns, &pair.server_if));
    let log = || std::fs::read_to_string(&log).unwrap_or_default();
    let c = children(attacher.pid());
    assert_eq!(c.len(), 1, "the attacher has exactly one child: {c:?}\n{}", log());
    let child = c[0];
    // Ended however the test ends (SIGKILL reaches a stopped process).
    struct Reaped(i32);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _reaped = Reaped(child);
    assert_eq!(status_field(attacher.pid(), "Uid"), status_field(child, "Uid"), "one user for both");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGSTOP).unwrap();
    let sent = Instant::now();
    attacher.signal(Signal::SIGTERM);
    let st = attacher.wait_timeout(Duration::from_secs(60)).unwrap_or_else(|| panic!("the attacher hangs:\n{}", log()));
    // Its 5 s start after the SIGTERM: a lower bound no load can break.
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_secs(5), "the exporter was killed after {waited:?}, before its 5 s");
    assert!(st.success(), "{st}: {}", log());
    assert!(log().contains("did not stop within 5s; killing it"), "{}", log());
    assert!(gone_or_zombie(child), "the exporter was killed");
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "", "everything detached");
}

/// Started as root, the attacher serves as another user (nobody here) and
/// keeps no CAP_KILL, so it cannot kill an exporter that does not stop: it
/// says so, detaches everything and exits all the same, rather than wait
/// forever for a child its signal never reached.
#[test]
fn as_root_an_exporter_of_another_user_that_does_not_stop_is_left_and_the_attacher_still_exits() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let mut exp = Exporter::start(&target("s", &pair.server_ns, &pair.server_if));
    let child = exporter_pid(&exp);
    assert_ne!(status_field(exp.proc.pid(), "Uid"), status_field(child, "Uid"), "two users");
    let stopped = nix::unistd::Pid::from_raw(child);
    nix::sys::signal::kill(stopped, Signal::SIGSTOP).unwrap();
    exp.proc.signal(Signal::SIGTERM);
    let st = exp.proc.wait_timeout(Duration::from_secs(60));
    // The test, root with every capability, may: the exporter is ours to end.
    let _ = nix::sys::signal::kill(stopped, Signal::SIGKILL);
    let st = st.unwrap_or_else(|| panic!("the attacher hangs:\n{}", exp.log()));
    assert!(st.success(), "{st}: {}", exp.log());
    assert!(exp.log().contains("cannot be killed (EPERM"), "{}", exp.log());
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "", "everything detached");
}

#[test]
fn before_linux_5_19_the_exporter_keeps_cap_bpf_and_nothing_else() {
    if !common::privileged(&["ip"]) {
        return;
    }
    // The decision is made from the kernel release; pretend to be Ubuntu 22.04's.
    let pair = Pair::new();
    let exp = Exporter::try_start_env(
        &target("s", &pair.server_ns, &pair.server_if),
        &[(privsep::KERNEL_RELEASE_ENV, "5.15.0-91-generic")],
    )
    .unwrap();
    let child = exporter_pid(&exp);
    let caps = ProcCaps::of(child).unwrap();
    let bpf = 1u64 << caps::Capability::CAP_BPF.index();
    assert_eq!((caps.eff, caps.prm, caps.inh, caps.amb), (bpf, bpf, 0, 0), "{caps:x?}");
    assert!(caps.no_new_privs);
    assert!(exp.log().contains("older than 5.19") && exp.log().contains("CAP_BPF kept"), "{}", exp.log());
    let m = exp.scrape();
    assert_eq!(m.sum("http_golden_exporter_attached", &[("target", "s")]), 2.0, "both directions:\n{}", m.text);
}

/// fdinfo of each BPF map fd a process holds: (fd, `flags:` in octal, `map_id:`).
fn map_fds(pid: i32) -> Vec<(i32, u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|t| t.display().to_string() == "anon_inode:bpf-map") {
            let fd: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
            let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or("").to_string();
            let flags = u32::from_str_radix(&field("flags:"), 8).unwrap();
            out.push((fd, flags, field("map_id:").parse().unwrap()));
        }
    }
    out
}

fn map_name(id: u32) -> String {
    let map = libbpf_rs::MapHandle::from_map_id(id).unwrap();
    libbpf_rs::MapCore::name(&map).to_string_lossy().into_owned()
}

#[test]
fn the_exporter_holds_only_the_maps_it_reads_each_read_only() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = Exporter::start(&target("s", &pair.server_ns, &pair.server_if));
    let child = exporter_pid(&exp);
    let fds = map_fds(child);
    let mut names: Vec<String> = fds.iter().map(|(_, _, id)| map_name(*id)).collect();
    names.sort();
    assert_eq!(names, ["flows", "latency", "native", "requests", "stats"], "exactly the maps it reads: {fds:?}");
    for (fd, flags, id) in &fds {
        assert_eq!(flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32, "fd {fd} (map {id}) flags {flags:o}");
    }

    // Through its fd, the kernel refuses an update (and still allows a lookup).
    let stats = fds.iter().find(|(_, _, id)| map_name(*id) == "stats").unwrap();
    // SAFETY: plain syscalls; the fds they return are closed below.
    let (pidfd, fd) = unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, child, 0) as i32;
        assert!(pidfd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, stats.0, 0) as i32;
        assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        (pidfd, fd)
    };
    let key = 0u32;
    let mut value = vec![0u64; libbpf_rs::num_possible_cpus().unwrap()];
    // SAFETY: key and value are sized for the stats map (u32 key, one u64 per possible CPU).
    let (update, lookup) = unsafe {
        let u = libbpf_sys::bpf_map_update_elem(fd, (&key as *const u32).cast(), value.as_ptr().cast(), 0);
        let l = libbpf_sys::bpf_map_lookup_elem(fd, (&key as *const u32).cast(), value.as_mut_ptr().cast());
        libc::close(fd);
        libc::close(pidfd);
        (u, l)
    };
    assert_eq!(update, -libc::EPERM, "an update through the exporter's fd is refused");
    assert_eq!(lookup, 0, "a lookup through it works");
}

#[test]
fn the_exporter_refuses_to_serve_as_root() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let dir = common::TempDir::new("hgroot");
    let config = dir.path().join("config.toml");
    let body = format!("user = \"root\"\n[web]\nlisten_address = \"127.0.0.1:{}\"\n", common::free_port());
    std::fs::write(&config, format!("{body}{}", target("s", &pair.server_ns, &pair.server_if))).unwrap();
    let mut cmd = std::process::Command::new(common::exporter_bin());
    cmd.arg("--config.file").arg(&config).stdout(std::process::Stdio::null());
    cmd.stderr(std::fs::File::create(dir.path().join("log")).unwrap());
    let mut p = common::Proc::spawn(cmd, "exporter");
    let st = p.wait_timeout(Duration::from_secs(10));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(st.is_some_and(|s| !s.success()), "it exits with an error ({st:?}):\n{log}");
    assert!(log.contains("uid 0") && log.contains("root"), "a clear error:\n{log}");
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "", "nothing attached");
}
