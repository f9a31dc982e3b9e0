//! The whole exposition of a fixed topology and map read, against
//! docs/exposition.prom: every family, label and value the exporter writes,
//! in the order it writes them (the process_* families aside, which describe
//! the test process). After a deliberate change, regenerate it with
//!     HG_UPDATE_EXPOSITION=1 cargo test -p hge-exporter golden

use std::time::Duration;

use super::Exposition;
use hge_shared::abi::stat;
use hge_shared::config::StatusLabel;
use hge_shared::snapshot::{Flows, Histogram, Method, Role, SeriesKey, Snapshot, Stats};
use hge_shared::topology::{Attached, Direction, Discovered, InterfaceName, Mode, Program, TargetNames, Topology};

pub(super) fn topology() -> Topology {
    let names = |ifindex, name: &str| vec![InterfaceName { ifindex, name: name.into() }];
    let attached = |target: &str, container: Option<&str>, interface: &str, direction, mode| Attached {
        target: target.into(),
        container: container.map(Into::into),
        interface: interface.into(),
        direction,
        mode,
    };
    Topology {
        targets: vec![
            TargetNames { id: 0, name: "host".into(), container: None, interfaces: names(2, "eth0"), routes: vec![] },
            TargetNames {
                id: 1,
                name: "containers".into(),
                container: Some("web".into()),
                interfaces: names(3, "eth0"),
                routes: vec!["/users/{id}".into(), "/static/*".into()],
            },
            // Names that need escaping in label values.
            TargetNames {
                id: 2,
                name: "web \"front\\end\"\nline".into(),
                container: Some("pod \"a\"\n".into()),
                interfaces: names(4, "veth\\0"),
                routes: vec![],
            },
        ],
        attached: vec![
            attached("host", None, "eth0", Direction::Ingress, Mode::Tcx),
            attached("host", None, "eth0", Direction::Egress, Mode::Tcx),
            attached("containers", Some("web"), "eth0", Direction::Ingress, Mode::Tc),
            attached("containers", Some("web"), "eth0", Direction::Egress, Mode::Tc),
        ],
        discovery: vec![Discovered { name: "containers".into(), namespaces: 1, limit_reached: 2 }],
        programs: ["hg_parse_ingress", "hg_parse_egress", "http_ingress", "http_egress"]
            .iter()
            .zip([49_472, 49_474, 12, 12])
            .map(|(name, n)| Program { name: name.to_string(), verified_instructions: n })
            .collect(),
    }
}

pub(super) fn snapshot() -> Snapshot {
    let key = |target_id, ifindex, role, port, method, status| SeriesKey {
        target_id,
        ifindex,
        role,
        port,
        method,
        status,
        // The routes of target 1: "/users/{id}", and "other" (HG_ROUTE_OTHER).
        route: match (target_id, port) {
            (1, 8080) => 1,
            (1, _) => 255,
            _ => 0,
        },
    };
    // Every slot a value of its own, so that a slot read for the wrong family shows.
    let mut slots = [0u64; stat::SLOTS];
    for (i, v) in slots.iter_mut().enumerate() {
        *v = 100 + i as u64;
    }
    let stats = Stats::from_slots(&slots);
    Snapshot {
        requests: vec![
            (key(0, 2, Role::Server, 80, Method::Get, 0), 7),
            (key(0, 2, Role::Client, 443, Method::Post, 0), 3),
            (key(1, 3, Role::Server, 8080, Method::Get, 0), 5),
            (key(1, 3, Role::Server, 8081, Method::Get, 0), 2),
            // Past 2^53, where an f64 is no longer every integer.
            (key(2, 4, Role::Server, 65535, Method::Patch, 0), (1 << 53) + 1),
            // A target the topology does not name (yet): labelled by its id and ifindex.
            (key(9, 1, Role::Client, 1, Method::Options, 0), 1),
        ],
        latency: vec![
            (key(0, 2, Role::Server, 80, Method::Get, 2), hist([4, 2, 0], 7_250_000)),
            (key(0, 2, Role::Client, 443, Method::Post, 5), hist([0, 1, 2], 2_600_000_000)),
            (key(1, 3, Role::Server, 8080, Method::Get, 4), hist([5, 0, 0], 2_500_000)),
            (key(2, 4, Role::Server, 65535, Method::Patch, 5), hist([u64::MAX / 8, 0, 1], 1)),
        ],
        stats,
        flows: Some(Flows { live: 12, pending: 1, evicted: 4, evicted_unanswered: 2, never_confirmed: 3 }),
    }
}

/// Counts per bucket of 0.001, 0.1 and +Inf.
fn hist(buckets: [u64; 3], sum_ns: u64) -> Histogram {
    Histogram { buckets: buckets.to_vec(), sum_ns, count: buckets.iter().sum(), ..Default::default() }
}

fn render() -> String {
    let exp = Exposition::new(vec![0.001, 0.1], StatusLabel::Class, 10_000);
    exp.set_topology(&topology());
    exp.record_read(Ok(snapshot()), Duration::from_millis(12)).unwrap();
    exp.record_read(Err(anyhow::anyhow!("one failed read")), Duration::from_millis(12)).unwrap_err();
    exp.state_mut().last_good_read_unix = 1_796_000_000.5;
    let text = String::from_utf8(exp.render().concat()).unwrap();
    let mut out = String::new();
    let mut process = false;
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# HELP ").and_then(|l| l.split(' ').next()) {
            process = family.starts_with("process_");
        }
        if !process {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_exposition_of_a_fixed_read_is_the_golden_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/exposition.prom");
    let got = render();
    if std::env::var_os("HG_UPDATE_EXPOSITION").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "the exposition differs from {} (HG_UPDATE_EXPOSITION=1 regenerates it after a deliberate change):\n{got}",
        path.display()
    );
}
