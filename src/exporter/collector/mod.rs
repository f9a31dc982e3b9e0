//! From map snapshots to the Prometheus text exposition.
//!
//! The map reader hands each [`Snapshot`] to [`Exposition::record_read`], which
//! keeps it (with the names to label it by) until the next read. A scrape
//! writes the HTTP families as text straight from that snapshot, a piece at a
//! time while the response is sent (http.rs, labelled by labels.rs; gzip.rs
//! deflates them once per read), then the exporter's own metrics as of now
//! (own.rs, one table of them), all with one text writer (text.rs).
//!
//! OpenMetrics is written the same way, with each HTTP series' creation time
//! (created.rs), its gzip deflated once per read too. Protobuf is encoded a
//! piece at a time as it is sent too, each series made again into one reused
//! message (http.rs, with the hge-proto crate's messages), and gzipped as it
//! goes when asked; the small own and process families go through formats.rs.

mod created;
mod formats;
#[cfg(test)]
mod golden;
mod gzip;
mod http;
mod labels;
mod own;
/// metrics.proto's messages, which top reads too.
pub use hge_proto as pb;
mod text;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prometheus::Registry;

use hge_shared::config::StatusLabel;
use hge_shared::snapshot::Snapshot;
use hge_shared::topology::{Attached, Discovered, Program, Topology};
use http::{Cursor, HttpFamilies, Lengths};
pub use labels::Names;

/// Pieces of the plain exposition are about this large.
const PIECE: usize = 64 * 1024;

/// One good map read, served until the next: the snapshot, the names it is
/// labelled with, and (on first demand) its HTTP families deflated.
#[derive(Default)]
struct Read {
    snapshot: Snapshot,
    names: Arc<Names>,
    gzip: std::sync::OnceLock<gzip::Prefix>,
    /// The same, of the OpenMetrics text.
    gzip_om: std::sync::OnceLock<gzip::Prefix>,
    /// When each series was first seen (Unix seconds).
    created: created::Created,
}

#[derive(Default)]
struct State {
    read: Arc<Read>,
    names: Arc<Names>,
    attached: Vec<Attached>,
    discovery: Vec<Discovered>,
    programs: Vec<Program>,
    first_seen: created::FirstSeen,
    reads: u64,
    read_errors: u64,
    last_read: Duration,
    max_series: u32,
    /// Last complete flow-table figures; evictions only ever grow (they are counters).
    flows_live: u64,
    flows_evicted: u64,
    evicted_unanswered: u64,
    never_confirmed: u64,
    /// When the last read succeeded: the watchdog's measure of health.
    last_good_read: Option<Instant>,
    /// The same, as Unix time, for the exposition (clients that compute rates between reads).
    last_good_read_unix: f64,
}

impl State {
    fn snapshot(&self) -> &Snapshot {
        &self.read.snapshot
    }
}

/// What the web server exposes; updated by the map reader.
pub struct Exposition {
    http: Arc<HttpFamilies>,
    state: RwLock<State>,
    /// The process metrics (process_*), the one thing the prometheus crate writes here.
    process: Registry,
    /// Unix time the exporter started: when its own counters were created.
    started: f64,
}

impl Exposition {
    pub fn new(buckets_s: Vec<f64>, status_label: StatusLabel, max_series: u32) -> Arc<Exposition> {
        Self::with_native(buckets_s, status_label, max_series, None)
    }

    /// With native buckets (schema, zero threshold in seconds) in the protobuf exposition.
    pub fn with_native(
        buckets_s: Vec<f64>,
        status_label: StatusLabel,
        max_series: u32,
        native: Option<(i32, f64)>,
    ) -> Arc<Exposition> {
        let mut http = HttpFamilies::new(&buckets_s, status_label);
        http.native = native;
        let process = Registry::new();
        process
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registers on a fresh registry");
        Arc::new(Exposition {
            http: Arc::new(http),
            state: RwLock::new(State { max_series, ..Default::default() }),
            process,
            started: unix_now(),
        })
    }

