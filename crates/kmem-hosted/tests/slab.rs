//! The slab allocator on hosted machines: semantics, layout guarantees, bulk, shrink,
//! destroy, the /proc views, and concurrency with contents checked.

use std::collections::HashSet;

use kmem::{Gfp, ReportKind, SlabFlags};
use kmem_hosted::{Machine, MachineBuilder};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap()
}

#[test]
fn alloc_free_reuse_and_contents() {
    let m = machine();
    let c = m.kmem_cache_create("t64", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let mut objs = Vec::new();
    for i in 0..1000u32 {
        let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        assert_eq!(p.as_ptr() as usize % 8, 0);
        // SAFETY: a fresh 64-byte object of ours.
        unsafe {
            p.as_ptr().write_bytes(0, 64);
            *p.as_ptr().cast::<u32>() = i;
        }
        objs.push(p);
    }
    let set: HashSet<usize> = objs.iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(set.len(), 1000, "no object handed out twice");
    for (i, p) in objs.iter().enumerate() {
        // SAFETY: ours and live.
        assert_eq!(unsafe { *p.as_ptr().cast::<u32>() }, i as u32);
    }
    for p in objs.drain(..) {
        // SAFETY: from `c`, ours, no longer used.
        unsafe { m.kmem_cache_free(&c, p) };
    }
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: as above.
    unsafe { m.kmem_cache_free(&c, p) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    let v = m.validate_slab_cache(&c);
    assert_eq!(v.errors, 0);
    assert_eq!(m.kmem_cache_shrink(&c), 0, "everything free: shrink leaves no slab");
    drop(c);
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}
