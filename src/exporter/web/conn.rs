//! Connection limits: a cap on open connections (past it the oldest connection
//! that never sent a request, else the oldest idle keep-alive one, is closed),
//! and per-connection deadlines (request head, keep-alive idle, response write),
//! enforced by dropping the connection, which frees whatever it held.
//!
//! A scrape's permit (`--web.max-requests`) lives in the connection's
//! [`Tracker`] until the response's last byte has left hyper's buffer, so the
//! limit counts responses being sent, not only responses being built.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted (and maybe in the TLS handshake), no request head yet.
    Fresh { since: Instant },
    /// Between two requests; `first_byte` once the next head has begun.
    Idle { since: Instant, first_byte: Option<Instant> },
    /// A request is being answered; `body_done` once the body is all with hyper.
    Busy { since: Instant, body_done: bool },
}

struct State {
    phase: Phase,
    permit: Option<OwnedSemaphorePermit>,
}

/// What one connection is doing, shared by its IO, its service and its body.
pub struct Tracker {
    state: Mutex<State>,
    changed: Notify,
    evict: Notify,
}

impl Tracker {
    fn new() -> Tracker {
        let state = State { phase: Phase::Fresh { since: Instant::now() }, permit: None };
        Tracker { state: Mutex::new(state), changed: Notify::new(), evict: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        self.lock().phase = phase;
        self.changed.notify_one();
    }

    /// The service was called: the write deadline runs from now.
    pub fn request_started(&self) {
        self.set(Phase::Busy { since: Instant::now(), body_done: false });
    }

    /// Keep a scrape permit until the response has been sent.
    pub fn hold(&self, permit: OwnedSemaphorePermit) {
        self.lock().permit = Some(permit);
    }

    /// The body handed hyper its last frame (or was dropped).
    pub fn body_done(&self) {
        let mut s = self.lock();
        if let Phase::Busy { since, .. } = s.phase {
            s.phase = Phase::Busy { since, body_done: true };
        }
    }

    /// hyper flushed its write buffer to the socket.
    fn flushed(&self) {
        let mut s = self.lock();
        if let Phase::Busy { body_done: true, .. } = s.phase {
            s.phase = Phase::Idle { since: Instant::now(), first_byte: None };
            s.permit = None;
            drop(s);
            self.changed.notify_one();
        }
    }

    fn read_some(&self) {
        let mut s = self.lock();
        if let Phase::Idle { since, first_byte: None } = s.phase {
            s.phase = Phase::Idle { since, first_byte: Some(Instant::now()) };
            drop(s);
            self.changed.notify_one();
        }
    }

    fn deadline(&self, l: &Limits) -> Instant {
        match self.lock().phase {
            Phase::Fresh { since } => since + l.read_header_timeout,
            Phase::Idle { since, first_byte: None } => since + l.idle_timeout,
            Phase::Idle { first_byte: Some(t), .. } => t + l.read_header_timeout,
            Phase::Busy { since, .. } => since + l.write_timeout,
        }
    }

    /// 0: never sent a request, 1: idle keep-alive, None: busy (not evictable).
    fn eviction_rank(&self) -> Option<u8> {
        match self.lock().phase {
            Phase::Fresh { .. } => Some(0),
            Phase::Idle { .. } => Some(1),
            Phase::Busy { .. } => None,
        }
    }
}

/// Every open connection, oldest first.
pub struct Registry {
    max: usize,
    inner: Mutex<(u64, BTreeMap<u64, Arc<Tracker>>)>,
}

/// A registered connection; dropping it unregisters.
pub struct Registered {
    registry: Arc<Registry>,
    id: u64,
    pub tracker: Arc<Tracker>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.inner.lock().unwrap_or_else(|p| p.into_inner()).1.remove(&self.id);
    }
}

impl Registry {
    pub fn new(max: usize) -> Arc<Registry> {
        Arc::new(Registry { max, inner: Mutex::new((0, BTreeMap::new())) })
    }

    /// Register a new connection, closing an idle one first when at the cap.
    /// None: every connection is busy sending a response; refuse the new one.
    pub fn admit(self: &Arc<Self>) -> Option<Registered> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.1.len() >= self.max {
            let victim = [0, 1]
                .iter()
                .find_map(|rank| g.1.iter().find(|(_, t)| t.eviction_rank() == Some(*rank)).map(|(id, _)| *id))?;
            if let Some(t) = g.1.remove(&victim) {
                t.evict.notify_one();
            }
        }
        g.0 += 1;
        let id = g.0;
        let tracker = Arc::new(Tracker::new());
        g.1.insert(id, tracker.clone());
        Some(Registered { registry: self.clone(), id, tracker })
    }
}

/// Why a supervised connection ended early.
#[derive(Debug)]
pub enum Cut {
    Deadline,
    Evicted,
}

/// Run a connection's future until it ends, its current deadline passes, or
/// it is evicted; dropping the future closes the socket and frees its response.
pub async fn supervise<F: Future>(t: &Tracker, limits: &Limits, fut: F) -> Result<F::Output, Cut> {
    tokio::pin!(fut);
    loop {
        let deadline = t.deadline(limits);
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = tokio::time::sleep_until(deadline.into()) => {
                if Instant::now() >= t.deadline(limits) {
                    return Err(Cut::Deadline);
                }
            }
            () = t.changed.notified() => {}
            () = t.evict.notified() => return Err(Cut::Evicted),
        }
    }
}

/// A connection's stream, telling its tracker when a request begins and when
/// hyper has flushed everything it had to write.
pub struct Tracked<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, tracker: Arc<Tracker>) -> Tracked<S> {
        Tracked { inner, tracker }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            me.tracker.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            me.tracker.flushed();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
