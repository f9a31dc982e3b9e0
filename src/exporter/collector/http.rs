//! The HTTP families: requests and durations, as seen by local servers and by
//! local clients, written as text straight from a map snapshot, a piece at a
//! time (a [`Cursor`] remembers where the last piece ended), so that no copy
//! of the whole exposition is ever held.

use bytes::{BufMut, BytesMut};
use prost::Message;

use super::created::Created;
use super::labels::Names;
use super::pb;
use super::text::{count, header_as, value, Kind};
use hge_shared::config::StatusLabel;
use hge_shared::snapshot::{Histogram, Role, SeriesKey, Snapshot};

/// One family: a role's requests (a counter) or durations (a histogram).
struct Family {
    role: Role,
    name: &'static str,
    help: &'static str,
    histogram: bool,
}

macro_rules! view {
    ($role:expr, $prefix:literal, $who:literal) => {
        [
            Family {
                role: $role,
                name: concat!($prefix, "_requests_total"),
                help: concat!("HTTP/1 requests ", $who, ", counted when the request line passes."),
                histogram: false,
            },
            Family {
                role: $role,
                name: concat!($prefix, "_request_duration_seconds"),
                help: concat!(
                    "Time from the packet carrying the request line to the packet carrying the final status line, ",
                    "for HTTP/1 requests ",
                    $who,
                    "."
                ),
                histogram: true,
            },
        ]
    };
}

/// In the order they are exposed: server requests, server durations, client requests, client durations.
const FAMILIES: [[Family; 2]; 2] = [
    view!(Role::Server, "http_server", "received by a local server (seen on ingress)"),
    view!(Role::Client, "http_client", "sent by a local client (seen on egress)"),
];

impl Family {
    /// How many entries of `snap` are in this family's map (of either role).
    fn entries(&self, snap: &Snapshot) -> usize {
        if self.histogram {
            snap.latency.len()
        } else {
            snap.requests.len()
        }
    }

    /// The role of entry `i` of this family's map.
    fn role_of(&self, snap: &Snapshot, i: usize) -> Role {
        if self.histogram {
            snap.latency[i].0.role
        } else {
            snap.requests[i].0.role
        }
    }
}

fn family(i: usize) -> Option<&'static Family> {
    FAMILIES.as_flattened().get(i)
}

/// How HTTP series are labelled and bucketed.
pub struct HttpFamilies {
    pub status_label: StatusLabel,
    /// `,le="0.005"} ` for each bound, as the encoder formats it (f64 `Display`).
    le: Vec<String>,
    /// The bounds themselves (protobuf).
    bounds: Vec<f64>,
    /// Native buckets (protobuf only): their schema and zero threshold in seconds.
    pub native: Option<(i32, f64)>,
}

/// Where the text of one snapshot stopped: family, next entry, and whether the
/// family's header is out (a family with no series has none).
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    family: usize,
    entry: usize,
    headed: bool,
}

impl Cursor {
    pub fn done(&self) -> bool {
        family(self.family).is_none()
    }

    #[cfg(test)]
    pub fn finished() -> Cursor {
        Cursor { family: FAMILIES.as_flattened().len(), ..Cursor::default() }
    }
}

/// The encoded length of each family's series; see [`HttpFamilies::lengths`].
#[derive(Debug, Default, Clone)]
pub struct Lengths([usize; FAMILIES.len() * 2]);

impl HttpFamilies {
    pub fn new(buckets_s: &[f64], status_label: StatusLabel) -> HttpFamilies {
        let le = buckets_s.iter().map(|b| format!(",le=\"{b}\"}} ")).collect();
        HttpFamilies { status_label, le, bounds: buckets_s.to_vec(), native: None }
    }

