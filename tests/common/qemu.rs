//! Debian's kernel packages booted under QEMU, with an initramfs built here:
//! busybox, the binaries under test and the shared libraries they load, a
//! few modules from the kernel package, and an /init script. The guest writes
//! its report to the second serial port (the first is the kernel's console)
//! in sections the host parses: `@@begin NAME`, output, `@@end NAME STATUS
//! SECONDS` (tests/kernels/init.sh writes them).
//!
//! `.ci/kernels` unpacks the packages under /var/cache/hge-kernels (or
//! $HGE_KERNEL_CACHE), one directory per package. KVM is used where a guest
//! boots with it, TCG (`-cpu max`) elsewhere; $HGE_QEMU_ACCEL (kvm or tcg)
//! decides instead.
//!
//! arm64 kernels (a package named `...-arm64-...`) boot under
//! qemu-system-aarch64 (`-M virt`, TCG): busybox, iproute2 and bpftool come
//! from Debian's arm64 packages (`arm64-userland` in the cache, unpacked by
//! `.ci/kernels`), with the libraries they load; the virt machine has one
//! UART, the console, so the report goes to a virtio console (/dev/hvc0),
//! whose modules init.sh loads first where the kernel has them as modules.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{in_ci, which, Proc, TempDir};

/// The machine a kernel package is built for, and how QEMU runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Debian names arm64 kernel packages `...-arm64-...`.
    fn of_package(name: &str) -> Arch {
        if name.contains("-arm64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The kernel's console, and where the guest writes its report.
    fn console_and_report(self) -> (&'static str, &'static str) {
        match self {
            Arch::X86_64 => ("ttyS0", "/dev/ttyS1"),
            Arch::Aarch64 => ("ttyAMA0", "/dev/hvc0"),
        }
    }

    /// The modules the report's device needs, in the order they load (those
    /// a kernel has built in are not in its package).
    fn report_modules(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[],
            Arch::Aarch64 => &["virtio_ring", "virtio", "virtio_mmio", "virtio_console"],
        }
    }

    /// The root of the guest's tools: the host's own, or Debian's arm64
    /// packages unpacked by .ci/kernels.
    fn userland(self) -> Option<PathBuf> {
        match self {
            Arch::X86_64 => None,
            Arch::Aarch64 => Some(kernel_cache().join("arm64-userland")),
        }
    }
}

/// Where `.ci/kernels` unpacks the kernel packages.
pub fn kernel_cache() -> PathBuf {
    std::env::var_os("HGE_KERNEL_CACHE").map_or_else(|| PathBuf::from("/var/cache/hge-kernels"), PathBuf::from)
}

/// An unpacked kernel package: `boot/vmlinuz-RELEASE` and `lib/modules/RELEASE/`.
pub struct Kernel {
    pub package: String,
    pub root: PathBuf,
    pub release: String,
    pub arch: Arch,
}

impl Kernel {
    /// The newest package in the cache named `prefix` VERSION `suffix`.
    pub fn newest(prefix: &str, suffix: &str) -> Option<Kernel> {
        let numbers =
            |s: &str| -> Vec<u64> { s.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect() };
        let mut found: Vec<(Vec<u64>, String)> = fs::read_dir(kernel_cache())
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.len() > prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix))
            .map(|n| (numbers(&n[prefix.len()..n.len() - suffix.len()]), n))
            .collect();
        found.sort();
        let (_, package) = found.pop()?;
        let root = kernel_cache().join(&package);
        let release = fs::read_dir(root.join("lib/modules")).ok()?.next()?.ok()?.file_name().into_string().ok()?;
        let arch = Arch::of_package(&package);
        root.join(format!("boot/vmlinuz-{release}")).is_file().then_some(Kernel { package, root, release, arch })
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    /// The module's file in the package (`NAME.ko`, or `NAME.ko.xz` from 6.x on).
    fn module(&self, name: &str) -> Option<PathBuf> {
        let mut dirs = vec![self.root.join("lib/modules").join(&self.release).join("kernel")];
        while let Some(dir) = dirs.pop() {
            for e in fs::read_dir(&dir).ok()?.flatten() {
                let p = e.path();
                let file = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() {
                    dirs.push(p);
                } else if file == format!("{name}.ko") || file == format!("{name}.ko.xz") {
                    return Some(p);
                }
            }
        }
        None
    }
}

