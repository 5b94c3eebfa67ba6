#!/usr/bin/env python3
"""Wire against Apache Flink on the same Nexmark queries: speed (default) or results (--check).

Run through bench/flink/compare.sh, which installs Flink, compiles the Java jobs and builds
Wire, then calls this with WIRE, FLINK_LIB and FLINK_BUILD set. Python standard library only.
"""

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "count"]
# Every query here depends on event time only, so its result does not depend on timing.
# The file-source schema of each Nexmark stream (Wire's nexmark schemas).
SCHEMAS = {
    "bid": "{auction: i64, bidder: i64, price: i64, channel: string, url: string, date_time: timestamp, "
           "extra: string}",
    "auction": "{id: i64, item_name: string, description: string, initial_bid: i64, reserve: i64, "
               "date_time: timestamp, expires: timestamp, seller: i64, category: i64, extra: string}",
    "person": "{id: i64, name: string, email_address: string, credit_card: string, city: string, "
              "state: string, date_time: timestamp, extra: string}",
}
STREAM_NAMES = {"bid": "bid", "bids": "bid", "auction": "auction", "auctions": "auction",
                "person": "person", "persons": "person", "people": "person"}
# Queries whose result is a changelog: compared by the final row per key, (key fields, value field).
FINAL_PER_KEY = {"count": (("auction",), "num"), "q4": (("category",), "avg_final")}
# The Flink flag that names each stream's input file in the cross-check.
FLINK_INPUT_FLAGS = {"bid": "--input", "auction": "--auctions", "person": "--persons"}


def pipeline_text(query):
    """The shipped pipeline of a query: examples/nexmark/<q>.yaml, or the keyed count here."""
    if query == "count":
        path = os.path.join(HERE, "pipelines", "count.yaml")
    else:
        path = os.path.join(ROOT, "examples", "nexmark", query + ".yaml")
    with open(path) as f:
        return f.read()


def split_sections(text):
    """Top-level sections of a pipeline file, as {key: [lines]}, in order."""
    sections, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and not line.startswith("#"):
            current = line.split(":", 1)[0]
            sections[current] = [line]
        elif current is not None:
            sections[current].append(line)
    return sections


def entry_values(section_lines, key):
    """(name, value) of every entry of a section (`sources:`, `sinks:`) that sets `key`, in the
    block form the shipped pipelines use (`  name:` then `    key: value`)."""
    entries, name = [], None
    for line in section_lines[1:]:
        if re.match(r"^  \w", line):
            name = line.strip().rstrip(":")
        m = re.match(r"^\s+%s:\s*(\S+)" % key, line)
        if m and name:
            entries.append((name, m.group(1)))
    return entries


def sink_inputs(sink_lines):
    """(name, from) of every sink in a `sinks:` section."""
    return entry_values(sink_lines, "from")


def bench_pipeline(query, events):
    """The shipped pipeline with `events:` set and every sink replaced by a blackhole."""
    sections = split_sections(pipeline_text(query))
    sources = [re.sub(r"^(\s+)events:.*$", r"\g<1>events: %d" % events, l)
               for l in sections["sources"]]
    sinks = ["sinks:"] + ["  %s: {type: blackhole, from: %s}" % s for s in sink_inputs(sections["sinks"])]
    parts = [sections["name"], sources, sections.get("operators", []), sections.get("settings", []), sinks]
    return "\n".join(line for part in parts for line in part) + "\n"


def source_streams(source_lines):
    """(name, stream) of every nexmark source in a `sources:` section, stream as bid/auction/person."""
    sources = []
    for name, stream in entry_values(source_lines, "stream"):
        if stream not in STREAM_NAMES:
            sys.exit("source %s: unknown nexmark stream %s" % (name, stream))
        sources.append((name, STREAM_NAMES[stream]))
    return sources


def query_streams(query):
    """The Nexmark streams (bid, auction, person) a query's pipeline reads."""
    return [stream for _, stream in source_streams(split_sections(pipeline_text(query))["sources"])]


