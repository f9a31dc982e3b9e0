//! One fetch of `/metrics`, reduced to the series `top` shows: per series, the
//! requests counter or the response histogram, grouped by row (side, target,
//! container, port, method, route). Interfaces and status labels stay apart here, so
//! that a counter reset or a vanished series is seen per series, not per sum.

use std::collections::HashMap;
use std::time::Instant;

use super::expo::samples;
use super::native::Native;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    #[default]
    Server,
    Client,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// What one row of the table stands for. `container` and `route` are "" on
/// series that have none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    pub side: Side,
    pub target: String,
    pub container: String,
    pub port: String,
    pub method: String,
    pub route: String,
}

impl RowKey {
    /// The row this one is part of when rows are grouped by route: every port
    /// and method of its target's route together ("*").
    pub fn by_route(&self) -> RowKey {
        RowKey { port: "*".into(), method: "*".into(), ..self.clone() }
    }
}

/// One series' values in one fetch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Values {
    /// `*_requests_total`.
    pub requests: f64,
    /// `*_request_duration_seconds_count`: responses.
    pub responses: f64,
    /// The histogram's status label says 5xx.
    pub error: bool,
    /// `*_request_duration_seconds_bucket`: (le, cumulative count), in exposition order.
    pub buckets: Vec<(f64, f64)>,
    /// The native buckets, when the exposition was protobuf and had them.
    pub native: Option<Native>,
}

/// Where a series belongs: its row, whether it is the requests counter or the
/// histogram, and every other label (interface, status, anything else).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesId {
    pub row: u32,
    pub histogram: bool,
    pub rest: Box<str>,
}

#[derive(Debug, Clone)]
pub struct Reading {
    pub rows: Vec<RowKey>,
    pub series: HashMap<SeriesId, Values>,
    /// `http_golden_exporter_map_reads_total`: which read of the BPF maps this text shows.
    pub map_reads: Option<f64>,
    /// `http_golden_exporter_last_map_read_timestamp_seconds`: when that read was taken (Unix time).
    pub read_at: Option<f64>,
    pub at: Instant,
}

/// The labels that make the row; the rest are summed over.
const ROW_LABELS: [&str; 5] = ["target", "container", "port", "method", "route"];

impl Reading {
    pub fn parse(text: &str, at: Instant) -> Result<Reading, String> {
        let mut b = Builder::new(at);
        for s in samples(text) {
            let s = s?;
            if b.own(s.name, s.value) {
                continue;
            }
            let Some((side, family)) = family(s.name) else { continue };
            let labels: Vec<(&str, &str)> = s.labels.iter().map(|(n, v)| (*n, v.as_ref())).collect();
            let v = b.series(side, family != Family::Requests, &labels);
            match family {
                Family::Requests => v.requests = s.value,
                Family::Count => {
                    v.responses = s.value;
                    v.error = is_5xx(&labels);
                }
                Family::Bucket => {
                    let le = s.label("le").and_then(|l| l.parse::<f64>().ok().or(le_inf(l)));
                    let Some(le) = le else { return Err(format!("{}: no valid le label", s.name)) };
                    v.buckets.push((le, s.value));
                }
                // The text has no native histograms: this family name is protobuf's.
                Family::Histogram => {}
            }
        }
        Ok(b.snap)
    }
}

/// A reading being made, one series at a time, from either format.
pub(super) struct Builder {
    pub snap: Reading,
    index: HashMap<RowKey, u32>,
}

impl Builder {
    pub fn new(at: Instant) -> Builder {
        let snap = Reading { rows: Vec::new(), series: HashMap::new(), map_reads: None, read_at: None, at };
        Builder { snap, index: HashMap::new() }
    }

    /// Takes the exporter's read counter and read time: whether `name` was one of them.
    pub fn own(&mut self, name: &str, value: f64) -> bool {
        match name {
            "http_golden_exporter_map_reads_total" => self.snap.map_reads = Some(value),
            "http_golden_exporter_last_map_read_timestamp_seconds" => self.snap.read_at = Some(value),
            _ => return false,
        }
        true
    }

    /// The values of the series with these labels (`le` aside), its row added if new.
    pub fn series(&mut self, side: Side, histogram: bool, labels: &[(&str, &str)]) -> &mut Values {
        let label = |name: &str| labels.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| *v).to_string();
        let key = RowKey {
            side,
            target: label("target"),
            container: label("container"),
            port: label("port"),
            method: label("method"),
            route: label("route"),
        };
        let next = self.index.len() as u32;
        let rows = &mut self.snap.rows;
        let row = *self.index.entry(key).or_insert_with_key(|k| {
            rows.push(k.clone());
            next
        });
        self.snap.series.entry(SeriesId { row, histogram, rest: rest(labels) }).or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Requests,
    Bucket,
    Count,
    /// The whole histogram, as protobuf sends it.
    Histogram,
}

