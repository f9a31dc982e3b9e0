//! The packages and the unit, in a real systemd: packaging/build makes the debs
//! and the rpms, for x86_64 and arm64, with static binaries and their
//! checksums; lintian and rpm inspect them; systemd-analyze rates the unit;
//! then a Debian bookworm tree (debootstrap, cached outside the repository by
//! .ci/nspawn-tree) boots under systemd-nspawn, the deb is installed inside,
//! and the service is started, scraped, reloaded and stopped there while the
//! test sends HTTP traffic through a veth of its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::nginx::{curl, Nginx};
use common::packages::{self, Arch};
use common::{bpf_attached, http_get, Metrics, Pair, Proc, TempDir, SERVER_V4};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed ({}):\n{}", o.status, out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const UNIT: &str = "systemd/http-golden-exporter.service";

/// Where the packages install each rules file and dashboard of contrib/ (their
/// unit tests stay out).
fn contrib_files() -> Vec<String> {
    let mut out = Vec::new();
    for (dir, suffix) in [("prometheus", ".yml"), ("grafana", ".json")] {
        for e in std::fs::read_dir(repo().join("contrib").join(dir)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(suffix) {
                out.push(format!("/usr/share/http-golden-exporter/{dir}/{name}"));
            }
        }
    }
    assert!(out.len() >= 3, "rules, alerts and a dashboard: {out:?}");
    out
}

