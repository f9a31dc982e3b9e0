//! Containers come and go and the exporter follows them with no per-container
//! config: real podman containers, a named
//! namespace, a namespace held only by a process, a configured target on a
//! container's namespace through a restart. Each request is counted once,
//! where its server's socket is, labelled with who holds it.
//!
//!   remote ns 198.18.M.2 ── veth ── 198.18.M.1 host ── podman bridge 198.18.B.0/24 ── container :8080
//!
//! Discovery sees every namespace on the host, so the tests here run one at
//! a time (SERIAL): none sees another's namespaces come and go.

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::podman::{Bridge, Container, Net};
use common::{run, unique, Exporter, Metrics, Proc, TempDir};

static SERIAL: Mutex<()> = Mutex::new(());
/// How long to wait for the exporter to follow a change before failing: a
/// bound on a hang, not on speed (bench/discover measures that).
const WITHIN: Duration = Duration::from_secs(30);
const SERVED: &str = "http_server_requests_total";
const SENT: &str = "http_client_requests_total";
const ATTACHED: &str = "http_golden_exporter_attached";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A namespace standing in for a remote client: a veth to the host,
/// 198.18.M.2 there and 198.18.M.1 on the host end. Removed on drop.
struct Remote {
    ns: String,
    host_if: String,
    host_addr: String,
}

impl Remote {
    fn new(m: u8) -> Remote {
        let r = Remote { ns: unique("hgcr"), host_if: unique("hgch"), host_addr: format!("198.18.{m}.1") };
        let inside = unique("hgcc");
        run("ip", &["netns", "add", &r.ns]);
        run("ip", &["link", "add", &r.host_if, "type", "veth", "peer", "name", &inside, "netns", &r.ns]);
        run("ip", &["addr", "add", &format!("{}/24", r.host_addr), "dev", &r.host_if]);
        run("ip", &["link", "set", &r.host_if, "up"]);
        let addr = format!("198.18.{m}.2/24");
        for args in [
            ["addr", "add", addr.as_str(), "dev", inside.as_str()].as_slice(),
            &["link", "set", inside.as_str(), "up"],
            &["link", "set", "lo", "up"],
            &["route", "add", "default", "via", r.host_addr.as_str()],
        ] {
            let mut all = vec!["-n", r.ns.as_str()];
            all.extend_from_slice(args);
            run("ip", &all);
        }
        r
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).stderr(Stdio::null()).status();
    }
}

/// `n` GETs of `url` with curl, from namespace `ns` (None: the host); each must get a 200.
fn get(ns: Option<&str>, url: &str, n: usize) {
    for _ in 0..n {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => Command::new("curl"),
        };
        let out = cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "GET {url} from {ns:?}");
    }
}

fn attached(m: &Metrics, container: &str) -> bool {
    m.has(ATTACHED, &[("container", container)])
}

/// Scrape until `done`; the time it took, or a panic naming `what` with the last scrape.
fn within(exp: &Exporter, limit: Duration, what: &str, done: impl Fn(&Metrics) -> bool) -> Duration {
    let t0 = Instant::now();
    let m = exp.scrape_until(limit, &done);
    assert!(done(&m), "{what}: not after {limit:?}\n{}\n{}", m.text, exp.log());
    t0.elapsed()
}

/// The interface of a podman network's bridge in the host namespace, and the ports enslaved to it.
fn bridge_interfaces(bridge: &Bridge) -> (String, Vec<String>) {
    let out = common::podman::podman(&["network", "inspect", "-f", "{{.NetworkInterface}}", &bridge.name]);
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!name.is_empty(), "podman network inspect {}: {}", bridge.name, String::from_utf8_lossy(&out.stderr));
    let ports = run("ip", &["-o", "link", "show", "master", &name]);
    let ports = ports.lines().filter_map(|l| l.split(": ").nth(1)).map(|p| p.split('@').next().unwrap().to_string());
    (name.clone(), ports.collect())
}

