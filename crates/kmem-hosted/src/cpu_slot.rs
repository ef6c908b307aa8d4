//! One hosted CPU's owner word: the protocol that makes a hosted critical section own its CPU.
//!
//! A thread's outermost `preempt_disable()` or `local_irq_save()` on a CPU takes the CPU's
//! slot with a compare-exchange from a free word to its own (`Acquire`), waiting while another
//! thread that shares the CPU holds it; nested sections only count depth; the outermost enable
//! stores a free word (`Release`). So at most one thread runs per-CPU code on a CPU at a time,
//! and everything one section wrote to the CPU's data happens-before the next section on that
//! CPU, whichever thread runs it: the guarantee per-CPU data (pagesets, `this_cpu_*` counters)
//! relies on. `cpus.rs` keeps each thread's depth per machine; this module is the part shared
//! between threads, and what the loom models (`cpu_slot/loom_tests.rs`, `scripts/loom.sh`)
//! check.
//!
//! The word is `tag << DEPTH_BITS | depth`: the holder's tag (its thread number, 0 for a
//! thread numbered past [`MAX_TAG`]) and a depth, 0 when the CPU is free (whatever the tag
//! bits then say). Sections entered through `cpus.rs`'s table keep depth 1 here and count
//! their nesting in the table. The **fast pin** (`Platform::try_pin_cpu` of a thread that
//! holds no CPU of any shared machine) takes a free CPU with one compare-exchange, records
//! nothing in the thread's table, and counts in the word itself the sections nested inside
//! it ([`Slot::nest_if_mine`], found by the tag); its end, [`leave`], decrements the word
//! (`Release`) with the very instructions that end an owned CPU's section (`cpu_owner.rs`,
//! whose depth word also sits at offset 0), so `unpin_cpu_fast` needs no branch on the model.
//! A thread reads its own tag with depth above 0 only while it holds the CPU: only the holder
//! writes a word with its tag, and a thread reads its own last write or a later one.
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

/// Low bits of the word: the depth of the fast pin's sections (1 for a held CPU otherwise).
const DEPTH_BITS: u32 = 8;
const DEPTH_MASK: u32 = (1 << DEPTH_BITS) - 1;
/// The largest tag: threads numbered beyond it hold CPUs with tag 0 and never fast-pin.
pub(crate) const MAX_TAG: u32 = u32::MAX >> DEPTH_BITS;

/// Thread `me`'s tag (0: none, for a thread numbered beyond [`MAX_TAG`]).
#[inline]
pub(crate) fn tag(me: u32) -> u32 {
    if me <= MAX_TAG {
        me
    } else {
        0
    }
}

/// The word of a CPU held at depth 1 by thread `me`.
#[inline]
pub(crate) fn held_word(me: u32) -> u32 {
    tag(me) << DEPTH_BITS | 1
}

#[inline(always)]
fn is_free(w: u32) -> bool {
    w & DEPTH_MASK == 0
}

/// One CPU: its holder and depth, free at depth 0. A cache line each; the word first (the
/// fast pin's token points at it).
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    owner: AtomicU32,
}

/// A depth word (the facade's `AtomicU32`): what a fast pin's token points at.
pub(crate) type Word = AtomicU32;

/// Ends a section by its depth word: a fast pin's slot word or an owned CPU's depth (both at
/// offset 0 of their CPU): one load, one `Release` store of one less. Only the holder writes
/// the word meanwhile.
#[inline(always)]
pub(crate) fn leave(word: &AtomicU32) {
    let d = word.load(Ordering::Relaxed);
    debug_assert!(d > 0, "section exit without enter");
    word.store(d.wrapping_sub(1), Ordering::Release);
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
        debug_assert_eq!(self.owner.load(Ordering::Relaxed), held_word(me), "a section runs on a CPU it does not own");
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
        self.try_take(held_word(me))
    }

    /// The fast pin: takes the free CPU as `held` ([`held_word`] of the caller) with one
    /// compare-exchange, no wait; false if anyone holds it. End it with [`leave`] on the
    /// slot's word (the slot's address: it is at offset 0); sections nested inside find it with [`Slot::nest_if_mine`].
    #[inline(always)]
    pub(crate) fn try_take(&self, held: u32) -> bool {
        let w = self.owner.load(Ordering::Relaxed);
        is_free(w) && self.owner.compare_exchange(w, held, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// A section of thread `me` with no entry in its table: if `me` holds this CPU by a fast
    /// pin, nests in it (one deeper) and returns true; else false (the CPU must be taken).
    pub(crate) fn nest_if_mine(&self, me: u32) -> bool {
        let t = tag(me);
        let w = self.owner.load(Ordering::Relaxed);
        if t == 0 || w >> DEPTH_BITS != t || is_free(w) {
            return false;
        }
        assert!(w & DEPTH_MASK < DEPTH_MASK, "sections nested more than 254 deep in a fast pin");
        self.owner.store(w + 1, Ordering::Relaxed);
        true
    }

    /// Ends a section [`Slot::nest_if_mine`] nested; false if `me` has none here.
    pub(crate) fn unnest_if_mine(&self, me: u32) -> bool {
        let t = tag(me);
        let w = self.owner.load(Ordering::Relaxed);
        if t == 0 || w >> DEPTH_BITS != t || w & DEPTH_MASK < 2 {
            return false;
        }
        self.owner.store(w - 1, Ordering::Relaxed);
        true
    }

    /// Whether thread `me` holds this CPU by a fast pin (or a section of its table).
    pub(crate) fn held_by(&self, me: u32) -> bool {
        let t = tag(me);
        let w = self.owner.load(Ordering::Relaxed);
        t != 0 && w >> DEPTH_BITS == t && !is_free(w)
    }

    fn acquire(&self, me: u32) {
        let held = held_word(me);
        let mut spins = 0u32;
        loop {
            let w = self.owner.load(Ordering::Relaxed);
            if is_free(w) && self.owner.compare_exchange_weak(w, held, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
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