    // A panic while the lock was held leaves plain data behind, still worth serving.
    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_topology(&self, topology: &Topology) {
        let mut s = self.state_mut();
        s.names = Arc::new(Names::from_topology(topology));
        s.attached = topology.attached.clone();
        s.attached.sort();
        s.discovery = topology.discovery.clone();
        s.programs = topology.programs.clone();
    }

    pub fn record_read(&self, result: anyhow::Result<Snapshot>, took: Duration) -> anyhow::Result<()> {
        let mut s = self.state_mut();
        s.reads += 1;
        s.last_read = took;
        match result {
            Ok(snap) => {
                if let Some(f) = snap.flows {
                    s.flows_live = f.live;
                    s.flows_evicted = s.flows_evicted.max(f.evicted);
                    s.evicted_unanswered = s.evicted_unanswered.max(f.evicted_unanswered);
                    s.never_confirmed = s.never_confirmed.max(f.never_confirmed);
                }
                let now = unix_now();
                let created = s.first_seen.update(&snap, now);
                // Labelled with the names known at the time of the read.
                let read = Arc::new(Read { snapshot: snap, names: s.names.clone(), created, ..Default::default() });
                // The previous read goes when the last scrape still sending it ends.
                s.read = read;
                s.last_good_read = Some(Instant::now());
                s.last_good_read_unix = now;
                Ok(())
            }
            Err(e) => {
                s.read_errors += 1;
                Err(e)
            }
        }
    }

    /// How long ago a map read last succeeded (None: never).
    pub fn since_good_read(&self) -> Option<Duration> {
        self.state().last_good_read.map(|t| t.elapsed())
    }

    /// Series currently held in the aggregate maps (requests + histograms).
    pub fn series(&self) -> usize {
        let s = self.state();
        s.snapshot().requests.len() + s.snapshot().latency.len()
    }

    /// One scrape: the last read's HTTP families (written as they are sent)
    /// and the exporter's own metrics as of now.
    pub fn scrape(&self) -> Scrape {
        let (read, mut own) = {
            let s = self.state();
            let mut own = BytesMut::new();
            own::write(&s, &mut own);
            (s.read.clone(), Vec::from(own))
        };
        text::encode(&self.process.gather(), &mut own);
        Scrape { http: self.http.clone(), read, own: Bytes::from(own), om: false }
    }

    /// The same in OpenMetrics text 1.0, ending with `# EOF`.
    pub fn scrape_openmetrics(&self) -> Scrape {
        let (read, own) = self.own_families();
        Scrape { http: self.http.clone(), read, own: Bytes::from(formats::openmetrics(&own)), om: true }
    }

    /// The last read, and the exporter's own and the process families as of now.
    fn own_families(&self) -> (Arc<Read>, Vec<pb::MetricFamily>) {
        let (read, mut own) = {
            let s = self.state();
            (s.read.clone(), own::families(&s, self.started))
        };
        own.extend(formats::process(&self.process.gather(), self.started));
        (read, own)
    }

    /// Every family the text exposition has, in its order, as protobuf
    /// messages: the last read's HTTP families, the exporter's own metrics as
    /// of now, the process metrics. Families without samples are left out.
    pub fn families(&self) -> Vec<pb::MetricFamily> {
        let (read, mut own) = self.own_families();
        let mut families = self.http.families(&read.snapshot, &read.names, &read.created);
        families.append(&mut own);
        families
    }

    /// The delimited protobuf body (`encoding=delimited`) of [`Exposition::families`],
    /// the HTTP families encoded a piece at a time as it is sent. Blocks for a
    /// while (a pass over every series, for the families' lengths, which come
    /// before their series): run it off the runtime.
    pub fn protobuf(&self) -> Protobuf {
        let (read, own) = self.own_families();
        let mut scratch = pb::Metric::default();
        let lengths = self.http.lengths(&read.snapshot, &read.names, &read.created, &mut scratch);
        Protobuf {
            http: self.http.clone(),
            read,
            own: Some(Bytes::from(pb::encode_delimited(&own))),
            lengths,
            cursor: Cursor::default(),
            buf: BytesMut::new(),
            scratch,
        }
    }

