#!/usr/bin/env python3
"""Latency-vs-throughput table and plot from bench/scripts/latency.sh's results.

Usage: plot_latency.py RESULTS.json OUT.png [SUBTITLE]

RESULTS.json has one JSON object per line: {"level": "saturation N" | "25%" | ..., "summary": <the
`wire-loadgen --json` summary of that run>}. Prints a markdown table to standard output, checks
the target (end-to-end p99 <= 1 ms at 50% of saturation) and writes the PNG. The table needs only
the standard library; the plot needs matplotlib (latency.sh installs it into bench/scripts/.venv).
"""
import json
import statistics
import sys


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us} µs"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, png = sys.argv[1], sys.argv[2]
    subtitle = sys.argv[3] if len(sys.argv) > 3 else ""
    runs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    runs.append(json.loads(line))
                except json.JSONDecodeError as err:
                    sys.exit(f"{path}: line {n}: {err}")
    print("| run | offered rows/s | achieved rows/s | ack p50 | ack p99 | ack p99.9 "
          "| e2e p50 | e2e p99 | e2e p99.9 | e2e max | send lag p99 | credit waits | sink rows read |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        s = run["summary"]
        ack, e2e, e = s["ack_latency_us"], s.get("e2e_latency_us", {}), s.get("e2e", {})
        offered = f"{s['offered_rows_per_s']:,}" if s["offered_rows_per_s"] else "max"
        cells = [run["level"], offered, f"{s['achieved_rows_per_s']:,.0f}",
                 fmt_us(ack["p50"]), fmt_us(ack["p99"]), fmt_us(ack["p99.9"]),
                 fmt_us(e2e.get("p50", 0)), fmt_us(e2e.get("p99", 0)), fmt_us(e2e.get("p99.9", 0)),
                 fmt_us(e2e.get("max", 0)), fmt_us(s.get("send_lag_us", {}).get("p99", 0)),
                 f"{s.get('credit_waits', 0):,}",
                 f"{e.get('rows', 0):,} / {e.get('expected_rows', 0):,}"]
        print("| " + " | ".join(cells) + " |")
    half = [r for r in runs if r["level"] == "50%"]
    if half:
        p99 = half[0]["summary"]["e2e_latency_us"]["p99"]
        verdict = "met" if p99 <= 1000 else "missed"
        print(f"\nTarget: end-to-end p99 <= 1 ms at 50% of saturation: {verdict} (p99 {fmt_us(p99)}).")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_latency.py: matplotlib is missing; run it with bench/scripts/.venv/bin/python")
    levels = [r for r in runs if not r["level"].startswith("saturation")]
    x = [r["summary"]["achieved_rows_per_s"] for r in levels]
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, style in (("ack_latency_us", "--"), ("e2e_latency_us", "-")):
        for q, marker in (("p50", "o"), ("p99", "s"), ("p99.9", "^")):
            y = [r["summary"][kind][q] / 1000 for r in levels]
            label = ("ack " if kind.startswith("ack") else "end-to-end ") + q
            ax.plot(x, y, style, marker=marker, label=label)
    for r, xv in zip(levels, x):
        ax.annotate(r["level"], (xv, 0), textcoords="offset points", xytext=(0, 4),
                    xycoords=("data", "axes fraction"), ha="center", fontsize=8)
    sat = [r["summary"]["achieved_rows_per_s"] for r in runs if r["level"].startswith("saturation")]
    if sat:
        ax.axvline(statistics.median(sat), color="grey", linestyle=":", label="saturation (median)")
    ax.axhline(1.0, color="red", linewidth=0.8, linestyle=":", label="1 ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (rows/s)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title("Wire durable ingest: latency vs throughput" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nplot: {png}")


if __name__ == "__main__":
    main()
