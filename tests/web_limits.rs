//! Limits of the web endpoint that a misbehaving client must not wear down:
//! scrape permits held until the response is sent (a 503 past them), the
//! write deadline for clients that never read (RSS stays bounded), the
//! connection cap under 3,000 idle sockets and whom it closes, and the head
//! and keep-alive deadlines. No test here asserts how fast anything is: each
//! deadline is checked from below (never sooner), and from above only against
//! the default it replaces. A large exposition is made by writing series straight into the
//! exporter's latency map. Everything runs on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{http_get, Exporter, Pair};

fn target(pair: &Pair) -> String {
    format!(
        "[metrics]\nscrape_interval = \"1s\"\n[[target]]\nname = \"t\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
        pair.server_if,
        Pair::netns_path(&pair.server_ns)
    )
}

fn start(pair: &Pair, web: &str) -> Exporter {
    Exporter::launch(web, &target(pair), &[], |port| http_get(port, "/metrics").map(|r| r.0 == 200).unwrap_or(false))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes `n` histogram series (ports 1..=n, GET, 2xx) into the latency map the
/// exporter process holds (found through its fds: a per-CPU hash of struct hg_hist).
fn fill_latency_map(exporter_pid: i32, n: u16) {
    let mut map_id = None;
    let mut found = String::new();
    for e in std::fs::read_dir(format!("/proc/{exporter_pid}/fdinfo")).unwrap() {
        let info = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if field("map_type:").as_deref() == Some("5") && field("value_size:").as_deref() == Some("264") {
            map_id = field("map_id:").and_then(|v| v.parse::<u32>().ok());
            found = info.clone();
        }
    }
    let map_id = map_id.expect("the exporter holds the latency map");
    // SAFETY: plain syscall wrappers on buffers sized for the map.
    unsafe {
        let fd = libbpf_sys::bpf_map_get_fd_by_id(map_id);
        assert!(fd >= 0, "opening map {map_id}");
        let cpus = libbpf_sys::libbpf_num_possible_cpus() as usize;
        let mut value = vec![0u8; 264 * cpus];
        value[0] = 1; // slot 0 (le="0.0005") on CPU 0
        value[256] = 1; // count
        for port in 1..=n {
            let mut key = [0u8; 12];
            key[0..4].copy_from_slice(&9999u32.to_ne_bytes()); // ifindex: label "if9999"
            key[6..8].copy_from_slice(&port.to_ne_bytes());
            key[9] = 1; // GET
            key[10..12].copy_from_slice(&2u16.to_ne_bytes()); // 2xx
                                                              // Elements come from a per-CPU cache the kernel refills asynchronously:
                                                              // a burst of updates from user space can find it empty for a moment.
            let mut r = -libc::ENOMEM;
            for _ in 0..1000 {
                r = libbpf_sys::bpf_map_update_elem(fd, key.as_ptr().cast(), value.as_ptr().cast(), 0);
                if r != -libc::ENOMEM {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(r, 0, "bpf_map_update_elem of series {port} into\n{found}");
        }
        libc::close(fd);
    }
}

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
}

/// A client that asks for /metrics and never reads, with a tiny receive buffer
/// so that the kernel cannot take the whole response off the exporter's hands.
fn stuck_client(port: u16) -> TcpStream {
    use nix::sys::socket::{connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd: OwnedFd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    let mut s = TcpStream::from(fd);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

/// Whether the exporter listening on 127.0.0.1:`port` still holds its end of
/// the connection from `s` open (/proc/net/tcp: ESTABLISHED). Once it closes
/// it, its end leaves that state (FIN_WAIT1: the FIN waits behind the data a
/// client that never reads will never take, so the client's end cannot tell).
fn server_holds(port: u16, s: &TcpStream) -> bool {
    let (local, remote) = (format!("0100007F:{port:04X}"), format!("0100007F:{:04X}", s.local_addr().unwrap().port()));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f[1] == local && f[2] == remote && f[3] == "01"
    })
}

/// The status code of the response that has begun to arrive on `s`, read without taking it off the socket.
fn status_seen(s: &TcpStream) -> Option<u16> {
    let mut head = [0u8; 12];
    let n = s.peek(&mut head).ok()?;
    (n == 12).then(|| String::from_utf8_lossy(&head[9..12]).parse().ok()).flatten()
}

/// How many clients hold a permit: `web.max_requests`, by default.
const PERMITS: usize = 40;
/// The clients that never read.
const STUCK: usize = 50;
/// What one client holding a permit may pin, by the code: the piece being
/// written (64 KiB, with a quarter spare), hyper's write buffer (at most
/// 64 KiB, `max_buf_size`), and room for the connection's own state.
const PER_CLIENT: u64 = 256 << 10;

#[test]
fn clients_that_never_read_hold_permits_only_until_the_write_deadline_and_rss_stays_bounded() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = start(&pair, "write_timeout = \"10s\"");
    let pid = exp.child_pid().expect("exporter process");
    fill_latency_map(pid, 4000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let size = loop {
        let (_, body) = http_get(exp.port, "/metrics").unwrap();
        if body.contains("port=\"4000\"") {
            break body.len();
        }
        assert!(Instant::now() < deadline, "the injected series never showed up");
        std::thread::sleep(Duration::from_millis(200));
    };
    for _ in 0..3 {
        http_get(exp.port, "/metrics").unwrap();
    }
    let before = rss_kib(pid);

    // 50 clients that never read: 40 (web.max_requests) are answered and hold
    // their permit while the answer waits to be read, 10 get 503 at once.
    let sent = Instant::now();
    let stuck: Vec<TcpStream> = (0..STUCK).map(|_| stuck_client(exp.port)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let statuses = loop {
        let seen: Vec<Option<u16>> = stuck.iter().map(status_seen).collect();
        if seen.iter().all(Option::is_some) {
            break seen.into_iter().flatten().collect::<Vec<u16>>();
        }
        assert!(Instant::now() < deadline, "not every client got the start of an answer: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let ok: Vec<&TcpStream> = stuck.iter().zip(&statuses).filter(|(_, st)| **st == 200).map(|(s, _)| s).collect();
    assert_eq!(ok.len(), PERMITS, "answered while the others wait: {statuses:?}");
    assert_eq!(statuses.iter().filter(|st| **st == 503).count(), STUCK - PERMITS, "{statuses:?}");
    // Every permit is still held (the server has closed none of the 40), so one more scrape is refused.
    assert!(ok.iter().all(|s| server_holds(exp.port, s)), "the answered clients are still held");
    let (status, _) = http_get(exp.port, "/metrics").unwrap();
    assert_eq!(status, 503, "every permit is held by a response still being sent");

    // At the write deadline the server closes the 40 and drops their responses.
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ok.iter().any(|s| server_holds(exp.port, s)) {
        assert!(Instant::now() < deadline, "the stuck responses were never cut");
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut = sent.elapsed();
    assert!(cut >= Duration::from_secs(10), "cut after {cut:?}, before their 10 s write deadline");
    let (status, body) = http_get(exp.port, "/metrics").unwrap();
    assert_eq!(status, 200, "the permits are free again");
    assert!(body.contains("port=\"4000\""));
    let growth = peak.saturating_sub(before) * 1024;
    eprintln!(
        "exposition {size} bytes; exporter RSS {before} KiB before, {peak} KiB peak with {STUCK} stuck clients (+{growth} bytes, {} KiB per client holding a permit)",
        growth / 1024 / PERMITS as u64
    );
    // One shared exposition per map read, not one per client (40 copies would be 40x).
    let bound = PERMITS as u64 * PER_CLIENT + 2 * size as u64;
    assert!(
        growth < bound,
        "RSS grew by {growth} bytes, more than {bound}: {PER_CLIENT} per client and two expositions of {size}"
    );
    drop(stuck);
}

fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(hard >= 3_200, "this test needs 3,200 file descriptors (hard limit {hard})");
}

#[test]
fn three_thousand_idle_sockets_do_not_stop_a_scrape() {
    if !common::privileged(&["ip"]) {
        return;
    }
    raise_nofile();
    let pair = Pair::new();
    let exp = start(&pair, "max_connections = 1024");
    let pid = exp.child_pid().expect("exporter process");
    let base = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let idle: Vec<TcpStream> = (0..3000).map(|_| TcpStream::connect(("127.0.0.1", exp.port)).unwrap()).collect();
    let t = Instant::now();
    let (status, body) = http_get(exp.port, "/metrics").unwrap();
    eprintln!("scrape with 3,000 idle sockets open: {status} in {:?}", t.elapsed());
    assert_eq!(status, 200);
    assert!(body.contains("http_golden_exporter_build_info"));
    // Evicted connections close when their task next runs.
    let count = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut fds = count();
    while fds > base + 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fds = count();
    }
    eprintln!("exporter descriptors: {base} before, {fds} with 3,000 sockets offered");
    assert!(fds <= base + 1024, "the exporter holds {fds} descriptors, {base} before (max_connections = 1024)");
    drop(idle);
}

/// Whether the server has closed `s`: reading (without blocking) finds the end.
fn closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 65536];
    let end = loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    end
}

/// Wait until the server closes `s`; false if it has not within a minute.
fn wait_closed(s: &TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !closed(s) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Connections the exporter listening on 127.0.0.1:`port` holds open
/// (/proc/net/tcp: its end ESTABLISHED or CLOSE_WAIT).
fn server_connections(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1] == local && (f[3] == "01" || f[3] == "08")
        })
        .count()
}