/// `container` is detached (the time it took), and its series are removed.
fn let_go(exp: &Exporter, container: &str) -> Duration {
    let took = within(exp, WITHIN, &format!("{container} let go"), |m| !attached(m, container));
    let m = exp.scrape_until(WITHIN, |m| !m.has(SERVED, &[("container", container)]));
    assert!(!m.has(SERVED, &[("container", container)]), "its series are removed:\n{}", m.text);
    took
}

const FAST: &str = "[metrics]\nscrape_interval = \"200ms\"\n";

#[test]
fn with_no_config_a_published_port_is_counted_once_where_the_container_serves_it_and_named() {
    if !common::privileged(&["ip", "curl", "podman", "runc", "busybox", "promtool"]) {
        return;
    }
    let _one = serial();
    let remote = Remote::new(101);
    let bridge = Bridge::new("hgcb", 201);
    let port = common::free_port();
    let c = Container::start("hgcweb", Net::Bridge(&bridge, Some(port)));
    // Only [web] and [metrics]: no [[target]], no [[discover]], the built-in default.
    let exp = Exporter::start(FAST);
    let m = exp.scrape();
    assert!(attached(&m, &c.name), "the container is attached at start-up:\n{}\n{}", m.text, exp.log());

    let (bridge_if, ports) = bridge_interfaces(&bridge);
    let ours: Vec<&str> =
        [remote.host_if.as_str(), bridge_if.as_str()].into_iter().chain(ports.iter().map(String::as_str)).collect();
    // Discovery sees every namespace on the host, and this test's traffic is
    // told apart from any other by its containers and the host's interfaces it made.
    let not_local = |m: &Metrics| m.sum("http_golden_exporter_requests_not_local_total", &[]);
    let not_local_before = not_local(&exp.scrape());

    let url = format!("http://{}:{port}/", remote.host_addr);
    get(Some(&remote.ns), &url, 5);
    get(None, &url, 3);

    let m = exp.scrape_until(WITHIN, |m| m.sum(SERVED, &[("container", &c.name)]) >= 8.0);
    let served: Vec<_> =
        m.samples.iter().filter(|(n, l, _)| n == SERVED && l.get("container") == Some(&c.name)).collect();
    assert_eq!(m.sum(SERVED, &[("container", &c.name)]), 8.0, "8 requests served, each counted once:\n{}", m.text);
    for (_, labels, _) in &served {
        assert_eq!(labels.get("target").map(String::as_str), Some("containers"));
        assert_eq!(labels.get("port").map(String::as_str), Some("8080"), "after DNAT, in the container");
    }
    assert_eq!(m.sum(SERVED, &[("container", &remote.ns)]), 0.0, "the remote only sent: {}", m.text);
    // The host sent 3 of them: one client request each, on the bridge, with no container label.
    assert_eq!(m.sum(SENT, &[("target", "host"), ("interface", &bridge_if)]), 3.0, "{}", m.text);
    for (_, labels, _) in m.samples.iter().filter(|(n, l, _)| n == SENT && l["target"] == "host") {
        assert!(!labels.contains_key("container"), "a static target's series has no container: {labels:?}");
    }
    // The remote namespace is on this host too, so its 5 are its own client requests.
    assert_eq!(m.sum(SENT, &[("container", &remote.ns)]), 5.0, "{}", m.text);
    assert_eq!(m.sum(SENT, &[("container", &c.name)]), 0.0, "{}", m.text);
    // The host's uplink, bridge and veth count nothing else: they only forwarded.
    for i in &ours {
        let (sent, served) = (m.sum(SENT, &[("target", "host"), ("interface", i)]), m.sum(SERVED, &[("interface", i)]));
        let want_sent = if *i == bridge_if { 3.0 } else { 0.0 };
        assert_eq!((sent, served), (want_sent, 0.0), "host interface {i}, client and server requests:\n{}", m.text);
    }
    // Each of the remote's 5 passed three interfaces of the host: its veth (in),
    // the bridge and the container's veth (out). The counter is the host's
    // whole: a routed request of anything else on this host at the same time
    // would add to it.
    let m = exp.scrape_until(WITHIN, |m| not_local(m) - not_local_before >= 15.0);
    assert_eq!(
        not_local(&m) - not_local_before,
        15.0,
        "requests passed on by the host: 5 requests × 3 interfaces (more means another routed HTTP request \
         crossed this host during the test; the counter has no interface label):\n{}",
        m.text
    );
    assert!(m.sum("http_golden_exporter_discovered_namespaces", &[("discover", "containers")]) >= 2.0);

    let file = exp.dir.path().join("scrape.txt");
    std::fs::write(&file, &m.text).unwrap();
    let out = Command::new("sh").arg("-c").arg(format!("promtool check metrics < {}", file.display())).output();
    let out = out.unwrap();
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_container_stopped_and_another_started_are_followed_without_a_restart() {
    if !common::privileged(&["ip", "curl", "podman", "runc", "busybox"]) {
        return;
    }
    let _one = serial();
    let bridge = Bridge::new("hgcb", 202);
    let first = Container::start("hgcone", Net::Bridge(&bridge, None));
    let exp = Exporter::start(&format!("{FAST}[[discover]]\nname = \"pods\"\nnetns_dirs = [\"/run/netns\"]\n"));
    get(None, &format!("http://{}:8080/", first.address()), 2);
    let m = exp.scrape_until(WITHIN, |m| m.sum(SERVED, &[("container", &first.name)]) >= 2.0);
    assert_eq!(m.sum(SERVED, &[("container", &first.name), ("target", "pods")]), 2.0, "{}", m.text);

    // The built-in host target (no [[target]] here) holds the container's veth
    // host end too, in both directions. Only this bridge's ports are looked at:
    // other namespaces on the host may come and go meanwhile.
    let on_host = |m: &Metrics, port: &str| m.sum(ATTACHED, &[("target", "host"), ("interface", port)]);
    let (_, first_ports) = bridge_interfaces(&bridge);
    assert_eq!(first_ports.len(), 1, "one container on the bridge: {first_ports:?}");
    let first_port = first_ports[0].clone();
    let m = exp.scrape_until(WITHIN, |m| on_host(m, &first_port) == 2.0);
    assert_eq!(on_host(&m, &first_port), 2.0, "its veth host end {first_port} attached:\n{}", m.text);
    first.remove();
    let took = let_go(&exp, &first.name);
    eprintln!("podman rm: detached after {took:?}");
    let m = exp.scrape_until(WITHIN, |m| on_host(m, &first_port) == 0.0);
    assert_eq!(on_host(&m, &first_port), 0.0, "its veth host end {first_port} let go:\n{}", m.text);

    let second = Container::start("hgctwo", Net::Bridge(&bridge, None));
    let (_, second_ports) = bridge_interfaces(&bridge);
    assert_eq!(second_ports.len(), 1, "one container on the bridge: {second_ports:?}");
    let second_port = second_ports[0].clone();
    let m = exp.scrape_until(WITHIN, |m| on_host(m, &second_port) == 2.0);
    assert_eq!(on_host(&m, &second_port), 2.0, "the new veth host end {second_port} attached:\n{}", m.text);
    let took = within(&exp, WITHIN, "the new container attached", |m| attached(m, &second.name));
    eprintln!("podman run: attached after {took:?}");
    get(None, &format!("http://{}:8080/", second.address()), 3);
    let m = exp.scrape_until(WITHIN, |m| m.sum(SERVED, &[("container", &second.name)]) >= 3.0);
    assert_eq!(m.sum(SERVED, &[("container", &second.name)]), 3.0, "{}", m.text);
    // Discovery sees every namespace on the host: only this test's are looked at.
    assert!(!m.has(SERVED, &[("container", &first.name)]), "nothing left of the first:\n{}", m.text);
}

/// `ip netns add NAME` and a veth from the host into it (host 198.18.M.1,
/// inside .2), with busybox httpd on :8080 inside. Removed on drop.
struct Named {
    ns: String,
    host_if: String,
    httpd: Option<Proc>,
    _www: TempDir,
}

impl Named {
    fn add() -> Named {
        let n = Named { ns: unique("hgcn"), host_if: unique("hgnh"), httpd: None, _www: TempDir::new("hgcw") };
        run("ip", &["netns", "add", &n.ns]);
        n
    }

    /// The interface and the server, some time after the namespace appeared (as podman does).
    fn wire(&mut self, m: u8) {
        self.link(m);
        self.serve();
    }

    /// busybox httpd on :8080 inside, serving `_www`.
    fn serve(&mut self) {
        std::fs::write(self._www.path().join("index.html"), "hello\n").unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "busybox", "httpd", "-f", "-p", "8080", "-h"]).arg(self._www.path());
        let httpd = Proc::spawn(cmd, "busybox httpd");
        common::wait_listening(httpd.pid(), 8080);
        self.httpd = Some(httpd);
    }

    /// Only the veth (its inside end named hgni*), for a container to join the namespace.
    fn link(&mut self, m: u8) {
        let inside = unique("hgni");
        run("ip", &["link", "add", &self.host_if, "type", "veth", "peer", "name", &inside, "netns", &self.ns]);
        run("ip", &["addr", "add", &format!("198.18.{m}.1/24"), "dev", &self.host_if]);
        run("ip", &["link", "set", &self.host_if, "up"]);
        run("ip", &["-n", &self.ns, "addr", "add", &format!("198.18.{m}.2/24"), "dev", &inside]);
        run("ip", &["-n", &self.ns, "link", "set", &inside, "up"]);
    }

    fn delete(&mut self) {
        self.httpd = None;
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).stderr(Stdio::null()).status();
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.delete();
    }
}

