//! The direct writer against prometheus's own TextEncoder: the same series,
//! built as protobuf families the way this exporter built them before, must
//! come out byte for byte the same, whatever the piece size.

use bytes::BytesMut;
use prometheus::proto::{self, MetricFamily, MetricType};

use super::*;
use hge_shared::snapshot::Method;
use hge_shared::topology::{InterfaceName, TargetNames, Topology};

fn lp(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

/// The labels as the protobuf builder set them (names looked up the same way).
fn labels(names: &Topology, k: &SeriesKey, status: Option<StatusLabel>) -> Vec<proto::LabelPair> {
    let target = names.targets.iter().find(|t| t.id == k.target_id);
    let iface = target.and_then(|t| t.interfaces.iter().find(|i| i.ifindex == k.ifindex));
    let mut l = vec![lp("target", &target.map_or(format!("target{}", k.target_id), |t| t.name.clone()))];
    l.extend(target.and_then(|t| t.container.as_deref()).map(|c| lp("container", c)));
    l.extend([
        lp("interface", &iface.map_or(format!("if{}", k.ifindex), |i| i.name.clone())),
        lp("port", &k.port.to_string()),
        lp("method", k.method.as_str()),
    ]);
    match status {
        Some(StatusLabel::Class) => l.push(lp("status_class", &format!("{}xx", k.status))),
        Some(StatusLabel::Code) => l.push(lp("status_code", &k.status.to_string())),
        None => {}
    }
    l
}

fn expected(fams: &HttpFamilies, bounds: &[f64], snap: &Snapshot, topo: &Topology) -> String {
    let mut out = Vec::new();
    for f in FAMILIES.as_flattened() {
        let mut mf = MetricFamily::default();
        mf.set_name(f.name.into());
        mf.set_help(f.help.into());
        if f.histogram {
            mf.set_field_type(MetricType::HISTOGRAM);
            for (k, h) in snap.latency.iter().filter(|(k, _)| k.role == f.role) {
                let mut m = proto::Metric::from_label(labels(topo, k, Some(fams.status_label)));
                let mut ph = proto::Histogram::default();
                ph.set_sample_count(h.count);
                ph.set_sample_sum(h.sum_ns as f64 / 1e9);
                let mut cumulative = 0;
                let mut buckets = Vec::new();
                for (bound, n) in bounds.iter().zip(&h.buckets) {
                    cumulative += n;
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(*bound);
                    b.set_cumulative_count(cumulative);
                    buckets.push(b);
                }
                ph.set_bucket(buckets);
                m.set_histogram(ph);
                mf.mut_metric().push(m);
            }
        } else {
            mf.set_field_type(MetricType::COUNTER);
            for (k, v) in snap.requests.iter().filter(|(k, _)| k.role == f.role) {
                let mut m = proto::Metric::from_label(labels(topo, k, None));
                let mut c = proto::Counter::default();
                c.set_value(*v as f64);
                m.set_counter(c);
                mf.mut_metric().push(m);
            }
        }
        if !mf.get_metric().is_empty() {
            super::super::text::encode(&[mf], &mut out);
        }
    }
    String::from_utf8(out).unwrap()
}

fn written(fams: &HttpFamilies, snap: &Snapshot, names: &Names, piece: usize) -> String {
    let (mut cur, mut all, mut labels) = (Cursor::default(), Vec::new(), BytesMut::new());
    let mut pieces = 0;
    while !cur.done() {
        let mut buf = BytesMut::new();
        fams.fill(snap, names, &mut cur, &mut buf, &mut labels, piece);
        all.extend_from_slice(&buf);
        pieces += 1;
        assert!(pieces < 1_000_000, "the cursor does not advance");
    }
    String::from_utf8(all).unwrap()
}

fn key(target_id: u16, ifindex: u32, role: Role, port: u16, method: Method, status: u16) -> SeriesKey {
    SeriesKey { target_id, ifindex, role, port, method, status }
}

fn hist(buckets: Vec<u64>, sum_ns: u64) -> Histogram {
    let count = buckets.iter().sum();
    Histogram { buckets, sum_ns, count }
}

#[test]
fn direct_text_equals_the_prometheus_text_encoder() {
    let topo = Topology {
        targets: vec![
            TargetNames {
                id: 0,
                name: "web \"front\\end\"\nline".into(),
                container: None,
                interfaces: vec![InterfaceName { ifindex: 7, name: "veth0".into() }],
            },
            TargetNames { id: 3, name: "db".into(), container: Some("pod \"a\"\n".into()), interfaces: vec![] },
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
    let only_server = Snapshot {
        requests: snap.requests.iter().filter(|(k, _)| k.role == Role::Server).cloned().collect(),
        ..Default::default()
    };
    for status_label in [StatusLabel::Class, StatusLabel::Code] {
        let bounds = [0.0005, 0.01, 2.5];
        let fams = HttpFamilies::new(&bounds, status_label);
        for snap in [&snap, &only_server, &Snapshot::default()] {
            let want = expected(&fams, &bounds, snap, &topo);
            for piece in [0, 1, 100, 4096, usize::MAX] {
                assert_eq!(written(&fams, snap, &names, piece), want, "pieces of at least {piece} bytes");
            }
        }
    }
}
