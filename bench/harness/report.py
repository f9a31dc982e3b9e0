"""The report: medians over the rounds (summarize), the verdicts against the
targets, results.md, summary.csv, runs.csv and extras.json (write_results,
which also draws chart.png), and rerender, which rebuilds the report of an
earlier run from its runs.csv and extras.json.
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess

from .chart import chart
from .plan import ALL_VARIANTS, BPF_VARIANTS, COMPARED, LABELS, SCRAPE_INTERVAL_S, STARTUP_GOALS, TARGETS
from .system import log


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
    for v in ALL_VARIANTS:
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


def environment(exporter=None, label=None):
    """The machine, the tools and the exporter: `label` if given, else this
    checkout's commit if `exporter` is its release build, else the path."""
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
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/harness/ -> repository
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
        "exporter": exporter_name(root, commit, dirty, exporter, label),
    }


def exporter_name(root, commit, dirty, exporter, label):
    if label:
        return label
    own = os.path.join(root, "target", "release", "http-golden-exporter")
    if exporter and os.path.realpath(exporter) != os.path.realpath(own):
        return f"binary {exporter}, not this checkout's build (checkout at {commit})"
    return f"{commit}{' (uncommitted changes in src/ or bpf/)' if dirty else ''}"


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
        if lv.get("scrape_ms_all"):
            # The target is on the 99th percentile; of 20 scrapes, the slowest stands in for it.
            worst = max(lv["scrape_ms_all"])
            rows.append((f"/metrics with {lv['ports']:,} series per map, slowest of {len(lv['scrape_ms_all'])}",
                         f"< {tm:.0f} ms", f"{worst:.1f} ms", verdict(worst < tm), f"{tm - worst:+.1f} ms"))
    st = extras.get("startup")
    if st and st.get("start_s_max") is not None:
        # "At most": judged on the slowest run; the median is shown beside it.
        g, x = STARTUP_GOALS["start_s"], st["start_s_max"]
        rows.append((f"start to READY=1 with {st['targets']} targets (veth), slowest of {st['runs']} runs", f"≤ {g:g} s",
                     f"{x:.2f} s (median {st['start_s_median']:.2f} s)", verdict(x <= g), f"{g - x:+.2f} s"))
    if st and st.get("reload_ms_max") is not None:
        g, x = STARTUP_GOALS["reload_add_ms"], st["reload_ms_max"]
        rows.append((f"reload adding 1 target to {st['targets']} (SIGHUP to READY=1), slowest of {st['runs']} runs",
                     f"≤ {g:g} ms", f"{x:.1f} ms (median {st['reload_ms_median']:.1f} ms)", verdict(x <= g),
                     f"{g - x:+.1f} ms"))
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
          f"- exporter: commit {env['exporter']}, TCX links"
          + (f", scrape_interval {SCRAPE_INTERVAL_S:g}s" if runs or extras.get("idle") or extras.get("series") else ""),
          f"- machine busy before the run (3 s, all CPUs): {fmt(extras.get('background_cpu_pct'), '.1f')} %"]
    if getattr(args, "routes", 0):
        md.append(f"- routes: the exporter under test matches every request against {args.routes} path templates "
                  f"(`--routes {args.routes}`: the path `/` fails {args.routes - 1}, then matches `/*`)")
    if getattr(args, "compare", None):
        md.append(f"- compared with (the \"before\" rows, run in the same rounds): {args.compare_label or args.compare}")
    if runs:
        md += [f"- load: wrk -t{args.threads} -c{args.connections} --latency, keep-alive, 3-byte body; "
               f"{args.rounds} rounds of {args.duration}s per variant, interleaved; BPF cost: {args.rounds} rounds of {args.bpf_duration}s\n"]
    if any(s["rounds"] for s in summary):
        md += ["## Throughput and latency\n",
               "Medians over the rounds. The ratio is the median of per-round ratios to the baseline of the same round. "
               "Host CPU: all CPUs busy (user+system+irq+softirq, /proc/stat) during the run, per request, "
               "and its difference to the same round's baseline. Process CPU and RSS: the exporter process, "
               "the one the attacher forks (exporter rows), or haproxy (HAProxy row), from /proc/PID/stat and "
               "/proc/PID/status; the attacher's own RSS in the last column.\n",
               "| variant | req/s (min–max) | ratio to baseline (min–max) | p50 µs | p99 µs | host CPU busy % | host CPU µs/req (Δ baseline) | process CPU % | RSS MiB | attacher RSS MiB |",
               "|---|---|---|---|---|---|---|---|---|---|"]
    for v in ALL_VARIANTS:
        s = by.get(v)
        if not s or not s["rounds"]:
            continue
        delta = "" if v == "baseline" else f" ({s['cpu_us_per_req_delta']:+.2f})"
        md.append(f"| {LABELS[v]} | {fmt(s['rps'])} ({fmt(s['rps_min'])}–{fmt(s['rps_max'])}) "
                  f"| {fmt(s['ratio'], '.3f')} ({fmt(s['ratio_min'], '.3f')}–{fmt(s['ratio_max'], '.3f')}) "
                  f"| {fmt(s['p50_us'])} | {fmt(s['p99_us'])} | {s['host_cpu_pct']:.1f} | {s['cpu_us_per_req']:.2f}{delta} "
                  f"| {fmt(s['cpu_pct'], '.1f')} | {fmt(s['rss_mib'], '.1f')} | {fmt(s.get('attacher_rss_mib'), '.1f')} |")
    if any(s["bpf_rounds"] for s in summary):
        md += ["\n## BPF cost per program run\n",
               "kernel.bpf_stats_enabled=1 (only in this phase: it adds its own clock reads to every run); "
               "run_time_ns / run_cnt of the programs behind the TCX links, over the wrk window; medians over the rounds. "
               "One run is one packet (skb) on one hook.\n",
               "| variant | ns/run (min–max) | ingress | egress | × no-op | runs per request | ns per request above no-op |",
               "|---|---|---|---|---|---|---|"]
    for v in BPF_VARIANTS + list(COMPARED):
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
    if idle or runs or ser:
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
               f"{ser[0]['scrapes']} sequential scrapes per level over loopback. The map read runs every "
               "scrape_interval whether or not anyone scrapes (the text is written at each scrape, from the last "
               "read): "
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
    st = extras.get("startup")
    if st:
        md += startup_markdown(st)
    md += ["\n## Targets\n", "| target | goal | measured | verdict | margin |", "|---|---|---|---|---|"]
    for t in targets(summary, extras, runs):
        md.append("| " + " | ".join(t) + " |")
    if any(s["rounds"] for s in summary):
        md.append("\n![chart](chart.png)\n")
    else:
        md.append("")
    return "\n".join(md)


