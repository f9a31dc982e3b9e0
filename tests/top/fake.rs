//! A stand-in exporter for `top`: a tiny HTTP/1.1 server (optionally over TLS,
//! optionally asking for basic auth) whose /metrics text moves on every
//! `PERIOD`, as the real exporter's does on every map read, by known amounts.
//! Like the exporter, it states when each read was taken, so the rates `top`
//! shows are exact however late its fetches come.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the fake's counters move (its "map reads").
pub const PERIOD: Duration = Duration::from_millis(100);

/// One row of the fake's metrics: what it adds on every read.
pub struct Series {
    pub side: &'static str,
    pub target: &'static str,
    pub container: Option<&'static str>,
    pub port: u16,
    pub method: &'static str,
    /// Requests per read on each interface (eth0, eth1).
    pub requests: [u64; 2],
    /// Responses per read on eth0: (status class, count, the bucket bound they fall under).
    pub responses: &'static [(&'static str, u64, f64)],
}

/// Bucket bounds, as the exporter's default config has them.
pub const BOUNDS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The exposition after `reads` reads, the first taken at `start` (Unix time).
pub fn exposition(rows: &[Series], reads: u64, start: f64) -> String {
    let mut t = String::from("# HELP http_golden_exporter_map_reads_total Reads of the BPF maps.\n");
    t += "# TYPE http_golden_exporter_map_reads_total counter\n";
    t += &format!("http_golden_exporter_map_reads_total {reads}\n");
    t += "# TYPE http_golden_exporter_last_map_read_timestamp_seconds gauge\n";
    let at = start + reads as f64 * PERIOD.as_secs_f64();
    t += &format!("http_golden_exporter_last_map_read_timestamp_seconds {at}\n");
    for r in rows {
        let container = r.container.map(|c| format!("container=\"{c}\",")).unwrap_or_default();
        let base = |ifname: &str| {
            format!(
                "target=\"{}\",{container}interface=\"{ifname}\",port=\"{}\",method=\"{}\"",
                r.target, r.port, r.method
            )
        };
        for (i, ifname) in ["eth0", "eth1"].iter().enumerate() {
            t += &format!("http_{}_requests_total{{{}}} {}\n", r.side, base(ifname), r.requests[i] * reads);
        }
        for &(class, n, le) in r.responses {
            let labels = format!("{},status_class=\"{class}\"", base("eth0"));
            let family = format!("http_{}_request_duration_seconds", r.side);
            for b in BOUNDS {
                let c = if b >= le { n * reads } else { 0 };
                t += &format!("{family}_bucket{{{labels},le=\"{b}\"}} {c}\n");
            }
            t += &format!("{family}_bucket{{{labels},le=\"+Inf\"}} {}\n", n * reads);
            t += &format!("{family}_sum{{{labels}}} {}\n", le * (n * reads) as f64);
            t += &format!("{family}_count{{{labels}}} {}\n", n * reads);
        }
    }
    t
}

pub struct Fake {
    pub port: u16,
    /// The Authorization header of every request, in order ("" when absent).
    pub authorizations: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

pub struct Options {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The Authorization header to insist on (401 otherwise).
    pub authorization: Option<String>,
}

impl Fake {
    pub fn start(rows: &'static [Series], opts: Options) -> Fake {
        Fake::on(TcpListener::bind("127.0.0.1:0").unwrap(), rows, opts)
    }

    pub fn on(listener: TcpListener, rows: &'static [Series], opts: Options) -> Fake {
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let (st, auths) = (stop.clone(), authorizations.clone());
        let opts = Arc::new(opts);
        let started = (Instant::now(), std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (opts, auths) = (opts.clone(), auths.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let stream: Box<dyn ReadWrite> = match &opts.tls {
                        Some(cfg) => {
                            let tls = rustls::ServerConnection::new(cfg.clone()).unwrap();
                            Box::new(rustls::StreamOwned::new(tls, conn))
                        }
                        None => Box::new(conn),
                    };
                    serve(stream, rows, &opts, &auths, started);
                });
            }
        });
        Fake { port, authorizations, stop }
    }

    pub fn url(&self, scheme: &str) -> String {
        let host = if scheme == "https" { "localhost" } else { "127.0.0.1" };
        format!("{scheme}://{host}:{}/metrics", self.port)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Keep-alive requests on one connection until the client closes it.
fn serve(
    stream: Box<dyn ReadWrite>,
    rows: &[Series],
    opts: &Options,
    auths: &Mutex<Vec<String>>,
    started: (Instant, f64),
) {
    let mut r = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => head.push(line.trim_end().to_string()),
            }
        }
        let auth = head
            .iter()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("authorization")))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        auths.lock().unwrap().push(auth.clone());
        let reads = (started.0.elapsed().as_nanos() / PERIOD.as_nanos()) as u64;
        let (status, body) = match &opts.authorization {
            Some(want) if *want != auth => ("401 Unauthorized", "Unauthorized\n".to_string()),
            _ => ("200 OK", exposition(rows, reads, started.1)),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let w = r.get_mut();
        if w.write_all(resp.as_bytes()).and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}
