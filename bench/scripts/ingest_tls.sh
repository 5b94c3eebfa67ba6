#!/usr/bin/env bash
# Ingest throughput and ack latency with TLS against without, in one run: `wire run` on an
# ingest -> blackhole pipeline, fed by `wire-loadgen` for DURATION, alternating plaintext and
# TLS (`--tls-cert`/`--tls-key`; loadgen `--ca`) ROUNDS times. Prints one line per run and the
# medians with their ratio, and the load average before and after.
#   bench/scripts/ingest_tls.sh [ROUNDS] [DURATION]   (WIRE_PROFILE=release for release builds)

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
duration=${2:-5s}
profile=${WIRE_PROFILE:-debug}
flag=$([ "$profile" = release ] && echo --release || true)
cargo build $flag -q -p wire-control --bin wire
cargo build $flag -q -p wire-loadgen --bin wire-loadgen
wire=target/$profile/wire
loadgen=target/$profile/wire-loadgen
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
"$wire" certs init --dir "$dir/certs" > /dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/p.yaml" <<YAML
name: tlsbench
sources:
  rows:
    type: ingest
    listen: 127.0.0.1:$port
    schema: {sensor: string, value: f64, at: timestamp}
    durability: never
sinks:
  out: {type: blackhole, from: rows}
YAML
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
one() { # one MODE: prints "MODE rows_per_sec ack_p50_us ack_p99_us"
    local mode=$1 tls=() ca=()
    if [ "$mode" = tls ]; then
        tls=(--tls-cert "$dir/certs/node.pem" --tls-key "$dir/certs/node-key.pem")
        ca=(--ca "$dir/certs/ca.pem")
    fi
    rm -rf "$dir/data"
    "$wire" run --no-progress --no-pin --cores 1 --data-dir "$dir/data" "${tls[@]}" "$dir/p.yaml" 2> "$dir/wire.log" &
    local pid=$!
    "$loadgen" "$dir/p.yaml" "${ca[@]}" --connect-wait 10s --duration "$duration" --connections 2 \
        --batch-rows 1024 --json > "$dir/out.json"
    kill -INT $pid; wait $pid || true
    python3 - "$mode" "$dir/out.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
lat = s.get("ack_latency_us", {})
print(sys.argv[1], round(s["achieved_rows_per_s"]), lat.get("p50", "-"), lat.get("p99", "-"))
PY
}
for _ in $(seq "$rounds"); do
    one plain | tee -a "$dir/results"
    one tls | tee -a "$dir/results"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    mode, rate, p50, p99 = line.split()
    runs.setdefault(mode, []).append((int(rate), p50, p99))
med = {m: statistics.median(r[0] for r in v) for m, v in runs.items()}
for m, v in runs.items():
    print(f"{m}: median {med[m]:,.0f} rows/s over {len(v)} runs")
print(f"tls / plain throughput: {med['tls'] / med['plain']:.2f}")
PY
