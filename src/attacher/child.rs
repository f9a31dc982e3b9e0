//! The exporter process seen from the attacher: waiting for it to end and
//! saying how it did, and judging what it says. The exporter parses the
//! network, so its messages are untrusted: its strings are cleaned and
//! bounded before they reach sd_notify or a log, and only the answer to the
//! ping the attacher is waiting for feeds the watchdog.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use hge_shared::ipc::{Channel, Msg};

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
    /// SIGKILL was refused: the exporter runs as another user and the
    /// attacher, narrowed, has no CAP_KILL (started as root, serving as nobody).
    Unkillable(nix::errno::Errno),
}

/// Wait up to CHILD_STOP_TIMEOUT for the child to exit, then SIGKILL it.
fn wait_or_kill(child: Pid) -> Ended {
    let deadline = Instant::now() + CHILD_STOP_TIMEOUT;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(WaitStatus::StillAlive) => {
                // Waiting for a child the signal never reached would never end.
                if let Err(e) = nix::sys::signal::kill(child, Signal::SIGKILL) {
                    return Ended::Unkillable(e);
                }
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
        Ended::Unkillable(e) => unkillable(child, e),
    }
}

/// Ask the exporter to exit, wait a little, then insist.
pub fn stop_child(ch: &Channel, child: Pid) {
    let _ = ch.send(&Msg::Stop);
    match wait_or_kill(child) {
        Ended::Exited(WaitStatus::Exited(_, 0)) | Ended::Gone(_) => {}
        Ended::Exited(st) => log::warn!("{}", describe_exit(st)),
        Ended::Killed => {
            log::warn!("the exporter process {child} did not stop within {CHILD_STOP_TIMEOUT:?}; killing it")
        }
        Ended::Unkillable(e) => log::error!("{}", unkillable(child, e)),
    }
}

fn unkillable(child: Pid, e: nix::errno::Errno) -> String {
    format!(
        "the exporter process {child} did not stop within {CHILD_STOP_TIMEOUT:?} and cannot be killed ({e}): \
         it runs as another user and the attacher has no CAP_KILL; leaving it"
    )
}

/// Longest string of the exporter's that reaches STATUS= or a log line.
pub const MAX_SHOWN: usize = 200;
/// How long a message the exporter began may take to complete.
pub const MESSAGE_DEADLINE: Duration = Duration::from_secs(2);

/// `s` with every control character (newlines included: sd_notify takes one
/// assignment per line) replaced by a space, cut to MAX_SHOWN characters.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_SHOWN).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().nth(MAX_SHOWN).is_some() {
        out.push_str("...");
    }
    out
}

/// What a Pong makes the attacher tell systemd.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notice {
    /// Send WATCHDOG=1.
    pub watchdog: bool,
    /// Send STATUS= with this (already sanitised) text.
    pub status: Option<String>,
    /// Log this warning (already sanitised).
    pub warning: Option<String>,
}

/// Judge a Pong{seq, ok, series, error} against the ping the attacher is
/// waiting for (`outstanding`, cleared when answered). Only the answer to that
/// ping counts: a Pong nobody asked for, a late one or a repeated one changes
/// nothing. `status` words the STATUS= line from the series count.
pub fn judge_pong(
    outstanding: &mut Option<u64>,
    (seq, ok, series, error): (u64, bool, u64, &str),
    status: impl Fn(u64) -> String,
) -> Notice {
    if *outstanding != Some(seq) {
        return Notice {
            warning: Some(format!("ignoring an answer to ping {seq} (waiting for {outstanding:?})")),
            ..Notice::default()
        };
    }
    *outstanding = None;
    if ok {
        return Notice { watchdog: true, status: Some(status(series)), warning: None };
    }
    // No WATCHDOG=1: if this persists, systemd restarts the service.
    let error = sanitize(error);
    Notice {
        watchdog: false,
        status: Some(format!("map reads failing: {error}")),
        warning: Some(format!("the exporter cannot read the BPF maps: {error}")),
    }
}

#[cfg(test)]
mod tests {
    //! The tests play a hostile exporter on the other end of a real channel.
    use std::io::ErrorKind;
    use std::os::fd::{AsFd, AsRawFd};

    use nix::sys::socket::{self, MsgFlags};

    use super::*;
    use hge_shared::ipc::{wait_readable, Recv, MAX_FROM_CHILD};

