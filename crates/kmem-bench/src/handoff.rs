//! The producer/consumer handoff shared by the cross-thread free benchmarks (`slab`'s
//! `remote_free`, `malloc`'s `prodcons`): a producer thread allocates, passes the blocks in
//! batches through a 1024-slot single-producer single-consumer ring, and a consumer thread
//! frees them, so every free crosses threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::scaling::pin_host_cpu;

/// Slots of the ring.
pub const RING: usize = 1024;

/// Where a side of the handoff runs: a host CPU (`sched_setaffinity`) and a hosted kmem CPU
/// (`kmem_hosted::pin_current_thread`), each optional.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    /// Host CPU (taken modulo the host's CPUs).
    pub host_cpu: Option<usize>,
    /// kmem CPU of the thread.
    pub kmem_cpu: Option<u32>,
}

impl Side {
    fn pin(self) {
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(c) = self.host_cpu {
            pin_host_cpu(c % host_cpus);
        }
        if let Some(c) = self.kmem_cpu {
            kmem_hosted::pin_current_thread(c);
        }
    }
}

/// A single-producer, single-consumer ring of addresses. The producer publishes `tail` once
/// per batch; the consumer publishes `head` once per run of blocks it freed.
struct Ring {
    slots: Box<[AtomicUsize]>,
    head: AtomicUsize,
    tail: AtomicUsize,
}

/// Waits a little: spins first, then yields the host CPU (a two-core machine shared with
/// other work must not be starved by a spinning thread).
#[inline]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Hands `total` blocks from `alloc` (on the producer, after `warm`) to `free` (on the
/// consumer), `batch` at a time. Every address `alloc` returns reaches `free` exactly once,
/// after it was published with release/acquire ordering. Returns the time from the
/// producer's first allocation to the consumer's last free.
///
/// # Panics
///
/// If `batch` is 0 or above [`RING`], or a closure panics.
pub fn handoff(
    total: usize,
    batch: usize,
    sides: (Side, Side),
    warm: impl FnOnce() + Send,
    mut alloc: impl FnMut() -> usize + Send,
    mut free: impl FnMut(usize) + Send,
) -> Duration {
    assert!(batch > 0 && batch <= RING, "batch of 1..={RING} blocks");
    let ring = Ring {
        slots: (0..RING).map(|_| AtomicUsize::new(0)).collect(),
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
    };
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let (ring, barrier) = (&ring, &barrier);
        let producer = s.spawn(move || {
            sides.0.pin();
            warm();
            barrier.wait();
            let start = Instant::now();
            let (mut head, mut tail) = (0, 0);
            while tail < total {
                let end = (tail + batch).min(total);
                let mut spins = 0;
                while end - head > RING {
                    head = ring.head.load(Ordering::Acquire);
                    backoff(&mut spins);
                }
                for i in tail..end {
                    ring.slots[i % RING].store(alloc(), Ordering::Relaxed);
                }
                tail = end;
                ring.tail.store(tail, Ordering::Release);
            }
            start
        });
        let consumer = s.spawn(move || {
            sides.1.pin();
            barrier.wait();
            let mut head = 0;
            while head < total {
                let mut spins = 0;
                let mut tail = ring.tail.load(Ordering::Acquire);
                while tail == head {
                    backoff(&mut spins);
                    tail = ring.tail.load(Ordering::Acquire);
                }
                for i in head..tail {
                    free(ring.slots[i % RING].load(Ordering::Relaxed));
                }
                head = tail;
                ring.head.store(head, Ordering::Release);
            }
            Instant::now()
        });
        let start = producer.join().expect("producer panicked");
        let end = consumer.join().expect("consumer panicked");
        end.saturating_duration_since(start)
    })
}
