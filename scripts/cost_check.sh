#!/usr/bin/env bash
# Instruction-count regression check of kmem's fast paths (issue 13): callgrind counts
# instructions per steady-state pair of every fast path, on the hosted platform (a
# CPU-per-thread machine, what a process's allocator runs on) and on the minimal platform
# (one CPU, preempt_disable a plain counter: what a kernel pays; kmem_bench::minimal), and
# compares them with the committed baseline, crates/kmem-bench/baselines/instructions.tsv.
# Fails (exit 1) when any pair grows by more than 10% over its baseline, or cannot be
# measured. `.ci/run` calls it.
#
# Pairs (each example runs one pair in an #[inline(never)] function named pair*, counted with
# --toggle-collect, the first pair outside the count):
#   page_order0   alloc_pages(GFP_KERNEL, 0) + __free_pages     examples/pair_cost.rs
#   page_bulk0    the same for 16384 pages allocated, then freed: per page, the per-CPU
#                 lists' refill and drain and the buddy's splitting and merging
#                                                                examples/bulk_cost.rs
#   slab64        kmem_cache_alloc + kmem_cache_free, 64 B      examples/slab_cost.rs
#   kmalloc64     kmalloc(64, GFP_KERNEL) + kfree                examples/malloc_cost.rs
#   kmemalloc64   KmemAlloc alloc + dealloc, 64 B (hosted only: kmem_alloc's global machine)
#   malloc64      malloc(64) + free through LD_PRELOAD=libkmem_malloc.so (hosted only; the
#                 library's release PIE build, crates/kmem-malloc/README.md)
#   kmemalloc64_mt, malloc64_mt  the same two after the process started (and joined) a
#                 second thread: the free's locked claim, which a single-threaded process
#                 skips (`Platform::sole_thread`; the two above measure that store path)
#   vmalloc1      vmalloc(4096) + vfree                          examples/vmalloc_cost.rs
#   kmap_local1   kmap_local_page + kunmap_local of a HighMem page (hosted x86-32 only)
#                                                                examples/kmap_cost.rs
#   kmap1         kmap + kunmap of a kmapped HighMem page (hosted x86-32 only)
#
# Counts are deterministic for a given binary: the same build measures the same numbers
# (--twice checks that). A new compiler or dependency version can move them by a few
# instructions; a change of kmem's fast paths moves them by more: then update the baseline
# in the same commit.
#
# Usage: scripts/cost_check.sh [--update] [--twice] [--tsv]
#   --update: measure and rewrite the baseline file (keeps its targets), then exit 0.
#   --twice:  measure every pair twice and fail if the two counts differ.
#   --tsv:    print only `cost PAIR PLATFORM INSTRUCTIONS BASELINE TARGET` lines (for
#             scripts/benchmarks.sh); never fails on a regression.
# KMEM_COST_TOLERANCE=PERCENT changes the 10%; KMEM_COST_BASELINE=FILE reads (or with --update
# writes) another baseline file. Takes about a minute after the builds (the pairs run in
# parallel, one per CPU).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
baseline="${KMEM_COST_BASELINE:-crates/kmem-bench/baselines/instructions.tsv}"
update=0 twice=0 tsv=0
for a in "$@"; do
    case "$a" in
        --update) update=1 ;;
        --twice) twice=1 ;;
        --tsv) tsv=1 ;;
        *) echo "usage: $0 [--update] [--twice] [--tsv]" >&2; exit 2 ;;
    esac
done
tolerance="${KMEM_COST_TOLERANCE:-10}"
command -v valgrind >/dev/null || { echo "cost_check: valgrind is not installed" >&2; exit 1; }

target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
log() { [ "$tsv" = 1 ] || echo "$@" >&2; }
log "cost_check: building the cost examples (profile perf) and libkmem_malloc.so"
cargo build -q --profile perf -p kmem-bench --no-default-features --example pair_cost --example bulk_cost --example slab_cost --example malloc_cost \
    --example vmalloc_cost --example kmap_cost
(cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release)
lib="$target/kmem-malloc-pie/release/libkmem_malloc.so"

# pair platform -> "EXAMPLE ITERS ARGS..." (ITERS: the example's count of collected pairs)
spec() {
    case "$1/$2" in
        page_order0/hosted) echo "pair_cost 1000 0 hosted" ;;
        page_order0/minimal) echo "pair_cost 1000 0 minimal" ;;
        page_bulk0/hosted) echo "bulk_cost 65536 hosted" ;;
        page_bulk0/minimal) echo "bulk_cost 65536 minimal" ;;
        slab64/hosted) echo "slab_cost 10000 kmem 64" ;;
        slab64/minimal) echo "slab_cost 10000 kmem-minimal 64" ;;
        kmalloc64/hosted) echo "malloc_cost 4000 kmalloc 64" ;;
        kmalloc64/minimal) echo "malloc_cost 4000 kmalloc-minimal 64" ;;
        kmemalloc64/hosted) echo "malloc_cost 4000 kmem 64" ;;
        malloc64/hosted) echo "malloc_cost 4000 libc 64" ;;
        kmemalloc64_mt/hosted) echo "malloc_cost 4000 kmem-mt 64" ;;
        malloc64_mt/hosted) echo "malloc_cost 4000 libc-mt 64" ;;
        vmalloc1/hosted) echo "vmalloc_cost 4000 hosted" ;;
        vmalloc1/minimal) echo "vmalloc_cost 4000 minimal" ;;
        kmap_local1/hosted) echo "kmap_cost 4000 local" ;;
        kmap1/hosted) echo "kmap_cost 4000 kmap" ;;
        *) return 1 ;;
    esac
}
PAIRS="page_order0/hosted page_order0/minimal page_bulk0/hosted page_bulk0/minimal slab64/hosted slab64/minimal kmalloc64/hosted
kmalloc64/minimal kmemalloc64/hosted malloc64/hosted kmemalloc64_mt/hosted malloc64_mt/hosted vmalloc1/hosted
vmalloc1/minimal kmap_local1/hosted
kmap1/hosted"

