#!/usr/bin/env python3
"""Run-queue waits of Wire's and loadgen's threads, to tell a descheduled core from slow work.

Every 20 ms, for every process whose name starts with `wire` or `loadgen`, reads each thread's
/proc/PID/task/TID/schedstat (field 2: nanoseconds spent runnable but not running) and prints
each 20 ms window in which a thread waited more than 1 ms. Runs for SECONDS (first argument).
The sampler costs CPU itself, so it lowers the throughput it observes.

    python3 bench/scripts/runqueue_waits.py 40 > waits.log &
    SAT_RUNS=1 LEVELS=50 bench/scripts/latency.sh
"""
import glob
import sys
import time

last = {}
end = time.time() + float(sys.argv[1])
while time.time() < end:
    now = time.time()
    for stat in glob.glob('/proc/[0-9]*/comm'):
        try:
            comm = open(stat).read().strip()
        except OSError:
            continue
        if not (comm.startswith('wire') or comm.startswith('loadgen')):
            continue
        pid = stat.split('/')[2]
        for task in glob.glob(f'/proc/{pid}/task/*'):
            try:
                name = open(task + '/comm').read().strip()
                wait = int(open(task + '/schedstat').read().split()[1])
            except OSError:
                continue
            key = (pid, task)
            if key in last and wait - last[key] > 1_000_000:
                print(f'{now:.3f} {comm}:{name} waited {(wait - last[key]) / 1e6:.1f} ms', flush=True)
            last[key] = wait
    time.sleep(0.02)
