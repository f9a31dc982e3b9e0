//! The HTTP families: requests and durations, as seen by local servers and by
//! local clients, encoded once per map read.

use bytes::Bytes;
use prometheus::proto::{self, MetricFamily};

use super::labels::Names;
use super::text::{encode, Desc};
use crate::bpf::{Histogram, Role, Snapshot};
use crate::config::StatusLabel;

/// One side's two families.
struct View {
    role: Role,
    requests: Desc,
    duration: Desc,
}

macro_rules! view {
    ($role:expr, $prefix:literal, $who:literal) => {
        View {
            role: $role,
            requests: Desc::counter(
                concat!($prefix, "_requests_total"),
                concat!("HTTP/1 requests ", $who, ", counted when the request line passes."),
            ),
            duration: Desc::histogram(
                concat!($prefix, "_request_duration_seconds"),
                concat!(
                    "Time from the packet carrying the request line to the packet carrying the final status line, ",
                    "for HTTP/1 requests ",
                    $who,
                    "."
                ),
            ),
        }
    };
}

const VIEWS: [View; 2] = [
    view!(Role::Server, "http_server", "received by a local server (seen on ingress)"),
    view!(Role::Client, "http_client", "sent by a local client (seen on egress)"),
];

/// How HTTP series are labelled and bucketed.
pub struct HttpFamilies {
    pub buckets_s: Vec<f64>,
    pub status_label: StatusLabel,
}

impl HttpFamilies {
    /// Build and encode the families one at a time: each may hold max_series
    /// series, and only one is in memory as protobufs at once. Empty ones are left out.
    pub fn encode(&self, snap: &Snapshot, names: &Names) -> Bytes {
        let mut buf = Vec::new();
        for view in &VIEWS {
            for f in [self.requests(view, snap, names), self.durations(view, snap, names)] {
                if !f.get_metric().is_empty() {
                    encode(&[f], &mut buf);
                }
            }
        }
        Bytes::from(buf)
    }

    fn requests(&self, view: &View, snap: &Snapshot, names: &Names) -> MetricFamily {
        let mut f = view.requests.family();
        for (k, v) in snap.requests.iter().filter(|(k, _)| k.role == view.role) {
            let mut m = proto::Metric::from_label(names.series(k, None));
            let mut c = proto::Counter::default();
            c.set_value(*v as f64);
            m.set_counter(c);
            f.mut_metric().push(m);
        }
        f
    }

    fn durations(&self, view: &View, snap: &Snapshot, names: &Names) -> MetricFamily {
        let mut f = view.duration.family();
        for (k, h) in snap.latency.iter().filter(|(k, _)| k.role == view.role) {
            let mut m = proto::Metric::from_label(names.series(k, Some(self.status_label)));
            m.set_histogram(self.histogram(h));
            f.mut_metric().push(m);
        }
        f
    }

    fn histogram(&self, h: &Histogram) -> proto::Histogram {
        let mut ph = proto::Histogram::default();
        ph.set_sample_count(h.count);
        ph.set_sample_sum(h.sum_ns as f64 / 1e9);
        // The kernel keeps per-bucket counts; exposition wants them cumulative.
        // The +Inf bucket is added by the encoder from sample_count.
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.buckets_s.len());
        for (bound, n) in self.buckets_s.iter().zip(&h.buckets) {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        ph.set_bucket(buckets);
        ph
    }
}
