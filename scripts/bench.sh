#!/usr/bin/env bash
# Runs the page-allocator benchmarks (kmem against buddy_system_allocator, side by side in one
# run) and prints the results as markdown tables:
#  1. the median time per operation of each, and their ratio (below 1: kmem is faster);
#  2. order-0 alloc+free through kmem's per-CPU lists, straight from its buddy lists, and from
#     buddy_system_allocator (criterion group pcp/order0);
#  3. thread scaling, 1 and 2 threads (scripts/scaling.sh; skipped with KMEM_BENCH_SCALING=0).
# Tables 1 and 2 take about 45 s, table 3 45 to 100 s.
#
# Usage: scripts/bench.sh [criterion arguments, e.g. a filter such as alloc_free]
# Honours CARGO_TARGET_DIR; criterion's results are read from $CARGO_TARGET_DIR/criterion.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo bench -p kmem-bench --bench page_alloc -- "$@"
scaling=""
if [ "${KMEM_BENCH_SCALING:-1}" != 0 ]; then
    scaling="$("$root/scripts/scaling.sh")"
fi

python3 - "$target/criterion" <<'PY'
import json, pathlib, sys

KMEM, BSA = "kmem", "buddy_system_allocator"
PCP, BUDDY = "kmem_pcp", "kmem_buddy"
root = pathlib.Path(sys.argv[1])
rows, pcp_rows = {}, {}
for est in sorted(root.glob("*/*/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    fn, group = meta.get("function_id"), meta["group_id"]
    median = json.loads(est.read_text())["median"]["point_estimate"]
    if group.startswith("pcp/"):
        if fn in (PCP, BUDDY, BSA):
            pcp_rows.setdefault(group, {})[fn] = median
    elif fn in (KMEM, BSA):
        rows.setdefault(group, {})[fn] = median

if not rows and not pcp_rows:
    sys.exit(f"no kmem-bench results under {root}")

def ns(v):
    return "-" if v is None else f"{v:.1f}"

# alloc_free/order0 < order3 < order9 < random_mix, orders compared as numbers.
def key(group):
    head, _, tail = group.partition("/order")
    return (head, int(tail) if tail.isdigit() else 0)

print()
print(f"| bench | {KMEM} ns | {BSA} ns | ratio (kmem / bsa) |")
print("|---|---:|---:|---:|")
for group in sorted(rows, key=key):
    k, b = rows[group].get(KMEM), rows[group].get(BSA)
    ratio = f"{k / b:.2f}" if k is not None and b else "-"
    print(f"| {group} | {ns(k)} | {ns(b)} | {ratio} |")
print()
print("Median time per operation: one alloc + free for alloc_free, one step (alloc or free) "
      "for random_mix. Ratio below 1: kmem is faster.")

if pcp_rows:
    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"
    print()
    print(f"| bench | {PCP} ns | {BUDDY} ns | {BSA} ns | pcp / buddy | pcp / bsa |")
    print("|---|---:|---:|---:|---:|---:|")
    for group in sorted(pcp_rows, key=key):
        p, b, s = (pcp_rows[group].get(f) for f in (PCP, BUDDY, BSA))
        print(f"| {group} | {ns(p)} | {ns(b)} | {ns(s)} | {ratio(p, b)} | {ratio(p, s)} |")
    print()
    print("Median time of one alloc + free, single thread: kmem through its per-CPU lists, "
          "kmem with them off (zone lock and buddy lists), buddy_system_allocator.")
PY

if [ -n "$scaling" ]; then
    printf '%s\n' "$scaling"
fi
