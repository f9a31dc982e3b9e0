//! A tmux server of our own (its own socket), running one command in a
//! detached 200x50 session; killed when dropped, so a failed assertion leaves
//! nothing behind.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

/// tmux is there; without it the test fails under CI and is skipped elsewhere.
pub fn available() -> bool {
    if super::common::which("tmux").is_some() {
        return true;
    }
    assert!(!super::common::in_ci(), "the `tmux` command is missing (.ci/deps installs it; CI=true: tests must run)");
    eprintln!("SKIPPED: this test needs the `tmux` command (.ci/deps installs it)");
    false
}

impl Tmux {
    /// Runs `command` (a shell command line) in a new session. When it ends,
    /// the pane prints "top exited with N", then "terminal: cooked" if the
    /// terminal was given back in canonical mode ("terminal: raw" if not), and stays.
    pub fn start(command: &str) -> Tmux {
        let t = Tmux { socket: super::common::unique("hgtop") };
        let line = format!(
            "{command}; echo \"top exited with $?\"; \
             if stty -a | grep -q ' icanon'; then echo 'terminal: cooked'; else echo 'terminal: raw'; fi; sleep 600"
        );
        let out = t.cmd().args(["new-session", "-d", "-x", "200", "-y", "50", "-s", "top", &line]).output().unwrap();
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        // Not the tmux a developer may be running the tests from.
        c.env_remove("TMUX").args(["-L", &self.socket]);
        c
    }

    pub fn capture(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "top"]).output().unwrap();
        assert!(out.status.success(), "tmux capture-pane: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tmux send-keys` with each argument a key name ("Enter", "Escape", "C-c") or literal text.
    pub fn keys(&self, keys: &[&str]) {
        let out = self.cmd().args(["send-keys", "-t", "top"]).args(keys).output().unwrap();
        assert!(out.status.success(), "tmux send-keys: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The process the session's shell runs (the command given to `start`).
    pub fn command_pid(&self) -> i32 {
        let out = self.cmd().args(["display-message", "-p", "-t", "top", "#{pane_pid}"]).output().unwrap();
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        children.split_whitespace().next().unwrap_or_else(|| panic!("the shell {shell} runs nothing")).parse().unwrap()
    }

    /// Captures until `done` holds; panics with `what` and the last capture after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let pane = self.capture();
            if done(&pane) {
                return pane;
            }
            assert!(Instant::now() < deadline, "{what}: not seen within {timeout:?}; the pane:\n{pane}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

impl Tmux {
    /// Ends the session as a closed terminal window would: its pty goes away.
    pub fn kill_server(&self) {
        let out = self.cmd().arg("kill-server").output().unwrap();
        assert!(out.status.success(), "tmux kill-server: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The table's rows in the pane, top to bottom, as their cells.
pub fn rows(pane: &str) -> Vec<Vec<String>> {
    pane.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|cells| cells.len() == 10 && matches!(cells[0].as_str(), "server" | "client"))
        .collect()
}

/// "target:port" of each row, in order.
pub fn order(pane: &str) -> Vec<String> {
    rows(pane).iter().map(|r| format!("{}:{}", r[1], r[3])).collect()
}
