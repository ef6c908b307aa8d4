#!/usr/bin/env bash
# What process start-up costs under LD_PRELOAD=libkmem_malloc.so (issue 13's start-up target:
# at most 0.5 ms over glibc for a short process). Prints tab-separated lines:
#   startup  instructions  first-malloc  N     callgrind, the probe's one malloc (kmem boots there)
#   startup  faults        first-malloc  N     page faults of that malloc (getrusage)
#   startup  ram_pages     first-malloc  N     resident pages of the machine's RAM after it
#   startup  wall_ms|cpu_ms|faults  PROGRAM  GLIBC  KMEM  DIFF   per process, RUNS runs each
# Wall: the median of RUNS spawns of PROGRAM, alternating with and without the library (so
# both see the same load); cpu: the mean user+system time of the child (wait4), steadier on a
# shared machine; faults: the mean minor faults. Also the same for Debian's libmimalloc when
# installed, for reference. Takes about a minute after the build.
#
# Usage: scripts/startup_cost.sh [RUNS]     (default 400). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-400}"
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
(cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release)
lib="$target/kmem-malloc-pie/release/libkmem_malloc.so"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cc -O1 -fno-builtin -Wall -o "$tmp/startup" crates/kmem-malloc/tests/c/startup.c
cat >"$tmp/spawn.c" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
extern char **environ;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    const char *lib = argv[2];
    char **cmd = argv + 3;
    double *wall[2], cpu[2] = {0, 0}, faults[2] = {0, 0};
    wall[0] = calloc(n, sizeof(double)); wall[1] = calloc(n, sizeof(double));
    int ne = 0;
    while (environ[ne]) ne++;
    char **env1 = calloc(ne + 2, sizeof(char *)), pre[4096];
    memcpy(env1, environ, ne * sizeof(char *));
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", lib);
    env1[ne] = pre;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < 2 * n; i++) {
        int w = i & 1, st;
        pid_t p;
        struct rusage ru;
        double t0 = now();
        if (posix_spawnp(&p, cmd[0], &fa, NULL, cmd, w ? env1 : environ)) { perror("posix_spawnp"); return 1; }
        wait4(p, &st, 0, &ru);
        wall[w][i / 2] = now() - t0;
        cpu[w] += (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
        faults[w] += ru.ru_minflt;
    }
    qsort(wall[0], n, sizeof(double), cmp);
    qsort(wall[1], n, sizeof(double), cmp);
    double a = wall[0][n / 2], b = wall[1][n / 2];
    printf("wall_ms\t%.3f\t%.3f\t%.3f\n", a, b, b - a);
    printf("cpu_ms\t%.3f\t%.3f\t%.3f\n", cpu[0] / n, cpu[1] / n, (cpu[1] - cpu[0]) / n);
    printf("faults\t%.0f\t%.0f\t%.0f\n", faults[0] / n, faults[1] / n, (faults[1] - faults[0]) / n);
    return 0;
}
EOF
cc -O2 -o "$tmp/spawn" "$tmp/spawn.c"

# valgrind cannot map kmem's default 64 GiB hotplug reserve.
if command -v valgrind >/dev/null; then
    KMEM_RAM_MAX=8G LD_PRELOAD="$lib" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" \
        --toggle-collect=malloc "$tmp/startup" >/dev/null 2>"$tmp/vg" || cat "$tmp/vg" >&2
    printf 'startup\tinstructions\tfirst-malloc\t%s\n' "$(grep -E '^(summary|totals):' "$tmp/cg" | head -1 | awk '{print $2}')"
fi
LD_PRELOAD="$lib" "$tmp/startup" | awk '/^startup/ {printf "startup\tfaults\tfirst-malloc\t%s\nstartup\tram_pages\tfirst-malloc\t%s\n", $3, $5}'

bench() { # name library program...
    local name="$1" l="$2"
    shift 2
    "$tmp/spawn" "$runs" "$l" "$@" | while IFS=$'\t' read -r what g k d; do
        printf 'startup\t%s\t%s\t%s\t%s\t%s\n' "$what" "$name:$*" "$g" "$k" "$d"
    done
}
for prog in "ls /" "/bin/echo hi" "true"; do
    # shellcheck disable=SC2086 # the program's words
    bench kmem "$lib" $prog
done
mimalloc=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
if [ -f "$mimalloc" ]; then
    bench mimalloc "$mimalloc" ls /
fi
