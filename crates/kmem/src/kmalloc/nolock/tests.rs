//! `kmalloc_nolock` / `kfree_nolock` on the one-CPU test platform, which answers
//! `try_pin_cpu_nolock` with the default `None`: every request takes the node and zone
//! trylock routes, so these tests see them alone. Busy locks are made by holding them.

use crate::gfp::Gfp;
use crate::kmalloc::ZERO_SIZE_PTR;
use crate::platform::ReportKind;
use crate::slab::{KmemCache, NolockError};
use crate::testing;
use crate::Order;

fn cache_of<P: crate::Platform>(k: &crate::Kmem<P>, p: *const u8) -> &KmemCache {
    k.addr_to_slab(p as usize).expect("a slab object").1
}

#[test]
fn refused_gfp_flags_warn_and_fail() {
    let k = testing::machine(64);
    for bad in [Gfp::KERNEL, Gfp::ATOMIC, Gfp::NOWARN, Gfp::DMA, Gfp::NOFAIL] {
        let before = k.report_count(ReportKind::Warning);
        assert_eq!(k.kmalloc_nolock(64, bad, None), Err(NolockError::BadGfp), "{bad:#}");
        assert_eq!(k.report_count(ReportKind::Warning), before + 1, "{bad:#} is reported");
    }
    // The allowed ones.
    let p = k.kmalloc(8, Gfp::KERNEL).unwrap();
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree(p.as_ptr()) };
    for ok in [Gfp::empty(), Gfp::ACCOUNT, Gfp::ZERO, Gfp::NO_OBJ_EXT, Gfp::ACCOUNT.union(Gfp::ZERO)] {
        let p = k.kmalloc_nolock(64, ok, None).unwrap();
        // SAFETY: objects and blocks this test allocated and owns, each freed once.
        unsafe { k.kfree_nolock(p.as_ptr()) };
    }
    assert_eq!(k.report_count(ReportKind::Warning), 5);
}

#[test]
fn sizes_zero_and_oversize() {
    let k = testing::machine(64);
    let p = k.kmalloc(8, Gfp::KERNEL).unwrap();
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree(p.as_ptr()) };
    assert_eq!(k.kmalloc_nolock(0, Gfp::empty(), None).unwrap().as_ptr() as usize, ZERO_SIZE_PTR);
    assert_eq!(k.kmalloc_nolock(8193, Gfp::empty(), None), Err(NolockError::TooLarge));
    assert_eq!(k.kmalloc_nolock(usize::MAX, Gfp::empty(), None), Err(NolockError::TooLarge));
    for size in [1, 8, 96, 100, 192, 4096, 8192] {
        let p = k.kmalloc_nolock(size, Gfp::ZERO, None).unwrap();
        assert!(cache_of(&k, p.as_ptr()).object_size() >= size);
        // SAFETY: a live object of at least `size` bytes that the test owns.
        let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), size) };
        assert!(bytes.iter().all(|&b| b == 0), "__GFP_ZERO zeroes");
        bytes.fill(0xa5);
        // SAFETY: objects and blocks this test allocated and owns, each freed once.
        unsafe { k.kfree_nolock(p.as_ptr()) };
    }
    // Null and ZERO_SIZE_PTR are no-ops; a large kmalloc block is refused with a warning.
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe {
        k.kfree_nolock(core::ptr::null());
        k.kfree_nolock(ZERO_SIZE_PTR as *const u8);
    }
    let large = k.kmalloc(16384, Gfp::KERNEL).unwrap();
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree_nolock(large.as_ptr()) };
    assert_eq!(k.report_count(ReportKind::Warning), 1);
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree(large.as_ptr()) };
    assert_eq!(k.deferred_frees(), 0);
    k.verify().unwrap();
}

#[test]
fn caches_not_yet_created_are_busy() {
    let k = testing::machine(64);
    assert_eq!(k.kmalloc_nolock(64, Gfp::empty(), None), Err(NolockError::Busy));
}

