//! The multi-threaded workloads of the `threads` bench: more threads than the machine has
//! cores, each allocator called through its `GlobalAlloc` from every thread, blocks of random
//! sizes from [`MT_MIN`] to [`MT_MAX`] bytes (uniform), the first bytes of each written.
//!
//! - [`MtWorkload::Larson`], a server: [`LARSON_SLOTS`] slots per thread, all shared; each
//!   step picks a random slot of any thread, allocates a new block, swaps it in (an atomic
//!   exchange) and frees the block it took out, which most of the time another thread
//!   allocated (with `t` threads, `(t - 1) / t` of the frees cross threads). After Larson and
//!   Krishnan's benchmark, where server threads free what other threads allocated.
//! - [`MtWorkload::Threadtest`]: every thread allocates [`THREADTEST_BLOCKS`] blocks, then
//!   frees them in the same order, again and again; nothing is shared (after Hoard's
//!   `threadtest`).
//! - [`MtWorkload::ThreadChurn`]: a pool that keeps creating and exiting threads. `t` lanes
//!   each spawn a short-lived worker and join it, in a loop; a worker makes
//!   [`CHURN_WORKER_PAIRS`] allocations and frees ([`CHURN_ROUNDS`] rounds of
//!   [`CHURN_BATCH`] blocks) and exits. The cost of a thread's start and exit is part of it:
//!   for kmem, a worker takes a CPU at its first allocation and gives it back, caches
//!   drained, at exit. The lanes themselves never call the allocator under test (thread
//!   creation's own allocations go to the binary's global allocator, glibc, for every peer).
//!
//! Each run lasts a given time: the threads first set up (fill their slots, draw their sizes)
//! and meet at a barrier; the clock runs from there until every thread has seen the stop flag
//! and finished its current batch; cleanup (the larson slots still full) is outside it. The
//! result is a count of alloc + free pairs in that time.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::Instant;

use super::workloads::{get, layout};
use super::*;

/// Smallest block of the multi-threaded workloads and of [`Workload::Churn`].
pub const MT_MIN: usize = 8;
/// Largest block.
pub const MT_MAX: usize = 1000;
/// Thread counts of the `threads` bench (the machine this was written on has 2 cores).
pub const MT_THREADS: [usize; 3] = [2, 4, 8];
/// Larson slots per thread.
pub const LARSON_SLOTS: usize = 1000;
/// Steps of a larson thread between two looks at the stop flag.
const LARSON_BATCH: usize = 64;
/// Blocks a threadtest thread holds before freeing them.
pub const THREADTEST_BLOCKS: usize = 1000;
/// Blocks a churn worker holds at once.
pub const CHURN_BATCH: usize = 100;
/// Rounds of a churn worker.
pub const CHURN_ROUNDS: usize = 20;
/// Alloc + free pairs of one churn worker.
pub const CHURN_WORKER_PAIRS: usize = CHURN_BATCH * CHURN_ROUNDS;

/// A multi-threaded workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtWorkload {
    /// Blocks freed by other threads than their allocator's.
    Larson,
    /// Every thread allocates and frees its own blocks.
    Threadtest,
    /// Short-lived threads, created and exiting all the time.
    ThreadChurn,
}

impl MtWorkload {
    /// Every workload, in table order.
    pub const ALL: [MtWorkload; 3] = [MtWorkload::Larson, MtWorkload::Threadtest, MtWorkload::ThreadChurn];

    /// Its name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MtWorkload::Larson => "larson",
            MtWorkload::Threadtest => "threadtest",
            MtWorkload::ThreadChurn => "thread_churn",
        }
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct MtResult {
    /// Alloc + free pairs.
    pub pairs: u64,
    /// Threads that ran to their end inside the timed part ([`MtWorkload::ThreadChurn`]).
    pub threads: u64,
    /// The timed part.
    pub elapsed: Duration,
}

