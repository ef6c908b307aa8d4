//! Grace-period detection: per-CPU reader words and the grace-period sequence (Linux's
//! `rcu_seq_*` helpers of `kernel/rcu/rcu.h`, and the quiescent-state snapshot that
//! `kernel/rcu/tree.c` takes with `rcu_dynticks_snap` for idle CPUs).
//!
//! # The reader word
//!
//! Each CPU has one `AtomicU64`: the read-side nesting depth in bits 0..16 and, above it, the
//! number of outermost read-side sections the CPU has *left*. A reader owns its CPU for the
//! whole section (a section is a preempt-off section on the platform), so only that CPU (and
//! an interrupt handler nesting on it, which leaves what it entered) ever writes the word:
//! `enter` adds 1 and then issues a full fence; the outermost `exit` adds `EXIT - 1` with
//! `Release`.
//!
//! # The grace period
//!
//! `seq` counts grace periods as Linux's `rcu_state.gp_seq` does: twice the number of
//! completed grace periods, plus 1 while one is in progress. A waiter takes a snapshot
//! ([`GpState::snap`]: the value of `seq` once a grace period that starts *after* the snapshot
//! has ended), asks for it ([`GpState::request`]) and polls ([`GpState::done`]), driving the
//! engine with [`GpState::advance`] (which only one CPU at a time runs: a try-lock; the
//! others return and poll again).
//!
//! Starting a grace period: store `seq` odd, full fence, then read each CPU's word: a CPU at
//! depth 0 is quiescent already; otherwise remember its count of sections left. A later
//! `advance` finds the CPU quiescent once its depth is 0 or its count has moved: the reader
//! that was in its section at the start has left it. When every CPU is quiescent `seq`
//! becomes even again (`Release`): the grace period has ended.
//!
//! Why a reader that started before the grace period finishes before its end: the updater
//! unpublished the object and then took its snapshot behind a full fence; the grace period
//! started after that snapshot (the snapshot read `seq` before the starter's store), and the
//! starter fences before it reads the reader words. A reader fences after raising its depth,
//! then reads the shared pointer. Of the two fenced pairs (store; fence; load), one sees the
//! other's store: either the starter sees the reader's depth (and waits for its `exit`, whose
//! `Release` the `Acquire` load that sees it synchronises with), or the reader sees the
//! unpublished pointer and never reaches the object. The loom model (`loom_tests.rs`) checks
//! exactly this on this type.

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering, RawSpinLock};

/// Depth bits of a reader word.
const DEPTH_MASK: u64 = 0xffff;
/// One section left, in a reader word.
const EXIT: u64 = 1 << 16;
/// A CPU's snapshot once it has passed a quiescent state in the current grace period (the
/// others hold their count of sections left plus one, so that an all-zero state is valid).
const QUIESCENT: u64 = 0;

/// Why `exit` refused: the CPU was not in a read-side section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unbalanced;

/// One CPU's part of the grace-period state. All-zero is its initial value.
#[derive(Debug, Default)]
pub(crate) struct GpCpu {
    /// The reader word: depth in bits 0..16, sections left above.
    reader: AtomicU64,
    /// The CPU's count of sections left when the running grace period began, plus one, or
    /// [`QUIESCENT`]. Written under the grace-period lock.
    snap: AtomicU64,
}

impl GpCpu {
    /// `rcu_read_lock()` on this CPU, which the caller holds (preemption off). Returns the
    /// new depth.
    #[inline]
    pub(crate) fn enter(&self) -> u64 {
        let v = self.reader.fetch_add(1, Ordering::Relaxed) + 1;
        // The reader's store before its loads of protected data (see the module docs).
        fence(Ordering::SeqCst);
        v & DEPTH_MASK
    }

    /// [`GpCpu::enter`] without its fence: the broken reader of the negative loom model.
    #[cfg(all(test, loom))]
    pub(crate) fn enter_unfenced(&self) {
        self.reader.fetch_add(1, Ordering::Relaxed);
    }

