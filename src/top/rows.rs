//! Rows of the table from two readings: counter deltas per series (a series
//! that went down was reset and counts from zero; a new one counts from zero),
//! summed per row, divided by the time between the two map reads.

use std::collections::BTreeMap;

use super::native::Native;
use super::quantile::quantile;
use super::reading::{Reading, RowKey, Values};

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: RowKey,
    /// Requests per second.
    pub rate: Option<f64>,
    /// 5xx responses, in percent of all responses.
    pub errors: Option<f64>,
    /// Seconds.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// The quantiles come from native buckets (protobuf), not the classic ones.
    pub native: bool,
    /// What the numbers come from, so that rows can be added up (grouped).
    pub sums: Sums,
}

/// A row's increases between the two readings, and the time between them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sums {
    pub seconds: f64,
    pub requests: f64,
    pub responses: f64,
    pub errors: f64,
    /// (le, increase of its cumulative count), by le.
    pub buckets: Vec<(f64, f64)>,
    /// The native buckets' increases, when every histogram series of the row
    /// had native buckets of one schema.
    pub native: Option<Native>,
}

/// The sum of a row's native buckets: nothing added yet, a sum, or one that
/// cannot be told (a series without native buckets, or of another schema).
#[derive(Debug, Default)]
enum NativeSum {
    #[default]
    Empty,
    Sum(Native),
    Unknown,
}

impl NativeSum {
    /// Adds one series' native buckets (None: it has none).
    fn add(&mut self, more: Option<&Native>) {
        *self = match (std::mem::take(self), more) {
            (NativeSum::Empty, Some(n)) => NativeSum::Sum(n.clone()),
            (NativeSum::Sum(mut s), Some(n)) if s.schema == n.schema => {
                if s.add(n) {
                    NativeSum::Sum(s)
                } else {
                    NativeSum::Unknown
                }
            }
            _ => NativeSum::Unknown,
        };
    }

    fn native(self) -> Option<Native> {
        match self {
            NativeSum::Sum(n) => Some(n),
            _ => None,
        }
    }
}

impl Row {
    fn empty(key: RowKey) -> Row {
        Row { key, rate: None, errors: None, p50: None, p99: None, native: false, sums: Sums::default() }
    }

    /// The row of `key` whose increases are `sums`; `measured`: two readings were compared.
    fn of(key: RowKey, sums: Sums, measured: bool) -> Row {
        let s = &sums;
        let native = s.native.as_ref().filter(|n| n.count() > 0.0);
        let q = |q: f64| native.map_or_else(|| quantile(q, &s.buckets), |n| n.quantile(q));
        Row {
            key,
            rate: (measured && s.seconds > 0.0).then(|| s.requests / s.seconds),
            errors: (s.responses > 0.0).then(|| 100.0 * s.errors / s.responses),
            p50: q(0.5),
            p99: q(0.99),
            native: native.is_some(),
            sums,
        }
    }
}

/// `rows` added up per route (their keys' [`RowKey::by_route`]): requests,
/// responses and bucket increases summed, then rates, 5xx shares and
/// quantiles taken again from the sums.
pub fn by_route(rows: &[Row]) -> Vec<Row> {
    let mut groups: BTreeMap<RowKey, (Sums, bool, NativeSum)> = BTreeMap::new();
    for r in rows {
        let (g, measured, native) = groups.entry(r.key.by_route()).or_default();
        *measured |= r.rate.is_some();
        if r.sums.responses > 0.0 {
            native.add(r.sums.native.as_ref());
        }
        g.seconds = g.seconds.max(r.sums.seconds);
        g.requests += r.sums.requests;
        g.responses += r.sums.responses;
        g.errors += r.sums.errors;
        for &(le, c) in &r.sums.buckets {
            match g.buckets.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += c,
                None => g.buckets.push((le, c)),
            }
        }
    }
    groups
        .into_iter()
        .map(|(key, (mut sums, measured, native))| {
            sums.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            sums.native = native.native();
            Row::of(key, sums, measured)
        })
        .collect()
}

/// The rows of `snap` with nothing measured yet (no earlier read to compare with).
pub fn unmeasured(snap: &Reading) -> Vec<Row> {
    snap.rows.iter().cloned().map(Row::empty).collect()
}

/// Per-row sums of the series deltas.
#[derive(Default)]
struct Delta {
    requests: f64,
    responses: f64,
    errors: f64,
    /// Upper bound → increase of its cumulative count.
    buckets: BTreeMap<OrdF64, f64>,
    native: NativeSum,
}