impl MtResult {
    /// Millions of pairs per second.
    pub fn mpairs_per_s(&self) -> f64 {
        self.pairs as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    /// Thousands of threads started and ended per second.
    pub fn kthreads_per_s(&self) -> f64 {
        self.threads as f64 / self.elapsed.as_secs_f64() / 1e3
    }
}

/// Runs `w` with `threads` threads on `peer` for about `time`.
///
/// # Panics
///
/// If an allocation fails, or `threads` is 0.
pub fn run_mt(peer: Peer, w: MtWorkload, threads: usize, time: Duration) -> MtResult {
    assert!(threads > 0, "at least one thread");
    crate::with_peer!(peer, |a| match w {
        MtWorkload::Larson => larson(a, threads, time),
        MtWorkload::Threadtest => threadtest(a, threads, time),
        MtWorkload::ThreadChurn => thread_churn(a, threads, time),
    })
}

/// xorshift64*: cheap enough not to weigh on the fastest allocator's figures, the same for
/// every peer.
#[derive(Clone, Debug)]
pub struct Rng64(u64);

impl Rng64 {
    /// A generator from a seed (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (multiply-shift; `n` well below 2^32).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
    /// A block size, uniform in `MT_MIN..=MT_MAX`.
    #[inline]
    pub fn size(&mut self) -> usize {
        MT_MIN + self.below(MT_MAX - MT_MIN + 1)
    }
}

/// Allocates `size` bytes and writes the size in the block's first four bytes (the block is
/// used, and whoever frees it knows its layout).
#[inline(always)]
fn new_block<A: GlobalAlloc>(a: &A, size: usize) -> *mut u8 {
    let p = get(a, layout(size));
    // SAFETY: a fresh block of at least MT_MIN (8) bytes, 8-aligned.
    unsafe { p.cast::<u32>().write(size as u32) };
    p
}

/// Frees a block of [`new_block`].
///
/// # Safety
///
/// `p` comes from `new_block(a, _)`, is freed once, and the write of its size happened
/// before (same thread, or published with release ordering).
#[inline(always)]
unsafe fn free_block<A: GlobalAlloc>(a: &A, p: *mut u8) {
    // SAFETY: the caller's contract: a live block of `new_block`, its size in front.
    unsafe {
        let size = p.cast::<u32>().read() as usize;
        a.dealloc(p, layout(size));
    }
}

/// The clock of one run: started when every thread is ready, read when every thread has
/// stopped.
struct Clock {
    ready: Barrier,
    done: Barrier,
    stop: AtomicBool,
    pairs: AtomicU64,
    threads: AtomicU64,
}

impl Clock {
    fn new(threads: usize) -> Self {
        Self {
            ready: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            stop: AtomicBool::new(false),
            pairs: AtomicU64::new(0),
            threads: AtomicU64::new(0),
        }
    }

    /// The main thread's part: waits for the threads, lets them run `time`, waits for them
    /// to stop.
    fn time(&self, time: Duration) -> MtResult {
        self.ready.wait();
        let t0 = Instant::now();
        std::thread::sleep(time);
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        let elapsed = t0.elapsed();
        MtResult { pairs: self.pairs.load(Ordering::Relaxed), threads: self.threads.load(Ordering::Relaxed), elapsed }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// A thread's end of the timed part.
    fn finish(&self, pairs: u64) {
        self.pairs.fetch_add(pairs, Ordering::Relaxed);
        self.done.wait();
    }
}

fn larson<A: GlobalAlloc + Sync>(a: &A, threads: usize, time: Duration) -> MtResult {
    let slots: Vec<AtomicPtr<u8>> = (0..threads * LARSON_SLOTS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
    let clock = Clock::new(threads);
    let result = std::thread::scope(|s| {
        for t in 0..threads {
            let (slots, clock) = (&slots, &clock);
            s.spawn(move || {
                let mut rng = Rng64::new(0x6c61_7273 + t as u64);
                for slot in &slots[t * LARSON_SLOTS..(t + 1) * LARSON_SLOTS] {
                    slot.store(new_block(a, rng.size()), Ordering::Release);
                }
                clock.ready.wait();
                let mut pairs = 0u64;
                while clock.running() {
                    for _ in 0..LARSON_BATCH {
                        let i = rng.below(slots.len());
                        let p = new_block(a, rng.size());
                        let old = slots[i].swap(p, Ordering::AcqRel);
                        // SAFETY: every slot holds a block of `new_block` from the fill before
                        // the barrier on; the exchange gives it to this thread alone, and its
                        // acquire half sees the size written before the release that stored it.
                        unsafe { free_block(a, old) };
                    }
                    pairs += LARSON_BATCH as u64;
                }
                clock.finish(pairs);
            });
        }
        clock.time(time)
    });
    for slot in &slots {
        // SAFETY: every thread has ended; each slot holds one live block of `new_block`.
        unsafe { free_block(a, slot.load(Ordering::Acquire)) };
    }
    result
}

fn threadtest<A: GlobalAlloc + Sync>(a: &A, threads: usize, time: Duration) -> MtResult {
    let clock = Clock::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let clock = &clock;
            s.spawn(move || {
                let mut rng = Rng64::new(0x7474_6573 + t as u64);
                let sizes: Vec<usize> = (0..THREADTEST_BLOCKS).map(|_| rng.size()).collect();
                let mut blocks = vec![std::ptr::null_mut::<u8>(); THREADTEST_BLOCKS];
                clock.ready.wait();
                let mut pairs = 0u64;
                let mut round = 0usize;
                while clock.running() {
                    for (i, b) in blocks.iter_mut().enumerate() {
                        *b = new_block(a, sizes[(i + round) % THREADTEST_BLOCKS]);
                    }
                    for &b in &blocks {
                        // SAFETY: allocated just above by new_block, freed once.
                        unsafe { free_block(a, b) };
                    }
                    pairs += THREADTEST_BLOCKS as u64;
                    round += 1;
                }
                clock.finish(pairs);
            });
        }
        clock.time(time)
    })
}

