#!/usr/bin/env bash
# Instructions per alloc_pages + __free_pages pair (callgrind, examples/pair_cost.rs), for
# orders 0, 3 and 9, on the hosted platform (a CPU-per-thread machine) and on the minimal one
# (one CPU, sections a plain counter: what a kernel pays). Instruction counts are stable on a
# noisy machine, unlike times. scripts/cost_check.sh checks order 0 against its baseline.
#
# Usage: scripts/pair_cost.sh [--tsv]
#   --tsv: print `cost page_orderN PLATFORM INSTRUCTIONS` lines instead of a table.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tsv=0
[ "${1:-}" = "--tsv" ] && tsv=1
cargo build -q --profile perf -p kmem-bench --example pair_cost
iters=1000 # ITERS in examples/pair_cost.rs
[ "$tsv" = 1 ] || printf '| order | hosted: instructions per alloc+free pair | minimal platform |\n|---:|---:|---:|\n'
for order in 0 3 9; do
    h=$(scripts/callgrind_pair.sh pair_cost "$iters" "$order" hosted)
    m=$(scripts/callgrind_pair.sh pair_cost "$iters" "$order" minimal)
    if [ "$tsv" = 1 ]; then
        printf 'cost\tpage_order%s\thosted\t%s\ncost\tpage_order%s\tminimal\t%s\n' "$order" "$h" "$order" "$m"
    else
        echo "| $order | $h | $m |"
    fi
done
