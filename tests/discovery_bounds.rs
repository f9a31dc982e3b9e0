//! Discovery's bounds and lifecycle: `max_namespaces`
//! caps what is attached and counts the rest; a reload that leaves the
//! `[[discover]]` tables alone keeps what they found, one that changes them
//! starts over; namespaces that come and go leave no fd behind.
//!
//! Each test watches a directory of its own (bind-mounted namespace files,
//! as `ip netns` makes them in /run/netns), so it sees no other namespace.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run, Exporter, Metrics, TempDir};

/// How long to wait for discovery to act before failing: a bound on a hang,
/// not on speed (bench/discover measures that).
const WITHIN: Duration = Duration::from_secs(30);
const FOUND: &str = "http_golden_exporter_discovered_namespaces";
const LIMIT: &str = "http_golden_exporter_discover_limit_reached_total";
const ATTACHED: &str = "http_golden_exporter_attached";

/// A directory of namespace files: a private bind mount of itself (so the
/// files' own bind mounts do not propagate), unmounted and removed on drop.
struct NsDir {
    dir: PathBuf,
    files: Vec<PathBuf>,
    _tmp: TempDir,
}

impl NsDir {
    fn new() -> NsDir {
        let tmp = TempDir::new("hgnsd");
        let dir = tmp.path().join("netns");
        std::fs::create_dir(&dir).unwrap();
        let d = dir.to_str().unwrap();
        run("mount", &["--bind", d, d]);
        run("mount", &["--make-private", d]);
        NsDir { dir, files: Vec::new(), _tmp: tmp }
    }

    /// A new namespace at DIR/NAME holding a veth pair (both ends inside).
    fn add(&mut self, name: &str) -> PathBuf {
        let f = self.dir.join(name);
        std::fs::write(&f, "").unwrap();
        run("unshare", &[&format!("--net={}", f.display()), "true"]);
        self.files.push(f.clone());
        let net = format!("--net={}", f.display());
        run("nsenter", &[&net, "ip", "link", "add", "a0", "type", "veth", "peer", "name", "b0"]);
        f
    }

    fn remove(&mut self, f: &Path) {
        let _ = Command::new("umount").arg(f).stderr(Stdio::null()).status();
        let _ = std::fs::remove_file(f);
        self.files.retain(|x| x != f);
    }
}

impl Drop for NsDir {
    fn drop(&mut self) {
        for f in self.files.clone() {
            self.remove(&f);
        }
        let _ = Command::new("umount").arg(&self.dir).stderr(Stdio::null()).status();
    }
}

fn config(dir: &NsDir, extra: &str) -> String {
    format!(
        "[metrics]\nscrape_interval = \"200ms\"\n[[target]]\nname = \"lo\"\ninterfaces = [\"lo\"]\n\
         [[discover]]\nname = \"found\"\nnetns_dirs = [\"{}\"]\nprocesses = false\n{extra}",
        dir.dir.display()
    )
}

fn found(m: &Metrics) -> f64 {
    m.sum(FOUND, &[("discover", "found")])
}

fn attached(m: &Metrics, name: &str) -> bool {
    m.has(ATTACHED, &[("container", name)])
}

#[test]
fn max_namespaces_bounds_what_is_attached_counts_the_rest_and_lets_one_in_when_another_goes() {
    if !common::privileged(&["ip", "unshare", "nsenter", "mount"]) {
        return;
    }
    let mut dir = NsDir::new();
    let first = [dir.add("one"), dir.add("two"), dir.add("three")];
    let exp = Exporter::start(&config(&dir, "max_namespaces = 2\n"));
    let m = exp.scrape_until(WITHIN, |m| found(m) == 2.0 && m.sum(LIMIT, &[]) == 1.0);
    assert_eq!(found(&m), 2.0, "two of three attached:\n{}\n{}", m.text, exp.log());
    assert_eq!(m.sum(LIMIT, &[("discover", "found")]), 1.0, "one left alone, counted once:\n{}", m.text);
    let left_out = ["one", "two", "three"].into_iter().find(|n| !attached(&m, n)).expect("one not attached");
    let gone = ["one", "two", "three"].into_iter().find(|n| *n != left_out).unwrap();
    assert!(exp.log().contains("max_namespaces (2) are attached already"), "{}", exp.log());

    dir.remove(&first.iter().find(|f| f.ends_with(gone)).unwrap().clone());
    let m = exp.scrape_until(WITHIN, |m| attached(m, left_out) && !attached(m, gone));
    assert!(attached(&m, left_out) && !attached(&m, gone), "room again: the waiting one attached:\n{}", m.text);
    assert_eq!(found(&m), 2.0);
    assert_eq!(m.sum(LIMIT, &[]), 1.0, "counted when left alone, not again: {}", m.text);
}

