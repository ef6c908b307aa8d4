#!/usr/bin/env bash
# Boots kmem on an emulated x86-64 machine and runs its tests in ring 0 (issue 18).
#
# Builds crates/kmem-boot for x86_64-unknown-none (a freestanding kernel with a PVH entry),
# then boots it with `qemu-system-x86_64 -kernel` under TCG (no KVM needed) in two
# configurations:
#   smp2-3g    q35, 3 GiB (2 GiB below the PCI hole, 1 GiB above 4 GiB: DMA, DMA32 and
#              Normal zones), 2 CPUs
#   numa2-4g   q35, 4 GiB in 2 NUMA nodes of 2 GiB (node 1: Normal above 4 GiB), 4 CPUs,
#              two per node
#   highmem-3g 3 GiB, 4 CPUs, the kernel's `highmem` option: the 1 GiB above 4 GiB is
#              HighMem, outside the direct map, so kmap and kmap_local_page map it through
#              the page tables (also from the timer interrupt), and four CPUs wrap the pkmap
#              ring at once (TLB shootdowns under kmem's irq-safe kmap_lock: a maskable IPI
#              deadlocks there, which the 120 s timeout turns into a failure)
#   slub-debug 2 GiB, 2 CPUs, `slub_debug=FZPU`: every slab cache (kmalloc's too) with
#              consistency checks, red zones, poisoning and owner tracking while the tests,
#              the timer's allocations and the concurrent phases run; no report may appear
#              but the one the red-zone test provokes (its fast-path pairs are debug pairs)
#   stack-overflow  2 CPUs, the kernel's `stack_overflow` option: CPU 1 recurses off its vmap
#              stack; passes when the double fault is reported (`kernel stack overflow
#              (double-fault)`, on the IST stack) and the guest exits with status 3. The
#              option also delays CPU 1 for 100 ms after it comes online (`ap_late`), so the
#              test is published while it still starts: an AP that misses it hangs the run
# Each run prints the kernel's serial console (tests as `ok N - name`, the total as
# `N passed, N failed`, then /proc/buddyinfo, /proc/slabinfo and /proc/meminfo from the
# core's renderers) into target/kmem-boot/<config>.log, and its summary here, with the
# guest's rdtsc-timed fast-path pairs beside the hosted instruction counts of
# crates/kmem-bench/baselines/instructions.tsv. TCG's cycles are emulated: an indication,
# not a measurement (BENCHMARKS.md).
#
# The guest exits through isa-debug-exit: status 0 written by the kernel is QEMU's 1, any
# other value (or a crash, or the timeout) fails. Exit status: 0 when every configuration
# passed. Installs qemu-system-x86 (apt) and the x86_64-unknown-none target when missing.
#
# Usage: scripts/boot.sh [-v] [config...]   (-v: print each whole serial log; configs: those
# above, all by default)
set -euo pipefail
cd "$(dirname "$0")/.."

verbose=0
if [ "${1:-}" = "-v" ]; then verbose=1; shift; fi
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(smp2-3g numa2-4g highmem-3g slub-debug stack-overflow)

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "boot.sh: installing qemu-system-x86" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx x86_64-unknown-none; then
    rustup target add x86_64-unknown-none
fi

start=$SECONDS
cargo build -q -p kmem-boot --target x86_64-unknown-none --release
target_dir=${CARGO_TARGET_DIR:-target}
kernel=$target_dir/x86_64-unknown-none/release/kmem-boot
mkdir -p "$target_dir/kmem-boot"

qemu_args() {
    case "$1" in
        smp2-3g) echo "-m 3G -smp 2" ;;
        highmem-3g) echo "-m 3G -smp 4 -append highmem" ;;
        slub-debug) echo "-m 2G -smp 2 -append slub_debug=FZPU" ;;
        stack-overflow) echo "-m 2G -smp 2 -append stack_overflow" ;;
        numa2-4g)
            echo "-m 4G -smp 4" \
                "-object memory-backend-ram,id=m0,size=2G -object memory-backend-ram,id=m1,size=2G" \
                "-numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,cpus=2-3,memdev=m1" ;;
        *) echo "boot.sh: unknown configuration $1" >&2; return 1 ;;
    esac
}

baseline=crates/kmem-bench/baselines/instructions.tsv
failed=0
for cfg in "${configs[@]}"; do
    args=$(qemu_args "$cfg")
    log=$target_dir/kmem-boot/$cfg.log
    t0=$SECONDS
    set +e
    # shellcheck disable=SC2086 # $args is a list of options
    timeout 120 qemu-system-x86_64 -machine q35 -accel tcg $args -nodefaults -display none -no-reboot \
        -serial "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$kernel"
    rc=$?
    set -e
    echo "=== $cfg ($(qemu_args "$cfg" | tr -s ' ')): $((SECONDS - t0)) s"
    if [ "$verbose" = 1 ]; then
        cat "$log"
    else
        grep -E '^(smpboot|kmem:|kmem-boot: CPU|ok |not ok |    |[0-9]+ passed|BUG: stack|Oops)' "$log" | grep -v '^    pair ' || true
    fi
    grep -q '^    pair ' "$log" && echo "fast-path pairs in the guest (TCG TSC ticks) beside the hosted/minimal instruction counts:"
    { grep '^    pair ' "$log" || true; } | while read -r _ name ticks _ _ ns _; do
        hosted=$(awk -v p="$name" '$1 == p && $2 == "hosted" { print $3 }' "$baseline")
        minimal=$(awk -v p="$name" '$1 == p && $2 == "minimal" { print $3 }' "$baseline")
        printf '  %-12s guest %6s ticks %6s ns   hosted %4s instr   minimal %4s instr\n' \
            "$name" "$ticks" "${ns#(}" "${hosted:--}" "${minimal:--}"
    done
    if [ "$cfg" = stack-overflow ]; then
        # The misuse run: status 3 (QEMU's 7) and the report, nothing else.
        if [ "$rc" -ne 7 ] || ! grep -q 'kernel stack overflow (double-fault)' "$log"; then
            echo "boot.sh: $cfg FAILED: the overflow was not reported (QEMU exit status $rc; serial log $log)" >&2
            failed=1
        fi
    elif [ "$rc" -ne 1 ] || ! grep -qE '^[0-9]+ passed, 0 failed' "$log"; then
        echo "boot.sh: $cfg FAILED (QEMU exit status $rc; serial log $log)" >&2
        failed=1
    fi
done
echo "boot.sh: ${#configs[@]} configuration(s) in $((SECONDS - start)) s"
exit $failed
