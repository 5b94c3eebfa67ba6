#!/usr/bin/env bash
# Runs the crash tests (checkpoint_crash, wal_crash) N times in a row (default 20) with a
# CPU burner beside them, and counts the failed runs: the check that their assertions depend on
# what they observe, not on timing (issue 22). Uses the test profile, as CI does. The test
# binaries are copied aside first, so rebuilding the repository during the series changes
# nothing. Logs and the summary go to target/crash-stress/.
#   tests/scripts/crash_stress.sh [RUNS]
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,7p' "$0"; exit 0;; esac
runs="${1:-20}"
cd "$(dirname "$0")/../.."
export TMPDIR="$PWD/target/tmp"
mkdir -p "$TMPDIR"
out="$PWD/target/crash-stress"
rm -rf "$out"; mkdir -p "$out/debug/deps"
bins=$(cargo test -p wire-tests --test checkpoint_crash --test wal_crash --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["test"]: print(m["executable"])')
cargo build -p wire-control --bin wire
cp target/debug/wire "$out/debug/"
for b in $bins; do cp "$b" "$out/debug/deps/"; done
sha256sum /dev/zero & burner=$!
trap 'kill $burner 2>/dev/null' EXIT
failed=0
cd tests
for i in $(seq 1 "$runs"); do
  started=$(date +%s); rc=0
  for b in "$out"/debug/deps/*; do
    "$b" > "$out/$(basename "$b")-$i.log" 2>&1 || rc=1
  done
  [ $rc -ne 0 ] && failed=$((failed+1))
  echo "run $i: $([ $rc -eq 0 ] && echo ok || echo FAILED) in $(( $(date +%s) - started )) s" | tee -a "$out/summary.txt"
done
echo "failed runs: $failed of $runs (commit $(git rev-parse --short HEAD))" | tee -a "$out/summary.txt"
