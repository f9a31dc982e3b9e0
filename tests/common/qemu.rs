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

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{in_ci, which, Proc, TempDir};

/// Where `.ci/kernels` unpacks the kernel packages.
pub fn kernel_cache() -> PathBuf {
    std::env::var_os("HGE_KERNEL_CACHE").map_or_else(|| PathBuf::from("/var/cache/hge-kernels"), PathBuf::from)
}

/// An unpacked kernel package: `boot/vmlinuz-RELEASE` and `lib/modules/RELEASE/`.
pub struct Kernel {
    pub package: String,
    pub root: PathBuf,
    pub release: String,
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
        root.join(format!("boot/vmlinuz-{release}")).is_file().then_some(Kernel { package, root, release })
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
const HOST_TOOLS: &[&str] = &["qemu-system-x86_64", "cpio", "xz", "strip", "busybox", "ldd"];

/// The kernel package `prefix` VERSION `suffix` and the tools to boot it, or
/// None after a message saying what is missing. Under CI=true a missing
/// package or tool is a failure, never a skip.
pub fn require(prefix: &str, suffix: &str, guest_tools: &[&str]) -> Option<Kernel> {
    let mut missing: Vec<String> = HOST_TOOLS
        .iter()
        .chain(guest_tools)
        .filter(|t| which(t).is_none())
        .map(|t| format!("the `{t}` command"))
        .collect();
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

/// A root file system being filled, packed by `pack` into an initramfs.
pub struct Initramfs {
    root: TempDir,
}

impl Initramfs {
    /// Busybox with every applet it has, the directories a system needs,
    /// and the users root and nobody.
    pub fn new() -> Initramfs {
        let fs = Initramfs { root: TempDir::new("hgrootfs") };
        for d in
            ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "lib/modules"]
        {
            fs::create_dir_all(fs.path(d)).unwrap();
        }
        let busybox = which("busybox").expect("busybox");
        fs::copy(&busybox, fs.path("bin/busybox")).unwrap();
        let out = Command::new(&busybox).arg("--list").output().expect("busybox --list");
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
    /// every shared library `ldd` says it loads, at the same paths.
    pub fn binary(&self, src: &Path, dest: &str) {
        let p = self.path(dest);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let st = Command::new("strip").arg("--strip-debug").arg("-o").arg(&p).arg(src).status().expect("strip");
        assert!(st.success(), "strip {} failed", src.display());
        let ldd = Command::new("ldd").arg(src).output().expect("ldd");
        for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if word.starts_with('/') && !self.path(word).exists() {
                let lib = self.path(word);
                fs::create_dir_all(lib.parent().unwrap()).unwrap();
                // Libraries are symlinks on the host: copy what they point at.
                fs::copy(word, &lib).unwrap_or_else(|e| panic!("copying {word}: {e}"));
            }
        }
    }

    /// The kernel's modules `names` as /lib/modules/NAME.ko, uncompressed
    /// (busybox insmod reads no xz).
    pub fn modules(&self, kernel: &Kernel, names: &[&str]) {
        for name in names {
            let src = kernel.module(name).unwrap_or_else(|| panic!("{} has no module {name}", kernel.package));
            let dest = self.path(&format!("lib/modules/{name}.ko"));
            if src.extension().is_some_and(|x| x == "xz") {
                let out = fs::File::create(&dest).unwrap();
                let st = Command::new("xz").arg("-dc").arg(&src).stdout(out).status().expect("xz");
                assert!(st.success(), "xz -dc {} failed", src.display());
            } else {
                fs::copy(&src, &dest).unwrap();
            }
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
    /// The report (ttyS1).
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
    let mut cmd = Command::new("qemu-system-x86_64");
    match accel {
        "kvm" => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        _ => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    cmd.args(["-m", &memory_mb.to_string(), "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", report.display()))
        .arg("-kernel")
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.path().join("qemu.txt")).unwrap());
    let started = Instant::now();
    let mut qemu = Proc::spawn(cmd, "qemu-system-x86_64");
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
/// emulate); TCG otherwise. Decided once per test process.
fn accel(kernel: &Kernel) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("HGE_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ if fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() => "tcg",
        _ => {
            let probe = Initramfs::new();
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
