#!/usr/bin/env bash
# valgrind memcheck over kmem (issue 12): fails on any memcheck error.
#
# 1. Hosted integration tests (debug build), those of `slab.rs` and `kmalloc.rs` unless
#    MEMCHECK_TESTS names other files of crates/kmem-hosted/tests (modules of its one test
#    binary, `hosted`). KMEM_MEMCHECK=1 makes the longest of them run a smaller grid of the
#    same paths. Memcheck does not know kmem's own heap (its RAM is a memfd mapping): it
#    checks kmem's code for reads and writes outside mappings, use of uninitialised
#    metadata, and the Rust side (about 60 s).
# 2. C programs under LD_PRELOAD=libkmem_malloc.so (the deployable build, as
#    crates/kmem-malloc/tests/preload.rs and scripts/cost_check.sh build it: same target
#    directory, target/kmem-malloc-pie, so CI builds it once):
#    scripts/memcheck/preload_smoke.c and crates/kmem-malloc/tests/c/edge_cases.c (about 30 s).
#    Memcheck replaces malloc in libc and in every object without a SONAME, which
#    libkmem_malloc.so is (cargo gives cdylibs none): without
#    `--soname-synonyms=somalloc=nouserintercepts` memcheck would serve every malloc itself and
#    kmem would never run. With it, kmem serves them: memcheck's heap summary must say
#    "total heap usage: 0 allocs" for every process, and the script checks that it does.
#    KMEM_RAM_MAX=8G: valgrind cannot reserve kmem-alloc's default 64 GiB hotplug range.
#
# Suppressions: scripts/memcheck/kmem.supp (each entry says why it is not a kmem bug).
# Usage: scripts/memcheck.sh            Honours CARGO_TARGET_DIR and MEMCHECK_TESTS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "memcheck.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v cc >/dev/null || { echo "memcheck.sh: no C compiler (cc)" >&2; exit 1; }
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
supp="$PWD/scripts/memcheck/kmem.supp"
vg=(valgrind --tool=memcheck --error-exitcode=1 --suppressions="$supp")
start=$SECONDS

# 1. Hosted integration tests.
# The workspace's build of it (the README's `cargo test --workspace`, features unified over
# the workspace: `-p kmem-hosted` alone would build its dependencies again with fewer).
bin=$(cargo test -q --no-run --workspace --message-format=json |
    grep '"name":"hosted","src_path"' | grep -o '"executable":"[^"]*"' | sed 's/"executable":"\(.*\)"/\1/')
[ -n "$bin" ] || { echo "memcheck.sh: no executable for kmem-hosted's test binary" >&2; exit 1; }
for t in ${MEMCHECK_TESTS:-slab kmalloc}; do
    echo "memcheck: $(basename "$bin") $t::"
    KMEM_MEMCHECK=1 "${vg[@]}" -q "$bin" --test-threads=1 -q "$t::"
done
echo "memcheck: the hosted tests: $((SECONDS - start)) s"

# 2. LD_PRELOAD runs.
(cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release)
lib="$target/kmem-malloc-pie/release/libkmem_malloc.so"
out="$target/memcheck"
mkdir -p "$out"
cc -O1 -g -fno-builtin -Wall -pthread -o "$out/preload_smoke" scripts/memcheck/preload_smoke.c -ldl
cc -O1 -g -fno-builtin -w -pthread -o "$out/edge_cases" crates/kmem-malloc/tests/c/edge_cases.c -ldl
export KMEM_RAM_MAX=8G
preload() { # name expected-stdout-pattern
    local name="$1" want="$2" log="$out/$1.vg" t0=$SECONDS
    echo "memcheck: LD_PRELOAD=libkmem_malloc.so $name"
    # --fair-sched=yes: valgrind runs one thread at a time, and by default a thread that
    # yields may take the lock straight back; a thread waiting for another's CPU section to
    # end (a fork's stop_machine) then spins for long stretches: edge_cases took 14 to 202 s
    # from run to run, and 25 s every time with fair scheduling. (The hosted tests above do
    # not vary and run 15% slower with it.)
    if ! "${vg[@]}" --fair-sched=yes --trace-children=yes --soname-synonyms=somalloc=nouserintercepts --log-file="$log.%p" \
        env LD_PRELOAD="$lib" "$out/$name" >"$out/$name.out" 2>&1; then
        cat "$out/$name.out" "$log".* >&2
        echo "memcheck.sh: $name failed under memcheck" >&2
        exit 1
    fi
    grep -q "$want" "$out/$name.out" || { cat "$out/$name.out" >&2; echo "memcheck.sh: $name: no '$want'" >&2; exit 1; }
    # Every process (children of fork included) left malloc to kmem.
    if grep -h "total heap usage" "$log".* | grep -v "total heap usage: 0 allocs"; then
        echo "memcheck.sh: $name: memcheck served some mallocs itself: kmem was not used" >&2
        exit 1
    fi
    rm -f "$log".*
    echo "memcheck: $name: $((SECONDS - t0)) s"
}
preload preload_smoke "malloc from: .*libkmem_malloc.so"
preload edge_cases "summary: [0-9]* checks, 0 failed"
echo "memcheck: no error ($((SECONDS - start)) s)"
