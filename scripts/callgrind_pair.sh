#!/usr/bin/env bash
# Instructions per pair of a cost example (callgrind, deterministic for a given binary):
# runs `valgrind --tool=callgrind --toggle-collect='*EXAMPLE::pair*' BIN ARGS...` and prints
# the instructions collected divided by ITERS (the example's count of collected pairs), an
# integer, on stdout; on failure prints -1 and the example's output on stderr. The example
# must already be built (target/perf/examples/EXAMPLE, the `perf` profile). The environment
# passes through (LD_PRELOAD reaches the example, not valgrind).
#
# Usage: scripts/callgrind_pair.sh EXAMPLE ITERS [ARGS...]
# Used by pair_cost.sh, slab_cost.sh, malloc_cost.sh and cost_check.sh. Honours CARGO_TARGET_DIR.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 EXAMPLE ITERS [ARGS...]" >&2; exit 2; }
example="$1"
iters="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")/perf/examples/$example"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" --toggle-collect="*${example}::pair*" \
    "$bin" "$@" >"$tmp/out" 2>&1; then
    echo "callgrind_pair: $example $* failed:" >&2
    tail -20 "$tmp/out" >&2
    echo -1
    exit 0
fi
total=$(grep -E '^summary:|^totals:' "$tmp/cg" | head -1 | awk '{print $2}')
echo $((total / iters))
