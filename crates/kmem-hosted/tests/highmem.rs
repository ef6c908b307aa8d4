//! High memory on the x86-32 preset: HighMem frames are unreachable until mapped, and `kmap`,
//! `kmap_local_page` and `kmap_atomic` map them for real (mmaps of the RAM memfd into the
//! kmap area). Misuse (unbalanced or out-of-order unmapping, stack overflow, `kmap` from
//! atomic context) is reported and changes no other mapping.

use std::sync::atomic::{AtomicBool, Ordering};

use kmem::{Gfp, Order, PageProt, PageRef, Pages, Platform, ReportKind, ZoneType, KM_MAX_IDX, LAST_PKMAP, PAGE_SIZE};
use kmem_hosted::{in_irq, Machine, MachineBuilder, Preset};

use crate::common;
use common::{assert_still_works, in_child};

fn x86_32(mib: u64, cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(mib).cpus(cpus).preset(Preset::X86_32).build().unwrap()
}

fn zone_of(m: &Machine, p: PageRef<'_>) -> ZoneType {
    m.page_zone(p.page()).zone_type()
}

/// Fills a page with a pattern derived from `seed`, through `write_at` (kmap_local inside).
fn stamp(p: &mut Pages<'_, kmem_hosted::HostedPlatform>, seed: u8) {
    let bytes: Vec<u8> = (0..PAGE_SIZE).map(|i| seed.wrapping_add(i as u8)).collect();
    p.write_at(0, &bytes);
}

fn stamped(p: &Pages<'_, kmem_hosted::HostedPlatform>, seed: u8) -> bool {
    let mut bytes = vec![0u8; PAGE_SIZE];
    p.read_at(0, &mut bytes);
    bytes.iter().enumerate().all(|(i, &b)| b == seed.wrapping_add(i as u8))
}

/// # Safety
///
/// `va` maps a whole page nobody else writes meanwhile.
unsafe fn page_at<'a>(va: kmem::VirtAddr) -> &'a mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(va.as_mut_ptr::<u8>(), PAGE_SIZE) }
}

#[test]
fn highuser_pages_are_highmem_with_no_address() {
    let m = x86_32(1024, 1);
    let p = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    assert!(m.page_is_highmem(p.page()));
    assert_eq!(zone_of(&m, p.page()), ZoneType::HighMem);
    assert_eq!(p.addr(), None);
    assert_eq!(m.page_address(p.page()), None);
}

#[test]
fn a_highmem_page_is_never_reachable_through_the_direct_map() {
    let m = x86_32(1024, 1);
    let mut p = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    stamp(&mut p, 3);
    let (base, _) = m.ram_range();
    let would_be = base + p.pfn().phys().as_u64() as usize;
    let low = m.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
    let low_va = low.addr().unwrap().as_mut_ptr::<u8>();
    // Control: a lowmem page's direct-map address is writable.
    // SAFETY: our page.
    assert_eq!(in_child(|| unsafe { low_va.write_volatile(1) }), None);
    // SAFETY: deliberately where the HighMem page's direct-map address would be, in a child
    // that must die.
    assert_eq!(in_child(|| unsafe { (would_be as *mut u8).write_volatile(1) }), Some(libc::SIGSEGV));
    let read = || {
        // SAFETY: as above, a read.
        let _ = unsafe { (would_be as *const u8).read_volatile() };
    };
    assert_eq!(in_child(read), Some(libc::SIGSEGV));
    assert!(stamped(&p, 3));
    // Mapped through kmap, the direct-map address still faults.
    let va = m.kmap(p.page()).unwrap();
    assert_ne!(va.as_usize(), would_be);
    // SAFETY: as above.
    assert_eq!(in_child(|| unsafe { (would_be as *mut u8).write_volatile(1) }), Some(libc::SIGSEGV));
    m.kunmap(p.page());
}

