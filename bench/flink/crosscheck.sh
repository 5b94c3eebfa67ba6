#!/usr/bin/env bash
# Both engines on one file of bids written by Wire; results compared per query. Same as
# `bench/flink/compare.sh --check`; takes the same flags (--check-events N, --queries, --parallelism).
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/compare.sh" --check "$@"
