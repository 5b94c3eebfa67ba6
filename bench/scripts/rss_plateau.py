#!/usr/bin/env python3
"""Runs `wire run` on a pipeline and samples its RSS every 20 ms from /proc.

Prints the peak, and the RSS just before the climb that ends at the peak (walking back from
the peak while the samples fall, then one more): for a window that fires at the end of the
input, the state held just before the firing, whose result rows are buffered on top of it
(the input's buffers are freed in between, so the climb starts from a dip). The whole series
is printed too: a sample can land inside the dip, so read it when the figure looks off.

    bench/scripts/rss_plateau.py target/release/wire pipeline.yaml [--cores N]
"""
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    wire, pipeline, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    cmd = [wire, "run", "--no-progress", "--fresh", "--data-dir", "rss-plateau-data", *extra, pipeline]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    series = []
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        series.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
        time.sleep(0.02)
    if child.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited with {child.returncode}")
    peak = max(range(len(series)), key=lambda at: series[at], default=0)
    at = peak
    while at > 0 and series[at - 1] <= series[at]:
        at -= 1
    plateau = series[at - 1] if at > 0 else series[at] if series else 0
    print(f"command: {' '.join(cmd)}")
    print("RSS every 20 ms (MiB): " + " ".join(f"{rss:.0f}" for rss in series))
    print(f"peak RSS {max(series, default=0):.1f} MiB, before the climb to it {plateau:.1f} MiB")


if __name__ == "__main__":
    main()
