//! The owning handles (`KBox`, `KVec`, `VBox`, `VVec`, `KVBox`, `KVVec`) as a crate that
//! depends on kmem uses them: no `unsafe` anywhere in this file. Dropping frees (the
//! machine's object and page counts return to where they started), values are dropped once,
//! growth keeps contents, zero-sized types allocate nothing, alignment is kept or refused,
//! and none of it makes a report.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use kmem::kmalloc::{KmallocErrorKind, KMALLOC_MAX_SIZE};
use kmem::vmalloc::VmallocErrorKind;
use kmem::{Gfp, KBox, KVBox, KVVec, KVec, ReportKind, VBox, VVec, PAGE_SIZE};
use kmem_hosted::{Machine, MachineBuilder};

/// A debug machine: its caches have no per-CPU sheaves, so /proc/slabinfo's active objects
/// are exactly the objects handed out.
fn machine() -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("").build().unwrap()
}

/// Objects handed out by the kmalloc caches, summed (after vfree's recycle slots are
/// drained: they keep freed areas and their kmalloc'ed `vm_struct`s for reuse).
fn kmalloc_objects(m: &Machine) -> usize {
    m.recycle_drain();
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    s.lines()
        .skip(2)
        .filter(|l| l.starts_with("kmalloc-"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap())
        .sum()
}

/// Pages behind vmalloc areas (`VmallocUsed`).
fn vmalloc_pages(m: &Machine) -> usize {
    m.recycle_drain();
    m.vmalloc_stats().used_pages
}

/// Makes vmalloc's one-time metadata (the recycle table, kmalloc'ed on first use) exist, so
/// that counts taken afterwards return to their start.
fn warm_vmalloc(m: &Machine) {
    drop(VBox::new(m, [0u8; 8192], Gfp::KERNEL).unwrap());
}

fn no_reports(m: &Machine) {
    for k in [ReportKind::BadPage, ReportKind::Warning, ReportKind::SlabBug, ReportKind::PageAllocFailure] {
        assert_eq!(m.report_count(k), 0, "{k:?}: {:?}", m.reports().last());
    }
}

/// Counts its drops in the counter it points at.
struct Counted<'a>(&'a AtomicUsize, #[allow(dead_code)] [u64; 4]);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn kbox_holds_its_value_and_drop_frees_it_once() {
    let m = machine();
    let start = kmalloc_objects(&m);
    let drops = AtomicUsize::new(0);
    let mut boxes = Vec::new();
    for i in 0..50u64 {
        let mut b = KBox::new(&m, Counted(&drops, [i; 4]), Gfp::KERNEL).unwrap();
        b.1[3] += 1;
        boxes.push(b);
    }
    assert_eq!(kmalloc_objects(&m), start + 50);
    assert!(boxes.iter().enumerate().all(|(i, b)| b.1 == [i as u64, i as u64, i as u64, i as u64 + 1]));
    drop(boxes);
    assert_eq!(drops.load(Ordering::Relaxed), 50);
    assert_eq!(kmalloc_objects(&m), start);

    // into_inner moves the value out and frees the memory; the value is dropped later, once.
    let v = KBox::into_inner(KBox::new(&m, Counted(&drops, [7; 4]), Gfp::KERNEL).unwrap());
    assert_eq!(kmalloc_objects(&m), start);
    assert_eq!(drops.load(Ordering::Relaxed), 50);
    drop(v);
    assert_eq!(drops.load(Ordering::Relaxed), 51);

    let u = KBox::<_, [u32; 3]>::new_uninit(&m, Gfp::KERNEL).unwrap();
    let p = KBox::pin(&m, 5u8, Gfp::KERNEL).unwrap();
    assert_eq!(*KBox::write(u, [1, 2, 3]), [1, 2, 3]);
    assert_eq!(*p, 5);
    drop(p);
    assert_eq!(kmalloc_objects(&m), start);
    no_reports(&m);
}

