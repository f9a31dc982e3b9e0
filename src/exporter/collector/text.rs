//! The Prometheus text format (0.0.4), written directly: the one writer of the
//! HTTP families (which can hold hundreds of thousands of samples) and of the
//! exporter's own. The process metrics come from the prometheus crate.

use bytes::{BufMut, BytesMut};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};

/// A family's type, as its `# TYPE` line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Append the text form of `families` (the process metrics of the
/// prometheus crate's ProcessCollector, its one use here). Encoding only fails
/// on inconsistent families: logged, not returned.
pub fn encode(families: &[MetricFamily], buf: &mut Vec<u8>) {
    if let Err(e) = TextEncoder::new().encode(families, buf) {
        log::error!("encoding metrics: {e}");
    }
}

// Byte for byte as prometheus's TextEncoder writes the format, which the
// exposition was written with before (docs/exposition.prom keeps it).

/// `# HELP` (help escaped) and `# TYPE` lines of a family.
pub fn header(buf: &mut BytesMut, name: &str, help: &str, kind: Kind) {
    header_as(buf, name, help, kind, false);
}

/// The same, in OpenMetrics (`om`: quotes in the help escaped too) or in the classic text.
pub fn header_as(buf: &mut BytesMut, name: &str, help: &str, kind: Kind, om: bool) {
    buf.extend_from_slice(b"# HELP ");
    buf.extend_from_slice(name.as_bytes());
    buf.put_u8(b' ');
    escape(buf, help, om);
    buf.extend_from_slice(b"\n# TYPE ");
    buf.extend_from_slice(name.as_bytes());
    buf.put_u8(b' ');
    buf.extend_from_slice(kind.as_str().as_bytes());
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