pub(super) fn family(name: &str) -> Option<(Side, Family)> {
    let (side, rest) = if let Some(r) = name.strip_prefix("http_server_") {
        (Side::Server, r)
    } else {
        (Side::Client, name.strip_prefix("http_client_")?)
    };
    let f = match rest {
        "requests_total" => Family::Requests,
        "request_duration_seconds_bucket" => Family::Bucket,
        "request_duration_seconds_count" => Family::Count,
        "request_duration_seconds" => Family::Histogram,
        _ => return None,
    };
    Some((side, f))
}

fn le_inf(l: &str) -> Option<f64> {
    (l == "+Inf").then_some(f64::INFINITY)
}

/// A 5xx response: `status_class="5xx"`, or `status_code="5NN"` under `status_label = "code"`.
pub(super) fn is_5xx(labels: &[(&str, &str)]) -> bool {
    let label = |name: &str| labels.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    if let Some(c) = label("status_class") {
        return c == "5xx";
    }
    label("status_code").is_some_and(|c| c.len() == 3 && c.starts_with('5') && c.bytes().all(|b| b.is_ascii_digit()))
}

/// Every label but the row's and `le`, as one string (in exposition order, which
/// is the same for every sample of a series).
fn rest(labels: &[(&str, &str)]) -> Box<str> {
    let mut out = String::new();
    for (n, v) in labels {
        if *n == "le" || ROW_LABELS.contains(n) {
            continue;
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
        out.push('\0');
    }
    out.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_server_requests_total HTTP/1 requests received by a local server.
# TYPE http_server_requests_total counter
http_server_requests_total{target="web",interface="eth0",port="80",method="GET"} 10
http_server_requests_total{target="web",interface="eth1",port="80",method="GET"} 5
http_server_request_duration_seconds_bucket{target="web",interface="eth0",port="80",method="GET",status_class="5xx",le="0.1"} 1
http_server_request_duration_seconds_bucket{target="web",interface="eth0",port="80",method="GET",status_class="5xx",le="+Inf"} 2
http_server_request_duration_seconds_sum{target="web",interface="eth0",port="80",method="GET",status_class="5xx"} 0.3
http_server_request_duration_seconds_count{target="web",interface="eth0",port="80",method="GET",status_class="5xx"} 2
http_client_requests_total{target="host",container="shop",interface="eth0",port="443",method="POST"} 7
http_golden_exporter_map_reads_total 42
http_golden_exporter_build_info{version="0.1.0"} 1
"#;

    #[test]
    fn series_are_grouped_by_row_and_kept_apart_by_interface_and_status() {
        let s = Reading::parse(TEXT, Instant::now()).unwrap();
        assert_eq!(s.map_reads, Some(42.0));
        assert_eq!(s.rows.len(), 2);
        let web = &s.rows[0];
        assert_eq!((web.side, web.target.as_str(), web.container.as_str()), (Side::Server, "web", ""));
        assert_eq!((web.port.as_str(), web.method.as_str()), ("80", "GET"));
        let shop = &s.rows[1];
        assert_eq!((shop.side, shop.container.as_str(), shop.port.as_str()), (Side::Client, "shop", "443"));
        // Two request series (eth0, eth1) and one histogram for row 0; one request series for row 1.
        assert_eq!(s.series.len(), 4);
        let h = s.series.iter().find(|(id, _)| id.histogram).unwrap().1;
        assert_eq!(h.buckets, vec![(0.1, 1.0), (f64::INFINITY, 2.0)]);
        assert_eq!((h.responses, h.error), (2.0, true));
        let total: f64 = s.series.iter().filter(|(id, _)| id.row == 0 && !id.histogram).map(|(_, v)| v.requests).sum();
        assert_eq!(total, 15.0);
    }

    #[test]
    fn five_hundreds_by_class_or_by_code() {
        let sample = |labels: &str| format!("http_server_request_duration_seconds_count{{{labels}}} 1");
        for (labels, want) in [
            (r#"status_class="5xx""#, true),
            (r#"status_class="4xx""#, false),
            (r#"status_code="503""#, true),
            (r#"status_code="404""#, false),
            (r#"status_code="5""#, false),
        ] {
            let s = Reading::parse(&sample(labels), Instant::now()).unwrap();
            assert_eq!(s.series.values().next().unwrap().error, want, "{labels}");
        }
    }

    #[test]
    fn a_bad_line_or_bucket_is_an_error() {
        assert!(Reading::parse("http_server_requests_total{x} 1\n", Instant::now()).is_err());
        let bad_le = r#"http_server_request_duration_seconds_bucket{le="x"} 1"#;
        assert!(Reading::parse(bad_le, Instant::now()).unwrap_err().contains("le"));
    }

    #[test]
    fn other_families_are_ignored() {
        let s = Reading::parse("process_cpu_seconds_total 3\nhttp_server_other 1\n", Instant::now()).unwrap();
        assert!(s.rows.is_empty() && s.series.is_empty() && s.map_reads.is_none());
    }
}
