#!/usr/bin/env python3
"""Per-instruction cost of one pair, from a callgrind run with --dump-instr=yes and the
binary's objdump: every instruction run by at least half the pairs, with its count per pair.
Used by scripts/slab_cost.sh and scripts/malloc_cost.sh (--annotate).

Usage: callgrind_annotate_pair.py CALLGRIND_OUT OBJDUMP_TXT ITERS LABEL
"""
import collections, sys

out, dis, iters, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# Callgrind positions are "instr line", each absolute (0x...), relative (+n/-n) or "*".
def pos(p, cur):
    if p == "*":
        return cur
    if p[0] in "+-":
        n = int(p[1:], 16) if p[1:].startswith("0x") else int(p[1:])
        return cur + n if p[0] == "+" else cur - n
    return int(p, 16) if p.startswith("0x") else int(p)
cost, cur, after_call = collections.Counter(), 0, False
for line in open(out):
    if line.startswith("calls="):
        after_call = True  # the next line is the call's inclusive cost
        continue
    if not line or not (line[0].isdigit() or line[0] in "+-*"):
        continue
    f = line.split()
    cur = pos(f[0], cur)
    if after_call:
        after_call = False
        continue
    if len(f) >= 3:
        cost[cur] += int(f[2])
insns, func = {}, ""
for l in open(dis):
    l = l.rstrip()
    if l.endswith(">:"):
        func = l.split("<", 1)[1][:-2]
        continue
    a, _, txt = l.strip().partition(":")
    if a and all(c in "0123456789abcdef" for c in a):
        insns[int(a, 16)] = (func, txt.strip())
print(f"\n{what}: {sum(cost.values()) / iters:.1f} instructions per pair, as run:")
last = None
for a in sorted(cost):
    if cost[a] * 2 < iters:
        continue  # slow paths, run by few pairs
    fn, txt = insns.get(a, ("?", "?"))
    if fn != last:
        print(f"-- {fn}")
        last = fn
    print(f"{a:8x} {cost[a] / iters:5.2f}  {txt}")