#[test]
fn gfp_zero_clears_highmem_pages_through_a_mapping() {
    let m = x86_32(1024, 1);
    let mut dirty: Vec<_> = (0..64).map(|_| m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap()).collect();
    let pfns: Vec<_> = dirty.iter().map(|p| p.pfn()).collect();
    for (i, p) in dirty.iter_mut().enumerate() {
        stamp(p, i as u8 | 1);
    }
    drop(dirty);
    let clean: Vec<_> = (0..64).map(|_| m.alloc(Gfp::HIGHUSER | Gfp::ZERO, Order::ZERO).unwrap()).collect();
    let reused = clean.iter().filter(|p| pfns.contains(&p.pfn())).count();
    assert!(reused > 32, "the freed pages come back (LIFO per-CPU lists): {reused}");
    let mut buf = vec![0xffu8; PAGE_SIZE];
    for p in &clean {
        assert!(m.page_is_highmem(p.page()));
        p.read_at(0, &mut buf);
        assert!(buf.iter().all(|&b| b == 0), "page {:?} not zeroed", p.pfn());
    }
    // An order-2 HighMem block is zeroed page by page.
    let big = m.alloc(Gfp::HIGHUSER | Gfp::ZERO, Order::of(2)).unwrap();
    let mut all = vec![0xffu8; 4 * PAGE_SIZE];
    big.read_at(0, &mut all);
    assert!(all.iter().all(|&b| b == 0));
}

#[test]
fn contents_written_through_one_mapping_read_through_the_others() {
    let m = x86_32(1024, 2);
    let pages: Vec<_> = (0..4).map(|_| m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap()).collect();
    // kmap writes, kmap_local reads.
    let va = m.kmap(pages[0]).unwrap();
    // SAFETY: our page, kmapped.
    unsafe { page_at(va) }.fill(0x11);
    let l = m.kmap_local_page(pages[0]).unwrap();
    assert_ne!(l, va);
    // SAFETY: our page, mapped.
    assert!(unsafe { page_at(l) }.iter().all(|&b| b == 0x11));
    // kmap_local writes, kmap (the same pkmap slot) sees it.
    // SAFETY: as above.
    unsafe { page_at(l)[7] = 0x22 };
    m.kunmap_local(l);
    // SAFETY: still kmapped.
    assert_eq!(unsafe { page_at(va) }[7], 0x22);
    m.kunmap(pages[0]);
    // vmap of HighMem pages (vmalloc's page tables) writes, kmap_atomic reads.
    let v = m.vmap(&pages, PageProt::KERNEL).unwrap();
    // SAFETY: four mapped pages of ours.
    unsafe { std::slice::from_raw_parts_mut(v.as_ptr(), 4 * PAGE_SIZE) }
        .chunks_mut(PAGE_SIZE)
        .enumerate()
        .for_each(|(i, c)| c.fill(0x30 + i as u8));
    for (i, &p) in pages.iter().enumerate() {
        let a = m.kmap_atomic(p).unwrap();
        // SAFETY: mapped.
        assert!(unsafe { page_at(a) }.iter().all(|&b| b == 0x30 + i as u8));
        m.kunmap_atomic(a);
    }
    // SAFETY: our vmap.
    unsafe { m.vunmap(v.as_ptr()) };
    for p in pages {
        // SAFETY: ours, unmapped.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn more_kmaps_than_slots_wait_for_a_free_one() {
    let m = x86_32(1024, 4);
    let held: Vec<_> = (0..LAST_PKMAP).map(|_| m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap()).collect();
    for &p in &held {
        m.kmap(p).unwrap();
    }
    assert_eq!(m.kmap_stats().pkmap_in_use, LAST_PKMAP, "every slot busy");
    const THREADS: usize = 8;
    const PER: usize = 16;
    let mut mine: Vec<Vec<Pages<'_, _>>> = (0..THREADS)
        .map(|t| {
            (0..PER)
                .map(|i| {
                    let mut p = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
                    stamp(&mut p, (t * PER + i) as u8);
                    p
                })
                .collect()
        })
        .collect();
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        for (t, pages) in mine.iter_mut().enumerate() {
            let (m, started) = (&m, &started);
            s.spawn(move || {
                started.store(true, Ordering::Release);
                for (i, p) in pages.iter().enumerate() {
                    let va = m.kmap(p.page()).unwrap();
                    // SAFETY: our page, kmapped.
                    let b = unsafe { page_at(va) };
                    let seed = (t * PER + i) as u8;
                    assert!(b.iter().enumerate().all(|(j, &x)| x == seed.wrapping_add(j as u8)));
                    b.fill(!seed);
                    m.kunmap(p.page());
                }
            });
        }
        while !started.load(Ordering::Acquire) || m.kmap_stats().pkmap_waits == 0 {
            std::thread::yield_now();
        }
        // Free the slots one by one: the waiters take them.
        for &p in &held {
            m.kunmap(p);
        }
    });
    assert!(m.kmap_stats().pkmap_waits >= 1);
    for (t, pages) in mine.iter().enumerate() {
        for (i, p) in pages.iter().enumerate() {
            let mut b = vec![0u8; PAGE_SIZE];
            p.read_at(0, &mut b);
            assert!(b.iter().all(|&x| x == !((t * PER + i) as u8)), "data of thread {t} page {i}");
        }
    }
    assert_eq!(m.kmap_stats().pkmap_in_use, 0);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    for p in held {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}

