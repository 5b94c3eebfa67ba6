#!/usr/bin/env bash
# Machine limits, and Wire's durable ingest as a fraction of them (issue 7).
#
# Measures, on this machine:
#   disk      sequential write bandwidth with fdatasync: DISK_MIB MiB written in 1 MiB blocks of
#             random bytes to a file in the data directory, one fdatasync at the end, timed
#             from open to the end of the fdatasync;
#   memory    memcpy bandwidth: a 256 MiB buffer copied repeatedly for about 2 s (bytes copied
#             per second; the memory traffic is twice that, one read and one write);
#   latency   one O_DIRECT write of 4 KiB and of 64 KiB (2000 each, p50 and p99), the floor
#             of an ingest ack, since the WAL writes with O_DIRECT whatever the durability;
#   loopback  TCP bandwidth over 127.0.0.1: a sender writes 1 MiB chunks for about 3 s to a
#             receiver in a forked process (bytes received per second);
# with a small C program compiled here with `gcc -O2`. Then it runs `wire run` on an ingest
# pipeline whose only sink is a blackhole (so the WAL is the work) with durability
# `interval(10ms)` and `always`, drives it with `wire-loadgen` at maximum throughput for
# DURATION, and prints a markdown table: ingest MB/s (batch bytes acknowledged; WAL bytes on
# disk alongside) and rows/s, as a fraction of the disk bandwidth and of loopback TCP bandwidth,
# with the commands used. The target of issue 7 is durable ingest >= 50% of the disk bandwidth.
#
# Usage: bench/scripts/machine_limits.sh
# Environment (defaults):
#   DATA_DIR     directory on the disk to test and to hold the WALs   (./target/machine-limits)
#                must not be a tmpfs: the script refuses one
#   DISK_MIB     MiB written by the disk test                         (1024)
#   DURATION     loadgen run time per durability mode                 (10s)
#   WIRE_CORES   wire run --cores                                     (2)
#   CONNECTIONS  loadgen --connections                                (2: one per core)
#   WIRE_FLAGS   more `wire run` options, e.g. --no-pin               (none)
#   BATCH_ROWS   loadgen --batch-rows                                 (1024)
#   WIRE, LOADGEN  binaries to use (default: target/release/{wire,wire-loadgen}, built if missing)

for arg in "$@"; do # -h, --help: the comment above, before anything is built or measured
    case "$arg" in -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
done
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
data_dir=${DATA_DIR:-$repo/target/machine-limits}
disk_mib=${DISK_MIB:-1024}
duration=${DURATION:-10s}
cores=${WIRE_CORES:-2}
connections=${CONNECTIONS:-2}
wire_flags=${WIRE_FLAGS:-}
batch_rows=${BATCH_ROWS:-1024}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
wire=${WIRE:-$target_dir/release/wire}
loadgen=${LOADGEN:-$target_dir/release/wire-loadgen}
if [ ! -x "$wire" ] || [ ! -x "$loadgen" ]; then
  cargo build --release --bin wire --bin wire-loadgen
