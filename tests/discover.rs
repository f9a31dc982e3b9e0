//! Discovery on real namespaces: a named one
//! (`ip netns add`), one held only by a process (`unshare --net`), one
//! named by a file and held by a process at once, and a real podman
//! container. Each is reported when it appears and when it disappears, once,
//! and the container is named from podman's state. How fast is measured by
//! bench/discover and bench/scan.rs, not here. Every namespace and container
//! here is created by the test and removed by a guard, also on failure.

mod common;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::podman::{Container, Net};
use common::{run, unique, Proc, TempDir};
use hge_attacher::discover::{self, enumerate, own_namespace, Event, NsId, Origin, Roots, Settings, Watcher};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long to wait for an event before failing: a bound on a hang, not on speed.
const WITHIN: Duration = Duration::from_secs(30);

fn settings(dirs: &[&str], processes: bool) -> Settings {
    Settings {
        netns_dirs: dirs.iter().map(PathBuf::from).collect(),
        processes,
        scan_interval: Duration::from_millis(500),
        roots: Roots::default(),
    }
}

/// Poll the watcher's fd as the attacher will, until an event satisfies
/// `want` or `limit` passes; return it and how long it took.
fn wait_for(w: &mut Watcher, limit: Duration, want: impl Fn(&Event) -> bool) -> Option<(Event, Duration)> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let left = limit.saturating_sub(t0.elapsed());
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX));
        for ev in w.drain().expect("drain") {
            if want(&ev) {
                return Some((ev, t0.elapsed()));
            }
        }
    }
    None
}

fn appeared(ev: &Event, id: NsId) -> bool {
    matches!(ev, Event::Appeared { ns, .. } if ns.id == id)
}

fn gone(ev: &Event, id: NsId) -> bool {
    matches!(ev, Event::Gone { id: g, .. } if *g == id)
}

fn ns_id(path: &str) -> NsId {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
    NsId { dev: m.dev(), ino: m.ino() }
}

/// `ip netns add NAME`, deleted on drop.
struct NamedNs(String);

impl NamedNs {
    fn add(prefix: &str) -> NamedNs {
        let n = NamedNs(unique(prefix));
        run("ip", &["netns", "add", &n.0]);
        n
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NamedNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

/// A process alone in a new network namespace (`unshare --net` execs sleep,
/// so the PID is the namespace's holder); killed on drop.
fn lone_process() -> Proc {
    common::unshared(&["sleep", "600"])
}

#[test]
fn a_named_namespace_appears_and_disappears_labelled_with_its_file_name() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let (mut w, _) = Watcher::new(settings(&["/run/netns"], false)).unwrap();
    let ns = NamedNs::add("hgdn");
    let id = ns_id(&ns.path());
    let (ev, took) =
        wait_for(&mut w, WITHIN, |e| appeared(e, id)).unwrap_or_else(|| panic!("{} was not reported", ns.path()));
    let Event::Appeared { ns: found, label } = ev else { unreachable!() };
    assert_eq!(found.path, PathBuf::from(ns.path()), "the named file is the path to open");
    assert_eq!((label.value.as_str(), label.origin), (ns.0.as_str(), Origin::File), "{label:?}");
    eprintln!("ip netns add: reported after {took:?}");

    drop(ns);
    let (_, took) = wait_for(&mut w, WITHIN, |e| gone(e, id)).expect("ip netns del was not reported");
    eprintln!("ip netns del: reported after {took:?}");
}

#[test]
fn a_netns_dir_that_does_not_exist_yet_is_watched_from_its_parent() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let tmp = TempDir::new("hgdw");
    let dir = tmp.path().join("later/netns");
    let (mut w, _) = Watcher::new(settings(&[dir.to_str().unwrap()], false)).unwrap();
    assert_eq!(w.watched(), vec![tmp.path()], "the nearest existing ancestor is watched");
    std::fs::create_dir_all(&dir).unwrap();
    // A namespace bind-mounted into the new dir, as ip netns does it.
    let file = dir.join("n1");
    std::fs::write(&file, "").unwrap();
    // As `ip netns add`: the file first, its namespace mounted on it later, which inotify does not tell.
    assert_eq!(wait_for(&mut w, Duration::from_millis(300), |e| matches!(e, Event::Appeared { .. })), None);
    let ns = NamedNs::add("hgdw");
    run("mount", &["--bind", &ns.path(), file.to_str().unwrap()]);
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let umount = Umount(file.clone());
    let id = ns_id(&ns.path());
    wait_for(
        &mut w,
        WITHIN,
        |e| matches!(e, Event::Appeared { ns, .. } if ns.id == id && ns.file.as_ref() == Some(&file)),
    )
    .expect("a namespace in a dir created after the watcher started was not reported");
    // Holding the namespace must not keep its mount busy: a plain umount works.
    let st = Command::new("umount").arg(&file).status().unwrap();
    assert!(st.success(), "umount {} failed while the watcher holds the namespace", file.display());
    std::mem::forget(umount);
    wait_for(&mut w, WITHIN, |e| gone(e, id)).expect("the unmounted file's namespace was not reported gone");
}