/// Commands the host needs to build and boot a guest.
const HOST_TOOLS: &[&str] = &["cpio", "xz", "strip", "busybox", "ldd", "readelf", "aarch64-linux-gnu-strip"];

/// The kernel package `prefix` VERSION `suffix` and the tools to boot it, or
/// None after a message saying what is missing. Under CI=true a missing
/// package or tool is a failure, never a skip.
pub fn require(prefix: &str, suffix: &str, guest_tools: &[&str]) -> Option<Kernel> {
    let arch = Arch::of_package(suffix);
    let mut missing: Vec<String> = HOST_TOOLS
        .iter()
        .chain(&[arch.qemu()])
        .filter(|t| which(t).is_none())
        .map(|t| format!("the `{t}` command"))
        .collect();
    for t in guest_tools {
        if guest_tool(arch, t).is_none() {
            missing.push(match arch.userland() {
                None => format!("the `{t}` command"),
                Some(root) => format!("`{t}` for arm64 in {} (.ci/kernels unpacks it)", root.display()),
            });
        }
    }
    let kernel = Kernel::newest(prefix, suffix);
    if kernel.is_none() {
        missing.push(format!(
            "the kernel package {prefix}*{suffix} unpacked in {} (.ci/kernels fetches it)",
            kernel_cache().display()
        ));
    }
    if missing.is_empty() {
        return kernel;
    }
    let msg = format!("this test needs {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: the kernel matrix must run; .ci/deps installs all of it)");
    }
    eprintln!("SKIPPED: {msg}; run .ci/deps to install them");
    None
}

/// The guest's own copy of the command `name`: the host's, or the one in
/// the arm64 tools.
fn guest_tool(arch: Arch, name: &str) -> Option<PathBuf> {
    match arch.userland() {
        None => which(name),
        Some(root) => ["usr/sbin", "usr/bin", "sbin", "bin"]
            .iter()
            .map(|d| resolve_in(&root, &format!("{d}/{name}")))
            .find(|p| p.is_file()),
    }
}

/// The libraries a program built for another architecture loads, from
/// `root` (Debian's layout): its interpreter and every DT_NEEDED library,
/// and theirs, as (path in the guest, file on the host).
fn foreign_libraries(root: &Path, program: &Path) -> Vec<(String, PathBuf)> {
    let between = |line: &str, start: &str, end: &str| -> Option<String> {
        let rest = &line[line.find(start)? + start.len()..];
        Some(rest[..rest.find(end)?].to_string())
    };
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let mut todo = vec![program.to_path_buf()];
    while let Some(file) = todo.pop() {
        let out = Command::new("readelf").args(["-W", "-l", "-d"]).arg(&file).output().expect("readelf");
        assert!(out.status.success(), "readelf {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let guest = if let Some(interp) = between(line, "[Requesting program interpreter: ", "]") {
                interp
            } else if let Some(soname) =
                line.contains("(NEEDED)").then(|| between(line, "Shared library: [", "]")).flatten()
            {
                let dir = ["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"]
                    .into_iter()
                    .find(|d| resolve_in(root, &format!("{d}/{soname}")).is_file())
                    .unwrap_or_else(|| panic!("{} needs {soname}, which {} lacks", file.display(), root.display()));
                format!("/{dir}/{soname}")
            } else {
                continue;
            };
            if !found.iter().any(|(g, _)| *g == guest) {
                let host = resolve_in(root, &guest);
                found.push((guest, host.clone()));
                todo.push(host);
            }
        }
    }
    found
}

