"""The start-up phase: how long the exporter takes from exec to systemd's
READY=1 with many targets, and from SIGHUP to the READY=1 that ends a reload
adding one target (the goals: at most 3 s with 30 targets, at most 200 ms to
add one).

The bed: one network namespace, hgb-t<pid>, holding one end of each of
--startup-targets + 1 veth pairs (plan.STARTUP_TARGETS + 1 by default) (this kernel has no dummy driver); the other
ends stay in the host namespace, down. Each target is one namespace-side
interface named with `netns = "/run/netns/hgb-t<pid>"`, as a host whose
services live in their own namespaces (containers) is configured; it also
takes the longer path through the exporter (open the namespace, enter it to
resolve and to attach) and attaches nothing in the host namespace, where
other work on a shared machine may be watching interfaces.

The exporter runs as under systemd's Type=notify: NOTIFY_SOCKET names a unix
datagram socket read here, every message timestamped as it arrives
(CLOCK_MONOTONIC, the clock of the exporter's MONOTONIC_USEC=).
"""
import ctypes
import os
import re
import signal
import socket
import statistics
import subprocess
import threading
import time

from .system import CLK_TCK, http_get, log, parse_metrics, run


class Notify:
    """A stand-in for systemd's notify socket: every datagram, with the
    CLOCK_MONOTONIC time it arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.got = []           # (monotonic s, text)
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._recv, daemon=True)
        self.thread.start()

    def _recv(self):
        while not self.done:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            with self.lock:
                self.got.append((t, data.decode(errors="replace")))

    def messages(self):
        with self.lock:
            return list(self.got)

    def wait(self, pred, what, proc, timeout):
        """Waits until pred(messages) returns something; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.messages()
            r = pred(m)
            if r is not None:
                return r
            if not proc.alive():
                raise RuntimeError(f"exporter exited ({proc.p.returncode}) before {what}; notify: "
                                   f"{[x for _, x in m]}\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {timeout}s; notify: {[x for _, x in m]}\n{proc.tail()}")
            time.sleep(0.002)

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def has_line(msg, line):
    return line in msg.split("\n")


def field(msg, key):
    for line in msg.split("\n"):
        if line.startswith(key + "="):
            return line[len(key) + 1:]
    return None


def first(msgs, line, after=0):
    """Index of the first message at or after `after` carrying `line`, or None."""
    return next((i for i in range(after, len(msgs)) if has_line(msgs[i][1], line)), None)


