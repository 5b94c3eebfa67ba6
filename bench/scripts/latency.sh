#!/usr/bin/env bash
# Latency against throughput of Wire's durable ingest, end to end (issue 7).
#
# 1. Saturation: `wire run` on examples/latency.yaml (an ingest source with a `sent_at` i64
#    field, durability `interval(10ms)` unless DURABILITY says otherwise, every row written to a
#    `stdout` sink as JSON lines into a FIFO) is driven by `wire-loadgen` at maximum throughput
#    for SAT_DURATION; loadgen reads the FIFO back, so the sink and the reader are part of the
#    work. The median achieved rows/s of SAT_RUNS such runs is the saturation rate.
# 2. Open loop at 25%, 50% and 80% of it (LEVELS), DURATION each, on a fresh `wire run` and data
#    directory each time: loadgen stamps every row with its scheduled send time (unix ns,
#    `--timestamp-field sent_at`) and reads the sink's lines from the FIFO (`--e2e-from`), so it
#    measures acknowledgement latency and end-to-end latency (scheduled send → line read), both
#    from the scheduled time (no coordinated omission).
# 3. Prints a markdown table (offered, achieved, ack p50/p99/p99.9, e2e p50/p99/p99.9), checks the
#    target of issue 7 (end-to-end p99 <= 1 ms at 50% of saturation), and writes a PNG plot with
#    bench/scripts/plot_latency.py (matplotlib, installed from PyPI into bench/scripts/.venv when
#    missing). Results also go to OUT_DIR/latency.json.
#
# Usage: bench/scripts/latency.sh
# Environment (defaults):
#   DATA_DIR      WAL directory, on the disk you want to measure   (./target/latency-data)
#   OUT_DIR       where latency.json and latency.png go             (./target/bench-latency)
#   PNG           the plot's path                                   (OUT_DIR/latency.png)
#   DURABILITY    the source's durability                           (interval(10ms))
#   SAT_DURATION  saturation run time                               (10s)
#   SAT_RUNS      saturation runs, the median is taken               (3)
#   DURATION      run time of each open-loop level                  (10s)
#   LEVELS        fractions of saturation, in percent               ("25 50 80")
#   WIRE_CORES    wire run --cores                                  (1: a CPU stays for loadgen)
#   WIRE_FLAGS    more `wire run` options, e.g. --no-pin            (none)
#   CONNECTIONS   loadgen --connections                             (1)
#   BATCH_ROWS    loadgen --batch-rows                              (1024)
#   WIRE, LOADGEN binaries (default: target/release/{wire,wire-loadgen}, built if missing)

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
data_dir=${DATA_DIR:-$repo/target/latency-data}
out_dir=${OUT_DIR:-$repo/target/bench-latency}
png=${PNG:-$out_dir/latency.png}
durability=${DURABILITY:-interval(10ms)}
sat_duration=${SAT_DURATION:-10s}
sat_runs=${SAT_RUNS:-3}
wire_flags=${WIRE_FLAGS:-}
duration=${DURATION:-10s}
levels=${LEVELS:-25 50 80}
cores=${WIRE_CORES:-1}
connections=${CONNECTIONS:-1}
batch_rows=${BATCH_ROWS:-1024}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
wire=${WIRE:-$target_dir/release/wire}
loadgen=${LOADGEN:-$target_dir/release/wire-loadgen}
if [ ! -x "$wire" ] || [ ! -x "$loadgen" ]; then
  cargo build --release --bin wire --bin wire-loadgen
fi
command -v python3 >/dev/null || { echo "latency.sh: python3 is needed" >&2; exit 1; }

venv=$repo/bench/scripts/.venv
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "latency.sh: installing matplotlib into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet matplotlib
fi

mkdir -p "$data_dir" "$out_dir"
fstype=$(findmnt -n -o FSTYPE -T "$data_dir" 2>/dev/null || echo "?")
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
  echo "latency.sh: $data_dir is on $fstype; the WAL must be on a disk (set DATA_DIR)" >&2
  exit 1