    /// A packet as a hostile exporter would send it: anything, waiting for room.
    fn raw_send(ch: &Channel, packet: &[u8]) -> nix::Result<usize> {
        loop {
            match socket::send(ch.as_raw_fd(), packet, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EAGAIN) => {
                    let fd = ch.as_fd();
                    nix::poll::poll(&mut [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)], 1000u16)?;
                }
                r => return r,
            }
        }
    }

    #[test]
    fn half_a_message_never_blocks_the_attacher_and_stalls_after_the_deadline() {
        let (mut parent, child) = Channel::pair().unwrap();
        // "more follows", and nothing follows.
        raw_send(&child, b"\x01kind = \"Pong\"\nseq = 1\n").unwrap();
        let t0 = Instant::now();
        assert!(matches!(parent.recv(), Ok(Recv::Partial)));
        assert!(matches!(parent.recv(), Ok(Recv::Empty)), "nothing more to read, and no wait for it");
        let deadline = parent.partial_deadline(MESSAGE_DEADLINE).expect("a message is begun");
        assert!(deadline >= t0 + MESSAGE_DEADLINE && deadline <= Instant::now() + MESSAGE_DEADLINE);
    }

    #[test]
    fn a_message_over_64_kib_is_refused_before_it_is_read_whole() {
        let (mut parent, child) = Channel::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let packet = [&[1u8][..], &[b'x'; 16 * 1024][..]].concat();
            // 1 MiB in 64 packets; stops when the reader is gone.
            (0..64).take_while(|_| raw_send(&child, &packet).is_ok()).count()
        });
        let mut read = 0;
        let err = loop {
            match parent.recv() {
                Ok(Recv::Partial) => read += 1,
                Ok(Recv::Empty) => wait_readable(&parent, None).unwrap(),
                Ok(_) => panic!("a 1 MiB message was accepted"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains(&format!("over {MAX_FROM_CHILD} bytes")), "{err}");
        assert!(read <= MAX_FROM_CHILD / (16 * 1024), "refused at the cap, after {read} packets");
        drop(parent);
        assert!(writer.join().unwrap() < 64, "the writer was cut off");
    }

    #[test]
    fn a_packet_longer_than_a_chunk_is_refused() {
        let (mut parent, child) = Channel::pair().unwrap();
        raw_send(&child, &vec![0u8; 40 * 1024]).unwrap();
        let e = parent.recv().expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn control_characters_from_the_exporter_never_reach_sd_notify() {
        let (mut parent, child) = Channel::pair().unwrap();
        let evil = format!("boom\nWATCHDOG=trigger\nMAINPID=1\r\u{1b}[2J\0{}", "y".repeat(10_000));
        child.send(&Msg::Pong { seq: 7, ok: false, series: 1, error: evil }).unwrap();
        let Ok(Recv::Msg(Msg::Pong { seq, ok, series, error })) = parent.recv() else { panic!("a pong") };
        let mut outstanding = Some(7);
        let n = judge_pong(&mut outstanding, (seq, ok, series, &error), |_| unreachable!());
        assert!(!n.watchdog);
        // docs/architecture.md: cut to 200 characters.
        assert_eq!(MAX_SHOWN, 200);
        let status = (n.status.as_deref().unwrap(), "map reads failing: ");
        let warning = (n.warning.as_deref().unwrap(), "the exporter cannot read the BPF maps: ");
        for (text, prefix) in [status, warning] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
            let shown = text.strip_prefix(prefix).unwrap_or_else(|| panic!("{text:?}"));
            assert!(shown.starts_with("boom WATCHDOG=trigger MAINPID=1"), "{text:?}");
            let cut = shown.strip_suffix("...").unwrap_or_else(|| panic!("a cut says so: {text:?}"));
            assert_eq!(cut.chars().count(), MAX_SHOWN, "{text:?}");
        }
        assert_eq!(sanitize("a\tb\u{7f}c\u{85}d"), "a b c d");
    }

    #[test]
    fn only_the_pong_for_the_outstanding_ping_feeds_the_watchdog() {
        let status = |series: u64| format!("{series} series");
        let pong = |seq| (seq, true, 3, "");
        let mut outstanding = None;
        let unsolicited = judge_pong(&mut outstanding, pong(1), status);
        assert_eq!((unsolicited.watchdog, unsolicited.status), (false, None), "no ping outstanding");
        outstanding = Some(5);
        assert!(!judge_pong(&mut outstanding, pong(4), status).watchdog, "a late answer to an older ping");
        assert!(!judge_pong(&mut outstanding, pong(6), status).watchdog, "an answer to a ping not sent");
        assert_eq!(outstanding, Some(5));
        let answer = judge_pong(&mut outstanding, pong(5), status);
        assert_eq!(answer, Notice { watchdog: true, status: Some("3 series".into()), warning: None });
        assert!(!judge_pong(&mut outstanding, pong(5), status).watchdog, "the same answer twice feeds it once");
    }
}