def check_pipeline(query, inputs, output_dir):
    """The shipped pipeline reading each stream from its jsonl file (`inputs`: stream -> path),
    and writing jsonl files."""
    sections = split_sections(pipeline_text(query))
    sources = ["sources:"]
    for name, stream in source_streams(sections["sources"]):
        sources += ["  %s:" % name, "    type: file", "    path: %s" % inputs[stream],
                    "    format: jsonl", "    schema: %s" % SCHEMAS[stream], "    event_time: date_time",
                    "    watermark: {max_out_of_orderness: 4s}"]
    (_, source), = sink_inputs(sections["sinks"])
    sinks = ["sinks:", "  out:", "    type: file", "    path: %s" % output_dir,
             "    format: jsonl", "    roll_bytes: 64GiB", "    from: %s" % source]
    parts = [sections["name"], sources, sections.get("operators", []), sections.get("settings", []), sinks]
    return "\n".join(line for part in parts for line in part) + "\n"


def read_time_file(path):
    """User, system, elapsed seconds and max RSS (KiB) from `/usr/bin/time -v -o`."""
    figures = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().rpartition(": ")
            if key == "User time (seconds)":
                figures["user_s"] = float(value)
            elif key == "System time (seconds)":
                figures["sys_s"] = float(value)
            elif key.startswith("Elapsed (wall clock) time"):
                seconds = 0.0
                for part in value.split(":"):
                    seconds = seconds * 60 + float(part)
                figures["wall_s"] = seconds
            elif key == "Maximum resident set size (kbytes)":
                figures["maxrss_kb"] = int(value)
    return figures


def human_to_number(text):
    text = text.strip()
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


def parse_wire_summary(stderr):
    figures = {}
    for line in stderr.splitlines():
        line = line.strip()
        m = re.match(r"^(\d+) events in ([\d.]+) s: (\S+) events/s", line)
        if m:
            figures["events"] = int(m.group(1))
            figures["run_s"] = float(m.group(2))
            figures["summary_eps"] = human_to_number(m.group(3))
        m = re.match(r"^first batch after ([\d.]+) ms", line)
        if m:
            figures["startup_ms"] = float(m.group(1))
        m = re.match(r"^peak memory \(RSS\) ([\d.]+) (\w+)", line)
        if m:
            unit = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(m.group(2), 1)
            figures["summary_rss_mib"] = float(m.group(1)) * unit
    return figures


def run_timed(cmd, cwd, label, log_dir):
    time_file = os.path.join(log_dir, label + ".time")
    start = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", time_file] + cmd, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.time() - start
    with open(os.path.join(log_dir, label + ".log"), "w") as f:
        f.write("$ %s\n--- stdout\n%s\n--- stderr\n%s" % (" ".join(cmd), proc.stdout[-20000:], proc.stderr[-20000:]))
    if proc.returncode != 0:
        sys.exit("%s failed (exit %d), see %s.log:\n%s" % (label, proc.returncode,
                                                          os.path.join(log_dir, label), proc.stderr[-3000:]))
    figures = read_time_file(time_file)
    figures.setdefault("wall_s", elapsed)
    return proc, figures


def run_wire(args, pipeline_file, cores, label, data_dir, events=None):
    """One `wire run`. The rates are per `events` when given: the summary's count adds up the
    event numbers of every source, so a query with two sources (q3, q4, q8) reports twice the
    generator's range, where Flink's figures count the range once."""
    cmd = [args.wire, "run", "--no-progress", "--cores", str(cores), "--data-dir", data_dir, pipeline_file]
    proc, figures = run_timed(cmd, args.out, label, args.logs)
    figures.update(parse_wire_summary(proc.stderr))
    if "events" not in figures:
        sys.exit("%s: no summary line found in wire's stderr:\n%s" % (label, proc.stderr[-3000:]))
    if events is None:
        events = figures["events"]
    cpu = figures["user_s"] + figures["sys_s"]
    return {
        "eps": events / figures["run_s"],
        "eps_wall": events / figures["wall_s"],
        "eps_cpu": events / cpu,
        "eps_cpu_job": events / cpu,
        "rss_mib": figures["maxrss_kb"] / 1024,
        "startup_ms": figures.get("startup_ms", float("nan")),
        "wall_s": figures["wall_s"],
        "cpu_s": cpu,
    }