/// `path` inside `root`, its symbolic links followed there (an absolute
/// target is taken relative to `root`).
fn resolve_in(root: &Path, path: &str) -> PathBuf {
    let mut p = root.join(path.trim_start_matches('/'));
    for _ in 0..40 {
        match fs::read_link(&p) {
            Ok(t) if t.is_absolute() => p = root.join(t.strip_prefix("/").unwrap()),
            Ok(t) => p = p.parent().unwrap().join(t),
            Err(_) => break,
        }
    }
    p
}

/// A root file system being filled, packed by `pack` into an initramfs.
pub struct Initramfs {
    root: TempDir,
    arch: Arch,
}

impl Initramfs {
    /// Busybox with every applet it has, the directories a system needs,
    /// and the users root and nobody, for `kernel`'s architecture.
    pub fn new(kernel: &Kernel) -> Initramfs {
        let fs = Initramfs::for_arch(kernel.arch);
        fs.report_modules(kernel);
        fs
    }

    fn for_arch(arch: Arch) -> Initramfs {
        let fs = Initramfs { root: TempDir::new("hgrootfs"), arch };
        for d in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "root",
            "lib/modules/report",
        ] {
            fs::create_dir_all(fs.path(d)).unwrap();
        }
        let busybox = guest_tool(arch, "busybox").expect("busybox");
        fs::copy(&busybox, fs.path("bin/busybox")).unwrap();
        // The applets of the host's busybox (the same Debian release's as the
        // arm64 one, which cannot run here).
        let out = Command::new(which("busybox").expect("busybox")).arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            // A link named busybox pointing at itself would be a loop (ELOOP).
            if applet != "busybox" && !fs.path(&format!("bin/{applet}")).exists() {
                symlink("busybox", fs.path(&format!("bin/{applet}"))).unwrap();
            }
        }
        fs.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
        fs.file("etc/group", "root:x:0:\nnogroup:x:65534:\n");
        fs
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    /// A text file at `dest` (absolute in the guest).
    pub fn file(&self, dest: &str, text: &str) {
        let p = self.path(dest);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
    }

    /// An executable script at `dest`.
    pub fn script(&self, dest: &str, text: &str) {
        self.file(dest, text);
        fs::set_permissions(self.path(dest), fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The program at `src`, stripped of debug information, at `dest`, with
    /// every shared library it loads, at the same paths. Returns how many
    /// libraries that took (none for a static program).
    pub fn binary(&self, src: &Path, dest: &str) -> usize {
        let p = self.path(dest);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let strip = match self.arch {
            Arch::X86_64 => "strip",
            Arch::Aarch64 => "aarch64-linux-gnu-strip",
        };
        let st = Command::new(strip).arg("--strip-debug").arg("-o").arg(&p).arg(src).status().expect("strip");
        assert!(st.success(), "{strip} {} failed", src.display());
        let libs = match self.arch.userland() {
            None => {
                let ldd = Command::new("ldd").arg(src).output().expect("ldd");
                String::from_utf8_lossy(&ldd.stdout)
                    .split_whitespace()
                    .filter(|w| w.starts_with('/'))
                    .map(|w| (w.to_string(), PathBuf::from(w)))
                    .collect()
            }
            Some(root) => foreign_libraries(&root, src),
        };
        for (dest, src) in &libs {
            let lib = self.path(dest);
            if !lib.exists() {
                fs::create_dir_all(lib.parent().unwrap()).unwrap();
                // Libraries are symlinks: copy what they point at.
                fs::copy(src, &lib).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
            }
        }
        libs.len()
    }

    /// The guest's own copy of the command `name` (see `require`) at `dest`.
    pub fn tool(&self, name: &str, dest: &str) {
        let src = guest_tool(self.arch, name).unwrap_or_else(|| panic!("no {name} for {:?}", self.arch));
        self.binary(&src, dest);
    }

    /// The kernel's modules `names` as /lib/modules/NAME.ko, uncompressed
    /// (busybox insmod reads no xz).
    pub fn modules(&self, kernel: &Kernel, names: &[&str]) {
        for name in names {
            let src = kernel.module(name).unwrap_or_else(|| panic!("{} has no module {name}", kernel.package));
            self.module_file(&src, &format!("lib/modules/{name}.ko"));
        }
    }

    /// The modules the report's device needs, where `kernel` has them as
    /// modules, as /lib/modules/report/N-NAME.ko (init.sh loads them first,
    /// in that order).
    fn report_modules(&self, kernel: &Kernel) {
        for (i, name) in kernel.arch.report_modules().iter().enumerate() {
            if let Some(src) = kernel.module(name) {
                self.module_file(&src, &format!("lib/modules/report/{i}-{name}.ko"));
            }
        }
    }

    fn module_file(&self, src: &Path, dest: &str) {
        let dest = self.path(dest);
        if src.extension().is_some_and(|x| x == "xz") {
            let out = fs::File::create(&dest).unwrap();
            let st = Command::new("xz").arg("-dc").arg(src).stdout(out).status().expect("xz");
            assert!(st.success(), "xz -dc {} failed", src.display());
        } else {
            fs::copy(src, &dest).unwrap();
        }
    }

    /// The newc cpio archive the kernel unpacks, uncompressed (nothing to
    /// decompress under TCG), every file owned by root.
    pub fn pack(&self, out: &Path) {
        let archive = fs::File::create(out).unwrap();
        let st = Command::new("sh")
            .args(["-c", "find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet"])
            .current_dir(self.root.path())
            .stdout(archive)
            .status()
            .expect("cpio");
        assert!(st.success(), "cpio failed");
    }
}

/// What a guest wrote, and how long it ran.
pub struct Guest {
    /// The kernel's console (ttyS0).
    pub console: String,
    /// The report (ttyS1; on arm64, hvc0).
    pub report: Report,
    pub took: Duration,
    /// True if QEMU was stopped at the deadline.
    pub timed_out: bool,
    pub accel: &'static str,
}

impl Guest {
    /// The end of the console and of the report, for failure messages.
    pub fn tail(&self) -> String {
        format!(
            "{}--- guest report (last 60 lines) ---\n{}\n---",
            self.console_tail(),
            last_lines(&self.report.text, 60)
        )
    }

    /// The end of the console alone.
    pub fn console_tail(&self) -> String {
        format!("--- guest console (last 40 lines) ---\n{}\n", last_lines(&self.console, 40))
    }
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The guest's report, by section.
pub struct Report {
    pub text: String,
    sections: BTreeMap<String, Section>,
}

#[derive(Default)]
struct Section {
    output: String,
    /// None while the section has not ended.
    status: Option<i32>,
    seconds: Option<f64>,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let text = text.replace('\r', "");
        let mut sections = BTreeMap::new();
        let mut open: Option<(String, Section)> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("@@begin ") {
                open = Some((name.trim().to_string(), Section::default()));
            } else if let Some(rest) = line.strip_prefix("@@end ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let (Some((name, mut section)), [ended, status, seconds]) = (open.take(), words.as_slice()) {
                    if name == *ended {
                        section.status = status.parse().ok();
                        section.seconds = seconds.parse().ok();
                        sections.insert(name, section);
                    }
                }
            } else if let Some((_, section)) = open.as_mut() {
                section.output.push_str(line);
                section.output.push('\n');
            }
        }
        // A section the guest began and never ended (it stopped in the middle).
        if let Some((name, section)) = open {
            sections.insert(name, section);
        }
        Report { text, sections }
    }

    /// A section's output, if the guest began it.
    pub fn output(&self, name: &str) -> Option<&str> {
        self.sections.get(name).map(|s| s.output.as_str())
    }

    /// A section's exit status: None if it is missing or never ended.
    pub fn status(&self, name: &str) -> Option<i32> {
        self.sections.get(name).and_then(|s| s.status)
    }

    /// How long a section took, by the guest's clock.
    pub fn seconds(&self, name: &str) -> Option<f64> {
        self.sections.get(name).and_then(|s| s.seconds)
    }
}

