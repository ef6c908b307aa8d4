#!/usr/bin/env bash
# C programs under LD_PRELOAD: kmem's libkmem_malloc.so against glibc (no preload), and
# Debian's mimalloc and jemalloc shared libraries when the machine has them (apt packages
# libmimalloc2.0 and libjemalloc2; installed here when missing and running as root, unless
# KMEM_BENCH_NO_APT=1). Two parts:
#  1. crates/kmem-bench/c/mtbench.c (built with gcc into target/preload-bench/): larson,
#     threadtest and thread churn with 2, 4 and 8 threads, the single-thread random-order
#     churn, 256 live threads each allocating and freeing (more than kmem's CPUs), and 4
#     threads building heaps that only grow (past a fresh kmem machine's RAM);
#     wall time of each run, median of RUNS runs (the allocators take turns, in a
#     rotating order, run after run);
#  2. start-up: wall time of `ls /` (and of `true`), median of STARTUP_RUNS runs each.
# Prints tab-separated lines (scripts/benchmarks.sh reads them):
#   preload PROGRAM THREADS ALLOCATOR MEDIAN_S MIN_S MAX_S RUNS
#   startup COMMAND ALLOCATOR MEDIAN_MS MIN_MS MAX_MS RUNS
#   preload_lib ALLOCATOR PATH
# and a markdown summary on stderr. Takes about two minutes after the builds.
#
# Usage: scripts/preload_bench.sh [--runs N] [--startup-runs N] [--quick]
#   --quick: 2 runs, 20 start-ups, a quarter of the work (a smoke run).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs=7
startup_runs=100
scale=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --startup-runs) startup_runs="$2"; shift 2 ;;
        --quick) runs=2; startup_runs=20; scale=4; shift ;;
        *) echo "usage: $0 [--runs N] [--startup-runs N] [--quick]" >&2; exit 2 ;;
    esac
done
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
mkdir -p "$target/preload-bench"
bin="$target/preload-bench/mtbench"
gcc -O2 -pthread -Wall -Wextra -o "$bin" crates/kmem-bench/c/mtbench.c -ldl

# The deployable library, as crates/kmem-malloc/README.md builds it (release, PIE relocation
# model for initial-exec TLS), in a target directory of its own.
(cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release)
kmem_lib="$target/kmem-malloc-pie/release/libkmem_malloc.so"

