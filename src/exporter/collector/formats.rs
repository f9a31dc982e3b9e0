//! OpenMetrics text 1.0 of protobuf families (pb.rs), as prometheus/common's
//! expfmt writes it: a counter's family named without `_total`, its samples
//! with it, `_created` for counters and histograms, `# EOF` at the end. Used
//! for the exporter's own and the process families, which are few; the HTTP
//! families' OpenMetrics is written straight from the map read by http.rs,
//! to the same rules. The process metrics, which the prometheus crate gathers
//! in its own protobuf types, are converted to ours here.

use bytes::{BufMut, BytesMut};
use prometheus::proto as crate_pb;

use super::pb::{self, MetricType};
use super::text::{count, escape, pair, value};

/// The process_* families of the prometheus crate's registry, as our messages
/// (counters created at `started`, as the exporter's own). Only counters and
/// gauges occur there; anything else is left out, and logged.
pub fn process(families: &[crate_pb::MetricFamily], started: f64) -> Vec<pb::MetricFamily> {
    let mut out = Vec::new();
    for f in families {
        let kind = match f.get_field_type() {
            crate_pb::MetricType::COUNTER => MetricType::Counter,
            crate_pb::MetricType::GAUGE => MetricType::Gauge,
            other => {
                log::error!("process metric {} has type {other:?}: left out", f.name());
                continue;
            }
        };
        let metric = f.get_metric().iter().map(|m| {
            let label = m.get_label().iter().map(|l| pb::LabelPair::new(l.name(), l.value())).collect();
            match kind {
                MetricType::Counter => {
                    let created_timestamp = Some(pb::Timestamp::from_unix(started));
                    let counter =
                        pb::Counter { value: Some(m.get_counter().value()), created_timestamp, exemplar: None };
                    pb::Metric { label, counter: Some(counter), ..Default::default() }
                }
                _ => pb::Metric {
                    label,
                    gauge: Some(pb::Gauge { value: Some(m.get_gauge().value()) }),
                    ..Default::default()
                },
            }
        });
        out.push(pb::MetricFamily {
            name: Some(f.name().to_string()),
            help: Some(f.help().to_string()),
            r#type: Some(kind as i32),
            metric: metric.collect(),
            unit: None,
        });
    }
    out
}

/// The OpenMetrics text 1.0 of `families`, ending with `# EOF`.
pub fn openmetrics(families: &[pb::MetricFamily]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for f in families {
        family(&mut buf, f, true);
    }
    buf.extend_from_slice(b"# EOF\n");
    buf.to_vec()
}

/// The classic text of `families`: what the text writers write, for the
/// tests that hold the two ways of writing a read to each other.
#[cfg(test)]
pub fn classic_text(families: &[pb::MetricFamily]) -> String {
    let mut buf = BytesMut::new();
    for f in families {
        family(&mut buf, f, false);
    }
    String::from_utf8(buf.to_vec()).unwrap()
}

/// One family, in OpenMetrics (`om`) or in the classic text.
fn family(buf: &mut BytesMut, f: &pb::MetricFamily, om: bool) {
    let name = f.name();
    let kind = f.r#type();
    // A counter's family is named without `_total`; one whose name lacks it is "unknown", as expfmt does.
    let (family, om_type) = match kind {
        MetricType::Counter if !om => (name, "counter"),
        MetricType::Untyped if !om => (name, "untyped"),
        MetricType::Counter => match name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (name, "unknown"),
        },
        MetricType::Gauge => (name, "gauge"),
        MetricType::Histogram => (name, "histogram"),
        MetricType::GaugeHistogram => (name, "gaugehistogram"),
        MetricType::Summary => (name, "summary"),
        MetricType::Untyped => (name, "unknown"),
    };
    if let Some(help) = &f.help {
        buf.extend_from_slice(b"# HELP ");
        buf.extend_from_slice(family.as_bytes());
        buf.put_u8(b' ');
        // OpenMetrics escapes quotes in HELP too.
        escape(buf, help, om);
        buf.put_u8(b'\n');
    }
    buf.extend_from_slice(b"# TYPE ");
    buf.extend_from_slice(family.as_bytes());
    buf.put_u8(b' ');
    buf.extend_from_slice(om_type.as_bytes());
    buf.put_u8(b'\n');
    for m in &f.metric {
        let created = match kind {
            MetricType::Counter => {
                let c = m.counter.clone().unwrap_or_default();
                sample(buf, name, "", m, None, |b| value(b, c.value()));
                c.created_timestamp
            }
            MetricType::Gauge => {
                sample(buf, name, "", m, None, |b| value(b, m.gauge.clone().unwrap_or_default().value()));
                None
            }
            MetricType::Untyped => {
                sample(buf, name, "", m, None, |b| value(b, m.untyped.clone().unwrap_or_default().value()));
                None
            }
            MetricType::Histogram | MetricType::GaugeHistogram => {
                let h = m.histogram.clone().unwrap_or_default();
                let mut inf = false;
                for b in &h.bucket {
                    let le = b.upper_bound();
                    inf |= le == f64::INFINITY;
                    sample(buf, name, "_bucket", m, Some(("le", le)), |buf| count(buf, b.cumulative_count()));
                }
                if !inf {
                    sample(buf, name, "_bucket", m, Some(("le", f64::INFINITY)), |b| count(b, h.sample_count()));
                }
                sample(buf, name, "_sum", m, None, |b| value(b, h.sample_sum()));
                sample(buf, name, "_count", m, None, |b| count(b, h.sample_count()));
                h.created_timestamp
            }
            MetricType::Summary => {
                let s = m.summary.clone().unwrap_or_default();
                for q in &s.quantile {
                    sample(buf, name, "", m, Some(("quantile", q.quantile())), |b| value(b, q.value()));
                }
                sample(buf, name, "_sum", m, None, |b| value(b, s.sample_sum()));
                sample(buf, name, "_count", m, None, |b| count(b, s.sample_count()));
                s.created_timestamp
            }
        };
        if let Some(t) = created.filter(|_| om) {
            sample(buf, family, "_created", m, None, |b| value(b, t.unix()));
        }
    }
}

/// One sample line: name and suffix, the metric's labels (and `extra`, a
/// number written as the text writes `le`), the value `v` writes.
fn sample(
    buf: &mut BytesMut,
    name: &str,
    suffix: &str,
    m: &pb::Metric,
    extra: Option<(&str, f64)>,
    v: impl FnOnce(&mut BytesMut),
) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(suffix.as_bytes());
    for (i, l) in m.label.iter().enumerate() {
        pair(buf, i == 0, l.name(), l.value());
    }
    if let Some((n, x)) = extra {
        let x = if x == f64::INFINITY { "+Inf".to_string() } else { x.to_string() };
        pair(buf, m.label.is_empty(), n, &x);
    }
    if !m.label.is_empty() || extra.is_some() {
        buf.put_u8(b'}');
    }
    buf.put_u8(b' ');
    v(buf);
    buf.put_u8(b'\n');
}

#[cfg(test)]
#[path = "formats_test.rs"]
mod tests;
