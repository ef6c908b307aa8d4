#!/usr/bin/env bash
# Multi-core runs of the benchmarks on a machine with more CPUs than this one, where nothing
# can be built (no toolchain, no network): bundle the binaries here, run them there.
#
#   scripts/device_bench.sh --bundle DIR   builds (release) and copies into DIR: the threads
#       and malloc bench binaries, the `kmem` CLI, libkmem_malloc.so, mtbench (C), the host's
#       libmimalloc.so.2 and libjemalloc.so.2, the replay capture (../shared/traces, when
#       beside the checkout), this script. Binaries are stripped (about 15 MiB in all). A
#       build of an experiment copied in as DIR/libkmem_malloc_NAME.so runs beside kmem as
#       kmem_NAME in the C programs and the counters (an A/B test on quiet cores).
#   scripts/device_bench.sh --run DIR OUT  runs them from DIR and writes OUT/results.tgz (the
#       *.tsv and *.txt of each part) and OUT/summary.txt. KMEM_DEVICE_PARTS=a,b,.. picks
#       parts (threads, preload, replay, pairs, counters, stats; default all): the machine; the Rust multi-threaded workloads (benches/threads.rs)
#       at 2, 4, 8, 16 and 32 threads; the C programs under LD_PRELOAD (glibc, kmem, mimalloc,
#       jemalloc) at 2, 4, 8, 16 and 32 threads, median of 5; `kmem replay` of the capture end to
#       end, 9 runs, and its stages apart (examples/replay_speed.rs); single-threaded pairs (benches/malloc.rs --only pair); and, where the
#       machine has hardware counters (c/perfcount.c: perf_event_open, no perf needed),
#       cycles, instructions, branch and L1 misses of a malloc + free loop (c/pairloop.c),
#       the single-thread churn and the thread churn under glibc, kmem and mimalloc; KMEM_STATS
#       reports of threadtest and churn at 16 threads under each kmem build. Takes about 4 minutes on 16 CPUs.
#
# The bundled binaries are dynamically linked against this machine's glibc: the other machine
# needs a compatible one (the summary says its version first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bundle() {
    local dir="$1"
    cd "$root"
    local target
    target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
    mkdir -p "$dir"
    cargo build -q --release -p kmem-cli
    cargo build -q --release -p kmem-trace --example replay_speed
    cargo bench -q -p kmem-bench --features jemalloc --bench malloc --bench threads --no-run
    (cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release)
    gcc -O2 -pthread -Wall -Wextra -o "$dir/mtbench" crates/kmem-bench/c/mtbench.c -ldl
    gcc -O2 -Wall -Wextra -o "$dir/pairloop" crates/kmem-bench/c/pairloop.c
    gcc -O2 -Wall -Wextra -o "$dir/perfcount" crates/kmem-bench/c/perfcount.c
    local b
    for b in malloc threads; do
        local path
        path=$(cargo bench -q -p kmem-bench --features jemalloc --bench "$b" --no-run --message-format=json | python3 -c '
import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$b" | tail -1)
        strip -o "$dir/bench_$b" "$path"
    done
    strip -o "$dir/kmem" "$target/release/kmem"
    strip -o "$dir/replay_speed" "$target/release/examples/replay_speed"
    strip -o "$dir/libkmem_malloc.so" "$target/kmem-malloc-pie/release/libkmem_malloc.so"
    local l
    for l in libmimalloc.so.2 libjemalloc.so.2; do
        local p
        p=$(ldconfig -p | awk -v n="$l" '$1 == n {print $NF; exit}')
        [ -n "$p" ] && cp -L "$p" "$dir/$l"
    done
    [ -f "$root/../shared/traces/fsops.trace.zst" ] && cp "$root/../shared/traces/fsops.trace.zst" "$dir/"
    cp "$root/scripts/device_bench.sh" "$dir/"
    (cd "$root" && git rev-parse --short HEAD) >"$dir/commit"
    du -sh "$dir" >&2
}