#[test]
fn kvec_grows_with_krealloc_keeps_contents_and_frees_on_drop() {
    let m = machine();
    let start = kmalloc_objects(&m);
    let mut v = KVec::new(&m);
    assert_eq!((v.len(), v.capacity()), (0, 0));
    let mut caps = Vec::new();
    for i in 0..5000u32 {
        v.push(i, Gfp::KERNEL).unwrap();
        if caps.last() != Some(&v.capacity()) {
            caps.push(v.capacity());
        }
    }
    assert_eq!(v.len(), 5000);
    assert!(v.iter().copied().eq(0..5000), "contents survive every krealloc");
    assert!(caps.windows(2).all(|w| w[1] >= 2 * w[0]), "capacity at least doubles: {caps:?}");
    assert!(v.capacity() * 4 > KMALLOC_MAX_SIZE.min(8192), "grew past the slab caches into large kmalloc");
    assert_eq!(v.pop(), Some(4999));
    v.truncate(10);
    v.extend_from_slice(&[100, 101], Gfp::KERNEL).unwrap();
    v.extend(200..203, Gfp::KERNEL).unwrap();
    assert_eq!(v.as_slice(), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 101, 200, 201, 202]);
    v[0] = 42;
    assert_eq!(v.first(), Some(&42));
    v.clear();
    assert!(v.is_empty() && v.capacity() >= 5000);
    drop(v);
    assert_eq!(kmalloc_objects(&m), start);

    // Elements are dropped once each: by truncate, pop's caller, or the vector's drop.
    let drops = AtomicUsize::new(0);
    let mut v = KVec::with_capacity(&m, 3, Gfp::KERNEL).unwrap();
    for i in 0..100 {
        v.push(Counted(&drops, [i; 4]), Gfp::KERNEL).unwrap();
    }
    v.truncate(60);
    assert_eq!(drops.load(Ordering::Relaxed), 40);
    drop(v.pop());
    assert_eq!(drops.load(Ordering::Relaxed), 41);
    drop(v);
    assert_eq!(drops.load(Ordering::Relaxed), 100);
    assert_eq!(kmalloc_objects(&m), start);
    no_reports(&m);
}

#[test]
fn vbox_and_vvec_live_in_vmalloc_space_and_free_their_pages() {
    let m = machine();
    warm_vmalloc(&m);
    let (objs, pages) = (kmalloc_objects(&m), vmalloc_pages(&m));
    let b = VBox::new(&m, [3u64; 2048], Gfp::KERNEL).unwrap();
    assert!(m.is_vmalloc_addr(b.as_ptr()));
    assert_eq!(b.as_ptr() as usize % PAGE_SIZE, 0, "vmalloc memory is page-aligned");
    assert!(b.iter().all(|&x| x == 3));
    assert_eq!(vmalloc_pages(&m), pages + 4);
    drop(b);
    assert_eq!(vmalloc_pages(&m), pages);

    let mut v = VVec::new(&m);
    for i in 0..20_000u64 {
        v.push(i, Gfp::KERNEL).unwrap();
    }
    assert!(m.is_vmalloc_addr(v.as_ptr().cast()));
    assert!(v.iter().copied().eq(0..20_000), "contents survive every vrealloc");
    assert!(vmalloc_pages(&m) >= pages + 20_000 * 8 / PAGE_SIZE);
    drop(v);
    assert_eq!(vmalloc_pages(&m), pages);
    assert_eq!(kmalloc_objects(&m), objs);
    no_reports(&m);
}

#[test]
fn kvbox_and_kvvec_use_kmalloc_when_small_and_vmalloc_when_large() {
    let m = machine();
    warm_vmalloc(&m);
    let (objs, pages) = (kmalloc_objects(&m), vmalloc_pages(&m));
    let small = KVBox::new(&m, [1u8; 100], Gfp::KERNEL).unwrap();
    assert!(!m.is_vmalloc_addr(small.as_ptr()));
    assert_eq!(kmalloc_objects(&m), objs + 1);
    drop(small);

    // Grows from kmalloc buckets through large kmalloc blocks (NORETRY: may fall back) into
    // vmalloc, copying each time.
    let mut v = KVVec::new(&m);
    for i in 0..(KMALLOC_MAX_SIZE / 4 + 1000) as u32 {
        v.push(i, Gfp::KERNEL).unwrap();
    }
    assert!(v.iter().copied().eq(0..(KMALLOC_MAX_SIZE / 4 + 1000) as u32));
    assert!(m.is_vmalloc_addr(v.as_ptr().cast()), "above KMALLOC_MAX_SIZE only vmalloc can serve it");
    drop(v);
    assert_eq!((kmalloc_objects(&m), vmalloc_pages(&m)), (objs, pages));
    no_reports(&m);
}

#[test]
fn zero_sized_types_allocate_nothing_and_still_drop() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Zst;
    impl Drop for Zst {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    let m = machine();
    let (objs, pages) = (kmalloc_objects(&m), vmalloc_pages(&m));
    let b = KBox::new(&m, Zst, Gfp::KERNEL).unwrap();
    let vb = VBox::new(&m, (), Gfp::KERNEL).unwrap();
    let mut v = KVec::new(&m);
    for _ in 0..1000 {
        v.push(Zst, Gfp::KERNEL).unwrap();
    }
    assert_eq!((v.len(), v.capacity()), (1000, usize::MAX));
    assert_eq!((kmalloc_objects(&m), vmalloc_pages(&m)), (objs, pages));
    drop((b, vb, v));
    assert_eq!(DROPS.load(Ordering::Relaxed), 1001);
    no_reports(&m);
}

