#!/usr/bin/python3
"""The http-golden-exporter benchmark. Run it through bench/run, which builds
the exporter and the no-op program and holds the machine's build lock.

Topology (all made here, all removed on exit, Ctrl-C or error):

    client netns  hgb-c<pid>              server netns  hgb-s<pid>
    198.18.0.2  veth hgbc<pid> <----> veth hgbs<pid>  198.18.0.1
    wrk -t1 -c32 --latency                nginx :80 (200 "ok\\n", keep-alive)
                                          nginx :8080 /status (stub_status)
                                          haproxy :81 -> nginx 127.0.0.1:80,
                                                  :8404 /metrics (variant 5 only)

Phases:
  1. throughput: every variant once per round, rounds interleaved (the order
     rotates each round), kernel.bpf_stats_enabled=0; req/s, p50/p99, process
     CPU and RSS, and the exporter's count vs nginx's stub_status count.
  2. BPF cost: no-op, exporter (server), exporter (client) and exporter
     parsing only (a port filter nothing matches) interleaved, with
     kernel.bpf_stats_enabled=1 (it adds clock reads to every program run, so
     it is kept out of phase 1); run_time_ns/run_cnt of the programs behind the
     TCX links the measured process holds (link fdinfo, then bpftool).
  3. exporter at idle: CPU and RSS over a quiet window.
  4. series: nginx on up to 10,000 ports, one request per port (one series in
     each aggregate map), /metrics timed with curl at each level.

The exporter runs as two processes (docs/architecture.md): the attacher (the
process started here; it holds the TCX links, so BPF stats come from it) and
the exporter it forks (reads the maps, encodes and serves /metrics). CPU and
RSS are measured for each; the RSS target is judged on the two together.

`bench.py --rerender DIR` rebuilds a run's report from its runs.csv and
extras.json without measuring.
"""
import argparse
import concurrent.futures
import csv
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

SERVER_V4 = "198.18.0.1"
CLIENT_V4 = "198.18.0.2"
NGINX_PORT = 80
STATUS_PORT = 8080
HAPROXY_PORT = 81
HAPROXY_PROM_PORT = 8404
FILL_BASE_PORT = 20000

