//! Prometheus text: metric families built and encoded by the prometheus crate
//! (the few self-metrics), and the pieces of the format written directly (the
//! HTTP families, which can hold hundreds of thousands of samples).

use bytes::{BufMut, BytesMut};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

/// A family's name, help and type: everything but its samples.
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
}

/// One sample's labels and value.
pub type Sample = (Vec<(&'static str, String)>, f64);

impl Desc {
    pub const fn counter(name: &'static str, help: &'static str) -> Desc {
        Desc { name, help, kind: MetricType::COUNTER }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Desc {
        Desc { name, help, kind: MetricType::GAUGE }
    }

    /// The family with no samples yet.
    pub fn family(&self) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(self.name.to_string());
        f.set_help(self.help.to_string());
        f.set_field_type(self.kind);
        f
    }

    /// A counter or gauge family with these samples.
    pub fn with(&self, samples: impl IntoIterator<Item = Sample>) -> MetricFamily {
        let mut f = self.family();
        for (labels, v) in samples {
            let mut m = proto::Metric::from_label(labels.iter().map(|(n, v)| label(n, v)).collect());
            if self.kind == MetricType::COUNTER {
                let mut c = proto::Counter::default();
                c.set_value(v);
                m.set_counter(c);
            } else {
                let mut g = proto::Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
            f.mut_metric().push(m);
        }
        f
    }

    /// A family of one unlabelled sample.
    pub fn single(&self, v: f64) -> MetricFamily {
        self.with([(vec![], v)])
    }
}

pub fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// Append the text form of `families` to `buf`. Encoding only fails on
/// inconsistent families, which we build ourselves: logged, not returned.
pub fn encode(families: &[MetricFamily], buf: &mut Vec<u8>) {
    if let Err(e) = TextEncoder::new().encode(families, buf) {
        log::error!("encoding metrics: {e}");
    }
}

// Writing the text format directly, byte for byte as prometheus's TextEncoder
// does (the oracle test in http.rs compares the two on the same series).

/// `# HELP` (help escaped) and `# TYPE` lines of a family.
pub fn header(buf: &mut BytesMut, name: &str, help: &str, kind: &str) {
    buf.extend_from_slice(b"# HELP ");
    buf.extend_from_slice(name.as_bytes());
    buf.put_u8(b' ');
    escape(buf, help, false);
    buf.extend_from_slice(b"\n# TYPE ");
    buf.extend_from_slice(name.as_bytes());
    buf.put_u8(b' ');
    buf.extend_from_slice(kind.as_bytes());
    buf.put_u8(b'\n');
}

/// `\` as `\\`, a newline as `\n`, and (in label values) `"` as `\"`.
pub fn escape(buf: &mut BytesMut, v: &str, quotes: bool) {
    for &b in v.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'"' if quotes => buf.extend_from_slice(b"\\\""),
            _ => buf.put_u8(b),
        }
    }
}

/// `,name="value"` (or `{name="value"` first): one label pair, the value escaped.
pub fn pair(buf: &mut BytesMut, first: bool, name: &str, value: &str) {
    buf.put_u8(if first { b'{' } else { b',' });
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"=\"");
    escape(buf, value, true);
    buf.put_u8(b'"');
}

/// A sample value as the encoder writes it: Rust's `Display` of the f64.
pub fn value(buf: &mut BytesMut, v: f64) {
    use std::fmt::Write;
    // Writing into memory cannot fail.
    let _ = write!(buf, "{v}");
}

/// A count, which the encoder turns into an f64 first: below 2^53 that is the
/// integer itself, written without going through `fmt`.
pub fn count(buf: &mut BytesMut, n: u64) {
    if n >= 1 << 53 {
        return value(buf, n as f64);
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}