/// Block sizes of the churn workers: one table for all, each worker starting elsewhere.
fn churn_sizes() -> &'static [u16] {
    static SIZES: OnceLock<Vec<u16>> = OnceLock::new();
    SIZES.get_or_init(|| {
        let mut rng = Rng64::new(0x6368_7572);
        (0..4096).map(|_| rng.size() as u16).collect()
    })
}

/// One short-lived worker of [`MtWorkload::ThreadChurn`].
fn churn_worker<A: GlobalAlloc>(a: &A, start: usize) {
    let sizes = churn_sizes();
    let mut blocks = [std::ptr::null_mut::<u8>(); CHURN_BATCH];
    let mut k = start;
    for _ in 0..CHURN_ROUNDS {
        for b in &mut blocks {
            *b = new_block(a, usize::from(sizes[k % sizes.len()]));
            k += 1;
        }
        for &b in &blocks {
            // SAFETY: allocated just above by new_block, freed once.
            unsafe { free_block(a, b) };
        }
    }
}

fn thread_churn<A: GlobalAlloc + Sync>(a: &A, lanes: usize, time: Duration) -> MtResult {
    // Make the table before the clock runs, in the binary's global allocator.
    churn_sizes();
    let clock = Clock::new(lanes);
    std::thread::scope(|s| {
        for lane in 0..lanes {
            let clock = &clock;
            s.spawn(move || {
                clock.ready.wait();
                let mut workers = 0u64;
                while clock.running() {
                    let start = (lane * 977 + workers as usize * 131) % churn_sizes().len();
                    std::thread::scope(|w| {
                        w.spawn(|| churn_worker(a, start));
                    });
                    workers += 1;
                }
                clock.threads.fetch_add(workers, Ordering::Relaxed);
                clock.finish(workers * CHURN_WORKER_PAIRS as u64);
            });
        }
        clock.time(time)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_sizes_cover_the_range() {
        let mut r = Rng64::new(1);
        let (mut lo, mut hi) = (usize::MAX, 0);
        for _ in 0..100_000 {
            let s = r.size();
            lo = lo.min(s);
            hi = hi.max(s);
        }
        assert_eq!((lo, hi), (MT_MIN, MT_MAX));
        assert!((0..1000).all(|_| r.below(7) < 7));
    }

    #[test]
    fn every_mt_workload_runs_on_every_peer() {
        for peer in Peer::ALL {
            for w in MtWorkload::ALL {
                let r = run_mt(peer, w, 3, Duration::from_millis(5));
                assert!(r.pairs > 0, "{} {}", peer.name(), w.name());
                assert!(r.elapsed >= Duration::from_millis(5));
                assert_eq!(r.threads > 0, w == MtWorkload::ThreadChurn, "{} {}", peer.name(), w.name());
            }
        }
    }
}
