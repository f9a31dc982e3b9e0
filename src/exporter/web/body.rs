//! Response bodies: the chunks they already are (the gzipped metrics are
//! shared between scrapes; copying them per scrape would multiply the memory),
//! handed to hyper in slices so that hyper's buffer holds little of it, or
//! pieces written only when hyper asks for the next (the plain metrics); the
//! body ends only when nearly all of it has reached the socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::conn::Tracker;

/// Frames of at most this many bytes (slices of the shared buffer, not copies).
const SLICE: usize = 64 * 1024;

/// Pieces made on demand, after the queue.
pub type Pieces = Box<dyn Iterator<Item = Bytes> + Send>;

pub struct Chunks {
    queue: VecDeque<Bytes>,
    more: Option<Pieces>,
    /// Told when the last frame is out (or the body dropped), to end the response's busy phase.
    tracker: Option<Arc<Tracker>>,
}

impl Chunks {
    pub fn new(chunks: Vec<Bytes>) -> Chunks {
        Chunks { queue: chunks.into_iter().filter(|b| !b.is_empty()).collect(), more: None, tracker: None }
    }

    /// A body of unknown length, each piece made when hyper asks for it.
    pub fn streamed(pieces: impl Iterator<Item = Bytes> + Send + 'static) -> Chunks {
        Chunks { queue: VecDeque::new(), more: Some(Box::new(pieces)), tracker: None }
    }

    pub fn one(b: impl Into<Bytes>) -> Chunks {
        Chunks::new(vec![b.into()])
    }

    pub fn tracked(mut self, t: Arc<Tracker>) -> Chunks {
        self.tracker = Some(t);
        self
    }

    fn done(&mut self) {
        if let Some(t) = self.tracker.take() {
            t.body_done();
        }
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let me = self.get_mut();
        if me.queue.is_empty() {
            match me.more.as_mut().map(|m| m.find(|b| !b.is_empty())) {
                Some(Some(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                Some(None) => me.more = None,
                None => {}
            }
        }
        let Some(mut b) = me.queue.pop_front() else {
            me.done();
            return Poll::Ready(None);
        };
        if b.len() > SLICE {
            let rest = b.split_off(SLICE);
            me.queue.push_front(rest);
        }
        if me.queue.is_empty() && me.more.is_none() {
            me.done();
        }
        Poll::Ready(Some(Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.queue.is_empty() && self.more.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let queued = self.queue.iter().map(|b| b.len() as u64).sum();
        match self.more {
            // At least what is queued; hyper sends it chunked (HTTP/1.1) or until close (1.0).
            Some(_) => {
                let mut h = SizeHint::new();
                h.set_lower(queued);
                h
            }
            None => SizeHint::with_exact(queued),
        }
    }
}