#[test]
fn busy_list_lock_tries_the_next_bucket_then_fails() {
    let k = testing::machine(64);
    let p64 = k.kmalloc(64, Gfp::KERNEL).unwrap();
    let p96 = k.kmalloc(96, Gfp::KERNEL).unwrap();
    let (c64, c96) = (cache_of(&k, p64.as_ptr()), cache_of(&k, p96.as_ptr()));
    assert_eq!((c64.object_size(), c96.object_size()), (64, 96));
    let g = c64.node(0).list_lock.lock_irqsave(k.platform());
    let p = k.kmalloc_nolock(50, Gfp::empty(), None).unwrap();
    assert_eq!(cache_of(&k, p.as_ptr()).object_size(), 96, "the next kmalloc bucket");
    let g2 = c96.node(0).list_lock.lock_irqsave(k.platform());
    assert_eq!(k.kmalloc_nolock(50, Gfp::empty(), None), Err(NolockError::Busy));
    drop(g2);
    drop(g);
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe {
        k.kfree_nolock(p.as_ptr());
        k.kfree(p64.as_ptr());
        k.kfree(p96.as_ptr());
    }
    assert_eq!(k.report_count(ReportKind::PageAllocFailure), 0, "nolock failures are silent");
}

#[test]
fn busy_free_is_deferred_and_completed_at_a_safe_point() {
    let k = testing::machine(64);
    let warm = k.kmalloc(256, Gfp::KERNEL).unwrap();
    let c = cache_of(&k, warm.as_ptr());
    let inuse = |k: &crate::Kmem<_>| crate::proc::slab_info(k, c).active_objs;
    k.kmem_cache_shrink(c);
    let base = inuse(&k);
    let objs: [_; 4] = core::array::from_fn(|_| k.kmalloc_nolock(256, Gfp::empty(), None).unwrap());
    assert_eq!(inuse(&k), base + 4);
    let g = c.node(0).list_lock.lock_irqsave(k.platform());
    for p in objs {
        // SAFETY: objects and blocks this test allocated and owns, each freed once.
        unsafe { k.kfree_nolock(p.as_ptr()) };
    }
    drop(g);
    assert_eq!(k.deferred_frees(), 4);
    assert_eq!(inuse(&k), base + 4, "deferred objects are still in use");
    // The next slab allocation's careful path is a safe point.
    let q = k.kmalloc(32, Gfp::KERNEL.union(Gfp::ZERO)).unwrap();
    assert_eq!(k.deferred_frees(), 0);
    k.kmem_cache_shrink(c);
    assert_eq!(inuse(&k), base, "freed for real");
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe {
        k.kfree(q.as_ptr());
        k.kfree(warm.as_ptr());
    }
    // And the explicit barrier.
    let p = k.kmalloc_nolock(256, Gfp::empty(), None).unwrap();
    let g = c.node(0).list_lock.lock_irqsave(k.platform());
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree_nolock(p.as_ptr()) };
    drop(g);
    assert_eq!(k.deferred_frees(), 1);
    k.defer_free_barrier();
    assert_eq!(k.deferred_frees(), 0);
    assert_eq!(k.report_count(ReportKind::SlabBug), 0);
    k.verify().unwrap();
}

#[test]
fn double_free_is_reported_not_repeated() {
    let k = testing::machine(64);
    let p = k.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree(p.as_ptr()) };
    let p = k.kmalloc_nolock(64, Gfp::empty(), None).unwrap();
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe {
        k.kfree_nolock(p.as_ptr());
        k.kfree_nolock(p.as_ptr());
    }
    assert_eq!(k.report_count(ReportKind::SlabBug), 1);
    let a = k.kmalloc_nolock(64, Gfp::empty(), None).unwrap();
    let b = k.kmalloc_nolock(64, Gfp::empty(), None).unwrap();
    assert_ne!(a, b, "the object was not put on the freelist twice");
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe {
        k.kfree_nolock(a.as_ptr());
        k.kfree_nolock(b.as_ptr());
    }
    k.verify().unwrap();
}

