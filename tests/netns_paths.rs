//! A target's `netns` that is not a network namespace (a FIFO, a regular
//! file, a dangling symlink, a relative path) is one clear error that names
//! the path, within a second, and nothing is attached.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, TempDir};

/// Start the daemon on a config whose only target has `netns = path`; return
/// its exit status and stderr once it ends (or fail after `limit`).
fn start_with_netns(dir: &Path, netns: &str, limit: Duration) -> (bool, String, Duration) {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten_address = \"127.0.0.1:{}\"\n[[target]]\nname = \"t\"\ninterfaces = [\"lo\"]\nnetns = \"{netns}\"\n",
            common::free_port()
        ),
    )
    .unwrap();
    let log = dir.join("log");
    let mut cmd = Command::new(common::exporter_bin());
    cmd.arg("--config.file").arg(&config).stdin(Stdio::null()).stdout(Stdio::null());
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let t0 = Instant::now();
    let mut p = Proc::spawn(cmd, "exporter");
    let st = p.wait_timeout(limit);
    let took = t0.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let st = st.unwrap_or_else(|| panic!("netns {netns:?}: still running after {limit:?}:\n{text}"));
    (st.success(), text, took)
}

#[test]
fn a_netns_that_is_not_a_network_namespace_is_one_clear_error_within_a_second() {
    let dir = TempDir::new("hgns");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "not a namespace").unwrap();
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();

    let cases = [
        (fifo.display().to_string(), "is not a network namespace (a FIFO"),
        (file.display().to_string(), "is not a network namespace (a regular file"),
        (dangling.display().to_string(), "does not exist"),
        ("run/netns/relative".to_string(), "must be an absolute path"),
    ];
    for (path, why) in cases {
        let (ok, log, took) = start_with_netns(dir.path(), &path, Duration::from_secs(5));
        assert!(!ok, "{path}: the start fails:\n{log}");
        assert!(took < Duration::from_secs(1), "{path}: failed after {took:?}, not within a second:\n{log}");
        assert!(log.contains(&path), "{path}: the error names the path:\n{log}");
        assert!(log.contains(why), "{path}: the error says {why:?}:\n{log}");
        assert_eq!(log.lines().filter(|l| l.contains("error")).count(), 1, "{path}: one error:\n{log}");
        assert!(!log.contains("CAP_SYS_ADMIN"), "{path}: not a misleading capability message:\n{log}");
    }
}

#[test]
fn check_config_rejects_a_relative_netns_with_its_line() {
    let dir = TempDir::new("hgns");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[[target]]\nname = \"t\"\ninterfaces = [\"lo\"]\nnetns = \"netns/x\"\n").unwrap();
    let out = Command::new(common::exporter_bin()).arg("--check-config").arg("--config.file").arg(&config).output();
    let out = out.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("line 4") && err.contains("netns/x") && err.contains("absolute path"), "{err}");
}