#[test]
fn a_named_namespace_is_attached_once_it_has_an_interface_and_let_go_when_deleted() {
    if !common::privileged(&["ip", "curl", "busybox"]) {
        return;
    }
    let _one = serial();
    let cfg = "[[discover]]\nname = \"named\"\nnetns_dirs = [\"/run/netns\"]\nprocesses = false\n";
    let exp = Exporter::start(&format!("{FAST}{cfg}"));
    let mut n = Named::add();
    // Discovery takes namespaces in the order they appear: once one made
    // after this one is attached, this one was looked at, and left alone.
    let mut after = Named::add();
    after.link(106);
    let m = exp.scrape_until(WITHIN, |m| attached(m, &after.ns));
    assert!(attached(&m, &after.ns), "{}\n{}", m.text, exp.log());
    assert!(!attached(&m, &n.ns), "nothing to attach to yet: loopback only\n{}", m.text);
    drop(after);
    n.wire(103);
    let took = within(&exp, WITHIN, "the namespace attached once it had an interface", |m| attached(m, &n.ns));
    eprintln!("attached {took:?} after its interface appeared");
    get(None, "http://198.18.103.2:8080/", 4);
    let m = exp.scrape_until(WITHIN, |m| m.sum(SERVED, &[("container", &n.ns)]) >= 4.0);
    assert_eq!(m.sum(SERVED, &[("container", &n.ns), ("target", "named")]), 4.0, "{}", m.text);

    n.delete();
    let took = let_go(&exp, &n.ns);
    eprintln!("let go {took:?} after ip netns del");
    assert!(!exp.log().contains("ERROR"), "{}", exp.log());
}

