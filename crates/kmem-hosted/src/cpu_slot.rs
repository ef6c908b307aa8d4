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
//! thread numbered past [`MAX_TAG`]) and a depth, 1 while held, 0 when the CPU is free
//! (whatever the tag bits then say); the holder counts its nesting in its own table
//! (`cpus/mod.rs`). The **fast pin** (`Platform::try_pin_cpu`, and `pin_cpu`'s first try,
//! of a thread that holds no CPU of any shared machine) takes a free CPU with one
//! compare-exchange and records nothing in the thread's table; a section nested inside it
//! finds the CPU held by its own tag ([`Slot::held_as`]) and enters it in the table as
//! nested. Its end stores 0 into the word (`Release`) with the very instructions that end
//! an owned CPU's fast section (`cpu_owner.rs`: its fast word sits at offset 0 too, the
//! CPU's number after it), so `unpin_cpu_fast` needs no branch on the model; [`leave`]
//! decrements the word a token names (for an owned CPU's careful pin, its depth word, with
//! a copy of the CPU's number after it). A thread reads its own tag with depth 1 only while it holds the CPU:
//! only the holder writes a word with its tag, and a thread reads its own last write or a
//! later one.
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

/// The low bit of the word: held (1) or free (0). (A "depth" so that ending a fast pin is
/// the owned CPUs' decrement.)
const DEPTH_BITS: u32 = 1;
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
    /// The CPU's number (what a fast pin returns).
    cpu: u32,
    /// An overflow CPU's state (`cpus/overflow.rs`): [`DOWN`] until a thread first needs it,
    /// [`COMING_UP`] while that thread runs its CPU-online preparation, [`UP`] after.
    /// A shared machine's CPUs are up from the start.
    up: AtomicU32,
    _pad: [u32; 7],
    /// The CPU's area word (`Platform::set_cpu_area`), at [`AREA_OFFSET`] as an owned CPU's.
    pub(crate) area: std::sync::atomic::AtomicUsize,
}

/// [`Slot::up`]: not online yet.
const DOWN: u32 = 0;
/// [`Slot::up`]: online (`cpu_online`), its preparation under way.
const COMING_UP: u32 = 1;
/// [`Slot::up`]: online and prepared.
const UP: u32 = 2;

/// A pin's word (the facade's `AtomicU32`): what a pin's token points at.
pub(crate) type Word = AtomicU32;

/// Where a pin's token (a [`Slot`], an owned CPU: `cpu_owner.rs`, whose careful pins'
/// tokens are its depth word, `DEPTH_OFFSET` further) keeps its word and its CPU's number,
/// relative to the token: the same in all, so that ending a pin and reading its CPU take the
/// same instructions whichever model pinned.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const WORD_OFFSET: usize = 0;
pub(crate) const CPU_OFFSET: usize = 4;
/// Where a fast pin's token (a [`Slot`], an owned CPU's fast word) keeps its CPU's area
/// word (kmem's fast table of the CPU: `Platform::try_pin_cpu_area`): on the line the pin
/// writes anyway.
pub(crate) const AREA_OFFSET: usize = 40;

// (Loom's atomics are larger: under the models, which never pin through a token, the
// layout differs.)
#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::offset_of!(Slot, owner) == WORD_OFFSET);
    assert!(core::mem::offset_of!(Slot, cpu) == CPU_OFFSET);
    assert!(core::mem::offset_of!(Slot, area) == AREA_OFFSET);
};

/// The area word of a fast pin's CPU.
///
/// # Safety
///
/// `token` is a live fast pin's token (what `try_pin_fast` returns): the address of a
/// [`Slot`] or of an owned CPU, both of which keep the word at [`AREA_OFFSET`].
#[inline(always)]
pub(crate) unsafe fn pinned_area(token: usize) -> usize {
    // SAFETY: the caller's contract (the offsets are checked above and in `cpu_owner.rs`).
    unsafe { &*((token + AREA_OFFSET) as *const std::sync::atomic::AtomicUsize) }.load(Ordering::Relaxed)
}

