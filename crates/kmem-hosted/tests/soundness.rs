//! Safe code never reaches undefined behaviour, and the unsafe API's misuse is reported
//! instead of followed: a slab descriptor rewritten through `PageRef::set_private` (the one
//! descriptor write left to users, `unsafe`), and handles of one machine used with another
//! (caches, per-CPU pointers, vmalloc areas, page references, kmalloc pointers).

use crate::common;

use std::ptr::NonNull;

use kmem::{Gfp, KmemCache, Order, PageRef, ReportKind, SlabFlags, VirtAddr};
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

/// Machine A with 1 CPU and machine B with 4: the pair (A's per-CPU areas have one
/// unit, so B's CPU 3 indexing them reads past their table).
fn pair() -> (Machine, Machine) {
    pin_current_thread(3);
    (machine(1), machine(4))
}

fn warnings(m: &Machine) -> Vec<String> {
    m.reports().texts(ReportKind::Warning)
}

fn assert_one_line_warning(text: &str, file_func: &str, what: &str) {
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.starts_with("WARNING: CPU: "), "{text}");
    assert!(text.contains(&format!(" at {file_func}: {what} belongs to another machine")), "{text}");
}

#[test]
fn a_cache_of_another_machine_is_refused_everywhere() {
    use kmem::slab::{SlabAllocError, SlubStat};
    let (a, b) = pair();
    let c = a.kmem_cache_create("cache_of_a", 64, 0, SlabFlags::NONE, None).unwrap();
    let mine = b.kmem_cache_create("cache_of_b", 64, 0, SlabFlags::NONE, None).unwrap();
    let obj_b = b.kmem_cache_alloc(&mine, Gfp::KERNEL).unwrap();
    let obj_a = a.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(b.kmem_cache_alloc(&c, Gfp::KERNEL), Err(SlabAllocError::OtherMachine));
    assert_eq!(b.kmem_cache_zalloc(&c, Gfp::KERNEL), Err(SlabAllocError::OtherMachine));
    assert_eq!(b.kmem_cache_alloc_node(&c, Gfp::KERNEL, Some(0)), Err(SlabAllocError::OtherMachine));
    let mut out = [None; 4];
    assert_eq!(b.kmem_cache_alloc_bulk(&c, Gfp::KERNEL, &mut out), 0);
    assert!(out.iter().all(Option::is_none));
    // SAFETY: deliberate misuse: B's object named with A's cache, and A's object given to B
    // with A's cache. Both are refused: nothing is freed.
    unsafe {
        b.kmem_cache_free(&c, obj_b);
        b.kmem_cache_free(&c, obj_a);
    }
    assert_eq!(b.kmem_cache_shrink(&c), 1);
    assert_eq!(b.validate_slab_cache(&c).errors, 1);
    assert_eq!(c.stat(&b, SlubStat::AllocSlowpath), 0);
    assert_eq!(c.sheaf_objects(&b), 0);
    assert_eq!(kmem::proc::slab_info(&b, &c), kmem::proc::SlabInfo::default());
    let w = warnings(&b);
    // (zalloc and alloc_node are kmem_cache_alloc's wrappers, as in Linux.)
    let funcs = [
        "kmem_cache_alloc",
        "kmem_cache_alloc",
        "kmem_cache_alloc",
        "kmem_cache_alloc_bulk",
        "kmem_cache_free",
        "kmem_cache_free",
        "kmem_cache_shrink",
        "validate_slab_cache",
        "slab_stat",
        "sheaf_objects",
        "slab_info",
    ];
    assert_eq!(w.len(), funcs.len(), "{w:#?}");
    for (text, f) in w.iter().zip(funcs) {
        assert_one_line_warning(text, &format!("mm/slub.c {f}"), "cache cache_of_a");
    }
    // Destroying A's cache through B: reported, and destroyed by A (the handle's machine).
    let before = a.nr_caches();
    // SAFETY: A's object, freed once, before its cache goes.
    unsafe { a.kmem_cache_free(&c, obj_a) };
    b.kmem_cache_destroy(c);
    assert_eq!(a.nr_caches(), before - 1);
    assert_one_line_warning(&warnings(&b).pop().unwrap(), "mm/slub.c kmem_cache_destroy", "cache cache_of_a");
    assert!(warnings(&a).is_empty() && a.report_count(ReportKind::SlabBug) == 0);
    // B's object is still B's: it frees normally.
    // SAFETY: ours, freed once.
    unsafe { b.kmem_cache_free(&mine, obj_b) };
    assert_eq!(b.report_count(ReportKind::SlabBug), 0);
    drop(mine);
    common::assert_still_works(&a);
    common::assert_still_works(&b);
}

