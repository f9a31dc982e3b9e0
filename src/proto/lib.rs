//! The messages of io.prometheus.client's metrics.proto (prometheus/client_model),
//! written as prost structs: same field numbers and types, proto2 optional
//! fields as `Option`s, repeated scalars unpacked as proto2 has them, the
//! native-histogram fields of `Histogram` included. (The prometheus crate's
//! own copy of the schema lacks those, which is why this crate exists.) prost
//! writes and reads the wire format.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Summary = 2,
    Untyped = 3,
    Histogram = 4,
    GaugeHistogram = 5,
}

#[derive(Clone, PartialEq, Message)]
pub struct Gauge {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Counter {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
    #[prost(message, optional, tag = "2")]
    pub exemplar: Option<Exemplar>,
    #[prost(message, optional, tag = "3")]
    pub created_timestamp: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Quantile {
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
    #[prost(message, optional, tag = "4")]
    pub created_timestamp: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Untyped {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    /// Overrides sample_count if > 0.
    #[prost(double, optional, tag = "4")]
    pub sample_count_float: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    /// Classic buckets, by increasing upper bound; +Inf may be left out (it is the count).
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    #[prost(message, optional, tag = "15")]
    pub created_timestamp: Option<Timestamp>,
    // Native (exponential) buckets.
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    #[prost(double, optional, tag = "8")]
    pub zero_count_float: Option<f64>,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    /// Each bucket's count as a delta from the previous bucket's (or from zero).
    #[prost(sint64, repeated, packed = "false", tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(double, repeated, packed = "false", tag = "11")]
    pub negative_count: Vec<f64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, packed = "false", tag = "13")]
    pub positive_delta: Vec<i64>,
    #[prost(double, repeated, packed = "false", tag = "14")]
    pub positive_count: Vec<f64>,
    #[prost(message, repeated, tag = "16")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    #[prost(double, optional, tag = "4")]
    pub cumulative_count_float: Option<f64>,
    /// Inclusive.
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
    #[prost(message, optional, tag = "3")]
    pub exemplar: Option<Exemplar>,
}

/// Consecutive native buckets: `offset` from the end of the previous span
/// (the first span's is the index it starts at), `length` buckets long.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
    #[prost(message, optional, tag = "3")]
    pub timestamp: Option<Timestamp>,
}

/// google.protobuf.Timestamp (proto3).
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// From Unix time in seconds.
    pub fn from_unix(t: f64) -> Timestamp {
        let seconds = t.floor();
        let nanos = ((t - seconds) * 1e9).round().min(999_999_999.0);
        Timestamp { seconds: seconds as i64, nanos: nanos as i32 }
    }

    /// As Unix time in seconds.
    pub fn unix(&self) -> f64 {
        self.seconds as f64 + f64::from(self.nanos) / 1e9
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Untyped>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    #[prost(enumeration = "MetricType", optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
    #[prost(string, optional, tag = "5")]
    pub unit: Option<String>,
}

impl LabelPair {
    pub fn new(name: &str, value: impl Into<String>) -> LabelPair {
        LabelPair { name: Some(name.to_string()), value: Some(value.into()) }
    }
}

/// The body of a `encoding=delimited` response: each family prefixed with its length (a varint).
pub fn encode_delimited(families: &[MetricFamily]) -> Vec<u8> {
    let len: usize = families.iter().map(|f| f.encoded_len() + 10).sum();
    let mut buf = Vec::with_capacity(len);
    for f in families {
        // A Vec grows: encoding into it cannot run out of room.
        f.encode_length_delimited(&mut buf).expect("encoding into a Vec");
    }
    buf
}

/// The families of a delimited body, in order (tests, and clients such as top).
pub fn decode_delimited(mut body: &[u8]) -> Result<Vec<MetricFamily>, prost::DecodeError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        out.push(MetricFamily::decode_length_delimited(&mut body)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as client_model's Go types write them, worked out by hand from
    /// metrics.proto: tag = field << 3 | wire type.
    #[test]
    fn field_numbers_and_wire_types_are_those_of_metrics_proto() {
        let h = Histogram {
            sample_count: Some(1),
            schema: Some(-1),
            zero_threshold: Some(0.0),
            positive_span: vec![BucketSpan { offset: Some(-2), length: Some(1) }],
            positive_delta: vec![-1],
            created_timestamp: Some(Timestamp { seconds: 1, nanos: 0 }),
            ..Default::default()
        };
        let bytes = h.encode_to_vec();
        #[rustfmt::skip]
        let want = [
            0x08, 1,                   // 1 sample_count, varint
            0x28, 1,                   // 5 schema, sint32 zigzag(-1) = 1
            0x31, 0, 0, 0, 0, 0, 0, 0, 0, // 6 zero_threshold, 64-bit
            0x62, 4, 0x08, 3, 0x10, 1, // 12 positive_span {1 offset zigzag(-2)=3, 2 length 1}
            0x68, 1,                   // 13 positive_delta, unpacked sint64 zigzag(-1) = 1
            0x7a, 2, 0x08, 1,          // 15 created_timestamp {seconds 1}
        ];
        assert_eq!(bytes, want);
        let f = MetricFamily {
            name: Some("a".into()),
            r#type: Some(MetricType::Histogram as i32),
            metric: vec![Metric { histogram: Some(h), ..Default::default() }],
            ..Default::default()
        };
        let body = encode_delimited(&[f.clone(), f.clone()]);
        assert_eq!(decode_delimited(&body).unwrap(), vec![f.clone(), f]);
    }

    #[test]
    fn timestamps_keep_the_fraction() {
        let t = Timestamp::from_unix(1_796_000_000.25);
        assert_eq!(t, Timestamp { seconds: 1_796_000_000, nanos: 250_000_000 });
        assert_eq!(t.unix(), 1_796_000_000.25);
    }
}