#[test]
fn kmap_from_atomic_context_is_a_might_sleep_report() {
    let m = x86_32(1024, 1);
    let p = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let va = in_irq(|| m.kmap(p.page())).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1);
    let text = m.reports().last().unwrap();
    assert!(text.starts_with("BUG: sleeping function called from invalid context at mm/highmem.c\n"), "{text}");
    m.kunmap(p.page());
    // kmap_local and kmap_atomic are fine there.
    let l = in_irq(|| {
        let l = m.kmap_local_page(p.page()).unwrap();
        m.kunmap_local(l);
        let a = m.kmap_atomic(p.page()).unwrap();
        m.kunmap_atomic(a);
        l
    });
    assert_ne!(l, va);
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1);
}

#[test]
fn kmap_atomic_disables_preemption_and_kmap_local_does_not() {
    let m = x86_32(1024, 1);
    let p = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let l = m.kmap_local_page(p.page()).unwrap();
    assert_eq!(m.platform().preempt_count(), 0);
    assert!(!m.pagefault_disabled());
    let a = m.kmap_atomic(p.page()).unwrap();
    assert_eq!(m.platform().preempt_count(), 1);
    assert!(m.pagefault_disabled());
    // A sleeping allocation inside kmap_atomic is reported.
    let q = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1);
    m.kunmap_atomic(a);
    assert_eq!(m.platform().preempt_count(), 0);
    assert!(!m.pagefault_disabled());
    m.kunmap_local(l);
    // SAFETY: ours.
    unsafe { m.__free_pages(q, Order::ZERO) };
}

#[test]
fn irq_mappings_nest_on_the_tasks_to_the_limit() {
    let m = x86_32(1024, 1);
    let mut pages: Vec<_> = (0..KM_MAX_IDX + 1).map(|_| m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap()).collect();
    for (i, p) in pages.iter_mut().enumerate() {
        stamp(p, i as u8);
    }
    let half = KM_MAX_IDX / 2;
    let task: Vec<_> = pages[..half].iter().map(|p| m.kmap_local_page(p.page()).unwrap()).collect();
    in_irq(|| {
        let irq: Vec<_> = pages[half..KM_MAX_IDX].iter().map(|p| m.kmap_local_page(p.page()).unwrap()).collect();
        assert_eq!(m.kmap_local_depth(), KM_MAX_IDX);
        assert_eq!(m.kmap_local_page(pages[KM_MAX_IDX].page()), Err(kmem::KmapError::StackFull));
        assert_eq!(m.report_count(ReportKind::Warning), 1, "overflow reported");
        for (i, va) in irq.iter().enumerate() {
            // SAFETY: mapped.
            assert_eq!(unsafe { page_at(*va) }[1], (half + i) as u8 + 1);
        }
        for va in irq.into_iter().rev() {
            m.kunmap_local(va);
        }
    });
    assert_eq!(m.kmap_local_depth(), half, "the interrupt popped what it pushed");
    for (i, va) in task.iter().enumerate() {
        // SAFETY: mapped, and the interrupt's mappings did not disturb it.
        assert_eq!(unsafe { page_at(*va) }[1], i as u8 + 1);
    }
    for va in task.into_iter().rev() {
        m.kunmap_local(va);
    }
    assert_eq!(m.kmap_local_depth(), 0);
    let text = m.reports().texts(ReportKind::Warning).remove(0);
    assert!(text.starts_with("kernel BUG at mm/highmem.c: kmap_local_idx_push!\n"), "{text}");
}

