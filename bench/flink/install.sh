#!/usr/bin/env bash
# Installs Apache Flink 2.3.0 (the jars of the PyPI package apache-flink-libraries) into a venv,
# unless it is there already, and prints the directory of Flink's jars (its lib dir).
#   bench/flink/install.sh            # venv in bench/flink/.venv
#   FLINK_VENV=/opt/flink bench/flink/install.sh
# Maven Central is not needed: the jobs compile with plain javac against "$LIB/*".

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${FLINK_VENV:-$here/.venv}"
version=2.3.0
python="${PYTHON:-python3}"

find_lib() {
    local lib
    for lib in "$venv"/lib/python3*/site-packages/pyflink/lib; do
        if [ -f "$lib/flink-dist-$version.jar" ]; then
            echo "$lib"
            return 0
        fi
    done
    return 1
}

if ! lib="$(find_lib)"; then
    if [ ! -x "$venv/bin/pip" ]; then
        echo "install.sh: creating venv $venv" >&2
        "$python" -m venv "$venv"
    fi
    echo "install.sh: pip install apache-flink==$version apache-flink-libraries==$version (about 330 MB)" >&2
    # --no-deps keeps apache-beam, pandas and friends out: only the jars are used.
    "$venv/bin/pip" install --quiet --no-deps "apache-flink==$version" "apache-flink-libraries==$version" >&2
    lib="$(find_lib)" || { echo "install.sh: flink-dist-$version.jar not found under $venv" >&2; exit 1; }
fi
echo "$lib"
