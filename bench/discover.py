"""Discovery at scale: N network namespaces appear at once in a directory a
[[discover]] table watches; how long until the exporter has attached to all
of them, and until it has let all of them go. See bench/discover.
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.system import http_get, log, metric_sum, parse_metrics, proc_mem_kib, run  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bed:
    """N namespaces bind-mounted in stage/, each with a veth pair a0/b0 inside,
    and the empty directory netns/ the exporter watches."""

    def __init__(self, n):
        self.base = tempfile.mkdtemp(prefix="hgb-disc.")
        self.stage = os.path.join(self.base, "stage")
        self.watched = os.path.join(self.base, "netns")
        self.files = []
        self.shown = False
        os.mkdir(self.stage)
        os.mkdir(self.watched)
        run("mount", "--bind", self.stage, self.stage)
        run("mount", "--make-private", self.stage)
        t0 = time.monotonic()
        for i in range(n):
            f = os.path.join(self.stage, f"ns{i}")
            open(f, "w").close()
            run("unshare", f"--net={f}", "true")
            self.files.append(f)
            run("nsenter", f"--net={f}", "ip", "link", "add", "a0", "type", "veth", "peer", "name", "b0")
        log(f"{n} namespaces made in {time.monotonic() - t0:.1f} s (staged, not yet visible)")

    def show(self):
        """All N appear at once in the watched directory."""
        run("mount", "--rbind", self.stage, self.watched)
        self.shown = True

    def hide(self):
        run("umount", "-R", self.watched)
        self.shown = False

    def remove(self):
        if self.shown:
            subprocess.run(["umount", "-R", self.watched], capture_output=True)
        for f in self.files:
            subprocess.run(["umount", f], capture_output=True)
        subprocess.run(["umount", self.stage], capture_output=True)
        subprocess.run(["rm", "-rf", self.base], capture_output=True)


def start_exporter(exe, bed, n, port, logpath):
    cfg = os.path.join(bed.base, "config.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[web]\nlisten_address = "127.0.0.1:{port}"\n[metrics]\nscrape_interval = "200ms"\n'
            # A [[target]] keeps the built-in host target (every host interface) out of the measurement.
            '[[target]]\nname = "lo"\ninterfaces = ["lo"]\n'
            f'[[discover]]\nname = "bench"\nnetns_dirs = ["{bed.watched}"]\nprocesses = false\n'
            f'interfaces = ["a0"]\nmax_namespaces = {max(n, 1)}\n'
        )
    p = subprocess.Popen([exe, "--config.file", cfg], stdout=open(logpath, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            http_get(f"http://127.0.0.1:{port}/metrics")
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"exporter not serving within 30 s; see {logpath}")


def wait_for(port, done, limit):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        s = parse_metrics(http_get(f"http://127.0.0.1:{port}/metrics"))
        if done(s):
            return time.monotonic() - t0, s
        time.sleep(0.02)
    return None, s


def one_run(exe, bed, n, logpath):
    port = free_port()
    p = start_exporter(exe, bed, n, port, logpath)
    try:
        t0 = time.monotonic()
        bed.show()
        found = lambda s: metric_sum(s, "http_golden_exporter_discovered_namespaces", discover="bench")
        programs = lambda s: metric_sum(s, "http_golden_exporter_attached", target="bench")
        took, s = wait_for(port, lambda s: found(s) == n and programs(s) == 2 * n, 120)
        if took is None:
            raise RuntimeError(f"only {found(s):.0f} of {n} attached after 120 s; see {logpath}")
        attached = time.monotonic() - t0
        kids = [int(c) for c in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
        rss = sum(proc_mem_kib(pid).get("VmHWM", 0) for pid in [p.pid, *kids]) / 1024
        t1 = time.monotonic()
        bed.hide()
        gone, s = wait_for(port, lambda s: found(s) == 0 and programs(s) == 0, 120)
        if gone is None:
            raise RuntimeError(f"{found(s):.0f} of {n} still attached 120 s after they went; see {logpath}")
        return {"attached_s": attached, "gone_s": time.monotonic() - t1, "rss_peak_mib": rss}
    finally:
        if bed.shown:
            bed.hide()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--namespaces", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="bench/results/discover.md")
    a = ap.parse_args()
    bed = Bed(a.namespaces)
    rows = []
    try:
        for i in range(a.runs):
            r = one_run(a.exporter, bed, a.namespaces, os.path.join(bed.base, f"exporter{i}.log"))
            log(f"run {i + 1}: all {a.namespaces} attached {r['attached_s']:.2f} s after they appeared; "
                f"all let go {r['gone_s']:.2f} s after they went; RSS peak (both processes) {r['rss_peak_mib']:.1f} MiB")
            rows.append(r)
    finally:
        bed.remove()
    med = lambda k: statistics.median(r[k] for r in rows)
    worst = lambda k: max(r[k] for r in rows)
    lines = [
        f"# bench/discover: {a.namespaces} namespaces appearing at once ({a.runs} runs)",
        "",
        "| measure | median | slowest | target |",
        "|---|---|---|---|",
        f"| appeared → all attached (exporter reports all, 2 programs each) | {med('attached_s'):.2f} s | "
        f"{worst('attached_s'):.2f} s | ≤ 10 s |",
        f"| went → all let go (programs detached, series removed) | {med('gone_s'):.2f} s | {worst('gone_s'):.2f} s | |",
        f"| RSS peak, attacher + exporter | {med('rss_peak_mib'):.1f} MiB | {worst('rss_peak_mib'):.1f} MiB | ≤ 25 MiB |",
        "",
        f"kernel {os.uname().release}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