    /// The whole text exposition at once (tests, small maps).
    pub fn render(&self) -> Vec<Bytes> {
        self.scrape().plain().collect()
    }
}

/// What one scrape sends; see [`Scrape::plain`] and [`Scrape::gzip`].
pub struct Scrape {
    http: Arc<HttpFamilies>,
    read: Arc<Read>,
    own: Bytes,
    /// OpenMetrics, not the classic text.
    om: bool,
}

impl Scrape {
    /// The text exposition in pieces of about 64 KiB, each written when asked
    /// for, into one buffer that is reused once the previous piece has been sent.
    pub fn plain(self) -> Plain {
        let Scrape { http, read, own, om } = self;
        let (cursor, buf, labels) = (Cursor::default(), BytesMut::new(), BytesMut::new());
        Plain { http, read, om, own: Some(own), cursor, buf, labels }
    }

    /// The gzipped exposition: one gzip member whose HTTP part is deflated at
    /// most once per map read (concurrent callers wait for the one doing it)
    /// and shared. Blocks for a while on the first call: run it off the runtime.
    pub fn gzip(self) -> Vec<Bytes> {
        let Scrape { http, read, own, om } = self;
        let created = om.then_some(&read.created);
        let prefix = if om { &read.gzip_om } else { &read.gzip }.get_or_init(|| {
            gzip::Prefix::deflate(|cur, buf, labels| {
                http.fill(&read.snapshot, &read.names, created, cur, buf, labels, PIECE)
            })
        });
        prefix.with(&own)
    }
}

/// The plain exposition, a piece per `next()`.
pub struct Plain {
    http: Arc<HttpFamilies>,
    read: Arc<Read>,
    om: bool,
    cursor: Cursor,
    buf: BytesMut,
    labels: BytesMut,
    /// The exporter's own metrics, sent after the HTTP families.
    own: Option<Bytes>,
}

impl Iterator for Plain {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let (http, read) = (&self.http, &self.read);
        let created = self.om.then_some(&read.created);
        let (cur, labels) = (&mut self.cursor, &mut self.labels);
        next_piece(cur, &mut self.own, &mut self.buf, |cur, buf| {
            http.fill(&read.snapshot, &read.names, created, cur, buf, labels, PIECE)
        })
    }
}

/// The next piece of a body written from `cursor` by `write`, in a buffer
/// that is reused once the piece handed out before has been dropped; once
/// the cursor is done, `own`, then the end.
fn next_piece(
    cursor: &mut Cursor,
    own: &mut Option<Bytes>,
    buf: &mut BytesMut,
    write: impl FnOnce(&mut Cursor, &mut BytesMut),
) -> Option<Bytes> {
    if cursor.done() {
        return own.take().filter(|b| !b.is_empty());
    }
    buf.reserve(PIECE + PIECE / 4);
    write(cursor, buf);
    Some(buf.split().freeze())
}

/// The protobuf body, a piece per `next()`, as [`Plain`] is the text's.
pub struct Protobuf {
    http: Arc<HttpFamilies>,
    read: Arc<Read>,
    /// The exporter's own and the process families, sent after the HTTP ones.
    own: Option<Bytes>,
    lengths: Lengths,
    cursor: Cursor,
    buf: BytesMut,
    /// The series being encoded, made again in place for each.
    scratch: pb::Metric,
}

impl Protobuf {
    /// The same body as one gzip member, deflated a piece at a time as it is sent.
    pub fn gzip(self) -> impl Iterator<Item = Bytes> + Send {
        gzip::Stream::new(self)
    }
}

impl Iterator for Protobuf {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let Read { snapshot, names, created, .. } = &*self.read;
        let (http, lengths, scratch) = (&self.http, &self.lengths, &mut self.scratch);
        next_piece(&mut self.cursor, &mut self.own, &mut self.buf, |cur, buf| {
            http.encode(snapshot, names, created, lengths, cur, buf, scratch, PIECE)
        })
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::UNIX_EPOCH.elapsed().map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Time one map read.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}

#[cfg(test)]
#[path = "mod_test.rs"]
mod tests;
