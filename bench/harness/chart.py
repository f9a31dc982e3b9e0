"""chart.png: throughput with the ratio to the baseline, p50/p99 latency, and
the BPF cost per program run against the no-op program; matplotlib is
imported only when a chart is drawn.
"""
from .plan import BPF_VARIANTS, COMPARED, TARGETS


def chart(summary, runs, env, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {"baseline": "baseline", "noop": "no-op\ntc prog", "exporter-server": "exporter\nserver side",
             "exporter-client": "exporter\nclient side", "haproxy": "HAProxy\nL7 proxy",
             "exporter-parse-only": "exporter,\nheaders only", "before-server": "before:\nserver side",
             "before-client": "before:\nclient side"}
    colors = {"baseline": "#7f7f7f", "noop": "#bcbd22", "exporter-server": "#1f77b4",
              "exporter-client": "#17becf", "haproxy": "#d62728", "exporter-parse-only": "#9467bd",
              "before-server": "#aec7e8", "before-client": "#9edae5"}
    tp = [s for s in summary if s["rounds"]]
    bs = [s for s in summary if s.get("bpf_rounds") and s["variant"] in BPF_VARIANTS + list(COMPARED)]
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

