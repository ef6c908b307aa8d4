#!/usr/bin/env bash
# Instructions per hot object alloc + free pair (callgrind): kmem's kmem_cache_alloc +
# kmem_cache_free (on the hosted platform, a CPU-per-thread machine, and on the minimal one:
# one CPU, sections a plain counter) against mimalloc's mi_malloc + mi_free and slabmalloc's
# SCAllocator, for 64- and 256-byte objects (examples/slab_cost.rs). Instruction counts are
# stable on a noisy machine, unlike times. Takes about 5 s after the build (the build, the
# `perf` profile with fat LTO, takes about 2 minutes the first time on a 2-vCPU machine).
# Says on stderr what it is doing; the table goes to stdout.
# scripts/cost_check.sh checks kmem's 64-byte pairs against their baseline.
#
# Usage: scripts/slab_cost.sh [--annotate] [--tsv]
#   --annotate: also print kmem's 64-byte pair instruction by instruction, each with the
#               number of times it ran per pair (objdump + callgrind --dump-instr).
#   --tsv: print `cost slabSIZE ALLOCATOR INSTRUCTIONS` lines instead of a table.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
annotate=0
tsv=0
for a in "$@"; do
    case "$a" in
        --annotate) annotate=1 ;;
        --tsv) tsv=1 ;;
        *) echo "usage: $0 [--annotate] [--tsv]" >&2; exit 2 ;;
    esac
done
say() { echo "slab_cost.sh: $*" >&2; }
say "building examples/slab_cost (profile perf, fat LTO: about 2 minutes the first time)"
cargo build -q --profile perf -p kmem-bench --example slab_cost
say "counting instructions under callgrind (8 runs, a few seconds)"
bin="${CARGO_TARGET_DIR:-target}/perf/examples/slab_cost"
iters=10000 # ITERS in examples/slab_cost.rs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # allocator size -> instructions per pair
    scripts/callgrind_pair.sh slab_cost "$iters" "$1" "$2"
}
if [ "$tsv" = 1 ]; then
    for size in 64 256; do
        for a in kmem kmem-minimal mimalloc slabmalloc; do
            printf 'cost\tslab%s\t%s\t%s\n' "$size" "$a" "$(count "$a" "$size")"
        done
    done
else
    echo "| object size | kmem instructions per pair (hosted) | kmem (minimal platform) | mimalloc | slabmalloc |"
    echo "|---:|---:|---:|---:|---:|"
    for size in 64 256; do
        echo "| $size | $(count kmem $size) | $(count kmem-minimal $size) | $(count mimalloc $size) | $(count slabmalloc $size) |"
    done
    echo
    echo "One pair: one allocation and its free, back to back, the hot path of each (the first pair"
    echo "runs before collection starts). kmem target: at most 40 instructions per pair."
fi

if [ "$annotate" = 1 ]; then
    say "annotating kmem's 64-byte pair (callgrind --dump-instr, objdump)"
    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$tmp/cgi" \
        --toggle-collect='*slab_cost::pair_*' "$bin" kmem 64 >/dev/null 2>&1
    objdump -d --no-show-raw-insn -C "$bin" >"$tmp/dis"
    python3 "$(dirname "${BASH_SOURCE[0]}")/callgrind_annotate_pair.py" "$tmp/cgi" "$tmp/dis" "$iters" "kmem, 64 B"
fi
