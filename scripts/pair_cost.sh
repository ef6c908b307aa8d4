#!/usr/bin/env bash
# Instructions per alloc_pages + __free_pages pair (callgrind), for orders 0, 3 and 9.
# Instruction counts are stable on a noisy machine, unlike times.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --profile perf -p kmem-bench --example pair_cost
bin="${CARGO_TARGET_DIR:-target}/perf/examples/pair_cost"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| order | instructions per alloc+free pair |"
echo "|---:|---:|"
for order in 0 3 9; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$order" --toggle-collect='*pair_cost::pair*' "$bin" "$order" >/dev/null 2>&1
    total=$(grep -E '^summary:|^totals:' "$tmp/cg.$order" | head -1 | awk '{print $2}')
    echo "| $order | $(( total / 1001 )) |"
done
