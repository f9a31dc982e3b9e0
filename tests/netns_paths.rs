//! A target's `netns` that is not a network namespace (a FIFO, a regular
//! file, a dangling symlink, a relative path) is one clear error that names
//! the path, and nothing is attached. A FIFO without a writer would block a
//! plain open forever: the start must end all the same.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, TempDir};

/// A start that has not ended by then is taken to hang (on the FIFO): no
/// start takes anywhere near this long, however loaded the machine.
const HANG: Duration = Duration::from_secs(60);

/// Start the daemon on a config whose only target has `netns = path`; return
/// its exit status and stderr once it ends (or fail if it hangs).
fn start_with_netns(dir: &Path, netns: &str) -> (bool, String) {
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
    let mut p = Proc::spawn(cmd, "exporter");
    let st = p.wait_timeout(HANG);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let st = st.unwrap_or_else(|| panic!("netns {netns:?}: still running after {HANG:?}, it hangs:\n{text}"));
    (st.success(), text)
}

#[test]
fn a_netns_that_is_not_a_network_namespace_is_one_clear_error_and_never_hangs() {
    // The parser is loaded before any namespace is opened: that needs the privileges.
    if !common::privileged(&[]) {
        return;
    }
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
        let (ok, log) = start_with_netns(dir.path(), &path);
        assert!(!ok, "{path}: the start fails:\n{log}");
        assert!(log.contains(&path), "{path}: the error names the path:\n{log}");
        assert!(log.contains(why), "{path}: the error says {why:?}:\n{log}");
        assert_eq!(log.lines().filter(|l| l.contains("error")).count(), 1, "{path}: one error:\n{log}");
        assert!(!log.contains("CAP_SYS_ADMIN"), "{path}: not a misleading capability message:\n{log}");
        assert!(!log.contains("attached to"), "{path}: nothing is attached:\n{log}");
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
