//! RCU: grace periods against readers on several threads, call_rcu order, rcu_barrier,
//! kfree_rcu and its bulk blocks, kmem_cache_destroy with pending kfree_rcu (slub_kunit's
//! `test_kfree_rcu`), SLAB_TYPESAFE_BY_RCU, and the read-side misuse.

use crate::common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use kmem::{Gfp, Kmem, Platform, RcuHead, ReportKind, SlabFlags};
use kmem_hosted::{pin_current_thread, HostedPlatform, Machine, MachineBuilder};

fn machine(cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(cpus).quiet_reports().build().unwrap()
}

const MAGIC: u64 = 0x5afe_5afe_5afe_5afe;
const POISON: u64 = 0xdead_dead_dead_dead;

/// Readers on `nr_readers` threads (pinned to CPUs 1.. when `pin`, for shared-CPU machines)
/// read a published object in read-side sections while this thread replaces it, waits with
/// `synchronize_rcu` and poisons and frees the old one, at least `min_rounds` times and until
/// the readers have read 1000 times. A reader that sees the poison fails the test.
fn publish_and_retire(m: &Arc<Machine>, nr_readers: u32, pin: bool, min_rounds: usize) {
    let alloc = |m: &Machine| {
        let p = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr() as *mut u64;
        // SAFETY: a fresh 64-byte object.
        unsafe { p.write(MAGIC) };
        p
    };
    let shared = Arc::new(AtomicPtr::new(alloc(m)));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (1..=nr_readers)
        .map(|cpu| {
            let (m, shared, stop, reads) = (m.clone(), shared.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                if pin {
                    pin_current_thread(cpu);
                }
                while !stop.load(Ordering::Relaxed) {
                    let _r = m.rcu_read();
                    let p = shared.load(Ordering::Acquire);
                    for _ in 0..50 {
                        // SAFETY: published and not freed before a grace period ends, which
                        // waits for this section.
                        let v = unsafe { std::ptr::read_volatile(p) };
                        assert_eq!(v, MAGIC, "a reader saw an object after its grace period");
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let before = m.rcu_stats().completed;
    let mut rounds = 0;
    while rounds < min_rounds || reads.load(Ordering::Relaxed) < 1000 {
        rounds += 1;
        let old = shared.swap(alloc(m), Ordering::AcqRel);
        m.synchronize_rcu();
        // SAFETY: unpublished, and a grace period has ended: no reader holds it.
        unsafe {
            old.write_volatile(POISON);
            m.kfree(old as *const u8);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        m.rcu_stats().completed >= before + rounds as u64,
        "each synchronize_rcu waits for a grace period of its own"
    );
    // SAFETY: the last object, no reader left.
    unsafe { m.kfree(shared.load(Ordering::Relaxed) as *const u8) };
}

#[test]
fn readers_on_several_threads_never_see_an_object_freed_by_synchronize_rcu() {
    pin_current_thread(0);
    let m = Arc::new(machine(4));
    publish_and_retire(&m, 3, true, 300);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

/// A reader on CPU 1 inside an RCU read-side section, from `start` (which returns once the
/// section has begun) until `release`; `spin` runs in its loop (what the reader reads).
struct ParkedReader {
    release: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ParkedReader {
    fn start(m: &Arc<Machine>, spin: impl Fn() + Send + 'static) -> Self {
        let entered = Arc::new(Barrier::new(2));
        let release = Arc::new(AtomicBool::new(false));
        let thread = {
            let (m, entered, release) = (m.clone(), entered.clone(), release.clone());
            std::thread::spawn(move || {
                pin_current_thread(1);
                let _r = m.rcu_read();
                entered.wait();
                while !release.load(Ordering::Acquire) {
                    spin();
                    std::hint::spin_loop();
                }
            })
        };
        entered.wait();
        Self { release, thread }
    }

    /// Ends the section and joins the reader (its panics become the test's).
    fn release(self) {
        self.release.store(true, Ordering::Release);
        self.thread.join().unwrap();
    }
}

#[test]
fn synchronize_rcu_waits_for_a_reader_that_began_before_it() {
    pin_current_thread(0);
    let m = Arc::new(machine(2));
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
    let left = Arc::new(AtomicBool::new(false));
    let t = {
        let (m, entered, release, left) = (m.clone(), entered.clone(), release.clone(), left.clone());
        std::thread::spawn(move || {
            pin_current_thread(1);
            m.rcu_read_lock();
            entered.wait();
            while !release.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            left.store(true, Ordering::Release);
            m.rcu_read_unlock();
        })
    };
    entered.wait();
    let cookie = m.get_state_synchronize_rcu();
    for _ in 0..1000 {
        assert!(!m.poll_state_synchronize_rcu(cookie), "the grace period ended while CPU 1 was still reading");
    }
    let releaser = {
        let release = release.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            release.store(true, Ordering::Release);
        })
    };
    m.synchronize_rcu();
    assert!(left.load(Ordering::Acquire), "synchronize_rcu returned before the reader left");
    assert!(m.poll_state_synchronize_rcu(cookie));
    t.join().unwrap();
    releaser.join().unwrap();
}

/// An object with an embedded head, as kernel structures embed `struct rcu_head`.
#[repr(C)]
struct Node {
    head: RcuHead,
    seq: usize,
    log: *const Mutex<Vec<usize>>,
}

/// The callback: records the node's sequence number, then frees it.
unsafe fn node_cb(k: &Kmem<HostedPlatform>, head: NonNull<RcuHead>) {
    let n = head.as_ptr() as *mut Node;
    // SAFETY: queued by the tests below with a live node whose log outlives the barrier.
    unsafe {
        (*(*n).log).lock().unwrap().push((*n).seq);
        k.kfree(n as *const u8);
    }
}

fn queue_nodes(m: &Machine, log: &Mutex<Vec<usize>>, seqs: std::ops::Range<usize>) {
    for seq in seqs {
        let n = m.kmalloc(std::mem::size_of::<Node>(), Gfp::KERNEL).unwrap().as_ptr() as *mut Node;
        // SAFETY: a fresh object big enough for a node; queued once and freed by its callback.
        unsafe {
            n.write(Node { head: RcuHead::new(), seq, log });
            m.call_rcu(NonNull::new_unchecked(std::ptr::addr_of_mut!((*n).head)), node_cb);
        }
    }
}

#[test]
fn call_rcu_callbacks_run_after_the_grace_period_in_queueing_order() {
    pin_current_thread(0);
    let m = Arc::new(machine(2));
    let log = Mutex::new(Vec::new());
    let reader = ParkedReader::start(&m, || {});
    queue_nodes(&m, &log, 0..100);
    for _ in 0..100 {
        m.rcu_poll();
    }
    assert!(log.lock().unwrap().is_empty(), "callbacks ran while a reader from before them was still reading");
    assert_eq!(m.rcu_stats().pending_callbacks, 100);
    reader.release();
    m.rcu_barrier();
    assert_eq!(*log.lock().unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
}

#[test]
fn rcu_barrier_waits_for_callbacks_queued_on_every_cpu() {
    pin_current_thread(0);
    let m = Arc::new(machine(4));
    let log = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4usize)
        .map(|t| {
            let (m, log) = (m.clone(), log.clone());
            std::thread::spawn(move || {
                pin_current_thread(t as u32);
                queue_nodes(&m, &log, t * 1000..(t + 1) * 1000);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    m.rcu_barrier();
    let mut got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 4000, "rcu_barrier returned with callbacks pending");
    got.sort_unstable();
    assert_eq!(got, (0..4000).collect::<Vec<_>>());
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
}

#[test]
fn kfree_rcu_of_thousands_of_objects_frees_them_all() {
    pin_current_thread(0);
    let m = machine(2);
    let cache = m.kmem_cache_create("rcu_objs", 96, 0, SlabFlags::NONE, None).unwrap();
    // Warm both caches (slabs, sheaves) with plain frees, then measure from a settled state.
    let warm_k: Vec<_> = (0..3000).map(|_| m.kmalloc(200, Gfp::KERNEL).unwrap()).collect();
    let warm_c: Vec<_> = (0..3000).map(|_| m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap()).collect();
    for (k, c) in warm_k.into_iter().zip(warm_c) {
        // SAFETY: ours.
        unsafe {
            m.kfree(k.as_ptr());
            m.kmem_cache_free(&cache, c);
        }
    }
    m.kmem_cache_shrink(&cache);
    m.drain_all_pages();
    let pages_before = common::free_pages(&m);
    let kmalloc_objs: Vec<_> = (0..3000).map(|_| m.kmalloc(200, Gfp::KERNEL).unwrap()).collect();
    let cache_objs: Vec<_> = (0..3000).map(|_| m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap()).collect();
    for (i, p) in kmalloc_objs.iter().chain(cache_objs.iter()).enumerate() {
        let head = NonNull::new(p.as_ptr().wrapping_add(16) as *mut RcuHead).unwrap();
        // SAFETY: each object is live, ours, unpublished; the head lies inside it.
        unsafe {
            if i % 2 == 0 {
                m.kfree_rcu(p.as_ptr(), head);
            } else {
                m.kfree_rcu_mightsleep(p.as_ptr());
            }
        }
    }
    m.kvfree_rcu_barrier();
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
    assert_eq!(m.rcu_stats().kfree_blocks, 0, "block pages left after kvfree_rcu_barrier");
    assert!(cache.nodes().map(|(_, n)| n.total_objects()).sum::<usize>() >= 3000);
    // Every object is free again: shrinking gives every slab back, the cache is empty.
    m.kmem_cache_shrink(&cache);
    assert_eq!(cache.nodes().map(|(_, n)| n.nr_slabs()).sum::<usize>(), 0, "kfree_rcu left objects allocated");
    // The kmalloc objects are free too: allocating as many again does not grow kmalloc-256.
    let total = cache_objects(&m, "kmalloc-256");
    let again: Vec<_> = (0..3000).map(|_| m.kmalloc(200, Gfp::KERNEL).unwrap()).collect();
    assert_eq!(cache_objects(&m, "kmalloc-256"), total, "kfree_rcu left kmalloc objects allocated");
    for p in again {
        // SAFETY: ours.
        unsafe { m.kfree(p.as_ptr()) };
    }
    // And the block pages went back: free pages are where they were after the warm-up.
    m.drain_all_pages();
    let after = common::free_pages(&m);
    assert_eq!(after, pages_before, "pages lost to kfree_rcu");
    m.kmem_cache_destroy(cache);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

/// A cache's objects (allocated and free).
fn cache_objects(m: &Machine, name: &str) -> usize {
    let mut n = 0;
    m.for_each_cache(|c| {
        if c.name() == name {
            n = c.nodes().map(|(_, node)| node.total_objects()).sum();
        }
    });
    n
}

#[test]
fn kmem_cache_destroy_waits_for_pending_kfree_rcu() {
    // slub_kunit's test_kfree_rcu: kfree_rcu then kmem_cache_destroy at once.
    pin_current_thread(0);
    let m = machine(2);
    let cache = m.kmem_cache_create("TestSlub_kfree_rcu", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    for _ in 0..10 {
        let p = m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap();
        // SAFETY: live, ours; the head is at its start.
        unsafe { m.kfree_rcu(p.as_ptr(), p.cast()) };
    }
    m.kmem_cache_destroy(cache);
    assert_eq!(m.report_count(ReportKind::Warning), 0, "destroy found the kfree_rcu objects still allocated");
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
}

#[test]
fn kfree_rcu_without_block_pages_falls_back_to_the_embedded_head() {
    pin_current_thread(0);
    let m = machine(1);
    let objs: Vec<_> = (0..50).map(|_| m.kmalloc(128, Gfp::KERNEL).unwrap()).collect();
    m.kvfree_rcu_barrier();
    let fail = m.fail_page_alloc().unwrap();
    fail.set_probability(100).set_interval(1).set_times(-1).set_verbose(0).set_min_order(0);
    let head_off = 40usize;
    for p in &objs {
        // SAFETY: live, ours; the head lies 40 bytes in.
        unsafe { m.kfree_rcu(p.as_ptr(), NonNull::new_unchecked(p.as_ptr().add(head_off) as *mut RcuHead)) };
    }
    assert_eq!(m.rcu_stats().pending_callbacks, 50, "each object went through its own head");
    fail.set_probability(0).set_times(0);
    let k = m.kmalloc(128, Gfp::KERNEL).unwrap();
    m.rcu_barrier();
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
    // The memory is free again: the kmalloc-128 objects are handed out anew.
    let again: Vec<_> = (0..50).map(|_| m.kmalloc(128, Gfp::KERNEL).unwrap()).collect();
    assert!(again.iter().any(|p| objs.contains(p)), "no freed object was reused");
    for p in again.into_iter().chain([k]) {
        // SAFETY: ours.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn typesafe_by_rcu_object_stays_in_its_cache_and_slabs_wait_for_a_grace_period() {
    pin_current_thread(0);
    let m = Arc::new(machine(2));
    let cache = m.kmem_cache_create("typesafe", 128, 0, SlabFlags::TYPESAFE_BY_RCU, None).unwrap();
    assert!(cache.flags().contains(SlabFlags::TYPESAFE_BY_RCU));
    let per_slab = cache.objects_per_slab();
    let objs: Vec<_> = (0..per_slab * 8).map(|_| m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap()).collect();
    for p in &objs {
        // SAFETY: ours, 128 bytes.
        unsafe { (p.as_ptr() as *mut u64).write(MAGIC) };
    }
    let held = objs[0].as_ptr() as usize;
    // A reader finds the object and holds it.
    let reader = ParkedReader::start(&m, move || {
        // SAFETY: TYPESAFE_BY_RCU: the memory stays an object of the cache while this section
        // lasts, freed or not.
        let v = unsafe { std::ptr::read_volatile(held as *const u64) };
        assert!(v == MAGIC || v == 0x7777, "the held object's memory changed type: {v:#x}");
    });
    // Free and reallocate while the reader holds it: the object is reused at once.
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&cache, NonNull::new(held as *mut u8).unwrap()) };
    let again = m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap();
    assert_eq!(again.as_ptr() as usize, held, "an object may be reused at once");
    // SAFETY: ours again.
    unsafe { (again.as_ptr() as *mut u64).write(0x7777) };
    reader.release();
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&cache, again) };
    for p in &objs[1..] {
        // SAFETY: ours.
        unsafe { m.kmem_cache_free(&cache, *p) };
    }
    // Shrinking discards the empty slabs: they wait for a grace period.
    m.kmem_cache_shrink(&cache);
    let pending = m.rcu_stats().pending_slabs;
    assert!(pending > 0, "a TYPESAFE_BY_RCU cache's slabs went back without a grace period");
    // A reader from before the grace period holds the pages back.
    let reader = ParkedReader::start(&m, || {});
    let free_before = common::free_pages(&m);
    for _ in 0..50 {
        m.rcu_poll();
    }
    assert_eq!(m.rcu_stats().pending_slabs, pending, "slab pages freed while a reader could hold them");
    assert_eq!(common::free_pages(&m), free_before);
    reader.release();
    m.rcu_barrier();
    assert_eq!(m.rcu_stats().pending_slabs, 0);
    assert!(common::free_pages(&m) >= free_before + pending as usize, "the slab pages were not freed");
    m.kmem_cache_destroy(Arc::try_unwrap(Arc::new(cache)).ok().unwrap());
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

#[test]
fn typesafe_by_rcu_caches_never_merge_and_are_not_poisoned() {
    let m = MachineBuilder::new().ram_mib(64).slub_debug("P").quiet_reports().build().unwrap();
    let a = m.kmem_cache_create("ts_a", 64, 0, SlabFlags::TYPESAFE_BY_RCU, None).unwrap();
    let b = m.kmem_cache_create("ts_b", 64, 0, SlabFlags::TYPESAFE_BY_RCU, None).unwrap();
    assert_eq!(a.aliases(), 0);
    assert_eq!(b.aliases(), 0);
    let p = m.kmem_cache_alloc(&a, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe {
        (p.as_ptr() as *mut u64).write(MAGIC);
        m.kmem_cache_free(&a, p);
        // A TYPESAFE_BY_RCU object keeps its contents after the free (no poison).
        assert_eq!((p.as_ptr() as *const u64).read_volatile(), MAGIC);
    }
    drop((a, b));
    m.rcu_barrier();
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

#[test]
fn rcu_read_unlock_without_lock_is_reported_and_changes_nothing() {
    pin_current_thread(0);
    let m = machine(2);
    m.rcu_read_unlock();
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    let text = &m.reports().texts(ReportKind::Warning)[0];
    assert!(text.contains("WARNING: bad unlock balance detected!"), "{text}");
    assert!(text.contains("is trying to release lock (rcu_read_lock)"), "{text}");
    // A plain preempt-off section is not a read-side section either.
    m.platform().preempt_disable();
    m.rcu_read_unlock();
    m.platform().preempt_enable();
    assert_eq!(m.report_count(ReportKind::Warning), 2);
    // The engine still works.
    {
        let _r = m.rcu_read();
        assert!(m.rcu_read_lock_held());
    }
    assert!(!m.rcu_read_lock_held());
    m.synchronize_rcu();
    common::assert_still_works(&m);
}

#[test]
fn synchronize_rcu_inside_a_read_side_section_is_reported() {
    pin_current_thread(0);
    let m = machine(1);
    {
        let _r = m.rcu_read();
        m.synchronize_rcu();
    }
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    assert!(m.reports().texts(ReportKind::Warning)[0]
        .contains("Illegal synchronize_rcu() in RCU read-side critical section"));
    m.synchronize_rcu();
}

#[test]
fn grace_periods_on_a_cpu_per_thread_machine() {
    // The process allocator's CPU model: each thread owns a CPU; sections are plain stores.
    let m = Arc::new(MachineBuilder::new().ram_mib(128).thread_cpus(4).quiet_reports().build().unwrap());
    publish_and_retire(&m, 2, false, 200);
}

#[test]
fn kvfree_rcu_frees_vmalloc_and_kmalloc_memory() {
    pin_current_thread(0);
    let m = machine(1);
    let busy = m.vmalloc_stats().busy_areas;
    let big: Vec<_> = (0..8).map(|_| m.vmalloc(256 << 10).unwrap()).collect();
    let small: Vec<_> = (0..8).map(|_| m.kvmalloc(128, Gfp::KERNEL).unwrap()).collect();
    assert!(big.iter().all(|p| m.is_vmalloc_addr(p.as_ptr())));
    assert_eq!(m.vmalloc_stats().busy_areas, busy + 8);
    for (i, p) in big.iter().chain(small.iter()).enumerate() {
        // SAFETY: live, ours; the head lies at the start of each.
        unsafe {
            if i % 2 == 0 {
                m.kvfree_rcu(p.as_ptr(), p.cast());
            } else {
                m.kvfree_rcu_mightsleep(p.as_ptr());
            }
        }
    }
    assert_eq!(m.vmalloc_stats().busy_areas, busy + 8, "nothing is freed before a grace period");
    m.kvfree_rcu_barrier();
    assert_eq!(m.vmalloc_stats().busy_areas, busy, "kvfree_rcu left vmalloc areas");
    assert_eq!(m.rcu_stats().kfree_blocks, 0);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn freeing_an_object_of_a_typesafe_slab_waiting_for_its_grace_period_is_reported() {
    pin_current_thread(0);
    let m = machine(1);
    let cache = m.kmem_cache_create("typesafe_stale", 256, 0, SlabFlags::TYPESAFE_BY_RCU, None).unwrap();
    let objs: Vec<_> =
        (0..cache.objects_per_slab() * 4).map(|_| m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap()).collect();
    for p in &objs {
        // SAFETY: ours.
        unsafe { m.kmem_cache_free(&cache, *p) };
    }
    m.kmem_cache_shrink(&cache);
    assert!(m.rcu_stats().pending_slabs > 0);
    let reports = |m: &Machine| -> u64 { ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum() };
    let before = reports(&m);
    // A stale pointer into a slab that left its cache and waits for its grace period: it is
    // no slab object any more (reported), and nothing is freed twice.
    // SAFETY: deliberately broken contract; kmem must detect it.
    unsafe {
        m.kmem_cache_free(&cache, objs[0]);
        m.kfree(objs[1].as_ptr());
    }
    assert_eq!(reports(&m), before + 2, "each stale free is reported");
    m.rcu_barrier();
    assert_eq!(m.rcu_stats().pending_slabs, 0);
    m.verify().unwrap();
    m.kmem_cache_destroy(cache);
    let after = reports(&m);
    common::assert_still_works(&m);
    assert_eq!(reports(&m), after);
}

/// `kfree_rcu_nolock`: queued without a lock, handed to `kfree_rcu` at the next safe point,
/// freed only after a grace period (a reader that started before keeps the object intact
/// apart from its head), and a head outside the object is refused with a warning.
#[test]
fn kfree_rcu_nolock_waits_for_a_safe_point_and_a_grace_period() {
    pin_current_thread(0);
    let m = machine(2);
    let k64 = m.kmalloc_slab(64, Gfp::KERNEL).unwrap();
    let live = |m: &Machine| {
        m.kmem_cache_shrink(k64);
        kmem::proc::slab_info(m, k64).active_objs
    };
    let before = live(&m);
    let guard = m.rcu_read();
    let p = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: a live 64-byte object of ours; the head (16 bytes) at offset 32.
    unsafe {
        std::ptr::write_bytes(p, 0x5a, 64);
        m.kfree_rcu_nolock(p, NonNull::new_unchecked(p.add(32).cast::<RcuHead>()));
    }
    assert_eq!(m.deferred_frees(), 1);
    m.defer_free_barrier();
    assert_eq!(m.deferred_frees(), 0);
    // Now a kfree_rcu: not freed while the reader that saw it reads.
    m.rcu_poll();
    // Handed to kfree_rcu (a block page or the embedded head waits for the grace period),
    // not freed.
    let st = m.rcu_stats();
    assert!(st.kfree_blocks + st.pending_callbacks > 0, "not queued for a grace period: {st:?}");
    // SAFETY: the reader's view of the object: still allocated, outside its head untouched.
    assert!(unsafe { std::slice::from_raw_parts(p, 32) }.iter().all(|&b| b == 0x5a));
    drop(guard);
    m.kvfree_rcu_barrier();
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
    assert_eq!(live(&m), before, "the object was freed after the grace period");
    // A head outside the object's first 4096 bytes: refused, reported, nothing freed.
    let q = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    let mut elsewhere = RcuHead::new();
    let warnings = m.report_count(ReportKind::Warning);
    // SAFETY: deliberately broken contract; kmem must refuse it.
    unsafe { m.kfree_rcu_nolock(q, NonNull::from(&mut elsewhere)) };
    assert_eq!(m.report_count(ReportKind::Warning), warnings + 1);
    assert_eq!(m.deferred_frees(), 0);
    // SAFETY: still ours.
    unsafe { m.kfree(q) };
    assert_eq!(live(&m), before);
    common::assert_still_works(&m);
}