    /// Append the text after `cur` to `buf`, whole series at a time, until `buf`
    /// holds at least `min` bytes or the families end (`cur.done()`); `labels`
    /// is scratch space. With `om`, the times each series was created: the
    /// OpenMetrics text (a counter's family named without `_total`, HELP with
    /// quotes escaped, a `_created` sample after each series), else the classic.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &self,
        snap: &Snapshot,
        names: &Names,
        om: Option<&Created>,
        cur: &mut Cursor,
        buf: &mut BytesMut,
        labels: &mut BytesMut,
        min: usize,
    ) {
        while let Some(f) = family(cur.family) {
            let entries = f.entries(snap);
            while cur.entry < entries {
                let i = cur.entry;
                cur.entry += 1;
                let key: &SeriesKey = if f.histogram { &snap.latency[i].0 } else { &snap.requests[i].0 };
                if key.role != f.role {
                    continue;
                }
                let kind = if f.histogram { Kind::Histogram } else { Kind::Counter };
                // The family of `x_total` samples is `x` in OpenMetrics, and so are their `x_created`.
                let base = if om.is_some() && !f.histogram { f.name.trim_end_matches("_total") } else { f.name };
                if !cur.headed {
                    header_as(buf, base, f.help, kind, om.is_some());
                    cur.headed = true;
                }
                labels.clear();
                if f.histogram {
                    names.write_series(labels, key, Some(self.status_label));
                    self.histogram(buf, f.name, labels, &snap.latency[i].1);
                } else {
                    names.write_series(labels, key, None);
                    sample(buf, f.name, "", labels, b"} ");
                    count(buf, snap.requests[i].1);
                    buf.put_u8(b'\n');
                }
                if let Some(c) = om {
                    let times = if f.histogram { &c.latency } else { &c.requests };
                    sample(buf, base, "_created", labels, b"} ");
                    value(buf, times.get(i).copied().unwrap_or_default());
                    buf.put_u8(b'\n');
                }
                if buf.len() >= min {
                    return;
                }
            }
            *cur = Cursor { family: cur.family + 1, ..Cursor::default() };
        }
    }

    /// The same families as [`HttpFamilies::fill`] writes, in the same order,
    /// as protobuf messages, each series with the time it was `created`. A
    /// family with no series is left out, as in the text.
    pub fn families(&self, snap: &Snapshot, names: &Names, created: &Created) -> Vec<pb::MetricFamily> {
        let mut out = Vec::new();
        for f in FAMILIES.as_flattened() {
            let metric: Vec<pb::Metric> =
                self.series(f, snap).map(|i| self.metric(f, snap, names, created, i)).collect();
            if !metric.is_empty() {
                out.push(pb::MetricFamily { metric, ..head(f) });
            }
        }
        out
    }

    /// The encoded length of each family's series (the `metric` fields of its
    /// MetricFamily), in [`FAMILIES`] order: what [`HttpFamilies::encode`]
    /// needs to write a family's length before its series. A pass over every
    /// series, each made into `scratch` in turn.
    pub fn lengths(&self, snap: &Snapshot, names: &Names, created: &Created, scratch: &mut pb::Metric) -> Lengths {
        let mut lengths = Lengths::default();
        for (f, len) in FAMILIES.as_flattened().iter().zip(&mut lengths.0) {
            for i in self.series(f, snap) {
                self.make(f, snap, names, created, i, scratch);
                // Field 4 of MetricFamily, `repeated Metric metric`.
                *len += prost::encoding::message::encoded_len(4, scratch);
            }
        }
        lengths
    }

    /// The families of [`HttpFamilies::families`] encoded (length-delimited)
    /// after `cur` onto `buf`, whole series at a time, until `buf` holds at
    /// least `min` bytes or the families end (`cur.done()`). Each series is
    /// made into `scratch` in turn, so only the piece being written is held.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        snap: &Snapshot,
        names: &Names,
        created: &Created,
        lengths: &Lengths,
        cur: &mut Cursor,
        buf: &mut BytesMut,
        scratch: &mut pb::Metric,
        min: usize,
    ) {
        while let Some(f) = family(cur.family) {
            let len = lengths.0[cur.family];
            let entries = f.entries(snap);
            if len == 0 {
                // No series: no family, as in the text.
                cur.entry = entries;
            } else if !cur.headed {
                let head = head(f);
                // Writing into a BytesMut cannot run out of room.
                prost::encode_length_delimiter(head.encoded_len() + len, buf).expect("encoding into a BytesMut");
                head.encode(buf).expect("encoding into a BytesMut");
                cur.headed = true;
            }
            while cur.entry < entries {
                let i = cur.entry;
                cur.entry += 1;
                if f.role_of(snap, i) != f.role {
                    continue;
                }
                self.make(f, snap, names, created, i, scratch);
                prost::encoding::message::encode(4, scratch, buf);
                if buf.len() >= min {
                    return;
                }
            }
            *cur = Cursor { family: cur.family + 1, ..Cursor::default() };
        }
    }

    /// The indexes of the entries of `snap` in family `f`.
    fn series<'a>(&self, f: &'a Family, snap: &'a Snapshot) -> impl Iterator<Item = usize> + 'a {
        (0..f.entries(snap)).filter(move |i| f.role_of(snap, *i) == f.role)
    }

    /// Series `i` of family `f` as a protobuf Metric.
    fn metric(&self, f: &Family, snap: &Snapshot, names: &Names, created: &Created, i: usize) -> pb::Metric {
        let mut m = pb::Metric::default();
        self.make(f, snap, names, created, i, &mut m);
        m
    }

    /// The same, made into `m` again in place: its strings and vectors are
    /// overwritten, not allocated anew, when `m` held a series of `f` before.
    fn make(&self, f: &Family, snap: &Snapshot, names: &Names, created: &Created, i: usize, m: &mut pb::Metric) {
        let at = |v: &[f64]| v.get(i).map(|t| pb::Timestamp::from_unix(*t));
        if f.histogram {
            let (key, h) = &snap.latency[i];
            m.counter = None;
            let out = m.histogram.get_or_insert_with(Default::default);
            let mut cumulative = 0;
            out.bucket.clear();
            out.bucket.extend(self.bounds.iter().zip(&h.buckets).map(|(le, n)| {
                cumulative += n;
                pb::Bucket { cumulative_count: Some(cumulative), upper_bound: Some(*le), ..Default::default() }
            }));
            out.sample_count = Some(h.count);
            out.sample_sum = Some(h.sum_ns as f64 / 1e9);
            out.created_timestamp = at(&created.latency);
            out.positive_span.clear();
            out.positive_delta.clear();
            if let Some((schema, zero_threshold)) = self.native {
                native_buckets(out, schema, zero_threshold, h);
            }
            names.pairs_into(&mut m.label, key, Some(self.status_label));
        } else {
            let (key, n) = &snap.requests[i];
            m.histogram = None;
            m.counter =
                Some(pb::Counter { value: Some(*n as f64), created_timestamp: at(&created.requests), exemplar: None });
            names.pairs_into(&mut m.label, key, None);
        }
    }

    fn histogram(&self, buf: &mut BytesMut, name: &str, labels: &[u8], h: &Histogram) {
        // The kernel keeps per-bucket counts; exposition wants them cumulative,
        // and +Inf is the count (the kernel's last slot is not exposed).
        let mut cumulative = 0;
        for (le, n) in self.le.iter().zip(&h.buckets) {
            cumulative += n;
            sample(buf, name, "_bucket", labels, le.as_bytes());
            count(buf, cumulative);
            buf.put_u8(b'\n');
        }
        sample(buf, name, "_bucket", labels, b",le=\"+Inf\"} ");
        count(buf, h.count);
        buf.put_u8(b'\n');
        sample(buf, name, "_sum", labels, b"} ");
        value(buf, h.sum_ns as f64 / 1e9);
        buf.put_u8(b'\n');
        sample(buf, name, "_count", labels, b"} ");
        count(buf, h.count);
        buf.put_u8(b'\n');
    }
}