#[test]
fn per_cpu_pointers_of_another_machine_are_refused() {
    let (a, b) = pair();
    let p = a.__alloc_percpu(16, 8).unwrap();
    // SAFETY: deliberate misuse: A's pointer given to B; refused with a null pointer.
    unsafe {
        assert!(b.per_cpu_ptr(p, 3).is_null());
        assert!(b.this_cpu_ptr(p).is_null());
        b.free_percpu(p);
    }
    let w = warnings(&b);
    assert_eq!(w.len(), 3, "{w:#?}");
    for (text, f) in w.iter().zip(["per_cpu_ptr", "per_cpu_ptr", "free_percpu"]) {
        assert_one_line_warning(text, &format!("mm/percpu.c {f}"), &format!("{p:?}"));
    }
    // A's allocation is untouched: usable and freed by A.
    // SAFETY: A's live allocation, CPU 0 of A.
    unsafe {
        a.per_cpu_ptr(p, 0).cast::<u64>().write(7);
        assert_eq!(a.per_cpu_ptr(p, 0).cast::<u64>().read(), 7);
        a.free_percpu(p);
    }
    // A CPU the machine does not have: reported, null.
    let q = b.__alloc_percpu(8, 8).unwrap();
    // SAFETY: deliberate misuse of the CPU argument.
    unsafe {
        assert!(b.per_cpu_ptr(q, 4).is_null());
        b.free_percpu(q);
    }
    assert!(warnings(&b).pop().unwrap().contains("per_cpu_ptr: CPU 4 out of range (nr_cpus 4)"));
    assert_eq!(a.report_count(ReportKind::Warning), 0);
    common::assert_still_works(&a);
    common::assert_still_works(&b);
}

#[test]
fn page_references_of_another_machine_are_refused() {
    let (a, b) = pair();
    let p = a.alloc_pages(Gfp::KERNEL, Order::of(1)).unwrap();
    // SAFETY: deliberate misuse: A's page given to B; every call is refused.
    unsafe {
        b.__free_pages(p, Order::of(1));
        b.get_page(p);
        b.put_page(p);
        b.split_page(p, Order::of(1));
    }
    assert_eq!(b.vmap(&[p], kmem::PageProt::KERNEL).unwrap_err().kind, kmem::VmallocErrorKind::OtherMachine);
    assert_eq!(b.vm_map_ram(&[p]).unwrap_err().kind, kmem::VmallocErrorKind::OtherMachine);
    let what = format!("page {:#x} (pfn {:#x})", p.page() as *const kmem::Page as usize, p.pfn().as_usize());
    let w = warnings(&b);
    let funcs = [
        "mm/page_alloc.c __free_pages",
        "include/linux/mm.h get_page",
        "include/linux/mm.h put_page",
        "mm/page_alloc.c split_page",
        "mm/vmalloc.c vmap",
        "mm/vmalloc.c vm_map_ram",
    ];
    assert_eq!(w.len(), funcs.len(), "{w:#?}");
    for (text, f) in w.iter().zip(funcs) {
        assert_one_line_warning(text, f, &what);
    }
    assert_eq!(p.refcount(), 1, "A's page is as it was");
    // SAFETY: A's page, freed once by A.
    unsafe { a.__free_pages(p, Order::of(1)) };
    assert_eq!(a.report_count(ReportKind::BadPage) + a.report_count(ReportKind::Warning), 0);
    common::assert_still_works(&a);
    common::assert_still_works(&b);
}

#[test]
fn pointers_of_another_machine_are_reported_and_ignored() {
    use kmem::kmalloc::KmallocErrorKind;
    let (a, b) = pair();
    let small = a.kmalloc(40, Gfp::KERNEL).unwrap().as_ptr();
    let large = a.kmalloc(64 << 10, Gfp::KERNEL).unwrap().as_ptr();
    let area = a.vmalloc(3 * kmem::PAGE_SIZE).unwrap().as_ptr();
    // SAFETY: deliberate misuse: A's pointers given to B; B owns none of them.
    unsafe {
        b.kfree(small);
        b.kfree(large);
        assert_eq!(b.ksize(small), 0);
        assert_eq!(b.krealloc(small, 100, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::InvalidPointer);
        b.vfree(area);
        b.kvfree(area);
    }
    // kvfree of an address outside B's vmalloc range goes to kfree, as in Linux.
    let w = warnings(&b);
    let want = [
        format!("kfree: object pointer: 0x{:016x} was not returned by kmalloc", small as usize),
        format!("kfree: object pointer: 0x{:016x} was not returned by kmalloc", large as usize),
        format!("ksize: object pointer: 0x{:016x} was not returned by kmalloc", small as usize),
        format!("krealloc: object pointer: 0x{:016x} was not returned by kmalloc", small as usize),
        format!("vfree: Trying to vfree() nonexistent vm area ({:#x})", area as usize),
        format!("kfree: object pointer: 0x{:016x} was not returned by kmalloc", area as usize),
    ];
    assert_eq!(w.len(), want.len(), "{w:#?}");
    for (text, want) in w.iter().zip(&want) {
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("WARNING: CPU: ") && text.contains(want.as_str()), "{text}");
    }
    // A's blocks are intact and A frees them.
    // SAFETY: A's blocks, freed once by A.
    unsafe {
        small.write_bytes(1, 40);
        large.write_bytes(2, 64 << 10);
        area.write_bytes(3, 3 * kmem::PAGE_SIZE);
        a.kfree(small);
        a.kfree(large);
        a.vfree(area);
    }
    assert_eq!(a.report_count(ReportKind::Warning) + a.report_count(ReportKind::SlabBug), 0);
    common::assert_still_works(&a);
    common::assert_still_works(&b);
}
