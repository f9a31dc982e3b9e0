//! The sd_notify protocol as systemd sees it, with a socket of our own standing
//! in for systemd's: READY=1 only once metrics are served, STATUS=, WATCHDOG=1
//! at half of WATCHDOG_USEC, RELOADING=1/READY=1 around SIGHUP, STOPPING=1.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http_get, Pair, Proc, TempDir};
use nix::sys::signal::Signal;

struct Listener {
    /// Each message, with when it was sent: the kernel stamps a datagram as
    /// its sender queues it (SO_TIMESTAMP), however late this test reads it.
    got: Arc<Mutex<Vec<(Duration, String)>>>,
}

impl Listener {
    fn bind(path: &std::path::Path) -> Listener {
        use std::os::fd::AsRawFd;
        let sock = UnixDatagram::bind(path).unwrap();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a live local.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMP,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_TIMESTAMP: {}", std::io::Error::last_os_error());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        // Ends when the test process does; the socket file goes with the TempDir.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                let Some((n, sent)) = recv_stamped(&sock, &mut buf) else { return };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                g.lock().unwrap().push((sent, text));
            }
        });
        Listener { got }
    }

    /// When each WATCHDOG=1 was sent (time since the Unix epoch, by the kernel's stamp).
    fn watchdog_times(&self) -> Vec<Duration> {
        self.got.lock().unwrap().iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect()
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
    }

    fn wait_for(&self, timeout: Duration, what: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if what(&m) || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Half of the WATCHDOG_USEC the tests give.
const PERIOD: Duration = Duration::from_millis(200);

/// One datagram, and when the kernel stamped it (SO_TIMESTAMP: as its sender
/// queued it), as time since the Unix epoch.
fn recv_stamped(sock: &UnixDatagram, buf: &mut [u8]) -> Option<(usize, Duration)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at the live iovec and control buffer, sized as given.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: as above; the kernel writes at most the sizes given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return None;
    }
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMP {
                let tv = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timeval);
                return Some((n as usize, Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    panic!("a datagram without SO_TIMESTAMP");
}

fn count(msgs: &[String], line: &str) -> usize {
    msgs.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

/// The exporter, run as systemd would (NOTIFY_SOCKET, WATCHDOG_USEC=0.4 s),
/// watching the server side of `pair`; `extra` goes into its config file.
struct Started {
    dir: TempDir,
    port: u16,
    listener: Listener,
    proc: Proc,
}

fn start(pair: &Pair, extra: &str, env: &[(&str, &str)]) -> Started {
    let dir = TempDir::new("hgnotify");
    let port = common::free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten_address = \"127.0.0.1:{port}\"\n{extra}[[target]]\nname = \"s\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
            pair.server_if,
            Pair::netns_path(&pair.server_ns)
        ),
    )
    .unwrap();
    let socket = dir.path().join("notify.sock");
    let listener = Listener::bind(&socket);
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut cmd = Command::new("sh");
    // systemd sets WATCHDOG_PID to the main process: exec keeps the shell's pid.
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config.file \"$1\"")
        .arg(common::exporter_bin())
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000")
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let proc = Proc::spawn(cmd, "exporter");
    Started { dir, port, listener, proc }
}