#[repr(align(64))]
struct Line(#[allow(dead_code)] [u8; 64]);
#[repr(align(512))]
struct Sector([u8; 40]);
#[repr(align(32))]
struct Odd([u8; 96]);
#[repr(align(4096))]
struct PageAligned(#[allow(dead_code)] u8);
#[derive(Debug)]
#[repr(align(8192))]
struct TwoPages(#[allow(dead_code)] u8);

#[test]
fn alignment_is_kept_up_to_a_page_and_refused_above() {
    let m = machine();
    let objs = kmalloc_objects(&m);
    let lines: Vec<_> = (0..40).map(|i| KBox::new(&m, Line([i; 64]), Gfp::KERNEL).unwrap()).collect();
    assert!(lines.iter().all(|b| b.as_ptr() as usize % 64 == 0));
    // 40 bytes aligned to 512: padded to 512 (the kmalloc-512 bucket is naturally aligned).
    let sectors: Vec<_> = (0..40).map(|i| KVBox::new(&m, Sector([i; 40]), Gfp::KERNEL).unwrap()).collect();
    assert!(sectors.iter().enumerate().all(|(i, b)| b.as_ptr() as usize % 512 == 0 && b.0[39] == i as u8));
    // 96 bytes aligned to 32: the kmalloc-96 bucket only promises 8, so it is padded to 128.
    let odd: Vec<_> = (0..40).map(|i| KBox::new(&m, Odd([i; 96]), Gfp::KERNEL).unwrap()).collect();
    assert!(odd.iter().enumerate().all(|(i, b)| b.as_ptr() as usize % 32 == 0 && b.0[95] == i as u8));
    let mut v = KVec::new(&m);
    for i in 0..300 {
        v.push(Sector([i as u8; 40]), Gfp::KERNEL).unwrap();
        assert_eq!(v.as_ptr() as usize % 512, 0, "after growth to {}", v.capacity());
    }
    let p = KBox::new(&m, PageAligned(1), Gfp::KERNEL).unwrap();
    assert_eq!(p.as_ptr() as usize % 4096, 0);

    let e = KBox::new(&m, TwoPages(1), Gfp::KERNEL).unwrap_err();
    assert_eq!(e.kind, KmallocErrorKind::Align(8192));
    let e = VBox::new(&m, TwoPages(1), Gfp::KERNEL).unwrap_err();
    assert_eq!(e.kind, VmallocErrorKind::BadAlign);
    drop((lines, sectors, odd, v, p));
    assert_eq!(kmalloc_objects(&m), objs);
    no_reports(&m);
}

#[test]
fn failures_return_the_backends_error_and_change_nothing() {
    let m = machine();
    let objs = kmalloc_objects(&m);
    let e = KVec::<_, u64>::with_capacity(&m, usize::MAX / 4, Gfp::KERNEL).unwrap_err();
    assert_eq!(e.kind, KmallocErrorKind::Overflow);
    let e = KVec::<_, u8>::with_capacity(&m, KMALLOC_MAX_SIZE + 1, Gfp::KERNEL | Gfp::NOWARN).unwrap_err();
    assert_eq!(e.kind, KmallocErrorKind::TooLarge);
    let e = VVec::<_, u64>::with_capacity(&m, usize::MAX / 4, Gfp::KERNEL).unwrap_err();
    assert_eq!(e.kind, VmallocErrorKind::TooLarge);

    let mut v = KVec::new(&m);
    v.extend_from_slice(&[1u8, 2, 3], Gfp::KERNEL).unwrap();
    let cap = v.capacity();
    assert!(v.reserve(usize::MAX, Gfp::KERNEL).is_err());
    assert!(v.reserve(KMALLOC_MAX_SIZE, Gfp::KERNEL | Gfp::NOWARN).is_err());
    assert_eq!((v.as_slice(), v.capacity()), (&[1u8, 2, 3][..], cap), "a failed growth changes nothing");
    drop(v);
    assert_eq!(kmalloc_objects(&m), objs);
}

#[test]
fn handles_cross_threads() {
    let m = machine();
    let objs = kmalloc_objects(&m);
    let mut v = KVec::new(&m);
    v.extend(0..1000u64, Gfp::KERNEL).unwrap();
    let b = KBox::new(&m, 7u64, Gfp::KERNEL).unwrap();
    let sum = std::thread::scope(|s| s.spawn(move || v.iter().sum::<u64>() + *b).join().unwrap());
    assert_eq!(sum, 499_500 + 7);
    assert_eq!(kmalloc_objects(&m), objs);
}