def cpu_user_sys(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


class StartupPhase:
    """Mixed into Bench (measure.py), which provides a, tmp, spawn, stop,
    netns_made, host_links and extras."""

    def startup_bed(self, n):
        ns = f"hgb-t{self.tag}"
        run("ip", "netns", "add", ns)
        self.netns_made.append(ns)
        host = [f"hgt{self.tag}h{i}" for i in range(n)]
        inner = [f"hgt{self.tag}n{i}" for i in range(n)]
        self.host_links += host  # removed by cleanup() even if the namespace is not gone yet
        # Made in one `ip -batch` each: the peer is created inside the namespace.
        batch = "".join(f"link add {h} type veth peer name {v} netns {ns}\n" for h, v in zip(host, inner))
        subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True, capture_output=True)
        batch = "link set lo up\n" + "".join(f"link set {v} up\n" for v in inner)
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True, capture_output=True)
        return ns, inner

    def startup_config(self, path, ns, ifaces):
        with open(path, "w") as f:
            f.write("# bench/harness/startup.py: one target per veth end; [metrics] and [bpf] as default\n")
            for i, ifname in enumerate(ifaces):
                f.write(target_table(i, ifname, ns))

    def tcx_counts(self, ns, ifaces):
        """{interface: programs on its TCX ingress and egress hooks}, queried in the namespace."""
        out = run("ip", "netns", "exec", ns, "/usr/bin/python3", os.path.join(self.a.bench_dir, "bench.py"),
                  "tcx-count", *ifaces)
        return {name: int(c) for name, c in (line.split() for line in out.splitlines())}

    def attached_anywhere(self, ns, ifaces):
        """What is still attached to the namespace's interfaces (should be nothing):
        TCX programs (BPF_PROG_QUERY: Debian's bpftool 7.1 does not list TCX),
        and whatever bpftool and tc see (xdp, clsact filters)."""
        left = [f"tcx: {c} programs on {v}" for v, c in self.tcx_counts(ns, ifaces).items() if c]
        out = run(*["ip", "netns", "exec", ns, "bpftool", "net", "show"]).strip()
        for line in out.splitlines():
            if line and not line.endswith(":"):  # section headers: "xdp:", "tc:", "flow_dissector:", "netfilter:"
                left.append(f"bpftool: {line}")
        batch = "".join(f"filter show dev {v} {d}\n" for v in ifaces for d in ("ingress", "egress"))
        r = subprocess.run(["tc", "-n", ns, "-batch", "-"], input=batch, text=True, capture_output=True)
        left += [f"tc: {line}" for line in r.stdout.splitlines() if line.strip()]
        return left

    def start_to_ready(self, label, config, ns, ifaces, n, reload=False):
        """Starts the exporter on `config` (n targets), times exec to READY=1;
        with reload, appends target n + 1 to the config, sends SIGHUP and times
        the signal to the READY=1 after RELOADING=1. Then SIGTERM: exit 0, and
        nothing left attached."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        sock = os.path.join(self.tmp, "notify.sock")
        nt = Notify(sock)
        p = None
        r = {"targets": n}
        try:
            env = dict(os.environ, NOTIFY_SOCKET=sock)
            env.pop("WATCHDOG_USEC", None)
            env.pop("WATCHDOG_PID", None)
            cmd = [self.a.exporter, "--config.file", config, "--web.listen-address", f"127.0.0.1:{port}",
                   "--log.level", "info"]
            t0 = time.monotonic()
            p = self.spawn(f"exporter-{label}", cmd, env=env)
            m = nt.wait(lambda m: first(m, "READY=1"), "READY=1", p, self.a.startup_timeout)
            msgs = nt.messages()
            t_ready, ready = msgs[m]
            cpu = cpu_user_sys(p.pid)
            r["start_s"] = t_ready - t0
            att = next((t for t, x in msgs[:m] if field(x, "STATUS") == "attaching"), None)
            r["to_attaching_s"] = att - t0 if att is not None else None
            r["attacher_user_s"], r["attacher_sys_s"] = cpu
            status = field(ready, "STATUS") or ""
            r["status"] = status
            if not status.startswith(f"{n} targets, {2 * n} programs attached"):
                raise RuntimeError(f"READY=1 with STATUS={status!r}, expected {n} targets and {2 * n} programs")
            # READY=1 means served: the first scrape shows every interface attached, by TCX.
            s = parse_metrics(http_get(f"http://127.0.0.1:{port}/metrics"))
            modes = [ls.get("mode") for nm, ls, v in s if nm == "http_golden_exporter_attached" and v == 1]
            if len(modes) != 2 * n or set(modes) != {"tcx"}:
                raise RuntimeError(f"after READY=1, /metrics shows {len(modes)} attached ({sorted(set(modes))}), "
                                   f"expected {2 * n} by tcx")

            if reload:
                with open(config, "a") as f:
                    f.write(target_table(n, ifaces[n], ns))
                before = len(msgs)
                t1 = time.monotonic()
                os.kill(p.pid, signal.SIGHUP)

                def reloaded(m):
                    i = first(m, "RELOADING=1", before)
                    j = None if i is None else first(m, "READY=1", i + 1)
                    return None if j is None else (i, j)
                i, j = nt.wait(reloaded, "READY=1 after RELOADING=1", p, self.a.startup_timeout)
                msgs = nt.messages()
                r["reload_ms"] = (msgs[j][0] - t1) * 1e3
                usec = field(msgs[i][1], "MONOTONIC_USEC")
                r["reload_sighup_to_reloading_ms"] = (int(usec) / 1e6 - t1) * 1e3 if usec else None
                r["reload_reloading_to_ready_ms"] = (msgs[j][0] - int(usec) / 1e6) * 1e3 if usec else None
                status = field(msgs[j][1], "STATUS") or ""
                r["reload_status"] = status
                if not re.fullmatch(rf"reloaded: {n} targets unchanged, 1 added, 0 removed", status):
                    raise RuntimeError(f"reload: STATUS={status!r}, expected {n} unchanged, 1 added")
                tcx = sum(self.tcx_counts(ns, ifaces[:n + 1]).values())
                if tcx != 2 * (n + 1):
                    raise RuntimeError(f"after the reload bpftool shows {tcx} tcx programs, expected {2 * (n + 1)}")

            rc = self.stop(p, signal.SIGTERM)
            if rc != 0:
                raise RuntimeError(f"exporter exited with {rc} on SIGTERM:\n{p.tail()}")
            p = None
            left = self.attached_anywhere(ns, ifaces)
            if left:
                raise RuntimeError("still attached after the exporter exited:\n" + "\n".join(left))
        finally:
            if p is not None:
                self.stop(p)
            nt.close()
        return r

    def phase_startup(self):
        n, runs = self.a.startup_targets, self.a.startup_runs
        log(f"phase startup: {n} targets (one veth end each, in a namespace), exec to READY=1, "
            f"SIGHUP adding target {n + 1} to READY=1, SIGTERM; and 1 target; {runs} runs each")
        t_bed = time.monotonic()
        ns, ifaces = self.startup_bed(n + 1)
        bed_s = time.monotonic() - t_bed
        cfg = os.path.join(self.tmp, "startup.toml")
        one = os.path.join(self.tmp, "startup-one.toml")
        self.startup_config(one, ns, ifaces[:1])
        samples, singles = [], []
        for k in range(runs):
            # The order alternates, so neither always runs just after the other.
            for which in (("many", "one") if k % 2 == 0 else ("one", "many")):
                if which == "many":
                    self.startup_config(cfg, ns, ifaces[:n])  # afresh: the last run appended one
                    r = self.start_to_ready("startup", cfg, ns, ifaces, n, reload=True)
                    r["run"] = k + 1
                    samples.append(r)
                    log(f"startup r{k + 1}: {n} targets: READY=1 after {r['start_s']:.3f} s "
                        f"(STATUS=attaching at {fmt_s(r['to_attaching_s'])} s; attacher CPU "
                        f"{r['attacher_user_s']:.2f} user + {r['attacher_sys_s']:.2f} sys s); "
                        f"reload adding 1: {r['reload_ms']:.1f} ms")
                else:
                    r = self.start_to_ready("startup-one", one, ns, ifaces, 1)
                    r["run"] = k + 1
                    singles.append(r)
                    log(f"startup r{k + 1}: 1 target: READY=1 after {r['start_s']:.3f} s")
        self.extras["startup"] = summarize_startup(n, samples, singles, bed_s)
        st = self.extras["startup"]
        log(f"startup: {n} targets: median {st['start_s_median']:.3f} s, max {st['start_s_max']:.3f} s; "
            f"reload adding 1: median {st['reload_ms_median']:.1f} ms, max {st['reload_ms_max']:.1f} ms; "
            f"1 target: median {st['one_start_s_median']:.3f} s")


def target_table(i, ifname, ns):
    return f'\n[[target]]\nname = "t{i}"\ninterfaces = ["{ifname}"]\nnetns = "/run/netns/{ns}"\n'


def fmt_s(x):
    return "–" if x is None else f"{x:.3f}"


def summarize_startup(n, samples, singles, bed_s):
    def col(rows, k):
        return [r[k] for r in rows if r.get(k) is not None]

    def stats(rows, k, prefix):
        xs = col(rows, k)
        return {f"{prefix}_median": statistics.median(xs), f"{prefix}_max": max(xs),
                f"{prefix}_min": min(xs)} if xs else {}
    out = {"targets": n, "runs": len(samples), "bed_setup_s": bed_s}
    out.update(stats(samples, "start_s", "start_s"))
    out.update(stats(samples, "to_attaching_s", "to_attaching_s"))
    out.update(stats(samples, "attacher_sys_s", "attacher_sys_s"))
    out.update(stats(samples, "attacher_user_s", "attacher_user_s"))
    out.update(stats(samples, "reload_ms", "reload_ms"))
    out.update(stats(samples, "reload_sighup_to_reloading_ms", "reload_sighup_to_reloading_ms"))
    out.update(stats(samples, "reload_reloading_to_ready_ms", "reload_reloading_to_ready_ms"))
    out.update(stats(singles, "start_s", "one_start_s"))
    out.update(stats(singles, "to_attaching_s", "one_to_attaching_s"))
    out["samples"] = samples
    out["one_target_samples"] = singles
    return out


def tcx_count(ifnames):
    """Programs on each interface's TCX ingress + egress hooks (run inside the
    namespace: `bench.py tcx-count IFACE...`), through Debian's libbpf.so.1
    (bpf_prog_query; the kernel reads the ifindex for TCX attach types)."""
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_prog_query.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    for name in ifnames:
        ifindex = socket.if_nametoindex(name)
        total = 0
        for attach_type in (46, 47):  # BPF_TCX_INGRESS, BPF_TCX_EGRESS
            cnt = ctypes.c_uint32(0)
            err = lib.bpf_prog_query(ifindex, attach_type, 0, None, None, ctypes.byref(cnt))
            if err:
                raise OSError(-err, f"BPF_PROG_QUERY on {name}: {os.strerror(-err)}")
            total += cnt.value
        print(name, total)


def remove_stale_startup():
    """Host-side veth ends (hgt<pid>h<i>) a killed (-9) earlier run left."""
    for line in run("ip", "-o", "link", "show").splitlines():
        m = re.match(r"\d+:\s+(hgt(\d+)h\d+)[@:]", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            log(f"removing stale veth {m.group(1)}")
            subprocess.run(["ip", "link", "del", m.group(1)], capture_output=True)