fi
command -v gcc >/dev/null || { echo "machine_limits.sh: gcc is needed (apt-get install gcc)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "machine_limits.sh: python3 is needed" >&2; exit 1; }

mkdir -p "$data_dir"
fstype=$(findmnt -n -o FSTYPE -T "$data_dir" 2>/dev/null || df -T "$data_dir" | awk 'NR==2 {print $2}')
device=$(findmnt -n -o SOURCE -T "$data_dir" 2>/dev/null || echo "?")
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
  echo "machine_limits.sh: $data_dir is on $fstype, not a disk; set DATA_DIR to a directory on a disk" >&2
  exit 1
fi
work=$(mktemp -d "$data_dir/work.XXXXXX")
wire_pid=
cleanup() {
  if [ -n "$wire_pid" ]; then kill "$wire_pid" 2>/dev/null || true; fi
  rm -rf "$work" "$data_dir/disk-test.bin" "$data_dir/wal-test"
}
trap cleanup EXIT

cat > "$work/limits.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) { perror(what); exit(1); }

/* Sequential write of `mib` MiB in 1 MiB blocks, then fdatasync; prints MB/s (10^6 bytes). */
static int disk(const char *path, long mib) {
  size_t block = 1 << 20;
  unsigned char *buf = malloc(block);
  if (!buf) die("malloc");
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < block; i += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; memcpy(buf + i, &x, 8); }
  double start = now();
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die(path);
  for (long i = 0; i < mib; i++) {
    buf[0] = (unsigned char)i; /* every block differs */
    size_t done = 0;
    while (done < block) {
      ssize_t n = write(fd, buf + done, block - done);
      if (n < 0) die("write");
      done += (size_t)n;
    }
  }
  if (fdatasync(fd) != 0) die("fdatasync");
  double secs = now() - start;
  close(fd);
  unlink(path);
  printf("%.1f\n", mib * (double)block / secs / 1e6);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* `count` sequential O_DIRECT writes of `kib` KiB (as Wire's WAL issues them); prints the
   p50 and p99 latency of one write in microseconds. */
static int direct(const char *path, long count, long kib) {
  size_t len = (size_t)kib << 10;
  void *buf;
  if (posix_memalign(&buf, 4096, len) != 0) die("posix_memalign");
  memset(buf, 5, len);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) die(path);
  double *lat = malloc(sizeof(double) * (size_t)count);
  if (!lat) die("malloc");
  for (long i = 0; i < count; i++) {
    double start = now();
    if (write(fd, buf, len) != (ssize_t)len) die("write O_DIRECT");
    lat[i] = (now() - start) * 1e6;
  }
  close(fd);
  unlink(path);
  qsort(lat, (size_t)count, sizeof(double), cmp_double);
  printf("%.0f %.0f\n", lat[count / 2], lat[count * 99 / 100]);
  return 0;
}

/* memcpy of a 256 MiB buffer for about 2 s; prints bytes copied per second in MB/s. */
static int mem(void) {
  size_t len = 256u << 20;
  unsigned char *a = malloc(len), *b = malloc(len);
  if (!a || !b) die("malloc");
  memset(a, 1, len);
  memset(b, 2, len);
  memcpy(b, a, len); /* warm up, fault the pages in */
  double start = now(), secs;
  long rounds = 0;
  do {
    memcpy(rounds % 2 ? a : b, rounds % 2 ? b : a, len);
    rounds++;
    secs = now() - start;
  } while (secs < 2.0);
  printf("%.1f\n", rounds * (double)len / secs / 1e6);
  return a[len / 2] + b[len / 3] == 255 ? 1 : 0; /* keep the copies observable */
}

/* Loopback TCP: a forked receiver counts bytes for about 3 s of sending; prints MB/s. */
static int tcp(void) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
  socklen_t alen = sizeof addr;
  if (getsockname(listener, (struct sockaddr *)&addr, &alen) != 0) die("getsockname");
  if (listen(listener, 1) != 0) die("listen");
  int pipefd[2];
  if (pipe(pipefd) != 0) die("pipe");
  size_t chunk = 1 << 20;
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    int conn = accept(listener, NULL, NULL);
    if (conn < 0) die("accept");
    unsigned char *buf = malloc(chunk);
    double start = 0;
    uint64_t total = 0;
    for (;;) {
      ssize_t n = read(conn, buf, chunk);
      if (n < 0) die("read");
      if (n == 0) break;
      if (total == 0) start = now();
      total += (uint64_t)n;
    }
    double mbps = total / (now() - start) / 1e6;
    if (write(pipefd[1], &mbps, sizeof mbps) != sizeof mbps) die("write pipe");
    _exit(0);
  }
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  if (sock < 0) die("socket");
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
  unsigned char *buf = malloc(chunk);
  memset(buf, 7, chunk);
  double start = now();
  while (now() - start < 3.0) {
    size_t done = 0;
    while (done < chunk) {
      ssize_t n = write(sock, buf + done, chunk - done);
      if (n < 0) die("send");
      done += (size_t)n;
    }
  }
  close(sock);
  double mbps;
  if (read(pipefd[0], &mbps, sizeof mbps) != sizeof mbps) die("read pipe");
  waitpid(child, NULL, 0);
  printf("%.1f\n", mbps);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "disk")) return disk(argv[2], atol(argv[3]));
  if (argc >= 5 && !strcmp(argv[1], "direct")) return direct(argv[2], atol(argv[3]), atol(argv[4]));
  if (argc >= 2 && !strcmp(argv[1], "mem")) return mem();
  if (argc >= 2 && !strcmp(argv[1], "tcp")) return tcp();
  fprintf(stderr, "usage: limits disk PATH MIB | direct PATH COUNT KIB | mem | tcp\n");
  return 2;
}
C
gcc -O2 -o "$work/limits" "$work/limits.c"

echo "measuring disk ($disk_mib MiB + fdatasync on $data_dir, $fstype on $device) ..." >&2
disk_mbs=$("$work/limits" disk "$data_dir/disk-test.bin" "$disk_mib")
echo "measuring O_DIRECT write latency ..." >&2
direct4=$("$work/limits" direct "$data_dir/disk-test.bin" 2000 4)
direct64=$("$work/limits" direct "$data_dir/disk-test.bin" 2000 64)
read -r direct4_p50 direct4_p99 <<< "$direct4"
read -r direct64_p50 direct64_p99 <<< "$direct64"
echo "measuring memcpy ..." >&2
mem_mbs=$("$work/limits" mem)
echo "measuring loopback TCP ..." >&2
tcp_mbs=$("$work/limits" tcp)

# field: python3 one-liner reading one key path of a JSON object on stdin.
json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

rows_table=()
for durability in "interval(10ms)" "always"; do
  pipeline=$work/wal.yaml
  cat > "$pipeline" <<YAML
name: wal
sources:
  readings:
    type: ingest
    listen: 127.0.0.1:0
    schema: {sensor: string, value: f64, at: timestamp}
    durability: $durability
sinks:
  out: {type: blackhole, from: readings}