def startup_markdown(st):
    n = st["targets"]
    md = ["\n## Start-up and reload\n",
          f"A network namespace of the bench's own holding one end of each of {n + 1} veth pairs (the other ends "
          f"in the host namespace, down); {n} `[[target]]` tables, one interface each, `netns = \"/run/netns/...\"`, "
          "everything else as default (scrape_interval 5 s). The exporter runs as under systemd's Type=notify: "
          "NOTIFY_SOCKET names a datagram socket the bench reads, each message timed as it arrives. "
          "Start: from just before exec to READY=1 (the exporter's first map read done, /metrics served); "
          "'to STATUS=attaching' is the attacher's first message, sent after the parser is loaded and verified and "
          "the exporter forked; attacher CPU is its user + system time at READY=1 (the verifier runs as system time). "
          f"Reload: target {n + 1} appended to the file, SIGHUP, to the READY=1 after RELOADING=1 "
          "(split at the exporter's MONOTONIC_USEC=); STATUS= must say 1 added. Each run ends with SIGTERM, "
          "exit 0 and nothing left attached (TCX: BPF_PROG_QUERY on every interface; bpftool net; tc filter show). "
          f"Runs: {st['runs']}, each followed or preceded (alternately) by a start with 1 target.\n",
          "| measurement | median | min–max | every run |", "|---|---|---|---|"]

    def row(name, rows, get, spec=".3f", unit="s"):
        xs = [x for x in (get(r) for r in st[rows]) if x is not None]
        if xs:
            md.append(f"| {name} | {statistics.median(xs):{spec}} {unit} | {min(xs):{spec}}–{max(xs):{spec}} {unit} "
                      f"| {', '.join(format(x, spec) for x in xs)} |")

    def attaching_to_ready(r):
        return None if r.get("to_attaching_s") is None else r["start_s"] - r["to_attaching_s"]
    row(f"{n} targets: exec to READY=1", "samples", lambda r: r["start_s"])
    row(f"{n} targets: exec to STATUS=attaching", "samples", lambda r: r.get("to_attaching_s"))
    row(f"{n} targets: STATUS=attaching to READY=1", "samples", attaching_to_ready)
    row(f"{n} targets: attacher CPU at READY=1, system", "samples", lambda r: r.get("attacher_sys_s"), spec=".2f")
    row(f"{n} targets: attacher CPU at READY=1, user", "samples", lambda r: r.get("attacher_user_s"), spec=".2f")
    row("1 target: exec to READY=1", "one_target_samples", lambda r: r["start_s"])
    row("1 target: exec to STATUS=attaching", "one_target_samples", lambda r: r.get("to_attaching_s"))
    row("1 target: STATUS=attaching to READY=1", "one_target_samples", attaching_to_ready)
    row("1 target: attacher CPU at READY=1, system", "one_target_samples", lambda r: r.get("attacher_sys_s"), spec=".2f")
    row(f"reload adding target {n + 1}: SIGHUP to READY=1", "samples", lambda r: r.get("reload_ms"), spec=".1f", unit="ms")
    row("reload: SIGHUP to RELOADING=1 (MONOTONIC_USEC)", "samples", lambda r: r.get("reload_sighup_to_reloading_ms"),
        spec=".1f", unit="ms")
    row("reload: RELOADING=1 to READY=1", "samples", lambda r: r.get("reload_reloading_to_ready_ms"), spec=".1f", unit="ms")
    return md


def write_results(args, runs, extras, env=None):
    out = args.out
    os.makedirs(out, exist_ok=True)
    summary = summarize(runs) if runs else []
    if env is None:
        env = environment(getattr(args, "exporter", None), getattr(args, "exporter_commit", None))
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
                   "settings": {k: v for k, v in vars(args).items() if k not in ("exporter", "tcx_noop", "bench_dir", "out")}},
                  f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(args, summary, runs, extras, env))
    if any(s["rounds"] for s in summary):
        chart(summary, runs, env, os.path.join(out, "chart.png"))
    log(f"results in {out}/: results.md, summary.csv, runs.csv, extras.json, chart.png")



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