/// The CPU number of a fast pin's token.
///
/// # Safety
///
/// `token` is a live pin's token: the address of a [`Slot`], of an owned CPU (its fast
/// word), or of an owned CPU's depth word (what `pin`, `try_pin_fast` and `try_pin_alone`
/// return).
#[inline(always)]
pub(crate) unsafe fn pinned_cpu(token: usize) -> u32 {
    // SAFETY: the caller's contract; each keeps the CPU's number, never written after
    // construction, at `CPU_OFFSET` from the token (checked above and in `cpu_owner.rs`).
    unsafe { *((token + CPU_OFFSET) as *const u32) }
}

/// Ends a section by the word its token names: a shared slot's word, an owned CPU's fast
/// word (both at offset 0 of their CPU) or depth word: one load, one `Release` store of one
/// less.
/// Only the holder writes the word meanwhile.
#[inline(always)]
pub(crate) fn leave(word: &AtomicU32) {
    let d = word.load(Ordering::Relaxed);
    debug_assert!(d > 0, "section exit without enter");
    word.store(d.wrapping_sub(1), Ordering::Release);
}

/// Ends a fast pin by its word: a shared slot's taken from free by [`Slot::try_take`], an
/// owned CPU's fast word set by `OwnedCpu::try_enter`, both 1:
/// one `Release` store of 0, no load (a decrement would make the next section's store wait
/// for this one's, through memory: `cpu_owner.rs`). A shared slot's word loses its
/// holder's tag with its depth: free either way.
#[inline(always)]
pub(crate) fn leave_outermost(word: &AtomicU32) {
    debug_assert_eq!(word.load(Ordering::Relaxed) & DEPTH_MASK, 1, "not an outermost section");
    word.store(0, Ordering::Release);
}

impl Slot {
    /// CPU `cpu`'s slot, free.
    pub(crate) fn new(cpu: u32) -> Self {
        Self {
            owner: AtomicU32::new(0),
            cpu,
            up: AtomicU32::new(UP),
            _pad: [0; 7],
            area: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The CPU's number.
    #[inline(always)]
    pub(crate) fn cpu(&self) -> u32 {
        self.cpu
    }

    /// A slot that starts [`DOWN`] (an overflow CPU, brought up by [`Slot::bring_up`]).
    pub(crate) fn new_down(cpu: u32) -> Self {
        let s = Self::new(cpu);
        s.up.store(DOWN, Ordering::Relaxed);
        s
    }

    /// Whether the CPU is online ([`COMING_UP`] or [`UP`]).
    #[inline]
    pub(crate) fn online(&self) -> bool {
        self.up.load(Ordering::Acquire) != DOWN
    }

    /// Brings the CPU up before its first use: the first caller runs `prepare` (the
    /// CPU-online preparation) with the CPU already online ([`COMING_UP`]: `cpu_online`
    /// says so, as for an owned CPU whose thread has claimed it), then marks it [`UP`];
    /// a caller that comes meanwhile waits for that. Everything `prepare` wrote
    /// happens-before any caller's return (`Release` store of `UP`, `Acquire` loads). One
    /// load once up. Loom-checked (`cpu_slot/loom_tests.rs`).
    #[inline]
    pub(crate) fn bring_up(&self, prepare: impl FnOnce()) {
        if self.up.load(Ordering::Acquire) != UP {
            self.bring_up_slow(prepare);
        }
    }

    #[cold]
    fn bring_up_slow(&self, prepare: impl FnOnce()) {
        if self.up.compare_exchange(DOWN, COMING_UP, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            prepare();
            self.up.store(UP, Ordering::Release);
            return;
        }
        while self.up.load(Ordering::Acquire) != UP {
            yield_now();
        }
    }

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
    /// slot's word (the slot's address: it is at offset 0); sections nested inside find it
    /// with [`Slot::held_as`].
    #[inline(always)]
    pub(crate) fn try_take(&self, held: u32) -> bool {
        let w = self.owner.load(Ordering::Relaxed);
        is_free(w) && self.owner.compare_exchange(w, held, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Whether the thread whose [`held_word`] is `held` holds this CPU (by a fast pin, or a
    /// section of its table); always false for a thread without a tag.
    #[inline]
    pub(crate) fn held_as(&self, held: u32) -> bool {
        let w = self.owner.load(Ordering::Relaxed);
        held >> DEPTH_BITS != 0 && w >> DEPTH_BITS == held >> DEPTH_BITS && !is_free(w)
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
