//! The misuse catalogue, part 3: bad requests (docs/MISUSE.md lists every case).
//!
//! Zero-size and huge requests, size-arithmetic overflow, bad alignment arguments,
//! destroying a cache with live objects, and sleeping allocations in atomic context. Each
//! case asserts the exact outcome (error, report kind and count, key text), then that kmem
//! keeps working (`common::assert_still_works`).

use crate::common;

use kmem::kmalloc::{KmallocErrorKind, KMALLOC_MAX_SIZE};
use kmem::percpu::PercpuErrorKind;
use kmem::slab::CacheError;
use kmem::{Gfp, Order, ReportKind, SlabFlags, VmallocErrorKind, PAGE_SIZE, ZERO_SIZE_PTR};
use kmem_hosted::{in_irq, pin_current_thread, Machine, MachineBuilder};

fn machine() -> Machine {
    pin_current_thread(0);
    MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap()
}

fn all_reports(m: &Machine) -> u64 {
    ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum()
}

#[test]
fn zero_size_requests() {
    let m = machine();
    // kmalloc(0) is ZERO_SIZE_PTR: not null, never dereferenceable, freed as a no-op.
    let z = m.kmalloc(0, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(z as usize, ZERO_SIZE_PTR);
    // SAFETY: ZERO_SIZE_PTR and null are what kfree accepts as no-ops.
    unsafe {
        assert_eq!(m.ksize(z), 0);
        m.kfree(z);
        m.kfree(std::ptr::null());
        m.vfree(std::ptr::null());
    }
    // vmalloc(0) fails, without Linux's WARN_ON_ONCE (a documented difference).
    assert_eq!(m.vmalloc(0).unwrap_err().kind, VmallocErrorKind::ZeroSize);
    // A per-CPU area of 0 bytes is an illegal request, warned about.
    assert_eq!(m.__alloc_percpu(0, 8).unwrap_err().kind, PercpuErrorKind::IllegalRequest);
    assert!(m.reports().last().unwrap().contains("illegal size (0) or align (8) for percpu allocation"));
    // A cache of 0-byte objects is refused (-EINVAL), with Linux's warning.
    assert_eq!(m.kmem_cache_create("zero", 0, 0, SlabFlags::NONE, None).unwrap_err(), CacheError::Invalid);
    assert!(m
        .reports()
        .last()
        .unwrap()
        .contains("at mm/slab_common.c: kmem_cache_create(zero) integrity check failed"));
    assert_eq!(m.report_count(ReportKind::Warning), 2, "{:#?}", m.reports().take());
    assert_eq!(all_reports(&m), 2);
    common::assert_still_works(&m);
}

#[test]
fn huge_requests() {
    let m = machine();
    for size in [KMALLOC_MAX_SIZE + 1, usize::MAX] {
        assert_eq!(m.kmalloc(size, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::TooLarge);
        assert!(m.reports().last().unwrap().contains(&format!("kmalloc of {size} bytes: above KMALLOC_MAX_SIZE")));
    }
    // With __GFP_NOWARN: the same failure, silently.
    assert!(m.kmalloc(KMALLOC_MAX_SIZE + 1, Gfp::KERNEL | Gfp::NOWARN).is_err());
    assert_eq!(m.report_count(ReportKind::Warning), 2);
    // The largest kmalloc that exists may fail for want of memory, never for its size.
    let big = m.kmalloc(KMALLOC_MAX_SIZE, Gfp::KERNEL | Gfp::NOWARN);
    // vmalloc: more pages than the machine has (`exceeds total pages`), and a size whose
    // page rounding overflows.
    for size in [1usize << 40, usize::MAX] {
        assert_eq!(m.vmalloc(size).unwrap_err().kind, VmallocErrorKind::TooLarge);
    }
    assert!(m.reports().last().unwrap().contains("exceeds total pages"));
    // An order above MAX_PAGE_ORDER cannot be asked for: `Order` is checked at construction.
    assert_eq!(Order::new(11), None);
    // A per-CPU area larger than a unit.
    assert_eq!(m.__alloc_percpu(64 << 10, 8).unwrap_err().kind, PercpuErrorKind::IllegalRequest);
    let before = all_reports(&m);
    if let Ok(p) = big {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(all_reports(&m), before);
    common::assert_still_works(&m);
}

#[test]
fn size_arithmetic_overflow() {
    let m = machine();
    // n * size overflows: NULL, as Linux's kmalloc_array/kcalloc, without a report.
    for (n, size) in [(usize::MAX, 2), (1 << 33, 1 << 33), (3, usize::MAX / 2)] {
        assert_eq!(m.kmalloc_array(n, size, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::Overflow);
        assert_eq!(m.kcalloc(n, size, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::Overflow);
    }
    assert_eq!(all_reports(&m), 0);
    // The same product without overflow works.
    let p = m.kcalloc(16, 16, Gfp::KERNEL).unwrap();
    // SAFETY: 256 fresh zeroed bytes, ours.
    assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 256) }.iter().all(|&b| b == 0));
    // SAFETY: ours, freed once.
    unsafe { m.kfree(p.as_ptr()) };
    common::assert_still_works(&m);
}

#[test]
fn bad_alignment_arguments() {
    let m = machine();
    // Per-CPU: an alignment that is not a power of two, or above a page: one warning each.
    for align in [5, 2 * PAGE_SIZE] {
        assert_eq!(m.__alloc_percpu(8, align).unwrap_err().kind, PercpuErrorKind::IllegalRequest);
        assert!(m
            .reports()
            .last()
            .unwrap()
            .contains(&format!("illegal size (8) or align ({align}) for percpu allocation")));
    }
    // Below 4 (0 included) is raised to 4, as Linux does: not an error.
    let p = m.__alloc_percpu(8, 0).unwrap();
    // SAFETY: ours, freed once.
    unsafe { m.free_percpu(p) };
    // vmalloc with an alignment that is not a power of two.
    assert_eq!(
        m.__vmalloc_node(PAGE_SIZE, 3 * PAGE_SIZE, Gfp::KERNEL, None).unwrap_err().kind,
        VmallocErrorKind::BadAlign
    );
    // A cache alignment that is not a power of two: refused, with Linux's warning.
    assert!(matches!(m.kmem_cache_create("odd_align", 64, 24, SlabFlags::NONE, None), Err(CacheError::Layout(_))));
    assert!(m.reports().last().unwrap().contains("kmem_cache_create(odd_align) integrity check failed"));
    assert_eq!(m.report_count(ReportKind::Warning), 3, "{:#?}", m.reports().take());
    assert_eq!(all_reports(&m), 3);
    common::assert_still_works(&m);
}

#[test]
fn destroying_a_cache_with_live_objects() {
    let m = machine();
    let c = m.kmem_cache_create("still_used", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let live = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let before = m.nr_caches();
    m.kmem_cache_destroy(c);
    // Reported (the slab naming its live object, then the WARNING) and kept, as Linux does.
    let bugs = m.reports().texts(ReportKind::SlabBug);
    assert_eq!(bugs.len(), 1, "{bugs:#?}");
    assert!(
        bugs[0].contains("BUG still_used (Not tainted): Objects remaining in still_used on __kmem_cache_shutdown()")
    );
    assert!(bugs[0].contains(&format!("Object 0x{:016x} @offset=", live.as_ptr() as usize)), "{}", bugs[0]);
    let w = m.reports().texts(ReportKind::Warning);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("kmem_cache_destroy still_used: Slab cache still has objects when called from"));
    assert_eq!(m.nr_caches(), before, "the cache stays");
    // The object is still good memory.
    // SAFETY: ours.
    unsafe { live.as_ptr().write_bytes(0x42, 64) };
    common::assert_still_works(&m);
}

#[test]
fn sleeping_allocations_in_atomic_context() {
    let m = machine();
    // GFP_KERNEL may sleep: with preemption disabled it is reported (once per call) and, as in
    // Linux, goes ahead.
    let g = m.preempt_disable();
    let a = m.kmalloc(64, Gfp::KERNEL).unwrap();
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let v = m.vmalloc(PAGE_SIZE).unwrap();
    drop(g);
    let t = m.reports().texts(ReportKind::SleepInAtomic);
    assert_eq!(t.len(), 3, "{t:#?}");
    for (t, file) in t.iter().zip(["mm/slub.c", "mm/page_alloc.c", "mm/vmalloc.c"]) {
        assert!(t.starts_with(&format!("BUG: sleeping function called from invalid context at {file}\n")), "{t}");
    }
    // From interrupt context too; GFP_ATOMIC there is fine.
    let b = in_irq(|| m.kmalloc(64, Gfp::KERNEL)).unwrap();
    let c = in_irq(|| m.kmalloc(64, Gfp::ATOMIC)).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 4);
    assert_eq!(all_reports(&m), 4);
    // SAFETY: ours, freed once.
    unsafe {
        m.kfree(a.as_ptr());
        m.kfree(b.as_ptr());
        m.kfree(c.as_ptr());
        m.__free_pages(p, Order::ZERO);
        m.vfree(v.as_ptr());
    }
    common::assert_still_works(&m);
}