/// Boot `kernel` with `initramfs` (packed here), one CPU and `memory_mb`,
/// and wait for it to power off, at most `timeout`.
pub fn boot(kernel: &Kernel, initramfs: &Initramfs, memory_mb: u32, timeout: Duration) -> Guest {
    let dir = TempDir::new("hgqemu");
    let initrd = dir.path().join("initrd.cpio");
    initramfs.pack(&initrd);
    let accel = accel(kernel);
    run_qemu(kernel, &initrd, &dir, accel, memory_mb, timeout)
}

fn run_qemu(
    kernel: &Kernel,
    initrd: &Path,
    dir: &TempDir,
    accel: &'static str,
    memory_mb: u32,
    timeout: Duration,
) -> Guest {
    let console = dir.path().join("console.txt");
    let report = dir.path().join("report.txt");
    let mut cmd = Command::new(kernel.arch.qemu());
    match accel {
        "kvm" => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        _ => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    cmd.args(["-m", &memory_mb.to_string(), "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()));
    match kernel.arch {
        Arch::X86_64 => cmd.arg("-serial").arg(format!("file:{}", report.display())),
        Arch::Aarch64 => cmd
            .args(["-M", "virt", "-device", "virtio-serial-device", "-chardev"])
            .arg(format!("file,id=report,path={}", report.display()))
            .args(["-device", "virtconsole,chardev=report"]),
    };
    // The kernel hands report=DEVICE, a parameter it does not know, to init
    // as an environment variable.
    let (tty, report_device) = kernel.arch.console_and_report();
    cmd.arg("-kernel")
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &format!("console={tty} panic=-1 quiet report={report_device}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.path().join("qemu.txt")).unwrap());
    let started = Instant::now();
    let mut qemu = Proc::spawn(cmd, kernel.arch.qemu());
    let timed_out = qemu.wait_timeout(timeout).is_none();
    drop(qemu);
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).replace('\r', "");
    let mut console_text = read(&console);
    let qemu_err = read(&dir.path().join("qemu.txt"));
    if !qemu_err.trim().is_empty() {
        console_text.push_str(&format!("\n[qemu's own messages]\n{qemu_err}"));
    }
    Guest { console: console_text, report: Report::parse(&read(&report)), took: started.elapsed(), timed_out, accel }
}

/// KVM if $HGE_QEMU_ACCEL says so, or if /dev/kvm opens and a guest boots
/// with it (nested KVM in some VMs stops on the first instruction it cannot
/// emulate); TCG otherwise, and always for another architecture's kernel.
/// Decided once per test process.
fn accel(kernel: &Kernel) -> &'static str {
    let host = if cfg!(target_arch = "aarch64") { Arch::Aarch64 } else { Arch::X86_64 };
    if kernel.arch != host {
        return "tcg";
    }
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("HGE_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ if fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() => "tcg",
        _ => {
            let probe = Initramfs::new(kernel);
            probe.script(
                "init",
                "#!/bin/sh\necho '@@begin probe' > /dev/ttyS1\necho '@@end probe 0' > /dev/ttyS1\npoweroff -f\n",
            );
            let dir = TempDir::new("hgqemu");
            let initrd = dir.path().join("initrd.cpio");
            probe.pack(&initrd);
            let guest = run_qemu(kernel, &initrd, &dir, "kvm", 256, Duration::from_secs(60));
            if guest.report.status("probe") == Some(0) {
                "kvm"
            } else {
                eprintln!("KVM does not boot a guest here; QEMU emulates (TCG):\n{}", last_lines(&guest.console, 5));
                "tcg"
            }
        }
    })
}