#[test]
fn a_namespace_held_only_by_a_process_appears_and_disappears() {
    if !common::privileged(&["unshare"]) {
        return;
    }
    let (mut w, _) = Watcher::new(settings(&[], true)).unwrap();
    let mut p = lone_process();
    let id = ns_id(&format!("/proc/{}/ns/net", p.pid()));
    let (ev, took) = wait_for(&mut w, WITHIN, |e| appeared(e, id)).expect("not reported");
    let Event::Appeared { ns, label } = ev else { unreachable!() };
    assert_eq!(ns.path, PathBuf::from(format!("/proc/{}/ns/net", p.pid())));
    assert_eq!(ns.file, None);
    assert!(ns.pids.contains(&(p.pid() as u32)), "{ns:?}");
    // Our own cgroup may be a service's (CI under systemd); otherwise nothing names it.
    assert!(matches!(label.origin, Origin::Inode | Origin::Service), "{label:?}");
    if label.origin == Origin::Inode {
        assert_eq!(label.value, format!("netns:{}", id.ino));
    }
    eprintln!("unshare --net: reported after {took:?}");

    p.signal(nix::sys::signal::SIGKILL);
    p.wait_timeout(WITHIN);
    let (_, took) = wait_for(&mut w, WITHIN, |e| gone(e, id)).expect("the process's exit was not reported");
    eprintln!("its exit: reported after {took:?}");
}

#[test]
fn a_namespace_with_a_file_and_processes_is_listed_once_by_its_file_without_the_hosts() {
    if !common::privileged(&["ip", "unshare"]) {
        return;
    }
    let p = lone_process();
    let name = unique("hgda");
    run("ip", &["netns", "attach", &name, &p.pid().to_string()]);
    let named = NamedNs(name);
    let id = ns_id(&named.path());
    let scan = enumerate(&settings(&["/run/netns", "/run/netns"], true)).unwrap();
    let ours: Vec<_> = scan.namespaces.iter().filter(|n| n.id == id).collect();
    assert_eq!(ours.len(), 1, "once, though in a dir listed twice and held by a process: {scan:?}");
    assert_eq!(ours[0].path, PathBuf::from(named.path()), "the file is preferred to /proc/PID/ns/net");
    assert!(ours[0].pids.contains(&(p.pid() as u32)), "its holder is recorded: {:?}", ours[0]);
    let own = own_namespace().unwrap();
    assert!(scan.namespaces.iter().all(|n| n.id != own), "the daemon's own namespace is left out");
    // Init's may not be readable at all (another user namespace's, or ProtectProc=): one more reason
    // the exclusion is by the daemon's own namespace.
    if let Ok(init) = std::fs::metadata("/proc/1/ns/net") {
        use std::os::unix::fs::MetadataExt;
        let init = NsId { dev: init.dev(), ino: init.ino() };
        assert!(init != own || scan.namespaces.iter().all(|n| n.id != init), "init's, here the same, is left out");
    }
}

/// Among a thousand processes, the few in namespaces of their own are each
/// listed once, with their holder; how long the scan takes is bench/scan.rs's.
#[test]
fn a_scan_of_a_thousand_processes_lists_each_namespace_once_with_its_holder() {
    if !common::privileged(&["sleep", "unshare"]) {
        return;
    }
    common::raise_nofile(8192);
    let mut kids: Vec<Proc> = Vec::new();
    for _ in 0..1000 {
        let mut c = Command::new("sleep");
        c.arg("600").stdin(Stdio::null());
        kids.push(Proc::spawn(c, "sleep"));
    }
    let alone: Vec<Proc> = (0..5).map(|_| lone_process()).collect();
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()))
        .count();
    assert!(procs >= 1000, "{procs} processes");
    let scan = enumerate(&settings(&[], true)).unwrap();
    for p in &alone {
        let id = ns_id(&format!("/proc/{}/ns/net", p.pid()));
        let listed: Vec<_> = scan.namespaces.iter().filter(|n| n.id == id).collect();
        assert_eq!(listed.len(), 1, "process {}'s namespace, once among {procs} processes: {scan:?}", p.pid());
        assert!(listed[0].pids.contains(&(p.pid() as u32)), "with its holder: {:?}", listed[0]);
    }
    let own = own_namespace().unwrap();
    assert!(scan.namespaces.iter().all(|n| n.id != own), "the thousand in ours are not listed");
}