#[test]
fn the_unit_is_rated_at_most_2_5_by_systemd_analyze_security() {
    if !common::privileged(&["systemd-analyze"]) {
        return;
    }
    let o =
        Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(repo().join(UNIT)).output().unwrap();
    let text = out(&o);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let level: f64 = line.split(": ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(level <= 2.5, "exposure {level} > 2.5:\n{text}");
    assert!(o.stderr.is_empty(), "systemd-analyze security said on stderr: {}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{line}");
}

#[test]
fn the_packages_hold_the_files_and_lintian_finds_no_error() {
    if !common::privileged(&["lintian", "rpm", "dpkg-deb"]) || !packages::can_build() {
        return;
    }
    for arch in Arch::ALL {
        let (deb, rpm) = (packages::built().deb(arch), packages::built().rpm(arch));
        eprintln!("{}, {}", deb.display(), rpm.display());
        package_files(deb, rpm);
    }
}

/// The files each package holds, and how they are marked.
fn package_files(deb: &Path, rpm: &Path) {
    let o = Command::new("lintian").arg(deb).output().unwrap();
    let report = out(&o);
    // No error and no warning, but that the changelog closes no Debian bug:
    // the package is not uploaded to Debian.
    let unexpected =
        |l: &&str| (l.starts_with("E:") || l.starts_with("W:")) && !l.contains("initial-upload-closes-no-bugs");
    assert!(o.status.success() && !report.lines().any(|l| unexpected(&l)), "lintian:\n{report}");
    eprintln!("lintian: {}", if report.trim().is_empty() { "clean" } else { report.trim() });

    let files = run_ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    for f in [
        "./usr/sbin/http-golden-exporter",
        "./usr/sbin/http-golden-exporter-top",
        "./usr/lib/systemd/system/http-golden-exporter.service",
        "./etc/http-golden-exporter/config.toml",
        "./usr/lib/sysusers.d/http-golden-exporter.conf",
        "./usr/share/man/man8/http-golden-exporter.8.gz",
        "./usr/share/man/man5/http-golden-exporter.toml.5.gz",
        "./usr/share/doc/http-golden-exporter/README.md",
        "./usr/share/doc/http-golden-exporter/web-config.example.yml",
        "./usr/share/doc/http-golden-exporter/copyright",
    ] {
        assert!(files.contains(f), "deb lacks {f}:\n{files}");
    }
    for f in contrib_files() {
        assert!(files.contains(&format!(".{f}")), "deb lacks {f}:\n{files}");
    }
    let ctl = TempDir::new("hgdebctl");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(deb).arg(ctl.path()));
    let conffiles = std::fs::read_to_string(ctl.path().join("conffiles")).unwrap();
    assert!(conffiles.lines().any(|l| l == "/etc/http-golden-exporter/config.toml"), "{conffiles}");
    let postinst = std::fs::read_to_string(ctl.path().join("postinst")).unwrap();
    let user = postinst.find("systemd-sysusers").expect("postinst creates the user");
    let enable = postinst.find("deb-systemd-helper enable").expect("postinst enables the unit");
    let start = postinst.find("deb-systemd-invoke").expect("postinst starts the unit");
    assert!(user < enable && enable < start, "user, then enable, then start:\n{postinst}");

    let files = run_ok(Command::new("rpm").arg("-qlp").arg(rpm));
    for f in [
        "/usr/sbin/http-golden-exporter",
        "/usr/sbin/http-golden-exporter-top",
        "/usr/lib/systemd/system/http-golden-exporter.service",
        "/etc/http-golden-exporter/config.toml",
        "/usr/lib/sysusers.d/http-golden-exporter.conf",
        "/usr/share/man/man8/http-golden-exporter.8",
        "/usr/share/man/man5/http-golden-exporter.toml.5",
        "/usr/share/doc/http-golden-exporter/README.md",
        "/usr/share/doc/http-golden-exporter/web-config.example.yml",
        "/usr/share/licenses/http-golden-exporter/LICENSE",
    ] {
        assert!(files.lines().any(|l| l == f), "rpm lacks {f}:\n{files}");
    }
    for f in contrib_files() {
        assert!(files.lines().any(|l| l == f), "rpm lacks {f}:\n{files}");
    }
    let config = run_ok(Command::new("rpm").arg("-qcp").arg(rpm));
    assert_eq!(config.trim(), "/etc/http-golden-exporter/config.toml");
    let dump = run_ok(Command::new("rpm").args(["-qp", "--dump"]).arg(rpm));
    let conf = dump.lines().find(|l| l.starts_with("/etc/http-golden-exporter/config.toml ")).unwrap();
    // --dump: path size mtime digest mode owner group isconfig ...; noreplace shows in --qf below.
    assert_eq!(conf.split_whitespace().nth(7), Some("1"), "{conf}");
    let flags = run_ok(Command::new("rpm").args(["-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"]).arg(rpm));
    assert!(flags.lines().any(|l| l == "/etc/http-golden-exporter/config.toml cn"), "%config(noreplace):\n{flags}");
    let scripts = run_ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm));
    for s in ["systemd-sysusers", "preset http-golden-exporter.service", "disable --now", "try-restart"] {
        assert!(scripts.contains(s), "rpm scriptlets lack {s:?}:\n{scripts}");
    }
}