/// One request answered in full on `s`, which stays open (keep-alive).
fn one_request(s: &mut TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("</html>") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn at_the_connection_cap_the_oldest_that_never_sent_a_request_goes_first_else_the_oldest_idle_one() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    // No deadline comes into it: only the cap closes connections here.
    let exp = start(&pair, "max_connections = 16\nread_header_timeout = \"1h\"\nidle_timeout = \"1h\"");
    let connect = || TcpStream::connect(("127.0.0.1", exp.port)).unwrap();
    // Once the readiness scrape's connection is gone, 16 of ours fill the cap.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server_connections(exp.port) > 0 {
        assert!(Instant::now() < deadline, "the exporter keeps a connection nobody opened here");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut kept = connect();
    one_request(&mut kept);
    let fresh: Vec<TcpStream> = (0..15).map(|_| connect()).collect();
    // The 17th: the oldest that never sent a request goes, not the older idle one.
    let mut newest = connect();
    assert!(wait_closed(&fresh[0]), "the oldest connection without a request was not closed");
    assert!(!closed(&kept), "the idle keep-alive connection, though older, stays");
    assert!(fresh[1..].iter().all(|s| !closed(s)), "only one was closed");

    // Every one sends a request: now all are idle, and the oldest of them goes.
    let mut rest: Vec<TcpStream> = fresh.into_iter().skip(1).collect();
    for s in rest.iter_mut() {
        one_request(s);
    }
    one_request(&mut newest);
    let _another = connect();
    assert!(wait_closed(&kept), "the oldest idle connection was not closed");
    assert!(rest.iter().all(|s| !closed(s)) && !closed(&newest), "only the oldest idle one was closed");
}

