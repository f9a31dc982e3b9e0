//! The HTTP endpoint: landing page and metrics, behind the optional web config
//! (TLS, basic auth, headers; config.rs, tls.rs, auth.rs, reload.rs), in the
//! format the scraper asks for (negotiate.rs), gzip, and limits that hold
//! (conn.rs, body.rs) whatever the format.

mod auth;
mod body;
mod config;
mod conn;
mod negotiate;
mod reload;
mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub use body::Chunks;
pub use conn::Limits;
pub use negotiate::{negotiate, Format};
pub use reload::Watched as WebConfig;

use crate::collector::Exposition;
use conn::{Cut, Registry, Tracked, Tracker};
use hge_shared::config::parse_listen_address;

/// What the endpoint serves and how: the exposition, the path, the limits, TLS and auth.
pub struct Endpoint {
    pub exposition: Arc<Exposition>,
    pub telemetry_path: String,
    pub max_requests: usize,
    pub limits: Limits,
    /// `--web.config.file`, loaded; None: plain HTTP without auth.
    pub config: Option<Arc<WebConfig>>,
}

/// Load and check a web config file (at start: any error is fatal).
pub fn load_config(path: &std::path::Path) -> Result<WebConfig> {
    WebConfig::load(path)
}

/// Bound synchronously, before anything is attached: a port in use fails fast.
pub fn bind(addr: &str) -> Result<std::net::TcpListener> {
    let sock = parse_listen_address(addr).map_err(anyhow::Error::msg)?;
    let listener = match std::net::TcpListener::bind(sock) {
        Ok(l) => l,
        // A host with IPv6 disabled: ":PORT" falls back to every IPv4 address.
        Err(e) if addr.starts_with(':') && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let v4 = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), sock.port());
            std::net::TcpListener::bind(v4).with_context(|| format!("listening on {v4}"))?
        }
        Err(e) => return Err(e).with_context(|| format!("listening on {addr}")),
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What every connection shares.
struct Shared {
    web: Arc<Endpoint>,
    scrapes: Arc<Semaphore>,
    auth: auth::Auth,
    /// exporter-toolkit's rate_limit: (tokens, last refill).
    bucket: Mutex<(f64, Instant)>,
}

pub async fn serve(listener: TcpListener, web: Arc<Endpoint>) {
    let registry = Registry::new(web.limits.max_connections);
    let shared = Arc::new(Shared {
        scrapes: Arc::new(Semaphore::new(web.max_requests)),
        web,
        auth: auth::Auth::default(),
        bucket: Mutex::new((f64::MAX, Instant::now())),
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(reg) = registry.admit() else {
            log::debug!("connection from {peer}: refused, every connection is busy sending a response");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let limits = shared.web.limits;
            let tracker = reg.tracker.clone();
            match conn::supervise(&tracker, &limits, connection(stream, shared, tracker.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("connection from {peer}: {e:#}"),
                Err(Cut::Deadline) => log::debug!("connection from {peer}: closed at its deadline"),
                Err(Cut::Evicted) => log::debug!("connection from {peer}: closed to admit a new one"),
            }
            drop(reg);
        });
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, tracker: Arc<Tracker>) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let tls = shared.web.config.as_ref().and_then(|c| c.current().tls.clone());
    match tls {
        Some(cfg) => {
            let stream = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await.context("TLS handshake")?;
            http(Tracked::new(stream, tracker.clone()), shared, tracker).await
        }
        None => http(Tracked::new(stream, tracker.clone()), shared, tracker).await,
    }
}

async fn http<S>(io: Tracked<S>, shared: Arc<Shared>, tracker: Arc<Tracker>) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let (shared, tracker) = (shared.clone(), tracker.clone());
        async move {
            tracker.request_started();
            let r = handle(&shared, &tracker, req).await;
            Ok::<_, Infallible>(r.map(|b| b.tracked(tracker)))
        }
    });
    // Deadlines are conn.rs's (supervise); hyper's own header timeout would
    // also count the keep-alive wait.
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .await
        .context("HTTP")
}

