//! Real podman containers for the tests: busybox httpd from a root filesystem
//! made on the spot (no image registry). Networks use 198.18.0.0/15 only.
//! Every container and network is removed on drop.
//!
//! The flags let podman run where the tests do, a VM or a container itself:
//! with hybrid cgroups crun fails ("cgroups in hybrid mode not supported"), so
//! runc, with the cgroupfs manager (there may be no systemd to ask); without
//! CAP_SYS_RESOURCE podman's default ulimits fail ("setrlimit RLIMIT_NOFILE:
//! Operation not permitted"), so limits no higher than ours.

use std::process::{Command, Output};

use super::{run, unique, which, TempDir};

pub fn podman(args: &[&str]) -> Output {
    let mut all = vec!["--runtime", "runc", "--cgroup-manager", "cgroupfs"];
    all.extend_from_slice(args);
    Command::new("podman").args(&all).output().expect("running podman")
}

/// Whether an ELF executable has no program interpreter (PT_INTERP): linked
/// statically, it needs no library from the root it runs in.
fn is_static(path: &std::path::Path) -> bool {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "{}: not a 64-bit little-endian ELF",
        path.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) != PT_INTERP
    })
}

/// Where a container's network comes from.
pub enum Net<'a> {
    /// Its own namespace, with loopback only.
    None,
    /// The network namespace at this path (`--network ns:PATH`).
    Ns(&'a str),
    /// A podman bridge network (`Bridge::new`), with host port `publish` forwarded to 8080.
    Bridge(&'a Bridge, Option<u16>),
}

/// A busybox httpd serving "hello" on port 8080.
pub struct Container {
    pub name: String,
    _rootfs: TempDir,
}

impl Container {
    pub fn start(prefix: &str, net: Net) -> Container {
        let rootfs = TempDir::new("hgdroot");
        let r = rootfs.path();
        for d in ["bin", "www", "etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        // Alone in the container's root: a dynamically linked busybox would find no libc there.
        let busybox = which("busybox").expect("busybox");
        assert!(is_static(&busybox), "{} is linked dynamically: the containers need busybox-static", busybox.display());
        std::fs::copy(&busybox, r.join("bin/busybox")).unwrap();
        for l in ["sh", "httpd"] {
            std::os::unix::fs::symlink("busybox", r.join("bin").join(l)).unwrap();
        }
        std::fs::write(r.join("www/index.html"), "hello\n").unwrap();
        let c = Container { name: unique(prefix), _rootfs: rootfs };
        let root = c._rootfs.path().to_str().unwrap().to_string();
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), c.name.clone()];
        match net {
            Net::None => args.extend(["--network".into(), "none".into()]),
            Net::Ns(p) => args.extend(["--network".into(), format!("ns:{p}")]),
            Net::Bridge(b, publish) => {
                args.extend(["--network".into(), b.name.clone()]);
                if let Some(port) = publish {
                    args.extend(["-p".into(), format!("{port}:8080")]);
                }
            }
        }
        for a in ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096", "--rootfs", &root] {
            args.push(a.into());
        }
        for a in ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"] {
            args.push(a.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = podman(&args);
        assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
        // podman returns once the process runs, which may be before httpd listens.
        super::wait_listening(c.pid() as i32, 8080);
        c
    }

    fn inspect(&self, format: &str) -> String {
        let out = podman(&["inspect", "-f", format, &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.inspect("{{.State.Pid}}").parse().expect("the container's pid")
    }

    /// Its address on a bridge network.
    pub fn address(&self) -> String {
        let a = self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
        assert!(a.starts_with("198.18."), "container address {a:?} outside the test range");
        a
    }

    pub fn remove(&self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A podman bridge network on a /24 of 198.18.0.0/15; the bridge in the
/// host namespace is its gateway (.1).
pub struct Bridge {
    pub name: String,
    pub subnet: String,
}

impl Bridge {
    /// `third`: the subnet's third octet (198.18.THIRD.0/24), distinct per test.
    pub fn new(prefix: &str, third: u8) -> Bridge {
        let b = Bridge { name: unique(prefix), subnet: format!("198.18.{third}.0/24") };
        run("podman", &["network", "create", "--subnet", &b.subnet, &b.name]);
        b
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = podman(&["network", "rm", "-f", &self.name]);
    }
}
