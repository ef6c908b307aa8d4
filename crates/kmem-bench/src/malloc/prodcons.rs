//! The producer/consumer workload: every free crosses threads.

use super::workloads::{get, layout};
use super::*;
use crate::handoff::{handoff, Side};

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
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let side = |c: usize| Side { host_cpu: (host_cpus >= 2).then_some(c), kmem_cpu: None };
    let l = layout(PRODCONS_SIZE);
    handoff(
        total,
        PRODCONS_BATCH,
        (side(0), side(1)),
        || {},
        || get(a, l) as usize,
        // SAFETY: `handoff` passes each block `get(a, l)` returned exactly once, after the
        // producer published it; nothing else uses it.
        |p| unsafe { a.dealloc(p as *mut u8, l) },
    )
}
