//! The HTTP families written a piece at a time, as a scrape sends them: the
//! same text, and the same protobuf, whatever the piece size, for names that
//! need escaping, counts past 2^53, routes and both status labellings. What the text is, is docs/exposition.prom.

use bytes::BytesMut;

use super::*;
use crate::collector::created::Created;
use hge_shared::snapshot::Method;
use hge_shared::topology::{InterfaceName, TargetNames, Topology};

fn written(fams: &HttpFamilies, snap: &Snapshot, names: &Names, om: Option<&Created>, piece: usize) -> String {
    let (mut cur, mut all, mut labels) = (Cursor::default(), Vec::new(), BytesMut::new());
    let mut pieces = 0;
    while !cur.done() {
        let mut buf = BytesMut::new();
        fams.fill(snap, names, om, &mut cur, &mut buf, &mut labels, piece);
        all.extend_from_slice(&buf);
        pieces += 1;
        assert!(pieces < 1_000_000, "the cursor does not advance");
    }
    String::from_utf8(all).unwrap()
}

fn key(target_id: u16, ifindex: u32, role: Role, port: u16, method: Method, status: u16) -> SeriesKey {
    SeriesKey { target_id, ifindex, role, port, method, status, route: 0 }
}

fn hist(buckets: Vec<u64>, sum_ns: u64) -> Histogram {
    let count = buckets.iter().sum();
    Histogram { buckets, sum_ns, count, ..Default::default() }
}

/// Targets with and without a container and routes, unnamed ids, both roles,
/// counts past 2^53: series whose labels differ in number and length.
fn fixture() -> (Names, Snapshot) {
    let topo = Topology {
        targets: vec![
            TargetNames {
                id: 0,
                name: "web \"front\\end\"\nline".into(),
                container: None,
                interfaces: vec![InterfaceName { ifindex: 7, name: "veth0".into() }],
                routes: vec![],
            },
            TargetNames {
                id: 3,
                name: "db".into(),
                container: Some("pod \"a\"\n".into()),
                interfaces: vec![],
                routes: vec!["/users/{id}".into(), "/static/*".into()],
            },
        ],
        attached: vec![],
        discovery: vec![],
        programs: vec![],
    };
    let names = Names::from_topology(&topo);
    let mut snap = Snapshot::default();
    for (i, role) in [Role::Server, Role::Client, Role::Server].into_iter().enumerate() {
        let i = i as u16;
        snap.requests.push((key(0, 7, role, 80 + i, Method::Get, 0), 6 + u64::from(i)));
        snap.requests.push((key(3, 9, role, 65535, Method::Patch, 0), (1 << 53) + 1));
        snap.latency.push((key(0, 7, role, 80, Method::Post, 2 + i), hist(vec![1, 2, 0, 3], 1_500_000_000)));
        snap.latency.push((key(9, 1, role, 1, Method::Options, 5), hist(vec![0, 0, 0, 1], 123_456_789_012_345)));
    }
    snap.latency.push((key(3, 9, Role::Server, 443, Method::Delete, 404), hist(vec![u64::MAX / 8, 0, 1, 7], 1)));
    for route in [1, 2, 3] {
        snap.requests.push((SeriesKey { route, ..key(3, 9, Role::Server, 8080, Method::Get, 0) }, 3));
        snap.latency.push((SeriesKey { route, ..key(3, 9, Role::Server, 8080, Method::Get, 2) }, hist(vec![0, 1], 9)));
    }
    (names, snap)
}

#[test]
fn the_text_is_the_same_whatever_the_piece_size() {
    let (names, snap) = fixture();
    let only_server = Snapshot {
        requests: snap.requests.iter().filter(|(k, _)| k.role == Role::Server).cloned().collect(),
        ..Default::default()
    };
    for status_label in [StatusLabel::Class, StatusLabel::Code] {
        let bounds = [0.0005, 0.01, 2.5];
        let fams = HttpFamilies::new(&bounds, status_label);
        for snap in [&snap, &only_server, &Snapshot::default()] {
            // The classic text, and OpenMetrics with each series' creation time.
            let created = Created {
                requests: (0..snap.requests.len()).map(|i| 1e9 + i as f64).collect(),
                latency: (0..snap.latency.len()).map(|i| 2e9 + i as f64 / 4.0).collect(),
            };
            for om in [None, Some(&created)] {
                let whole = written(&fams, snap, &names, om, usize::MAX);
                for piece in [0, 1, 100, 4096] {
                    assert_eq!(written(&fams, snap, &names, om, piece), whole, "pieces of at least {piece} bytes");
                }
            }
        }
    }
}

/// The protobuf body's HTTP part written a piece of at least `piece` bytes at a time.
fn encoded(fams: &HttpFamilies, snap: &Snapshot, names: &Names, created: &Created, piece: usize) -> Vec<u8> {
    let mut scratch = pb::Metric::default();
    let lengths = fams.lengths(snap, names, created, &mut scratch);
    let (mut cur, mut all) = (Cursor::default(), Vec::new());
    while !cur.done() {
        let mut buf = BytesMut::new();
        fams.encode(snap, names, created, &lengths, &mut cur, &mut buf, &mut scratch, piece);
        all.extend_from_slice(&buf);
    }
    all
}

#[test]
fn the_protobuf_is_the_families_whatever_the_piece_size() {
    let (names, mut snap) = fixture();
    // Native buckets in some series and not others, so one series' spans must not outlive it.
    snap.latency[0].1.native = vec![(-3, 1), (-2, 4), (5, 1)];
    snap.latency[2].1.native = vec![(7, 2)];
    // Series of every family, many pieces of 64 KiB.
    for i in 0..3000u16 {
        let role = if i % 2 == 0 { Role::Server } else { Role::Client };
        snap.requests.push((key(i % 5, 7, role, i, Method::Get, 0), u64::from(i)));
        snap.latency.push((key(i % 5, 7, role, i, Method::Put, 2 + i % 4), hist(vec![1, 0, u64::from(i), 3], 7)));
    }
    for status_label in [StatusLabel::Class, StatusLabel::Code] {
        let mut fams = HttpFamilies::new(&[0.0005, 0.01, 2.5], status_label);
        fams.native = Some((3, 1e-6));
        for snap in [&snap, &Snapshot::default()] {
            let created = Created {
                requests: (0..snap.requests.len()).map(|i| 1e9 + i as f64).collect(),
                latency: (0..snap.latency.len()).map(|i| 2e9 + i as f64 / 4.0).collect(),
            };
            let families = fams.families(snap, &names, &created);
            let whole = encoded(&fams, snap, &names, &created, usize::MAX);
            assert_eq!(pb::decode_delimited(&whole).unwrap(), families);
            for piece in [0, 1, 100, 64 * 1024] {
                assert!(encoded(&fams, snap, &names, &created, piece) == whole, "pieces of at least {piece} bytes");
            }
        }
    }
}
