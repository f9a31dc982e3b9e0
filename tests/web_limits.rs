//! Limits of the web endpoint that a misbehaving client must not wear down:
//! scrape permits held until the response is sent (a prompt 503 past them),
//! the write deadline for clients that never read (RSS stays bounded), the
//! connection cap under 3,000 idle sockets, and the head and keep-alive
//! deadlines. A large exposition is made by writing series straight into the
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

#[test]
fn clients_that_never_read_hold_permits_only_until_the_write_deadline_and_rss_stays_bounded() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = start(&pair, "write_timeout = \"5s\"");
    let pid = exp.child_pid().expect("exporter process");
    fill_latency_map(pid, 4000);
    let deadline = Instant::now() + Duration::from_secs(20);
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

    // 50 clients that never read: 40 (web.max_requests) hold a response, 10 get 503.
    let stuck: Vec<TcpStream> = (0..50).map(|_| stuck_client(exp.port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (status, _) = http_get(exp.port, "/metrics").unwrap();
    let took = t.elapsed();
    assert_eq!(status, 503, "every permit is held by a response still being sent");
    assert!(took < Duration::from_millis(500), "503 took {took:?}");
    let mut peak = before;
    let cut = Instant::now() + Duration::from_secs(5);
    while Instant::now() < cut {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    // After the write deadline the stuck responses are dropped: scrapes succeed again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http_get(exp.port, "/metrics").unwrap();
        if status == 200 {
            assert!(body.contains("port=\"4000\""));
            break;
        }
        assert!(Instant::now() < deadline, "scrapes still refused after the write deadline");
        std::thread::sleep(Duration::from_millis(200));
    }
    let growth = peak.saturating_sub(before) * 1024;
    eprintln!(
        "exposition {} bytes; exporter RSS {} KiB before, {} KiB peak with 50 stuck clients (+{} bytes, {:.1} expositions)",
        size,
        before,
        peak,
        growth,
        growth as f64 / size as f64
    );
    // One shared exposition per map read, not one per client (40 copies would be 40x).
    assert!(growth < 4 * size as u64 + (16 << 20), "RSS grew by {growth} bytes for a {size}-byte exposition");
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
    let took = t.elapsed();
    eprintln!("scrape with 3,000 idle sockets open: {status} in {took:?}");
    assert_eq!(status, 200);
    assert!(body.contains("http_golden_exporter_build_info"));
    assert!(took < Duration::from_secs(2), "scrape took {took:?}");
    // Evicted connections close when their task next runs: allow a moment.
    let count = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fds = count();
    while fds > base + 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fds = count();
    }
    eprintln!("exporter descriptors: {base} before, {fds} with 3,000 sockets offered");
    assert!(fds <= base + 1024, "the exporter holds {fds} descriptors, {base} before (max_connections = 1024)");
    drop(idle);
}

/// Seconds until the server closes `s` (read returns 0 or an error), at most 10.
fn closed_after(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn slow_heads_and_idle_keep_alive_connections_are_closed_at_their_deadlines() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = start(&pair, "read_header_timeout = \"1s\"\nidle_timeout = \"2s\"");
    let connect = || TcpStream::connect(("127.0.0.1", exp.port)).unwrap();

    let mut silent = connect();
    let d = closed_after(&mut silent);
    assert!(d > Duration::from_millis(800) && d < Duration::from_secs(3), "silent connection closed after {d:?}");

    let mut slow = connect();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let d = closed_after(&mut slow);
    assert!(d > Duration::from_millis(800) && d < Duration::from_secs(3), "unfinished head closed after {d:?}");

    // A keep-alive connection: one request answered, then idle until idle_timeout.
    let mut ka = connect();
    ka.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("</html>") {
        let n = ka.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    let d = closed_after(&mut ka);
    assert!(d > Duration::from_millis(1800) && d < Duration::from_secs(4), "idle keep-alive closed after {d:?}");
    // The exporter still serves.
    assert_eq!(http_get(exp.port, "/metrics").unwrap().0, 200);
}