async fn handle(shared: &Shared, tracker: &Tracker, req: Request<Incoming>) -> Response<Chunks> {
    let cfg = shared.web.config.as_ref().map(|c| c.current());
    let mut r = match &cfg {
        Some(c) if c.rate_limit.is_some_and(|(burst, every)| !take_token(&shared.bucket, burst, every)) => {
            text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
        }
        Some(c) if !c.users.is_empty() && !shared.auth.check(&c.users, req.headers().get(AUTHORIZATION)).await => {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        _ => route(shared, tracker, &req).await,
    };
    if let Some(c) = &cfg {
        for (k, v) in &c.headers {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

/// A token bucket as Go's rate.Limiter(rate.Every(every), burst).
fn take_token(bucket: &Mutex<(f64, Instant)>, burst: u32, every: Duration) -> bool {
    let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let refill = now.duration_since(b.1).as_secs_f64() / every.as_secs_f64();
    b.0 = (b.0.min(burst as f64) + refill).min(burst as f64);
    b.1 = now;
    if b.0 >= 1.0 {
        b.0 -= 1.0;
        true
    } else {
        false
    }
}

async fn route(shared: &Shared, tracker: &Tracker, req: &Request<Incoming>) -> Response<Chunks> {
    let web = &shared.web;
    let path = req.uri().path();
    let is_metrics = path == web.telemetry_path;
    if path != "/" && !is_metrics {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if !is_metrics {
        return landing(&web.telemetry_path);
    }
    // Held by the connection until the response has been sent (conn.rs).
    let Ok(permit) = shared.scrapes.clone().try_acquire_owned() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many concurrent scrapes (web.max_requests); try again\n");
    };
    tracker.hold(permit);
    let format = negotiate(req.headers().get(ACCEPT));
    let gzip = accepts_gzip(req.headers().get(ACCEPT_ENCODING));
    let Some(body) = metrics(&web.exposition, format, gzip).await else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "writing the metrics failed\n");
    };
    log::debug!("scrape: {} ({})", format.content_type(), if gzip { "gzip" } else { "identity" });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    h.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// The metrics in `format`, gzipped when `gzip`; None (logged) if writing them failed.
async fn metrics(exposition: &Arc<Exposition>, format: Format, gzip: bool) -> Option<Chunks> {
    let scrape = match format {
        Format::Text => exposition.scrape(),
        Format::OpenMetrics { .. } => exposition.scrape_openmetrics(),
        // Protobuf is encoded, and gzipped when asked, a piece at a time as it
        // is sent, like the plain text; its families' lengths come first, a
        // pass over every series (tens of milliseconds at tens of thousands):
        // off the runtime.
        Format::Protobuf => {
            let exposition = exposition.clone();
            let body = blocking(move || exposition.protobuf()).await?;
            return Some(if gzip { Chunks::streamed(body.gzip()) } else { Chunks::streamed(body) });
        }
    };
    if gzip {
        // The first gzip scrape after a map read deflates the shared part: off the runtime thread.
        blocking(move || scrape.gzip()).await.map(Chunks::new)
    } else {
        // Written piece by piece from the last map read as the client takes it.
        Some(Chunks::streamed(scrape.plain()))
    }
}

/// What `make` makes, off the runtime thread; None (logged) if making it panicked.
async fn blocking<T: Send + 'static>(make: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(make).await {
        Ok(made) => Some(made),
        Err(e) => {
            log::error!("writing the metrics: {e}");
            None
        }
    }
}

/// Whether Accept-Encoding allows gzip (`gzip`, `x-gzip` or `*` with q > 0);
/// otherwise identity, which every client takes.
pub fn accepts_gzip(h: Option<&HeaderValue>) -> bool {
    let Some(h) = h.and_then(|h| h.to_str().ok()) else { return false };
    h.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        q > 0.0 && ["gzip", "x-gzip", "*"].iter().any(|c| coding.eq_ignore_ascii_case(c))
    })
}

fn text(status: StatusCode, msg: &'static str) -> Response<Chunks> {
    let mut r = Response::new(Chunks::one(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn landing(metrics_path: &str) -> Response<Chunks> {
    let path = html_escape(metrics_path);
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>HTTP Golden Exporter</title></head><body>\n\
         <h1>HTTP Golden Exporter</h1>\n\
         <p>HTTP/1 request rate, errors and latency of every service behind the watched interfaces, from tc eBPF.</p>\n\
         <p>Version {}</p>\n<ul><li><a href=\"{path}\">Metrics</a></li></ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut r = Response::new(Chunks::one(body));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_negotiation() {
        let a = |s: &'static str| accepts_gzip(Some(&HeaderValue::from_static(s)));
        assert!(a("gzip"));
        assert!(a("deflate, gzip;q=0.5"));
        assert!(a("*"));
        assert!(a("identity, X-GZIP"));
        assert!(!a("gzip;q=0"));
        assert!(!a("identity"));
        assert!(!a("br, deflate"));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn rate_limit_is_a_token_bucket() {
        let b = Mutex::new((f64::MAX, Instant::now()));
        assert!(take_token(&b, 2, Duration::from_secs(3600)));
        assert!(take_token(&b, 2, Duration::from_secs(3600)));
        assert!(!take_token(&b, 2, Duration::from_secs(3600)));
        let z = Mutex::new((f64::MAX, Instant::now()));
        assert!(!take_token(&z, 0, Duration::from_secs(1)), "burst 0 allows nothing, as in Go");
    }
}