YAML
  rm -rf "$data_dir/wal-test"
  # shellcheck disable=SC2086 # WIRE_FLAGS is a list of options
  "$wire" run --cores "$cores" $wire_flags --no-progress --data-dir "$data_dir/wal-test" "$pipeline" \
    > /dev/null 2> "$work/wire.log" &
  wire_pid=$!
  addr=
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/^source `readings` listening on \(.*\)$/\1/p' "$work/wire.log")
    [ -n "$addr" ] && break
    kill -0 "$wire_pid" 2>/dev/null || { cat "$work/wire.log" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "machine_limits.sh: wire did not start listening" >&2; cat "$work/wire.log" >&2; exit 1; }
  cmd="wire-loadgen wal.yaml --addr $addr --duration $duration --connections $connections --batch-rows $batch_rows --json"
  echo "durability $durability: $cmd" >&2
  summary=$("$loadgen" "$pipeline" --addr "$addr" --duration "$duration" --connections "$connections" \
    --batch-rows "$batch_rows" --json)
  kill -INT "$wire_pid"
  wait "$wire_pid" || { echo "machine_limits.sh: wire run failed" >&2; cat "$work/wire.log" >&2; exit 1; }
  wire_pid=
  errors=$(echo "$summary" | json_get errors)
  [ "$errors" = "[]" ] || { echo "machine_limits.sh: loadgen errors: $errors" >&2; exit 1; }
  secs=$(echo "$summary" | json_get seconds)
  rows_s=$(echo "$summary" | json_get achieved_rows_per_s)
  mb_s=$(echo "$summary" | json_get achieved_mb_per_s)
  wal_bytes=$(du -sb "$data_dir/wal-test" | cut -f1)
  wal_mb_s=$(python3 -c "print(f'{$wal_bytes / $secs / 1e6:.1f}')")
  ack_p99=$(echo "$summary" | json_get ack_latency_us.p99)
  rows_table+=("$durability|$rows_s|$mb_s|$wal_mb_s|$ack_p99")
done

python3 - "$disk_mbs" "$mem_mbs" "$tcp_mbs" "$fstype" "$device" "$disk_mib" "$cores${wire_flags:+ $wire_flags}" "$connections" \
  "$batch_rows" "$duration" "$direct4_p50/$direct4_p99/$direct64_p50/$direct64_p99" "${rows_table[@]}" <<'PY'
import sys
disk, mem, tcp = (float(x) for x in sys.argv[1:4])
fstype, device, disk_mib, cores, conns, batch, duration, direct = sys.argv[4:12]
d4_50, d4_99, d64_50, d64_99 = direct.split("/")
print(f"machine: {open('/proc/cpuinfo').read().count('processor')} CPU(s); data dir on {device} ({fstype})")
print()
print("| limit | MB/s | how |")
print("|---|---:|---|")
print(f"| disk sequential write + fdatasync | {disk:.0f} | {disk_mib} MiB in 1 MiB write(2)s, one fdatasync, C |")
print(f"| memcpy | {mem:.0f} | 256 MiB buffer, bytes copied per second, C -O2 |")
print(f"| loopback TCP | {tcp:.0f} | 1 MiB writes to 127.0.0.1 for 3 s, C |")
print()
print("| O_DIRECT write latency (one sequential write, as the WAL issues them) | p50 | p99 |")
print("|---|---:|---:|")
print(f"| 4 KiB | {d4_50} µs | {d4_99} µs |")
print(f"| 64 KiB | {d64_50} µs | {d64_99} µs |")
print()
print(f"Wire durable ingest: `wire run --cores {cores}` on an ingest → blackhole pipeline, "
      f"`wire-loadgen --duration {duration} --connections {conns} --batch-rows {batch}` at max throughput")
print()
print("| durability | rows/s | ingest MB/s | WAL MB/s on disk | ingest / disk | WAL / disk | ingest / loopback TCP | ack p99 | target ≥ 50% of disk |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for row in sys.argv[12:]:
    durability, rows_s, mb_s, wal_mb_s, p99 = row.split("|")
    rows_s, mb_s, wal_mb_s, p99 = float(rows_s), float(mb_s), float(wal_mb_s), int(p99)
    ok = "met" if mb_s >= 0.5 * disk else "missed"
    p99_text = f"{p99 / 1000:.1f} ms" if p99 >= 10000 else f"{p99} µs"
    print(f"| `{durability}` | {rows_s:,.0f} | {mb_s:.1f} | {wal_mb_s:.1f} | {mb_s / disk:.1%} | "
          f"{wal_mb_s / disk:.1%} | {mb_s / tcp:.1%} | {p99_text} | {ok} |")
print()
print("ingest MB/s counts the encoded batches acknowledged (what crossed the socket); WAL MB/s is the")
print("size of the WAL directory after the run over the same time. Commands, per durability:")
print()
print("```sh")
print(f"wire run --cores {cores} --no-progress --data-dir DATA_DIR/wal-test wal.yaml > /dev/null   # wal.yaml: see the script")
print(f"wire-loadgen wal.yaml --addr ADDR --duration {duration} --connections {conns} --batch-rows {batch} --json")
print("```")
PY
