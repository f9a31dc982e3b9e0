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
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Listener {
    fn bind(path: &std::path::Path) -> Listener {
        let sock = UnixDatagram::bind(path).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        // Ends when the test process does; the socket file goes with the TempDir.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                g.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        });
        Listener { got }
    }

    /// When each WATCHDOG=1 arrived.
    fn watchdog_times(&self) -> Vec<Instant> {
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

fn count(msgs: &[String], line: &str) -> usize {
    msgs.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

#[test]
fn ready_status_watchdog_reload_and_stopping_are_notified() {
    if !common::privileged(&["ip", "sh"]) {
        return;
    }
    let pair = Pair::new();
    let dir = TempDir::new("hgnotify");
    let port = common::free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten_address = \"127.0.0.1:{port}\"\n[[target]]\nname = \"s\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
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
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut proc = Proc::spawn(cmd, "exporter");
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

    // WATCHDOG=1 every 0.2 s (half of 0.4 s), each after a real map read in the exporter.
    let m = listener.wait_for(Duration::from_secs(5), |m| count(m, "WATCHDOG=1") >= 8);
    assert!(count(&m, "WATCHDOG=1") >= 8, "{m:?}");
    let times = listener.watchdog_times();
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(150) && median <= Duration::from_millis(260),
        "keep-alives every ~200 ms (half of WATCHDOG_USEC): median gap {median:?} of {gaps:?}"
    );
    assert!(gaps.last().unwrap() < &Duration::from_millis(400), "never a gap the watchdog would fire on: {gaps:?}");

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
    let dir = TempDir::new("hgnotify");
    let port = common::free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten_address = \"127.0.0.1:{port}\"\n[metrics]\nscrape_interval = \"200ms\"\n\
             [[target]]\nname = \"s\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
            pair.server_if,
            Pair::netns_path(&pair.server_ns)
        ),
    )
    .unwrap();
    let socket = dir.path().join("notify.sock");
    let listener = Listener::bind(&socket);
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config.file \"$1\"")
        .arg(common::exporter_bin())
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000")
        // Every periodic read fails; the first one (before READY=1) succeeds.
        .env("HGE_TEST_FAIL_MAP_READS", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut proc = Proc::spawn(cmd, "exporter");
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();

    let m = listener.wait_for(Duration::from_secs(20), |m| count(m, "READY=1") == 1);
    assert_eq!(count(&m, "READY=1"), 1, "READY=1 once: {m:?}\n{}", read_log());
    // Three intervals (0.6 s) after the last good read the keep-alives stop, and STATUS= says why.
    let m = listener.wait_for(Duration::from_secs(5), |m| m.iter().any(|m| m.contains("map reads failing")));
    let failing = m.iter().position(|m| m.contains("map reads failing")).unwrap_or_else(|| {
        panic!("no STATUS= about failing reads: {m:?}\n{}", read_log());
    });
    assert!(m[failing].contains("no map read has succeeded for"), "{}", m[failing]);
    let stopped_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let late = listener.watchdog_times().into_iter().filter(|t| *t > stopped_at).count();
    assert_eq!(late, 0, "no WATCHDOG=1 while reads fail:\n{}", read_log());
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