measure() { # pair/platform -> instructions per pair (-1 on failure)
    local s
    s=$(spec "${1%/*}" "${1#*/}")
    # valgrind cannot map kmem's default 64 GiB hotplug reserve: KmemAlloc's global machine
    # would not boot under it.
    if [ "${1%/*}" = malloc64 ] || [ "${1%/*}" = malloc64_mt ]; then
        [ -f "$lib" ] || { echo "cost_check: $lib not built" >&2; echo -1; return; }
        # shellcheck disable=SC2086
        KMEM_RAM_MAX=8G LD_PRELOAD="$lib" scripts/callgrind_pair.sh $s
    else
        # shellcheck disable=SC2086
        KMEM_RAM_MAX=8G scripts/callgrind_pair.sh $s
    fi
}

declare -A base target got
if [ -f "$baseline" ]; then
    while IFS=$'\t' read -r pair platform n tgt; do
        case "$pair" in '#'* | pair | '') continue ;; esac
        base["$pair/$platform"]="$n"
        target["$pair/$platform"]="$tgt"
    done <"$baseline"
fi

# The pairs run side by side, one valgrind per CPU (each count is deterministic whatever
# runs beside it); each writes its count into a file of its own.
fail=0
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for p in $PAIRS; do
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
    f="$runs/${p//\//_}"
    { measure "$p" >"$f.1"; if [ "$twice" = 1 ]; then measure "$p" >"$f.2"; fi; } &
done
wait
for p in $PAIRS; do
    f="$runs/${p//\//_}"
    n=$(cat "$f.1" 2>/dev/null || echo -1)
    [ -n "$n" ] || n=-1
    if [ "$twice" = 1 ]; then
        m=$(cat "$f.2" 2>/dev/null || echo -1)
        if [ "$m" != "$n" ]; then
            log "cost_check: $p is not deterministic: $n then $m instructions"
            fail=1
        fi
    fi
    got["$p"]="$n"
    log "cost_check: $p $n"
done

if [ "$update" = 1 ]; then
    if [ "$fail" = 1 ]; then
        echo "cost_check: counts differ between two runs; baseline not updated" >&2
        exit 1
    fi
    {
        echo "# Instructions per steady-state pair (callgrind), checked by scripts/cost_check.sh:"
        echo "# it fails when a pair grows by more than 10% over this. Regenerate with"
        echo "# scripts/cost_check.sh --update (commit the file with the change that moved them)."
        echo "# target: issue 13's goal for the pair (kmap_local1: issue 15's; - : none)."
        echo "# Measured $(date -u '+%Y-%m-%d') on $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(rustc --version | cut -d' ' -f1-2)."
        printf 'pair\tplatform\tinstructions\ttarget\n'
        for p in $PAIRS; do
            printf '%s\t%s\t%s\t%s\n' "${p%/*}" "${p#*/}" "${got[$p]}" "${target[$p]:--}"
        done
    } >"$baseline.new"
    for p in $PAIRS; do
        if [ "${got[$p]}" -lt 0 ]; then
            echo "cost_check: $p could not be measured; baseline not updated" >&2
            rm -f "$baseline.new"
            exit 1
        fi
    done
    mv "$baseline.new" "$baseline"
    echo "cost_check: wrote $baseline" >&2
    exit 0
fi

if [ "$tsv" = 1 ]; then
    for p in $PAIRS; do
        printf 'cost\t%s\t%s\t%s\t%s\t%s\n' "${p%/*}" "${p#*/}" "${got[$p]}" "${base[$p]:--}" "${target[$p]:--}"
    done
    exit 0
fi

printf '\n| pair | platform | instructions | baseline | change | target (issue 13) |\n|---|---|---:|---:|---:|---:|\n'
for p in $PAIRS; do
    n="${got[$p]}" b="${base[$p]:-}"
    if [ "$n" -lt 0 ]; then
        change="not measured"
        fail=1
    elif [ -z "$b" ]; then
        change="no baseline"
        fail=1
    else
        change=$(awk -v n="$n" -v b="$b" 'BEGIN { printf "%+.1f%%", (n - b) * 100 / b }')
        if [ $((n * 100)) -gt $((b * (100 + tolerance))) ]; then
            change="$change REGRESSION"
            fail=1
        fi
    fi
    printf '| %s | %s | %s | %s | %s | %s |\n' "${p%/*}" "${p#*/}" "$n" "${b:--}" "$change" "${target[$p]:--}"
done
if [ "$fail" = 1 ]; then
    echo "cost_check: FAILED: a pair grew by more than ${tolerance}% over $baseline, or could not be measured." >&2
    echo "If the growth is intended, run scripts/cost_check.sh --update and commit the baseline." >&2
    exit 1
fi
echo "cost_check: every pair within ${tolerance}% of $baseline" >&2