#[test]
fn out_of_order_kunmap_local_is_reported_and_kmem_keeps_working() {
    let m = x86_32(1024, 1);
    let mut a = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let mut b = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    stamp(&mut a, 1);
    stamp(&mut b, 2);
    let va = m.kmap_local_page(a.page()).unwrap();
    let vb = m.kmap_local_page(b.page()).unwrap();
    m.kunmap_local(va);
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    // SAFETY: b is still mapped, and intact.
    assert_eq!(unsafe { page_at(vb) }[0], 2);
    m.kunmap_local(vb);
    assert_eq!(m.kmap_local_depth(), 0);
    m.kunmap_local(vb);
    assert_eq!(m.report_count(ReportKind::Warning), 2, "unbalanced");
    let text = m.reports().texts(ReportKind::Warning).remove(0);
    assert!(text.starts_with("WARNING: CPU: 0 PID: "), "{text}");
    assert!(text.contains(" at mm/highmem.c kunmap_local_indexed: "), "{text}");
    assert!(stamped(&a, 1) && stamped(&b, 2));
    m.reports().take();
    let before = m.report_count(ReportKind::Warning);
    assert_still_works(&m);
    assert_eq!(m.report_count(ReportKind::Warning), before);
}

#[test]
fn helpers_copy_and_clear_highmem_and_lowmem_pages() {
    let m = x86_32(1024, 1);
    let hi = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let hi2 = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let lo = m.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: the pages are ours and nothing else touches them.
    unsafe {
        m.clear_highpage(hi.page());
        m.memcpy_to_page(hi.page(), 100, b"high memory");
        m.memcpy_from_page(&mut buf[..11], hi.page(), 100);
        assert_eq!(&buf[..11], b"high memory");
        m.copy_highpage(lo.page(), hi.page());
        m.copy_highpage(hi2.page(), lo.page());
        m.memcpy_from_page(&mut buf[..11], hi2.page(), 100);
        assert_eq!(&buf[..11], b"high memory");
        m.memzero_page(hi2.page(), 100, 4);
        m.memcpy_from_page(&mut buf[..11], hi2.page(), 100);
        assert_eq!(&buf[..11], b"\0\0\0\0 memory");
        assert_eq!(m.report_count(ReportKind::Warning), 0);
        m.memzero_page(hi2.page(), PAGE_SIZE - 2, 4);
        m.memcpy_to_page(hi2.page(), PAGE_SIZE, b"x");
    }
    assert_eq!(m.report_count(ReportKind::Warning), 2, "ranges past the page are refused");
    let text = m.reports().texts(ReportKind::Warning).remove(0);
    assert!(text.contains("VM_BUG_ON(offset + len > PAGE_SIZE)"), "{text}");
    let va = m.kmap(hi.page()).unwrap();
    assert_eq!(m.kmap_to_page(va), Some(hi.page()));
    m.kunmap(hi.page());
    let l = m.kmap_local_page(hi2.page()).unwrap();
    assert_eq!(m.kmap_to_page(l), Some(hi2.page()));
    m.kunmap_local(l);
    assert_eq!(m.kmap_to_page(lo.addr().unwrap()), Some(lo.page()));
}

