#!/usr/bin/env bash
# Instructions per hot alloc + free pair (callgrind, examples/malloc_cost.rs), 64 bytes unless
# SIZE is given: kmem's core kmalloc + kfree (on a hosted CPU-per-thread machine, and on the
# minimal platform: kmalloc-minimal); every allocator of the malloc bench through its
# GlobalAlloc (kmem_alloc::KmemAlloc, mimalloc, jemalloc, glibc, talc, linked_list_allocator,
# buddy_system_allocator); mi_malloc + mi_free; and malloc + free through the C library:
# glibc's, and kmem's LD_PRELOAD library (crates/kmem-malloc, its release PIE build) when
# libkmem_malloc.so exports malloc (else the line says so). Prints tab-separated lines `cost WHAT SIZE INSTRUCTIONS`
# (scripts/benchmarks.sh reads them). Takes about 20 s after the build.
#
# Usage: scripts/malloc_cost.sh [--size SIZE] [--annotate WHAT]
#   --annotate WHAT: also print WHAT's pair (e.g. kmalloc or kmem) instruction by
#                    instruction, each with the number of times it ran per pair.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=64
annotate=""
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size="$2"; shift 2 ;;
        --annotate) annotate="$2"; shift 2 ;;
        *) echo "usage: $0 [--size SIZE] [--annotate WHAT]" >&2; exit 2 ;;
    esac
done
target="${CARGO_TARGET_DIR:-target}"
cargo build -q --profile perf -p kmem-bench --features jemalloc --example malloc_cost
# The deployable LD_PRELOAD library, built as crates/kmem-malloc/.cargo/config.toml says
# (release, PIE relocation model so that kmem's thread-locals are initial-exec), in a target
# directory of its own.
target="$(realpath -m "$target")"
(cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release 2>/dev/null) || true
bin="$target/perf/examples/malloc_cost"
lib="$target/kmem-malloc-pie/release/libkmem_malloc.so"
iters=4000 # ITERS in examples/malloc_cost.rs
# valgrind cannot map kmem's default 64 GiB hotplug reserve: the global machine would not boot.
export KMEM_RAM_MAX=8G
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

count() { # what [env...] -> instructions per pair
    local what="$1"
    shift
    env "$@" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$what" \
        --toggle-collect='*malloc_cost::pair_*' "$bin" "${what%%@*}" "$size" >/dev/null 2>"$tmp/err.$what" || {
        echo "malloc_cost $what failed:" >&2
        cat "$tmp/err.$what" >&2
        echo -1
        return
    }
    total=$(grep -E '^summary:|^totals:' "$tmp/cg.$what" | head -1 | awk '{print $2}')
    echo $((total / iters))
}

for what in kmalloc kmalloc-minimal kmem mimalloc mi_malloc jemalloc system talc linked_list_allocator buddy_system_allocator; do
    printf 'cost\t%s\t%s\t%s\n' "$what" "$size" "$(count "$what")"
done
printf 'cost\tlibc_glibc\t%s\t%s\n' "$size" "$(count libc)"
if [ -f "$lib" ] && nm -D --defined-only "$lib" 2>/dev/null | awk '{print $NF}' | grep -x malloc >/dev/null; then
    printf 'cost\tlibc_kmem_malloc\t%s\t%s\n' "$size" "$(count libc@kmem LD_PRELOAD="$(realpath "$lib")")"
else
    printf 'cost\tlibc_kmem_malloc\t%s\tnot-ready\n' "$size"
fi

if [ -n "$annotate" ]; then
    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$tmp/cgi" \
        --toggle-collect='*malloc_cost::pair_*' "$bin" "$annotate" "$size" >/dev/null 2>&1
    objdump -d --no-show-raw-insn -C "$bin" >"$tmp/dis"
    python3 "$(dirname "${BASH_SOURCE[0]}")/callgrind_annotate_pair.py" "$tmp/cgi" "$tmp/dis" "$iters" "$annotate"
fi
