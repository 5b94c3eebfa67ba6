#!/usr/bin/env python3
"""The Nexmark generator before and after a change, side by side in one run (issue 20).

Builds `wire` and the `micro_nexmark` bench twice in this tree, once as it is and once with
core/src/nexmark.rs taken from BASE (the rest of the tree unchanged, so only the generator
differs), then alternates them: ROUNDS runs of micro_nexmark each (thread CPU time; the best
median per benchmark is kept) and Q0_ROUNDS runs each of examples/nexmark/q0.yaml through
`wire run --cores 1` with 10M events (events per CPU-second, user + sys of the process from
getrusage; median and best). Prints a Markdown table.

  bench/scripts/generator_ab.py [--base REV] [--rounds N] [--q0-rounds N] [--events N]
                                [--old DIR --new DIR]
      (default base 48a1004, the tree before the issue-20 generator work; 3 and 5 rounds;
      --old/--new: directories already holding `wire` and `micro_nexmark`, built as above)
Needs about 20 minutes on 2 cores, mostly building.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GENERATOR = "core/src/nexmark.rs"


def build(into):
    """Builds wire and micro_nexmark (bench profile) and copies both into `into`."""
    os.makedirs(into, exist_ok=True)
    cargo = ["cargo", "--quiet"]
    subprocess.run(cargo + ["build", "--profile", "bench", "-p", "wire-control", "--bin", "wire"],
                   cwd=ROOT, check=True)
    shutil.copy(os.path.join(ROOT, "target/release/wire"), into)
    listing = subprocess.run(
        cargo + ["bench", "-p", "wire-bench", "--bench", "micro_nexmark", "--no-run"],
        cwd=ROOT, check=True, capture_output=True, text=True).stderr
    exe = [l.split("(")[-1].rstrip(")") for l in listing.splitlines() if "Executable" in l]
    shutil.copy(os.path.join(ROOT, exe[-1]), os.path.join(into, "micro_nexmark"))


def micro(binary):
    """{benchmark: median Melem/s} of one micro_nexmark run."""
    out = subprocess.run([binary, "--bench", "--warm-up-time", "1", "--measurement-time", "2",
                          "--noplot"], capture_output=True, text=True, check=True).stdout
    figures, name = {}, None
    for line in out.splitlines():
        if line.startswith("nexmark/"):
            name = line.split()[0]
        elif "thrpt:" in line and name:
            value, unit = line.split("[")[1].split()[2:4]
            figures[name] = float(value) / (1000 if unit.startswith("K") else 1)
            name = None
    return figures


def q0(wire, spec, data, events):
    """Events per CPU-second of one `wire run` of `spec`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([wire, "run", "--no-progress", "--cores", "1", "--data-dir", data, spec],
                   cwd=ROOT, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return events / cpu / 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="48a1004")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--q0-rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--old")
    parser.add_argument("--new")
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    dirs = {"old": args.old, "new": args.new}
    if not (args.old and args.new):
        dirs = {side: os.path.join(work, side) for side in dirs}
        build(dirs["new"])
        current = open(os.path.join(ROOT, GENERATOR)).read()
        try:
            base = subprocess.run(["git", "show", f"{args.base}:{GENERATOR}"], cwd=ROOT,
                                  check=True, capture_output=True, text=True).stdout
            open(os.path.join(ROOT, GENERATOR), "w").write(base)
            build(dirs["old"])
        finally:
            open(os.path.join(ROOT, GENERATOR), "w").write(current)
    text = open(os.path.join(ROOT, "examples/nexmark/q0.yaml")).read()
    text = "\n".join(l.split("events:")[0] + f"events: {args.events}" if "events:" in l else l
                     for l in text.splitlines()) + "\n"
    spec = os.path.join(work, "q0.yaml")
    open(spec, "w").write(text)
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[:3]}", file=sys.stderr)
    best = {"old": {}, "new": {}}
    rates = {"old": [], "new": []}
    for _ in range(args.rounds):
        for side in ("old", "new"):
            for name, value in micro(os.path.join(dirs[side], "micro_nexmark")).items():
                best[side][name] = max(best[side].get(name, 0.0), value)
    for r in range(args.q0_rounds):
        for side in ("old", "new"):
            data = os.path.join(work, f"data-{side}-{r}")
            rates[side].append(q0(os.path.join(dirs[side], "wire"), spec, data, args.events))
            shutil.rmtree(data, ignore_errors=True)
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[:3]}", file=sys.stderr)
    print(f"command: bench/scripts/generator_ab.py --base {args.base} --rounds {args.rounds}"
          f" --q0-rounds {args.q0_rounds} --events {args.events}")
    print("| what | before (M/CPU-s) | after (M/CPU-s) | after / before |")
    print("|---|---|---|---|")
    for name in sorted(best["new"]):
        old, new = best["old"][name], best["new"][name]
        print(f"| micro_nexmark {name} (best median) | {old:.2f} | {new:.2f} | {new / old:.2f} |")
    for label, pick in (("median", statistics.median), ("best", max)):
        old, new = pick(rates["old"]), pick(rates["new"])
        print(f"| q0, 1 core, {label} of {len(rates['old'])} | {old:.2f} | {new:.2f} | {new / old:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
