//! Response bodies: the chunks they already are (the metrics text is shared
//! between scrapes; copying it per scrape would multiply the memory), handed
//! to hyper in slices so that hyper's buffer holds little of it and the body
//! ends only when nearly all of it has reached the socket.

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

pub struct Chunks {
    queue: VecDeque<Bytes>,
    /// Told when the last frame is out (or the body dropped), to end the response's busy phase.
    tracker: Option<Arc<Tracker>>,
}

impl Chunks {
    pub fn new(chunks: Vec<Bytes>) -> Chunks {
        Chunks { queue: chunks.into_iter().filter(|b| !b.is_empty()).collect(), tracker: None }
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
        let Some(mut b) = me.queue.pop_front() else {
            me.done();
            return Poll::Ready(None);
        };
        if b.len() > SLICE {
            let rest = b.split_off(SLICE);
            me.queue.push_front(rest);
        }
        if me.queue.is_empty() {
            me.done();
        }
        Poll::Ready(Some(Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.queue.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.queue.iter().map(|b| b.len() as u64).sum())
    }
}