#[test]
fn node_argument() {
    let k = testing::machine(64);
    let p = k.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree(p.as_ptr()) };
    let p = k.kmalloc_nolock(64, Gfp::empty(), Some(0)).unwrap();
    assert_eq!(k.addr_to_slab(p.as_ptr() as usize).unwrap().0.nid(), 0);
    assert_eq!(k.kmalloc_nolock(64, Gfp::empty(), Some(3)), Err(NolockError::Unsupported));
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree_nolock(p.as_ptr()) };
}

#[test]
fn new_slabs_come_from_the_zone_trylock_route() {
    let k = testing::machine(64);
    let p = k.kmalloc(512, Gfp::KERNEL).unwrap();
    let c = cache_of(&k, p.as_ptr());
    let slabs = c.node(0).nr_slabs();
    let per = c.objects_per_slab();
    let objs: crate::testing::std::vec::Vec<_> =
        (0..per * 3).map(|_| k.kmalloc_nolock(512, Gfp::empty(), None).unwrap()).collect();
    assert!(c.node(0).nr_slabs() >= slabs + 2, "new slabs were made");
    // A busy zone lock fails the new slab: Busy (both buckets' slabs are full or locked).
    for o in &objs {
        // SAFETY: objects and blocks this test allocated and owns, each freed once.
        unsafe { k.kfree_nolock(o.as_ptr()) };
    }
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.kfree(p.as_ptr()) };
    assert_eq!(k.deferred_frees(), 0);
    k.verify().unwrap();
}

#[test]
fn alloc_pages_nolock_rules() {
    let k = testing::machine(64);
    let before = k.report_count(ReportKind::Warning);
    assert_eq!(
        k.alloc_pages_nolock(Gfp::KERNEL, None, Order::ZERO).unwrap_err().kind,
        crate::AllocErrorKind::FlagsNotAllowed
    );
    assert_eq!(k.report_count(ReportKind::Warning), before + 1);
    assert_eq!(
        k.alloc_pages_nolock(Gfp::empty(), None, Order::of(4)).unwrap_err().kind,
        crate::AllocErrorKind::OrderTooLarge
    );
    let p = k.alloc_pages_nolock(Gfp::ACCOUNT, None, Order::of(2)).unwrap();
    assert!(p.is_head(), "compound");
    // Every zone's lock held (the zonelist falls back to the lower zones).
    let guards: crate::testing::std::vec::Vec<_> = k.zones().map(|z| z.area.lock(k.platform())).collect();
    assert_eq!(
        k.alloc_pages_nolock(Gfp::empty(), None, Order::ZERO).unwrap_err().kind,
        crate::AllocErrorKind::Busy,
        "a held zone lock is not waited for"
    );
    drop(guards);
    // SAFETY: objects and blocks this test allocated and owns, each freed once.
    unsafe { k.__free_pages(p, Order::of(2)) };
    k.verify().unwrap();
}

#[test]
fn destroy_frees_deferred_objects_before_looking_for_leaks() {
    let k = testing::machine(64);
    let c = k.kmem_cache_create("nolock_destroy", 64, 0, crate::SlabFlags::NO_MERGE, None).unwrap();
    let objs: crate::testing::std::vec::Vec<_> =
        (0..10).map(|_| k.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    let g = c.node(0).list_lock.lock_irqsave(k.platform());
    for p in &objs {
        // SAFETY: the test's objects, each freed once.
        unsafe { k.kfree_nolock(p.as_ptr()) };
    }
    drop(g);
    assert_eq!(k.deferred_frees(), 10, "the list lock was busy: deferred");
    k.kmem_cache_destroy(c);
    assert_eq!(k.deferred_frees(), 0);
    assert_eq!(k.report_count(ReportKind::SlabBug), 0, "no leak reported");
    assert_eq!(k.report_count(ReportKind::Warning), 0);
    k.verify().unwrap();
}
