#!/usr/bin/env bash
# Runs exchange-heavy pipelines at 2 cores, four at a time (so threads get descheduled), and
# counts runs that fail or hang (killed after 40 s). Used to check the scheduler fix of
# docs/adr/0004-core-scheduling.md.
#   bench/scripts/exchange_stress.sh [ROUNDS]      (WIRE=path/to/wire to test another build)

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -uo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-12}
wire=${WIRE:-target/release/wire}
[ -x "$wire" ] || cargo build --release --bin wire
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source="bids: {type: nexmark, stream: bid, events: 10M, seed: 1}"
cat > "$dir/key_by.yaml" <<YAML
sources: {$source}
operators: [{name: k, from: bids, key_by: auction}]
sinks: {out: {type: blackhole, from: k}}
YAML
cat > "$dir/tumbling.yaml" <<YAML
sources: {$source}
operators:
  - {name: c, from: bids, group_by: [auction], window: {type: tumbling, size: 10s}, aggregate: {n: count(*)}}
sinks: {out: {type: blackhole, from: c}}
YAML
sed -e 's/events: 1M /events: 10M /' -e 's/type: file/type: blackhole/' -e '/path: /d' -e '/format: jsonl/d' \
  examples/nexmark/q5.yaml > "$dir/q5.yaml"
sed -e 's/events: 500k/events: 2M/' -e 's/type: file/type: blackhole/' -e '/path: /d' -e '/format: jsonl/d' \
  examples/late.yaml > "$dir/late.yaml"
failures=0
for round in $(seq 1 "$rounds"); do
  pids=()
  for pipeline in key_by tumbling q5 late; do
    timeout 40 "$wire" run --cores 2 --no-progress --data-dir "$dir/data-$pipeline" "$dir/$pipeline.yaml" \
      >/dev/null 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || { echo "round $round: a run failed or hung (exit $?)"; failures=$((failures + 1)); }
  done
done
echo "$((rounds * 4)) runs, $failures failed or hung"
[ "$failures" -eq 0 ]
