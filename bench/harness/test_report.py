"""The verdicts of report.targets(), at each goal's edge: a figure on the goal
is met where the goal says "at most" or "at least", missed where it says
"under"; a figure one step past it is missed. Run by tests/bench_report.rs:

    /usr/bin/python3 -m unittest bench.harness.test_report
"""
import unittest

from .plan import STARTUP_GOALS, TARGETS
from .report import summarize, targets


def verdicts(summary=(), extras=None, runs=()):
    """{row name: (goal, verdict)} of the report's targets table."""
    rows = targets(list(summary), extras or {}, list(runs))
    return {name: (goal, verdict) for name, goal, _value, verdict, _margin in rows}


def only(table, prefix):
    """The one row whose name starts with `prefix`."""
    found = [v for name, v in table.items() if name.startswith(prefix)]
    assert len(found) == 1, (prefix, table)
    return found[0]


MET, MISSED = "**met**", "**missed**"


class Throughput(unittest.TestCase):
    def rows(self, ratio):
        summary = [{"variant": "exporter-server", "ratio": ratio}, {"variant": "exporter-client", "ratio": 1.0}]
        return only(verdicts(summary), "throughput ratio, exporter, server side")

    def test_at_least_the_goal_is_met(self):
        t = TARGETS["throughput_ratio"]
        self.assertEqual(self.rows(t), (f"≥ {t}", MET))
        self.assertEqual(self.rows(1.0)[1], MET)

    def test_below_the_goal_is_missed(self):
        self.assertEqual(self.rows(TARGETS["throughput_ratio"] - 0.001)[1], MISSED)

    def test_the_ratio_is_the_median_of_the_rounds_against_the_same_rounds_baseline(self):
        runs = [{"phase": "throughput", "round": r, "variant": v, "rps": rps, "p50_us": 1, "p99_us": 1,
                 "host_cpu_pct": 1, "cpu_us_per_req": 1}
                for r, (base, exp) in enumerate([(100, 99), (200, 100), (100, 96)])
                for v, rps in (("baseline", base), ("exporter-server", exp))]
        s = {x["variant"]: x for x in summarize(runs)}
        self.assertAlmostEqual(s["exporter-server"]["ratio"], 0.96)  # of 0.99, 0.5, 0.96


class BpfCost(unittest.TestCase):
    def row(self, ns):
        summary = [{"variant": "noop", "bpf_ns": 40.0},
                   {"variant": "exporter-server", "bpf_ns": ns, "bpf_vs_noop": ns / 40.0}]
        return only(verdicts(summary), "BPF ns/run vs no-op, exporter, server side")[1]

    def test_at_most_the_goal_is_met_and_beyond_it_missed(self):
        t = TARGETS["bpf_cost_vs_noop"]
        self.assertEqual(self.row(40.0 * t), MET)
        self.assertEqual(self.row(40.0 * t + 0.1), MISSED)


class Memory(unittest.TestCase):
    def test_idle_and_under_load_are_judged_on_the_highest_peak_of_both_processes(self):
        t = TARGETS["rss_mib"]
        extras = {"idle": {"hwm_mib": 5.0, "attacher_hwm_mib": 5.0}}
        summary = [{"variant": "exporter-server", "both_hwm_mib": t}]
        self.assertEqual(only(verdicts(summary, extras), "RSS idle and under load")[1], MET)
        summary = [{"variant": "exporter-server", "both_hwm_mib": t + 0.1}]
        self.assertEqual(only(verdicts(summary, extras), "RSS idle and under load")[1], MISSED)
        extras = {"idle": {"hwm_mib": t / 2, "attacher_hwm_mib": t / 2 + 0.1}}
        self.assertEqual(only(verdicts((), extras), "RSS idle and under load")[1], MISSED, "idle alone")

    def test_with_series_both_peaks_are_summed(self):
        t = TARGETS["rss_mib"]
        level = {"ports": 10000, "samples": 1, "scrape_ms_median": 1.0, "hwm_mib": t - 1, "attacher_hwm_mib": 1.0}
        self.assertEqual(only(verdicts(extras={"series": [level]}), "RSS with 10,000 series")[1], MET)
        level["attacher_hwm_mib"] = 1.1
        self.assertEqual(only(verdicts(extras={"series": [level]}), "RSS with 10,000 series")[1], MISSED)


class Metrics(unittest.TestCase):
    def level(self, median, slowest):
        return {"ports": 10000, "samples": 1, "hwm_mib": 1.0, "scrape_ms_median": median,
                "scrape_ms_all": [median, slowest]}

    def test_under_the_goal_is_met_and_on_it_missed(self):
        t = TARGETS["metrics_10k_ms"]
        table = verdicts(extras={"series": [self.level(t - 0.1, t - 0.1)]})
        self.assertEqual(only(table, "/metrics with 10,000 series per map (")[1], MET)
        self.assertEqual(only(table, "/metrics with 10,000 series per map, slowest")[1], MET)
        table = verdicts(extras={"series": [self.level(t - 0.1, t)]})
        self.assertEqual(only(table, "/metrics with 10,000 series per map, slowest")[1], MISSED, "the slowest, on it")


class StartupAndReload(unittest.TestCase):
    def startup(self, start_max, reload_max):
        return {"startup": {"targets": 30, "runs": 5, "start_s_max": start_max, "start_s_median": 0.1,
                            "reload_ms_max": reload_max, "reload_ms_median": 0.1}}

    def test_judged_on_the_slowest_run_at_most_the_goal(self):
        s, r = STARTUP_GOALS["start_s"], STARTUP_GOALS["reload_add_ms"]
        table = verdicts(extras=self.startup(s, r))
        self.assertEqual(only(table, "start to READY=1")[1], MET)
        self.assertEqual(only(table, "reload adding 1 target")[1], MET)
        table = verdicts(extras=self.startup(s + 0.01, r + 0.1))
        self.assertEqual(only(table, "start to READY=1")[1], MISSED)
        self.assertEqual(only(table, "reload adding 1 target")[1], MISSED)


class Count(unittest.TestCase):
    def test_every_run_must_be_exact(self):
        exact = [{"exporter_count": 5, "nginx_count": 5}] * 3
        self.assertEqual(only(verdicts(runs=exact), "request count")[1], MET)
        off = exact + [{"exporter_count": 6, "nginx_count": 5}]
        self.assertEqual(only(verdicts(runs=off), "request count")[1], MISSED)


if __name__ == "__main__":
    unittest.main()
