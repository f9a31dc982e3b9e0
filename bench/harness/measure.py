"""The measurement: Bench runs the variants (wrk against nginx, with nothing,
the no-op program, the exporter or HAProxy in place) and the phases
(throughput, BPF cost, idle, series; start-up and reload, from startup.py),
collects one row per run and hands the rows to the report. Also wrk's output parser and `fill`, the one-request-per-
port helper that bench.py runs inside the client namespace.
"""
import concurrent.futures
import datetime
import os
import re
import socket
import statistics
import time

from .plan import COMPARED, EXPORTERS, SCRAPE_INTERVAL_S, FILL_BASE_PORT, HAPROXY_PORT, NGINX_PORT, SERVER_V4, bpf_variants, variants
from .report import write_results
from .startup import StartupPhase
from .system import (Usage, exporter_usage, host_cpu_seconds, http_get, log, metric_sum, netns_cmd,
                     parse_metrics, proc_cpu_seconds, proc_mem_kib, proc_minor_faults, proc_pss_mib, run, sysctl_bpf_stats,
                     tcx_prog_stats, usage_row)
from .testbed import Testbed


# ---------------------------------------------------------------- the bench

class Bench(StartupPhase, Testbed):
    """The runs and the phases, on the test bed it inherits."""

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
                binary = self.a.compare if variant in COMPARED else self.a.exporter
                watched = bpf_holder = self.start_exporter(side, ports, binary)
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
        vs = variants(self.a.compare)
        log(f"phase 1: throughput, {self.a.rounds} rounds x {len(vs)} variants x {self.a.duration}s")
        self.wrk(NGINX_PORT, 3)  # warm-up, not recorded
        for r in range(self.a.rounds):
            k = r % len(vs)
            for v in vs[k:] + vs[:k]:
                self.one(v, "throughput", r + 1, self.a.duration)

    def phase_bpf(self):
        sysctl_bpf_stats(1)
        vs = bpf_variants(self.a.compare)
        log(f"phase 2: BPF cost (kernel.bpf_stats_enabled=1), {self.a.rounds} rounds x {len(vs)} x {self.a.bpf_duration}s")
        for r in range(self.a.rounds):
            k = r % len(vs)
            for v in vs[k:] + vs[:k]:
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
                    out = run(*netns_cmd(self.cli_ns, "/usr/bin/python3", os.path.join(self.a.bench_dir, "bench.py"), "fill",
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
        cpu0, faults0 = proc_cpu_seconds(p.exporter_pid), proc_minor_faults(p.exporter_pid)
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
        faults_per_scrape = (proc_minor_faults(p.exporter_pid) - faults0) / self.a.scrapes
        scrape_wall_s = time.monotonic() - t0
        # The same number of scrapes as Prometheus makes them (Accept-Encoding: gzip).
        gz_times = []
        for _ in range(self.a.scrapes):
            o = run("curl", "-s", "--compressed", "-o", "/dev/null", "-w", "%{time_total} %{http_code}",
                    self.metrics_url()).split()
            if o[1] != "200":
                raise RuntimeError(f"/metrics (gzip) answered {o[1]}")
            gz_times.append(float(o[0]) * 1e3)
        cpu_per_scrape_ms = scrape_cpu_s / self.a.scrapes * 1e3
        # The map reads that ran meanwhile, at the unscraped rate, are not the scrapes' doing.
        cpu_per_scrape_net_ms = (scrape_cpu_s - q["cpu_pct"] / 100 * scrape_wall_s) / self.a.scrapes * 1e3
        mem = proc_mem_kib(p.exporter_pid)
        att = proc_mem_kib(p.pid)
        formats = self.scrape_formats(p.exporter_pid)
        fresh = self.fresh_gzip("text", "text/plain;version=0.0.4")
        r = {
            "ports": ports, "ports_answered": answered,
            "series_requests": series.get("requests"), "series_latency": series.get("latency"),
            "series_dropped": dropped, "map_read_ms": read_s * 1e3,
            "samples": len(parse_metrics(http_get(self.metrics_url()))), "bytes": size,
            "scrape_ms_median": statistics.median(times), "scrape_ms_max": max(times),
            "scrape_ms_min": min(times), "ttfb_ms_median": statistics.median(ttfb),
            "scrape_ms_all": [round(x, 2) for x in times],
            "scrape_ms_p99": p99(times), "gzip_scrape_ms_median": statistics.median(gz_times),
            "gzip_scrape_ms_p99": p99(gz_times), "gzip_scrape_ms_all": [round(x, 2) for x in gz_times],
            "cpu_ms_per_scrape": cpu_per_scrape_ms, "cpu_ms_per_scrape_net": cpu_per_scrape_net_ms,
            "minor_faults_per_scrape": faults_per_scrape,
            "scrape_window_s": scrape_wall_s,
            "rss_mib": mem["VmRSS"] / 1024, "hwm_mib": mem["VmHWM"] / 1024,
            "attacher_rss_mib": att["VmRSS"] / 1024, "attacher_hwm_mib": att["VmHWM"] / 1024,
            "anon_mib": mem["RssAnon"] / 1024, "file_mib": mem["RssFile"] / 1024, "threads": mem["Threads"],
            "attacher_anon_mib": att["RssAnon"] / 1024, "attacher_file_mib": att["RssFile"] / 1024,
            "pss_mib": proc_pss_mib(p.exporter_pid), "attacher_pss_mib": proc_pss_mib(p.pid),
            "quiet_s": self.a.quiet, "quiet_reads": reads1 - reads0,
            "quiet_cpu_ms_per_s": q["cpu_pct"] * 10, "quiet_rss_mib": q["rss_mib"],
            "scrapes": self.a.scrapes, **fresh,
            # Measured after the figures above (VmHWM only grows): the peak after every format.
            "formats": formats, "hwm_after_formats_mib": proc_mem_kib(p.exporter_pid)["VmHWM"] / 1024,
        }
        log(f"{ports} ports: series {series}, dropped {dropped:.0f}, {r['samples']} samples, {size} bytes, "
            f"scrape median {r['scrape_ms_median']:.1f} ms (p99 {r['scrape_ms_p99']:.1f}), gzip median "
            f"{r['gzip_scrape_ms_median']:.1f} ms (p99 {r['gzip_scrape_ms_p99']:.1f}), map read {r['map_read_ms']:.1f} ms, "
            f"RSS {r['rss_mib']:.1f} MiB (peak {r['hwm_mib']:.1f}), attacher {r['attacher_rss_mib']:.1f} MiB "
            f"(peak {r['attacher_hwm_mib']:.1f}); anon + file: exporter {r['anon_mib']:.1f} + {r['file_mib']:.1f} "
            f"({r['threads']} threads), attacher {r['attacher_anon_mib']:.1f} + {r['attacher_file_mib']:.1f}; "
            f"unscraped CPU {r['quiet_cpu_ms_per_s']:.1f} ms/s")
        if fresh:
            log(f"{ports} ports, text: gzip scrape after a map read, median {fresh['fresh_gzip_ms_median']:.1f} ms "
                f"(slowest {fresh['fresh_gzip_ms_max']:.1f})")
        for name, f in formats.items():
            log(f"{ports} ports, {name}: {f['bytes']} bytes, scrape median {f['scrape_ms_median']:.1f} ms "
                f"(p99 {f['scrape_ms_p99']:.1f}), gzip median {f['gzip_scrape_ms_median']:.1f} ms "
                f"(p99 {f['gzip_scrape_ms_p99']:.1f}); after a map read, gzip median "
                f"{f.get('fresh_gzip_ms_median', float('nan')):.1f} ms (slowest {f.get('fresh_gzip_ms_max', float('nan')):.1f}); "
                f"exporter peak RSS after them {f['hwm_after_mib']:.1f} MiB")
        return r

    def fresh_gzip(self, name, accept):
        """gzip scrapes each the first after a map read. The timed scrapes share map reads, and only
        the first gzip scrape after a read deflates its HTTP families (text, OpenMetrics): a
        Prometheus scraping every 15 s gets that one only."""
        fresh = []
        for _ in range(self.a.fresh_scrapes):
            time.sleep(SCRAPE_INTERVAL_S + 0.1)
            o = run("curl", "-s", "--compressed", "-H", f"Accept: {accept}", "-o", "/dev/null", "-w",
                    "%{time_total} %{http_code}", self.metrics_url()).split()
            if o[1] != "200":
                raise RuntimeError(f"/metrics as {name} (gzip) answered {o[1]}")
            fresh.append(float(o[0]) * 1e3)
        if not fresh:
            return {}
        return {"fresh_gzip_ms_all": [round(x, 2) for x in fresh], "fresh_gzip_ms_median": statistics.median(fresh),
                "fresh_gzip_ms_max": max(fresh)}

    def scrape_formats(self, exporter_pid):
        """/metrics in the two negotiated formats other than the classic text
        (README, "Formats"), each as many times as the text, plain and gzipped."""
        out = {}
        for name, accept in (("protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                                          "encoding=delimited"),
                             ("openmetrics", "application/openmetrics-text;version=1.0.0")):
            f = {}
            for key, extra in (("", []), ("gzip_", ["--compressed"])):
                times = []
                cpu0, faults0 = proc_cpu_seconds(exporter_pid), proc_minor_faults(exporter_pid)
                for _ in range(self.a.scrapes):
                    o = run("curl", "-s", *extra, "-H", f"Accept: {accept}", "-o", "/dev/null", "-w",
                            "%{time_total} %{size_download} %{http_code} %{content_type}", self.metrics_url()).split()
                    if o[2] != "200" or not o[3].startswith(accept.split(";")[0]):
                        raise RuntimeError(f"/metrics as {name} answered {o[2]} {o[3:]}")
                    times.append(float(o[0]) * 1e3)
                    f[f"{key}bytes"] = int(o[1])
                # Map reads run meanwhile too (about one per scrape_interval): not net of them.
                f[f"{key}cpu_ms_per_scrape"] = (proc_cpu_seconds(exporter_pid) - cpu0) / self.a.scrapes * 1e3
                f[f"{key}minor_faults_per_scrape"] = (proc_minor_faults(exporter_pid) - faults0) / self.a.scrapes
                f[f"{key}scrape_ms_median"] = statistics.median(times)
                f[f"{key}scrape_ms_p99"] = p99(times)
            f.update(self.fresh_gzip(name, accept))
            # VmHWM only grows: the peak of everything scraped so far, this format last.
            f["hwm_after_mib"] = proc_mem_kib(exporter_pid)["VmHWM"] / 1024
            out[name] = f
        return out

    def go(self):
        phases = self.a.phases.split(",")
        self.remove_stale()
        self.sysctl_orig = sysctl_bpf_stats()
        if any(p != "startup" for p in phases):  # the start-up phase makes its own
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
        for phase in phases:
            {"throughput": self.phase_throughput, "bpf": self.phase_bpf,
             "idle": self.phase_idle, "series": self.phase_series,
             "startup": self.phase_startup}[phase]()
        self.extras["elapsed_s"] = time.monotonic() - t0
        self.extras["started"] = started.strftime("%Y-%m-%d %H:%M UTC")
        write_results(self.a, self.runs, self.extras)


def p99(xs):
    """The 99th percentile (linear interpolation; the largest value below 100 samples)."""
    return statistics.quantiles(xs, n=100, method="inclusive")[98] if len(xs) >= 2 else xs[0]


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