#[test]
fn one_command_builds_every_package_named_for_its_architecture_with_a_static_binary_and_checksums() {
    if !common::privileged(&["readelf", "rpm", "rpm2cpio", "cpio", "sha256sum", "ldd", "dpkg-deb"])
        || !packages::can_build()
    {
        return;
    }
    let built = packages::built();
    let dir = built.sums().parent().unwrap();
    let v = env!("CARGO_PKG_VERSION");
    let mut names: Vec<String> = built
        .files
        .iter()
        .inspect(|f| assert_eq!(f.parent(), Some(dir), "every file in one directory: {:?}", built.files))
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = vec![
        format!("http-golden-exporter_{v}-1_amd64.deb"),
        format!("http-golden-exporter_{v}-1_arm64.deb"),
        format!("http-golden-exporter-{v}-1.x86_64.rpm"),
        format!("http-golden-exporter-{v}-1.aarch64.rpm"),
        "SHA256SUMS".to_string(),
    ];
    want.sort();
    assert_eq!(names, want, "packaging/build prints the four packages and SHA256SUMS");

    // The checksums: one line for each package, each right.
    let sums = std::fs::read_to_string(built.sums()).unwrap();
    assert_eq!(sums.lines().count(), 4, "SHA256SUMS:\n{sums}");
    let checked = run_ok(Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(dir));
    assert_eq!(checked.lines().filter(|l| l.ends_with(": OK")).count(), 4, "sha256sum -c:\n{checked}");

    for arch in Arch::ALL {
        let (deb, rpm) = (built.deb(arch), built.rpm(arch));
        let deb_arch = run_ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Architecture"));
        assert_eq!(deb_arch.trim(), arch.deb(), "{}", deb.display());
        let rpm_arch = run_ok(Command::new("rpm").args(["-qp", "--qf", "%{ARCH}"]).arg(rpm));
        assert_eq!(rpm_arch.trim(), arch.rpm(), "{}", rpm.display());

        // No library among the dependencies: the binary carries its own.
        let depends = run_ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"));
        assert!(!depends.contains("lib"), "{} depends on a library: {depends}", deb.display());
        let requires = run_ok(Command::new("rpm").arg("-qpR").arg(rpm));
        for r in requires.lines() {
            assert!(
                !r.contains(".so") && !r.starts_with("lib") && !r.starts_with("rtld("),
                "{} requires a library or the dynamic linker: {r}\n{requires}",
                rpm.display()
            );
        }

        // The binaries: built for the architecture, static, the same in both packages.
        let unpacked = TempDir::new("hgrpm");
        let st = Command::new("sh")
            .arg("-c")
            .arg("rpm2cpio \"$1\" | cpio -idm --quiet ./usr/sbin/http-golden-exporter ./usr/sbin/http-golden-exporter-top")
            .arg("sh")
            .arg(rpm)
            .current_dir(unpacked.path())
            .status()
            .unwrap();
        assert!(st.success(), "rpm2cpio {}", rpm.display());
        for bin in [built.binary(arch), built.top_binary(arch)] {
            assert_static(&bin, arch);
            let name = bin.file_name().unwrap();
            let from_rpm = std::fs::read(unpacked.path().join("usr/sbin").join(name)).unwrap();
            assert!(
                from_rpm == std::fs::read(&bin).unwrap(),
                "the deb and the rpm for {arch:?} carry the same {name:?}"
            );
            eprintln!("{arch:?}: {name:?} {} bytes, static; {}", from_rpm.len(), depends.trim());
        }
    }

    // What a user checks on the host: ldd finds nothing to load, and both run.
    for bin in [built.binary(Arch::Amd64), built.top_binary(Arch::Amd64)] {
        let ldd = Command::new("ldd").arg(&bin).output().unwrap();
        let said = out(&ldd);
        assert!(said.contains("not a dynamic executable") || said.contains("statically linked"), "ldd: {said}");
        let version = run_ok(Command::new(&bin).arg("--version"));
        assert!(version.contains(v), "{}: {version}", bin.display());
    }
    eprintln!("packaging/build --profile dev took {:.0} s in this process", built.took.as_secs_f64());
}

/// `bin` is an executable for `arch` with no interpreter and no needed library.
fn assert_static(bin: &Path, arch: Arch) {
    let header = run_ok(Command::new("readelf").arg("-hW").arg(bin));
    let machine = header.lines().find(|l| l.trim_start().starts_with("Machine:")).unwrap_or_default();
    assert!(machine.contains(arch.elf_machine()), "{} is for {arch:?}: {machine}", bin.display());
    let segments = run_ok(Command::new("readelf").arg("-lW").arg(bin));
    assert!(!segments.contains("INTERP"), "{} asks for a dynamic linker:\n{segments}", bin.display());
    let dynamic = run_ok(Command::new("readelf").arg("-dW").arg(bin));
    assert!(!dynamic.contains("(NEEDED)"), "{} needs shared libraries:\n{dynamic}", bin.display());
}

