#!/usr/bin/env bash
# Peak memory of one `wire run`, split into anonymous and file-backed pages, and its CPU time.
#   bench/scripts/peak_rss.sh BIN PIPELINE.yaml CORES
# Prints VmHWM and the largest RssAnon and RssFile sampled every 5 ms, then the run's user plus
# system CPU time as last sampled. Compare two binaries only as fresh copies of each (`cp` both
# before each run): a binary whose whole file sits in the page cache maps more of its code on
# first touch (fault-around), which moves RssFile by 2-3 MiB on its own.

for arg in "$@"; do # -h, --help: the comment above
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -uo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 BIN PIPELINE.yaml CORES" >&2
    exit 2
fi
bin=$1 pipeline=$2 cores=$3
"$bin" run "$pipeline" --cores "$cores" --no-progress >/dev/null 2>&1 &
pid=$!
anon=0 file=0 hwm=0 ticks=0
while kill -0 "$pid" 2>/dev/null; do
    read -r a f h < <(awk '/RssAnon/{a=$2} /RssFile/{f=$2} /VmHWM/{h=$2} END{print a+0, f+0, h+0}' \
        "/proc/$pid/status" 2>/dev/null || echo "0 0 0")
    [ "${a:-0}" -gt "$anon" ] && anon=$a
    [ "${f:-0}" -gt "$file" ] && file=$f
    [ "${h:-0}" -gt "$hwm" ] && hwm=$h
    # utime + stime (fields 14 and 15; the name field holds no space for `wire`), in ticks.
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    [ "${t:-0}" -gt "$ticks" ] && ticks=$t
    sleep 0.005
done
wait "$pid"
status=$?
hz=$(getconf CLK_TCK)
echo "peak $((hwm / 1024)) MiB (anon <= $((anon / 1024)) MiB, file <= $((file / 1024)) MiB);" \
    "cpu $(awk -v t="$ticks" -v hz="$hz" 'BEGIN{printf "%.2f", t / hz}') s (last sample, up to 5 ms early);" \
    "exit $status"
exit "$status"
