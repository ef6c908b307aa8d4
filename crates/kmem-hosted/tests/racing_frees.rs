//! Double frees that race: two threads, each its own CPU, free the same objects at the same
//! moment. Each free reads the object's free-pointer word, finds it not a free object's and
//! marks it; with a plain store both frees passed that test and both CPUs' sheaves took the
//! object, which then went to two owners. The mark is a compare-and-exchange
//! (`slab/object.rs`, `claim_word`): one free wins, the other is reported.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use kmem::{Gfp, ReportKind, SlabFlags};
use kmem_hosted::{Machine, MachineBuilder};

const OBJECTS: usize = 32;

/// Both threads leave `wait` together (spinning, so they run their frees in step).
struct SpinBarrier {
    arrived: AtomicU32,
    generation: AtomicU32,
}

impl SpinBarrier {
    fn wait(&self) {
        let gen = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) == 1 {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.store(gen + 1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == gen {
            spins += 1;
            if spins > 1 << 16 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Two threads, `rounds` times: the main thread allocates [`OBJECTS`] blocks, both free them
/// all at once, then each allocates as many; the duplicates among those two sets.
/// One race at a time: the two spinning threads of each need both CPUs of a small machine
/// to free in step (run together, the tests missed the old bug).
fn race(rounds: usize, alloc: &(impl Fn() -> usize + Sync), free: &(impl Fn(usize) + Sync)) -> usize {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shared: [AtomicUsize; OBJECTS] = std::array::from_fn(|_| AtomicUsize::new(0));
    let got: [AtomicUsize; OBJECTS] = std::array::from_fn(|_| AtomicUsize::new(0));
    let barrier = SpinBarrier { arrived: AtomicU32::new(0), generation: AtomicU32::new(0) };
    let (shared, got, barrier) = (&shared, &got, &barrier);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for _ in 0..rounds {
                barrier.wait();
                // The double frees under test (the main thread frees them too).
                shared.iter().for_each(|s| free(s.load(Ordering::Relaxed)));
                barrier.wait();
                got.iter().for_each(|g| g.store(alloc(), Ordering::Relaxed));
                barrier.wait();
            }
        });
        let mut duplicates = 0;
        for _ in 0..rounds {
            shared.iter().for_each(|s| s.store(alloc(), Ordering::Relaxed));
            barrier.wait();
            shared.iter().for_each(|s| free(s.load(Ordering::Relaxed)));
            barrier.wait();
            let mut mine: Vec<usize> = (0..OBJECTS).map(|_| alloc()).collect();
            barrier.wait();
            mine.extend(got.iter().map(|g| g.load(Ordering::Relaxed)));
            mine.sort_unstable();
            let n = mine.len();
            mine.dedup();
            duplicates += n - mine.len();
            // Each freed once (a duplicate once).
            mine.iter().for_each(|&p| free(p));
        }
        duplicates
    })
}

const ROUNDS: usize = 400;

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(128).thread_cpus(4).build().unwrap()
}

/// [`race`] on `m`: no block handed out twice, and every second free reported, once (a
/// deferred one too).
fn each_is_handed_out_once(m: &Machine, alloc: &(impl Fn() -> usize + Sync), free: &(impl Fn(usize) + Sync)) {
    assert_eq!(race(ROUNDS, alloc, free), 0, "blocks handed out twice");
    m.defer_free_barrier();
    assert_eq!(m.report_count(ReportKind::SlabBug), (ROUNDS * OBJECTS) as u64, "every second free reported, once");
}

#[test]
fn two_cpus_freeing_one_object_at_once_hand_it_out_once() {
    let m = machine();
    let c = m.kmem_cache_create("race_cache", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let alloc = || m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap().as_ptr() as usize;
    // SAFETY: blocks `race` allocated; it frees each twice (the misuse under test) or once.
    let free = |p: usize| unsafe { m.kmem_cache_free(&c, NonNull::new(p as *mut u8).unwrap()) };
    each_is_handed_out_once(&m, &alloc, &free);
}

/// The same through `kfree`, whose fast path finds the cache from the object.
#[test]
fn two_cpus_kfreeing_one_block_at_once_hand_it_out_once() {
    let m = machine();
    let alloc = || m.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr() as usize;
    // SAFETY: as above.
    each_is_handed_out_once(&m, &alloc, &|p| unsafe { m.kfree(p as *const u8) });
}

/// The same through `kfree_nolock` (the any-context free: its own routes to the sheaf and
/// the slab, each claiming the block first).
#[test]
fn two_cpus_kfreeing_nolock_one_block_at_once_hand_it_out_once() {
    let m = machine();
    let alloc = || m.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr() as usize;
    // SAFETY: as above.
    each_is_handed_out_once(&m, &alloc, &|p| unsafe { m.kfree_nolock(p as *const u8) });
}
