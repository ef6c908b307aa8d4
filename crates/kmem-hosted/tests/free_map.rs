//! The free map (`kmem`'s `slab/free_map.rs`): frees that find the object through a copy of
//! the machine's words free exactly what the machine's own fast paths free, catch the same
//! double frees, and send everything else to the caller's `other` way untouched.

use std::cell::Cell;

use kmem::{FreeMap, Gfp, Kmem, Order, ReportKind, SlabFlags};
use kmem_hosted::{Machine, MachineBuilder};

/// Sizes of every kmalloc class, and some between them.
const SIZES: [usize; 14] = [8, 16, 24, 32, 64, 96, 100, 128, 192, 256, 512, 1000, 2048, 8192];

/// A machine as process allocators boot theirs: free pointers at the object's start, which a
/// map needs.
fn machine() -> Machine {
    MachineBuilder::new().ram_mib(64).slab_freeptr_at_start(true).build().unwrap()
}

#[test]
fn the_map_frees_what_the_machine_frees() {
    let m = machine();
    let k: &Kmem<_> = &m;
    let map = m.free_map();
    assert!(m.memmap_is_dense(), "dense");
    assert_ne!(map, FreeMap::EMPTY);
    assert!(map.covers(64 << 20), "the machine's memmap is dense");
    for (n, &size) in SIZES.iter().enumerate() {
        let others = Cell::new(0);
        let other = |p: *const u8| {
            others.set(others.get() + 1);
            // SAFETY: a live block of the machine, freed once.
            unsafe { m.kfree(p) }
        };
        let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
        let q = m.kmalloc(size, Gfp::KERNEL).unwrap();
        // SAFETY: live kmalloc blocks, freed once; the map is this machine's. No fast pin:
        // the frees end on the careful path, after the map's lookup and checks.
        unsafe {
            Kmem::kfree_mapped_or_then_with(|| k, &map, p.as_ptr(), || None, other, || {});
            Kmem::kfree_sized_mapped_or_then_with(|| k, &map, q.as_ptr(), size, || None, other, || {});
        }
        assert_eq!(others.get(), 0, "{size} B: a block the map should have found went to `other`");
        // SAFETY: double frees, which both of the map's paths must catch; nothing else is
        // freed.
        unsafe { Kmem::kfree_mapped_or_then_with(|| k, &map, p.as_ptr(), || None, other, || {}) };
        assert_eq!(m.report_count(ReportKind::SlabBug), 2 * n as u64 + 1, "{size} B: the double free is reported");
        // SAFETY: as above.
        unsafe { Kmem::kfree_sized_mapped_or_then_with(|| k, &map, q.as_ptr(), size, || None, other, || {}) };
        assert_eq!(m.report_count(ReportKind::SlabBug), 2 * n as u64 + 2, "{size} B: by size too");
        assert_eq!(others.get(), 0, "{size} B: the double frees took no other way");
        let again = [m.kmalloc(size, Gfp::KERNEL).unwrap(), m.kmalloc(size, Gfp::KERNEL).unwrap()];
        assert!(again.contains(&p) && again.contains(&q), "{size} B: the freed objects come back");
        for b in again {
            // SAFETY: live blocks, freed once.
            unsafe { m.kfree(b.as_ptr()) };
        }
    }
}

#[test]
fn what_the_map_does_not_find_goes_to_other() {
    let m = machine();
    let k: &Kmem<_> = &m;
    let map = m.free_map();
    let sent = Cell::new(0usize);
    let other = |p: *const u8| {
        assert_eq!(p as usize, sent.get(), "`other` gets the pointer");
        sent.set(0);
    };
    let page = m.alloc_pages(Gfp::KERNEL, Order::of(1)).unwrap();
    let page_va = m.page_address(page).unwrap().as_usize();
    let obj = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr() as usize;
    let big = m.kmalloc(8193, Gfp::KERNEL).unwrap().as_ptr() as usize;
    let (base, len) = m.ram_range();
    // Not objects of any plain slab: a page-allocator block, an object's middle, a large
    // kmalloc block, past the RAM's end, below it, null.
    for p in [page_va, obj + 8, big, base + len, base.wrapping_sub(4096), 0] {
        sent.set(p);
        // SAFETY: nothing is freed (all go to `other`, which only records them); the map is
        // this machine's.
        unsafe { Kmem::kfree_mapped_or_then_with(|| k, &map, p as *const u8, || None, other, || {}) };
        assert_eq!(sent.get(), 0, "{p:#x} went to `other`");
        sent.set(p);
        // SAFETY: as above.
        unsafe { Kmem::kfree_sized_mapped_or_then_with(|| k, &map, p as *const u8, 64, || None, other, || {}) };
        assert_eq!(sent.get(), 0, "{p:#x} by size went to `other`");
    }
    // A right block with a wrong size, and any block with the empty map.
    for (map, size) in [(&map, 4096), (&FreeMap::EMPTY, 64)] {
        sent.set(obj);
        // SAFETY: as above.
        unsafe { Kmem::kfree_sized_mapped_or_then_with(|| k, map, obj as *const u8, size, || None, other, || {}) };
        assert_eq!(sent.get(), 0, "size {size}: went to `other`");
    }
    sent.set(obj);
    // SAFETY: as above.
    unsafe { Kmem::kfree_mapped_or_then_with(|| k, &FreeMap::EMPTY, obj as *const u8, || None, other, || {}) };
    assert_eq!(sent.get(), 0, "the empty map finds nothing");
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "nothing reported: `other` decides");
    // SAFETY: the blocks are live and ours.
    unsafe {
        m.kfree(obj as *const u8);
        m.kfree(big as *const u8);
        m.__free_pages(page, Order::of(1));
    }
    assert_eq!(m.report_count(ReportKind::SlabBug) + m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn a_machine_with_pointers_elsewhere_has_the_empty_map() {
    let m = MachineBuilder::new().ram_mib(64).build().unwrap();
    assert_eq!(m.free_map(), FreeMap::EMPTY, "Linux's placement (mid-object): no map");
}

#[test]
fn a_constructed_cache_is_freed_the_careful_way() {
    fn ctor(obj: &mut [u8]) {
        obj.fill(0x3c);
    }
    let m = machine();
    let k: &Kmem<_> = &m;
    let map = m.free_map();
    let c = m.kmem_cache_create("map_ctor", 64, 0, SlabFlags::NO_MERGE, Some(ctor)).unwrap();
    assert!(c.layout().offset >= 64, "its free pointer after the object");
    let others = Cell::new(0);
    let other = |p: *const u8| {
        others.set(others.get() + 1);
        // SAFETY: the block is live or, the second time, already freed: kfree must catch that.
        unsafe { m.kfree(p) }
    };
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: a live object freed once by kfree's rules, then a double free (the misuse under
    // test); the map is this machine's.
    unsafe { Kmem::kfree_mapped_or_then_with(|| k, &map, p.as_ptr(), || None, other, || {}) };
    assert_eq!(others.get(), 1, "not the map's: its word is not at the start");
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    // SAFETY: as above.
    unsafe { Kmem::kfree_mapped_or_then_with(|| k, &map, p.as_ptr(), || None, other, || {}) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 1, "the double free is caught the careful way");
    let q = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(q, p, "freed once: it comes back");
    assert!(
        // SAFETY: ours, 64 bytes.
        unsafe { std::slice::from_raw_parts(q.as_ptr(), 64) }.iter().all(|&b| b == 0x3c),
        "its constructed bytes untouched by either free"
    );
    // SAFETY: ours, freed once.
    unsafe { m.kmem_cache_free(&c, q) };
}