/// How long until the server closes `s`, counted from `since` (at most `limit`).
fn closed_after(s: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

/// The deadlines' defaults (10 s for a head, 90 s idle): a connection closed
/// before them was closed by the configured deadline, not by the default.
const HEAD_DEFAULT: Duration = Duration::from_secs(10);
const IDLE_DEFAULT: Duration = Duration::from_secs(90);

#[test]
fn slow_heads_and_idle_keep_alive_connections_are_closed_at_their_deadlines() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = start(&pair, "read_header_timeout = \"1s\"\nidle_timeout = \"2s\"");
    // Each deadline runs from something after `t0` (the accept, the response),
    // so no connection can be closed sooner than its deadline after t0.
    let connect = || (Instant::now(), TcpStream::connect(("127.0.0.1", exp.port)).unwrap());

    let (t0, mut silent) = connect();
    let d = closed_after(&mut silent, t0, HEAD_DEFAULT);
    assert!(d >= Duration::from_secs(1) && d < HEAD_DEFAULT, "silent connection closed after {d:?}");

    let (t0, mut slow) = connect();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let d = closed_after(&mut slow, t0, HEAD_DEFAULT);
    assert!(d >= Duration::from_secs(1) && d < HEAD_DEFAULT, "unfinished head closed after {d:?}");

    // A keep-alive connection: one request answered, then idle until idle_timeout.
    let (t0, mut ka) = connect();
    one_request(&mut ka);
    let d = closed_after(&mut ka, t0, IDLE_DEFAULT);
    assert!(d >= Duration::from_secs(2) && d < IDLE_DEFAULT, "idle keep-alive closed after {d:?}");
    // The exporter still serves.
    assert_eq!(http_get(exp.port, "/metrics").unwrap().0, 200);
}
