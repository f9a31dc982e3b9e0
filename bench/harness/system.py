"""The machine side of the benchmark: logging, running commands (also inside a
network namespace), child processes in their own session (Proc), CPU and
memory readings from /proc (Usage and friends), the BPF run-time counters of
a process's TCX links, kernel.bpf_stats_enabled, and fetching and parsing
Prometheus metrics text.
"""
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


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

    def __init__(self, name, cmd, log_path, stdin=subprocess.DEVNULL, stdout=None, env=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout or self.log, stderr=self.log,
                                  start_new_session=True, text=True, env=env)

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


def proc_minor_faults(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # minflt


def proc_mem_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
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

