#!/usr/bin/env bash
# Both engines on the same files of persons, auctions and bids, written by Wire; results
# compared per query. Same as `bench/flink/compare.sh --check`; takes the same flags
# (--check-events N, --queries, --parallelism).

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/compare.sh" --check "$@"