// ---------------------------------------------------------------------------
// The real systemd.

/// An overlay on the cached tree: the test writes to `merged`, never to the cache.
struct Overlay {
    dir: TempDir,
}

impl Overlay {
    fn new(lower: &Path) -> Overlay {
        let dir = TempDir::new("hgovl");
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let o = Overlay { dir };
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            o.dir.path().join("upper").display(),
            o.dir.path().join("work").display()
        );
        run_ok(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(o.merged()));
        o
    }

    fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.merged()).status();
        let _ = Command::new("umount").arg("-l").arg(self.merged()).stderr(Stdio::null()).status();
    }
}

/// A booted container. Dropping it powers it off (then kills it).
struct Container {
    proc: Proc,
    leader: i32,
    log: PathBuf,
}

impl Container {
    fn boot(root: &Path, log: PathBuf) -> Container {
        let name = common::unique("hge");
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("-D")
            .arg(root)
            .args(["--boot", "--register=no", "--keep-unit", "-M", &name])
            .args([
                "--capability=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON,CAP_SYS_ADMIN,CAP_SYS_PTRACE,CAP_DAC_READ_SEARCH",
                "--system-call-filter=bpf",
            ])
            // The test's network namespaces, for targets that name them.
            .arg("--bind-ro=/run/netns")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        let proc = Proc::spawn(cmd, "systemd-nspawn");
        let mut c = Container { leader: 0, proc, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.leader == 0 {
            assert!(Instant::now() < deadline, "no container init appeared: {}", c.logs());
            if let Ok(Some(st)) = c.proc.child.try_wait() {
                panic!("systemd-nspawn exited with {st}: {}", c.logs());
            }
            c.leader = init_below(c.proc.pid()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // PID 1 exists before its bus does: ask until it answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = c.exec("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if matches!(state.as_str(), "running" | "degraded") {
                break;
            }
            assert!(Instant::now() < deadline, "boot: {}\n{}", out(&o), c.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn logs(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
        )
    }

    fn exec(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "/bin/sh", "-c", script])
            .env("SYSTEMD_PAGER", "")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap()
    }

    /// Run a shell script inside; it must succeed. Returns stdout.
    fn sh(&self, script: &str) -> String {
        let o = self.exec(script);
        assert!(o.status.success(), "in the container: {script}\n{}", out(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn show(&self, prop: &str) -> String {
        self.sh(&format!("systemctl show -p {prop} --value http-golden-exporter")).trim().to_string()
    }

    fn journal(&self) -> String {
        self.exec("journalctl -u http-golden-exporter --no-pager -o cat").stdout.iter().map(|b| *b as char).collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.proc.signal(nix::sys::signal::SIGTERM); // nspawn: power the container off
        if self.proc.wait_timeout(Duration::from_secs(20)).is_none() {
            eprintln!("container did not power off in 20 s; killing it");
        }
    }
}

/// The pid (in our namespace) of the process below `pid` that is PID 1 of its own namespace.
fn init_below(pid: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    for c in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
        let status = std::fs::read_to_string(format!("/proc/{c}/status")).unwrap_or_default();
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or("");
        if nspid.split_whitespace().count() > 1 && nspid.split_whitespace().last() == Some("1") {
            return Some(c);
        }
        if let Some(found) = init_below(c) {
            return Some(found);
        }
    }
    None
}

fn config(port: u16, targets: &str) -> String {
    format!("[web]\nlisten_address = \"127.0.0.1:{port}\"\n[metrics]\nscrape_interval = \"200ms\"\n{targets}")
}

fn target(name: &str, ns: &str, ifname: &str) -> String {
    format!("[[target]]\nname = \"{name}\"\ninterfaces = [\"{ifname}\"]\nnetns = \"{}\"\n", Pair::netns_path(ns))
}

fn scrape_until(port: u16, timeout: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + timeout;
    loop {
        let m = http_get(port, "/metrics").ok().filter(|(s, _)| *s == 200).map(|(_, b)| Metrics::parse(&b));
        match m {
            Some(m) if done(&m) || Instant::now() > deadline => return m,
            None if Instant::now() > deadline => panic!("no scrape from port {port}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn the_deb_installs_and_runs_under_a_real_systemd() {
    if !common::privileged(&["systemd-nspawn", "debootstrap", "nsenter", "ip", "nginx", "curl"])
        || !packages::can_build()
    {
        return;
    }
    // The x86_64 deb, with the static binary users install.
    let deb = packages::built().deb(Arch::Amd64);
    let tree = run_ok(&mut Command::new(repo().join(".ci/nspawn-tree")));
    let overlay = Overlay::new(Path::new(tree.trim()));
    let root = overlay.merged();

    let pair = Pair::new();
    let nginx = Nginx::start(&pair);
    let port = common::free_port();
    // The admin's config is there before the package: dpkg keeps it (--force-confold).
    std::fs::create_dir_all(root.join("etc/http-golden-exporter")).unwrap();
    let conf = root.join("etc/http-golden-exporter/config.toml");
    let server = target("server", &pair.server_ns, &pair.server_if);
    let client = target("client", &pair.client_ns, &pair.client_if);
    std::fs::write(&conf, config(port, &server)).unwrap();
    std::fs::copy(deb, root.join("root/http-golden-exporter.deb")).unwrap();

    let c = Container::boot(&root, overlay.dir.path().join("nspawn.log"));

    // Install: the postinst creates the user, enables and starts the service.
    c.sh("dpkg -i --force-confold /root/http-golden-exporter.deb");
    assert_eq!(c.show("ActiveState"), "active", "{}", c.journal());
    assert_eq!(c.sh("systemctl is-enabled http-golden-exporter").trim(), "enabled");
    assert_eq!(c.sh("id -u http-golden-exporter").trim().parse::<u32>().map(|u| u > 0), Ok(true));
    let v = c.exec("systemd-analyze verify /usr/lib/systemd/system/http-golden-exporter.service");
    assert!(v.status.success() && out(&v).trim().is_empty(), "systemd-analyze verify:\n{}", out(&v));
    assert!(c.sh("man -w http-golden-exporter.toml").contains("man5"));

    // Type=notify: active means READY=1 came, i.e. attached and read once.
    assert_eq!(c.show("Type"), "notify");
    assert_eq!(c.show("WatchdogUSec"), "30s", "the watchdog is armed");
    let status = c.show("StatusText");
    assert!(status.starts_with("1 targets, 2 programs attached; "), "STATUS=: {status}");
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if).matches(&common::ours(common::auto_mode())).count(), 2);

    // The processes: the attacher (MainPID) as the user with six capabilities, the exporter with none.
    let main = c.show("MainPID");
    let kids = c.sh(&format!("cat /proc/{main}/task/{main}/children"));
    let exporter = kids.split_whitespace().next().unwrap_or_else(|| panic!("no exporter: {}", c.journal()));
    let st = |pid: &str| c.sh(&format!("grep -E '^(Uid|CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs)' /proc/{pid}/status"));
    let exp_status = st(exporter);
    for k in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert!(exp_status.contains(&format!("{k}:\t0000000000000000")), "exporter {k}:\n{exp_status}");
    }
    assert!(exp_status.contains("NoNewPrivs:\t1"), "{exp_status}");
    let main_status = st(&main);
    assert!(
        main_status.contains("CapEff:\t000000c000281004"),
        "attacher: BPF PERFMON SYS_ADMIN SYS_PTRACE NET_ADMIN DAC_READ_SEARCH:\n{main_status}"
    );
    assert!(!main_status.contains("Uid:\t0"), "the attacher is not root:\n{main_status}");

    // Traffic through the test's veth, scraped from the host.
    for _ in 0..3 {
        curl(&pair, &[format!("http://{SERVER_V4}/ok")]);
    }
    curl(&pair, &[format!("http://{SERVER_V4}/missing")]);
    let sent = (nginx.count('2', "/ok") + nginx.count('4', "/missing")) as f64;
    let server_total = |m: &Metrics| m.sum("http_server_requests_total", &[("target", "server")]);
    let m = scrape_until(port, Duration::from_secs(10), |m| server_total(m) == sent);
    assert_eq!(server_total(&m), sent, "{}", m.text);
    assert_eq!(
        m.sum("http_server_request_duration_seconds_count", &[("target", "server"), ("status_class", "4xx")]),
        1.0
    );

    // systemctl reload: a new target starts counting, the old one continues.
    std::fs::write(&conf, config(port, &format!("{server}{client}"))).unwrap();
    c.sh("systemctl reload http-golden-exporter");
    let m = scrape_until(port, Duration::from_secs(10), |m| {
        m.has("http_golden_exporter_attached", &[("target", "client"), ("direction", "egress")])
    });
    assert!(m.has("http_golden_exporter_attached", &[("target", "client")]), "{}\n{}", m.text, c.journal());
    for _ in 0..2 {
        curl(&pair, &[format!("http://{SERVER_V4}/ok")]);
    }
    let client_total = |m: &Metrics| m.sum("http_client_requests_total", &[("target", "client")]);
    let m = scrape_until(port, Duration::from_secs(10), |m| server_total(m) == sent + 2.0 && client_total(m) == 2.0);
    assert_eq!(server_total(&m), sent + 2.0, "unchanged target kept its counters");
    assert_eq!(client_total(&m), 2.0, "new target counts");
    assert_eq!(c.show("ActiveState"), "active");
    assert_eq!(c.show("MainPID"), main, "reloaded, not restarted");
    assert!(c.journal().contains("reloaded: 1 targets unchanged, 1 added, 0 removed"), "{}", c.journal());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.show("StatusText").starts_with("2 targets, 4 programs attached; ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.show("StatusText").starts_with("2 targets, 4 programs attached; "), "{}", c.show("StatusText"));

    // The watchdog is fed: with WatchdogSec=1s (a drop-in) the service outlives several periods.
    c.sh("mkdir -p /etc/systemd/system/http-golden-exporter.service.d && \
          printf '[Service]\\nWatchdogSec=1s\\n' > /etc/systemd/system/http-golden-exporter.service.d/wd.conf && \
          systemctl daemon-reload && systemctl restart http-golden-exporter");
    assert_eq!(c.show("WatchdogUSec"), "1s");
    let main = c.show("MainPID");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.show("ActiveState"), "active", "{}", c.journal());
    assert_eq!(c.show("MainPID"), main, "no watchdog restart:\n{}", c.journal());
    assert_eq!(c.show("NRestarts"), "0");
    assert!(c.show("WatchdogTimestampMonotonic").parse::<u64>().unwrap() > 0, "WATCHDOG=1 received");

    // Stop: clean result, nothing attached anywhere.
    c.sh("systemctl stop http-golden-exporter");
    assert_eq!(c.show("ActiveState"), "inactive");
    assert_eq!(c.show("Result"), "success", "{}", c.journal());
    for (ns, i) in [(&pair.server_ns, &pair.server_if), (&pair.client_ns, &pair.client_if)] {
        assert_eq!(bpf_attached(ns, i), "", "still attached on {i} after stop");
    }
    let journal = c.journal();
    assert!(journal.contains("with no capabilities"), "{journal}");
    assert!(journal.contains("detached 4 programs"), "{journal}");
    assert!(!journal.to_lowercase().contains("watchdog timeout"), "{journal}");
    assert!(!journal.contains("libbpf"), "ExecStopPost --cleanup is quiet: {journal}");
    drop(c);
    drop(overlay);
}