def flink_cmd(args, query, parallelism, reuse, extra):
    cmd = ["java", "-Xmx" + args.xmx, "-Dlog4j.configurationFile=" + os.path.join(HERE, "log4j2.properties"),
           "-cp", args.flink_build + ":" + os.path.join(args.flink_lib, "*"), "wirebench.Jobs",
           "--query", query, "--parallelism", str(parallelism), "--seed", "1"] + extra
    if reuse:
        cmd.append("--object-reuse")
    return cmd


def parse_flink_result(stdout):
    for line in stdout.splitlines():
        if line.startswith("FLINK_RESULT "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    return None


def run_flink(args, query, parallelism, reuse, label):
    cmd = flink_cmd(args, query, parallelism, reuse, ["--events", str(args.events)])
    proc, figures = run_timed(cmd, args.out, label, args.logs)
    result = parse_flink_result(proc.stdout)
    if result is None:
        sys.exit("%s: no FLINK_RESULT line:\n%s" % (label, proc.stderr[-3000:]))
    events = int(result["events"])
    cpu = figures["user_s"] + figures["sys_s"]
    return {
        "eps": events / (int(result["net_runtime_ms"]) / 1000),
        "eps_wall": events / figures["wall_s"],
        "eps_cpu": events / cpu,
        "eps_cpu_job": events / (int(result["job_cpu_ms"]) / 1000),
        "rss_mib": figures["maxrss_kb"] / 1024,
        "startup_ms": float(result["startup_ms"]),
        "wall_s": figures["wall_s"],
        "cpu_s": cpu,
    }


def fmt_rate(v):
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e3:
        return "%.0fk" % (v / 1e3)
    return "%.0f" % v


def fmt_ms(ms):
    return "%.0f ms" % ms if ms < 10000 else "%.1f s" % (ms / 1000)


def speed(args):
    os.makedirs(args.logs, exist_ok=True)
    pipelines = os.path.join(args.out, "pipelines")
    os.makedirs(pipelines, exist_ok=True)
    data_dir = os.path.join(args.out, "wire-data")
    engines = [("Wire", None), ("Flink", False), ("Flink+reuse", True)]
    # The shared generator's own cost, in Java without Flink: a floor under Flink's cost per event.
    gen = subprocess.run(flink_cmd(args, "q0", 1, False, ["--generator-only", "--events", str(args.events)]),
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    rounds = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in gen.splitlines()
              if line.startswith("GENERATOR ")]
    args.generator_eps_cpu = max(float(r["events_per_cpu_s"]) for r in rounds)
    print("  Java generator alone (no Flink), best of 3 rounds: %s events/CPU-s" % fmt_rate(args.generator_eps_cpu),
          file=sys.stderr, flush=True)
    with open(os.path.join(args.out, "generator.json"), "w") as f:
        json.dump({"events_per_cpu_s": args.generator_eps_cpu, "rounds": rounds}, f)
    raw = []
    raw_path = os.path.join(args.out, "speed.jsonl")
    open(raw_path, "w").close()
    started = time.time()
    for query in args.queries:
        with open(os.path.join(pipelines, query + ".yaml"), "w") as f:
            f.write(bench_pipeline(query, args.events))
    # Repetitions outermost, so that an interrupted run still has every query.
    for rep in range(args.reps):
        for query in args.queries:
            path = os.path.join(pipelines, query + ".yaml")
            for p in args.parallelism:
                for engine, reuse in engines:
                    label = "%s-p%d-%s-%d" % (query, p, engine.replace("+", "-"), rep)
                    if reuse is None:
                        r = run_wire(args, path, p, label, data_dir, args.events)
                    else:
                        r = run_flink(args, query, p, reuse, label)
                    r.update(query=query, parallelism=p, engine=engine, rep=rep, events=args.events)
                    raw.append(r)
                    with open(raw_path, "a") as f:
                        f.write(json.dumps(r) + "\n")
                    print("  %-6s p%d rep %d %-12s %9s ev/s  %9s ev/CPU-s  RSS %6.0f MiB  (%.0f s elapsed)" % (
                        query, p, rep, engine, fmt_rate(r["eps"]), fmt_rate(r["eps_cpu_job"]),
                        r["rss_mib"], time.time() - started), file=sys.stderr, flush=True)
    table = speed_table(args, raw)
    print_table(args, table)


def print_table(args, table):
    print(table)
    with open(os.path.join(args.out, "speed.md"), "w") as f:
        f.write(table)


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def speed_table(args, raw):
    lines = []
    out = lines.append
    out("Nexmark, Wire vs Flink 2.3.0 (MiniCluster, JVM -Xmx%s), %s events per run, median of %d run(s); "
        "command: `%s`" % (args.xmx, fmt_rate(args.events), args.reps, args.command))
    if getattr(args, "generator_eps_cpu", None):
        out("")
        out("The bid generator alone, the Java port without Flink on one thread (`Jobs --generator-only`), "
            "runs at %s events/CPU-s; both engines pay for generating the events inside their figures."
            % fmt_rate(args.generator_eps_cpu))
    out("")
    out("| query | p | engine | events/s | events/s (wall) | events/CPU-s | Wire ÷ this, events/CPU-s | "
        "Wire ÷ this, events/s | peak RSS | startup | targets |")
    out("|---|---|---|---|---|---|---|---|---|---|---|")
    for query in args.queries:
        for p in args.parallelism:
            groups = {e: [r for r in raw if r["query"] == query and r["parallelism"] == p and r["engine"] == e]
                      for e in ("Wire", "Flink", "Flink+reuse")}
            if not all(groups.values()):
                continue
            wire = {k: median(groups["Wire"], k) for k in ("eps", "eps_wall", "eps_cpu", "rss_mib", "startup_ms")}
            out("| %s | %d | Wire | %s | %s | %s | | | %.0f MiB | %s | |" % (
                query, p, fmt_rate(wire["eps"]), fmt_rate(wire["eps_wall"]), fmt_rate(wire["eps_cpu"]),
                wire["rss_mib"], fmt_ms(wire["startup_ms"])))
            for engine, cpu_target in (("Flink", 10), ("Flink+reuse", 4)):
                rows = groups[engine]
                f = {k: median(rows, k) for k in ("eps", "eps_wall", "eps_cpu", "eps_cpu_job", "rss_mib", "startup_ms")}
                cpu_ratio_job = wire["eps_cpu"] / f["eps_cpu_job"]
                cpu_ratio_proc = wire["eps_cpu"] / f["eps_cpu"]
                rss_ratio = f["rss_mib"] / wire["rss_mib"]
                marks = ["CPU ≥%d×: %s" % (cpu_target, "yes" if cpu_ratio_job >= cpu_target else "**no**")]
                if engine == "Flink":
                    marks.append("RSS ≤1/20: %s" % ("yes" if rss_ratio >= 20 else "**no**"))
                name = "Flink (defaults)" if engine == "Flink" else "Flink (object reuse)"
                out("| %s | %d | %s | %s (net) | %s | %s in job, %s process | %.1f× in job, %.1f× process | "
                    "%.1f× net, %.1f× wall | %.0f MiB (%.1f× Wire) | %s | %s |" % (
                        query, p, name, fmt_rate(f["eps"]), fmt_rate(f["eps_wall"]), fmt_rate(f["eps_cpu_job"]),
                        fmt_rate(f["eps_cpu"]), cpu_ratio_job, cpu_ratio_proc, wire["eps"] / f["eps"],
                        wire["eps_wall"] / f["eps_wall"], f["rss_mib"], rss_ratio, fmt_ms(f["startup_ms"]),
                        "; ".join(marks)))
    out("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- cross-check

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@functools.lru_cache(maxsize=1 << 16)
def timestamp_ms(v):
    dt = datetime.strptime(v.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z" if "." in v else "%Y-%m-%dT%H:%M:%S%z")
    return int(round(dt.astimezone(timezone.utc).timestamp() * 1000))


def norm_value(v):
    if isinstance(v, str) and TIMESTAMP.match(v):
        return ("ts", timestamp_ms(v))
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("num", repr(float(v)) if isinstance(v, float) else str(v))
    return ("str", v)


def read_lines(directory):
    lines = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith(".inprogress"):
            continue
        with open(os.path.join(directory, name)) as f:
            lines.extend(line for line in f if line.strip())
    return lines


def read_rows(directory):
    rows = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith(".inprogress"):
            continue
        with open(os.path.join(directory, name)) as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
    return rows


def row_key(row):
    return tuple(sorted((k, norm_value(v)) for k, v in row.items()))


def show(key):
    return "{" + ", ".join("%s: %s" % (k, v[1]) for k, v in key) + "}"


def compare_multisets(wire_lines, flink_lines):
    """Rows as multisets: identical lines match at once; the rest are matched after normalising."""
    w, f = Counter(wire_lines), Counter(flink_lines)
    only_w, only_f = w - f, f - w
    identical = sum((w & f).values())
    del w, f
    nw = Counter(row_key(json.loads(line)) for line in only_w.elements())
    nf = Counter(row_key(json.loads(line)) for line in only_f.elements())
    only_w, only_f = nw - nf, nf - nw
    detail = []
    for what, diff in (("only in Wire", only_w), ("only in Flink", only_f)):
        for key in sorted(diff)[:3]:
            detail.append("    %s (×%d): %s" % (what, diff[key], show(key)))
    summary = "%d rows vs %d rows, %d identical lines" % (len(wire_lines), len(flink_lines), identical)
    if sum(nw.values()):
        summary += ", %d equal after normalising" % sum((nw & nf).values())
    return not only_w and not only_f, summary, detail


def final_values(rows, keys, value):
    """The latest value per key, in file order: Wire's changelog (+I/+U set it, -D deletes it,
    -U is followed by its +U), or Flink's running results (one subtask per key, so its part file
    holds each key's results in order)."""
    final = {}
    for r in rows:
        key = tuple(r[k] for k in keys)
        op = r.get("op")
        if op == "-U":
            continue
        if op == "-D":
            final.pop(key, None)
            continue
        final[key] = r[value]
    return final


def compare_final(wire_rows, flink_rows, keys, value):
    w, f = final_values(wire_rows, keys, value), final_values(flink_rows, keys, value)
    detail = []
    bad = [k for k in sorted(set(w) | set(f)) if w.get(k) != f.get(k)]
    for k in bad[:5]:
        detail.append("    %s %s: Wire %s, Flink %s" % ("/".join(keys), "/".join(map(str, k)), w.get(k), f.get(k)))
    summary = "%d keys vs %d keys" % (len(w), len(f))
    if value == "num":
        summary += ", %d bids counted vs %d" % (sum(w.values()), sum(f.values()))
    return not bad, summary, detail


def check(args):
    os.makedirs(args.logs, exist_ok=True)
    work = os.path.join(args.out, "check")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data_dir = os.path.join(work, "wire-data")
    # 1. One input file per stream the queries read, written by Wire's own nexmark source.
    streams = [st for st in ("bid", "auction", "person") if any(st in query_streams(q) for q in args.queries)]
    gen_yaml = os.path.join(work, "generate.yaml")
    with open(gen_yaml, "w") as f:
        f.write("name: generate\nsources:\n")
        for st in streams:
            f.write("  %ss: {type: nexmark, stream: %s, events: %d, seed: 1}\n" % (st, st, args.check_events))
        f.write("sinks:\n")
        for st in streams:
            f.write("  %s_out: {type: file, path: %s, format: jsonl, roll_bytes: 64GiB, from: %ss}\n"
                    % (st, os.path.join(work, "input", st), st))
    run_wire(args, gen_yaml, 1, "check-generate", data_dir)
    inputs = {}
    same = True
    for st in streams:
        parts = [n for n in os.listdir(os.path.join(work, "input", st)) if n.endswith(".jsonl")]
        if len(parts) != 1:
            sys.exit("expected one %s input part file, found %s" % (st, parts))
        inputs[st] = os.path.join(work, "input", st, parts[0])
        with open(inputs[st]) as f:
            rows = sum(1 for _ in f)
        print("input: %s (%d %ss of %d events, written by Wire's nexmark source)"
              % (inputs[st], rows, st, args.check_events))
        # The Java port of the generator must give the very same events.
        dump = subprocess.run(flink_cmd(args, "q0", 1, False, ["--dump", st, "--events", str(args.check_events)]),
                              stdout=subprocess.PIPE, text=True)
        with open(inputs[st]) as f:
            identical = dump.returncode == 0 and dump.stdout == f.read()
        print("generator port (Java) vs Wire's file, %ss: %s" % (st, "identical" if identical else "DIFFERENT"))
        same = same and identical
    results = []
    for query in args.queries:
        flink_inputs = []
        for st in query_streams(query):
            flink_inputs += [FLINK_INPUT_FLAGS[st], inputs[st]]
        for p in args.parallelism:
            wire_out = os.path.join(work, "%s-p%d-wire" % (query, p))
            flink_out = os.path.join(work, "%s-p%d-flink" % (query, p))
            yaml_path = os.path.join(work, "%s.yaml" % query)
            with open(yaml_path, "w") as f:
                f.write(check_pipeline(query, inputs, wire_out))
            run_wire(args, yaml_path, p, "check-%s-p%d-wire" % (query, p), data_dir)
            run_timed(flink_cmd(args, query, p, False, flink_inputs + ["--output", flink_out]),
                      args.out, "check-%s-p%d-flink" % (query, p), args.logs)
            if query in FINAL_PER_KEY:
                keys, value = FINAL_PER_KEY[query]
                ok, summary, detail = compare_final(read_rows(wire_out), read_rows(flink_out), keys, value)
            else:
                ok, summary, detail = compare_multisets(read_lines(wire_out), read_lines(flink_out))
            results.append(ok)
            print("%-6s p%d: %s (%s)" % (query, p, "agree" if ok else "DISAGREE", summary), flush=True)
            for line in detail:
                print(line)
    print("cross-check: %d of %d agree" % (sum(results), len(results)))
    return all(results) and same


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=int(float(os.environ.get("EVENTS", "10e6"))))
    parser.add_argument("--reps", type=int, default=int(os.environ.get("REPS", "3")))
    parser.add_argument("--queries", default=os.environ.get("QUERIES", ",".join(QUERIES)))
    parser.add_argument("--parallelism", default=os.environ.get("PARALLELISM", "1,2"))
    parser.add_argument("--xmx", default=os.environ.get("XMX", "2g"))
    parser.add_argument("--out", default=os.environ.get("OUT", os.path.join(HERE, "out")))
    parser.add_argument("--check", action="store_true", help="cross-check results instead of speed")
    parser.add_argument("--check-events", type=int, default=int(float(os.environ.get("CHECK_EVENTS", "1e6"))))
    parser.add_argument("--command", default="bench/flink/compare.sh")
    parser.add_argument("--table-from", help="print the table of an earlier (or interrupted) run's speed.jsonl")
    args = parser.parse_args()
    args.queries = [q for q in re.split(r"[,\s]+", args.queries) if q]
    args.parallelism = [int(p) for p in re.split(r"[,\s]+", args.parallelism) if p]
    args.out = os.path.abspath(args.out)
    args.logs = os.path.join(args.out, "logs")
    args.wire = os.environ.get("WIRE")
    args.flink_lib = os.environ.get("FLINK_LIB")
    args.flink_build = os.environ.get("FLINK_BUILD")
    os.makedirs(args.out, exist_ok=True)
    if args.check:
        sys.exit(0 if check(args) else 1)
    if args.table_from:
        with open(args.table_from) as f:
            raw = [json.loads(line) for line in f if line.strip()]
        args.reps = max(r["rep"] for r in raw) + 1
        args.events = raw[0]["events"]
        generator = os.path.join(os.path.dirname(os.path.abspath(args.table_from)), "generator.json")
        if os.path.exists(generator):
            with open(generator) as f:
                args.generator_eps_cpu = json.load(f)["events_per_cpu_s"]
        print_table(args, speed_table(args, raw))
        return
    speed(args)


if __name__ == "__main__":
    main()