#[test]
fn a_reload_keeps_what_unchanged_tables_found_and_starts_over_when_they_change() {
    if !common::privileged(&["ip", "unshare", "nsenter", "mount"]) {
        return;
    }
    let mut dir = NsDir::new();
    dir.add("kept");
    let exp = Exporter::start(&config(&dir, ""));
    let programs = |m: &Metrics| m.sum(ATTACHED, &[("container", "kept")]);
    let m = exp.scrape_until(WITHIN, |m| programs(m) == 4.0);
    assert_eq!(programs(&m), 4.0, "a0 and b0, both directions:\n{}", m.text);

    exp.proc.signal(nix::sys::signal::Signal::SIGHUP);
    let m = exp.scrape_until(WITHIN, |_| exp.log().contains("reloaded:"));
    assert!(exp.log().contains("reloaded:"), "the reload happened:\n{}", exp.log());
    assert!(!exp.log().contains("discovery restarted"), "{}", exp.log());
    assert_eq!(programs(&m), 4.0, "unchanged across the reload:\n{}", m.text);
    assert_eq!(exp.log().matches("attached to a0 ingress").count(), 1, "never detached:\n{}", exp.log());

    let path = exp.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}interfaces = [\"a*\"]\n")).unwrap();
    exp.proc.signal(nix::sys::signal::Signal::SIGHUP);
    let m = exp.scrape_until(WITHIN, |m| programs(m) == 2.0);
    assert!(exp.log().contains("discovery restarted"), "{}", exp.log());
    assert_eq!(programs(&m), 2.0, "the new glob: a0 only:\n{}", m.text);
}

#[test]
fn interfaces_that_appear_in_a_found_namespace_are_attached_and_let_go() {
    if !common::privileged(&["ip", "unshare", "nsenter", "mount"]) {
        return;
    }
    let mut dir = NsDir::new();
    let f = dir.add("grows");
    let exp = Exporter::start(&config(&dir, ""));
    let programs = |m: &Metrics| m.sum(ATTACHED, &[("container", "grows")]);
    let m = exp.scrape_until(WITHIN, |m| programs(m) == 4.0);
    assert_eq!(programs(&m), 4.0, "a0 and b0:\n{}", m.text);
    let net = format!("--net={}", f.display());
    run("nsenter", &[&net, "ip", "link", "add", "c0", "type", "veth", "peer", "name", "d0"]);
    let t0 = std::time::Instant::now();
    let m = exp.scrape_until(WITHIN, |m| programs(m) == 8.0);
    assert_eq!(programs(&m), 8.0, "c0 and d0 attached too, told by the kernel:\n{}\n{}", m.text, exp.log());
    eprintln!("new interfaces attached {:?} after ip link add", t0.elapsed());
    run("nsenter", &[&net, "ip", "link", "del", "c0"]);
    let m = exp.scrape_until(WITHIN, |m| programs(m) == 4.0);
    assert_eq!(programs(&m), 4.0, "c0 and d0 let go once deleted:\n{}", m.text);
}

#[test]
fn a_namespace_whose_file_a_configured_target_names_is_left_to_it_also_across_its_restart() {
    if !common::privileged(&["ip", "unshare", "nsenter", "mount"]) {
        return;
    }
    let mut dir = NsDir::new();
    let named = dir.add("named");
    dir.add("other");
    let cfg = format!(
        "[metrics]\nscrape_interval = \"200ms\"\n[[target]]\nname = \"static\"\ninterfaces = [\"a0\"]\nnetns = \"{}\"\n\
         [[discover]]\nname = \"found\"\nnetns_dirs = [\"{}\"]\nprocesses = false\n",
        named.display(),
        dir.dir.display()
    );
    let exp = Exporter::start(&cfg);
    let static_programs = |m: &Metrics| m.sum(ATTACHED, &[("target", "static")]);
    let m = exp.scrape_until(WITHIN, |m| attached(m, "other"));
    assert!(attached(&m, "other") && !attached(&m, "named"), "the named one is the target's:\n{}", m.text);
    assert_eq!(static_programs(&m), 2.0, "{}", m.text);

    // A restart: a new namespace behind the same file; the target follows it, discovery stays out.
    dir.remove(&named);
    dir.add("named");
    let m =
        exp.scrape_until(WITHIN, |m| exp.log().contains("holds a new network namespace") && static_programs(m) == 2.0);
    assert_eq!(static_programs(&m), 2.0, "re-attached:\n{}\n{}", m.text, exp.log());
    // Discovery handles what the directory tells it in order: once a namespace
    // made after the restart is attached, it has had its say about "named".
    dir.add("later");
    let m = exp.scrape_until(WITHIN, |m| attached(m, "later"));
    assert!(attached(&m, "later"), "{}\n{}", m.text, exp.log());
    assert!(!attached(&m, "named"), "discovery never took it:\n{}\n{}", m.text, exp.log());
    assert!(!exp.log().contains("both name interface"), "{}", exp.log());
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn namespaces_that_come_and_go_leave_no_fd_or_program_behind() {
    if !common::privileged(&["ip", "unshare", "nsenter", "mount"]) {
        return;
    }
    let mut dir = NsDir::new();
    let exp = Exporter::start(&config(&dir, ""));
    let attacher = exp.proc.pid();
    let before = fds(attacher);
    for round in 0..3 {
        let files: Vec<PathBuf> = (0..10).map(|i| dir.add(&format!("r{round}n{i}"))).collect();
        let m = exp.scrape_until(WITHIN, |m| found(m) == 10.0);
        assert_eq!(found(&m), 10.0, "round {round}:\n{}", m.text);
        for f in &files {
            dir.remove(f);
        }
        let m = exp.scrape_until(WITHIN, |m| found(m) == 0.0 && !m.has(ATTACHED, &[("target", "found")]));
        assert_eq!(found(&m), 0.0, "round {round}: all let go:\n{}", m.text);
    }
    assert_eq!(fds(attacher), before, "the attacher holds as many fds as before");
    assert!(!exp.log().contains("ERROR"), "{}", exp.log());
}