#[test]
fn highuser_prefers_highmem_and_falls_back_to_lowmem() {
    let m = x86_32(1024, 1);
    let hi = m.node(0).unwrap().zone(ZoneType::HighMem);
    let mut got = Vec::new();
    // Drain HighMem: GFP_HIGHUSER takes it first.
    loop {
        let p = m.alloc_pages(Gfp::HIGHUSER_MOVABLE | Gfp::NOWARN, Order::ZERO).unwrap();
        let z = zone_of(&m, p);
        got.push(p);
        if z != ZoneType::HighMem {
            assert_eq!(z, ZoneType::Normal, "the fallback is the next lower zone");
            break;
        }
        assert!(got.len() <= hi.managed_pages(), "more HighMem pages than the zone has");
    }
    assert!(got.len() > 1000, "HighMem first: {} pages", got.len());
    for gfp in [Gfp::HIGHUSER, Gfp::KERNEL | Gfp::HIGHMEM] {
        assert_ne!(zone_of(&m, m.alloc_pages(gfp, Order::ZERO).unwrap()), ZoneType::HighMem);
    }
    for p in got {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}

#[test]
fn kernel_slab_and_kmalloc_never_get_highmem() {
    let m = x86_32(1024, 1);
    let mut pages = Vec::new();
    for _ in 0..2000 {
        let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
        assert_ne!(zone_of(&m, p), ZoneType::HighMem);
        pages.push(p);
    }
    let mut objs = Vec::new();
    for i in 0..4000usize {
        let p = m.kmalloc(64 + i % 5000, Gfp::KERNEL).unwrap();
        assert!(m.virt_to_page(kmem::VirtAddr::from_ptr(p.as_ptr())).is_some(), "kmalloc memory is direct-mapped");
        objs.push(p);
    }
    for p in objs {
        // SAFETY: ours.
        unsafe { m.kfree(p.as_ptr()) };
    }
    for p in pages {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}

#[test]
fn meminfo_splits_high_and_low_memory() {
    let m = x86_32(1024, 1);
    let field = |name: &str| -> u64 {
        let mut s = String::new();
        kmem::proc::meminfo(&m, &mut s).unwrap();
        let line = s.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{s}"));
        line[16..].trim().trim_end_matches(" kB").trim().parse().unwrap()
    };
    let (total, high, low) = (field("MemTotal:"), field("HighTotal:"), field("LowTotal:"));
    assert_eq!(high + low, total);
    assert!(high > 100 << 10 && low > 800 << 10, "HighTotal {high} kB, LowTotal {low} kB");
    let free_before = field("HighFree:");
    let low_before = field("LowFree:");
    let pages: Vec<_> = (0..256).map(|_| m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap()).collect();
    assert_eq!(free_before - field("HighFree:"), 1024, "256 HighMem pages are 1024 kB of HighFree");
    assert_eq!(field("LowFree:"), low_before);
    for p in pages {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}

#[test]
fn kmap_local_from_many_threads_on_shared_cpus() {
    let m = x86_32(1024, 2);
    std::thread::scope(|s| {
        for t in 0..6u8 {
            let m = &m;
            s.spawn(move || {
                let mut pages: Vec<_> = (0..8).map(|_| m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap()).collect();
                for round in 0..50u8 {
                    for (i, p) in pages.iter_mut().enumerate() {
                        stamp(p, t ^ round ^ i as u8);
                    }
                    m.kmap_local_scope(|sc| {
                        let mut g = sc.map(pages[0].page()).unwrap();
                        let outer = g.addr();
                        let g2 = g.map(pages[1].page()).unwrap();
                        // SAFETY: our pages, mapped by the guards (g outlives g2).
                        let (a, b) = unsafe { (page_at(outer), page_at(g2.addr())) };
                        assert_eq!(a[5], (t ^ round).wrapping_add(5));
                        assert_eq!(b[5], (t ^ round ^ 1).wrapping_add(5));
                    });
                    for (i, p) in pages.iter().enumerate() {
                        assert!(stamped(p, t ^ round ^ i as u8));
                    }
                }
            });
        }
    });
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn vmalloc_uses_highmem_pages_through_its_own_mapping() {
    let m = x86_32(1024, 1);
    let n = 64;
    let v = m.vzalloc(n * PAGE_SIZE).unwrap();
    // SAFETY: n zeroed pages of ours.
    let s = unsafe { std::slice::from_raw_parts_mut(v.as_ptr(), n * PAGE_SIZE) };
    assert!(s.iter().all(|&b| b == 0));
    s.chunks_mut(PAGE_SIZE).enumerate().for_each(|(i, c)| c.fill(i as u8 + 1));
    let mut high = 0;
    for i in 0..n {
        let pfn = m.vmalloc_to_pfn(v.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap();
        let page = m.pfn_to_page(pfn).unwrap();
        if m.page_is_highmem(page) {
            high += 1;
        }
        let l = m.kmap_local_page(page).unwrap();
        // SAFETY: mapped.
        assert_eq!(unsafe { page_at(l) }[9], i as u8 + 1, "page {i} through kmap_local");
        m.kunmap_local(l);
    }
    assert_eq!(high, n, "vmalloc prefers HighMem (__GFP_HIGHMEM), as Linux's");
    // GFP_DMA areas stay low.
    let d = m.__vmalloc(PAGE_SIZE, Gfp::KERNEL | Gfp::DMA).unwrap();
    let pfn = m.vmalloc_to_pfn(d.as_ptr()).unwrap();
    assert!(!m.page_is_highmem(m.pfn_to_page(pfn).unwrap()));
    // SAFETY: ours.
    unsafe {
        m.vfree(v.as_ptr());
        m.vfree(d.as_ptr());
    }
    let kv = m.kvmalloc(1 << 20, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe {
        kv.as_ptr().write_bytes(0x61, 1 << 20);
        m.kvfree(kv.as_ptr());
    }
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

/// `kunmap_local` of a mapping another thread made (on its own CPU) is reported and ends
/// nothing: whether the caller holds no CPU or holds its own, the owner's mapping stays
/// live and intact, and the owner unmaps it normally.
#[test]
fn kunmap_local_of_another_threads_mapping_is_reported() {
    let m = MachineBuilder::new().ram_mib(1024).preset(Preset::X86_32).thread_cpus(4).build().unwrap();
    let mut a = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let b = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    stamp(&mut a, 7);
    let (to_other, mapped) = std::sync::mpsc::channel();
    let (done, to_owner) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let done = done; // dropped if this thread panics: the owner's recv fails, no hang
        let (m, a) = (&m, &a);
        s.spawn(move || {
            let va = m.kmap_local_page(a.page()).unwrap();
            to_other.send(va.as_usize()).unwrap();
            let _ = to_owner.recv();
            assert_eq!(m.kmap_local_depth(), 1, "another thread's kunmap_local popped this stack");
            // SAFETY: still mapped by this thread.
            assert_eq!(unsafe { page_at(va) }[3], 7u8.wrapping_add(3));
            m.kunmap_local(va);
            assert_eq!(m.kmap_local_depth(), 0);
        });
        let va = kmem::VirtAddr::new(mapped.recv().unwrap());
        // Holding no CPU.
        m.kunmap_local(va);
        assert_eq!(m.report_count(ReportKind::Warning), 1);
        // Holding its own CPU, inside its own mapping.
        let vb = m.kmap_local_page(b.page()).unwrap();
        m.kunmap_local(va);
        assert_eq!(m.report_count(ReportKind::Warning), 2);
        m.kunmap_local(vb);
        done.send(()).unwrap();
    });
    assert_eq!(m.report_count(ReportKind::Warning), 2);
    assert!(stamped(&a, 7));
}