VARIANTS = ["baseline", "noop", "exporter-server", "exporter-client", "haproxy"]
LABELS = {
    "baseline": "baseline (nothing attached)",
    "noop": "no-op tc program (TCX)",
    "exporter-server": "exporter, server side",
    "exporter-client": "exporter, client side",
    "haproxy": "HAProxy L7 proxy + Prometheus",
    "exporter-parse-only": "exporter, server side, port 80 not watched (headers only)",
}
BPF_VARIANTS = ["noop", "exporter-server", "exporter-client", "exporter-parse-only"]
# exporter variants: (side, ports to watch). "parse-only" watches a port no
# traffic uses, so its programs parse every packet's Ethernet/IP/TCP headers
# and check the port, but never read the payload, touch a flow or an
# aggregate map: the difference to "exporter-server" is the cost of following
# the HTTP streams and aggregating.
EXPORTERS = {
    "exporter-server": ("server", None),
    "exporter-client": ("client", None),
    "exporter-parse-only": ("server", [9]),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRAPE_INTERVAL_S = 1.0

TARGETS = {
    "throughput_ratio": 0.98,
    "bpf_cost_vs_noop": 2.0,
    "rss_mib": 25.0,
    "metrics_10k_ms": 50.0,
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


# ---------------------------------------------------------------- processes

def run(*cmd, check=True, capture=True, timeout=120):
    r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r.stdout if capture else ""


def netns_cmd(ns, *cmd):
    return ["ip", "netns", "exec", ns, *cmd]


class Proc:
    """A child in its own session; stop() ends it, and its group, by pid."""

    def __init__(self, name, cmd, log_path, stdin=subprocess.DEVNULL, stdout=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout or self.log, stderr=self.log,
                                  start_new_session=True, text=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Returns the exit code (None if it had to be killed)."""
        if self.alive():
            try:
                os.kill(self.p.pid, sig)
                return self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.p.pid}) ignored {sig.name}; killing its group")
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
                return None
            finally:
                self.log.close()
        self.log.close()
        return self.p.returncode

    def tail(self, n=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime + stime


def proc_mem_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def child_pids(pid):
    """Direct children of `pid` (all its threads)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def proc_pss_mib(pid):
    """Proportional set size (shared pages split among their users), MiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def host_cpu_seconds():
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq
    return busy / CLK_TCK, (busy + idle + iowait + steal) / CLK_TCK


class Usage:
    """CPU share and memory of one process over a window."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.monotonic()
        self.c0 = proc_cpu_seconds(pid)

    def done(self):
        cpu = proc_cpu_seconds(self.pid) - self.c0
        wall = time.monotonic() - self.t0
        mem = proc_mem_kib(self.pid)
        return {"cpu_pct": 100.0 * cpu / wall, "rss_mib": mem["VmRSS"] / 1024, "hwm_mib": mem["VmHWM"] / 1024}


def exporter_usage(p):
    """Usage of the exporter (the forked child) and of the attacher (p itself)."""
    return Usage(p.exporter_pid), Usage(p.pid)


def usage_row(u_exp, u_att):
    e, a = u_exp.done(), u_att.done()
    return {"cpu_pct": e["cpu_pct"], "rss_mib": e["rss_mib"], "hwm_mib": e["hwm_mib"], "pss_mib": proc_pss_mib(u_exp.pid),
            "attacher_cpu_pct": a["cpu_pct"], "attacher_rss_mib": a["rss_mib"], "attacher_hwm_mib": a["hwm_mib"],
            "attacher_pss_mib": proc_pss_mib(u_att.pid)}


# ---------------------------------------------------------------- BPF stats

def tcx_prog_stats(pid):
    """{direction: (run_time_ns, run_cnt)} for the programs behind the TCX
    links that process `pid` holds. The link fdinfo names the program id and
    direction; the counters come from `bpftool prog show id` (the exporter
    closes its program fds once the links hold the programs)."""
    out = {}
    fdinfo = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        try:
            with open(f"{fdinfo}/{fd}") as f:
                kv = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except OSError:
            continue
        if kv.get("link_type") != "tcx":
            continue
        direction = "ingress" if "ingress" in kv["attach_type"] else "egress"
        info = json.loads(run("bpftool", "prog", "show", "id", kv["prog_id"], "--json"))
        # bpftool leaves both fields out while they are zero.
        t, n = info.get("run_time_ns", 0), info.get("run_cnt", 0)
        prev = out.get(direction, (0, 0))
        out[direction] = (prev[0] + t, prev[1] + n)
    if set(out) != {"ingress", "egress"}:
        raise RuntimeError(f"pid {pid}: expected TCX ingress+egress links, found {out}")
    return out


def sysctl_bpf_stats(value=None):
    path = "/proc/sys/kernel/bpf_stats_enabled"
    if value is None:
        with open(path) as f:
            return f.read().strip()
    with open(path, "w") as f:
        f.write(str(value))


# ---------------------------------------------------------------- metrics text

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric_sum(samples, name, **labels):
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items()))


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.a = args
        self.tag = os.getpid()
        self.srv_ns, self.cli_ns = f"hgb-s{self.tag}", f"hgb-c{self.tag}"
        self.srv_if, self.cli_if = f"hgbs{self.tag}", f"hgbc{self.tag}"
        self.tmp = tempfile.mkdtemp(prefix="hgbench.")
        self.procs = []
        self.netns_made = []
        self.link_made = False
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
        for ns in self.netns_made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.link_made:
            subprocess.run(["ip", "link", "del", self.srv_if], capture_output=True)
        if self.sysctl_orig is not None:
            sysctl_bpf_stats(self.sysctl_orig)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def remove_stale():
        """Namespaces a killed (-9) earlier run left: hgb-[sc]<pid> whose pid is gone."""
        for ns in run("ip", "netns", "list").split():
            m = re.fullmatch(r"hgb-[sc](\d+)", ns)
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

    def exporter_config(self, side, ports=None):
        ns, ifname = (self.srv_ns, self.srv_if) if side == "server" else (self.cli_ns, self.cli_if)
        path = os.path.join(self.tmp, f"exporter-{side}.toml")
        ports_line = f"ports = {ports}" if ports else ""
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
""")
        return path

    def metrics_url(self):
        return f"http://127.0.0.1:{self.exporter_port}/metrics"

    def start_exporter(self, side, ports=None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.exporter_port = s.getsockname()[1]
        p = self.spawn(f"exporter-{side}", [self.a.exporter, "--config.file", self.exporter_config(side, ports),
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
        p = self.spawn("noop", netns_cmd(self.srv_ns, "/usr/bin/python3", os.path.join(self.a.bench_dir, "tcx_noop.py"),
                                         self.a.noop_obj, self.srv_if),
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

    # ------------------------------------------------ load

    def wrk(self, port, duration):
        out = run(*netns_cmd(self.cli_ns, "wrk", f"-t{self.a.threads}", f"-c{self.a.connections}",
                             f"-d{duration}s", "--latency", f"http://{SERVER_V4}:{port}/"),
                  timeout=duration + 60)
        return parse_wrk(out)

    def measure(self, variant, phase, rnd, duration):
        """One measured run of one variant; everything it starts is stopped again."""
        row = {"phase": phase, "round": rnd, "variant": variant}
        extra_procs = []
        watched = None  # the process whose CPU/RSS we report
        bpf_holder = None
        port = NGINX_PORT
        try:
            if variant == "noop":
                bpf_holder = self.start_noop()
                extra_procs.append(bpf_holder)
            elif variant in EXPORTERS:
                side, ports = EXPORTERS[variant]
                watched = bpf_holder = self.start_exporter(side, ports)
                extra_procs.append(watched)
                before = parse_metrics(http_get(self.metrics_url()))
            elif variant == "haproxy":
                watched = self.start_haproxy()
                extra_procs.append(watched)
                port = HAPROXY_PORT
                hap_before = self.haproxy_requests()[0]
            stub_before = self.stub_requests()
            bpf_before = tcx_prog_stats(bpf_holder.pid) if bpf_holder and phase == "bpf" else None
            if variant in EXPORTERS:
                usage = exporter_usage(watched)
            elif watched:
                usage = (Usage(watched.pid),)
            else:
                usage = None
            host0 = host_cpu_seconds()

            row.update(self.wrk(port, duration))

            host1 = host_cpu_seconds()
            busy = host1[0] - host0[0]
            row["host_cpu_pct"] = 100.0 * busy / (host1[1] - host0[1])
            row["cpu_us_per_req"] = busy * 1e6 / row["requests"] if row["requests"] else None

            if usage and len(usage) == 2:
                row.update(usage_row(*usage))
            elif usage:
                u = usage[0].done()
                row.update(cpu_pct=u["cpu_pct"], rss_mib=u["rss_mib"], hwm_mib=u["hwm_mib"])
            if bpf_before:
                after = tcx_prog_stats(bpf_holder.pid)
                tot_t = tot_n = 0
                for d in ("ingress", "egress"):
                    dt = after[d][0] - bpf_before[d][0]
                    dn = after[d][1] - bpf_before[d][1]
                    row[f"bpf_ns_{d}"] = dt / dn if dn else None
                    row[f"bpf_runs_{d}"] = dn
                    tot_t, tot_n = tot_t + dt, tot_n + dn
                row["bpf_ns"] = tot_t / tot_n if tot_n else None
                row["bpf_runs_per_req"] = tot_n / row["requests"] if row["requests"] else None
            # Give nginx a moment for requests still in flight when wrk stopped;
            # the stub request that reads the count is itself counted, hence -1.
            time.sleep(0.2)
            row["nginx_count"] = self.stub_requests() - stub_before - 1
            if variant in EXPORTERS and not ports:
                s = self.exporter_settled()
                role = "http_server" if side == "server" else "http_client"
                name = f"{role}_requests_total"
                row["exporter_count"] = int(metric_sum(s, name, port=str(NGINX_PORT)) -
                                            metric_sum(before, name, port=str(NGINX_PORT)))
                row["exporter_responses"] = int(
                    metric_sum(s, f"{role}_request_duration_seconds_count", port=str(NGINX_PORT)) -
                    metric_sum(before, f"{role}_request_duration_seconds_count", port=str(NGINX_PORT)))
                row["exporter_anomalies"] = int(sum(
                    v for n, ls, v in s
                    if n.startswith("http_golden_exporter_") and n.endswith("_total")
                    and not n.startswith("http_golden_exporter_map_reads")))
            if variant == "haproxy":
                row["haproxy_count"] = int(self.haproxy_requests()[0] - hap_before)
        finally:
            for p in reversed(extra_procs):
                if p.name.startswith("exporter"):
                    self.stop_exporter(p)
                else:
                    self.stop(p)
        return row

    def one(self, variant, phase, rnd, duration):
        row = self.measure(variant, phase, rnd, duration)
        self.runs.append(row)
        msg = f"{phase} r{rnd} {variant:16s} {row['rps']:10.0f} req/s  p50 {row['p50_us']:7.1f} us  p99 {row['p99_us']:8.1f} us"
        if row.get("bpf_ns") is not None:
            msg += f"  bpf {row['bpf_ns']:.1f} ns/run"
        if "exporter_count" in row:
            msg += f"  count exporter {row['exporter_count']} nginx {row['nginx_count']}"
        log(msg)

    # ------------------------------------------------ phases

    def phase_throughput(self):
        sysctl_bpf_stats(0)
        log(f"phase 1: throughput, {self.a.rounds} rounds x {len(VARIANTS)} variants x {self.a.duration}s")
        self.wrk(NGINX_PORT, 3)  # warm-up, not recorded
        for r in range(self.a.rounds):
            k = r % len(VARIANTS)
            for v in VARIANTS[k:] + VARIANTS[:k]:
                self.one(v, "throughput", r + 1, self.a.duration)

    def phase_bpf(self):
        sysctl_bpf_stats(1)
        log(f"phase 2: BPF cost (kernel.bpf_stats_enabled=1), {self.a.rounds} rounds x {len(BPF_VARIANTS)} x {self.a.bpf_duration}s")
        for r in range(self.a.rounds):
            k = r % len(BPF_VARIANTS)
            for v in BPF_VARIANTS[k:] + BPF_VARIANTS[:k]:
                self.one(v, "bpf", r + 1, self.a.bpf_duration)
        sysctl_bpf_stats(0)

    def phase_idle(self):
        log(f"phase 3: exporter idle for {self.a.idle}s (server side attached, no traffic)")
        p = self.start_exporter("server")
        try:
            time.sleep(2)
            u = exporter_usage(p)
            time.sleep(self.a.idle)
            self.extras["idle"] = usage_row(*u)
        finally:
            self.stop_exporter(p)
        log(f"idle: {self.extras['idle']}")

    def phase_series(self):
        """nginx listens on the highest level's number of ports; each level
        sends one request to each not yet used port (every port is one
        series in each aggregate map), then times /metrics."""
        levels = sorted(int(x) for x in self.a.series_levels.split(","))
        n = levels[-1]
        log(f"phase 4: series levels {levels} (nginx on {n} ports, one request per port), /metrics {self.a.scrapes} times each")
        listens = "\n".join(f"        listen {SERVER_V4}:{FILL_BASE_PORT + i};" for i in range(n))
        conf, d = self.nginx_conf("nginx-ports", f"    server {{\n{listens}\n        location / {{ return 200 \"ok\\n\"; }}\n    }}",
                                  worker_connections=n + 4096)
        ng = self.spawn("nginx-ports", netns_cmd(self.srv_ns, "nginx", "-e", f"{d}/error.log", "-c", conf, "-g", "daemon off;"))
        self.extras["series"] = []
        try:
            def listening():
                out = run(*netns_cmd(self.srv_ns, "ss", "-Hltn", f"sport >= :{FILL_BASE_PORT}"))
                return len(out.splitlines()) >= n
            self.wait_for(listening, "nginx on many ports", ng, timeout=60)
            p = self.start_exporter("server")
            try:
                done = ok = 0
                for level in levels:
                    out = run(*netns_cmd(self.cli_ns, "/usr/bin/python3", os.path.abspath(__file__), "fill",
                                         SERVER_V4, str(FILL_BASE_PORT + done), str(level - done)), timeout=600)
                    ok += int(out.split()[0])
                    done = level
                    self.extras["series"].append(self.scrape_level(p, level, ok))
            finally:
                self.stop_exporter(p)
        finally:
            self.stop(ng)

    def scrape_level(self, p, ports, answered):
        s = self.exporter_settled()
        series = {ls["map"]: v for nm, ls, v in s if nm == "http_golden_exporter_series"}
        dropped = metric_sum(s, "http_golden_exporter_series_dropped_total")
        read_s = metric_sum(s, "http_golden_exporter_map_read_duration_seconds")
        # No scrapes for a while: what the exporter spends on its own, every
        # scrape_interval (map read, and encoding the HTTP families for the cache).
        reads0 = metric_sum(s, "http_golden_exporter_map_reads_total")
        quiet = Usage(p.exporter_pid)
        time.sleep(self.a.quiet)
        q = quiet.done()
        reads1 = metric_sum(parse_metrics(http_get(self.metrics_url())), "http_golden_exporter_map_reads_total")
        cpu0 = proc_cpu_seconds(p.exporter_pid)
        t0 = time.monotonic()
        times, ttfb, size = [], [], 0
        for _ in range(self.a.scrapes):
            o = run("curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{time_starttransfer} %{size_download} %{http_code}",
                    self.metrics_url()).split()
            if o[3] != "200":
                raise RuntimeError(f"/metrics answered {o[3]}")
            times.append(float(o[0]) * 1e3)
            ttfb.append(float(o[1]) * 1e3)
            size = int(o[2])
        scrape_cpu_s = proc_cpu_seconds(p.exporter_pid) - cpu0
        scrape_wall_s = time.monotonic() - t0
        cpu_per_scrape_ms = scrape_cpu_s / self.a.scrapes * 1e3
        # The map reads that ran meanwhile, at the unscraped rate, are not the scrapes' doing.
        cpu_per_scrape_net_ms = (scrape_cpu_s - q["cpu_pct"] / 100 * scrape_wall_s) / self.a.scrapes * 1e3
        mem = proc_mem_kib(p.exporter_pid)
        att = proc_mem_kib(p.pid)
        r = {
            "ports": ports, "ports_answered": answered,
            "series_requests": series.get("requests"), "series_latency": series.get("latency"),
            "series_dropped": dropped, "map_read_ms": read_s * 1e3,
            "samples": len(parse_metrics(http_get(self.metrics_url()))), "bytes": size,
            "scrape_ms_median": statistics.median(times), "scrape_ms_max": max(times),
            "scrape_ms_min": min(times), "ttfb_ms_median": statistics.median(ttfb),
            "scrape_ms_all": [round(x, 2) for x in times],
            "cpu_ms_per_scrape": cpu_per_scrape_ms, "cpu_ms_per_scrape_net": cpu_per_scrape_net_ms,
            "scrape_window_s": scrape_wall_s,
            "rss_mib": mem["VmRSS"] / 1024, "hwm_mib": mem["VmHWM"] / 1024,
            "attacher_rss_mib": att["VmRSS"] / 1024, "attacher_hwm_mib": att["VmHWM"] / 1024,
            "pss_mib": proc_pss_mib(p.exporter_pid), "attacher_pss_mib": proc_pss_mib(p.pid),
            "quiet_s": self.a.quiet, "quiet_reads": reads1 - reads0,
            "quiet_cpu_ms_per_s": q["cpu_pct"] * 10, "quiet_rss_mib": q["rss_mib"],
            "scrapes": self.a.scrapes,
        }
        log(f"{ports} ports: series {series}, dropped {dropped:.0f}, {r['samples']} samples, {size} bytes, "
            f"scrape median {r['scrape_ms_median']:.1f} ms, map read {r['map_read_ms']:.1f} ms, "
            f"RSS {r['rss_mib']:.1f} MiB (peak {r['hwm_mib']:.1f}), attacher {r['attacher_rss_mib']:.1f} MiB, "
            f"unscraped CPU {r['quiet_cpu_ms_per_s']:.1f} ms/s")
        return r

    def go(self):
        self.remove_stale()
        self.sysctl_orig = sysctl_bpf_stats()
        self.setup_netns()
        self.start_nginx()
        started = datetime.datetime.now(datetime.timezone.utc)
        t0 = time.monotonic()
        # Anything else busy on this machine shows here (nothing of ours runs yet but an idle nginx).
        h0 = host_cpu_seconds()
        time.sleep(3)
        h1 = host_cpu_seconds()
        self.extras["background_cpu_pct"] = 100.0 * (h1[0] - h0[0]) / (h1[1] - h0[1])
        log(f"background: machine {self.extras['background_cpu_pct']:.1f} % busy before the run")
        for phase in self.a.phases.split(","):
            {"throughput": self.phase_throughput, "bpf": self.phase_bpf,
             "idle": self.phase_idle, "series": self.phase_series}[phase]()
        self.extras["elapsed_s"] = time.monotonic() - t0
        self.extras["started"] = started.strftime("%Y-%m-%d %H:%M UTC")
        write_results(self.a, self.runs, self.extras)


# ---------------------------------------------------------------- wrk output

def to_us(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]


def parse_wrk(out):
    def grab(pattern, conv=float):
        m = re.search(pattern, out, re.M)
        if not m:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return conv(m.group(1))
    row = {
        "rps": grab(r"^Requests/sec:\s+([\d.]+)"),
        "requests": grab(r"^\s*(\d+) requests in", int),
        "p50_us": grab(r"^\s+50%\s+(\S+)", to_us),
        "p99_us": grab(r"^\s+99%\s+(\S+)", to_us),
    }
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    row["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    row["non_2xx"] = int(m.group(1)) if m else 0
    return row


# ---------------------------------------------------------------- results

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    """One dict per variant: medians over rounds (throughput phase for load
    figures, BPF phase for BPF figures)."""
    tp = [r for r in runs if r["phase"] == "throughput"]
    bp = [r for r in runs if r["phase"] == "bpf"]
    base = {r["round"]: r for r in tp if r["variant"] == "baseline"}
    summary = []
    for v in VARIANTS + ["exporter-parse-only"]:
        rows = [r for r in tp if r["variant"] == v]
        brows = [r for r in bp if r["variant"] == v]
        if not rows and not brows:
            continue
        paired = [(r, base[r["round"]]) for r in rows if r["round"] in base]
        ratios = [r["rps"] / b["rps"] for r, b in paired]
        s = {"variant": v, "rounds": len(rows), "bpf_rounds": len(brows)}
        if rows:
            s.update({
                "rps": med(r["rps"] for r in rows),
                "rps_min": min(r["rps"] for r in rows),
                "rps_max": max(r["rps"] for r in rows),
                "ratio": med(ratios),
                "ratio_min": min(ratios) if ratios else None,
                "ratio_max": max(ratios) if ratios else None,
                "p50_us": med(r["p50_us"] for r in rows),
                "p99_us": med(r["p99_us"] for r in rows),
                "host_cpu_pct": med(r["host_cpu_pct"] for r in rows),
                "cpu_us_per_req": med(r["cpu_us_per_req"] for r in rows),
                "cpu_us_per_req_delta": med(r["cpu_us_per_req"] - b["cpu_us_per_req"] for r, b in paired),
                "cpu_pct": med(r.get("cpu_pct") for r in rows),
                "rss_mib": med(r.get("rss_mib") for r in rows),
                "hwm_mib": max((r["hwm_mib"] for r in rows if r.get("hwm_mib") is not None), default=None),
                "attacher_cpu_pct": med(r.get("attacher_cpu_pct") for r in rows),
                "pss_mib": med(r.get("pss_mib") for r in rows),
                "attacher_pss_mib": med(r.get("attacher_pss_mib") for r in rows),
                "attacher_rss_mib": med(r.get("attacher_rss_mib") for r in rows),
                "attacher_hwm_mib": max((r["attacher_hwm_mib"] for r in rows if r.get("attacher_hwm_mib") is not None),
                                        default=None),
                "both_hwm_mib": max((r["hwm_mib"] + r["attacher_hwm_mib"] for r in rows
                                     if r.get("hwm_mib") is not None and r.get("attacher_hwm_mib") is not None),
                                    default=None),
            })
        if brows:
            s.update({
                "bpf_ns": med(r["bpf_ns"] for r in brows),
                "bpf_ns_ingress": med(r["bpf_ns_ingress"] for r in brows),
                "bpf_ns_egress": med(r["bpf_ns_egress"] for r in brows),
                "bpf_ns_min": min(r["bpf_ns"] for r in brows),
                "bpf_ns_max": max(r["bpf_ns"] for r in brows),
                "bpf_runs_per_req": med(r["bpf_runs_per_req"] for r in brows),
            })
        summary.append(s)
    noop = next((s.get("bpf_ns") for s in summary if s["variant"] == "noop"), None)
    for s in summary:
        if s.get("bpf_ns") is not None and noop:
            s["bpf_vs_noop"] = s["bpf_ns"] / noop
            s["bpf_ns_over_noop_per_req"] = (s["bpf_ns"] - noop) * s["bpf_runs_per_req"]
    return summary


def fmt(x, spec=",.0f", none="–"):
    return none if x is None else format(x, spec)


def environment():
    def first_line(*cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        text = (r.stdout or r.stderr).strip()
        return text.splitlines()[0] if text else "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "src", "bpf", "build.rs", "Cargo.toml"],
                           capture_output=True, text=True).stdout.strip()
    with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
        clock = f.read().strip()
    return {
        "kernel": platform.release(),
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "clocksource": clock,
        "nginx": first_line("nginx", "-v"),
        "wrk": " ".join(first_line("wrk", "-v").split()[:2]),
        "haproxy": " ".join(first_line("haproxy", "-v").split()[:3]),
        "exporter": f"{commit}{' (uncommitted changes in src/ or bpf/)' if dirty else ''}",
    }


def verdict(ok):
    return "**met**" if ok else "**missed**"


def targets(summary, extras, runs):
    by = {s["variant"]: s for s in summary}
    rows = []
    for v in ("exporter-server", "exporter-client"):
        s = by.get(v, {})
        if s.get("ratio") is not None:
            t = TARGETS["throughput_ratio"]
            rows.append((f"throughput ratio, {LABELS[v]}", f"≥ {t}", f"{s['ratio']:.3f}",
                         verdict(s["ratio"] >= t), f"{s['ratio'] - t:+.3f}"))
    for v in ("exporter-server", "exporter-client"):
        s = by.get(v, {})
        if s.get("bpf_vs_noop") is not None:
            t = TARGETS["bpf_cost_vs_noop"]
            rows.append((f"BPF ns/run vs no-op, {LABELS[v]}", f"≤ {t}×",
                         f"{s['bpf_vs_noop']:.2f}× ({s['bpf_ns']:.1f} vs {by['noop']['bpf_ns']:.1f} ns)",
                         verdict(s["bpf_vs_noop"] <= t), f"{t - s['bpf_vs_noop']:+.2f}×"))
    # The daemon is two processes; the target is judged on both together: the
    # sum of their peaks (VmHWM), an upper bound (pages shared since the fork
    # count twice).
    idle = extras.get("idle", {})
    rss = []
    if idle.get("hwm_mib") is not None and idle.get("attacher_hwm_mib") is not None:
        rss.append(("idle", idle["hwm_mib"] + idle["attacher_hwm_mib"]))
    for v in ("exporter-server", "exporter-client"):
        if by.get(v, {}).get("both_hwm_mib") is not None:
            rss.append((f"under load, {v.split('-')[1]} side", by[v]["both_hwm_mib"]))
    t = TARGETS["rss_mib"]
    if rss:
        worst = max(rss, key=lambda kv: kv[1])
        rows.append((f"RSS idle and under load, exporter + attacher, highest peak (VmHWM, {worst[0]})", f"≤ {t:.0f} MiB",
                     f"{worst[1]:.1f} MiB", verdict(worst[1] <= t), f"{t - worst[1]:+.1f} MiB"))
    for lv in extras.get("series", []):
        both = lv["hwm_mib"] + lv.get("attacher_hwm_mib", 0)
        rows.append((f"RSS with {lv['ports']:,} series per map, exporter + attacher, peak (VmHWM)", f"≤ {t:.0f} MiB",
                     f"{both:.1f} MiB ({lv['hwm_mib']:.1f} + {lv.get('attacher_hwm_mib', 0):.1f})",
                     verdict(both <= t), f"{t - both:+.1f} MiB"))
    tm = TARGETS["metrics_10k_ms"]
    for lv in extras.get("series", []):
        x = lv["scrape_ms_median"]
        rows.append((f"/metrics with {lv['ports']:,} series per map ({lv['samples']:,} samples), median", f"< {tm:.0f} ms",
                     f"{x:.1f} ms", verdict(x < tm), f"{tm - x:+.1f} ms"))
    acc = [r for r in runs if "exporter_count" in r]
    if acc:
        exact = sum(1 for r in acc if r["exporter_count"] == r["nginx_count"])
        worst = max(acc, key=lambda r: abs(r["exporter_count"] - r["nginx_count"]))
        rows.append(("request count, exporter vs nginx stub_status", "exact", f"{exact} of {len(acc)} runs exact",
                     verdict(exact == len(acc)), f"largest difference {worst['exporter_count'] - worst['nginx_count']:+d}"))
    return rows


def markdown(args, summary, runs, extras, env):
    by = {s["variant"]: s for s in summary}
    md = ["# Benchmark results\n",
          f"- date: {env['date']} (the run took {env['elapsed']})",
          f"- kernel `{env['kernel']}`; CPU: {env['cpu']}; clocksource {env['clocksource']}",
          f"- {env['nginx']}; {env['wrk']}; {env['haproxy']}",
          f"- exporter: commit {env['exporter']}, TCX links, scrape_interval {SCRAPE_INTERVAL_S:g}s",
          f"- machine busy before the run (3 s, all CPUs): {fmt(extras.get('background_cpu_pct'), '.1f')} %",
          f"- load: wrk -t{args.threads} -c{args.connections} --latency, keep-alive, 3-byte body; "
          f"{args.rounds} rounds of {args.duration}s per variant, interleaved; BPF cost: {args.rounds} rounds of {args.bpf_duration}s\n",
          "## Throughput and latency\n",
          "Medians over the rounds. The ratio is the median of per-round ratios to the baseline of the same round. "
          "Host CPU: all CPUs busy (user+system+irq+softirq, /proc/stat) during the run, per request, "
          "and its difference to the same round's baseline. Process CPU and RSS: the exporter process, "
          "the one the attacher forks (exporter rows), or haproxy (HAProxy row), from /proc/PID/stat and "
          "/proc/PID/status; the attacher's own RSS in the last column.\n",
          "| variant | req/s (min–max) | ratio to baseline (min–max) | p50 µs | p99 µs | host CPU busy % | host CPU µs/req (Δ baseline) | process CPU % | RSS MiB | attacher RSS MiB |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
        s = by.get(v)
        if not s or not s["rounds"]:
            continue
        delta = "" if v == "baseline" else f" ({s['cpu_us_per_req_delta']:+.2f})"
        md.append(f"| {LABELS[v]} | {fmt(s['rps'])} ({fmt(s['rps_min'])}–{fmt(s['rps_max'])}) "
                  f"| {fmt(s['ratio'], '.3f')} ({fmt(s['ratio_min'], '.3f')}–{fmt(s['ratio_max'], '.3f')}) "
                  f"| {fmt(s['p50_us'])} | {fmt(s['p99_us'])} | {s['host_cpu_pct']:.1f} | {s['cpu_us_per_req']:.2f}{delta} "
                  f"| {fmt(s['cpu_pct'], '.1f')} | {fmt(s['rss_mib'], '.1f')} | {fmt(s.get('attacher_rss_mib'), '.1f')} |")
    md += ["\n## BPF cost per program run\n",
           "kernel.bpf_stats_enabled=1 (only in this phase: it adds its own clock reads to every run); "
           "run_time_ns / run_cnt of the programs behind the TCX links, over the wrk window; medians over the rounds. "
           "One run is one packet (skb) on one hook.\n",
           "| variant | ns/run (min–max) | ingress | egress | × no-op | runs per request | ns per request above no-op |",
           "|---|---|---|---|---|---|---|"]
    for v in BPF_VARIANTS:
        s = by.get(v)
        if not s or not s["bpf_rounds"]:
            continue
        md.append(f"| {LABELS[v]} | {s['bpf_ns']:.1f} ({s['bpf_ns_min']:.1f}–{s['bpf_ns_max']:.1f}) | {s['bpf_ns_ingress']:.1f} "
                  f"| {s['bpf_ns_egress']:.1f} | {fmt(s.get('bpf_vs_noop'), '.2f')} | {s['bpf_runs_per_req']:.2f} "
                  f"| {fmt(s.get('bpf_ns_over_noop_per_req'), '.0f')} |")
    acc = [r for r in runs if "exporter_count" in r]
    if acc:
        md += ["\n## Request-count accuracy at full load\n",
               "Every exporter run at full load, both phases. nginx: stub_status after − before − 1 (the reading request). "
               "wrk counts completed responses only, so it is lower by the requests in flight when it stops.\n",
               "| phase | round | variant | wrk completed | nginx stub_status | exporter requests_total | exporter responses (_count) | self-metric counters |",
               "|---|---|---|---|---|---|---|---|"]
        for r in acc:
            md.append(f"| {r['phase']} | {r['round']} | {r['variant']} | {r['requests']:,} | {r['nginx_count']:,} | "
                      f"{r['exporter_count']:,} | {r['exporter_responses']:,} | {r['exporter_anomalies']} |")
    hap = [r for r in runs if "haproxy_count" in r]
    idle, ser = extras.get("idle"), extras.get("series")
    md += ["\n## Exporter resources and scrape\n", "| measurement | value |", "|---|---|"]
    if idle:
        md.append(f"| idle ({args.idle}s, server side attached, no traffic): exporter CPU | {idle['cpu_pct']:.2f} % |")
        md.append(f"| idle: exporter RSS (peak) | {idle['rss_mib']:.1f} MiB ({idle['hwm_mib']:.1f} MiB) |")
        if idle.get("attacher_rss_mib") is not None:
            md.append(f"| idle: attacher CPU; RSS (peak) | {idle['attacher_cpu_pct']:.2f} %; "
                      f"{idle['attacher_rss_mib']:.1f} MiB ({idle['attacher_hwm_mib']:.1f} MiB) |")
        if idle.get("pss_mib") is not None and idle.get("attacher_pss_mib") is not None:
            md.append(f"| idle: PSS, exporter + attacher (pages shared since the fork counted once) | "
                      f"{idle['pss_mib']:.1f} + {idle['attacher_pss_mib']:.1f} = {idle['pss_mib'] + idle['attacher_pss_mib']:.1f} MiB |")
    for v in ("exporter-server", "exporter-client"):
        s = by.get(v)
        if s and s["rounds"]:
            side = v.split("-")[1]
            md.append(f"| under load, {side} side: exporter CPU (median of rounds) | {s['cpu_pct']:.2f} % |")
            md.append(f"| under load, {side} side: exporter RSS median (highest peak) | {s['rss_mib']:.1f} MiB ({s['hwm_mib']:.1f} MiB) |")
            if s.get("attacher_rss_mib") is not None:
                md.append(f"| under load, {side} side: attacher CPU; RSS median (highest peak) | {s['attacher_cpu_pct']:.2f} %; "
                          f"{s['attacher_rss_mib']:.1f} MiB ({s['attacher_hwm_mib']:.1f} MiB) |")
            if s.get("pss_mib") is not None and s.get("attacher_pss_mib") is not None:
                md.append(f"| under load, {side} side: PSS, exporter + attacher (median) | "
                          f"{s['pss_mib']:.1f} + {s['attacher_pss_mib']:.1f} = {s['pss_mib'] + s['attacher_pss_mib']:.1f} MiB |")
    if hap:
        md.append(f"| HAProxy's own count vs nginx (all rounds) | {sum(r['haproxy_count'] for r in hap):,} vs "
                  f"{sum(r['nginx_count'] for r in hap):,} |")
    if ser:
        md += ["\n## /metrics with many series\n",
               f"nginx on {ser[-1]['ports']:,} ports in the server namespace; one request to each port adds one series to each "
               f"aggregate map (requests, latency). Levels are cumulative, in one exporter process. Latency: curl, "
               f"{ser[0]['scrapes']} sequential scrapes per level over loopback. The map read (and, since the HTTP "
               "families are cached, their encoding) runs every scrape_interval whether or not anyone scrapes: "
               f"'unscraped CPU' is the exporter process's CPU over {ser[0].get('quiet_s', '?')} s without scrapes, "
               "per second of wall time (one map read per second). RSS: the exporter process after the scrapes "
               "(peak), then the attacher; PSS of both (shared pages counted once) after the scrapes.\n",
               "| series per map (ports answered) | in maps: requests / latency (dropped) | samples | bytes | scrape ms, median (min–max) "
               "| time to first byte ms | exporter CPU ms per scrape (net of map reads) | map read ms | unscraped CPU ms/s | RSS MiB (peak) | attacher RSS MiB | PSS MiB, exporter + attacher |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for lv in ser:
            md.append(f"| {lv['ports']:,} ({lv['ports_answered']:,}) | {fmt(lv['series_requests'])} / {fmt(lv['series_latency'])} "
                      f"({fmt(lv['series_dropped'])}) | {lv['samples']:,} | {lv['bytes']:,} | {lv['scrape_ms_median']:.1f} "
                      f"({lv['scrape_ms_min']:.1f}–{lv['scrape_ms_max']:.1f}) | {lv['ttfb_ms_median']:.1f} | {lv['cpu_ms_per_scrape']:.1f} "
                      f"({fmt(lv.get('cpu_ms_per_scrape_net'), '.1f')}) "
                      f"| {lv['map_read_ms']:.1f} | {fmt(lv.get('quiet_cpu_ms_per_s'), '.1f')} "
                      f"| {lv['rss_mib']:.1f} ({lv['hwm_mib']:.1f}) | {fmt(lv.get('attacher_rss_mib'), '.1f')} "
                      f"| {fmt(lv.get('pss_mib'), '.1f')} + {fmt(lv.get('attacher_pss_mib'), '.1f')} |")
    md += ["\n## Targets\n", "| target | goal | measured | verdict | margin |", "|---|---|---|---|---|"]
    for t in targets(summary, extras, runs):
        md.append("| " + " | ".join(t) + " |")
    md.append("\n![chart](chart.png)\n")
    return "\n".join(md)


def write_results(args, runs, extras, env=None):
    out = args.out
    os.makedirs(out, exist_ok=True)
    summary = summarize(runs) if runs else []
    if env is None:
        env = environment()
        env.update(date=extras.get("started"), elapsed=f"{extras.get('elapsed_s', 0) / 60:.1f} min")

    first = ["phase", "round", "variant"]
    cols = first + sorted({k for r in runs for k in r} - set(first))
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(runs)
    scols = ["variant"] + sorted({k for s in summary for k in s} - {"variant"})
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=scols)
        w.writeheader()
        w.writerows(summary)
    with open(os.path.join(out, "extras.json"), "w") as f:
        json.dump({"environment": env, "extras": extras, "targets": TARGETS,
                   "settings": {k: v for k, v in vars(args).items() if k not in ("exporter", "noop_obj", "bench_dir", "out")}},
                  f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(args, summary, runs, extras, env))
    if any(s["rounds"] for s in summary):
        chart(summary, runs, env, os.path.join(out, "chart.png"))
    log(f"results in {out}/: results.md, summary.csv, runs.csv, extras.json, chart.png")


def chart(summary, runs, env, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {"baseline": "baseline", "noop": "no-op\ntc prog", "exporter-server": "exporter\nserver side",
             "exporter-client": "exporter\nclient side", "haproxy": "HAProxy\nL7 proxy",
             "exporter-parse-only": "exporter,\nheaders only"}
    colors = {"baseline": "#7f7f7f", "noop": "#bcbd22", "exporter-server": "#1f77b4",
              "exporter-client": "#17becf", "haproxy": "#d62728", "exporter-parse-only": "#9467bd"}
    tp = [s for s in summary if s["rounds"]]
    bs = [s for s in summary if s.get("bpf_rounds") and s["variant"] in BPF_VARIANTS]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), gridspec_kw={"width_ratios": [5, 5, 4]})
    w = 0.38

    ax = axes[0]
    x = list(range(len(tp)))
    ax.bar(x, [s["rps"] / 1e3 for s in tp], color=[colors[s["variant"]] for s in tp], alpha=0.85)
    for i, s in enumerate(tp):
        pts = [r["rps"] / 1e3 for r in runs if r["phase"] == "throughput" and r["variant"] == s["variant"]]
        ax.scatter([i] * len(pts), pts, color="black", s=10, zorder=3)
        ax.annotate(f"{s['ratio']:.3f}×", (i, s["rps_max"] / 1e3), textcoords="offset points", xytext=(0, 5),
                    ha="center", fontsize=9, fontweight="bold")
    ax.set_xticks(x, [short[s["variant"]] for s in tp], fontsize=8.5)
    ax.set_ylabel("thousand requests/s (bar: median, dots: rounds)")
    ax.set_title("Throughput; label: ratio to baseline")
    ax.set_ylim(0, max(s["rps_max"] for s in tp) / 1e3 * 1.15)
    base = next((s for s in tp if s["variant"] == "baseline"), None)
    if base:
        t = TARGETS["throughput_ratio"]
        ax.axhline(base["rps"] / 1e3 * t, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(f"target: {t}× baseline", (len(tp) - 0.5, base["rps"] / 1e3 * t), textcoords="offset points",
                    xytext=(-2, 3), ha="right", fontsize=8)

    ax = axes[1]
    ax.bar([i - w / 2 for i in x], [s["p50_us"] for s in tp], w, color=[colors[s["variant"]] for s in tp], alpha=0.5)
    ax.bar([i + w / 2 for i in x], [s["p99_us"] for s in tp], w, color=[colors[s["variant"]] for s in tp], alpha=0.95)
    for i, s in enumerate(tp):
        ax.annotate(f"{s['p50_us']:.0f}", (i - w / 2, s["p50_us"]), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7.5)
        ax.annotate(f"{s['p99_us']:.0f}", (i + w / 2, s["p99_us"]), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7.5)
    ax.set_xticks(x, [short[s["variant"]] for s in tp], fontsize=8.5)
    ax.set_ylabel("µs, wrk latency distribution (median of rounds)")
    ax.set_title("Latency: p50 (light) and p99 (dark)")

    ax = axes[2]
    if bs:
        xb = list(range(len(bs)))
        ax.bar([i - w / 2 for i in xb], [s["bpf_ns_ingress"] for s in bs], w, color=[colors[s["variant"]] for s in bs], alpha=0.5)
        ax.bar([i + w / 2 for i in xb], [s["bpf_ns_egress"] for s in bs], w, color=[colors[s["variant"]] for s in bs], alpha=0.95)
        for i, s in enumerate(bs):
            top = max(s["bpf_ns_ingress"], s["bpf_ns_egress"])
            ax.annotate(f"{s['bpf_ns']:.0f} ns\n{s['bpf_vs_noop']:.2f}× no-op", (i, top), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=8.5, zorder=4,
                        bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=0.5))
        ax.set_xticks(xb, [short[s["variant"]] for s in bs], fontsize=8.5)
        ax.set_ylim(0, max(max(s["bpf_ns_ingress"], s["bpf_ns_egress"]) for s in bs) * 1.3)
        noop = next((s for s in bs if s["variant"] == "noop"), None)
        if noop:
            t = TARGETS["bpf_cost_vs_noop"]
            line = ax.axhline(noop["bpf_ns"] * t, color="black", linestyle="--", linewidth=0.8, zorder=1,
                              label=f"target: {t:g}× no-op ({noop['bpf_ns'] * t:.0f} ns)")
            ax.legend(handles=[line], loc="upper left", fontsize=8, frameon=False)
    ax.set_ylabel("ns per program run (kernel bpf_stats)")
    ax.set_title("BPF cost: ingress (light), egress (dark)")

    fig.suptitle(f"http-golden-exporter benchmark, {env['date']}: kernel {env['kernel']}, {env['cpu']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- fill helper

def fill(host, base, n):
    """One request per port, base..base+n-1 (run inside the client namespace)."""
    def one(port):
        try:
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data.startswith(b"HTTP/1.1 200")
        except OSError:
            return False
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        ok = sum(ex.map(one, range(base, base + n)))
    print(ok, n)


def rerender(out):
    """Rebuild results.md, summary.csv and chart.png of an earlier run from
    its runs.csv and extras.json, without measuring anything."""
    def num(v):
        if v == "":
            return None
        for conv in (int, float):
            try:
                return conv(v)
            except ValueError:
                pass
        return v
    with open(os.path.join(out, "runs.csv")) as f:
        runs = [{k: num(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    for r in runs:
        r["round"] = int(r["round"])
    with open(os.path.join(out, "extras.json")) as f:
        saved = json.load(f)
    args = argparse.Namespace(out=out, **saved["settings"])
    write_results(args, runs, saved["extras"], env=saved["environment"])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "fill":
        fill(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "--rerender":
        rerender(sys.argv[2])
        return 0
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(prog="bench/run", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 description="http-golden-exporter benchmark: see README.md, Benchmarks")
    ap.add_argument("--exporter", required=True, help="exporter binary (bench/run passes it)")
    ap.add_argument("--noop-obj", required=True, help="compiled bench/noop.bpf.c (bench/run passes it)")
    ap.add_argument("--out", default=os.path.join(here, "results"), help="results directory")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of interleaved variants (medians over them)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per throughput run")
    ap.add_argument("--bpf-duration", type=int, default=5, help="seconds per BPF-cost run")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--idle", type=int, default=20, help="seconds of idle measurement")
    ap.add_argument("--series-levels", default="550,2500,10000",
                    help="server ports to fill, cumulatively; each port is one series in each aggregate map. "
                         "550 ports give about 10,000 exposed samples; 10,000 fills the maps (max_series)")
    ap.add_argument("--scrapes", type=int, default=20, help="timed /metrics scrapes per series level")
    ap.add_argument("--quiet", type=int, default=10,
                    help="seconds without scrapes per series level, for the exporter's own CPU per map read")
    ap.add_argument("--phases", default="throughput,bpf,idle,series",
                    help="comma-separated subset of throughput,bpf,idle,series")
    args = ap.parse_args()
    args.bench_dir = here
    args.exporter = os.path.abspath(args.exporter)
    args.noop_obj = os.path.abspath(args.noop_obj)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # nginx on 10k ports
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    b = Bench(args)
    try:
        b.go()
        return 0
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the clean-up finish
        b.cleanup()
        log("cleaned up: namespaces, links and processes removed, kernel.bpf_stats_enabled restored")


if __name__ == "__main__":
    sys.exit(main())
