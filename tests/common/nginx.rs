//! A real nginx (Debian package) inside the server namespace, with endpoints
//! for every status class and a delayed one, and an access log to count by.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Pair, Proc, TempDir, SERVER_V4, SERVER_V6};

/// Port 80 serves /ok (200), /missing (404), /fail (500), /big (1 MiB),
/// /trap (256 KiB of "HTTP/1.1 200 OK" lines), /page (static, with ETag),
/// /nocontent (204), /chunked (1.1 MiB chunked), /upload (reads a body, 200);
/// port 8080 serves /slow, answered after `SLOW_SECONDS`, and /sleep/MS for
/// each of `SLEEPS_MS`, answered after MS milliseconds; port 8081 serves
/// routes: / and /users/* and /static/* (200), /users/ID/orders (503), and
/// 404 for the rest.
pub const SLOW_SECONDS: f64 = 0.3;
pub const SLEEPS_MS: [u32; 4] = [5, 20, 45, 300];

pub struct Nginx {
    pub proc: Proc,
    pub dir: TempDir,
}

/// The echo module (Debian's libnginx-mod-http-echo), where this nginx loads
/// modules from: `nginx -V` names the directory it was built with.
fn echo_module() -> PathBuf {
    let out = Command::new("nginx").arg("-V").output().expect("running nginx -V");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let dir = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--modules-path="))
        .unwrap_or_else(|| panic!("nginx -V names no --modules-path:\n{said}"));
    let module = PathBuf::from(dir).join("ngx_http_echo_module.so");
    assert!(module.exists(), "{} is missing: the echo module (libnginx-mod-http-echo) is needed", module.display());
    module
}

impl Nginx {
    pub fn start(pair: &Pair) -> Nginx {
        let dir = TempDir::new("hgnginx");
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("big"), vec![b'x'; 1 << 20]).unwrap();
        // A body whose every line looks like a status line, wherever TCP cuts it.
        std::fs::write(dir.path().join("trap"), b"HTTP/1.1 200 OK\r\n".repeat(16 * 1024)).unwrap();
        std::fs::write(dir.path().join("page"), b"<html>cached</html>\n").unwrap();
        let echo = echo_module().display().to_string();
        let sleeps: String = SLEEPS_MS
            .iter()
            .map(|ms| format!("location = /sleep/{ms} {{ echo_sleep {}; echo \"slept\"; }}\n", f64::from(*ms) / 1000.0))
            .collect();
        let conf = format!(
            r#"
load_module {echo};
worker_processes 1;
worker_rlimit_nofile 40000;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 19500; }}
http {{
    access_log {d}/access.log;
    log_format timing '$request_uri $request_time';
    access_log {d}/timing.log timing;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {SERVER_V4}:80 reuseport;
        listen [{SERVER_V6}]:80 reuseport;
        location = /ok {{ return 200 "ok\n"; }}
        location = /missing {{ return 404; }}
        location = /fail {{ return 500; }}
        location = /big {{ alias {d}/big; }}
        location = /trap {{ alias {d}/trap; }}
        location = /page {{ alias {d}/page; }}
        location = /nocontent {{ return 204; }}
        location = /chunked {{ echo_duplicate 65536 "chunked body bytes"; }}
        location = /upload {{ client_max_body_size 20m; client_body_buffer_size 1m; echo_read_request_body; echo "got it"; }}
    }}
    server {{
        listen {SERVER_V4}:8080;
        listen [{SERVER_V6}]:8080;
        location = /slow {{ echo_sleep {SLOW_SECONDS}; echo "slow"; }}
        {sleeps}
    }}
    server {{
        listen {SERVER_V4}:8081;
        listen [{SERVER_V6}]:8081;
        large_client_header_buffers 4 16k;
        location = / {{ return 200 "root\n"; }}
        location /users/ {{ return 200 "user\n"; }}
        location ~ ^/users/[^/]+/orders$ {{ return 503; }}
        location /static/ {{ return 200 "static\n"; }}
        location / {{ return 404; }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Pair::cmd(&pair.server_ns, "nginx");
        cmd.arg("-c").arg(&conf_path).args(["-g", "daemon off;"]);
        let proc = Proc::spawn(cmd, "nginx");
        let n = Nginx { proc, dir };
        n.wait_ready(pair);
        n
    }

    fn wait_ready(&self, pair: &Pair) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ok = Pair::cmd(&pair.client_ns, "curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{SERVER_V4}:8080/none")])
                .output()
                .map(|o| o.stdout == b"404")
                .unwrap_or(false);
            if ok {
                // The readiness probe is not part of any test's traffic. nginx
                // logs a request after answering it, so the probe's lines may
                // come after curl has its 404: under load they came after the
                // logs were emptied, and a test counted one request too many.
                // Wait for them, then empty the logs.
                let logged =
                    |name: &str| std::fs::read_to_string(self.dir.path().join(name)).is_ok_and(|t| t.contains("/none"));
                while !(logged("access.log") && logged("timing.log")) {
                    assert!(Instant::now() < deadline + Duration::from_secs(20), "nginx never logged the probe");
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::fs::write(self.access_log(), "").unwrap();
                std::fs::write(self.dir.path().join("timing.log"), "").unwrap();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not come up: {}",
            std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// nginx writes a request's log line after its response, so a client can
    /// finish before the line exists. Wait until the log has been quiet for a
    /// while (at most 5 s), so that every answered request is in it.
    fn settle(&self) {
        let quiet = std::time::Duration::from_millis(150);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let size = || std::fs::metadata(self.access_log()).map(|m| m.len()).unwrap_or(0);
        let mut last = size();
        while std::time::Instant::now() < deadline {
            std::thread::sleep(quiet);
            let now = size();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Every request in the access log, once it has settled: its
    /// request-target and status.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.settle();
        std::fs::read_to_string(self.access_log())
            .unwrap()
            .lines()
            .map(|l| {
                let mut parts = l.split('"');
                let request = parts.nth(1).unwrap_or("");
                let status = parts.next().unwrap_or("").split_whitespace().next().unwrap_or("0");
                (request.split(' ').nth(1).unwrap_or("").to_string(), status.parse().unwrap_or(0))
            })
            .collect()
    }

    /// Each request's `$request_time` in seconds (millisecond resolution), once the log has settled.
    pub fn request_times(&self) -> Vec<f64> {
        self.settle();
        std::fs::read_to_string(self.dir.path().join("timing.log"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }

    /// Requests in the access log with a status of this class ('2' for 2xx)
    /// and a path with this prefix, once the log has settled.
    pub fn count(&self, class: char, path_prefix: &str) -> u64 {
        self.settle();
        std::fs::read_to_string(self.access_log())
            .unwrap()
            .lines()
            .filter(|l| {
                // combined format: ... "GET /ok HTTP/1.1" 200 3 ...
                let mut parts = l.split('"');
                let request = parts.nth(1).unwrap_or("");
                let status = parts.next().unwrap_or("").trim_start();
                request.split(' ').nth(1).unwrap_or("").starts_with(path_prefix) && status.starts_with(class)
            })
            .count() as u64
    }
}

/// curl in the client namespace; each URL list shares one keep-alive connection.
pub fn curl(pair: &Pair, urls: &[String]) {
    let mut cmd: Command = Pair::cmd(&pair.client_ns, "curl");
    cmd.args(["-s", "--max-time", "20"]);
    for u in urls {
        cmd.arg(u);
        cmd.args(["-o", "/dev/null"]);
    }
    let st = cmd.status().expect("running curl");
    assert!(st.success(), "curl {urls:?} failed: {st}");
}