# (awk reads all of ldconfig's output: exiting at the first match could kill ldconfig with
# SIGPIPE, which pipefail turns into a failed assignment and errexit into a failed run.)
find_lib() { ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n && !f {print $NF; f = 1}'; }
if [ "${KMEM_BENCH_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    pkgs=()
    [ -n "$(find_lib libmimalloc.so.2)" ] || pkgs+=(libmimalloc2.0)
    [ -n "$(find_lib libjemalloc.so.2)" ] || pkgs+=(libjemalloc2)
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "preload_bench: installing ${pkgs[*]}" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >/dev/null 2>&1 ||
            echo "preload_bench: could not install ${pkgs[*]}; going on without" >&2
    fi
fi
libs=("glibc=" "kmem=$kmem_lib")
mi=$(find_lib libmimalloc.so.2)
[ -n "$mi" ] && libs+=("mimalloc=$mi")
je=$(find_lib libjemalloc.so.2)
[ -n "$je" ] && libs+=("jemalloc=$je")

python3 - "$bin" "$runs" "$startup_runs" "$scale" "${libs[@]}" <<'PY'
import os, subprocess, sys, time

bin, runs, startup_runs, scale = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
libs = [a.split("=", 1) for a in sys.argv[5:]]
root = os.getcwd() + "/"
for name, path in libs:
    print(f"preload_lib\t{name}\t{(path[len(root):] if path.startswith(root) else path) or '-'}")

def env_for(path):
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)
    if path:
        e["LD_PRELOAD"] = path
    return e

ENVS = {name: env_for(path) for name, path in libs}
NAMES = [n for n, _ in libs]

def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2

# ---- 1. mtbench ----------------------------------------------------------------------------
cases = []
for prog, work in (("larson", 2_000_000), ("threadtest", 2_000_000), ("churn", 4000)):
    for t in (2, 4, 8):
        cases.append((prog, t, [bin, prog, str(t), str(work // scale)]))
cases.append(("churn1", 1, [bin, "churn1", str(2_000_000 // scale)]))
# As many live threads as kmem's process machine has possible CPUs (256, the last few of them
# overflow CPUs that the threads beyond the others share).
cases.append(("many", 256, [bin, "many", "256", str(8_000_000 // scale)]))
# A heap that only grows, past a fresh kmem machine's 128 MiB of RAM (about 380 MB live at
# the peak): the machine grows by hot-add instead of reclaiming (kmem-alloc's route.rs).
cases.append(("grow", 4, [bin, "grow", "4", str(1_000_000 // scale)]))

times = {}
failed = set()
def run_case(prog, t, argv, name):
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=ENVS[name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    dt = time.perf_counter() - t0
    err = r.stderr.decode(errors="replace")
    want = "glibc" if name == "glibc" else name
    if r.returncode != 0 or f"allocator={want}" not in err:
        if (prog, t, name) not in failed:
            print(f"preload_bench: {' '.join(argv[1:])} under {name} failed (exit {r.returncode}): {err.strip()[-300:]}",
                  file=sys.stderr)
        failed.add((prog, t, name))
        return None
    return dt

for k in range(runs):
    for prog, t, argv in cases:
        for j in range(len(NAMES)):
            name = NAMES[(j + k) % len(NAMES)]
            try:
                dt = run_case(prog, t, argv, name)
            except subprocess.TimeoutExpired:
                print(f"preload_bench: {prog} x{t} under {name}: over 120 s", file=sys.stderr)
                failed.add((prog, t, name))
                dt = None
            if dt is not None:
                times.setdefault((prog, t, name), []).append(dt)
    print(f"preload_bench: run {k + 1}/{runs} done", file=sys.stderr)

for prog, t, _ in cases:
    for name in NAMES:
        v = times.get((prog, t, name))
        if v and (prog, t, name) not in failed:
            print(f"preload\t{prog}\t{t}\t{name}\t{median(v):.4f}\t{min(v):.4f}\t{max(v):.4f}\t{len(v)}")
        else:
            print(f"preload\t{prog}\t{t}\t{name}\tfailed\t-\t-\t0")

# ---- 2. start-up ---------------------------------------------------------------------------
devnull = os.open(os.devnull, os.O_WRONLY)
def spawn_ms(argv, env):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1)])
    _, status = os.waitpid(pid, 0)
    dt = (time.perf_counter_ns() - t0) / 1e6
    return dt if status == 0 else None

for label, argv in (("ls /", ["/bin/ls", "/"]), ("true", ["/bin/true"])):
    st = {n: [] for n in NAMES}
    for name in NAMES:  # warm the page cache
        spawn_ms(argv, ENVS[name])
    for k in range(startup_runs):
        for j in range(len(NAMES)):
            name = NAMES[(j + k) % len(NAMES)]
            dt = spawn_ms(argv, ENVS[name])
            if dt is not None:
                st[name].append(dt)
    for name in NAMES:
        v = st[name]
        if v:
            print(f"startup\t{label}\t{name}\t{median(v):.3f}\t{min(v):.3f}\t{max(v):.3f}\t{len(v)}")
        else:
            print(f"startup\t{label}\t{name}\tfailed\t-\t-\t0")

# ---- summary on stderr ---------------------------------------------------------------------
out = sys.stderr
print("\n| program | threads | " + " | ".join(f"{n} s" for n in NAMES) + " | kmem / glibc | kmem / mimalloc |", file=out)
print("|---|---:|" + "---:|" * (len(NAMES) + 2), file=out)
for prog, t, _ in cases:
    m = {n: median(times[(prog, t, n)]) for n in NAMES if times.get((prog, t, n)) and (prog, t, n) not in failed}
    cells = [f"{m[n]:.3f}" if n in m else "failed" for n in NAMES]
    r = lambda a, b: f"{m[a] / m[b]:.2f}" if a in m and b in m else "-"
    print(f"| {prog} | {t} | " + " | ".join(cells) + f" | {r('kmem', 'glibc')} | {r('kmem', 'mimalloc')} |", file=out)
PY
