//! One hosted CPU's owner word: the protocol that makes a hosted critical section own its CPU.
//!
//! A thread's outermost `preempt_disable()` or `local_irq_save()` on a CPU takes the CPU's
//! slot with a compare-exchange from 0 to its thread number (`Acquire`), waiting while another
//! thread that shares the CPU holds it; nested sections only count depth; the outermost enable
//! stores 0 (`Release`). So at most one thread runs per-CPU code on a CPU at a time, and
//! everything one section wrote to the CPU's data happens-before the next section on that CPU,
//! whichever thread runs it: the guarantee per-CPU data (pagesets, `this_cpu_*` counters)
//! relies on. `cpus.rs` keeps each thread's depth per machine; this module is the part shared
//! between threads, and what the loom models (`cpu_slot/loom_tests.rs`, `scripts/loom.sh`)
//! check.
//!
//! Synchronisation goes through the facade below: std's atomics, or loom's under `cfg(loom)`.

#[cfg(not(loom))]
use std::{
    hint::spin_loop,
    sync::atomic::{AtomicU32, Ordering},
    thread::yield_now,
};

#[cfg(loom)]
use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicU32, Ordering},
    thread::yield_now,
};

/// Spins between yields while waiting for a slot.
const SPINS_PER_YIELD: u32 = 16;

/// One CPU: the thread number that owns it, 0 if none. A cache line each.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Slot {
    owner: AtomicU32,
}

impl Slot {
    /// Enters a critical section on this CPU as thread `me` (non-zero), whose sections on it
    /// are nested `depth` deep; returns the new depth. The outermost section (`depth` 0)
    /// waits for the CPU and takes it; nested ones already own it.
    #[inline]
    pub(crate) fn enter(&self, depth: u32, me: u32) -> u32 {
        if depth == 0 {
            self.acquire(me);
        }
        debug_assert_eq!(self.owner.load(Ordering::Relaxed), me, "a section runs on a CPU it does not own");
        depth + 1
    }

    /// Leaves a critical section nested `depth` deep (at least 1); returns the new depth. The
    /// outermost section gives the CPU back.
    #[inline]
    pub(crate) fn exit(&self, depth: u32) -> u32 {
        debug_assert!(depth > 0, "critical-section exit without enter");
        let depth = depth - 1;
        if depth == 0 {
            self.owner.store(0, Ordering::Release);
        }
        depth
    }

    /// Takes the free CPU for an outermost section of thread `me` without waiting; false if
    /// any thread (`me` included) holds it. Leave with [`Slot::exit`] at depth 1.
    #[inline]
    pub(crate) fn try_acquire(&self, me: u32) -> bool {
        self.owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn acquire(&self, me: u32) {
        let mut spins = 0u32;
        while self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins % SPINS_PER_YIELD == 0 {
                yield_now();
            } else {
                spin_loop();
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
