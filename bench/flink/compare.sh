#!/usr/bin/env bash
# Wire vs Apache Flink 2.3.0 on Nexmark q0, q1, q2, q3, q4, q5, q7, q8, q11 and a keyed count.
#
#   bench/flink/compare.sh                 # speed: every query at parallelism 1 and 2, 3 runs each
#   bench/flink/compare.sh --events 2000000 --reps 1 --queries q0,q5 --parallelism 1
#   bench/flink/compare.sh --check         # cross-check: both engines on the same files of events, results compared
#
# Flags (or environment variables): --events N (EVENTS, default 10M), --reps R (REPS, 3),
# --queries LIST (QUERIES), --parallelism LIST (PARALLELISM, "1,2"), --xmx SIZE (XMX, JVM heap
# cap, default 2g), --out DIR (OUT, default bench/flink/out), --check-events N (CHECK_EVENTS, 1M).
# WIRE=/path/to/wire uses that binary; otherwise `cargo build --release --bin wire` runs at the
# repository root. FLINK_VENV picks the venv Flink is installed into (default bench/flink/.venv).
# Then bench/scripts/machine_limits.sh measures the machine's limits beside Wire (LIMITS=0 skips).

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in java javac python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }
done

# Flink from PyPI (only when missing).
FLINK_LIB="$("$here/install.sh")"
export FLINK_LIB

# The Java jobs, compiled with plain javac against Flink's jars (only when a source changed).
FLINK_BUILD="$here/build"
export FLINK_BUILD
stamp="$FLINK_BUILD/.stamp"
if [ ! -f "$stamp" ] || [ -n "$(find "$here/src" -name '*.java' -newer "$stamp")" ]; then
    echo "compare.sh: compiling the Flink jobs" >&2
    rm -rf "$FLINK_BUILD"
    mkdir -p "$FLINK_BUILD"
    javac -nowarn -d "$FLINK_BUILD" -cp "$FLINK_LIB/*" "$here"/src/wirebench/*.java
    touch "$stamp"
fi

# Wire.
if [ -z "${WIRE:-}" ]; then
    echo "compare.sh: building wire (cargo build --release --bin wire)" >&2
    (cd "$root" && cargo build --release --bin wire)
    WIRE="${CARGO_TARGET_DIR:-$root/target}/release/wire"
fi
WIRE="$(cd "$(dirname "$WIRE")" && pwd)/$(basename "$WIRE")"
export WIRE
echo "compare.sh: wire $("$WIRE" --version 2>&1 | head -1) at $WIRE; java $(java -version 2>&1 | head -1)" >&2

python3 "$here/compare.py" --command "bench/flink/compare.sh $*" "$@"

# The machine's limits in the same run (disk with fdatasync, memcpy, loopback TCP, and Wire's
# durable ingest as a fraction of them); LIMITS=0 skips them. Not for --check or --table-from.
case " $* " in *" --check "*|*" --table-from "*) exit 0 ;; esac
if [ "${LIMITS:-1}" = 1 ]; then
    echo
    echo "compare.sh: the machine's limits in the same run (LIMITS=0 skips)" >&2
    WIRE="$WIRE" "$root/bench/scripts/machine_limits.sh"
fi