/// GET `url` once; the status code curl saw.
fn status_of(url: &str) -> String {
    let out =
        Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url]).output();
    String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
}

#[test]
fn every_namespace_a_discover_block_finds_is_labelled_by_its_routes() {
    if !common::privileged(&["ip", "curl", "busybox"]) {
        return;
    }
    let _one = serial();
    let mut n = Named::add();
    n.link(107);
    // The host's end of the namespace's veth, a target without routes: the client view.
    let cfg = format!(
        "[[discover]]\nname = \"named\"\nnetns_dirs = [\"/run/netns\"]\nprocesses = false\n\
         routes = [\"/users/{{id}}\", \"/static/*\"]\n\
         [[target]]\nname = \"edge\"\ninterfaces = [\"{}\"]\n",
        n.host_if
    );
    let exp = Exporter::start(&format!("{FAST}{cfg}"));
    std::fs::create_dir(n._www.path().join("static")).unwrap();
    std::fs::write(n._www.path().join("static/app.js"), "x\n").unwrap();
    n.serve();
    within(&exp, WITHIN, "the namespace attached", |m| attached(m, &n.ns));
    // What busybox httpd answers: a file is 200, anything else 404.
    let sent = [
        ("/static/app.js", "200", "/static/*"),
        ("/static/app.js?v=2", "200", "/static/*"),
        ("/static/none", "404", "/static/*"),
        ("/users/7", "404", "/users/{id}"),
        ("/users/7/orders", "404", "other"),
        ("/", "200", "other"),
    ];
    for (path, status, _) in sent {
        assert_eq!(status_of(&format!("http://198.18.107.2:8080{path}")), status, "GET {path}");
    }
    let mut want = std::collections::BTreeMap::new();
    for (_, status, route) in sent {
        *want.entry((route.to_string(), format!("{}xx", &status[..1]))).or_insert(0.0) += 1.0;
    }
    let by_route = |m: &Metrics| {
        let mut got = std::collections::BTreeMap::new();
        for (name, l, v) in &m.samples {
            if name == "http_server_request_duration_seconds_count" && l.get("container") == Some(&n.ns) {
                let route = l.get("route").cloned().unwrap_or_else(|| "(none)".into());
                *got.entry((route, l["status_class"].clone())).or_insert(0.0) += v;
            }
        }
        got
    };
    let m = exp.scrape_until(WITHIN, |m| by_route(m) == want);
    assert_eq!(by_route(&m), want, "by route and class, in the discovered namespace\n{}", m.text);
    // The same requests sent, on a target without routes: today's series, with no route label.
    let m = exp.scrape_until(WITHIN, |m| m.sum("http_client_requests_total", &[("target", "edge")]) == 6.0);
    assert_eq!(m.sum("http_client_requests_total", &[("target", "edge")]), 6.0, "{}", m.text);
    let http = |name: &str| name.starts_with("http_server_") || name.starts_with("http_client_");
    let edge: Vec<_> = m.samples.iter().filter(|(name, l, _)| http(name) && l["target"] == "edge").collect();
    assert!(edge.iter().all(|(_, l, _)| !l.contains_key("route")), "{edge:?}");
    assert!(!exp.log().contains("ERROR"), "{}", exp.log());
}

