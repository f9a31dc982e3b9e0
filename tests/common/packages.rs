//! The packages, as users get them: `packaging/build --profile dev` makes the
//! deb and the rpm for x86_64 and arm64 (static musl binaries, the arm64 one
//! cross-compiled) once per test process, from debug builds, into this test
//! run's target directory. Tests that run the exporter from a package take
//! its binaries out of the deb.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{in_ci, which};

/// An architecture the packages are built for, as each format names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's name, also `packaging/build --arch`'s.
    pub fn deb(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// RPM's name.
    pub fn rpm(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The ELF header's machine, as `readelf -h` prints it.
    pub fn elf_machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "Advanced Micro Devices X86-64",
            Arch::Arm64 => "AArch64",
        }
    }
}

/// What packaging/build needs besides cargo (.ci/deps installs all of it).
const TOOLS: &[&str] = &[
    "cargo-deb",
    "cargo-generate-rpm",
    "dpkg-deb",
    "rpm",
    "rpm2cpio",
    "cpio",
    "readelf",
    "sha256sum",
    "x86_64-linux-gnu-gcc",
    "aarch64-linux-gnu-gcc",
    "aarch64-linux-gnu-strip",
    "autoreconf",
    "autopoint",
    "flex",
    "bison",
    "gawk",
];

/// True if the packages can be built here. Otherwise a message says what is
/// missing, and under CI=true that is a failure, never a skip.
pub fn can_build() -> bool {
    let mut missing: Vec<String> = TOOLS.iter().filter(|t| which(t).is_none()).map(|t| format!("`{t}`")).collect();
    for f in ["/usr/lib/x86_64-linux-musl/musl-gcc.specs", "/usr/lib/aarch64-linux-musl/musl-gcc.specs"] {
        if !Path::new(f).exists() {
            missing.push(f.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("building the packages needs {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: the packages must be built; .ci/deps installs all of it)");
    }
    eprintln!("SKIPPED: {msg}; run .ci/deps to install them");
    false
}

/// What one run of packaging/build made.
pub struct Built {
    /// The paths it printed, in order.
    pub files: Vec<PathBuf>,
    /// How long it took (cargo's part included: nothing, when it is up to date).
    pub took: std::time::Duration,
    unpacked: [OnceLock<PathBuf>; 2],
}

impl Built {
    fn find(&self, suffix: &str) -> &Path {
        self.files
            .iter()
            .find(|f| f.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("packaging/build made no file ending in {suffix}: {:?}", self.files))
    }

    pub fn deb(&self, arch: Arch) -> &Path {
        self.find(&format!("_{}.deb", arch.deb()))
    }

    pub fn rpm(&self, arch: Arch) -> &Path {
        self.find(&format!(".{}.rpm", arch.rpm()))
    }

    pub fn sums(&self) -> &Path {
        self.find("/SHA256SUMS")
    }

    /// The daemon in `arch`'s deb, unpacked under the target directory
    /// (once per test process).
    pub fn binary(&self, arch: Arch) -> PathBuf {
        self.unpacked(arch).join("usr/sbin/http-golden-exporter")
    }

    /// The terminal view in `arch`'s deb (`http-golden-exporter top` runs it).
    pub fn top_binary(&self, arch: Arch) -> PathBuf {
        self.unpacked(arch).join("usr/sbin/http-golden-exporter-top")
    }

    /// `arch`'s deb, unpacked under the target directory once per test process.
    fn unpacked(&self, arch: Arch) -> &Path {
        self.unpacked[arch as usize].get_or_init(|| {
            let dir = target_dir().join("packaged").join(arch.deb());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let st = Command::new("dpkg-deb").arg("-x").arg(self.deb(arch)).arg(&dir).status().expect("dpkg-deb");
            assert!(st.success(), "dpkg-deb -x {} failed", self.deb(arch).display());
            dir
        })
    }
}

/// The target directory of this test run (its executables are in
/// TARGET/PROFILE/deps/).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).and_then(Path::parent).expect("the test runs from TARGET/PROFILE/deps").into()
}

/// Every package, built by the documented command from debug builds, once per
/// test process.
pub fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let started = std::time::Instant::now();
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/build"))
            .args(["--profile", "dev"])
            .env("CARGO_TARGET_DIR", target_dir())
            .output()
            .expect("running packaging/build");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "packaging/build --profile dev failed ({}):\n{stdout}\n{}",
            out.status,
            super::qemu::last_lines(&String::from_utf8_lossy(&out.stderr), 60)
        );
        let files: Vec<PathBuf> = stdout.lines().filter(|l| l.starts_with('/')).map(PathBuf::from).collect();
        let took = started.elapsed();
        eprintln!("packaging/build --profile dev: {:.0} s", took.as_secs_f64());
        Built { files, took, unpacked: [OnceLock::new(), OnceLock::new()] }
    })
}
