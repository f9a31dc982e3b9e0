"""The test bed: the two network namespaces joined by a veth pair, nginx in the
server namespace, and starting and stopping what a variant attaches or puts
in front of it (the exporter, the no-op TCX program, HAProxy). Everything it
starts or makes (also the start-up phase's namespace and veth pairs,
startup.py) is recorded so that cleanup() removes it again.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .plan import (CLIENT_V4, HAPROXY_PORT, HAPROXY_PROM_PORT, NGINX_PORT, SCRAPE_INTERVAL_S,
                   SERVER_V4, STATUS_PORT)
from .startup import remove_stale_startup
from .system import Proc, child_pids, http_get, log, metric_sum, netns_cmd, parse_metrics, run, sysctl_bpf_stats


# ---------------------------------------------------------------- the test bed

class Testbed:
    """Namespaces, veth, nginx and the variants' processes; Bench (measure.py)
    adds the runs and the phases."""

    def __init__(self, args):
        self.a = args
        self.tag = os.getpid()
        self.srv_ns, self.cli_ns = f"hgb-s{self.tag}", f"hgb-c{self.tag}"
        self.srv_if, self.cli_if = f"hgbs{self.tag}", f"hgbc{self.tag}"
        self.tmp = tempfile.mkdtemp(prefix="hgbench.")
        self.procs = []
        self.netns_made = []
        self.link_made = False
        self.host_links = []    # host-side veth ends of the start-up phase's pairs
        self.sysctl_orig = None
        self.exporter_port = None
        self.runs = []          # one dict per measured run
        self.extras = {}

    # ------------------------------------------------ set-up and tear-down

    def spawn(self, name, cmd, **kw):
        p = Proc(name, cmd, os.path.join(self.tmp, f"{name}.log"), **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        rc = p.stop(sig)
        if p in self.procs:
            self.procs.remove(p)
        return rc

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                p.stop(signal.SIGTERM, timeout=5)
            except Exception as e:  # keep going: everything else must go too
                log(f"stopping {p.name}: {e}")
        self.procs.clear()
        if self.host_links:
            # Deleting one end deletes the pair; -force goes on past ends already gone.
            subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"link del {h}\n" for h in self.host_links),
                           text=True, capture_output=True)
        for ns in self.netns_made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.link_made:
            subprocess.run(["ip", "link", "del", self.srv_if], capture_output=True)
        if self.sysctl_orig is not None:
            sysctl_bpf_stats(self.sysctl_orig)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def remove_stale():
        """Namespaces a killed (-9) earlier run left: hgb-[sct]<pid> whose pid
        is gone; and the start-up phase's host-side veth ends."""
        remove_stale_startup()
        for ns in run("ip", "netns", "list").split():
            m = re.fullmatch(r"hgb-[sct](\d+)", ns)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                for pid in run("ip", "netns", "pids", ns, check=False).split():
                    log(f"killing pid {pid} left in stale namespace {ns}")
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                log(f"removing stale namespace {ns}")
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def setup_netns(self):
        for ns in (self.srv_ns, self.cli_ns):
            run("ip", "netns", "add", ns)
            self.netns_made.append(ns)
        run("ip", "link", "add", self.srv_if, "type", "veth", "peer", "name", self.cli_if)
        self.link_made = True
        for ns, ifname, addr in ((self.srv_ns, self.srv_if, SERVER_V4), (self.cli_ns, self.cli_if, CLIENT_V4)):
            run("ip", "link", "set", ifname, "netns", ns)
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            run("ip", "-n", ns, "link", "set", ifname, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        self.link_made = False  # the namespaces own both ends now

    def nginx_conf(self, name, servers, worker_connections=4096):
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        conf = f"""
worker_processes 1;
worker_rlimit_nofile {worker_connections * 2};
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
{servers}
}}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return path, d

    def start_nginx(self):
        servers = f"""
    server {{
        listen {SERVER_V4}:{NGINX_PORT};
        listen 127.0.0.1:{NGINX_PORT};
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen {SERVER_V4}:{STATUS_PORT};
        location = /status {{ stub_status; }}
    }}"""
        conf, d = self.nginx_conf("nginx", servers)
        p = self.spawn("nginx", netns_cmd(self.srv_ns, "nginx", "-e", f"{d}/error.log", "-c", conf, "-g", "daemon off;"))
        self.wait_for(lambda: self.stub_requests() is not None, "nginx", p)
        return p

    def stub_requests(self):
        """nginx's total request count (stub_status), read from the client namespace."""
        r = subprocess.run(netns_cmd(self.cli_ns, "curl", "-s", "--max-time", "5",
                                     f"http://{SERVER_V4}:{STATUS_PORT}/status"),
                           capture_output=True, text=True)
        m = re.search(r"^\s*\d+\s+\d+\s+(\d+)\s*$", r.stdout, re.M)
        return int(m.group(1)) if m else None

    def wait_for(self, cond, what, proc=None, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{what} exited early:\n{proc.tail()}")
            try:
                if cond():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{what} not ready after {timeout}s" + (f":\n{proc.tail()}" if proc else ""))

    # ------------------------------------------------ variants

    def exporter_config(self, side, ports=None, routes=0):
        ns, ifname = (self.srv_ns, self.srv_if) if side == "server" else (self.cli_ns, self.cli_if)
        path = os.path.join(self.tmp, f"exporter-{side}.toml")
        ports_line = f"ports = {ports}" if ports else ""
        templates = [f"/api/v1/items{i}/{{id}}" for i in range(routes - 1)] + ["/*"] if routes else []
        routes_line = "routes = [" + ", ".join(f'"{t}"' for t in templates) + "]" if templates else ""
        with open(path, "w") as f:
            f.write(f"""
[metrics]
scrape_interval = "{int(SCRAPE_INTERVAL_S * 1000)}ms"
max_series = 10000

[[target]]
name = "{side}"
interfaces = ["{ifname}"]
netns = "/run/netns/{ns}"
{ports_line}
{routes_line}
""")
        return path

    def metrics_url(self):
        return f"http://127.0.0.1:{self.exporter_port}/metrics"

    def routes_for(self, binary):
        """--routes applies to the exporter under test, not to the --compare one (the "before")."""
        compared = binary is not None and binary == getattr(self.a, "compare", None)
        return 0 if compared else getattr(self.a, "routes", 0)

    def start_exporter(self, side, ports=None, binary=None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.exporter_port = s.getsockname()[1]
        p = self.spawn(f"exporter-{side}", [binary or self.a.exporter, "--config.file", self.exporter_config(side, ports, self.routes_for(binary)),
                                             "--web.listen-address", f"127.0.0.1:{self.exporter_port}",
                                             "--log.level", "warn"])

        def attached():
            s = parse_metrics(http_get(self.metrics_url()))
            modes = [ls.get("mode") for n, ls, v in s if n == "http_golden_exporter_attached" and v == 1]
            if len(modes) == 2 and modes != ["tcx", "tcx"]:
                raise RuntimeError(f"exporter attached with modes {modes}, expected tcx")
            return len(modes) == 2
        self.wait_for(attached, "exporter", p)
        kids = child_pids(p.pid)
        if len(kids) != 1:
            raise RuntimeError(f"exporter (attacher pid {p.pid}): expected one forked exporter process, found {kids}")
        p.exporter_pid = kids[0]
        return p

    def stop_exporter(self, p):
        rc = self.stop(p)
        if rc != 0:
            raise RuntimeError(f"exporter exited with {rc} on SIGTERM:\n{p.tail()}")

    def exporter_settled(self, n=2):
        """Call once traffic has stopped: waits until the exporter has read its
        maps n more times, so the snapshot holds every packet; returns the samples."""
        reads_before = metric_sum(parse_metrics(http_get(self.metrics_url())), "http_golden_exporter_map_reads_total")
        deadline = time.monotonic() + 10 * SCRAPE_INTERVAL_S + 5
        while time.monotonic() < deadline:
            s = parse_metrics(http_get(self.metrics_url()))
            if metric_sum(s, "http_golden_exporter_map_reads_total") >= reads_before + n:
                return s
            time.sleep(SCRAPE_INTERVAL_S / 4)
        raise RuntimeError("exporter stopped reading its maps")

    def start_noop(self):
        p = self.spawn("noop", netns_cmd(self.srv_ns, self.a.tcx_noop, self.srv_if),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = p.p.stdout.readline()
        if not line.startswith("attached"):
            raise RuntimeError(f"no-op attach failed:\n{p.tail()}")
        return p

    def start_haproxy(self):
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    http-reuse always
frontend web
    bind {SERVER_V4}:{HAPROXY_PORT}
    default_backend nginx
frontend prometheus
    bind {SERVER_V4}:{HAPROXY_PROM_PORT}
    http-request use-service prometheus-exporter if {{ path /metrics }}
backend nginx
    server nginx1 127.0.0.1:{NGINX_PORT}
""")
        p = self.spawn("haproxy", netns_cmd(self.srv_ns, "haproxy", "-db", "-f", cfg))

        def up():
            r = subprocess.run(netns_cmd(self.cli_ns, "curl", "-s", "--max-time", "2",
                                         f"http://{SERVER_V4}:{HAPROXY_PROM_PORT}/metrics"),
                               capture_output=True, text=True)
            return "haproxy_process_" in r.stdout
        self.wait_for(up, "haproxy", p)
        return p

    def haproxy_requests(self):
        text = run(*netns_cmd(self.cli_ns, "curl", "-s", "--max-time", "5",
                              f"http://{SERVER_V4}:{HAPROXY_PROM_PORT}/metrics"))
        s = parse_metrics(text)
        return metric_sum(s, "haproxy_frontend_http_requests_total", proxy="web"), len(text), len(s)

