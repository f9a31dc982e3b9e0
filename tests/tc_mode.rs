//! Legacy tc mode (`attach_mode = "tc"`, what kernels before 6.6 get): a
//! reload never leaves an interface without our filter, two targets on one
//! interface are rejected with a clear error, and `--cleanup` removes every
//! filter of ours it can find, whatever the configuration names.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::nginx::{curl, Nginx};
use common::{bpf_attached, Exporter, Metrics, Pair, SERVER_V4};
use nix::sys::signal::Signal;

/// `--cleanup` looks at every namespace it can see: the tests of this file
/// take turns, so that one's cleanup never removes another's filters.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn target(name: &str, pair: &Pair, ports: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\nports = [{ports}]\n",
        pair.server_if,
        Pair::netns_path(&pair.server_ns)
    )
}

const HEAD: &str = "[metrics]\nscrape_interval = \"200ms\"\n[bpf]\nattach_mode = \"tc\"\n";

fn server_requests(m: &Metrics, target: &str) -> f64 {
    m.sum("http_server_requests_total", &[("target", target)])
}

fn attached(m: &Metrics, target: &str, dir: &str) -> bool {
    m.sum("http_golden_exporter_attached", &[("target", target), ("direction", dir), ("mode", "tc")]) == 1.0
}

#[test]
fn a_reload_that_changes_a_targets_ports_keeps_the_filter_and_the_counts() {
    if !common::privileged(&["ip", "tc", "nginx", "curl"]) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pair = Pair::new();
    let _nginx = Nginx::start(&pair);
    let exp = Exporter::start(&format!("{HEAD}{}", target("server", &pair, "80")));
    let config = exp.dir.path().join("config.toml");
    let web = format!("[web]\nlisten_address = \"127.0.0.1:{}\"\n", exp.port);
    let ok = || curl(&pair, &[format!("http://{SERVER_V4}/ok")]);
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "tc:http_egress tc:http_ingress");
    ok();
    let m = exp.scrape_until(Duration::from_secs(10), |m| server_requests(m, "server") == 1.0);
    assert_eq!(server_requests(&m, "server"), 1.0, "{}", m.text);

    // Changing the ports makes it a new target: attached first, then the old one detached.
    for (round, ports) in ["80, 8080", "80", "80, 8080, 8081"].iter().enumerate() {
        std::fs::write(&config, format!("{web}{HEAD}{}", target("server", &pair, ports))).unwrap();
        exp.proc.signal(Signal::SIGHUP);
        let want = "reloaded: 0 targets unchanged, 1 added, 1 removed";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while exp.log().matches(want).count() <= round && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(exp.log().matches(want).count(), round + 1, "{}", exp.log());
        assert_eq!(
            bpf_attached(&pair.server_ns, &pair.server_if),
            "tc:http_egress tc:http_ingress",
            "after reload {round} ({ports}) exactly one filter of ours per direction:\n{}",
            exp.log()
        );
        for _ in 0..5 {
            ok();
        }
        // The changed target starts from zero (its old series were removed).
        let m = exp.scrape_until(Duration::from_secs(10), |m| server_requests(m, "server") == 5.0);
        assert_eq!(server_requests(&m, "server"), 5.0, "reload {round}: 5 of 5 requests counted\n{}", m.text);
        assert!(attached(&m, "server", "ingress") && attached(&m, "server", "egress"), "{}", m.text);
    }
}

/// An interface has one slot, so one target: the second is refused at start,
/// naming both targets and the interface, and nothing stays attached.
#[test]
fn two_targets_on_one_interface_are_rejected_with_a_clear_error() {
    if !common::privileged(&["ip", "tc"]) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pair = Pair::new();
    let err = match Exporter::try_start(&format!("{HEAD}{}{}", target("a", &pair, "80"), target("b", &pair, ""))) {
        Ok(exp) => panic!("started with two targets on one interface: {}", exp.log()),
        Err(log) => log,
    };
    let want = format!("targets \"a\" and \"b\" both name interface {}", pair.server_if);
    assert!(err.contains(&want), "{err}");
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "", "{err}");
}

/// `--cleanup` reading a config that names none of the test's namespaces; its log.
fn cleanup_with_another_config() -> String {
    let dir = common::TempDir::new("hgclean");
    let other = dir.path().join("config.toml");
    std::fs::write(&other, "[[target]]\nname = \"elsewhere\"\ninterfaces = [\"lo\"]\n").unwrap();
    let out = std::process::Command::new(common::exporter_bin())
        .args(["--cleanup", "--log.level", "info", "--config.file"])
        .arg(&other)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

#[test]
fn cleanup_removes_our_filters_from_namespaces_the_config_does_not_name() {
    if !common::privileged(&["ip", "tc"]) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pair = Pair::new();
    let mut exp = Exporter::start(&format!("{HEAD}{}", target("a", &pair, "80")));
    exp.proc.signal(Signal::SIGKILL);
    exp.proc.wait_timeout(Duration::from_secs(30)).expect("the attacher dies");
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "tc:http_egress tc:http_ingress");

    // The run that left them had another configuration than the one --cleanup reads now.
    let log = cleanup_with_another_config();
    assert_eq!(bpf_attached(&pair.server_ns, &pair.server_if), "", "{log}");
    assert!(log.contains(&pair.server_if) && log.contains(&Pair::netns_path(&pair.server_ns)), "{log}");
}

/// Our tc filters on `ifname` in the namespace of process `pid`, as `tc filter show` names them.
fn filters_in(pid: &str, ifname: &str) -> String {
    let mut names = Vec::new();
    for dir in ["ingress", "egress"] {
        let out = common::run("nsenter", &["-t", pid, "-n", "tc", "filter", "show", "dev", ifname, dir]);
        let words: Vec<&str> = out.split_whitespace().collect();
        names.extend(words.windows(2).filter(|w| w[0] == "name").map(|w| w[1].to_string()));
    }
    names.sort();
    names.join(" ")
}

#[test]
fn cleanup_also_reaches_namespaces_held_only_by_a_process() {
    if !common::privileged(&["ip", "tc", "unshare", "nsenter", "sleep"]) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let holder = common::unshared(&["sleep", "600"]);
    let pid = holder.pid().to_string();
    common::run("nsenter", &["-t", &pid, "-n", "ip", "link", "add", "a0", "type", "veth", "peer", "name", "b0"]);
    let config = format!("{HEAD}[[target]]\nname = \"p\"\ninterfaces = [\"a0\"]\nnetns = \"/proc/{pid}/ns/net\"\n");
    let mut exp = Exporter::start(&config);
    exp.proc.signal(Signal::SIGKILL);
    exp.proc.wait_timeout(Duration::from_secs(30)).expect("the attacher dies");
    assert_eq!(filters_in(&pid, "a0"), "http_egress http_ingress", "the killed run left its filters");

    // No file names this namespace and the config --cleanup reads does not either: only a process holds it.
    let log = cleanup_with_another_config();
    assert_eq!(filters_in(&pid, "a0"), "", "{log}");
}
