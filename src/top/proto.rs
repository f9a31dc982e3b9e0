//! A reading from the protobuf exposition (`encoding=delimited`): the same
//! series as the text gives, plus each latency histogram's native buckets,
//! which only protobuf carries.

use std::time::Instant;

use hge_proto::{decode_delimited, Histogram};

use super::native::Native;
use super::reading::{family, is_5xx, Builder, Family, Reading};

impl Reading {
    pub fn from_protobuf(body: &[u8], at: Instant) -> Result<Reading, String> {
        let families = decode_delimited(body).map_err(|e| format!("protobuf exposition: {e}"))?;
        let mut b = Builder::new(at);
        for f in &families {
            for m in &f.metric {
                let value = m.counter.as_ref().map(|c| c.value()).or(m.gauge.as_ref().map(|g| g.value()));
                if value.is_some_and(|v| b.own(f.name(), v)) {
                    continue;
                }
                let Some((side, kind)) = family(f.name()) else { continue };
                let labels: Vec<(&str, &str)> = m.label.iter().map(|l| (l.name(), l.value())).collect();
                match (kind, value, &m.histogram) {
                    (Family::Requests, Some(v), _) => b.series(side, false, &labels).requests = v,
                    (Family::Histogram, _, Some(h)) => {
                        let v = b.series(side, true, &labels);
                        v.responses = h.sample_count() as f64;
                        v.error = is_5xx(&labels);
                        v.buckets = classic(h);
                        v.native = native(h)?;
                    }
                    _ => return Err(format!("{}: not the type top expects", f.name())),
                }
            }
        }
        Ok(b.snap)
    }
}

/// The classic buckets as (le, cumulative count), +Inf last (protobuf may leave it out).
fn classic(h: &Histogram) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = h.bucket.iter().map(|b| (b.upper_bound(), b.cumulative_count() as f64)).collect();
    if out.last().is_none_or(|b| b.0 != f64::INFINITY) {
        out.push((f64::INFINITY, h.sample_count() as f64));
    }
    out
}

/// The native buckets, if the histogram has them (a schema); spans and deltas
/// decoded into a count per bucket index.
fn native(h: &Histogram) -> Result<Option<Native>, String> {
    let Some(schema) = h.schema else { return Ok(None) };
    let mut n =
        Native { schema, zero_threshold: h.zero_threshold(), zero: h.zero_count() as f64, ..Default::default() };
    let (mut deltas, mut count, mut index) = (h.positive_delta.iter(), 0i64, 0i32);
    for (i, span) in h.positive_span.iter().enumerate() {
        // The first span's offset is its start; each later one's, the gap after the one before.
        index = if i == 0 { span.offset() } else { index.saturating_add(span.offset()) };
        for _ in 0..span.length() {
            let Some(d) = deltas.next() else { return Err("a native histogram with fewer deltas than spans".into()) };
            count += d;
            if count < 0 {
                return Err("a native histogram bucket below zero".into());
            }
            n.buckets.insert(index, count as f64);
            index = index.saturating_add(1);
        }
    }
    if deltas.next().is_some() {
        return Err("a native histogram with more deltas than spans".into());
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use hge_proto::{encode_delimited, BucketSpan, Counter, LabelPair, Metric, MetricFamily, MetricType};

    use super::*;

    fn family(name: &str, kind: MetricType, metric: Vec<Metric>) -> MetricFamily {
        MetricFamily { name: Some(name.into()), r#type: Some(kind as i32), metric, ..Default::default() }
    }

    fn labels(extra: &[(&str, &str)]) -> Vec<LabelPair> {
        let base = [("target", "web"), ("interface", "eth0"), ("port", "80"), ("method", "GET")];
        base.iter().chain(extra).map(|(n, v)| LabelPair::new(n, *v)).collect()
    }

    /// 7 responses: 2 in bucket -14, 0 in -13, 5 in -12 (spans [-14, 1] and [+1, 1]).
    fn histogram() -> Histogram {
        Histogram {
            sample_count: Some(7),
            sample_sum: Some(2.0),
            bucket: vec![hge_proto::Bucket {
                upper_bound: Some(0.25),
                cumulative_count: Some(2),
                ..Default::default()
            }],
            schema: Some(3),
            zero_threshold: Some(1e-6),
            zero_count: Some(0),
            positive_span: vec![
                BucketSpan { offset: Some(-14), length: Some(1) },
                BucketSpan { offset: Some(1), length: Some(1) },
            ],
            positive_delta: vec![2, 3],
            ..Default::default()
        }
    }

    fn body(h: Histogram) -> Vec<u8> {
        let requests = Metric {
            label: labels(&[]),
            counter: Some(Counter { value: Some(9.0), ..Default::default() }),
            ..Default::default()
        };
        let reads = Metric { counter: Some(Counter { value: Some(4.0), ..Default::default() }), ..Default::default() };
        let latency = Metric { label: labels(&[("status_class", "5xx")]), histogram: Some(h), ..Default::default() };
        encode_delimited(&[
            family("http_golden_exporter_map_reads_total", MetricType::Counter, vec![reads]),
            family("http_server_requests_total", MetricType::Counter, vec![requests]),
            family("http_server_request_duration_seconds", MetricType::Histogram, vec![latency]),
        ])
    }

    #[test]
    fn series_and_native_buckets_come_from_the_families() {
        let r = Reading::from_protobuf(&body(histogram()), Instant::now()).unwrap();
        assert_eq!(r.map_reads, Some(4.0));
        assert_eq!(r.rows.len(), 1);
        assert_eq!((r.rows[0].target.as_str(), r.rows[0].port.as_str()), ("web", "80"));
        let requests = r.series.iter().find(|(id, _)| !id.histogram).unwrap().1;
        assert_eq!(requests.requests, 9.0);
        let h = r.series.iter().find(|(id, _)| id.histogram).unwrap().1;
        assert_eq!((h.responses, h.error), (7.0, true));
        assert_eq!(h.buckets, vec![(0.25, 2.0), (f64::INFINITY, 7.0)]);
        let n = h.native.as_ref().unwrap();
        assert_eq!((n.schema, n.zero_threshold, n.zero), (3, 1e-6, 0.0));
        assert_eq!(n.buckets, [(-14, 2.0), (-12, 5.0)].into_iter().collect());
    }

    #[test]
    fn a_histogram_without_a_schema_has_no_native_buckets() {
        let h = Histogram { schema: None, positive_span: vec![], positive_delta: vec![], ..histogram() };
        let r = Reading::from_protobuf(&body(h), Instant::now()).unwrap();
        assert!(r.series.values().all(|v| v.native.is_none()));
    }

    #[test]
    fn spans_and_deltas_that_disagree_or_bytes_that_are_not_protobuf_are_errors() {
        let short = Histogram { positive_delta: vec![2], ..histogram() };
        assert!(Reading::from_protobuf(&body(short), Instant::now()).unwrap_err().contains("fewer deltas"));
        let long = Histogram { positive_delta: vec![2, 3, 1], ..histogram() };
        assert!(Reading::from_protobuf(&body(long), Instant::now()).unwrap_err().contains("more deltas"));
        let negative = Histogram { positive_delta: vec![2, -3], ..histogram() };
        assert!(Reading::from_protobuf(&body(negative), Instant::now()).unwrap_err().contains("below zero"));
        assert!(Reading::from_protobuf(b"# HELP x\n", Instant::now()).unwrap_err().contains("protobuf"));
    }
}