/// A bucket bound as a map key, ordered as `f64::total_cmp` orders.
#[derive(Debug, Clone, Copy)]
struct OrdF64(f64);
impl PartialEq for OrdF64 {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// What happened between `prev` and `cur`, `seconds` apart; one row per row of `cur`.
pub fn diff(prev: &Reading, cur: &Reading, seconds: f64) -> Vec<Row> {
    let mut deltas: Vec<Delta> = cur.rows.iter().map(|_| Delta::default()).collect();
    // Series of `prev` by their row's key and their other labels.
    let mut before: BTreeMap<(&RowKey, bool, &str), &Values> = BTreeMap::new();
    for (id, v) in &prev.series {
        before.insert((&prev.rows[id.row as usize], id.histogram, &id.rest), v);
    }
    for (id, v) in &cur.series {
        let old = before.get(&(&cur.rows[id.row as usize], id.histogram, &*id.rest)).copied();
        let d = &mut deltas[id.row as usize];
        if !id.histogram {
            d.requests += counter(old.map(|o| o.requests), v.requests);
            continue;
        }
        let reset = old.is_some_and(|o| v.responses < o.responses || went_down(&o.buckets, &v.buckets));
        let old = if reset { None } else { old };
        let n = v.responses - old.map_or(0.0, |o| o.responses);
        d.responses += n;
        if v.error {
            d.errors += n;
        }
        for &(le, c) in &v.buckets {
            let was = old.and_then(|o| o.buckets.iter().find(|b| b.0 == le)).map_or(0.0, |b| b.1);
            *d.buckets.entry(OrdF64(le)).or_default() += c - was;
        }
        // A series new since `prev`, or reset, counts all its buckets.
        let native = v.native.as_ref().map(|n| match old.and_then(|o| o.native.as_ref()) {
            Some(o) => n.since(o).unwrap_or_else(|| n.clone()),
            None => n.clone(),
        });
        d.native.add(native.as_ref());
    }
    cur.rows
        .iter()
        .zip(deltas)
        .map(|(key, d)| {
            let buckets: Vec<(f64, f64)> = d.buckets.iter().map(|(le, c)| (le.0, *c)).collect();
            let native = d.native.native();
            let sums =
                Sums { seconds, requests: d.requests, responses: d.responses, errors: d.errors, buckets, native };
            Row::of(key.clone(), sums, true)
        })
        .collect()
}

/// A counter's increase; one that went down was reset, and counts from zero.
fn counter(old: Option<f64>, new: f64) -> f64 {
    match old {
        Some(o) if new >= o => new - o,
        _ => new,
    }
}

fn went_down(old: &[(f64, f64)], new: &[(f64, f64)]) -> bool {
    new.iter().any(|&(le, c)| old.iter().any(|&(l, o)| l == le && c < o))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An exposition of one server row (web, port 80, GET) on two interfaces:
    /// `req` requests on each, and on eth0 `ok` 2xx responses in (0.1, 0.5]
    /// and `bad` 5xx responses in (0, 0.1].
    fn text(req: u32, ok: u32, bad: u32) -> String {
        let l = r#"target="web",interface="eth0",port="80",method="GET""#;
        let mut t = format!("http_server_requests_total{{{l}}} {req}\n");
        t += &format!("http_server_requests_total{{{}}} {req}\n", l.replace("eth0", "eth1"));
        for (class, n, first) in [("2xx", ok, 0), ("5xx", bad, bad)] {
            let h = "http_server_request_duration_seconds";
            t += &format!("{h}_bucket{{{l},status_class=\"{class}\",le=\"0.1\"}} {first}\n");
            t += &format!("{h}_bucket{{{l},status_class=\"{class}\",le=\"0.5\"}} {n}\n");
            t += &format!("{h}_bucket{{{l},status_class=\"{class}\",le=\"+Inf\"}} {n}\n");
            t += &format!("{h}_count{{{l},status_class=\"{class}\"}} {n}\n");
        }
        t
    }

    fn snap(t: &str) -> Reading {
        Reading::parse(t, Instant::now()).unwrap()
    }

    #[test]
    fn rate_error_share_and_quantiles_from_the_deltas() {
        let a = snap(&text(100, 80, 10));
        let b = snap(&text(200, 170, 20));
        let rows = diff(&a, &b, 2.0);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        // 100 more on each of two interfaces, in 2 s.
        assert_eq!(r.rate, Some(100.0));
        // 90 2xx and 10 5xx in the interval.
        assert_eq!(r.errors, Some(10.0));
        // Of 100 responses, 10 in (0, 0.1], 90 in (0.1, 0.5]: the median is rank 50,
        // 40 of 90 into the second bucket; p99 is rank 99, 89 of 90.
        let near = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(near(r.p50, 0.1 + 0.4 * 40.0 / 90.0), "{:?}", r.p50);
        assert!(near(r.p99, 0.1 + 0.4 * 89.0 / 90.0), "{:?}", r.p99);
        // Lifetime totals would say otherwise: the earlier read is subtracted.
        assert!(!near(r.p50, diff(&snap(""), &b, 2.0)[0].p50.unwrap()));
    }

    #[test]
    fn no_traffic_is_a_zero_rate_and_no_error_share_or_latency() {
        let a = snap(&text(100, 80, 10));
        let r = &diff(&a, &a, 1.0)[0];
        assert_eq!((r.rate, r.errors, r.p50, r.p99), (Some(0.0), None, None, None));
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        // The exporter restarted: counters start again from small values.
        let a = snap(&text(1000, 900, 50));
        let b = snap(&text(3, 2, 1));
        let r = &diff(&a, &b, 1.0)[0];
        assert_eq!(r.rate, Some(6.0));
        assert!((r.errors.unwrap() - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_series_new_since_the_last_read_counts_from_zero_and_rows_follow_the_current_read() {
        let a = snap(&text(10, 0, 0).lines().filter(|l| !l.contains("eth1")).collect::<Vec<_>>().join("\n"));
        let b = snap(&text(10, 0, 0));
        assert_eq!(diff(&a, &b, 1.0)[0].rate, Some(10.0), "eth1's 10 requests are new");
        let c = snap("");
        assert!(diff(&b, &c, 1.0).is_empty(), "a row gone from the current read is not shown");
    }

    /// A histogram series with native buckets (schema 3) `counts` by index, and no classic ones.
    fn with_native(rest: &str, counts: &[(i32, f64)]) -> (crate::reading::SeriesId, Values) {
        let native = Native { schema: 3, zero_threshold: 1e-6, zero: 0.0, buckets: counts.iter().copied().collect() };
        let n: f64 = counts.iter().map(|c| c.1).sum();
        let id = crate::reading::SeriesId { row: 0, histogram: true, rest: rest.into() };
        (id, Values { responses: n, buckets: vec![(f64::INFINITY, n)], native: Some(native), ..Default::default() })
    }

    fn native_reading(series: &[(crate::reading::SeriesId, Values)]) -> Reading {
        let mut r = snap("");
        r.rows.push(RowKey { target: "web".into(), ..Default::default() });
        r.series.extend(series.iter().cloned());
        r
    }

    #[test]
    fn quantiles_come_from_the_native_buckets_added_since_the_last_read() {
        // Before: 100 in bucket -20 (about 0.18 s) on eth0. Since: 10 more
        // there, and 30 in -13 (0.297 to 0.324 s) on a series new on eth1.
        let a = native_reading(&[with_native("eth0", &[(-20, 100.0)])]);
        let b = native_reading(&[with_native("eth0", &[(-20, 110.0)]), with_native("eth1", &[(-13, 30.0)])]);
        let r = &diff(&a, &b, 1.0)[0];
        assert!(r.native);
        let n = r.sums.native.as_ref().unwrap();
        assert_eq!(n.buckets, [(-20, 10.0), (-13, 30.0)].into_iter().collect());
        let p50 = r.p50.unwrap();
        assert!(p50 > n.bound(-14) && p50 <= n.bound(-13), "{p50}: the median is among the 30");
        // The classic buckets alone (only +Inf here) would tell nothing.
        assert_eq!(quantile(0.5, &r.sums.buckets), None);
        // A series without native buckets leaves the row to its classic ones.
        let (id, mut v) = with_native("eth2", &[]);
        v.native = None;
        v.responses = 1.0;
        let c = native_reading(&[with_native("eth0", &[(-20, 120.0)]), (id, v)]);
        let r = &diff(&b, &c, 1.0)[0];
        assert!(!r.native && r.sums.native.is_none());
    }

    #[test]
    fn unmeasured_rows_have_no_numbers() {
        let rows = unmeasured(&snap(&text(1, 1, 1)));
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].rate, rows[0].errors, rows[0].p50), (None, None, None));
    }

    /// A server row of target web on `port` and `method`, route `route`:
    /// `requests` in 10 s, of which `errors` were 5xx, all within `le` seconds
    /// (the buckets every series has: 0.01, 0.5, 2, +Inf).
    fn routed(port: &str, method: &str, route: &str, requests: f64, errors: f64, le: f64) -> Row {
        let key = RowKey {
            side: crate::reading::Side::Server,
            target: "web".into(),
            port: port.into(),
            method: method.into(),
            route: route.into(),
            ..Default::default()
        };
        let buckets = [0.01, 0.5, 2.0, f64::INFINITY].map(|b| (b, if b >= le { requests } else { 0.0 })).to_vec();
        Row::of(key, Sums { seconds: 10.0, requests, responses: requests, errors, buckets, native: None }, true)
    }

    #[test]
    fn rows_grouped_by_route_add_their_counts_and_buckets_over_ports_and_methods() {
        let rows = [
            routed("80", "GET", "/users/{id}", 100.0, 0.0, 0.01),
            routed("8080", "POST", "/users/{id}", 100.0, 50.0, 0.5),
            routed("80", "GET", "other", 30.0, 30.0, 2.0),
        ];
        let grouped = by_route(&rows);
        let shown: Vec<String> = grouped
            .iter()
            .map(|r| format!("{} {} {} {:?} {:?}", r.key.route, r.key.port, r.key.method, r.rate, r.errors))
            .collect();
        assert_eq!(shown, ["/users/{id} * * Some(20.0) Some(25.0)", "other * * Some(3.0) Some(100.0)"]);
        // Quantiles come from the summed buckets: half within 10 ms, half within 0.5 s.
        assert_eq!(grouped[0].p50, Some(0.01));
        assert!(grouped[0].p99.is_some_and(|p| p > 0.01 && p <= 0.5), "{:?}", grouped[0].p99);
        assert_eq!(grouped[1].p50, Some(1.25), "within (0.5, 2], linearly");
    }
}