#[test]
fn a_podman_container_is_discovered_named_and_forgotten() {
    if !common::privileged(&["podman", "runc", "busybox"]) {
        return;
    }
    let (mut w, _) = Watcher::new(settings(&["/run/netns"], true)).unwrap();
    let c = Container::start("hgweb", Net::None);
    let started = Instant::now();
    let id = ns_id(&format!("/proc/{}/ns/net", c.pid()));
    let (ev, _) = wait_for(&mut w, WITHIN, |e| appeared(e, id))
        .unwrap_or_else(|| panic!("container {} was not reported after podman run", c.name));
    let Event::Appeared { label, .. } = ev else { unreachable!() };
    assert_eq!((label.value.as_str(), label.origin), (c.name.as_str(), Origin::Podman), "{label:?}");
    eprintln!("podman run: reported {:?} after it returned", started.elapsed());
    // The same answer from a one-off scan and label, as the daemon's start-up will use.
    let scan = enumerate(&settings(&[], true)).unwrap();
    let found = scan.namespaces.iter().find(|n| n.id == id).expect("in a one-off scan");
    assert_eq!(discover::label(found, &Roots::default()).value, c.name);

    c.remove();
    let (_, took) = wait_for(&mut w, WITHIN, |e| gone(e, id)).expect("podman rm was not reported");
    eprintln!("podman rm: reported after {took:?}");
}

#[test]
fn a_podman_container_joining_a_named_namespace_is_renamed_from_the_file_to_the_container() {
    if !common::privileged(&["ip", "podman", "runc", "busybox"]) {
        return;
    }
    let (mut w, _) = Watcher::new(settings(&["/run/netns"], false)).unwrap();
    let ns = NamedNs::add("hgdp");
    let id = ns_id(&ns.path());
    let (ev, _) = wait_for(&mut w, WITHIN, |e| appeared(e, id)).expect("the namespace file was not reported");
    assert!(matches!(&ev, Event::Appeared { label, .. } if label.value == ns.0), "{ev:?}");
    // As podman does for a container with its own network: the file first, then the process in it.
    let c = Container::start("hgdp", Net::Ns(&ns.path()));
    let (ev, took) = wait_for(&mut w, WITHIN, |e| matches!(e, Event::Renamed { id: r, .. } if *r == id))
        .unwrap_or_else(|| panic!("{} was not renamed to container {}", ns.path(), c.name));
    let Event::Renamed { label, .. } = ev else { unreachable!() };
    assert_eq!((label.value.as_str(), label.origin), (c.name.as_str(), Origin::Podman), "{label:?}");
    eprintln!("renamed after {took:?}");
}

#[test]
fn two_hundred_named_namespaces_appearing_at_once_are_all_reported_and_all_let_go() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let (mut w, _) = Watcher::new(settings(&["/run/netns"], true)).unwrap();
    let t0 = Instant::now();
    let all: Vec<NamedNs> = (0..200).map(|_| NamedNs::add("hgdm")).collect();
    let created = t0.elapsed();
    let mut want: std::collections::BTreeSet<NsId> = all.iter().map(|n| ns_id(&n.path())).collect();
    let t1 = Instant::now();
    while !want.is_empty() && t1.elapsed() < WITHIN {
        wait_for(
            &mut w,
            Duration::from_millis(100),
            |e| matches!(e, Event::Appeared { ns, .. } if want.contains(&ns.id)),
        );
        want.retain(|id| w.fd(*id).is_none());
    }
    assert!(want.is_empty(), "{} of 200 never reported after the last ip netns add", want.len());
    eprintln!("200 x ip netns add: {created:?}; all reported {:?} after the last", t1.elapsed());
    let ids: Vec<NsId> = all.iter().map(|n| ns_id(&n.path())).collect();
    drop(all);
    let t2 = Instant::now();
    while ids.iter().any(|id| w.fd(*id).is_some()) && t2.elapsed() < WITHIN {
        wait_for(&mut w, Duration::from_millis(100), |_| false);
    }
    let left = ids.iter().filter(|id| w.fd(**id).is_some()).count();
    assert_eq!(left, 0, "{left} of 200 deleted namespaces still held after the last ip netns del");
    eprintln!("200 x ip netns del: all reported gone {:?} after the last", t2.elapsed());
}
