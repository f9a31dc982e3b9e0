//! The naming rules and the scan's edge cases, on fixture trees: a fake
//! /proc whose ns/net links point at this process's real namespace, and
//! fake podman and docker state directories.

use std::path::{Path, PathBuf};

use super::name::Owner;
use super::*;

const ID: &str = "922781d3c2062992b40ac0365ba995cc30b5a859a5c2ea059bf28f09e2d6af32";
const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A fixture root removed on drop, with `proc/`, `podman/`, `docker/` in it.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Tree {
    fn new() -> Tree {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("hge-discover-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["proc", "podman/overlay-containers", "docker/containers", "netns"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Tree(root)
    }

    fn roots(&self) -> Roots {
        Roots { proc: self.0.join("proc"), podman: self.0.join("podman"), docker: self.0.join("docker") }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A process `pid` in this test's own namespace, in cgroup `cgroup`
    /// (a whole /proc/PID/cgroup text if it contains a newline).
    fn process(&self, pid: u32, cgroup: &str) {
        let text = if cgroup.contains('\n') { cgroup.to_string() } else { format!("0::{cgroup}\n") };
        self.write(&format!("proc/{pid}/cgroup"), &text);
        self.link_ns(pid, "/proc/self/ns/net");
    }

    fn link_ns(&self, pid: u32, to: &str) {
        std::fs::create_dir_all(self.0.join(format!("proc/{pid}/ns"))).unwrap();
        std::os::unix::fs::symlink(to, self.0.join(format!("proc/{pid}/ns/net"))).unwrap();
    }

    fn podman_state(&self, json: &str) {
        self.write("podman/overlay-containers/containers.json", json);
    }

    fn docker_state(&self, id: &str, json: &str) {
        self.write(&format!("docker/containers/{id}/config.v2.json"), json);
    }
}

/// A namespace (this process's own, which the fake /proc points at) held by `pids`.
fn ns(pids: &[u32], file: Option<&str>) -> Namespace {
    let id = own_namespace().unwrap();
    let file = file.map(PathBuf::from);
    let path = file.clone().unwrap_or_else(|| "/proc/self/ns/net".into());
    Namespace { id, path, file, pids: pids.to_vec() }
}

fn label_of(tree: &Tree, pids: &[u32], file: Option<&str>) -> Label {
    label(&ns(pids, file), &tree.roots())
}

fn podman_json(id: &str, name: &str) -> String {
    format!(
        r#"[{{"id":"{id}","names":["{name}"],"image":"","layer":"x","metadata":"{{}}","created":"2026-11-30T20:32:27Z"}}]"#
    )
}

#[test]
fn a_podman_container_under_libpod_parent_is_named_from_containers_json() {
    let t = Tree::new();
    t.process(100, &format!("/libpod_parent/libpod-{ID}"));
    t.podman_state(&podman_json(ID, "web1"));
    let l = label_of(&t, &[100], Some("/run/netns/netns-1234"));
    assert_eq!((l.value.as_str(), l.origin), ("web1", Origin::Podman), "{l:?}");
}

#[test]
fn a_podman_container_under_systemd_is_podman_not_a_machine() {
    let t = Tree::new();
    t.process(100, &format!("/machine.slice/libpod-{ID}.scope/container"));
    t.podman_state(&podman_json(ID, "db"));
    assert_eq!(label_of(&t, &[100], None).value, "db");
}

#[test]
fn podman_cgroups_of_conmon_are_not_containers() {
    assert_eq!(parse_cgroup(&format!("/machine.slice/libpod-conmon-{ID}.scope")), vec![]);
    assert_eq!(parse_cgroup("/libpod_parent/conmon"), vec![]);
}

#[test]
fn hybrid_cgroup_v1_lines_name_the_same_container_once() {
    let t = Tree::new();
    let v1 = format!("9:name=systemd:/libpod_parent/libpod-{ID}\n4:memory:/libpod_parent/libpod-{ID}\n0::/\n");
    t.process(100, &v1);
    t.podman_state(&podman_json(ID, "web1"));
    let l = label_of(&t, &[100], None);
    assert_eq!((l.value.as_str(), l.notes.len()), ("web1", 0), "{l:?}");
}

#[test]
fn a_docker_container_is_named_from_config_v2_without_the_leading_slash_under_both_cgroup_drivers() {
    let t = Tree::new();
    t.process(100, &format!("/docker/{ID}"));
    t.process(101, &format!("/system.slice/docker-{ID2}.scope"));
    t.docker_state(ID, r#"{"ID":"x","Name":"/shop-api","Config":{"Env":["A=1"]}}"#);
    t.docker_state(ID2, r#"{"Name":"/cache"}"#);
    let a = label_of(&t, &[100], None);
    assert_eq!((a.value.as_str(), a.origin), ("shop-api", Origin::Docker));
    assert_eq!(label_of(&t, &[101], None).value, "cache");
}

#[test]
fn an_nspawn_machine_is_named_with_systemd_escapes_undone() {
    let t = Tree::new();
    t.process(100, "/machine.slice/machine-my\\x2dbox.scope/payload/system.slice/nginx.service");
    let l = label_of(&t, &[100], None);
    // The machine's own nginx.service is not a name the host's operator can tell apart.
    assert_eq!(parse_cgroup("/machine.slice/machine-my\\x2dbox.scope/payload")[0], Owner::Nspawn("my-box".into()));
    assert_eq!(l.origin, Origin::Nspawn, "{l:?}");
    assert_eq!(l.value, "my-box");
}

#[test]
fn a_systemd_service_with_its_own_namespace_is_named_by_its_unit() {
    let t = Tree::new();
    t.process(100, "/system.slice/nginx.service");
    let l = label_of(&t, &[100], None);
    assert_eq!((l.value.as_str(), l.origin), ("nginx.service", Origin::Service));
}

#[test]
fn a_docker_container_inside_a_machine_whose_state_is_not_on_this_host_is_named_by_the_machine() {
    let t = Tree::new();
    t.process(100, &format!("/machine.slice/machine-ci.scope/payload/docker/{ID}"));
    let l = label_of(&t, &[100], None);
    assert_eq!((l.value.as_str(), l.origin), ("ci", Origin::Nspawn), "{l:?}");
    assert!(l.notes[0].contains("not in docker's state"), "{l:?}");
}

#[test]
fn without_a_known_owner_the_file_name_then_the_inode_is_the_label() {
    let t = Tree::new();
    t.process(100, "/user.slice/user-0.slice/session-1.scope");
    let by_file = label_of(&t, &[100], Some("/run/netns/blue"));
    assert_eq!((by_file.value.as_str(), by_file.origin), ("blue", Origin::File));
    let by_inode = label_of(&t, &[100], None);
    assert_eq!(by_inode.value, format!("netns:{}", own_namespace().unwrap().ino));
    assert_eq!(by_inode.origin, Origin::Inode);
}

#[test]
fn a_podman_id_missing_from_containers_json_falls_back_with_a_note() {
    let t = Tree::new();
    t.process(100, &format!("/libpod_parent/libpod-{ID}"));
    t.podman_state(&podman_json(ID2, "other"));
    let l = label_of(&t, &[100], Some("/run/netns/netns-9"));
    assert_eq!((l.value.as_str(), l.origin), ("netns-9", Origin::File));
    assert!(l.notes.iter().any(|n| n.contains(ID) && n.contains("not in podman's state")), "{l:?}");
}

/// The label when the state file holds `garbage`, and the note about it.
fn with_garbage_podman_state(write: impl FnOnce(&Path)) -> Label {
    let t = Tree::new();
    t.process(100, &format!("/libpod_parent/libpod-{ID}"));
    write(&t.0.join("podman/overlay-containers/containers.json"));
    label_of(&t, &[100], Some("/run/netns/x"))
}

#[test]
fn garbage_in_containers_json_is_a_note_naming_the_file_and_the_file_name_is_used() {
    for garbage in ["", "{", "null", "{\"id\":1}", "[{\"id\":7,\"names\":[]}]", "\u{0}\u{1}\u{2}"] {
        let l = with_garbage_podman_state(|p| std::fs::write(p, garbage).unwrap());
        assert_eq!(l.value, "x", "{garbage:?}: {l:?}");
        assert!(l.notes.iter().any(|n| n.contains("containers.json")), "{garbage:?}: {l:?}");
    }
    let nameless =
        with_garbage_podman_state(|p| std::fs::write(p, format!(r#"[{{"id":"{ID}","names":[]}}]"#)).unwrap());
    assert!(nameless.notes.iter().any(|n| n.contains("no usable name")), "{nameless:?}");
}

#[test]
fn a_containers_json_over_the_limit_is_refused_without_reading_it() {
    let l = with_garbage_podman_state(|p| {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(state::PODMAN_STATE_LIMIT + 1).unwrap(); // sparse: costs no disk
    });
    assert_eq!(l.value, "x");
    assert!(l.notes.iter().any(|n| n.contains("more than")), "{l:?}");
}

/// A FIFO without a writer would block a plain open forever; a label still
/// not made after a minute is taken to hang.
#[test]
fn a_containers_json_that_is_a_fifo_does_not_block() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(with_garbage_podman_state(|p| {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }));
    });
    let l = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("reading a FIFO as containers.json hangs");
    assert!(l.notes.iter().any(|n| n.contains("not a regular file")), "{l:?}");
}

#[test]
fn a_docker_config_whose_name_is_not_a_string_is_a_note() {
    let t = Tree::new();
    t.process(100, &format!("/docker/{ID}"));
    t.docker_state(ID, r#"{"Name":42}"#);
    let l = label_of(&t, &[100], None);
    assert_eq!(l.origin, Origin::Inode);
    assert!(l.notes.iter().any(|n| n.contains("config.v2.json")), "{l:?}");
}

#[test]
fn cgroup_names_that_are_not_container_ids_never_become_paths() {
    for bad in ["/docker/../../etc", "/docker/abc", &format!("/docker/{}", &ID[..63]), "/libpod_parent/libpod-../x"] {
        assert_eq!(parse_cgroup(bad), vec![], "{bad}");
    }
    assert!(podman_name(Path::new("/nonexistent"), "../../etc/passwd").is_err());
    assert!(docker_name(Path::new("/nonexistent"), "../../etc/passwd").is_err());
}

#[test]
fn a_garbage_cgroup_file_falls_back_without_a_panic() {
    let t = Tree::new();
    t.process(100, "\u{0}\u{ff}:::\n::\n0::\n7\n");
    assert_eq!(label_of(&t, &[100], Some("/run/netns/n1")).value, "n1");
}

#[test]
fn names_lose_control_characters_and_are_cut_to_253_bytes() {
    let t = Tree::new();
    t.process(100, &format!("/docker/{ID}"));
    t.process(101, &format!("/docker/{ID2}"));
    t.docker_state(ID, r#"{"Name":"/we\u0007b\nx"}"#);
    t.docker_state(ID2, &format!(r#"{{"Name":"/{}"}}"#, "é".repeat(200)));
    assert_eq!(label_of(&t, &[100], None).value, "webx");
    let long = label_of(&t, &[101], None).value;
    assert!(long.len() <= 253 && long.len() >= 252 && long.chars().all(|c| c == 'é'), "{long}");
}

#[test]
fn a_pid_reused_by_a_process_outside_the_namespace_is_not_believed() {
    let t = Tree::new();
    t.write("proc/100/cgroup", &format!("0::/docker/{ID}\n"));
    t.link_ns(100, "/proc/self/ns/uts");
    t.docker_state(ID, r#"{"Name":"/wrong"}"#);
    let l = label_of(&t, &[100], Some("/run/netns/right"));
    assert_eq!(l.value, "right", "{l:?}");
}

#[test]
fn systemd_unescaping_undoes_hex_escapes_and_leaves_the_rest() {
    assert_eq!(unescape_systemd("my\\x2dbox"), "my-box");
    assert_eq!(unescape_systemd("a\\x2"), "a\\x2");
    assert_eq!(unescape_systemd("a\\xZZb"), "a\\xZZb");
    assert_eq!(unescape_systemd("\\xc3\\xa9t\\xc3\\xa9"), "été");
    assert_eq!(unescape_systemd("\\xff"), "\u{fffd}");
}

#[test]
fn the_scan_leaves_out_the_daemons_own_namespace_and_waits_for_unmounted_files() {
    let t = Tree::new();
    t.process(1, "/init.scope");
    t.process(2, "/system.slice/x.service");
    std::fs::write(t.0.join("netns/not-yet-mounted"), "").unwrap();
    std::fs::write(t.0.join("netns/junk"), "not a namespace").unwrap();
    nix::unistd::mkfifo(&t.0.join("netns/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let settings = Settings {
        netns_dirs: vec![t.0.join("netns"), t.0.join("missing")],
        processes: true,
        scan_interval: std::time::Duration::from_secs(1),
        roots: t.roots(),
    };
    let scan = enumerate(&settings).unwrap();
    assert_eq!(scan.namespaces, vec![], "own namespace excluded: {scan:?}");
    assert_eq!(scan.pending, vec![t.0.join("netns/not-yet-mounted")]);
    assert!(scan.errors.is_empty(), "a missing dir is not an error: {scan:?}");
}

#[test]
fn read_bounded_refuses_what_is_not_a_small_regular_file() {
    let t = Tree::new();
    let p = t.write("f", "12345");
    assert_eq!(read_bounded(&p, 5).unwrap(), b"12345");
    assert!(format!("{:#}", read_bounded(&p, 4).unwrap_err()).contains("more than the 4"));
    assert!(format!("{:#}", read_bounded(&t.0, 4).unwrap_err()).contains("not a regular file"));
}

fn readable(w: &Watcher) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(w.as_fd(), nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() > 0
}

#[test]
fn the_watchers_fd_is_readable_on_a_change_and_quiet_again_after_drain() {
    let t = Tree::new();
    let settings = Settings {
        netns_dirs: vec![t.0.join("netns")],
        processes: false,
        scan_interval: std::time::Duration::from_secs(1),
        roots: t.roots(),
    };
    let (mut w, initial) = Watcher::new(settings).unwrap();
    assert_eq!(initial, vec![]);
    assert_eq!(w.watched(), vec![t.0.join("netns").as_path()]);
    assert!(!readable(&w), "nothing happened: a poll loop must sleep");
    std::fs::create_dir(t.0.join("netns/sub")).unwrap();
    assert!(readable(&w), "a change in a netns dir wakes the poll loop");
    assert_eq!(w.drain().unwrap(), vec![], "a directory is not a namespace");
    assert!(!readable(&w), "after drain the fd is quiet again (no busy loop)");
}
