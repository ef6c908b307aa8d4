//! `Kmem::kfree_sized_or`: a free that knows the size the block was asked for (what
//! `GlobalAlloc::dealloc` and C23's `free_sized` know). The size is a hint: the right one
//! frees the object on the fast path without its `other` function; any other block (a wrong
//! size, another cache's object, a large block, a bad pointer) goes to `other`, which frees
//! or reports it as `kfree` would. Misuse through the sized path is reported as through
//! `kfree`, and never hands a block out twice.

use std::collections::HashSet;
use std::ptr::NonNull;

use kmem::{Gfp, ReportKind};
use kmem_hosted::{Machine, MachineBuilder};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(64).thread_cpus(4).build().unwrap()
}

/// Frees `p` with size hint `size`; returns whether `other` ran (it frees with `kfree`).
fn free_sized(m: &Machine, p: NonNull<u8>, size: usize) -> bool {
    let mut other = false;
    // SAFETY: the tests pass blocks they own and never use again (or, in the misuse test,
    // freed ones, which kmem must detect).
    unsafe {
        m.kfree_sized_or(p.as_ptr(), size, |p| {
            other = true;
            m.kfree(p)
        })
    };
    other
}

fn reports(m: &Machine) -> u64 {
    ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum()
}

#[test]
fn the_right_size_frees_on_the_fast_path_and_the_block_comes_back() {
    let m = machine();
    for size in [1, 8, 16, 64, 96, 100, 192, 1000, 4096, 8192] {
        let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
        assert!(!free_sized(&m, p, size), "size {size}: the object of its own class needs no other way");
        // The CPU's sheaf is last in, first out: the next object of the class is the same.
        let q = m.kmalloc(size, Gfp::KERNEL).unwrap();
        assert_eq!(p, q, "size {size}: the freed object went to this CPU's sheaf of its cache");
        // SAFETY: ours.
        unsafe { m.kfree(q.as_ptr()) };
    }
    assert_eq!(reports(&m), 0);
}

#[test]
fn a_wrong_size_frees_the_block_the_other_way() {
    let m = machine();
    // (allocated size, hint): a smaller class, a larger one, 0, a large block's size, and a
    // size past every kmalloc class.
    for (size, hint) in [(128, 64), (64, 128), (64, 0), (64, 64 << 10), (200, usize::MAX)] {
        let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
        assert!(free_sized(&m, p, hint), "{size} B freed as {hint} B: not an object of the hint's cache");
        let q = m.kmalloc(size, Gfp::KERNEL).unwrap();
        assert_eq!(p, q, "{size} B freed as {hint} B: freed all the same (kfree)");
        // SAFETY: ours.
        unsafe { m.kfree(q.as_ptr()) };
    }
    // A large block (compound pages) and an object of a cache of its own.
    let big = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap();
    assert!(free_sized(&m, big, 64 << 10), "large blocks are no slab objects");
    // (Unmerged: a mergeable 64-byte cache would be kmalloc-64 itself.)
    let c = m.kmem_cache_create("sized_test", 64, 0, kmem::SlabFlags::NO_MERGE, None).unwrap();
    let o = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert!(free_sized(&m, o, 64), "an object of another 64-byte cache is not kmalloc-64's");
    m.kmem_cache_destroy(c);
    assert_eq!(reports(&m), 0, "every one of those was a legitimate free");
}

#[test]
fn a_double_free_through_the_sized_path_is_reported_and_changes_nothing() {
    let m = machine();
    let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert!(!free_sized(&m, p, 64));
    let before = m.report_count(ReportKind::SlabBug);
    free_sized(&m, p, 64);
    assert_eq!(m.report_count(ReportKind::SlabBug), before + 1, "the second free is a double free");
    // The object is in the sheaf once: two allocations get two different blocks.
    let a = m.kmalloc(64, Gfp::KERNEL).unwrap();
    let b = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert_ne!(a, b, "a double free must not hand one block out twice");
    // An interior pointer and a pointer outside RAM: reported, nothing freed.
    let interior = NonNull::new(a.as_ptr().wrapping_add(8)).unwrap();
    let bugs = m.report_count(ReportKind::SlabBug);
    free_sized(&m, interior, 64);
    assert_eq!(m.report_count(ReportKind::SlabBug), bugs + 1, "an interior pointer is reported");
    let c = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert!(c != a && c != b, "the interior free freed nothing");
    // SAFETY: ours.
    unsafe {
        m.kfree(a.as_ptr());
        m.kfree(b.as_ptr());
        m.kfree(c.as_ptr());
    }
}

/// Threads free each other's blocks with their sizes (each free goes to the freeing CPU's
/// sheaf, as Linux's does): no block is ever live twice, and nothing is reported.
#[test]
fn sized_frees_across_threads_never_alias() {
    let m = machine();
    let sizes = [16usize, 64, 200, 1000];
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize)>(1024);
        let m = &m;
        s.spawn(move || {
            for i in 0..20_000usize {
                let size = sizes[i % sizes.len()];
                let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
                // SAFETY: `size` bytes of ours.
                unsafe { p.as_ptr().write_bytes(i as u8, size) };
                tx.send((p.as_ptr() as usize, size)).unwrap();
            }
        });
        s.spawn(move || {
            let mut live = HashSet::new();
            let mut own = Vec::new();
            for (i, (addr, size)) in rx.iter().enumerate() {
                assert!(live.insert(addr), "a live block was handed out again");
                let p = NonNull::new(addr as *mut u8).unwrap();
                // Check the producer's pattern survived, then free it with its size.
                // SAFETY: the producer gave us this block.
                let first = unsafe { p.as_ptr().read() };
                assert_eq!(first, i as u8);
                live.remove(&addr);
                assert!(!free_sized(m, p, size));
                // Allocations of our own from the sheaf we just filled.
                if i % 3 == 0 {
                    let q = m.kmalloc(size, Gfp::KERNEL).unwrap();
                    assert!(live.insert(q.as_ptr() as usize), "the sheaf handed out a live block");
                    own.push((q, size));
                }
            }
            for (q, size) in own {
                live.remove(&(q.as_ptr() as usize));
                free_sized(m, q, size);
            }
        });
    });
    assert_eq!(reports(&m), 0);
}

/// A KFENCE object freed by size: not a plain slab object of the size's cache (its page is
/// KFENCE's), so it goes the other way, to `kfree`, which gives it back to the pool.
#[test]
fn a_kfence_object_freed_by_size_goes_to_kfence() {
    let cfg = kmem::kfence::KfenceConfig { sample_interval_ms: 3_600_000, num_objects: 31 };
    let m = MachineBuilder::new().ram_mib(64).cpus(2).kfence(cfg).build().unwrap();
    assert!(m.kfence_force_next());
    let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert!(m.is_kfence_address(p.as_ptr()), "the forced allocation is KFENCE's");
    assert_eq!(m.kfence_stats().allocated, 1);
    assert!(free_sized(&m, p, 64), "a KFENCE object takes the other way");
    assert_eq!(m.kfence_stats().allocated, 0, "and went back to the pool");
    // (KFENCE's boot line is an Info report.)
    for k in [ReportKind::SlabBug, ReportKind::Kfence, ReportKind::Warning] {
        assert_eq!(m.report_count(k), 0, "{k:?}");
    }
}
