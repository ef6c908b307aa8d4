//! `/proc/slabinfo` golden text on a small hosted machine: the header and the cache lines
//! derived by hand (the golden tests of the other views are in
//! `kmem-hosted/tests/proc_views.rs`; this one was missing).

use kmem::{Gfp, SlabFlags};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn slabinfo(m: &Machine) -> String {
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    s
}

const HEADER: &str = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> \
<batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

#[test]
fn golden_slabinfo() {
    pin_current_thread(0);
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    // A fresh machine lists only the boot caches, with no slab yet: `kmem_sheaf` (the sheaves,
    // 1040 bytes rounded to the cache line: 1088, 15 per order-2 slab) and `kmem_cache` (its
    // first slab comes with the first cache creation).
    assert_eq!(
        slabinfo(&m),
        format!(
            "{HEADER}\
kmem_sheaf             0      0   1088   15    4 : tunables    0    0    0 : slabdata      0      0      0\n\
kmem_cache             0      0    384   21    2 : tunables    0    0    0 : slabdata      0      0      0\n"
        )
    );
    // 100-byte objects: size 104 (8-byte aligned, the free pointer inside the object);
    // order 0 holds 4096 / 104 = 39 of them, above slub_min_objects = 4 * (fls(2) + 1) = 12.
    // Sheaves of 8192 / 104 = 78: the first allocation gets the CPU a sheaf and fills it with
    // the first slab's 39 objects (the node has no other), the 40th refills it from a second. Objects in
    // sheaves count as active (SLUB's slabinfo counts only partial-list free objects as
    // free): 78 of 78 in 2 slabs.
    let c = m.kmem_cache_create("golden_obj", 100, 0, SlabFlags::NO_MERGE, None).unwrap();
    let objs: Vec<_> = (0..40).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    // The boot cache `kmem_cache`: one descriptor per cache (336 bytes with its two CPUs'
    // sheaf addresses and its node part, 384 aligned to the cache line); an order-0 slab
    // would hold 10, under slub_min_objects' 12, so order 1: 8192 / 384 = 21, one of them in
    // use: 1 of 21. `kmem_sheaf`: the one sheaf. Newest cache first.
    let expected = format!(
        "{HEADER}\
golden_obj            78     78    104   39    1 : tunables    0    0    0 : slabdata      2      2      0\n\
kmem_sheaf             1     15   1088   15    4 : tunables    0    0    0 : slabdata      1      1      0\n\
kmem_cache             1     21    384   21    2 : tunables    0    0    0 : slabdata      1      1      0\n"
    );
    assert_eq!(slabinfo(&m), expected);
    for o in objs {
        // SAFETY: ours, unused from here on.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    drop(c);
    assert!(!slabinfo(&m).contains("golden_obj"), "a destroyed cache leaves the list");
}
