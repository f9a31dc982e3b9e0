//! When rows can be measured, and over how long.
//!
//! The exporter reads its BPF maps every `scrape_interval` (5 s by default) and
//! serves the same numbers until the next read; `top` fetches every second. So
//! a fetch is new data only when `http_golden_exporter_map_reads_total` moved,
//! and the time between two reads is not the time between two fetches: it is
//! the number of reads in between times the exporter's read period. That period
//! is estimated from when new reads were first seen: over n reads, the error
//! is at most one fetch interval divided by n periods, and shrinks as `top` runs.
//! Without the read counter (another exporter), every fetch is new data and the
//! time between fetches is used. An exporter that says when each read was
//! taken (`http_golden_exporter_last_map_read_timestamp_seconds`) needs no
//! estimate: the time between two reads is the difference, exactly.

use super::reading::Reading;
use super::rows::{diff, unmeasured, Row};

#[derive(Default)]
pub struct Tracker {
    /// The read the rows were measured up to (or the first one seen).
    base: Option<Reading>,
    /// The read counter at the last fetch.
    last_reads: Option<f64>,
    /// The first new read seen: when, and its number.
    anchor: Option<(std::time::Instant, f64)>,
    /// Seconds between two reads of the exporter.
    period: Option<f64>,
    rows: Vec<Row>,
}

impl Tracker {
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The exporter's read period, once two new reads have been seen.
    pub fn period(&self) -> Option<f64> {
        self.period
    }

    /// Rows carry numbers (two reads have been compared).
    pub fn measured(&self) -> bool {
        self.rows.iter().any(|r| r.rate.is_some())
    }

    /// Takes one fetch; returns whether the rows changed.
    pub fn update(&mut self, snap: Reading) -> bool {
        let Some(reads) = snap.map_reads else {
            self.rows = match &self.base {
                Some(b) => diff(b, &snap, snap.at.saturating_duration_since(b.at).as_secs_f64()),
                None => unmeasured(&snap),
            };
            self.base = Some(snap);
            return true;
        };
        let last = self.last_reads.replace(reads);
        match last {
            Some(l) if reads == l => false,
            // First fetch, or the exporter restarted (its counters too): start over.
            None => self.restart(snap),
            Some(l) if reads < l => self.restart(snap),
            Some(_) => {
                let exact = self.base.as_ref().and_then(|b| Some(snap.read_at? - b.read_at?)).filter(|d| *d > 0.0);
                if let Some(seconds) = exact {
                    let base = self.base.as_ref().expect("read_at came from the base");
                    self.period = Some(seconds / (reads - base.map_reads.unwrap_or(reads - 1.0)).max(1.0));
                    self.rows = diff(base, &snap, seconds);
                    self.base = Some(snap);
                    return true;
                }
                let Some((t0, r0)) = self.anchor else {
                    self.anchor = Some((snap.at, reads));
                    self.base = Some(snap);
                    return false;
                };
                let period = snap.at.saturating_duration_since(t0).as_secs_f64() / (reads - r0);
                self.period = Some(period);
                let base = self.base.as_ref().expect("a base before any anchor");
                let seconds = (reads - base.map_reads.unwrap_or(reads)) * period;
                self.rows = diff(base, &snap, seconds);
                self.base = Some(snap);
                true
            }
        }
    }

