//! Test support: privileges, network namespaces, child processes, the
//! exporter binary, and reading its metrics. Everything a test creates is
//! owned by a guard whose Drop removes it, so a failing assertion cleans up too.
#![allow(dead_code)]

pub mod netio;
pub mod nginx;
pub mod packages;
pub mod packet;
pub mod parser;
pub mod pki;
pub mod podman;
pub mod qemu;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Privileged tests run when we are root. Outside CI they may skip; in CI
/// (CI=true) a missing privilege or tool is a failure, never a silent pass.
pub fn privileged(tools: &[&str]) -> bool {
    let in_ci = in_ci();
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_string());
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(format!("the `{t}` command"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("this test needs {}", missing.join(", "));
    if in_ci {
        panic!("{msg} (CI=true: privileged tests must run)");
    }
    eprintln!("SKIPPED: {msg}; run as root (see README) to exercise it");
    false
}

/// Raise this process's soft RLIMIT_NOFILE to `want` (or to the hard limit
/// if that is lower) and return the new soft limit. Debian's default soft
/// limit is 1,024; tests that hold thousands of sockets call this first.
pub fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let new = want.min(hard).max(soft);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).expect("setrlimit RLIMIT_NOFILE");
    new
}

/// Any CI variable but "", "false" and "0" means CI (CI=1 and CI=yes included).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

