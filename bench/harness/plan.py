"""What the benchmark sets up and measures, shared by every other module: the
addresses and ports of the two namespaces, the variants and their labels,
the exporter variants' side and ports, the exporter's scrape interval, the
phases, and the targets the report judges the results against.
"""

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
# With --compare OTHER_BINARY, the other exporter runs beside this one, in the
# same rounds and the same rotation: a before/after that the machine's drift
# from minute to minute cannot bias.
COMPARED = {"before-server": "exporter-server", "before-client": "exporter-client"}
LABELS.update({v: f"before: {LABELS[COMPARED[v]]}" for v in COMPARED})


def variants(compare):
    """The throughput phase's variants: the other exporter's right after this one's."""
    return VARIANTS[:4] + (list(COMPARED) if compare else []) + VARIANTS[4:]


def bpf_variants(compare):
    return BPF_VARIANTS + (list(COMPARED) if compare else [])


# Every variant, in the order the report lists them.
ALL_VARIANTS = variants(True) + ["exporter-parse-only"]
# exporter variants: (side, ports to watch). "parse-only" watches a port no
# traffic uses, so its programs parse every packet's Ethernet/IP/TCP headers
# and check the port, but never read the payload, touch a flow or an
# aggregate map: the difference to "exporter-server" is the cost of following
# the HTTP streams and aggregating.
EXPORTERS = {
    "exporter-server": ("server", None),
    "exporter-client": ("client", None),
    "exporter-parse-only": ("server", [9]),
    "before-server": ("server", None),
    "before-client": ("client", None),
}
SCRAPE_INTERVAL_S = 1.0

# The goals runs are judged against (earlier runs were judged against 0.98 and 2.0; extras.json
# records the targets a run was judged against).
TARGETS = {
    "throughput_ratio": 0.97,
    "bpf_cost_vs_noop": 4.0,
    "rss_mib": 25.0,
    "metrics_10k_ms": 50.0,
}

PHASES = ["throughput", "bpf", "idle", "series", "startup"]
# The start-up phase (startup.py): targets in the config (one veth end each),
# and its goals. Kept apart from TARGETS, which extras.json records
# as it was for runs without this phase (--rerender rewrites those files).
STARTUP_TARGETS = 30
STARTUP_GOALS = {
    "start_s": 3.0,         # exec to READY=1 with STARTUP_TARGETS targets
    "reload_add_ms": 200.0,  # SIGHUP to READY=1, adding one target
}

