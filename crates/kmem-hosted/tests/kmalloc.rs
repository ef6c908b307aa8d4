//! The kmalloc family on hosted machines: size classes and alignment, zeroing, overflow,
//! krealloc, ksize, kfree misuse, large blocks and their accounting, the cache types, and the
//! kmalloc red zone on debug machines.

use std::ptr::NonNull;

use kmem::kmalloc::{kmalloc_size_roundup, KmallocErrorKind, KMALLOC_MAX_SIZE, ZERO_SIZE_PTR};
use kmem::{Gfp, Order, Platform, ReportKind};
use kmem_hosted::{in_irq, Machine, MachineBuilder};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap()
}

fn fill(p: NonNull<u8>, len: usize, v: u8) {
    // SAFETY: callers pass allocations of at least `len` bytes that they own.
    unsafe { p.as_ptr().write_bytes(v, len) };
}

fn all(p: NonNull<u8>, len: usize, v: u8) -> bool {
    // SAFETY: callers pass allocations of at least `len` bytes that they own.
    unsafe { std::slice::from_raw_parts(p.as_ptr(), len) }.iter().all(|&b| b == v)
}

fn kfree(m: &Machine, p: NonNull<u8>) {
    // SAFETY: the tests free only what they allocated and no longer use.
    unsafe { m.kfree(p.as_ptr()) };
}

fn ksize(m: &Machine, p: NonNull<u8>) -> usize {
    // SAFETY: live allocations of the tests.
    unsafe { m.ksize(p.as_ptr()) }
}

fn slabinfo(m: &Machine) -> String {
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    s
}

#[test]
fn sizes_buckets_and_alignment() {
    let m = machine();
    for size in 1..=9000usize {
        let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
        let ks = ksize(&m, p);
        assert_eq!(ks, kmalloc_size_roundup(size), "size {size}");
        assert!(ks >= size);
        assert_eq!(p.as_ptr() as usize % 8, 0, "size {size}");
        if size >= kmem::kmalloc::KMALLOC_ALIGN {
            assert_eq!(p.as_ptr() as usize % kmem::kmalloc::KMALLOC_ALIGN, 0, "size {size}");
        }
        if size.is_power_of_two() {
            assert_eq!(p.as_ptr() as usize % size, 0, "power-of-two size {size} is naturally aligned");
        }
        fill(p, ks, 0x5c);
        kfree(&m, p);
    }
    assert_eq!(kmalloc_size_roundup(97), 128);
    assert_eq!(kmalloc_size_roundup(130), 192);
    assert_eq!(kmalloc_size_roundup(8193), 16384);
    assert_eq!(kmalloc_size_roundup(0), 0);
    let s = slabinfo(&m);
    for name in ["kmalloc-8 ", "kmalloc-96 ", "kmalloc-192 ", "kmalloc-1k ", "kmalloc-8k "] {
        assert!(s.contains(name), "{name} missing:\n{s}");
    }
    assert!(!s.contains("kmalloc-rcl-"), "reclaimable caches exist only once used");
    assert_eq!(m.report_count(ReportKind::Warning) + m.report_count(ReportKind::SlabBug), 0);
}

