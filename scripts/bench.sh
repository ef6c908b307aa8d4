#!/usr/bin/env bash
# Runs the benchmarks (kmem against its peers, side by side in one run) and prints the results
# as markdown tables:
#  1. page allocation against buddy_system_allocator: the median time per operation of each,
#     and their ratio (below 1: kmem is faster);
#  2. order-0 alloc+free through kmem's per-CPU lists, straight from its buddy lists, and from
#     buddy_system_allocator (criterion group pcp/order0);
#  3. thread scaling, 1 and 2 threads (scripts/scaling.sh; skipped with KMEM_BENCH_SCALING=0);
#  5. vmalloc+vfree against mmap+munmap (benches/vmalloc.rs; skipped with KMEM_BENCH_VMALLOC=0);
#  6. trace replay throughput (benches/replay.rs; skipped with KMEM_BENCH_REPLAY=0): on
#     $KMEM_TRACE, else the full capture when ../shared/traces/fsops.trace.zst is there,
#     else the repository's excerpt fixtures/traces/fsops-excerpt.trace.zst.
#  4. slab allocation (benches/slab.rs; skipped with KMEM_BENCH_SLAB=0): kmem's
#     kmem_cache_alloc/free against slabmalloc and mimalloc, per object: hot pairs,
#     alloc-n-free-n, bulk against single-object loops, cross-thread frees, and cache colouring.
# Tables 1 and 2 take about 45 s, table 3 45 to 100 s, table 4 about 60 s; with the
# builds (fat LTO) and the vmalloc and replay benches, about 6 minutes in all on this
# project's 2-vCPU VM. Each step says on stderr what it is doing; the tables go to stdout.
#
# Usage: scripts/bench.sh [criterion arguments, e.g. a filter such as alloc_free]
# Honours CARGO_TARGET_DIR; criterion's results are read from $CARGO_TARGET_DIR/criterion.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
t_start=$(date +%s)
say() { echo "bench.sh [$(($(date +%s) - t_start)) s]: $*" >&2; }

say "building (fat LTO, a few minutes the first time) and running the page allocator benches (about 45 s)"
cargo bench -p kmem-bench --bench page_alloc -- "$@"
if [ "${KMEM_BENCH_SLAB:-1}" != 0 ]; then
    say "building and running the slab benches (about 60 s)"
    cargo bench -p kmem-bench --bench slab -- "$@"
fi
scaling=""
if [ "${KMEM_BENCH_SCALING:-1}" != 0 ]; then
    say "thread scaling, 1 and 2 threads (scripts/scaling.sh, 45 to 100 s)"
    scaling="$("$root/scripts/scaling.sh")"
fi

python3 - "$target/criterion" <<'PY'
import json, pathlib, sys

