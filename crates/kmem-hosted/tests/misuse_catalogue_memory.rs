//! The misuse catalogue, part 2: bad memory accesses (docs/MISUSE.md lists every case).
//!
//! Writes after free (a debug cache finds the damaged poison; a plain cache does not look at
//! object contents, and catches only a damaged free pointer it follows), overflows into red
//! zones and kmalloc red zones (debug caches), and accesses past a vmalloc area (the guard
//! page faults: shown in a forked child). Each case asserts the exact outcome, then that kmem
//! keeps working (`common::assert_still_works`).

use crate::common;

use std::ptr::NonNull;

use kmem::{Gfp, ReportKind, SlabFlags, PAGE_SIZE};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn machine() -> Machine {
    pin_current_thread(0);
    MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap()
}

fn bugs(m: &Machine) -> Vec<String> {
    m.reports().texts(ReportKind::SlabBug)
}

fn poke(p: NonNull<u8>, off: usize, v: u8) {
    // SAFETY: callers write inside the object's slot or its red zones, which lie in the
    // slab's memory; the misuse under test.
    unsafe { p.as_ptr().add(off).write_volatile(v) }
}

#[test]
fn write_after_free_on_a_debug_cache() {
    let m = machine();
    let c = m.kmem_cache_create("waf_poison", 64, 0, SlabFlags::POISON, None).unwrap();
    let (a, b) = (m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap(), m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    // SAFETY: ours, freed once.
    unsafe { m.kmem_cache_free(&c, b) };
    poke(b, 20, 0x11); // use after free
    let x = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_ne!(x, b, "the damaged object is not handed out");
    let t = bugs(&m);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert!(t[0].contains("BUG waf_poison (Not tainted): Poison overwritten"), "{}", t[0]);
    assert!(t[0].contains("First byte 0x11 instead of 0x6b"), "{}", t[0]);
    assert_eq!(t[1].trim_end(), "FIX waf_poison: Marking all objects used");
    // SAFETY: ours, freed once.
    unsafe {
        m.kmem_cache_free(&c, a);
        m.kmem_cache_free(&c, x);
    }
    assert_eq!(bugs(&m).len(), 2);
    common::assert_still_works(&m);
}

#[test]
fn write_after_free_on_a_plain_cache_is_not_looked_for() {
    // Without debugging, kmem (as Linux) does not check object contents: the write lands in
    // the free object and the next owner sees it. kmem's state is not in the object's data
    // (only its free pointer word, which a sheaf never follows), so nothing breaks.
    let m = machine();
    let c = m.kmem_cache_create("waf_plain", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let fp = c.layout().offset as usize;
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: ours, freed once.
    unsafe { m.kmem_cache_free(&c, p) };
    for i in (0..64).filter(|i| !(fp..fp + 8).contains(i)) {
        poke(p, i, 0x5a); // use after free
    }
    let q = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(q, p, "the CPU's sheaf hands the object back");
    // SAFETY: ours again.
    assert_eq!(unsafe { q.as_ptr().read() }, 0x5a, "the stale write is visible to the new owner");
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    // SAFETY: ours, freed once.
    unsafe { m.kmem_cache_free(&c, q) };
    drop(c);
    common::assert_still_works(&m);
}

#[test]
fn write_after_free_over_a_followed_free_pointer_on_a_plain_cache() {
    // An object back on its slab's freelist (a shrink flushed the sheaves) has its encoded
    // free pointer in its slot: a write over it is found when a refill follows the chain.
    let m = machine();
    let c = m.kmem_cache_create("waf_fp", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let fp = c.layout().offset as usize;
    let keep = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap(); // keeps the slab from emptying
    let victims: Vec<_> = (0..3).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for &v in &victims {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, v) };
    }
    m.kmem_cache_shrink(&c);
    (0..8).for_each(|i| poke(victims[2], fp + i, 0xee)); // use after free: the freelist head's pointer
    let got: Vec<_> = (0..c.objects_per_slab()).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    let t = bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG waf_fp (Not tainted): Freechain corrupt"), "{}", t[0]);
    assert!(t[0].contains("FIX waf_fp: Isolate corrupted freechain"), "{}", t[0]);
    assert!(!got.contains(&victims[0]) && !got.contains(&victims[1]), "the chain past the damage is isolated");
    let mut seen = std::collections::HashSet::new();
    assert!(got.iter().all(|p| seen.insert(*p)), "nothing handed out twice");
    for p in got.into_iter().chain([keep]) {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, p) };
    }
    assert_eq!(bugs(&m).len(), 1);
    common::assert_still_works(&m);
}