#[test]
fn every_bucket_of_16_bytes_or_more_is_16_aligned_with_red_zones_too() {
    // Red zones and owner tracking move objects inside their slots; the non-power-of-two
    // caches (96, 192) keep KMALLOC_ALIGN all the same, which kmem-alloc's malloc relies on.
    let m = MachineBuilder::new().ram_mib(64).slub_debug("FZPU").quiet_reports().build().unwrap();
    for size in [16usize, 17, 80, 96, 100, 150, 192, 200, 1000] {
        let ps: Vec<_> = (0..40).map(|_| m.kmalloc(size, Gfp::KERNEL).unwrap()).collect();
        for p in &ps {
            assert_eq!(p.as_ptr() as usize % kmem::kmalloc::KMALLOC_ALIGN, 0, "size {size}");
        }
        for p in ps {
            kfree(&m, p);
        }
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

#[test]
fn zero_size_and_null() {
    let m = machine();
    let z = m.kmalloc(0, Gfp::KERNEL).unwrap();
    assert_eq!(z.as_ptr() as usize, ZERO_SIZE_PTR);
    assert_eq!(ksize(&m, z), 0);
    kfree(&m, z);
    // SAFETY: kfree(NULL) is a no-op.
    unsafe { m.kfree(std::ptr::null()) };
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn kzalloc_kcalloc_and_overflow() {
    let m = machine();
    let p = m.kmalloc(200, Gfp::KERNEL).unwrap();
    fill(p, 256, 0xee);
    kfree(&m, p);
    let q = m.kzalloc(200, Gfp::KERNEL).unwrap();
    assert!(all(q, 200, 0));
    kfree(&m, q);
    let c = m.kcalloc(10, 30, Gfp::KERNEL).unwrap();
    assert!(all(c, 300, 0));
    kfree(&m, c);
    let e = m.kmalloc_array(usize::MAX / 2, 3, Gfp::KERNEL).unwrap_err();
    assert_eq!(e.kind, KmallocErrorKind::Overflow);
    assert_eq!(m.kcalloc(1 << 40, 1 << 40, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::Overflow);
}

#[test]
fn large_blocks_are_compound_pages_counted_in_sunreclaim() {
    let m = machine();
    let meminfo = |label: &str| {
        let mut s = String::new();
        kmem::proc::meminfo(&m, &mut s).unwrap();
        let l = s.lines().find(|l| l.starts_with(label)).unwrap().to_owned();
        l[label.len()..].trim().trim_end_matches(" kB").trim().parse::<u64>().unwrap()
    };
    let before = meminfo("SUnreclaim:");
    let p = m.kmalloc(100_000, Gfp::KERNEL).unwrap();
    assert!(m.is_large_kmalloc(p.as_ptr()));
    assert_eq!(p.as_ptr() as usize % 4096, 0);
    assert_eq!(ksize(&m, p), 128 << 10);
    assert_eq!(meminfo("SUnreclaim:"), before + 128);
    fill(p, 100_000, 1);
    kfree(&m, p);
    assert_eq!(meminfo("SUnreclaim:"), before);
    let max = m.kmalloc(KMALLOC_MAX_SIZE, Gfp::KERNEL).unwrap();
    kfree(&m, max);
    let e = m.kmalloc(KMALLOC_MAX_SIZE + 1, Gfp::KERNEL).unwrap_err();
    assert_eq!(e.kind, KmallocErrorKind::TooLarge);
    assert_eq!(m.report_count(ReportKind::Warning), 1, "above KMALLOC_MAX_SIZE warns");
    assert!(m.kmalloc(KMALLOC_MAX_SIZE + 1, Gfp::KERNEL | Gfp::NOWARN).is_err());
    assert_eq!(m.report_count(ReportKind::Warning), 1, "NOWARN: silent");
    // A large block asked for zeroed is zeroed.
    let p = m.kmalloc(20000, Gfp::KERNEL).unwrap();
    fill(p, 20000, 9);
    kfree(&m, p);
    let q = m.kzalloc(20000, Gfp::KERNEL).unwrap();
    assert!(all(q, 20000, 0));
    kfree(&m, q);
}

#[test]
fn krealloc_in_place_grows_moves_and_frees() {
    let m = machine();
    let p = m.kmalloc(40, Gfp::KERNEL).unwrap();
    fill(p, 40, 7);
    // SAFETY: p is ours; afterwards only the returned pointer is used.
    let q = unsafe { m.krealloc(p.as_ptr(), 60, Gfp::KERNEL) }.unwrap();
    assert_eq!(q, p, "60 fits the 64-byte bucket: in place");
    assert!(all(q, 40, 7));
    // SAFETY: as above.
    let r = unsafe { m.krealloc(q.as_ptr(), 3000, Gfp::KERNEL) }.unwrap();
    assert_ne!(r, q);
    assert!(all(r, 40, 7), "contents moved");
    assert_eq!(ksize(&m, r), 4096);
    // SAFETY: as above.
    let big = unsafe { m.krealloc(r.as_ptr(), 50_000, Gfp::KERNEL) }.unwrap();
    assert!(m.is_large_kmalloc(big.as_ptr()) && all(big, 40, 7));
    // SAFETY: as above; 0 frees and returns ZERO_SIZE_PTR.
    let z = unsafe { m.krealloc(big.as_ptr(), 0, Gfp::KERNEL) }.unwrap();
    assert_eq!(z.as_ptr() as usize, ZERO_SIZE_PTR);
    // SAFETY: krealloc(NULL) allocates.
    let n = unsafe { m.krealloc(std::ptr::null_mut(), 10, Gfp::KERNEL) }.unwrap();
    assert_eq!(ksize(&m, n), 16);
    kfree(&m, n);
    // A pointer kmalloc never returned: reported, error, nothing changed.
    let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let pa = m.page_address(page).unwrap().as_mut_ptr::<u8>();
    // SAFETY: the misuse under test; krealloc refuses it without touching the page.
    assert_eq!(unsafe { m.krealloc(pa, 100, Gfp::KERNEL) }.unwrap_err().kind, KmallocErrorKind::InvalidPointer);
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    // SAFETY: ours.
    unsafe { m.__free_pages(page, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn kfree_of_foreign_interior_or_twice_is_reported_not_fatal() {
    let m = machine();
    let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let pa = m.page_address(page).unwrap().as_mut_ptr::<u8>();
    // SAFETY: each call below is misuse under test that kmem must refuse.
    unsafe {
        m.kfree(pa); // a page from alloc_pages
        m.kfree(0x1234_5678 as *const u8); // nowhere
    }
    assert_eq!(m.report_count(ReportKind::Warning), 2);
    assert!(m.reports().texts(ReportKind::Warning)[0].contains("kfree"));
    let big = m.kmalloc(50_000, Gfp::KERNEL).unwrap();
    // SAFETY: misuse under test: an interior pointer of a large block.
    unsafe { m.kfree(big.as_ptr().add(4096)) };
    assert_eq!(m.report_count(ReportKind::Warning), 3);
    assert!(m.is_large_kmalloc(big.as_ptr()), "the block survived");
    kfree(&m, big);
    // SAFETY: misuse under test: a double free of a large block.
    unsafe { m.kfree(big.as_ptr()) };
    assert_eq!(m.report_count(ReportKind::Warning), 4);
    let s = m.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: misuse under test: an interior pointer of a slab object.
    unsafe { m.kfree(s.as_ptr().add(8)) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 1, "the slab's Invalid object pointer report");
    kfree(&m, s);
    // SAFETY: misuse under test: the immediate double free.
    unsafe { m.kfree(s.as_ptr()) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 2);
    // SAFETY: ours.
    unsafe { m.__free_pages(page, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 0, "the foreign page was never freed by kfree");
    let again: Vec<_> = (0..100).map(|_| m.kmalloc(64, Gfp::KERNEL).unwrap()).collect();
    let set: std::collections::HashSet<_> = again.iter().collect();
    assert_eq!(set.len(), 100, "nothing handed out twice after the misuse");
    for p in again {
        kfree(&m, p);
    }
}

#[test]
fn gfp_picks_the_cache_type() {
    let m = machine();
    let r = m.kmalloc(100, Gfp::KERNEL | Gfp::RECLAIMABLE).unwrap();
    let d = m.kmalloc(100, Gfp::KERNEL | Gfp::DMA).unwrap();
    assert_eq!(m.kmalloc_slab(100, Gfp::KERNEL | Gfp::RECLAIMABLE).unwrap().name(), "kmalloc-rcl-128");
    assert_eq!(m.kmalloc_slab(100, Gfp::KERNEL | Gfp::DMA).unwrap().name(), "dma-kmalloc-128");
    let pa = m.virt_to_phys(kmem::VirtAddr::new(d.as_ptr() as usize)).unwrap();
    assert!(pa.as_u64() < 16 << 20, "dma-kmalloc objects lie in ZONE_DMA");
    kfree(&m, r);
    kfree(&m, d);
    // From interrupt context with GFP_ATOMIC, even the first use creates the caches.
    let m2 = machine();
    let p = in_irq(|| m2.kmalloc(64, Gfp::ATOMIC).unwrap());
    assert_eq!(m2.report_count(ReportKind::SleepInAtomic), 0);
    kfree(&m2, p);
}

#[test]
fn kfree_sensitive_zeroes_the_bucket() {
    let m = machine();
    let p = m.kmalloc(50, Gfp::KERNEL).unwrap();
    fill(p, 64, 0xab);
    // SAFETY: p is ours and no longer used after this.
    unsafe { m.kfree_sensitive(p.as_ptr()) };
    // The object went back to this CPU's freelist: reallocate it and look (its free pointer
    // word was rewritten by the free, everything else must be zero).
    let q = m.kmalloc(50, Gfp::KERNEL).unwrap();
    assert_eq!(q, p);
    // SAFETY: ours.
    let b = unsafe { std::slice::from_raw_parts(q.as_ptr(), 64) };
    let nonzero = b.iter().filter(|&&x| x != 0).count();
    assert!(nonzero <= 8, "only the free pointer word may be non-zero: {b:?}");
    kfree(&m, q);
}

#[test]
fn kmemdup_and_kstrdup() {
    let m = machine();
    let d = m.kmemdup(b"hello world", Gfp::KERNEL).unwrap();
    // SAFETY: ours, 11 bytes.
    assert_eq!(unsafe { std::slice::from_raw_parts(d.as_ptr(), 11) }, b"hello world");
    let s = m.kstrdup("kmem", Gfp::KERNEL).unwrap();
    // SAFETY: ours, 5 bytes.
    assert_eq!(unsafe { std::slice::from_raw_parts(s.as_ptr(), 5) }, b"kmem\0");
    kfree(&m, d);
    kfree(&m, s);
}

#[test]
fn kmalloc_redzone_catches_writes_past_the_request_on_debug_machines() {
    let m = MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("FZPU").build().unwrap();
    let p = m.kmalloc(40, Gfp::KERNEL).unwrap();
    assert_eq!(ksize(&m, p), 64, "ksize is the bucket's object size on a red-zoned cache");
    fill(p, 40, 1);
    // SAFETY: the overrun under test: byte 45 of the 64-byte bucket, inside the slot.
    unsafe { p.as_ptr().add(45).write(0) };
    kfree(&m, p);
    let bugs = m.reports().texts(ReportKind::SlabBug);
    assert_eq!(bugs.len(), 1, "{bugs:?}");
    assert!(bugs[0].contains("BUG kmalloc-64 (Not tainted): kmalloc Redzone overwritten"), "{}", bugs[0]);
    // kzalloc on a debug cache zeroes the request only: the red zone stays.
    let z = m.kzalloc(40, Gfp::KERNEL).unwrap();
    assert!(all(z, 40, 0));
    kfree(&m, z);
    // Growing in place moves the red zone: writing up to the new size is fine.
    let g0 = m.kmalloc(20, Gfp::KERNEL).unwrap();
    fill(g0, 20, 3);
    // SAFETY: g0 is ours; then only the returned pointer is used.
    let g = unsafe { m.krealloc(g0.as_ptr(), 30, Gfp::KERNEL | Gfp::ZERO) }.unwrap();
    assert_eq!(g, g0, "in place");
    assert!(all(g, 20, 3), "old contents kept");
    // SAFETY: within the 30 bytes now ours.
    let grown = unsafe { NonNull::new_unchecked(g.as_ptr().add(20)) };
    assert!(all(grown, 10, 0), "__GFP_ZERO zeroed the grown part (the old size is recorded)");
    fill(g, 30, 3);
    kfree(&m, g);
    assert_eq!(m.report_count(ReportKind::SlabBug), 1, "no report for writes inside the new size");
}

#[test]
fn kmalloc_from_many_threads() {
    let m = MachineBuilder::new().ram_mib(256).cpus(2).migrate_every(5).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let m = &m;
            s.spawn(move || {
                let mut live = Vec::new();
                // A quarter of the rounds under valgrind, which runs the threads one at a time.
                let rounds = if crate::common::under_memcheck() { 5_000 } else { 20_000 };
                for i in 0..rounds {
                    let size = 1 + (i * 7919 + t as usize * 13) % 12_000;
                    let p = m.kmalloc(size, Gfp::KERNEL).unwrap();
                    fill(p, size.min(64), t);
                    live.push((p, size));
                    if live.len() > 64 {
                        let (q, sz) = live.swap_remove(i % live.len());
                        assert!(all(q, sz.min(64), t));
                        kfree(m, q);
                    }
                }
                for (q, sz) in live {
                    assert!(all(q, sz.min(64), t));
                    kfree(m, q);
                }
            });
        }
    });
    assert_eq!(m.report_count(ReportKind::SlabBug) + m.report_count(ReportKind::Warning), 0);
}

/// `kmalloc_try_fast` serves only what needs no report: a sleeping request in atomic
/// context is refused (the caller's `kmalloc` then reports it), a warm class is served from
/// the sheaf, and `__GFP_ZERO` gets the whole object zeroed (kzalloc, calloc). Inside a
/// section of the CPU (`preempt_disable` takes it) the fast path declines: an owned CPU's
/// fast entry is for outermost sections only (`cpu_owner.rs`), and `kmalloc` serves the
/// request on its careful path, with no report for `GFP_ATOMIC`.
#[test]
fn kmalloc_try_fast_leaves_reports_to_kmalloc_and_zeroes() {
    let m = MachineBuilder::new().ram_mib(64).thread_cpus(4).build().unwrap();
    let warm = m.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: 64 bytes of ours, freed once.
    unsafe {
        warm.as_ptr().write_bytes(0x5a, 64);
        m.kfree(warm.as_ptr());
    }
    let z = m.kmalloc_try_fast(50, Gfp::KERNEL | Gfp::ZERO).expect("a warm class is served zeroed");
    assert_eq!(z, warm, "the same object, from the sheaf");
    // SAFETY: kmalloc-64's object: 64 bytes, all of them zeroed (kzalloc zeroes the object).
    assert!(unsafe { std::slice::from_raw_parts(z.as_ptr(), 64) }.iter().all(|&b| b == 0));
    // SAFETY: ours.
    unsafe { m.kfree(z.as_ptr()) };
    let p = m.kmalloc_try_fast(64, Gfp::KERNEL).expect("a warm class is served on the fast path");
    m.platform().preempt_disable();
    assert!(m.kmalloc_try_fast(64, Gfp::KERNEL).is_none(), "might_sleep is the careful path's");
    assert!(m.kmalloc_try_fast(64, Gfp::ATOMIC).is_none(), "a nested section takes the careful path");
    let q = m.kmalloc(64, Gfp::ATOMIC).expect("GFP_ATOMIC in a section");
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 0, "GFP_ATOMIC needs no report");
    let r = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "kmalloc reports what try_fast refused");
    m.platform().preempt_enable();
    // SAFETY: ours, not used afterwards.
    unsafe {
        m.kfree(p.as_ptr());
        m.kfree(q.as_ptr());
        m.kfree(r.as_ptr());
    }
}
