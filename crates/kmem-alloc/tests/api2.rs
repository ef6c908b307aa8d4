//! allocator_api2 over kmem machines: collections in kmalloc and in a slab cache.

use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use kmem::{Gfp, ReportKind, SlabFlags};
use kmem_alloc::{Kmalloc, SlabAlloc};
use kmem_hosted::MachineBuilder;

#[test]
fn vec_and_box_in_kmalloc() {
    let m = MachineBuilder::new().ram_mib(128).build().unwrap();
    let a = Kmalloc::new(&m);
    let mut v: Vec<u64, _> = Vec::new_in(a);
    for i in 0..100_000u64 {
        v.push(i * 3);
    }
    assert_eq!(v[99_999], 299_997);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.len(), 10);
    let b = Box::new_in([7u8; 3000], a);
    assert!(b.iter().all(|&x| x == 7));
    drop(b);
    drop(v);
    assert_eq!(m.report_count(ReportKind::SlabBug) + m.report_count(ReportKind::Warning), 0);
}

#[test]
fn boxes_in_a_slab_cache() {
    #[derive(Debug, PartialEq)]
    struct Dentry {
        hash: u64,
        name: [u8; 32],
    }
    let m = MachineBuilder::new().ram_mib(64).build().unwrap();
    let c = m.kmem_cache_create("dentry_api2", core::mem::size_of::<Dentry>(), 8, SlabFlags::NO_MERGE, None).unwrap();
    let a = SlabAlloc::new(&m, &c);
    let boxes: std::vec::Vec<_> = (0..1000).map(|i| Box::new_in(Dentry { hash: i, name: [i as u8; 32] }, a)).collect();
    assert!(boxes.iter().enumerate().all(|(i, b)| b.hash == i as u64));
    drop(boxes);
    assert_eq!(m.kmem_cache_shrink(&c), 0, "every object went back");
    // A layout the cache cannot hold is an error, not a short object.
    let too_big: Result<Box<[u8; 100], _>, _> = Box::try_new_in([0; 100], a);
    assert!(too_big.is_err());
    let _ = m.kmem_cache_alloc(&c, Gfp::KERNEL).map(|p| {
        // SAFETY: ours.
        unsafe { m.kmem_cache_free(&c, p) }
    });
}

#[test]
fn kmalloc_grows_a_machine_with_a_hotplug_reserve() {
    let m = MachineBuilder::new()
        .memory_map(vec![kmem::MemRegion::usable(0, 64 << 20)])
        .zone_layout(kmem::ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None })
        .hotplug_max(1 << 30)
        .build()
        .unwrap();
    let a = Kmalloc::new(&m);
    let blocks: std::vec::Vec<_> = (0..60)
        .map(|i| {
            let mut v = Vec::with_capacity_in(4 << 20, a);
            v.resize(4 << 20, i as u8);
            v
        })
        .collect();
    assert!(blocks.iter().enumerate().all(|(i, v)| v[12345] == i as u8));
    assert!(m.totalram_pages() * 4096 > 200 << 20, "grew past the 64 MiB it booted with");
    drop(blocks);
}
