#!/usr/bin/env bash
# Regenerates BENCHMARKS.md at the repository root, in one run on this machine: kmem as a
# process's allocator (kmem_alloc::KmemAlloc) against mimalloc, jemalloc, glibc, talc,
# linked_list_allocator and buddy_system_allocator, and issue 13's targets, met or not:
#  1. single-threaded workloads, ns per operation and kmem's ratio to each peer, the 2-thread
#     producer/consumer pair and peak RSS (crates/kmem-bench/benches/malloc.rs);
#  2. multi-threaded workloads with 2, 4 and 8 threads: larson, threadtest, thread churn
#     (crates/kmem-bench/benches/threads.rs; KMEM_BENCH_THREADS=0 skips them);
#  3. C programs under LD_PRELOAD (libkmem_malloc.so, mimalloc, jemalloc against glibc) and
#     process start-up (scripts/preload_bench.sh; KMEM_BENCH_PRELOAD=0 skips it);
#  4. instructions per pair: kmem's fast paths on the hosted and minimal platforms against
#     their baseline (scripts/cost_check.sh --tsv) and every allocator's 64-byte pair
#     (scripts/malloc_cost.sh); KMEM_BENCH_COST=0 skips them;
# then "where kmem loses": the losing cells of this run and the explanation kept in
# crates/kmem-bench/notes/where-kmem-loses.md. Every section says its machine and date. The
# run's headline (the targets table) also goes into README.md, between its
# `<!-- benchmarks.sh: ... -->` markers.
# Takes about 5 minutes with the builds cached on a 2-CPU machine (328 s on 2026-12-07) (the builds, fat LTO, take several
# more the first time). Each step says on stderr what it is doing.
#
# Usage: scripts/benchmarks.sh [arguments of the malloc bench binary, e.g. --rounds 15]
#        scripts/benchmarks.sh --render DIR   (rewrites BENCHMARKS.md from the outputs a run kept
#                                              in DIR, e.g. after editing the notes)
#   KMEM_BENCH_KEEP=DIR keeps the run's tab-separated outputs in DIR.
#   BENCHMARKS_OUT=FILE writes FILE instead of BENCHMARKS.md; KMEM_THREADS_ARGS="--rounds 9"
#   passes arguments to the threads bench. KMEM_BENCH_PROCS=N runs the single-threaded bench in
#   N processes (5 by default; the first also measures peak RSS) and reports the median of
#   their medians (scripts/bench_merge.py: each process is one draw of the address-layout
#   lottery that 4 KiB aliasing plays with every allocator's hot pair).
# Honours CARGO_TARGET_DIR.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${BENCHMARKS_OUT:-$root/BENCHMARKS.md}"
notes=crates/kmem-bench/notes/where-kmem-loses.md
if [ "${1:-}" = "--render" ]; then
    [ -d "${2:-}" ] || { echo "usage: $0 --render DIR" >&2; exit 2; }
    exec python3 scripts/benchmarks_md.py "$2" "$out" "$notes"
fi
tmp=$(mktemp -d)
if [ -n "${KMEM_BENCH_KEEP:-}" ]; then
    trap 'mkdir -p "$KMEM_BENCH_KEEP" && cp "$tmp"/*.tsv "$KMEM_BENCH_KEEP"/ && rm -rf "$tmp"' EXIT
else
    trap 'rm -rf "$tmp"' EXIT
fi
t_start=$(date +%s)
say() { echo "benchmarks.sh [$(($(date +%s) - t_start)) s]: $*" >&2; }

bench_bin() { # bench name -> path of its binary (built)
    cargo bench -q -p kmem-bench --features jemalloc --bench "$1" --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])
' "$1" | tail -1
}

say "building the malloc and threads benches (fat LTO: several minutes the first time)"
cargo bench -q -p kmem-bench --features jemalloc --bench malloc --bench threads --no-run
malloc_bin=$(bench_bin malloc)
threads_bin=$(bench_bin threads)
[ -n "$malloc_bin" ] && [ -n "$threads_bin" ] || { echo "benchmarks.sh: bench binaries not found" >&2; exit 1; }
if [ "${KMEM_BENCH_COST:-1}" != 0 ]; then
    say "building the instruction-count examples (profile perf)"
    cargo build -q --profile perf -p kmem-bench --features jemalloc --examples
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "benchmarks.sh: builds done in $(($(date +%s) - t_start)) s; timing" >&2

procs="${KMEM_BENCH_PROCS:-5}"
say "single-threaded workloads against the peers (benches/malloc.rs), $procs processes"
"$malloc_bin" "$@" >"$tmp/bench.1.tsv"
for i in $(seq 2 "$procs"); do
    "$malloc_bin" "$@" --no-rss >"$tmp/bench.$i.tsv"
done
# shellcheck disable=SC2046
python3 scripts/bench_merge.py "$tmp/bench.tsv" $(for i in $(seq 1 "$procs"); do echo "$tmp/bench.$i.tsv"; done)
if [ "${KMEM_BENCH_THREADS:-1}" != 0 ]; then
    say "multi-threaded workloads, 2, 4 and 8 threads (benches/threads.rs)"
    # shellcheck disable=SC2086
    "$threads_bin" ${KMEM_THREADS_ARGS:-} >"$tmp/threads.tsv"
fi
if [ "${KMEM_BENCH_PRELOAD:-1}" != 0 ]; then
    say "C programs under LD_PRELOAD and process start-up (scripts/preload_bench.sh)"
    scripts/preload_bench.sh >"$tmp/preload.tsv"
fi
if [ "${KMEM_BENCH_COST:-1}" != 0 ]; then
    say "instructions per pair under callgrind (scripts/cost_check.sh, scripts/malloc_cost.sh)"
    scripts/cost_check.sh --tsv >"$tmp/pairs.tsv"
    scripts/malloc_cost.sh >"$tmp/cost.tsv"
fi

{
    echo "model	$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cpus	$(nproc)"
    echo "mem_kib	$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    echo "kernel	$(uname -r)"
    echo "thp	$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
    echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md' ':!README.md' 2>/dev/null)" ]; then
        commit="$commit (with uncommitted changes)"
    fi
    echo "commit	$commit"
    echo "rustc	$(rustc --version)"
    echo "gcc	$(gcc --version | head -1)"
    echo "load	$load_before (start of the timed runs), $(cut -d' ' -f1-3 /proc/loadavg) (end)"
    echo "procs	$procs"
} >"$tmp/meta.tsv"

python3 scripts/benchmarks_md.py "$tmp" "$out" "$notes"
echo "benchmarks.sh: done in $(($(date +%s) - t_start)) s" >&2
