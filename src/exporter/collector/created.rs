//! When each HTTP series was first seen: OpenMetrics' `_created` and the
//! protobuf `created_timestamp`. The kernel keeps no such time, so the
//! exporter does: the Unix time of the first map read a series was in. A series
//! missing from a read is forgotten, and if it comes back it is new (its
//! counts started again from zero).

use std::collections::HashMap;

use hge_shared::snapshot::{SeriesKey, Snapshot};

/// The first-seen times of the series of the last read (false: requests, true: latency).
#[derive(Default)]
pub struct FirstSeen {
    seen: HashMap<(bool, SeriesKey), f64>,
}

/// For one read: a time for each entry of `requests` and of `latency`, in their order.
#[derive(Default)]
pub struct Created {
    pub requests: Vec<f64>,
    pub latency: Vec<f64>,
}

impl FirstSeen {
    /// The times for `snap`, read at `now`: a series of the previous read
    /// keeps its time, any other gets `now`.
    pub fn update(&mut self, snap: &Snapshot, now: f64) -> Created {
        let mut seen = HashMap::with_capacity(snap.requests.len() + snap.latency.len());
        let mut times = |latency: bool, key: &SeriesKey| {
            let t = self.seen.get(&(latency, *key)).copied().unwrap_or(now);
            seen.insert((latency, *key), t);
            t
        };
        let requests = snap.requests.iter().map(|(k, _)| times(false, k)).collect();
        let latency = snap.latency.iter().map(|(k, _)| times(true, k)).collect();
        self.seen = seen;
        Created { requests, latency }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hge_shared::snapshot::{Histogram, Method, Role};

    fn key(port: u16) -> SeriesKey {
        SeriesKey { target_id: 0, ifindex: 1, role: Role::Server, port, method: Method::Get, status: 2, route: 0 }
    }

    fn read(ports: &[u16]) -> Snapshot {
        Snapshot {
            requests: ports.iter().map(|p| (key(*p), 1)).collect(),
            latency: ports.iter().map(|p| (key(*p), Histogram::default())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_series_keeps_its_first_read_and_one_that_comes_back_is_new() {
        let mut f = FirstSeen::default();
        let c = f.update(&read(&[80]), 10.0);
        assert_eq!((c.requests, c.latency), (vec![10.0], vec![10.0]));
        let c = f.update(&read(&[81, 80]), 11.0);
        assert_eq!(c.requests, vec![11.0, 10.0], "80 keeps the time it was first read at, 81 is new");
        assert_eq!(c.latency, vec![11.0, 10.0]);
        // 80 is gone from one read (its series was deleted), then back.
        f.update(&read(&[81]), 12.0);
        let c = f.update(&read(&[80, 81]), 13.0);
        assert_eq!(c.requests, vec![13.0, 11.0]);
    }

    #[test]
    fn requests_and_latency_series_of_one_key_are_apart() {
        let mut f = FirstSeen::default();
        f.update(&Snapshot { requests: vec![(key(80), 1)], ..Default::default() }, 1.0);
        let c = f.update(&read(&[80]), 2.0);
        assert_eq!((c.requests, c.latency), (vec![1.0], vec![2.0]));
    }
}