#[test]
fn a_namespace_held_only_by_a_process_is_attached_and_named_by_its_inode() {
    if !common::privileged(&["ip", "curl", "busybox", "unshare", "nsenter"]) {
        return;
    }
    let _one = serial();
    let cfg = "[[discover]]\nname = \"procs\"\nnetns_dirs = []\n";
    let exp = Exporter::start(&format!("{FAST}{cfg}"));
    let www = TempDir::new("hgcu");
    std::fs::write(www.path().join("index.html"), "hello\n").unwrap();
    let httpd = common::unshared(&["busybox", "httpd", "-f", "-p", "8080", "-h", www.path().to_str().unwrap()]);
    common::wait_listening(httpd.pid(), 8080);
    let pid = httpd.pid().to_string();
    let (host_if, inside) = (unique("hguh"), unique("hgui"));
    struct Link(String);
    impl Drop for Link {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).stderr(Stdio::null()).status();
        }
    }
    run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &inside, "netns", &pid]);
    let _link = Link(host_if.clone());
    run("ip", &["addr", "add", "198.18.104.1/24", "dev", &host_if]);
    run("ip", &["link", "set", &host_if, "up"]);
    for args in [vec!["addr", "add", "198.18.104.2/24", "dev", &inside], vec!["link", "set", &inside, "up"]] {
        let mut all = vec!["-t", pid.as_str(), "-n", "ip"];
        all.extend(args);
        run("nsenter", &all);
    }
    let ino = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let label = format!("netns:{}", ino.unwrap());
    // Named by its unit instead when this test itself runs in a systemd service.
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let label = match cgroup.lines().find_map(|l| l.strip_prefix("0::")).and_then(|p| p.rsplit('/').next()) {
        Some(unit) if unit.ends_with(".service") => unit.to_string(),
        _ => label,
    };
    let took = within(&exp, WITHIN, "the process's namespace attached", |m| attached(m, &label));
    eprintln!("attached {took:?} after its interface appeared (/proc is scanned every second)");
    get(None, "http://198.18.104.2:8080/", 2);
    let m = exp.scrape_until(WITHIN, |m| m.sum(SERVED, &[("container", &label)]) >= 2.0);
    assert_eq!(m.sum(SERVED, &[("container", &label), ("target", "procs")]), 2.0, "{}", m.text);

    drop(httpd);
    let took = within(&exp, WITHIN, "the namespace let go with its process", |m| !attached(m, &label));
    eprintln!("let go {took:?} after its process exited");
}

