#!/usr/bin/env python3
"""What growing a file costs a durable 4 KiB append on this filesystem.

O_DIRECT 4 KiB writes, each followed by fdatasync, into a new file (appending), into a
posix_fallocate()d file, and into a pre-zeroed file; two rounds, p50 and p99 in microseconds.
Run it from a directory on the disk under test:

    cd target/tmp && python3 ../../bench/scripts/append_prealloc.py
"""
import mmap
import os
import time

SAMPLES = 2000
BLOCK = 4096


def measure(name, prepare):
    path = f"append_prealloc_{name}.bin"
    if os.path.exists(path):
        os.remove(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    block = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
    block.write(b"x" * BLOCK)
    try:
        prepare(fd)
        micros = []
        for i in range(SAMPLES):
            started = time.perf_counter()
            os.pwrite(fd, block, i * BLOCK)
            os.fdatasync(fd)
            micros.append((time.perf_counter() - started) * 1e6)
    finally:
        os.close(fd)
        os.remove(path)
    micros.sort()
    return micros[SAMPLES // 2], micros[int(SAMPLES * 0.99)]


def appending(fd):
    pass


def fallocated(fd):
    os.posix_fallocate(fd, 0, SAMPLES * BLOCK)


def pre_zeroed(fd):
    zeros = mmap.mmap(-1, 1 << 20)
    for i in range(SAMPLES * BLOCK // (1 << 20) + 1):
        os.pwrite(fd, zeros, i * (1 << 20))
    os.fdatasync(fd)


print("command: python3 bench/scripts/append_prealloc.py (from a directory on the disk under test)")
for _ in range(2):
    for name, prepare in [("append", appending), ("fallocate", fallocated), ("prezeroed", pre_zeroed)]:
        p50, p99 = measure(name, prepare)
        print(f"{name:10} p50 {p50:6.0f} us  p99 {p99:6.0f} us")
