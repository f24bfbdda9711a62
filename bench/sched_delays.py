#!/usr/bin/env python3
"""Scheduling delays from `perf sched timehist` text (bench/sched.sh runs it).

    sched_delays.py <timehist.txt> name=pid [name=pid ...] [--long-us N]

For each named process (and "other"): how many times its threads were switched in, and the delay between being
woken and running, p50 / p99 / p99.9 / max. For the process named "gateway": each thread's share, and for every
wait of at least N us (default 150) what ran on that CPU during the wait, summed by process and thread. A
thread that waits while another thread of the same process runs on its CPU is waiting on its own process.
"""

import collections
import re
import sys

# "  418.193380 [0001]  tokio-rt-worker[10962/10959]   0.000   1.046   0.021" (seconds; then ms).
LINE = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$")
TASK = re.compile(r"^(.*)\[(\d+)(?:/(\d+))?\]$")


def main(argv):
    path, names, long_us = argv[1], {}, 150.0
    rest = argv[2:]
    while rest:
        arg = rest.pop(0)
        if arg == "--long-us":
            long_us = float(rest.pop(0))
        else:
            name, pid = arg.split("=", 1)
            names[pid] = name

    # (end s, cpu, process, thread name, tid, delay us, run us)
    rows = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            end, cpu, task, _wait, delay, run = m.groups()
            t = TASK.match(task)
            if t:
                comm, tid, pid = t.group(1), t.group(2), t.group(3) or t.group(2)
            else:  # <idle>
                comm, tid, pid = task, "0", "0"
            rows.append((float(end), int(cpu), names.get(pid, "other"), comm, tid,
                         float(delay) * 1000, float(run) * 1000))
    if not rows:
        sys.exit(f"{path}: no scheduler events (did perf sched record run as root?)")
    span = rows[-1][0] - rows[0][0]
    print(f"{len(rows)} switch-ins over {span:.1f} s\n")

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * q))]

    by_process = collections.defaultdict(list)
    for r in rows:
        if r[3] != "<idle>":
            by_process[r[2]].append(r[5])
    print(f"{'process':<16} {'switch-ins':>10} {'delay p50':>10} {'p99':>8} {'p99.9':>8} {'max':>8}  (us)")
    for name, d in sorted(by_process.items(), key=lambda kv: -len(kv[1])):
        print(f"{name:<16} {len(d):>10} {pct(d, .5):>10.0f} {pct(d, .99):>8.0f} "
              f"{pct(d, .999):>8.0f} {max(d):>8.0f}")

    threads = collections.defaultdict(lambda: [0, 0.0, 0])
    for r in rows:
        if r[2] == "gateway":
            t = threads[(r[4], r[3])]
            t[0] += 1
            t[1] += r[6]
            t[2] += r[5] >= long_us
    print(f"\ngateway threads: {'tid':>8} {'name':<16} {'switch-ins':>10} {'run ms':>8} "
          f"{'waits >= ' + str(int(long_us)) + ' us':>16}")
    for (tid, comm), (n, run, longs) in sorted(threads.items(), key=lambda kv: -kv[1][1]):
        print(f"                 {tid:>8} {comm:<16} {n:>10} {run / 1000:>8.1f} {longs:>16}")

    # What ran on the CPU while a gateway thread waited: the rows before it on that CPU overlap its wait.
    per_cpu = collections.defaultdict(list)
    for r in rows:
        per_cpu[r[1]].append(r)
    blame = collections.Counter()
    own = collections.Counter()
    waits = 0
    for cpu_rows in per_cpu.values():
        for i, r in enumerate(cpu_rows):
            if r[2] != "gateway" or r[5] < long_us:
                continue
            waits += 1
            start = r[0] - r[6] / 1e6
            woken = start - r[5] / 1e6
            j = i - 1
            while j >= 0:
                q = cpu_rows[j]
                q_start, q_end = q[0] - q[6] / 1e6, q[0]
                if q_end < woken:
                    break
                overlap = (min(q_end, start) - max(q_start, woken)) * 1e6
                if overlap > 0:
                    blame[f"{q[2]}/{q[3]}"] += overlap
                    if q[2] == "gateway":
                        own[(r[4], q[4])] += overlap
                j -= 1
    total = sum(blame.values()) or 1.0
    print(f"\ngateway waits >= {long_us:.0f} us: {waits} ({waits / span:.0f}/s); what ran on their CPU meanwhile:")
    for who, us in blame.most_common(12):
        print(f"  {who:<36} {us / 1000:>8.1f} ms {100 * us / total:>5.1f}%")
    print("\n  of it the gateway's own threads, waiting tid <- running tid:")
    for (waiting, running), us in own.most_common(10):
        print(f"  {waiting:>8} <- {running:<8} {us / 1000:>8.1f} ms")


if __name__ == "__main__":
    main(sys.argv)