#[test]
fn a_static_target_on_a_containers_namespace_follows_the_container_through_a_restart() {
    if !common::privileged(&["ip", "curl", "podman", "runc", "busybox"]) {
        return;
    }
    let _one = serial();
    // As a runtime that keeps a container's namespace at a fixed path: /run/netns/NAME.
    let mut n = Named::add();
    n.link(105);
    let path = format!("/run/netns/{}", n.ns);
    let c = Container::start("hgcst", Net::Ns(&path));
    let cfg = format!("[[target]]\nname = \"web\"\ninterfaces = [\"hgni*\"]\nnetns = \"{path}\"\n");
    let exp = Exporter::start(&format!("{FAST}{cfg}"));
    get(None, "http://198.18.105.2:8080/", 2);
    let served = |m: &Metrics| m.sum(SERVED, &[("target", "web")]);
    let m = exp.scrape_until(WITHIN, |m| served(m) >= 2.0);
    assert_eq!(served(&m), 2.0, "{}", m.text);
    assert!(m.samples.iter().filter(|(n, _, _)| n == SERVED).all(|(_, l, _)| !l.contains_key("container")));

    // The restart: container and namespace gone, a new namespace under the same name, a new container.
    c.remove();
    n.delete();
    let m = exp.scrape_until(WITHIN, |m| !m.has(ATTACHED, &[("target", "web")]));
    assert!(!m.has(ATTACHED, &[("target", "web")]), "detached while the namespace is gone:\n{}", m.text);
    run("ip", &["netns", "add", &n.ns]);
    n.link(105);
    let again = Container::start("hgcst", Net::Ns(&path));
    let took = within(&exp, WITHIN, "re-attached in the new namespace", |m| m.has(ATTACHED, &[("target", "web")]));
    eprintln!("re-attached {took:?} after the container restarted");
    assert_eq!(exp.log().matches("holds a new network namespace").count(), 1, "logged once:\n{}", exp.log());
    get(None, "http://198.18.105.2:8080/", 3);
    let m = exp.scrape_until(WITHIN, |m| served(m) >= 3.0);
    assert_eq!(served(&m), 3.0, "counted again, anew:\n{}", m.text);
    drop(again);
}