/// The kernel release as (major, minor).
pub fn kernel_version() -> (u32, u32) {
    let uts = nix::sys::utsname::uname().expect("uname");
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// TCX links exist from Linux 6.6 on; `attach_mode = "auto"` uses them there, tc filters before.
pub fn kernel_has_tcx() -> bool {
    kernel_version() >= (6, 6)
}

/// For a test that forces TCX links: whether this kernel has them. Below 6.6
/// the test skips with a message, and under CI it fails instead: CI runs on a
/// kernel with TCX, and tests/kernels.rs covers tc clsact on 6.1 in a guest.
pub fn tcx_kernel() -> bool {
    if kernel_has_tcx() {
        return true;
    }
    let msg = format!("this test needs TCX links (Linux 6.6+), and this is Linux {:?}", kernel_version());
    if in_ci() {
        panic!("{msg} (CI=true: run CI on 6.6 or later; tests/kernels.rs boots 6.1 for the tc clsact path)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// What `attach_mode = "auto"` attaches on this kernel, as `bpf_attached` names it.
pub fn auto_mode() -> &'static str {
    if kernel_has_tcx() {
        "tcx"
    } else {
        "tc"
    }
}

/// Our two programs as `bpf_attached` lists them in `mode`: "tcx:http_..." or "tc:http_...".
pub fn ours(mode: &str) -> String {
    format!("{mode}:http_")
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (interface names are at most 15 bytes).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}{}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Two namespaces, "server" and "client", joined by a veth pair:
/// server 198.18.0.1/24 fd00::1/64 on `server_if`, client 198.18.0.2 fd00::2 on `client_if`.
pub struct Pair {
    pub server_ns: String,
    pub client_ns: String,
    pub server_if: String,
    pub client_if: String,
}

pub const SERVER_V4: &str = "198.18.0.1";
pub const CLIENT_V4: &str = "198.18.0.2";
pub const SERVER_V6: &str = "fd00::1";
pub const CLIENT_V6: &str = "fd00::2";

impl Pair {
    pub fn new() -> Pair {
        let mut p = Pair {
            server_ns: unique("hgs"),
            client_ns: unique("hgc"),
            server_if: unique("hgvs"),
            client_if: unique("hgvc"),
        };
        // From here on Drop removes whatever was made, even if a step fails.
        run("ip", &["netns", "add", &p.client_ns]);
        p.start_server_ns();
        p
    }

    /// (Re)create the server namespace under its name, and a new veth pair
    /// (new names) to the client: what a container restart does.
    pub fn start_server_ns(&mut self) {
        self.server_if = unique("hgvs");
        self.client_if = unique("hgvc");
        run("ip", &["netns", "add", &self.server_ns]);
        run("ip", &["link", "add", &self.server_if, "type", "veth", "peer", "name", &self.client_if]);
        run("ip", &["link", "set", &self.server_if, "netns", &self.server_ns]);
        run("ip", &["link", "set", &self.client_if, "netns", &self.client_ns]);
        for (ns, ifname, v4, v6) in [
            (&self.server_ns, &self.server_if, SERVER_V4, SERVER_V6),
            (&self.client_ns, &self.client_if, CLIENT_V4, CLIENT_V6),
        ] {
            run("ip", &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname]);
            run("ip", &["-n", ns, "addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"]);
            run("ip", &["-n", ns, "link", "set", ifname, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
    }

    /// Remove the server namespace (stop what runs in it first): its veth
    /// pair goes with it once the kernel has freed it, which is waited for.
    pub fn stop_server_ns(&mut self) {
        run("ip", &["netns", "del", &self.server_ns]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("ip")
            .args(["-n", &self.client_ns, "link", "show", &self.client_if])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "the old server namespace was not freed within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn netns_path(ns: &str) -> String {
        format!("/run/netns/{ns}")
    }

    /// Exporter config (without [web]) watching both ends: target "server" on
    /// `server_interfaces` (a TOML list body; default the server's veth) and
    /// target "client" on the client's veth. `extra` goes before the targets.
    pub fn two_views(&self, extra: &str, server_interfaces: Option<&str>) -> String {
        format!(
            "[metrics]\nscrape_interval = \"200ms\"\n{extra}\n\
             [[target]]\nname = \"server\"\ninterfaces = [{}]\nnetns = \"{}\"\n\n\
             [[target]]\nname = \"client\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
            server_interfaces.map(str::to_string).unwrap_or_else(|| format!("\"{}\"", self.server_if)),
            Pair::netns_path(&self.server_ns),
            self.client_if,
            Pair::netns_path(&self.client_ns)
        )
    }

    /// A command run inside a namespace.
    pub fn cmd(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth end, and with it the peer.
        run_quiet("ip", &["netns", "del", &self.server_ns]);
        run_quiet("ip", &["netns", "del", &self.client_ns]);
        run_quiet("ip", &["link", "del", &self.server_if]);
    }
}

/// A child process killed (and its group) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { child, name: name.to_string() }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits up to `timeout` for exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The network namespace of a process, as (dev, inode) of /proc/PID/ns/net.
pub fn netns_of(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| (m.dev(), m.ino()))
}

/// `unshare --net` with `args` (the program it execs and its arguments),
/// returned once the process is in its new namespace: until then
/// /proc/PID/ns/net still shows ours.
pub fn unshared(args: &[&str]) -> Proc {
    let mut cmd = Command::new("unshare");
    cmd.arg("--net").args(args);
    let p = Proc::spawn(cmd, &format!("unshare --net {}", args.join(" ")));
    let own = netns_of(std::process::id() as i32);
    let deadline = Instant::now() + Duration::from_secs(30);
    while netns_of(p.pid()) == own {
        assert!(Instant::now() < deadline, "unshare --net {args:?} never entered a new namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    p
}

/// Wait until process `pid` has a TCP socket listening on `port` in its
/// network namespace (/proc/PID/net/tcp and tcp6 show that namespace's
/// sockets; busybox httpd listens on `::`, which takes IPv4 too).
pub fn wait_listening(pid: i32, port: u16) {
    let want = format!(":{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table: String = ["tcp", "tcp6"]
            .iter()
            .map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).unwrap_or_default())
            .collect();
        let listening = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        });
        if listening {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} never listened on port {port}:\n{table}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The exporter binary under test, started with a config file the test wrote.
pub struct Exporter {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
}

pub fn exporter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_http-golden-exporter")
}

/// The daemon binary, with `http-golden-exporter-top` beside it, where
/// `http-golden-exporter top` looks for it. Cargo makes a package's own
/// binaries for its integration tests, and top is hge-top's: `cargo test`
/// alone builds only its unit tests. So it is built here, once per test
/// binary, into the same target directory and profile.
pub fn exporter_bin_with_top() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let bin = Path::new(exporter_bin());
        let profile_dir = bin.parent().expect("the binary's directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("no profile directory in {}", bin.display()),
        };
        let target_dir = profile_dir.parent().expect("the target directory");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "-p", "hge-top", "--bin", "http-golden-exporter-top"])
            .args(["--profile", profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("running cargo");
        assert!(out.status.success(), "cargo build -p hge-top: {}", String::from_utf8_lossy(&out.stderr));
        let top = bin.with_file_name("http-golden-exporter-top");
        assert!(top.is_file(), "cargo build -p hge-top made no {}", top.display());
    });
    exporter_bin()
}

impl Exporter {
    /// `config` is the TOML without a [web] section; one is added for a free port.
    pub fn start(config: &str) -> Exporter {
        Self::try_start(config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(config: &str) -> Result<Exporter, String> {
        Self::try_start_env(config, &[])
    }

    /// As try_start, with extra environment variables for the exporter.
    pub fn try_start_env(config: &str, env: &[(&str, &str)]) -> Result<Exporter, String> {
        Self::launch("", config, env, |port| http_get(port, "/metrics").map(|(s, _)| s == 200).unwrap_or(false))
    }

    /// The exporter with `web_extra` lines in its [web] table (after listen_address),
    /// ready when `ready(port)` holds (e.g. a scrape over TLS with credentials).
    pub fn launch(
        web_extra: &str,
        config: &str,
        env: &[(&str, &str)],
        ready: impl Fn(u16) -> bool,
    ) -> Result<Exporter, String> {
        Self::launch_args(web_extra, config, &[], env, ready)
    }

    /// As launch, with extra command-line arguments (`--log.level debug`).
    pub fn launch_args(
        web_extra: &str,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        ready: impl Fn(u16) -> bool,
    ) -> Result<Exporter, String> {
        let dir = TempDir::new("hgexp");
        let port = free_port();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, format!("[web]\nlisten_address = \"127.0.0.1:{port}\"\n{web_extra}\n{config}")).unwrap();
        let log = std::fs::File::create(dir.path().join("exporter.log")).unwrap();
        let mut cmd = Command::new(exporter_bin());
        cmd.arg("--config.file").arg(&path).args(args).stdout(log.try_clone().unwrap()).stderr(log);
        cmd.envs(env.iter().copied());
        let mut proc = Proc::spawn(cmd, "exporter");
        let deadline = Instant::now() + Duration::from_secs(20);
        let exp_log = dir.path().join("exporter.log");
        loop {
            if let Ok(Some(st)) = proc.child.try_wait() {
                return Err(format!(
                    "exporter exited with {st}:\n{}",
                    std::fs::read_to_string(&exp_log).unwrap_or_default()
                ));
            }
            if ready(port) {
                return Ok(Exporter { proc, port, dir });
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "exporter was not ready within 20s:\n{}",
                    std::fs::read_to_string(&exp_log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the exporter process (the attacher's child that serves HTTP).
    pub fn child_pid(&self) -> Option<i32> {
        let pid = self.proc.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }

    pub fn scrape(&self) -> Metrics {
        let (status, body) = http_get(self.port, "/metrics").expect("scraping the exporter");
        assert_eq!(status, 200, "scrape failed: {body}");
        Metrics::parse(&body)
    }

    /// Scrape until `done` holds (the exporter reads maps every scrape_interval), or time out
    /// and return the last scrape so the caller's assertion shows what was there.
    pub fn scrape_until(&self, timeout: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.scrape();
            if done(&m) || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A minimal HTTP/1.0 GET for scraping, so tests need no HTTP client crate.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"))
}

pub fn http_request(port: u16, raw: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(raw.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Parsed text exposition: one entry per sample line.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Every sample, through the exposition parser `top` uses; a malformed line fails the test.
    pub fn parse(text: &str) -> Metrics {
        let samples = hge_top::expo::samples(text)
            .map(|s| {
                let s = s.unwrap_or_else(|e| panic!("malformed exposition: {e}"));
                let labels = s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                (s.name.to_string(), labels, s.value)
            })
            .collect();
        Metrics { text: text.to_string(), samples }
    }

    /// Sum of `name` over samples whose labels include every (key, value) in `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    pub fn has(&self, name: &str, want: &[(&str, &str)]) -> bool {
        self.samples
            .iter()
            .any(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
    }
}

/// Names of the BPF programs on an interface inside a namespace, in both
/// directions: TCX links (asked of the kernel; Debian's bpftool predates TCX)
/// and legacy tc filters (as `tc filter show` lists them).
pub fn bpf_attached(ns: &str, ifname: &str) -> String {
    let path = std::path::PathBuf::from(format!("/run/netns/{ns}"));
    let name = ifname.to_string();
    let mut names = hge_attacher::netns::in_netns(Some(&path), move || {
        let Ok(ifindex) = nix::net::if_::if_nametoindex(name.as_str()) else { return Ok(Vec::new()) };
        let mut names = Vec::new();
        for at in [libbpf_sys::BPF_TCX_INGRESS, libbpf_sys::BPF_TCX_EGRESS] {
            let mut ids = [0u32; 64];
            let mut opts = libbpf_sys::bpf_prog_query_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _,
                prog_ids: ids.as_mut_ptr(),
                __bindgen_anon_1: libbpf_sys::bpf_prog_query_opts__bindgen_ty_1 { count: ids.len() as u32 },
                ..Default::default()
            };
            // SAFETY: ids outlives the call and count says how many fit.
            let r = unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, at, &mut opts) };
            if r == 0 {
                // SAFETY: the kernel wrote the count through this union member.
                let n = unsafe { opts.__bindgen_anon_1.count } as usize;
                for id in &ids[..n.min(ids.len())] {
                    names.push(format!("tcx:{}", prog_name(*id)));
                }
            }
        }
        Ok(names)
    })
    .unwrap_or_default();
    for dir in ["ingress", "egress"] {
        let out = Command::new("ip").args(["netns", "exec", ns, "tc", "filter", "show", "dev", ifname, dir]).output();
        if let Ok(o) = out {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            for w in words.windows(2).filter(|w| w[0] == "name") {
                names.push(format!("tc:{}", w[1]));
            }
        }
    }
    names.sort();
    names.join(" ")
}

fn prog_name(id: u32) -> String {
    // SAFETY: plain syscall wrappers; info is sized for the kernel.
    unsafe {
        let fd = libbpf_sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return format!("id{id}");
        }
        let mut info: libbpf_sys::bpf_prog_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        let ok = libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) == 0;
        libc::close(fd);
        if !ok {
            return format!("id{id}");
        }
        info.name.iter().take_while(|c| **c != 0).map(|c| *c as u8 as char).collect()
    }
}