#[test]
fn overflow_into_a_red_zone() {
    let m = machine();
    let c = m.kmem_cache_create("overflow_rz", 64, 0, SlabFlags::RED_ZONE, None).unwrap();
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    poke(p, 64, 0x01); // one byte past the object
                       // SAFETY: ours; the free finds the overflow and leaves the object allocated.
    unsafe { m.kmem_cache_free(&c, p) };
    let t = bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG overflow_rz (Not tainted): Right Redzone overwritten"), "{}", t[0]);
    assert!(t[0].contains("First byte 0x1 instead of 0xcc"), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX overflow_rz: Object at 0x{:016x} not freed", p.as_ptr() as usize)), "{}", t[0]);
    // The red zone was restored: the object frees cleanly now.
    // SAFETY: ours, freed once.
    unsafe { m.kmem_cache_free(&c, p) };
    assert_eq!(bugs(&m).len(), 1);
    drop(c);
    common::assert_still_works(&m);
}

#[test]
fn overflow_into_a_kmalloc_red_zone() {
    // slub_debug with red zones and owner tracking: kmalloc records each request's size and
    // red-zones the rest of the bucket.
    pin_current_thread(0);
    let m = MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("ZU").build().unwrap();
    let p = m.kmalloc(40, Gfp::KERNEL).unwrap();
    poke(p, 45, 0); // inside the 64-byte bucket, past the 40 bytes asked for
                    // SAFETY: ours; the free finds the overflow.
    unsafe { m.kfree(p.as_ptr()) };
    let t = bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG kmalloc-64 (Not tainted): kmalloc Redzone overwritten"), "{}", t[0]);
    // SAFETY: the object was left allocated with its red zone restored: freed once now.
    unsafe { m.kfree(p.as_ptr()) };
    assert_eq!(bugs(&m).len(), 1);
    common::assert_still_works(&m);
}

#[test]
fn reads_and_writes_past_a_vmalloc_area_fault() {
    let m = machine();
    // Every area is followed by a guard page: `below`'s guard is the page before `p`.
    let below = m.vmalloc(PAGE_SIZE).unwrap().as_ptr();
    let p = m.vmalloc(3 * PAGE_SIZE).unwrap().as_ptr();
    assert_eq!(p as usize, below as usize + 2 * PAGE_SIZE);
    // SAFETY: our area.
    unsafe { p.write_bytes(0x77, 3 * PAGE_SIZE) };
    let end = p as usize + 3 * PAGE_SIZE;
    // SAFETY: deliberately out of bounds (the guard page), each in a child that must die.
    assert_eq!(common::in_child(|| unsafe { (end as *mut u8).write_volatile(1) }), Some(libc::SIGSEGV));
    let read = || {
        // SAFETY: as above.
        std::hint::black_box(unsafe { (end as *const u8).read_volatile() });
    };
    assert_eq!(common::in_child(read), Some(libc::SIGSEGV));
    // And before the start: the page below is `below`'s guard.
    // SAFETY: as above.
    assert_eq!(common::in_child(|| unsafe { ((p as usize - 1) as *mut u8).write_volatile(1) }), Some(libc::SIGSEGV));
    // The parent's area and machine are untouched.
    // SAFETY: our area.
    assert!(unsafe { std::slice::from_raw_parts(p, 3 * PAGE_SIZE) }.iter().all(|&b| b == 0x77));
    // SAFETY: ours, freed once.
    unsafe {
        m.vfree(p);
        m.vfree(below);
    }
    assert_eq!(m.report_count(ReportKind::Warning) + m.report_count(ReportKind::SlabBug), 0);
    common::assert_still_works(&m);
}