run() {
    local dir out dest
    dir="$(realpath "$1")"
    dest="$2"
    out="$(mktemp -d)"
    mkdir -p "$dest"
    # KMEM_DEVICE_PARTS: which parts to run (default all).
    local parts="${KMEM_DEVICE_PARTS:-threads,preload,replay,pairs,counters,stats}"
    has() { [[ ",$parts," == *",$1,"* ]]; }
    local sum="$out/summary.txt"
    {
        echo "commit $(cat "$dir/commit")"
        echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "cpus $(nproc); $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        echo "kernel $(uname -r); $(ldd --version 2>&1 | head -1)"
        echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
    } | tee "$sum" >&2
    export KMEM_BENCH_NO_APT=1

    if has threads; then
    echo "== Rust threads" >&2
    "$dir/bench_threads" --threads 2,4,8,16,32 >"$out/threads.tsv" 2>"$out/threads.err" || echo "threads failed" >>"$sum"
    fi

    if has preload; then
    echo "== C under LD_PRELOAD" >&2
    python3 - "$dir" "$out/preload.tsv" <<'PY' 2>>"$sum"
import os, subprocess, sys, time
d, outp = sys.argv[1], sys.argv[2]
# kmem's variants (libkmem_malloc_NAME.so: builds of an experiment, as kmem_NAME) after kmem.
variants = sorted(f for f in os.listdir(d) if f.startswith("libkmem_malloc_") and f.endswith(".so"))
libs = [("glibc", "")] + [(n, f"{d}/{f}") for n, f in [("kmem", "libkmem_malloc.so")] + [("kmem_" + v[15:-3], v) for v in variants] + [("mimalloc", "libmimalloc.so.2"), ("jemalloc", "libjemalloc.so.2")] if os.path.exists(f"{d}/{f}")]
def env(p):
    e = dict(os.environ); e.pop("LD_PRELOAD", None)
    if p: e["LD_PRELOAD"] = p
    return e
cases = [(p, t, [f"{d}/mtbench", p, str(t), str(w)]) for p, w in (("larson", 4_000_000), ("threadtest", 4_000_000), ("churn", 2000)) for t in (2, 4, 8, 16, 32)]
cases.append(("churn1", 1, [f"{d}/mtbench", "churn1", "2000000"]))
times = {}
for k in range(5):
    for prog, t, argv in cases:
        for j in range(len(libs)):
            name, path = libs[(j + k) % len(libs)]
            t0 = time.perf_counter()
            r = subprocess.run(argv, env=env(path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                print(f"{prog} x{t} {name} failed: {r.stderr.decode()[-200:]}", file=sys.stderr)
                continue
            times.setdefault((prog, t, name), []).append(dt)
with open(outp, "w") as f:
    for prog, t, _ in cases:
        g = sorted(times.get((prog, t, "glibc"), [0]))[len(times.get((prog, t, "glibc"), [0])) // 2]
        for name, _ in libs:
            v = sorted(times.get((prog, t, name), []))
            if v:
                m = v[len(v) // 2]
                f.write(f"preload\t{prog}\t{t}\t{name}\t{m:.4f}\t{v[0]:.4f}\t{v[-1]:.4f}\t{m / g if g else 0:.2f}\n")
PY
    fi

    echo "== replay" >&2
    if has replay && [ -f "$dir/fsops.trace.zst" ]; then
        local i
        for i in 1 2 3 4 5 6 7 8 9; do
            local t0 t1
            t0=$(date +%s%N)
            "$dir/kmem" replay "$dir/fsops.trace.zst" >/dev/null 2>>"$out/replay.err" || echo "replay failed" >>"$sum"
            t1=$(date +%s%N)
            echo "replay	$i	$(((t1 - t0) / 1000000))" >>"$out/replay.tsv"
        done
        # The stages apart: parsing alone (one thread), then replaying alone, twice.
        for i in 1 2 3; do
            "$dir/replay_speed" "$dir/fsops.trace.zst" >>"$out/replay_stages.txt" 2>&1 || echo "replay_speed failed" >>"$sum"
        done
    fi

    if has pairs; then
        echo "== single-thread pairs" >&2
        "$dir/bench_malloc" --only pair >"$out/pairs.tsv" 2>"$out/pairs.err" || echo "pairs failed" >>"$sum"
    fi

    local name lib
    has counters && for lib in "" "$dir"/libkmem_malloc*.so "$dir/libmimalloc.so.2"; do
        name=$(basename "${lib:-glibc}")
        {
            echo "-- $name pairloop 20000000 x 64 B"
            LD_PRELOAD="$lib" "$dir/perfcount" "$dir/pairloop" 20000000 64 2>&1 >/dev/null
            echo "-- $name churn1 2000000"
            LD_PRELOAD="$lib" "$dir/perfcount" "$dir/mtbench" churn1 2000000 2>&1 >/dev/null
            echo "-- $name churn 8 2000"
            LD_PRELOAD="$lib" "$dir/perfcount" "$dir/mtbench" churn 8 2000 2>&1 >/dev/null
        } >>"$out/counters.txt" || true
    done
    if has stats; then
        echo "== KMEM_STATS" >&2
        for lib in "$dir"/libkmem_malloc*.so; do
            {
                echo "-- $(basename "$lib") threadtest 16"
                KMEM_STATS=1 LD_PRELOAD="$lib" "$dir/mtbench" threadtest 16 4000000 2>&1
                echo "-- $(basename "$lib") churn 16"
                KMEM_STATS=1 LD_PRELOAD="$lib" "$dir/mtbench" churn 16 2000 2>&1
            } >>"$out/stats.txt" || true
        done
    fi
    echo "done $(date -u '+%H:%M:%S')" >>"$sum"
    # One archive (the machine may hand back few files) and the summary beside it.
    tar czf "$dest/results.tgz" -C "$out" .
    cp "$sum" "$dest/"
    rm -rf "$out"
}

case "${1:-}" in
    --bundle) bundle "$2" ;;
    --run) run "$2" "$3" ;;
    *) echo "usage: $0 --bundle DIR | --run DIR OUT" >&2; exit 2 ;;
esac
