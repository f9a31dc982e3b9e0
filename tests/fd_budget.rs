//! File descriptors: the attacher needs two per interface and target (one
//! TCX link per direction) and a few dozen besides; the unit's LimitNOFILE=
//! leaves room for thousands of interfaces.

mod common;

use common::{Exporter, Proc};

const UNIT: &str = include_str!("../systemd/http-golden-exporter.service");
/// What "thousands of interfaces" means here: 10,000 (interface, target) pairs.
const PAIRS: u64 = 10_000;
/// Fds besides the hooks: maps, the loader, the channel, signalfd, stdio, libbpf.
const OVERHEAD: u64 = 64;

#[test]
fn the_unit_allows_fds_for_ten_thousand_interfaces() {
    let limit = UNIT.lines().find_map(|l| l.strip_prefix("LimitNOFILE=")).expect("the unit sets LimitNOFILE=");
    let soft = limit.split(':').next().unwrap().trim().parse::<u64>().expect("a number");
    assert!(soft >= 2 * PAIRS + OVERHEAD, "LimitNOFILE={limit} is below {}", 2 * PAIRS + OVERHEAD);
}

/// The per-interface count the limit is derived from, measured: 60 interfaces.
#[test]
fn the_attacher_holds_two_fds_per_interface_and_a_few_more() {
    if !common::privileged(&["ip"]) || !common::tcx_kernel() {
        return;
    }
    const N: u64 = 60;
    let ns = common::unique("hgfd");
    common::run("ip", &["netns", "add", &ns]);
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Ns(ns.clone());
    let batch: String = (0..N / 2).map(|i| format!("link add hgd{i}a type veth peer name hgd{i}b\n")).collect();
    let mut ip = std::process::Command::new("ip");
    ip.args(["-n", &ns, "-batch", "-"]).stdin(std::process::Stdio::piped());
    let mut child = Proc::spawn(ip, "ip -batch");
    std::io::Write::write_all(child.child.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    drop(child.child.stdin.take());
    assert!(child.child.wait().unwrap().success());

    let exp = Exporter::start(&format!(
        "[bpf]\nattach_mode = \"tcx\"\n[[target]]\nname = \"many\"\ninterfaces = [\"hgd*\"]\nnetns = \"/run/netns/{ns}\"\n"
    ));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", exp.proc.pid())).unwrap().count() as u64;
    let links = std::fs::read_dir(format!("/proc/{}/fd", exp.proc.pid()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .ok()
                .and_then(|e| std::fs::read_link(e.path()).ok())
                .is_some_and(|t| t.to_string_lossy() == "anon_inode:bpf_link")
        })
        .count() as u64;
    assert_eq!(links, 2 * N, "one link per interface and direction");
    assert!(fds <= 2 * N + OVERHEAD, "the attacher holds {fds} fds for {N} interfaces");
}