fi
work=$(mktemp -d "$out_dir/work.XXXXXX")
wire_pid=
cleanup() {
  if [ -n "$wire_pid" ]; then kill "$wire_pid" 2>/dev/null || true; fi
  exec 3>&- 2>/dev/null || true
  rm -rf "$work" "$data_dir/latency-run"
}
trap cleanup EXIT

pipeline=$work/latency.yaml
sed -e 's/^\( *listen:\).*/\1 127.0.0.1:0/' -e "s/^\( *durability:\).*/\1 $durability/" \
  examples/latency.yaml > "$pipeline"
fifo=$work/sink.fifo
mkfifo "$fifo"

json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

# run_level NAME OUT LOADGEN-ARGS...: one fresh `wire run` and one loadgen run; the loadgen
# summary (JSON) goes to OUT.
run_level() {
  local name=$1 out=$2
  shift 2
  rm -rf "$data_dir/latency-run"
  # Hold the FIFO open for reading so `wire run`'s redirection does not block; loadgen opens it
  # too and is the only one that reads.
  exec 3<>"$fifo"
  # shellcheck disable=SC2086 # WIRE_FLAGS is a list of options
  "$wire" run --cores "$cores" $wire_flags --no-progress --data-dir "$data_dir/latency-run" "$pipeline" \
    > "$fifo" 2> "$work/wire-$name.log" &
  wire_pid=$!
  local addr=
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/^source `readings` listening on \(.*\)$/\1/p' "$work/wire-$name.log")
    [ -n "$addr" ] && break
    kill -0 "$wire_pid" 2>/dev/null || { cat "$work/wire-$name.log" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "latency.sh: wire did not start listening" >&2; exit 1; }
  echo "$name: wire-loadgen latency.yaml --addr $addr $* --connections $connections --batch-rows $batch_rows --timestamp-field sent_at --e2e-from FIFO --json" >&2
  local status=0
  "$loadgen" "$pipeline" --addr "$addr" "$@" --connections "$connections" \
    --batch-rows "$batch_rows" --timestamp-field sent_at --e2e-from "$fifo" --json > "$out" || status=$?
  kill -INT "$wire_pid"
  exec 3>&-
  wait "$wire_pid" || { echo "latency.sh: wire run failed" >&2; cat "$work/wire-$name.log" >&2; exit 1; }
  wire_pid=
  [ "$status" = 0 ] || { echo "latency.sh: loadgen failed: $(cat "$out")" >&2; exit 1; }
}

results=$out_dir/latency.json
: > "$results.tmp"
sat_rates=()
for run in $(seq 1 "$sat_runs"); do
  run_level "saturation-$run" "$work/summary.json" --duration "$sat_duration"
  echo "{\"level\": \"saturation $run\", \"summary\": $(cat "$work/summary.json")}" >> "$results.tmp"
  sat_rates+=("$(json_get achieved_rows_per_s < "$work/summary.json")")
done
sat_rate=$(python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "${sat_rates[@]}")
echo "saturation: median $sat_rate rows/s of ${sat_rates[*]}" >&2
for level in $levels; do
  rate=$(python3 -c "print(round($sat_rate * $level / 100))")
  run_level "$level%" "$work/summary.json" --rate "$rate" --duration "$duration"
  echo "{\"level\": \"$level%\", \"summary\": $(cat "$work/summary.json")}" >> "$results.tmp"
done
mv "$results.tmp" "$results"

"$venv/bin/python" bench/scripts/plot_latency.py "$results" "$png" \
  "durability $durability, wire --cores $cores${wire_flags:+ $wire_flags}, $connections connection(s), $batch_rows rows/batch"
echo
echo "Durable ingest (\`$durability\`) → stdout sink (jsonl) → FIFO read by wire-loadgen;" \
  "\`wire run --cores $cores${wire_flags:+ $wire_flags}\`, loadgen \`--connections $connections --batch-rows $batch_rows\`," \
  "saturation: median of $sat_runs runs of $sat_duration ($(printf '%.0f ' "${sat_rates[@]}")rows/s), each level $duration. Plot: $png"
