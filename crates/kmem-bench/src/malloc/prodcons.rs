//! The producer/consumer workload: every free crosses threads.

use super::workloads::{get, layout};
use super::*;

// ---------------------------------------------------------------------------------------
// Cross-thread frees.

const RING: usize = 1024;

struct Ring {
    slots: [AtomicUsize; RING],
    /// Blocks published by the producer.
    tail: AtomicUsize,
    /// Blocks freed by the consumer.
    head: AtomicUsize,
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A producer thread allocates `blocks` blocks of [`PRODCONS_SIZE`] bytes from `peer` and
/// passes them in batches of [`PRODCONS_BATCH`] through a 1024-slot ring to a consumer thread
/// that frees them. Returns the time from the producer's first allocation to the consumer's
/// last free. Where the host has two CPUs or more, the producer runs on host CPU 0 and the
/// consumer on host CPU 1 (`sched_setaffinity`); kmem's threads are not pinned to kmem CPUs
/// (a program using `KmemAlloc` does not do that).
pub fn prodcons(peer: Peer, blocks: usize) -> Duration {
    crate::with_peer!(peer, |a| prodcons_on(a, blocks))
}

fn prodcons_on<A: GlobalAlloc + Sync>(a: &A, total: usize) -> Duration {
    let ring = Ring {
        slots: std::array::from_fn(|_| AtomicUsize::new(0)),
        tail: AtomicUsize::new(0),
        head: AtomicUsize::new(0),
    };
    let barrier = Barrier::new(2);
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let l = layout(PRODCONS_SIZE);
    let (ring, barrier) = (&ring, &barrier);
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            if host_cpus >= 2 {
                pin_host_cpu(0);
            }
            barrier.wait();
            let start = Instant::now();
            let (mut head, mut tail) = (0, 0);
            while tail < total {
                let end = (tail + PRODCONS_BATCH).min(total);
                let mut spins = 0;
                while end - head > RING {
                    head = ring.head.load(Ordering::Acquire);
                    backoff(&mut spins);
                }
                for i in tail..end {
                    ring.slots[i % RING].store(get(a, l) as usize, Ordering::Relaxed);
                }
                tail = end;
                ring.tail.store(tail, Ordering::Release);
            }
            start
        });
        let consumer = s.spawn(move || {
            if host_cpus >= 2 {
                pin_host_cpu(1);
            }
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
                    let p = ring.slots[i % RING].load(Ordering::Relaxed) as *mut u8;
                    // SAFETY: the producer stored a block it allocated from `a` with `l` in
                    // this slot before publishing `tail` (release/acquire); each is freed once.
                    unsafe { a.dealloc(p, l) };
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
