//! Pointers that `kfree`, `ksize`, `krealloc` and `kfree_nolock` must refuse although they
//! point at a live slab object: kmem's own sheaves and cache descriptors. (`ksize_checked` of
//! a freed object: kmem-hosted's `misuse_catalogue_frees`, which reads the reports' texts.)

use crate::gfp::Gfp;
use crate::kmalloc::KmallocErrorKind;
use crate::platform::ReportKind;
use crate::slab::SlabFlags;
use crate::testing;
use crate::Kmem;

/// Each of the five entry points, once, on `p`; every one must report (a `WARNING`) and
/// free nothing.
fn refuse_everywhere<P: crate::Platform>(k: &Kmem<P>, p: *mut u8) {
    let before = k.report_count(ReportKind::Warning);
    // SAFETY: the misuse under test: `p` is kmem's own live object; each call must refuse it
    // without freeing or writing it.
    unsafe {
        k.kfree(p);
        assert_eq!(k.ksize(p), 0);
        assert_eq!(k.ksize_checked(p), 0);
        assert_eq!(k.krealloc(p, 16, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::InvalidPointer);
        k.kfree_nolock(p);
    }
    assert_eq!(k.report_count(ReportKind::Warning), before + 5, "five refusals, each reported");
}

/// A sheaf (a `kmem_sheaf` object) and a cache's descriptor (a `kmem_cache` object) are
/// refused: before, `kfree` of either freed it while kmem still used it, and an allocator's
/// `realloc` resized it in place.
#[test]
fn kmems_own_objects_are_not_freed_through_kfree() {
    let k = testing::machine(64);
    let c = k.kmem_cache_create("own_objects", 48, 0, SlabFlags::NONE, None).unwrap();
    let desc = &*c as *const crate::slab::KmemCache as *mut u8;
    refuse_everywhere(&k, desc);
    let sheaf = k.alloc_sheaf(&c, Gfp::KERNEL).expect("a sheaf");
    refuse_everywhere(&k, sheaf as *mut u8);
    // Both still kmem's: the sheaf is freed once, with no report; the cache works.
    let slab_bugs = k.report_count(ReportKind::SlabBug);
    k.free_sheaf(sheaf);
    let o = c.alloc(Gfp::KERNEL).unwrap();
    // SAFETY: ours, freed once.
    unsafe { c.free(o) };
    drop(c);
    assert_eq!(k.report_count(ReportKind::SlabBug), slab_bugs, "no double free of the sheaf or the descriptor");
    k.verify().expect("consistent after the refusals");
}
