//! The HTTP endpoint: landing page and metrics, nothing else.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::collector::Exposition;
use crate::config::parse_listen_address;

pub struct Web {
    pub exposition: Arc<Exposition>,
    pub telemetry_path: String,
    pub max_requests: usize,
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

pub async fn serve(listener: TcpListener, web: Arc<Web>) {
    let limit = Arc::new(Semaphore::new(web.max_requests));
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
        let web = web.clone();
        let limit = limit.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let web = web.clone();
                let limit = limit.clone();
                async move { Ok::<_, Infallible>(handle(&web, &limit, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// A response body sent as the chunks it already is (the metrics text is
/// cached per map read; copying it per scrape would double the memory).
pub struct Chunks(VecDeque<Bytes>);

impl Chunks {
    fn one(b: impl Into<Bytes>) -> Chunks {
        Chunks(VecDeque::from([b.into()]))
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

fn handle(web: &Web, limit: &Semaphore, req: Request<Incoming>) -> Response<Chunks> {
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
    let Ok(_permit) = limit.try_acquire() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many concurrent scrapes (web.max_requests); try again\n");
    };
    let mut r = Response::new(Chunks(web.exposition.render().into()));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
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
