#!/usr/bin/env bash
# Runs every loom model of kmem: the per-CPU critical sections (shared and owned hosted CPUs),
# the pcp protocol, the vmalloc recycle slots, RCU grace periods.
#
#   scripts/loom.sh                      # all models (about a minute and a half from a cold
#                                        # build, seconds once built)
#   scripts/loom.sh --nocapture          # also print how many executions each model explored
#   LOOM_MAX_PREEMPTIONS=5 scripts/loom.sh   # search the pcp and slab per-CPU models deeper
#                                            # (default 3; the slab remote-free models use 10,
#                                            # which explores them completely; the spinlock and
#                                            # CPU-slot models run without a bound)
#
# Arguments go to the test binaries (options only: the models are selected by the
# `loom_tests` filter, since the other unit tests cannot run on loom's atomics). The models:
#   crates/kmem/src/sync/loom_tests.rs          RawSpinLock: lock_irqsave, try_lock_raw, lock_raw
#   crates/kmem/src/mm/pcp/loom_tests.rs        pcp refill / free at high / drain, on the real
#                                               PerCpuPages, buddy, zone lock and page lists
#   crates/kmem/src/slab/sheaf/loom_tests.rs    slab sheaves: two CPUs trading sheaves at a barn,
#                                               a flush run as the owning CPU, a CPU going
#                                               offline parking its sheaves while a new CPU
#                                               takes one; a flush that does not hold the CPU
#                                               is caught
#   crates/kmem/src/slab/defer/loom_tests.rs    kfree_nolock's deferred-free llist: two pushers
#                                               against a taker, every node taken exactly once;
#                                               a push without release ordering is caught
#   crates/kmem/src/vmalloc/loom_tests.rs       vmalloc recycle slots: put/take/drain from two
#                                               CPUs, every area owned exactly once
#   crates/kmem/src/highmem/loom_tests.rs       pkmap slots (kmap): refcounts, waiting for a
#                                               free slot (a lost wake-up hangs the model),
#                                               the lazy flush; a missing flush is caught
#   crates/kmem/src/rcu/loom_tests.rs           RCU grace-period detection: a reader (nested and
#                                               repeated sections) against an updater that
#                                               frees after a grace period; a reader without
#                                               its fence is caught
#   crates/kmem/src/reclaim/loom_tests.rs       __GFP_NOFAIL's wait and wake-up: a sleeper on a
#                                               full zone and a free, on the real zone, buddy
#                                               lists and waiter count, a blocking wait queue;
#                                               a free that looks for sleepers before its page
#                                               is on the lists (lost wake-up) is caught
#   crates/kmem/src/kfence/loom_tests.rs        KFENCE's sampling gate: one allocation per
#                                               opening however many CPUs race, a forced one
#                                               served once; a gate without its
#                                               compare-exchange is caught
#   crates/kmem-hosted/src/cpu_slot/loom_tests.rs  hosted CPU slot: per-CPU sections, nesting; an overflow CPU's bring-up
#   crates/kmem-hosted/src/cpu_owner/loom_tests.rs owned CPU (a CPU per thread): the owner's
#                                               plain sections against stoppers (membarrier
#                                               modelled as fences); a stopper without the
#                                               barrier is caught
# Other LOOM_* variables are loom's own (LOOM_LOG, LOOM_CHECKPOINT_FILE, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

# --cfg loom changes every crate in the build: keep its artifacts apart from the normal ones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
export RUSTFLAGS="--cfg loom${RUSTFLAGS:+ $RUSTFLAGS}"

for pkg in kmem kmem-hosted; do
    cargo test -p "$pkg" --lib --profile loom -- loom_tests "$@"
done
