//! Waiting for the exporter process to end, and saying how it did.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::ipc::{Channel, Msg};

/// How long the attacher waits for the exporter to exit before SIGKILL.
pub const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn describe_exit(st: WaitStatus) -> String {
    match st {
        WaitStatus::Exited(pid, code) => format!("the exporter process {pid} exited with status {code}"),
        WaitStatus::Signaled(pid, sig, _) => format!("the exporter process {pid} was killed by {sig}"),
        other => format!("the exporter process ended: {other:?}"),
    }
}

/// How the wait for the exporter ended.
enum Ended {
    Exited(WaitStatus),
    Killed,
    Gone(nix::errno::Errno),
}

/// Wait up to CHILD_STOP_TIMEOUT for the child to exit, then SIGKILL it.
fn wait_or_kill(child: Pid) -> Ended {
    let deadline = Instant::now() + CHILD_STOP_TIMEOUT;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(WaitStatus::StillAlive) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Ended::Killed;
            }
            Ok(st) => return Ended::Exited(st),
            Err(e) => return Ended::Gone(e),
        }
    }
}

/// The exporter closed its end: collect its exit status (it is on its way out).
pub fn reap(child: Pid) -> String {
    match wait_or_kill(child) {
        Ended::Exited(st) => describe_exit(st),
        Ended::Killed => format!("the exporter process {child} closed its channel and was killed"),
        Ended::Gone(e) => format!("the exporter process {child} is gone ({e})"),
    }
}

/// Ask the exporter to exit, wait a little, then insist.
pub fn stop_child(ch: &Channel, child: Pid) {
    let _ = ch.send_now(&Msg::Stop);
    match wait_or_kill(child) {
        Ended::Exited(WaitStatus::Exited(_, 0)) | Ended::Gone(_) => {}
        Ended::Exited(st) => log::warn!("{}", describe_exit(st)),
        Ended::Killed => {
            log::warn!("the exporter process {child} did not stop within {CHILD_STOP_TIMEOUT:?}; killing it")
        }
    }
}
