#!/usr/bin/env bash
# Runs the page-allocator benchmark (kmem against buddy_system_allocator, side by side in one
# run) and prints the results as a markdown table: the median time per operation of each, and
# their ratio (below 1: kmem is faster).
#
# Usage: scripts/bench.sh [criterion arguments, e.g. a filter such as alloc_free]
# Honours CARGO_TARGET_DIR; criterion's results are read from $CARGO_TARGET_DIR/criterion.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo bench -p kmem-bench --bench page_alloc -- "$@"

python3 - "$target/criterion" <<'PY'
import json, pathlib, sys

KMEM, BSA = "kmem", "buddy_system_allocator"
root = pathlib.Path(sys.argv[1])
rows = {}
for est in sorted(root.glob("*/*/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    fn = meta.get("function_id")
    if fn not in (KMEM, BSA):
        continue
    median = json.loads(est.read_text())["median"]["point_estimate"]
    rows.setdefault(meta["group_id"], {})[fn] = median

if not rows:
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
PY