KMEM, BSA = "kmem", "buddy_system_allocator"
PCP, BUDDY = "kmem_pcp", "kmem_buddy"
root = pathlib.Path(sys.argv[1])
rows, pcp_rows, slab_rows = {}, {}, {}
for est in sorted(root.glob("**/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    fn, group = meta.get("function_id"), meta["group_id"]
    median = json.loads(est.read_text())["median"]["point_estimate"]
    if group.startswith("slab/"):
        # Per object: the slab benches declare how many objects one iteration handles.
        elements = (meta.get("throughput") or {}).get("Elements") or 1
        name = group if meta.get("value_str") is None else f"{group}/{meta['value_str']}"
        slab_rows.setdefault(name, {})[fn] = median / elements
    elif group.startswith("pcp/"):
        if fn in (PCP, BUDDY, BSA):
            pcp_rows.setdefault(group, {})[fn] = median
    elif fn in (KMEM, BSA):
        rows.setdefault(group, {})[fn] = median

if not rows and not pcp_rows and not slab_rows:
    sys.exit(f"no kmem-bench results under {root}")

def ns(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"

# alloc_free/order0 < order3 < order9 < random_mix, orders compared as numbers.
def key(group):
    head, _, tail = group.partition("/order")
    return (head, int(tail) if tail.isdigit() else 0)

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"

if rows:
    print()
    print(f"| bench | {KMEM} ns | {BSA} ns | ratio (kmem / bsa) |")
    print("|---|---:|---:|---:|")
    for group in sorted(rows, key=key):
        k, b = rows[group].get(KMEM), rows[group].get(BSA)
        print(f"| {group} | {ns(k)} | {ns(b)} | {ratio(k, b)} |")
    print()
    print("Median time per operation: one alloc + free for alloc_free, one step (alloc or free) "
          "for random_mix. Ratio below 1: kmem is faster.")

if pcp_rows:
    print()
    print(f"| bench | {PCP} ns | {BUDDY} ns | {BSA} ns | pcp / buddy | pcp / bsa |")
    print("|---|---:|---:|---:|---:|---:|")
    for group in sorted(pcp_rows, key=key):
        p, b, s = (pcp_rows[group].get(f) for f in (PCP, BUDDY, BSA))
        print(f"| {group} | {ns(p)} | {ns(b)} | {ns(s)} | {ratio(p, b)} | {ratio(p, s)} |")
    print()
    print("Median time of one alloc + free, single thread: kmem through its per-CPU lists, "
          "kmem with them off (zone lock and buddy lists), buddy_system_allocator.")

if slab_rows:
    SM, SMX, MI, KB = "slabmalloc", "slabmalloc_mutex", "mimalloc", "kmem_bulk"
    def slab_key(name):
        order = ["slab/pair64", "slab/pair256", "slab/alloc_n_free_n", "slab/bulk/16", "slab/bulk/128"]
        return (order.index(name) if name in order else len(order), name)
    single = [g for g in sorted(slab_rows, key=slab_key)
              if g.startswith(("slab/pair", "slab/alloc_n_free_n", "slab/bulk/"))]
    if single:
        print()
        print(f"| bench | {KMEM} ns | {SM} ns | {MI} ns | kmem / {SM} | kmem / {MI} |")
        print("|---|---:|---:|---:|---:|---:|")
        for g in single:
            k, s, m = (slab_rows[g].get(f) for f in (KMEM, SM, MI))
            print(f"| {g} | {ns(k)} | {ns(s)} | {ns(m)} | {ratio(k, s)} | {ratio(k, m)} |")
        print()
        print("Median time per object (one alloc + one free), single thread, 64-byte objects "
              "(256 for pair256): pair = a hot alloc + free; alloc_n_free_n = 1000 allocations "
              "then 1000 frees; bulk/N = N allocations then N frees, one object at a time. "
              "Ratio below 1: kmem is faster.")
    bulk = [g for g in single if g.startswith("slab/bulk/")]
    if bulk:
        print()
        print(f"| bench | {KB} ns | {KMEM} loop ns | {SM} ns | {MI} ns | bulk / loop | bulk / {SM} | bulk / {MI} |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for g in bulk:
            b, k, s, m = (slab_rows[g].get(f) for f in (KB, KMEM, SM, MI))
            print(f"| {g} | {ns(b)} | {ns(k)} | {ns(s)} | {ns(m)} | {ratio(b, k)} | {ratio(b, s)} | {ratio(b, m)} |")
        print()
        print("kmem_cache_alloc_bulk + kmem_cache_free_bulk of N objects against N single "
              "allocations and frees; median time per object.")
    remote = slab_rows.get("slab/remote_free")
    if remote:
        print()
        print("| slab/remote_free | ns per object | M objects/s | kmem / this |")
        print("|---|---:|---:|---:|")
        k = remote.get(KMEM)
        for f in (KMEM, MI, SMX):
            v = remote.get(f)
            rate = "-" if not v else f"{1e3 / v:.2f}"
            print(f"| {f} | {ns(v)} | {rate} | {ratio(k, v)} |")
        print()
        print("A producer thread allocates 64-byte objects, a consumer thread on another CPU "
              "frees them (batches of 64 through a ring); median time per object, first "
              "allocation to last free. slabmalloc has no cross-thread free path: it runs "
              "behind a Mutex.")
    colour = slab_rows.get("slab/colour")
    if colour:
        off, on = colour.get("kmem_nocolour"), colour.get("kmem_colour")
        verdict = "-"
        if off and on:
            r = on / off
            verdict = ("colouring helps" if r < 0.95 else "colouring hurts" if r > 1.05
                       else "no difference beyond 5% (noise)")
        print()
        print("| slab/colour | no colour ns | SLAB_COLOUR ns | colour / no colour | result |")
        print("|---|---:|---:|---:|---|")
        print(f"| 4096 objects of 192 B | {ns(off)} | {ns(on)} | {ratio(on, off)} | {verdict} |")
        print()
        print("Median time per object to read and increment its first 8 bytes, objects in "
              "allocation order, on this machine.")
PY

if [ -n "$scaling" ]; then
    printf '%s\n' "$scaling"
fi

if [ "${KMEM_BENCH_VMALLOC:-1}" != 0 ]; then
    say "building and running the vmalloc bench"
    echo
    echo "### vmalloc"
    echo
    cargo bench -q -p kmem-bench --bench vmalloc -- --bench 2>/dev/null | grep -E '^\||^\('
fi
if [ "${KMEM_BENCH_REPLAY:-1}" != 0 ]; then
    say "building and running the trace replay bench"
    echo
    echo "### trace replay (M events/s)"
    echo
    echo '```'
    cargo bench -q -p kmem-bench --bench replay 2>/dev/null | grep '^replay/'
    echo '```'
fi
say "done"
