#!/usr/bin/env bash
# Thread scaling of order-0 alloc+free (kmem with and without per-CPU lists, and
# buddy_system_allocator; 1 and 2 threads on distinct CPUs): prints a markdown table of pairs
# per second and the 2-thread/1-thread ratio. Runs until each configuration has 5 runs
# undisturbed by other processes, at most about 100 s.
#
# Usage: scripts/scaling.sh [--secs S] [--reps CLEAN_RUNS] [--budget SECONDS] [--only A,B]
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo bench -q -p kmem-bench --bench scaling -- "$@"
