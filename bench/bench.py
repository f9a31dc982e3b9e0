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
  5. startup: a namespace of its own (hgb-t<pid>) holding one end of each of
     31 veth pairs; the exporter with 30 targets (one interface each), run
     as by systemd's Type=notify (NOTIFY_SOCKET read here): exec to READY=1,
     then a 31st target appended and SIGHUP to the READY=1 after RELOADING=1,
     then SIGTERM (exit 0, nothing left attached); and exec to READY=1 with
     1 target. `--phases startup` runs it alone (about half a minute; the
     two-namespace bed and nginx are not set up then).

The exporter runs as two processes (docs/architecture.md): the attacher (the
process started here; it holds the TCX links, so BPF stats come from it) and
the exporter it forks (reads the maps, encodes and serves /metrics). CPU and
RSS are measured for each; the RSS target is judged on the two together.

`bench.py --rerender DIR` rebuilds a run's report from its runs.csv and
extras.json without measuring.

This file is the command line; the work is in harness/: plan.py (addresses,
variants, targets), system.py (processes, /proc, BPF stats, metrics text),
testbed.py (namespaces and the processes under test), measure.py (the runs
and phases), startup.py (the start-up phase), report.py and chart.py (the
results files).
"""
import argparse
import os
import resource
import signal
import sys

from harness.measure import Bench, fill
from harness.plan import PHASES, STARTUP_TARGETS
from harness.startup import tcx_count
from harness.report import rerender
from harness.system import log


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "fill":
        fill(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "tcx-count":
        tcx_count(sys.argv[2:])
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "--rerender":
        rerender(sys.argv[2])
        return 0
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(prog="bench/run", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 description="http-golden-exporter benchmark: see README.md, Benchmarks")
    ap.add_argument("--exporter", required=True, help="exporter binary (bench/run passes it)")
    ap.add_argument("--tcx-noop", required=True,
                    help="what holds bench/noop.bpf.c on TCX: bench/tcx_noop.rs (bench/run passes it)")
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
    ap.add_argument("--fresh-scrapes", type=int, default=10,
                    help="gzip scrapes per format per series level, each the first after a map read (what a "
                         "Prometheus scraping less often than the exporter reads gets)")
    ap.add_argument("--quiet", type=int, default=10,
                    help="seconds without scrapes per series level, for the exporter's own CPU per map read")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"comma-separated subset of {','.join(PHASES)}")
    ap.add_argument("--startup-runs", type=int, default=5,
                    help="startup phase: exporter starts with the many targets (each with a reload), and with 1")
    ap.add_argument("--startup-targets", type=int, default=STARTUP_TARGETS,
                    help="startup phase: targets (one veth end each) to start with; one more is added on reload")
    ap.add_argument("--startup-timeout", type=float, default=300,
                    help="startup phase: seconds to wait for READY=1 (a start or a reload) before giving up")
    ap.add_argument("--exporter-commit", default=None,
                    help="what the report calls the exporter binary when --exporter was not built from "
                         "this checkout (e.g. a commit); unset: this checkout's commit, or the binary's path")
    ap.add_argument("--compare", default=None,
                    help="another exporter binary (e.g. built from main) measured in the same rounds as this one: "
                         "the \"before\" rows of a before/after comparison")
    ap.add_argument("--compare-label", default=None, help="what the report calls the --compare binary (e.g. a commit)")
    ap.add_argument("--routes", type=int, default=0,
                    help="give the exporter under test (not --compare) N route templates: N-1 that the benchmark's "
                         "path \"/\" fails, then \"/*\", so that every request is matched against all N")
    args = ap.parse_args()
    bad = [p for p in args.phases.split(",") if p not in PHASES]
    if bad:
        ap.error(f"unknown phase {','.join(bad)} (there are: {','.join(PHASES)})")
    if args.startup_runs < 1 or not 1 <= args.startup_targets <= 1000:
        ap.error("--startup-runs must be at least 1, --startup-targets 1 to 1000")
    args.bench_dir = here
    args.exporter = os.path.abspath(args.exporter)
    args.tcx_noop = os.path.abspath(args.tcx_noop)
    if args.compare:
        args.compare = os.path.abspath(args.compare)

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