    fn restart(&mut self, snap: Reading) -> bool {
        self.anchor = None;
        self.period = None;
        self.last_reads = snap.map_reads;
        self.rows = unmeasured(&snap);
        self.base = Some(snap);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// `reads` reads of an exporter that has counted `requests` requests, fetched at `at`.
    fn fetch(at: Instant, reads: Option<u32>, requests: u32) -> Reading {
        let mut t = format!(
            "http_server_requests_total{{target=\"t\",interface=\"i\",port=\"80\",method=\"GET\"}} {requests}\n"
        );
        if let Some(r) = reads {
            t += &format!("http_golden_exporter_map_reads_total {r}\n");
        }
        Reading::parse(&t, at).unwrap()
    }

    #[test]
    fn an_exporter_reading_every_5s_fetched_every_second_gives_the_true_rate() {
        // 40 requests/s; the exporter reads at 0.3 s, 5.3 s, 10.3 s, ...; top fetches at 0, 1, 2, ...
        let t0 = Instant::now();
        let mut tr = Tracker::default();
        let mut rates = Vec::new();
        for second in 0..31u32 {
            let now = t0 + Duration::from_secs(second.into());
            // Reads done by now, and the requests counted up to the last of them.
            let reads = if second == 0 { 0 } else { (second * 10 - 3) / 50 + 1 };
            let counted = if reads == 0 { 0 } else { 12 + 200 * (reads - 1) };
            if tr.update(fetch(now, Some(reads), counted)) {
                rates.push((second, tr.rows()[0].rate));
            }
        }
        // The first fetch shows the row unmeasured; the first new read (at 1 s) anchors;
        // the next one (at 6 s) gives the period (5 s) and the first rate, and so on.
        assert_eq!(rates[0], (0, None));
        let measured: Vec<_> = rates[1..].iter().map(|&(s, r)| (s, r.unwrap())).collect();
        assert_eq!(measured.iter().map(|m| m.0).collect::<Vec<_>>(), [6, 11, 16, 21, 26]);
        for (s, r) in measured {
            assert!((r - 40.0).abs() < 1e-9, "at {s} s: {r}");
        }
        assert_eq!(tr.period(), Some(5.0));
    }

    #[test]
    fn read_timestamps_give_the_exact_rate_from_the_first_new_read() {
        // Reads at irregular times (5 s, then 7 s apart): with their timestamps no period is guessed.
        let t0 = Instant::now();
        let mut tr = Tracker::default();
        let with_time = |at: u64, reads: u32, requests: u32, read_at: f64| {
            let mut snap = fetch(t0 + Duration::from_secs(at), Some(reads), requests);
            snap.read_at = Some(read_at);
            snap
        };
        assert!(tr.update(with_time(0, 3, 100, 1000.0)));
        assert!(!tr.measured());
        assert!(tr.update(with_time(1, 4, 150, 1005.0)), "the first new read is measured at once");
        assert_eq!(tr.rows()[0].rate, Some(10.0));
        assert!(!tr.update(with_time(2, 4, 150, 1005.0)));
        assert!(tr.update(with_time(8, 5, 185, 1012.0)));
        assert_eq!(tr.rows()[0].rate, Some(5.0));
        assert_eq!(tr.period(), Some(7.0));
    }

    #[test]
    fn fetches_between_reads_change_nothing() {
        let t0 = Instant::now();
        let mut tr = Tracker::default();
        assert!(tr.update(fetch(t0, Some(7), 10)));
        assert!(!tr.update(fetch(t0 + Duration::from_secs(1), Some(7), 10)));
        assert!(!tr.update(fetch(t0 + Duration::from_secs(2), Some(8), 20)), "the anchor: no period yet");
        assert!(!tr.measured());
        assert!(tr.update(fetch(t0 + Duration::from_secs(4), Some(10), 60)));
        // 2 reads in 2 s: 1 s each; 40 requests in 2 reads.
        assert_eq!(tr.rows()[0].rate, Some(20.0));
        assert!(!tr.update(fetch(t0 + Duration::from_secs(5), Some(10), 60)));
        assert_eq!(tr.rows()[0].rate, Some(20.0), "the last rows stay");
    }

    #[test]
    fn an_exporter_restart_starts_over() {
        let t0 = Instant::now();
        let mut tr = Tracker::default();
        for (s, reads, n) in [(0, 5, 50), (1, 6, 60), (2, 7, 70)] {
            tr.update(fetch(t0 + Duration::from_secs(s), Some(reads), n));
        }
        assert_eq!(tr.rows()[0].rate, Some(10.0));
        assert!(tr.update(fetch(t0 + Duration::from_secs(3), Some(1), 2)));
        assert!(!tr.measured() && tr.period().is_none());
    }

    #[test]
    fn without_a_read_counter_the_time_between_fetches_is_used() {
        let t0 = Instant::now();
        let mut tr = Tracker::default();
        assert!(tr.update(fetch(t0, None, 100)));
        assert!(tr.update(fetch(t0 + Duration::from_millis(500), None, 150)));
        assert_eq!(tr.rows()[0].rate, Some(100.0));
    }
}
