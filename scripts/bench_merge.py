#!/usr/bin/env python3
"""Merges the outputs of several processes of the malloc bench (benches/malloc.rs) into one.

Usage: bench_merge.py OUT FIRST [MORE...]

Each `time` and `prodcons` line (`time WORKLOAD PEER MEDIAN MIN MAX N`, `prodcons PEER
MEDIAN MIN MAX N`) becomes the median of the processes' medians, the least minimum, the
greatest maximum and the processes' samples per process (the largest N). Every other line
(peak RSS, its baseline) comes from FIRST, the one process that measured them. A process
places its allocations, its stack and its libraries at addresses of its own (ASLR), and a
hot word that happens to share its low 12 bits with an allocator's block (4 KiB aliasing)
can slow one allocator by a third for that whole process (one kmem build's pair/64 ran
12.6 ns a pair in some processes and 6.0 in others): one process is one draw of that
lottery, the median of several is the allocator's typical figure (scripts/benchmarks.sh).
"""
import statistics
import sys


def rows(path):
    return [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]


out, first, more = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = [rows(first)] + [rows(p) for p in more]
keyed = {}
for r in runs:
    for f in r:
        if f[0] == "time" and len(f) == 7:
            keyed.setdefault(("time", f[1], f[2]), []).append(f[3:])
        elif f[0] == "prodcons" and len(f) == 6:
            keyed.setdefault(("prodcons", f[1]), []).append(f[2:])

with open(out, "w") as o:
    done = set()
    for f in runs[0]:
        key = ("time", f[1], f[2]) if f[0] == "time" else ("prodcons", f[1]) if f[0] == "prodcons" else None
        if key is None:
            o.write("\t".join(f) + "\n")
            continue
        if key in done:
            continue
        done.add(key)
        v = keyed[key]
        med = statistics.median(float(x[0]) for x in v)
        lo = min(float(x[1]) for x in v)
        hi = max(float(x[2]) for x in v)
        n = max(int(x[3]) for x in v)
        o.write("\t".join(list(key) + [f"{med:.3f}", f"{lo:.3f}", f"{hi:.3f}", str(n)]) + "\n")
