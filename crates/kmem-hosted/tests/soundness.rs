//! Safe code never reaches undefined behaviour, and the unsafe API's misuse is reported
//! instead of followed: a slab descriptor rewritten through `PageRef::set_private` (the one
//! descriptor write left to users, `unsafe`), and handles of one machine used with another
//! (caches, per-CPU pointers, vmalloc areas, page references, kmalloc pointers).

mod common;

use std::ptr::NonNull;

use kmem::{Gfp, KmemCache, PageRef, ReportKind, SlabFlags, VirtAddr};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn machine(cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(64).cpus(cpus).build().unwrap()
}

/// The head page of the slab holding `obj`.
fn slab_of<'m>(m: &'m Machine, obj: NonNull<u8>) -> PageRef<'m> {
    let page = m.virt_to_page(VirtAddr::from_ptr(obj.as_ptr())).unwrap();
    let head = m.compound_head(page);
    assert!(head.page().is_slab());
    head
}

/// Every object lies in a slab page of `c`'s machine, and no two are the same.
fn assert_objects_in_slabs(m: &Machine, c: &KmemCache, objs: &[NonNull<u8>]) {
    let mut seen = std::collections::HashSet::new();
    for &o in objs {
        assert!(seen.insert(o), "{o:?} handed out twice");
        let page = m.virt_to_page(VirtAddr::from_ptr(o.as_ptr())).expect("an object lies in the machine's RAM");
        assert!(m.compound_head(page).page().is_slab(), "{o:?} is not in a slab");
        // SAFETY: an object of `c`, ours: writable for its whole size.
        unsafe { o.as_ptr().write_bytes(0x5a, c.object_size()) };
    }
}

/// Allocates until the CPU's sheaf is empty and refilled from the partial slabs twice over.
fn drain_and_refill(m: &Machine, c: &KmemCache) -> Vec<NonNull<u8>> {
    (0..2 * c.sheaf_capacity() + 1).map(|_| m.kmem_cache_alloc(c, Gfp::KERNEL).unwrap()).collect()
}

/// A cache whose slabs hold more objects than a sheaf, so that a refill leaves the slab on
/// the partial list, where the next refill reads its word.
fn partial_cache(m: &Machine) -> kmem::Cache<'_, kmem_hosted::HostedPlatform> {
    let c = m.kmem_cache_create("victim16", 16, 0, SlabFlags::NONE, None).unwrap();
    assert!(c.objects_per_slab() > c.sheaf_capacity());
    c
}

#[test]
fn a_slab_freelist_pointed_outside_its_slab_is_reported_not_followed() {
    // The repro: through `set_private`, the freelist head of a partial slab is
    // pointed 2 GiB past the slab; the next refill used to dereference it and segfault.
    pin_current_thread(0);
    let m = machine(1);
    let c = partial_cache(&m);
    let first = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let slab = slab_of(&m, first);
    let word = slab.private();
    // SAFETY: deliberate violation of the contract (a slab page is kmem's): kmem must catch it.
    unsafe { slab.set_private((word & !0xffff_ffff) | 0x7fff_fff0) };
    let objs = drain_and_refill(&m, &c);
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    let text = m.reports().texts(ReportKind::SlabBug).pop().unwrap();
    assert!(text.contains("BUG victim16 (Not tainted): Freepointer corrupt: freelist offset 0x7ffffff0"), "{text}");
    assert!(text.contains("FIX victim16: Marking all objects used"), "{text}");
    assert_objects_in_slabs(&m, &c, &objs);
    // Objects of the isolated slab can still be freed; its free objects are leaked.
    for o in objs.into_iter().chain([first]) {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    common::assert_still_works(&m);
}

#[test]
fn a_slab_word_with_a_wrong_object_count_is_reported_not_followed() {
    pin_current_thread(0);
    let m = machine(1);
    let c = partial_cache(&m);
    let first = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let slab = slab_of(&m, first);
    let word = slab.private();
    let per_slab = c.objects_per_slab();
    // 32767 objects and as many in use: offsets up to half a MiB would pass a check against
    // the word's own count.
    // SAFETY: deliberate violation of the contract, as above.
    unsafe { slab.set_private((word & 0xffff_ffff) | 0x7fff << 48 | 0x7fff << 32) };
    let objs = drain_and_refill(&m, &c);
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    let text = m.reports().texts(ReportKind::SlabBug).pop().unwrap();
    assert!(text.contains(&format!("Wrong number of objects. Found 32767 but should be {per_slab}")), "{text}");
    assert_objects_in_slabs(&m, &c, &objs);
    for o in objs.into_iter().chain([first]) {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    common::assert_still_works(&m);
}

#[test]
fn a_debug_cache_checks_the_slab_word_before_following_it() {
    pin_current_thread(0);
    let m = machine(1);
    let c = m.kmem_cache_create("victim_dbg", 64, 0, SlabFlags::CONSISTENCY_CHECKS, None).unwrap();
    let first = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let slab = slab_of(&m, first);
    let word = slab.private();
    // SAFETY: deliberate violation of the contract, as above.
    unsafe { slab.set_private((word & !0xffff_ffff) | 0x4000_0000) };
    let second = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    let text = m.reports().texts(ReportKind::SlabBug).pop().unwrap();
    assert!(text.contains("BUG victim_dbg (Not tainted): Freepointer corrupt: freelist offset 0x40000000"), "{text}");
    assert_ne!(slab_of(&m, second), slab, "the isolated slab hands out nothing");
    // SAFETY: ours, freed once.
    unsafe {
        m.kmem_cache_free(&c, first);
        m.kmem_cache_free(&c, second);
    }
    common::assert_still_works(&m);
}

#[test]
fn a_corrupt_object_count_does_not_stretch_the_slab_for_frees() {
    pin_current_thread(0);
    let m = machine(1);
    // 170 slots of 24 bytes in a page: slot 170 would start 16 bytes before the page's end.
    let c = m.kmem_cache_create("victim24", 24, 0, SlabFlags::NONE, None).unwrap();
    assert_eq!((c.order(), c.objects_per_slab()), (0, 170));
    let first = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let slab = slab_of(&m, first);
    let base = m.page_address(slab).unwrap().as_usize();
    let word = slab.private();
    // SAFETY: deliberate violation of the contract (a slab page is kmem's).
    unsafe { slab.set_private((word & !(0x7fff << 48)) | 0x7fff << 48) };
    let phantom = (base + 170 * 24) as *mut u8;
    // SAFETY: deliberate misuse: no object starts there; kmem must refuse it.
    unsafe { m.kmem_cache_free(&c, NonNull::new(phantom).unwrap()) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    let text = m.reports().last().unwrap();
    assert!(text.contains(&format!("Invalid object pointer 0x{:016x}", phantom as usize)), "{text}");
    // The next refill isolates the slab.
    let objs = drain_and_refill(&m, &c);
    assert_eq!(m.report_count(ReportKind::SlabBug), 2);
    assert!(m.reports().last().unwrap().contains("Wrong number of objects. Found 32767 but should be 170"));
    for o in objs.into_iter().chain([first]) {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    common::assert_still_works(&m);
}