    /// `rcu_read_unlock()` on this CPU, which the caller holds.
    #[inline]
    pub(crate) fn exit(&self) -> Result<(), Unbalanced> {
        let w = &self.reader;
        match w.load(Ordering::Relaxed) & DEPTH_MASK {
            0 => Err(Unbalanced),
            1 => {
                // Leaves the outermost section: depth 0 and one more section left, at once.
                w.fetch_add(EXIT - 1, Ordering::Release);
                Ok(())
            }
            _ => {
                w.fetch_sub(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// The read-side depth (`rcu_read_lock_held()` when asked by the CPU's holder).
    #[inline]
    pub(crate) fn depth(&self) -> u64 {
        self.reader.load(Ordering::Relaxed) & DEPTH_MASK
    }
}

/// The machine-wide grace-period state. All-zero is its initial value.
///
/// The sequence numbers are 32 bits, compared modulo 2^32 as Linux compares its `unsigned
/// long` ones (`ULONG_CMP_GE`): a snapshot is judged right while fewer than 2^30 grace
/// periods separate it from the present. They are small because this state lives in the
/// machine state, whose size boot's metadata budget counts.
#[derive(Debug, Default)]
pub(crate) struct GpState {
    /// Serialises [`GpState::advance`] (taken with a try-lock, never waited for).
    lock: RawSpinLock,
    /// `gp_seq`: 2 × completed grace periods, + 1 while one runs (mod 2^32).
    seq: AtomicU32,
    /// The highest snapshot a waiter asked for (`gp_seq_needed`).
    need: AtomicU32,
}

/// `ULONG_CMP_GE(a, b)` for 32-bit sequence numbers.
#[inline]
fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) <= u32::MAX / 2
}

impl GpState {
    /// `rcu_seq_snap()`: the value `seq` reaches once a full grace period that begins after
    /// this call has ended. Fenced after the caller's unpublishing stores.
    #[inline]
    pub(crate) fn snap(&self) -> u32 {
        fence(Ordering::SeqCst);
        self.seq.load(Ordering::Acquire).wrapping_add(3) & !1
    }

    /// `rcu_seq_done()`: whether the grace periods `snap` waits for have ended.
    #[inline]
    pub(crate) fn done(&self, snap: u32) -> bool {
        seq_ge(self.seq.load(Ordering::Acquire), snap)
    }

    /// Grace periods completed so far (mod 2^31).
    pub(crate) fn completed(&self) -> u64 {
        u64::from(self.seq.load(Ordering::Acquire) / 2)
    }

    /// Asks for the grace periods that end at `snap`.
    #[inline]
    pub(crate) fn request(&self, snap: u32) {
        let mut cur = self.need.load(Ordering::Relaxed);
        while !seq_ge(cur, snap) {
            match self.need.compare_exchange_weak(cur, snap, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(v) => cur = v,
            }
        }
    }

    /// Drives the engine once over the CPUs `cpu(0..nr)`: notes their quiescent states, ends
    /// the running grace period if all have passed one, and starts the next if a waiter
    /// needs it. Does nothing when another CPU is advancing (the caller polls again).
    pub(crate) fn advance<'a>(&self, nr: usize, cpu: impl Fn(usize) -> &'a GpCpu) {
        if !self.lock.try_lock_raw() {
            return;
        }
        let mut s = self.seq.load(Ordering::Relaxed);
        for _ in 0..2 {
            if s & 1 == 1 {
                if !Self::scan(nr, &cpu) {
                    break;
                }
                s = s.wrapping_add(1);
                self.seq.store(s, Ordering::Release);
            }
            if seq_ge(s, self.need.load(Ordering::Acquire)) {
                break;
            }
            // Start the next grace period.
            s = s.wrapping_add(1);
            self.seq.store(s, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            for i in 0..nr {
                let c = cpu(i);
                let v = c.reader.load(Ordering::Acquire);
                let snap = if v & DEPTH_MASK == 0 { QUIESCENT } else { (v >> 16) + 1 };
                c.snap.store(snap, Ordering::Relaxed);
            }
        }
        self.lock.unlock();
    }

    /// Notes quiescent states; true when every CPU has passed one.
    fn scan<'a>(nr: usize, cpu: &impl Fn(usize) -> &'a GpCpu) -> bool {
        let mut all = true;
        for i in 0..nr {
            let c = cpu(i);
            let snap = c.snap.load(Ordering::Relaxed);
            if snap == QUIESCENT {
                continue;
            }
            let v = c.reader.load(Ordering::Acquire);
            if v & DEPTH_MASK == 0 || (v >> 16) + 1 != snap {
                c.snap.store(QUIESCENT, Ordering::Relaxed);
            } else {
                all = false;
            }
        }
        all
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn cpus<const N: usize>() -> (GpState, [GpCpu; N]) {
        (GpState::default(), core::array::from_fn(|_| GpCpu::default()))
    }

    #[test]
    fn a_grace_period_waits_for_a_reader_present_at_its_start() {
        let (g, c) = cpus::<2>();
        let adv = || g.advance(2, |i| &c[i]);
        assert_eq!(c[1].enter(), 1);
        let s = g.snap();
        g.request(s);
        adv();
        assert!(!g.done(s), "CPU 1 is still in the section that began before the grace period");
        assert_eq!(c[1].enter(), 2);
        c[1].exit().unwrap();
        adv();
        assert!(!g.done(s), "leaving a nested section is not a quiescent state");
        c[1].exit().unwrap();
        adv();
        assert!(g.done(s));
        assert_eq!(g.completed(), 1);
    }

    #[test]
    fn a_reader_that_left_and_came_back_is_quiescent() {
        let (g, c) = cpus::<2>();
        c[0].enter();
        let s = g.snap();
        g.request(s);
        g.advance(2, |i| &c[i]);
        c[0].exit().unwrap();
        c[0].enter();
        g.advance(2, |i| &c[i]);
        assert!(g.done(s), "the CPU left its section since the grace period began");
        c[0].exit().unwrap();
    }

    #[test]
    fn snapshots_taken_during_a_grace_period_wait_for_the_next() {
        let (g, c) = cpus::<1>();
        c[0].enter();
        let s1 = g.snap();
        g.request(s1);
        g.advance(1, |i| &c[i]); // starts grace period 1, CPU 0 not yet quiescent
        let s2 = g.snap();
        assert_eq!(s2, s1 + 2, "a grace period already running cannot serve a later snapshot");
        g.request(s2);
        c[0].exit().unwrap();
        g.advance(1, |i| &c[i]);
        assert!(g.done(s1) && g.done(s2), "ends 1 and runs 2 with no reader");
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert!(seq_ge(2, u32::MAX - 1));
        assert!(!seq_ge(u32::MAX - 1, 2));
        let (g, c) = cpus::<1>();
        g.seq.store(u32::MAX - 2, Ordering::Relaxed);
        g.need.store(u32::MAX - 2, Ordering::Relaxed);
        for _ in 0..4 {
            let s = g.snap();
            g.request(s);
            g.advance(1, |i| &c[i]);
            assert!(g.done(s), "a grace period across the wrap of the sequence ended");
        }
    }

    #[test]
    fn unlock_without_lock_is_refused() {
        let c = GpCpu::default();
        assert_eq!(c.exit(), Err(Unbalanced));
        assert_eq!(c.depth(), 0);
    }
}