/// A family's name, help and type, without its series.
fn head(f: &Family) -> pb::MetricFamily {
    let kind = if f.histogram { pb::MetricType::Histogram } else { pb::MetricType::Counter };
    pb::MetricFamily {
        name: Some(f.name.to_string()),
        help: Some(f.help.to_string()),
        r#type: Some(kind as i32),
        metric: Vec::new(),
        unit: None,
    }
}

/// Everything of a sample line before its value.
fn sample(buf: &mut BytesMut, name: &str, suffix: &str, labels: &[u8], close: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(suffix.as_bytes());
    buf.extend_from_slice(labels);
    buf.extend_from_slice(close);
}

#[cfg(test)]
#[path = "pieces.rs"]
mod pieces;

/// The native buckets of `h` into `out`, as Prometheus reads them: spans of
/// consecutive buckets (each offset from the end of the one before; the first
/// from bucket 0), and the counts, each as the difference from the one before.
pub fn native_buckets(out: &mut pb::Histogram, schema: i32, zero_threshold: f64, h: &Histogram) {
    out.schema = Some(schema);
    out.zero_threshold = Some(zero_threshold);
    out.zero_count = Some(h.native_zero);
    let mut next: Option<i32> = None;
    let mut last = 0i64;
    for &(index, n) in h.native.iter().filter(|(_, n)| *n > 0) {
        match next {
            Some(i) if i == index => {
                if let Some(span) = out.positive_span.last_mut() {
                    span.length = Some(span.length.unwrap_or(0) + 1);
                }
            }
            _ => out.positive_span.push(pb::BucketSpan { offset: Some(index - next.unwrap_or(0)), length: Some(1) }),
        }
        out.positive_delta.push(n as i64 - last);
        last = n as i64;
        next = Some(index + 1);
    }
}

#[cfg(test)]
mod native_tests {
    use super::*;

    #[test]
    fn native_buckets_are_spans_of_consecutive_buckets_and_delta_counts() {
        let h = Histogram {
            count: 12,
            native_zero: 2,
            native: vec![(-3, 1), (-2, 4), (0, 0), (1, 2), (2, 2), (7, 1)],
            ..Default::default()
        };
        let mut out = pb::Histogram::default();
        native_buckets(&mut out, 3, 1e-6, &h);
        assert_eq!((out.schema, out.zero_threshold, out.zero_count), (Some(3), Some(1e-6), Some(2)));
        let spans: Vec<(i32, u32)> = out.positive_span.iter().map(|s| (s.offset(), s.length())).collect();
        // -3 and -2; then 1 and 2 (a gap of 2 after -2: bucket 0 counted nothing); then 7 (a gap of 4).
        assert_eq!(spans, [(-3, 2), (2, 2), (4, 1)]);
        assert_eq!(out.positive_delta, [1, 3, -2, 0, -1]);
    }

    #[test]
    fn no_native_buckets_is_an_empty_native_histogram() {
        let mut out = pb::Histogram::default();
        native_buckets(&mut out, 0, 0.5, &Histogram::default());
        assert_eq!((out.schema, out.zero_count), (Some(0), Some(0)));
        assert!(out.positive_span.is_empty() && out.positive_delta.is_empty());
    }
}