#[test]
fn ready_status_watchdog_reload_and_stopping_are_notified() {
    if !common::privileged(&["ip", "sh"]) {
        return;
    }
    let pair = Pair::new();
    let Started { dir, port, listener, mut proc } = start(&pair, "", &[]);
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();

    let m = listener.wait_for(Duration::from_secs(20), |m| count(m, "READY=1") == 1);
    assert_eq!(count(&m, "READY=1"), 1, "READY=1 once: {m:?}\n{}", read_log());
    // READY=1 means served: the first scrape right after it succeeds and shows the attachment.
    let (status, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("http_golden_exporter_attached{target=\"s\""), "{body}");
    let ready = m.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=1 targets, 2 programs attached; "), "{ready}");
    let before_ready = m.iter().take_while(|m| !m.contains("READY=1")).count();
    assert!(m[..before_ready].iter().all(|m| !m.contains("WATCHDOG=1")), "no watchdog before ready: {m:?}");

    // The attacher asks the exporter for a map read every half of WATCHDOG_USEC,
    // each ask at least that long after the last, and only the answer to the
    // latest ask feeds the watchdog. So keep-alives keep coming, and n of them
    // span at least (n - 2) periods, however the machine delays any of them.
    assert!(read_log().contains("the exporter's map reads are checked every 200ms"), "{}", read_log());
    let m = listener.wait_for(Duration::from_secs(60), |m| count(m, "WATCHDOG=1") >= 8);
    assert!(count(&m, "WATCHDOG=1") >= 8, "{m:?}");
    let times = listener.watchdog_times();
    let (n, span) = (times.len() as u32, *times.last().unwrap() - times[0]);
    // The kernel's stamps are wall-clock time, which NTP may slew by a little.
    let least = PERIOD * (n - 2) * 99 / 100;
    assert!(span >= least, "{n} keep-alives in {span:?}: more than one per {PERIOD:?}: {times:?}");
    proc.signal(Signal::SIGHUP);
    let m = listener.wait_for(Duration::from_secs(10), |m| count(m, "READY=1") == 2);
    let reloading = m.iter().position(|m| m.lines().any(|l| l == "RELOADING=1")).expect("RELOADING=1");
    assert!(m[reloading].contains("MONOTONIC_USEC="), "{}", m[reloading]);
    let ready2 = m.iter().rposition(|m| m.lines().any(|l| l == "READY=1")).unwrap();
    assert!(ready2 > reloading, "READY=1 after RELOADING=1: {m:?}");
    assert!(m[ready2].contains("STATUS=reloaded: 1 targets unchanged"), "{}", m[ready2]);

    proc.signal(Signal::SIGTERM);
    let st = proc.wait_timeout(Duration::from_secs(10)).expect("exits on SIGTERM");
    assert!(st.success(), "{st}\n{}", read_log());
    assert_eq!(count(&listener.messages(), "STOPPING=1"), 1);
}

#[test]
fn failing_map_reads_stop_the_watchdog_keep_alives() {
    if !common::privileged(&["ip", "sh"]) {
        return;
    }
    let pair = Pair::new();
    // Every periodic read fails; the first one (before READY=1) succeeds.
    let env = [("HGE_TEST_FAIL_MAP_READS", "1")];
    let Started { dir, port, listener, mut proc } = start(&pair, "[metrics]\nscrape_interval = \"200ms\"\n", &env);
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();

    let m = listener.wait_for(Duration::from_secs(20), |m| count(m, "READY=1") == 1);
    assert_eq!(count(&m, "READY=1"), 1, "READY=1 once: {m:?}\n{}", read_log());
    // Three intervals after the last good read the exporter answers not ok, and STATUS= says why;
    // each later answer says for how long, so each is a STATUS= of its own.
    let failing = |m: &[String]| m.iter().filter(|m| m.contains("map reads failing")).count();
    let m = listener.wait_for(Duration::from_secs(60), |m| failing(m) >= 4);
    let first = m.iter().position(|m| m.contains("map reads failing")).unwrap_or_else(|| {
        panic!("no STATUS= about failing reads: {m:?}\n{}", read_log());
    });
    assert!(failing(&m) >= 4, "one STATUS= per answer: {m:?}\n{}", read_log());
    assert!(m[first].contains("no map read has succeeded for"), "{}", m[first]);
    // Messages arrive in the order they were sent: none after the first failure feeds the watchdog.
    assert_eq!(count(&m[first..], "WATCHDOG=1"), 0, "no WATCHDOG=1 while reads fail: {m:?}\n{}", read_log());
    // The endpoint still answers with the last values and counts the failures.
    let (status, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let errors = body
        .lines()
        .find_map(|l| l.strip_prefix("http_golden_exporter_map_read_errors_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("map_read_errors_total is exported");
    assert!(errors >= 3.0, "{body}");

    proc.signal(Signal::SIGTERM);
    let st = proc.wait_timeout(Duration::from_secs(10)).expect("exits on SIGTERM");
    assert!(st.success(), "{st}\n{}", read_log());
}
