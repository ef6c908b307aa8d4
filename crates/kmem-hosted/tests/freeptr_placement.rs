//! Where a free object keeps its free pointer (`SlabBootConfig::freeptr_at_start`): Linux's
//! middle of the object by default, the object's start on machines that ask for it (process
//! allocators: kmem-alloc). Either way a free writes only that word, the checks that keep an
//! object from being handed out twice still catch double frees, and live objects are never
//! written by the allocator.

use crate::common;

use std::collections::HashSet;
use std::ptr::NonNull;

use kmem::{Gfp, ReportKind, SlabFlags};
use kmem_hosted::{Machine, MachineBuilder};

fn machine(at_start: bool) -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(2).slab_freeptr_at_start(at_start).quiet_reports().build().unwrap()
}

/// Fills `len` bytes at `p` with `byte`.
fn fill(p: NonNull<u8>, len: usize, byte: u8) {
    // SAFETY: `p` is a live object of at least `len` bytes owned by the caller.
    unsafe { p.as_ptr().write_bytes(byte, len) };
}

/// The offsets of the 8-byte words of an object of `len` bytes that differ from `byte`.
fn changed_words(p: NonNull<u8>, len: usize, byte: u8) -> Vec<usize> {
    // SAFETY: `p` is the direct-map address of a slab object of `len` bytes: readable memory
    // of the machine, even when free (nothing else runs on this machine).
    let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    (0..len / 8).filter(|w| bytes[w * 8..w * 8 + 8].iter().any(|&b| b != byte)).map(|w| w * 8).collect()
}

#[test]
fn a_free_writes_one_word_in_the_middle_by_default_and_at_the_start_when_asked() {
    for (at_start, want) in [(false, 128usize), (true, 0)] {
        let m = machine(at_start);
        let c = m.kmem_cache_create("freeptr", 256, 0, SlabFlags::NO_MERGE, None).unwrap();
        assert_eq!(c.layout().offset as usize, want);
        let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        fill(p, 256, 0xa5);
        // SAFETY: ours, freed once; read afterwards only to see what the free wrote.
        unsafe { m.kmem_cache_free(&c, p) };
        assert_eq!(changed_words(p, 256, 0xa5), vec![want], "at_start {at_start}: the free pointer alone");
        let q = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        assert_eq!(q, p, "the sheaf hands the object back first");
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, q) };
        assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    }
}

#[test]
fn a_constructed_object_keeps_its_bytes_either_way() {
    fn ctor(obj: &mut [u8]) {
        obj.fill(0x3c);
    }
    let m = machine(true);
    let c = m.kmem_cache_create("freeptr_ctor", 64, 0, SlabFlags::NO_MERGE, Some(ctor)).unwrap();
    assert!(c.layout().offset >= 64, "a constructor's object keeps its pointer after it");
    let objs: Vec<_> = (0..100).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for &p in &objs {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, p) };
    }
    for _ in 0..100 {
        let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        assert!(changed_words(p, 64, 0x3c).is_empty(), "constructed state survived the free");
    }
}

#[test]
fn double_frees_are_caught_with_the_pointer_at_the_start() {
    let m = machine(true);
    for size in [16usize, 64, 96, 256, 1000] {
        let before = m.report_count(ReportKind::SlabBug);
        let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
        // SAFETY: ours; the second free is the misuse under test, which kmem must refuse.
        unsafe {
            m.kfree(p.as_ptr());
            m.kfree(p.as_ptr());
        }
        assert_eq!(m.report_count(ReportKind::SlabBug), before + 1, "kmalloc({size}): back-to-back double free");
        // Long after: other frees in between, the object still free in a sheaf or a slab.
        let a = m.kmalloc(size, Gfp::KERNEL).unwrap();
        let others: Vec<_> = (0..300).map(|_| m.kmalloc(size, Gfp::KERNEL).unwrap()).collect();
        // SAFETY: each ours, freed once, then `a` a second time (the misuse).
        unsafe {
            m.kfree(a.as_ptr());
            for o in &others {
                m.kfree(o.as_ptr());
            }
            m.kfree(a.as_ptr());
        }
        assert_eq!(m.report_count(ReportKind::SlabBug), before + 2, "kmalloc({size}): a double free long after");
        let fresh: HashSet<usize> = (0..301).map(|_| m.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize).collect();
        assert_eq!(fresh.len(), 301, "kmalloc({size}): an object handed out twice after the double frees");
    }
    common::assert_still_works(&m);
}

#[test]
fn random_order_churn_never_writes_a_live_object() {
    let m = machine(true);
    let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for step in 0..20_000u32 {
        if live.len() < 2000 {
            let size = 8 + (next() % 993) as usize;
            let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
            let byte = (step % 251) as u8 | 1;
            fill(p, size, byte);
            live.push((p, size, byte));
        }
        if step % 2 == 1 || live.len() == 2000 {
            let (p, size, byte) = live.swap_remove((next() % live.len() as u64) as usize);
            assert!(changed_words(p, size & !7, byte).is_empty(), "a live block of {size} B was written");
            // SAFETY: ours, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
    }
    let distinct: HashSet<usize> = live.iter().map(|(p, ..)| p.as_ptr() as usize).collect();
    assert_eq!(distinct.len(), live.len(), "a block handed out twice");
    for (p, size, byte) in live {
        assert!(changed_words(p, size & !7, byte).is_empty(), "a live block of {size} B was written");
        // SAFETY: ours, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    common::assert_still_works(&m);
}

#[test]
fn debug_caches_check_objects_with_the_pointer_at_the_start() {
    let m = MachineBuilder::new()
        .ram_mib(128)
        .cpus(2)
        .slab_freeptr_at_start(true)
        .slub_debug("FZ")
        .quiet_reports()
        .build()
        .unwrap();
    let c = m.kmem_cache_create("freeptr_debug", 200, 0, SlabFlags::NO_MERGE, None).unwrap();
    let objs: Vec<_> = (0..500).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for &p in &objs {
        fill(p, 200, 0x11);
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&c, p) };
    }
    assert_eq!(m.validate_slab_cache(&c).errors, 0);
    // An overflow into the red zone is still caught.
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: one byte past the object: its right red zone, inside the slot (the misuse).
    unsafe { p.as_ptr().add(200).write(0) };
    let before = m.report_count(ReportKind::SlabBug);
    // SAFETY: ours, freed once.
    unsafe { m.kmem_cache_free(&c, p) };
    assert!(m.report_count(ReportKind::SlabBug) > before, "the red zone overwrite is reported");
}
