//! The two ways an object goes back to its cache (`slab/free.rs`): the fast path, for objects
//! of *plain* slabs (recognised by one compare of the slab head's word), and the careful path
//! for everything else (coloured slabs, debug caches, another cache's objects, bad pointers).
//! Both must free exactly the same objects, with the same checks: these tests mix them and
//! count objects, reports and reuse.

use crate::common;

use std::collections::HashSet;
use std::ptr::NonNull;

use kmem::{Gfp, ReportKind, SlabFlags};
use kmem_hosted::{Machine, MachineBuilder};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(2).quiet_reports().build().unwrap()
}

/// A deterministic shuffle (xorshift), so that frees land in random slabs.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[test]
fn plain_and_coloured_slabs_free_alike() {
    let m = machine();
    // 200-byte slots leave room for colours in a slab; a plain cache of the same size has none.
    for flags in [SlabFlags::NONE, SlabFlags::COLOUR] {
        let c = m.kmem_cache_create("free_paths", 200, 0, flags | SlabFlags::NO_MERGE, None).unwrap();
        for round in 0..3 {
            let mut objs: Vec<NonNull<u8>> = (0..2000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
            let distinct: HashSet<usize> = objs.iter().map(|p| p.as_ptr() as usize).collect();
            assert_eq!(distinct.len(), objs.len(), "{flags:?}: an object handed out twice");
            shuffle(&mut objs, 0x9e37_79b9 + round);
            for p in objs {
                // SAFETY: ours, freed once.
                unsafe { m.kmem_cache_free(&c, p) };
            }
            assert_eq!(m.validate_slab_cache(&c).errors, 0);
        }
        m.kmem_cache_shrink(&c);
        assert_eq!(kmem::proc::slab_info(&m, &c).active_objs, 0, "{flags:?}: every object came back");
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    common::assert_still_works(&m);
}

#[test]
fn a_double_free_long_after_is_caught_on_either_path() {
    let m = machine();
    for flags in [SlabFlags::NONE, SlabFlags::COLOUR] {
        let c = m.kmem_cache_create("double_free", 96, 0, flags | SlabFlags::NO_MERGE, None).unwrap();
        for shrink in [false, true] {
            let before = m.report_count(ReportKind::SlabBug);
            let a = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
            let others: Vec<_> = (0..300).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
            // SAFETY: deliberate misuse: `a` freed twice, with 150 other frees between (its
            // sheaf has gone to the barn by then) or a shrink (which flushes the sheaves: `a`
            // is back on its slab's freelist, and the slab is in use).
            unsafe {
                m.kmem_cache_free(&c, a);
                if shrink {
                    m.kmem_cache_shrink(&c);
                } else {
                    for p in &others[..150] {
                        m.kmem_cache_free(&c, *p);
                    }
                }
                m.kmem_cache_free(&c, a);
            }
            assert_eq!(m.report_count(ReportKind::SlabBug), before + 1, "{flags:?} shrink {shrink}");
            let rest = if shrink { &others[..] } else { &others[150..] };
            for p in rest {
                // SAFETY: ours, freed once.
                unsafe { m.kmem_cache_free(&c, *p) };
            }
            // Every free object is handed out once: `a` not twice.
            let again: Vec<_> = (0..1000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
            let distinct: HashSet<_> = again.iter().collect();
            assert_eq!(distinct.len(), again.len(), "{flags:?} shrink {shrink}: an object handed out twice");
            assert_eq!(again.iter().filter(|p| **p == a).count(), 1, "{flags:?} shrink {shrink}");
            for p in again {
                // SAFETY: ours, freed once.
                unsafe { m.kmem_cache_free(&c, p) };
            }
            assert_eq!(m.validate_slab_cache(&c).errors, 0);
        }
    }
    common::assert_still_works(&m);
}

#[test]
fn another_caches_object_goes_to_its_own_cache() {
    let m = machine();
    let c64 = m.kmem_cache_create("own_64", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let c128 = m.kmem_cache_create("own_128", 128, 0, SlabFlags::NO_MERGE, None).unwrap();
    let p = m.kmem_cache_alloc(&c64, Gfp::KERNEL).unwrap();
    // SAFETY: deliberate misuse: an object of `c64` named with `c128`.
    unsafe { m.kmem_cache_free(&c128, p) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    assert!(m.reports().texts(ReportKind::SlabBug).iter().any(|t| t.contains("Wrong slab cache")));
    m.kmem_cache_shrink(&c64);
    assert_eq!(kmem::proc::slab_info(&m, &c64).active_objs, 0, "freed to its own cache");
    assert_eq!(kmem::proc::slab_info(&m, &c128).active_objs, 0, "never entered the named one");
}

/// The fast path finds a plain slab's head by rounding the object's address down to the
/// named cache's slab size (`plain_slab_off`): objects of caches whose slabs are larger or
/// smaller than the named cache's, in head or tail pages, must still be told apart.
#[test]
fn caches_of_other_slab_orders_are_told_apart() {
    let m = machine();
    let small = m.kmem_cache_create("order_small", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let large = m.kmem_cache_create("order_large", 3000, 0, SlabFlags::NO_MERGE, None).unwrap();
    assert!(large.order() > small.order(), "{} {}", large.order(), small.order());
    let smalls: Vec<_> = (0..200).map(|_| m.kmem_cache_alloc(&small, Gfp::KERNEL).unwrap()).collect();
    let larges: Vec<_> = (0..40).map(|_| m.kmem_cache_alloc(&large, Gfp::KERNEL).unwrap()).collect();
    let mut wrong = 0;
    for (named, objs) in [(&large, &smalls), (&small, &larges)] {
        for p in objs.iter() {
            // SAFETY: deliberate misuse: every object named with the other cache; each is
            // freed to its own cache (and reported), once.
            unsafe { m.kmem_cache_free(named, *p) };
            wrong += 1;
        }
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), wrong);
    for c in [&small, &large] {
        m.kmem_cache_shrink(c);
        assert_eq!(kmem::proc::slab_info(&m, c).active_objs, 0, "{}: freed to its own cache", c.name());
        assert_eq!(m.validate_slab_cache(c).errors, 0);
    }
    // And named rightly, every object goes back, and comes out once.
    for c in [&small, &large] {
        let objs: Vec<_> = (0..300).map(|_| m.kmem_cache_alloc(c, Gfp::KERNEL).unwrap()).collect();
        assert_eq!(objs.iter().collect::<HashSet<_>>().len(), objs.len());
        for p in objs {
            // SAFETY: ours, freed once.
            unsafe { m.kmem_cache_free(c, p) };
        }
        m.kmem_cache_shrink(c);
        assert_eq!(kmem::proc::slab_info(&m, c).active_objs, 0);
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), wrong, "{:?}", m.reports().take());
    common::assert_still_works(&m);
}

#[test]
fn interior_and_tail_pointers_are_refused_on_the_fast_path_too() {
    let m = machine();
    // 4 slots of 1000 bytes in a 4 KiB slab leave 96 bytes after the last one; an order-1 or
    // larger slab of 3000-byte slots puts objects across page boundaries (tail pages).
    for size in [1000usize, 3000] {
        let c = m.kmem_cache_create("interior", size, 0, SlabFlags::NO_MERGE, None).unwrap();
        let objs: Vec<_> = (0..16).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
        let before = m.report_count(ReportKind::SlabBug);
        for p in &objs {
            // SAFETY: deliberate misuse: pointers into objects, not at their starts.
            unsafe { m.kmem_cache_free(&c, NonNull::new_unchecked(p.as_ptr().add(8))) };
        }
        assert_eq!(m.report_count(ReportKind::SlabBug), before + objs.len() as u64, "size {size}");
        for p in objs {
            // SAFETY: ours, freed once (the misuse above freed nothing).
            unsafe { m.kmem_cache_free(&c, p) };
        }
        assert_eq!(m.validate_slab_cache(&c).errors, 0);
        m.kmem_cache_shrink(&c);
        assert_eq!(kmem::proc::slab_info(&m, &c).active_objs, 0, "size {size}");
    }
    common::assert_still_works(&m);
}

#[test]
fn kfree_takes_objects_of_any_cache() {
    let m = machine();
    let c = m.kmem_cache_create("kfree_any", 72, 0, SlabFlags::NO_MERGE, None).unwrap();
    let cc = m.kmem_cache_create("kfree_any_coloured", 200, 0, SlabFlags::COLOUR | SlabFlags::NO_MERGE, None).unwrap();
    let mut objs = Vec::new();
    for _ in 0..500 {
        objs.push(m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
        objs.push(m.kmem_cache_alloc(&cc, Gfp::KERNEL).unwrap());
        objs.push(m.kmalloc(40, Gfp::KERNEL).unwrap());
    }
    shuffle(&mut objs, 7);
    for p in objs {
        // SAFETY: ours, freed once; kfree takes any slab object, as Linux's does.
        unsafe { m.kfree(p.as_ptr()) };
    }
    for cache in [&c, &cc] {
        m.kmem_cache_shrink(cache);
        assert_eq!(kmem::proc::slab_info(&m, cache).active_objs, 0);
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    assert_eq!(m.report_count(ReportKind::Warning), 0, "{:?}", m.reports().take());
}

/// Sheaves go back to their slabs in runs of consecutive objects of one slab (`flush_sheaf`):
/// frees in allocation order make long runs, interleaved caches and shuffles short ones.
/// Every object comes back exactly once, the slabs' words and lists stay exact, and an
/// object flushed to its slab is still caught when freed again.
#[test]
fn sheaf_flushes_in_runs_keep_every_slab_exact() {
    let m = machine();
    // 8 B: a slab holds more objects than a sheaf, so a new slab's first objects go to the
    // sheaf unchained and the rest stay on its freelist (`fill_from_new_slab`).
    for (size, flags) in
        [(8usize, SlabFlags::NONE), (64, SlabFlags::NONE), (200, SlabFlags::COLOUR), (3000, SlabFlags::NONE)]
    {
        let c = m.kmem_cache_create("flush_runs", size, 0, flags | SlabFlags::NO_MERGE, None).unwrap();
        for order in 0..3u64 {
            let mut objs: Vec<NonNull<u8>> = (0..3000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
            match order {
                0 => {}                                        // allocation order: whole slabs per run
                1 => objs.reverse(),                           // runs in descending address order
                _ => shuffle(&mut objs, 0x5eed + size as u64), // runs of one object
            }
            for p in &objs {
                // SAFETY: ours, freed once.
                unsafe { m.kmem_cache_free(&c, *p) };
            }
            m.kmem_cache_shrink(&c); // flushes every sheaf, then frees the empty slabs
            assert_eq!(m.validate_slab_cache(&c).errors, 0, "size {size} order {order}");
            assert_eq!(kmem::proc::slab_info(&m, &c).active_objs, 0, "size {size} order {order}: all came back");
            let again: Vec<_> = (0..3000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
            let distinct: HashSet<_> = again.iter().collect();
            assert_eq!(distinct.len(), again.len(), "size {size} order {order}: an object handed out twice");
            for p in again {
                // SAFETY: ours, freed once.
                unsafe { m.kmem_cache_free(&c, p) };
            }
        }
        // A flushed object freed again: on its slab's freelist now, still a double free.
        let keep = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        let a = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        let before = m.report_count(ReportKind::SlabBug);
        // SAFETY: `a` freed twice with a flush between (the misuse under test).
        unsafe {
            m.kmem_cache_free(&c, a);
            m.kmem_cache_shrink(&c);
            m.kmem_cache_free(&c, a);
            m.kmem_cache_free(&c, keep);
        }
        assert_eq!(m.report_count(ReportKind::SlabBug), before + 1, "size {size}: the double free after a flush");
        assert_eq!(m.validate_slab_cache(&c).errors, 0);
    }
    common::assert_still_works(&m);
}

/// `kfree` finds a slab object's cache in the object's own page descriptor: a slab's tail
/// pages carry their head's word (`Page::slab_word_any`). When the slab ends, its tails must
/// stop saying so: a zeroed block later made of the same frames is no slab, and a `kfree` of
/// a pointer into one of its later pages (at a slot boundary of the old cache) is an invalid
/// free, reported, that hands nothing out. If those pages still carried the word, the fast
/// path would take the pointer as a free object of the old cache (its free pointer reads
/// zero: not a free object's) and the cache would hand that memory out again. Both a
/// compound block (whose tails `prep_new_page` rewrites) and a plain one (whose later pages
/// nothing rewrites when it is made: the slab's end must have cleared them, as its teardown
/// and the compound free both do).
#[test]
fn kfree_into_a_former_slabs_tail_page_is_refused() {
    for comp in [Gfp::COMP, Gfp::empty()] {
        kfree_into_a_former_slabs_tail_page(comp);
    }
}

fn kfree_into_a_former_slabs_tail_page(comp: Gfp) {
    let m = machine();
    let c = m.kmem_cache_create("tail_words", 1024, 0, SlabFlags::NO_MERGE, None).unwrap();
    let order = c.order();
    assert!(order >= 1, "slabs of several pages");
    let objs: Vec<_> = (0..256).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    let old_pages: HashSet<usize> = objs.iter().map(|p| p.as_ptr() as usize >> kmem::PAGE_SHIFT).collect();
    for p in objs {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    m.kmem_cache_shrink(&c);
    assert_eq!(kmem::proc::slab_info(&m, &c).num_slabs, 0, "every slab went back");
    // Zeroed compound blocks of the slabs' order until one is made of a former slab's frames.
    let bytes = kmem::PAGE_SIZE << order;
    let mut held = Vec::new();
    let block = loop {
        let p = m.alloc_pages(Gfp::KERNEL | comp | Gfp::ZERO, kmem::Order::of(order)).expect("memory");
        let va = m.page_address(p).unwrap().as_usize();
        held.push(p);
        if old_pages.contains(&(va >> kmem::PAGE_SHIFT)) {
            break va;
        }
        assert!(held.len() < 4096, "no block reused a former slab's frames");
    };
    let reports = |m: &Machine| kmem::ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum::<u64>();
    for i in 1..1usize << order {
        let before = reports(&m);
        // SAFETY: deliberate misuse: a pointer into a later page of a block (compound or
        // not) that is no kmalloc allocation; kmem must refuse it.
        unsafe { m.kfree((block + (i << kmem::PAGE_SHIFT)) as *const u8) };
        assert!(reports(&m) > before, "kfree into page {i} of a former slab ({comp:?}) went unreported");
    }
    // Nothing of the block is handed out.
    let again: Vec<_> = (0..512).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    assert!(
        again.iter().all(|p| !(block..block + bytes).contains(&(p.as_ptr() as usize))),
        "the cache handed out memory of a compound block it does not own"
    );
    for p in again {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, p) };
    }
    for p in held {
        // SAFETY: ours, allocated with this order, freed once.
        unsafe { m.__free_pages(p, kmem::Order::of(order)) };
    }
    common::assert_still_works(&m);
}

/// `kfree` finds a plain slab through the object's own frame and leaves the slab's head to
/// the slow paths (`SlabFrame`): a double free of objects in a slab's tail frames, found on
/// their slab's freelist after a shrink flushed the sheaves, must be caught through the
/// resolved head (with a wrong head the freelist walk misses the object, the free goes
/// through and the object is handed out twice).
#[test]
fn a_kfree_twice_in_a_slabs_tail_frame_is_caught() {
    let m = machine();
    let c = m.kmalloc_slab(2048, Gfp::KERNEL).expect("kmalloc-2k");
    assert!(c.order() >= 1, "slabs of several frames");
    let objs: Vec<_> = (0..64).map(|_| m.kmalloc(2048, Gfp::KERNEL).unwrap()).collect();
    let slab_bytes = kmem::PAGE_SIZE << c.order();
    // Every other object is freed twice; the rest stay live, so no slab empties.
    let twice: Vec<_> = objs.iter().step_by(2).copied().collect();
    let in_tail = twice.iter().filter(|p| (p.as_ptr() as usize) % slab_bytes >= kmem::PAGE_SIZE).count();
    assert!(in_tail >= 8, "objects in tail frames: {in_tail}");
    for p in &twice {
        // SAFETY: ours, freed once here.
        unsafe { m.kfree(p.as_ptr()) };
    }
    m.kmem_cache_shrink(c);
    let before = m.report_count(ReportKind::SlabBug);
    for p in &twice {
        // SAFETY: deliberate misuse: each freed a second time.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), before + twice.len() as u64);
    let again: Vec<_> = (0..256).map(|_| m.kmalloc(2048, Gfp::KERNEL).unwrap()).collect();
    let distinct: HashSet<_> = again.iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(distinct.len(), again.len(), "an object handed out twice");
    for p in objs.iter().skip(1).step_by(2).chain(again.iter()) {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(m.validate_slab_cache(c).errors, 0);
    common::assert_still_works(&m);
}
