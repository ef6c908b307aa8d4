//! The page allocator's API and GFP semantics on hosted machines.

use crate::common;

use kmem::mm::zone::Wmark;
use kmem::{AllocErrorKind, Gfp, Order, PageRef, Pfn, ReportKind, ZoneType};
use kmem_hosted::{in_irq, MachineBuilder, Preset};

const MIB: usize = 1 << 20;

fn zone_of(m: &kmem_hosted::Machine, p: PageRef<'_>) -> ZoneType {
    m.page_zone(p.page()).zone_type()
}

#[test]
fn gfp_zone_modifiers_pick_zones_and_kernel_prefers_the_highest() {
    let m = MachineBuilder::new().ram_mib(5 * 1024).cpus(1).build().unwrap();
    let dma = m.alloc_pages(Gfp::KERNEL | Gfp::DMA, Order::ZERO).unwrap();
    assert_eq!(zone_of(&m, dma), ZoneType::Dma);
    assert!(dma.pfn().phys().as_u64() < 16 << 20);
    let dma32 = m.alloc_pages(Gfp::KERNEL | Gfp::DMA32, Order::ZERO).unwrap();
    assert_eq!(zone_of(&m, dma32), ZoneType::Dma32);
    assert!(dma32.pfn().phys().as_u64() < 4 << 30);
    let normal = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(zone_of(&m, normal), ZoneType::Normal);
    assert!(normal.pfn().phys().as_u64() >= 4 << 30);
    let bad = m.alloc_pages(Gfp::DMA | Gfp::HIGHMEM, Order::ZERO).unwrap_err();
    assert_eq!(bad.kind, AllocErrorKind::BadZoneModifiers);
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    for (p, o) in [(dma, 0), (dma32, 0), (normal, 0)] {
        // SAFETY: we own each page.
        unsafe { m.__free_pages(p, Order::of(o)) };
    }
    m.verify().unwrap();
}

#[test]
fn zero_flag_zeroes_reused_memory() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let mut b = m.alloc(Gfp::KERNEL, Order::of(2)).unwrap();
    b.as_mut_slice().unwrap().fill(0xaa);
    let pfn = b.pfn();
    drop(b);
    let mut z = m.alloc(Gfp::KERNEL | Gfp::ZERO, Order::of(2)).unwrap();
    assert_eq!(z.pfn(), pfn, "LIFO free lists hand the same block back");
    assert!(z.as_mut_slice().unwrap().iter().all(|&x| x == 0));
    let addr = m.get_zeroed_page(Gfp::KERNEL).unwrap();
    // SAFETY: the page is ours and in the direct map.
    let bytes = unsafe { std::slice::from_raw_parts(addr.as_mut_ptr::<u8>(), 4096) };
    assert!(bytes.iter().all(|&x| x == 0));
    // SAFETY: we own it.
    unsafe { m.free_pages(addr, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn direct_map_writes_are_real_memory() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let a = m.__get_free_pages(Gfp::KERNEL, Order::of(1)).unwrap();
    let page = m.virt_to_page(a).unwrap();
    assert_eq!(m.page_address(page), Some(a));
    assert_eq!(m.pfn_to_page(page.pfn()).unwrap(), page);
    assert_eq!(m.virt_to_phys(a).unwrap(), page.pfn().phys());
    // SAFETY: 8 KiB block we own, mapped by the direct map.
    unsafe { std::ptr::write_bytes(a.as_mut_ptr::<u8>(), 0x5c, 8192) };
    // SAFETY: as above.
    assert_eq!(unsafe { *a.as_mut_ptr::<u8>().add(8191) }, 0x5c);
    // SAFETY: we own it.
    unsafe { m.free_pages(a, Order::of(1)) };
}

#[test]
fn compound_pages_have_head_and_tails() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let before = common::free_pages(&m);
    let head = m.alloc_pages(Gfp::KERNEL | Gfp::COMP, Order::of(3)).unwrap();
    assert!(head.is_head() && !head.is_tail());
    let tail = m.pfn_to_page(head.pfn().add(5)).unwrap();
    assert!(tail.is_tail());
    assert_eq!(m.compound_head(tail), head);
    assert_eq!(m.compound_order(tail), 3);
    m.get_page(tail);
    assert_eq!(head.refcount(), 2, "get_page on a tail takes a reference on the head");
    // SAFETY: we own both references.
    unsafe { m.put_page(tail) };
    assert_eq!(common::free_pages(&m), before - 8);
    // SAFETY: the last reference is ours.
    unsafe { m.put_page(head) };
    assert_eq!(common::free_pages(&m), before, "last put_page frees the whole compound page");
    assert!(!m.pfn_to_page(head.pfn().add(5)).unwrap().is_tail());
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn free_pages_with_extra_reference_does_not_leak() {
    // lib/test_free_pages.c: __free_pages() of a non-compound block with an extra reference
    // frees the tail parts; the final put_page frees the first page.
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let before = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(3)).unwrap();
    m.get_page(p);
    // SAFETY: we own two references.
    unsafe { m.__free_pages(p, Order::of(3)) };
    assert_eq!(p.refcount(), 1);
    // SAFETY: the remaining reference is ours.
    unsafe { m.put_page(p) };
    assert_eq!(common::buddyinfo(&m), before);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn split_page_makes_independent_pages() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let before = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(2)).unwrap();
    // SAFETY: we own the non-compound block.
    unsafe { m.split_page(p, Order::of(2)) };
    for i in [3, 0, 2, 1] {
        let q = m.pfn_to_page(p.pfn().add(i)).unwrap();
        assert_eq!(q.refcount(), 1);
        // SAFETY: after split_page each page is ours on its own.
        unsafe { m.__free_pages(q, Order::ZERO) };
    }
    assert_eq!(common::buddyinfo(&m), before);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn bulk_fills_empty_slots() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let mut slots: Vec<Option<PageRef<'_>>> = vec![None; 100];
    slots[7] = Some(m.alloc_page(Gfp::KERNEL).unwrap());
    assert_eq!(m.alloc_pages_bulk(Gfp::KERNEL, &mut slots), 100);
    let mut pfns: Vec<Pfn> = slots.iter().map(|s| s.unwrap().pfn()).collect();
    pfns.sort();
    pfns.dedup();
    assert_eq!(pfns.len(), 100, "no page handed out twice");
    for s in slots.into_iter().flatten() {
        assert_eq!(s.refcount(), 1);
        // SAFETY: ours.
        unsafe { m.__free_pages(s, Order::ZERO) };
    }
    m.verify().unwrap();
}

/// Allocates order-0 pages with `gfp` until failure; returns them.
fn drain<'a>(m: &'a kmem_hosted::Machine, gfp: Gfp) -> Vec<PageRef<'a>> {
    std::iter::from_fn(|| m.alloc_pages(gfp | Gfp::NOWARN, Order::ZERO).ok()).collect()
}

#[test]
fn reserves_atomic_dips_below_min_nowait_does_not() {
    let m = MachineBuilder::new().ram_mib(128).cpus(1).build().unwrap();
    // Below 4 GiB of RAM the kernel's zone is DMA32 (there is no Normal).
    let normal = m.node(0).unwrap().zone(ZoneType::Dma32);
    let kernel = drain(&m, Gfp::KERNEL);
    // GFP_KERNEL stops at min (plus the lowmem reserve it leaves in DMA).
    assert!(normal.free_pages() <= normal.wmark(Wmark::Min));
    assert!(normal.free_pages() > normal.wmark(Wmark::Min) / 2);
    assert!(drain(&m, Gfp::NOWAIT).is_empty(), "GFP_NOWAIT gets no reserves");
    let atomic = drain(&m, Gfp::ATOMIC);
    assert!(!atomic.is_empty(), "GFP_ATOMIC may use part of min");
    let min = normal.wmark(Wmark::Min);
    assert!(normal.free_pages() <= min - min / 2 - (min - min / 2) / 4 + 1);
    let memalloc = drain(&m, Gfp::KERNEL | Gfp::MEMALLOC);
    assert!(!memalloc.is_empty(), "__GFP_MEMALLOC ignores watermarks");
    // DMA kept its lowmem reserve against Normal-capable requests; GFP_DMA may use it (down to
    // its own min) until MEMALLOC took everything.
    for p in kernel.into_iter().chain(atomic).chain(memalloc) {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    m.verify().unwrap();
}

#[test]
fn lowmem_reserve_protects_dma_from_kernel_allocations() {
    let m = MachineBuilder::new().ram_mib(128).cpus(1).build().unwrap();
    let dma = m.node(0).unwrap().zone(ZoneType::Dma);
    let kernel = drain(&m, Gfp::KERNEL);
    let kept = dma.free_pages();
    assert!(kept > dma.wmark(Wmark::Min) + dma.lowmem_reserve(ZoneType::Normal) - 1);
    let dma_pages = drain(&m, Gfp::KERNEL | Gfp::DMA);
    assert!(!dma_pages.is_empty(), "GFP_DMA can still use its own zone");
    for p in kernel.into_iter().chain(dma_pages) {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}

#[test]
fn failure_is_an_err_with_a_linux_report_unless_nowarn() {
    let m = MachineBuilder::new().ram_mib(32).cpus(1).build().unwrap();
    let mut held = Vec::new();
    let err = loop {
        match m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(10)) {
            Ok(p) => held.push(p),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind, AllocErrorKind::NoMemory);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0, "NOWARN is silent");
    assert!(m.alloc_pages(Gfp::KERNEL | Gfp::COMP, Order::of(10)).is_err());
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 1);
    let text = m.reports().texts(ReportKind::PageAllocFailure).pop().unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.ends_with(": page allocation failure: order:10, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null)"),
        "{first}"
    );
    assert!(text.contains("\nMem-Info:\n"), "{text}");
    assert!(text.contains("Node 0 DMA32: ") && text.contains("lowmem_reserve[]: 0 "), "{text}");
    for p in held {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::of(10)) };
    }
}

#[test]
fn orders_above_max_cannot_be_asked_for() {
    // Orders are typed: an order above MAX_PAGE_ORDER has no `Order` (Linux warns at run
    // time; here `Order::of(11)` in a const fails the build, and input goes through `new`).
    assert_eq!(Order::new(11), None);
    assert_eq!(Order::new(10), Some(Order::MAX));
    assert!(std::panic::catch_unwind(|| Order::of(11)).is_err());
}

#[test]
fn thisnode_stays_on_its_node_and_fallback_crosses_nodes() {
    let m = MachineBuilder::new().ram_mib(512).cpus(2).nodes(2).build().unwrap();
    assert_eq!(m.nr_nodes(), 2);
    assert_eq!(m.cpu_to_node(0), 0);
    assert_eq!(m.cpu_to_node(1), 1);
    let p = m.alloc_pages_node(Some(1), Gfp::KERNEL | Gfp::THISNODE, Order::ZERO).unwrap();
    assert_eq!(p.page().node(), 1);
    let on1 = std::iter::from_fn(|| {
        m.alloc_pages_node(Some(1), Gfp::KERNEL | Gfp::THISNODE | Gfp::NOWARN, Order::of(4)).ok()
    })
    .collect::<Vec<_>>();
    assert!(on1.iter().all(|q| q.page().node() == 1));
    assert!(m.alloc_pages_node(Some(1), Gfp::KERNEL | Gfp::THISNODE | Gfp::NOWARN, Order::of(4)).is_err());
    let q = m.alloc_pages_node(Some(1), Gfp::KERNEL, Order::of(4)).unwrap();
    assert_eq!(q.page().node(), 0, "without THISNODE the request falls back to node 0");
    let z = m.page_zone(q.page());
    assert!(z.events.numa_miss.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(m.alloc_pages_node(Some(7), Gfp::KERNEL, Order::ZERO).is_err());
    // SAFETY: ours.
    unsafe {
        m.__free_pages(p, Order::ZERO);
        m.__free_pages(q, Order::of(4));
        for r in on1 {
            m.__free_pages(r, Order::of(4));
        }
    }
    m.verify().unwrap();
}

#[test]
fn memblock_reservations_are_never_allocated() {
    let (start, size) = (32 * MIB as u64, MIB as u64);
    let m = MachineBuilder::new().ram_mib(64).cpus(1).reserve(kmem::PhysAddr::new(start), size).build().unwrap();
    let first = m.pfn_to_page(kmem::PhysAddr::new(start).pfn()).unwrap();
    assert!(first.is_reserved());
    let all = drain(&m, Gfp::KERNEL | Gfp::MEMALLOC);
    let range = (start >> 12) as usize..((start + size) >> 12) as usize;
    assert!(all.iter().all(|p| !range.contains(&p.pfn().as_usize())));
    for p in all {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}

#[test]
fn highmem_pages_have_no_address_and_are_zeroed() {
    let m = MachineBuilder::new().preset(Preset::X86_32).ram_mib(1024).cpus(1).build().unwrap();
    let hi = m.node(0).unwrap().zone(ZoneType::HighMem);
    assert!(hi.managed_pages() > 0);
    let p = m.alloc_pages(Gfp::HIGHUSER | Gfp::ZERO, Order::ZERO).unwrap();
    assert_eq!(zone_of(&m, p), ZoneType::HighMem);
    assert_eq!(m.page_address(p), None);
    assert!(m.alloc_pages(Gfp::KERNEL, Order::ZERO).map(|q| zone_of(&m, q)).unwrap() != ZoneType::HighMem);
    // __get_free_pages never returns HighMem.
    assert!(m.__get_free_pages(Gfp::HIGHUSER, Order::ZERO).is_ok());
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
}

#[test]
fn sleeping_allocation_in_interrupt_context_is_reported_and_proceeds() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let p = in_irq(|| m.alloc_pages(Gfp::KERNEL, Order::ZERO)).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1);
    let text = m.reports().last().unwrap();
    assert!(text.starts_with("BUG: sleeping function called from invalid context at mm/page_alloc.c\n"), "{text}");
    assert!(text.contains("in_atomic(): 1, irqs_disabled(): 1, non_block: 0, pid: "), "{text}");
    let q = in_irq(|| m.alloc_pages(Gfp::ATOMIC, Order::ZERO)).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "GFP_ATOMIC is fine in IRQ context");
    // SAFETY: ours.
    unsafe {
        m.__free_pages(p, Order::ZERO);
        m.__free_pages(q, Order::ZERO);
    }
}

#[test]
fn several_machines_live_in_one_process() {
    let a = MachineBuilder::new().ram_mib(32).cpus(1).build().unwrap();
    let b = MachineBuilder::new().ram_mib(48).cpus(2).build().unwrap();
    let pa = a.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
    let pb = b.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_ne!(pa.addr(), pb.addr());
    assert!(a.totalram_pages() < b.totalram_pages());
}

#[test]
fn sleeping_allocation_with_preemption_or_irqs_off_is_reported() {
    use kmem::Platform;
    let m = MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    let p = m.platform();
    p.preempt_disable();
    let a = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let b = m.alloc_pages(Gfp::NOWAIT, Order::ZERO).unwrap();
    p.preempt_enable();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "GFP_KERNEL reported, GFP_NOWAIT not");
    let t = m.reports().last().unwrap();
    assert!(t.contains("in_atomic(): 1, irqs_disabled(): 0,"), "{t}");
    assert!(t.contains("preempt_count: 1, expected: 0"), "{t}");
    let s = p.local_irq_save();
    let c = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    p.local_irq_restore(s);
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 2);
    assert!(m.reports().last().unwrap().contains("in_atomic(): 0, irqs_disabled(): 1,"));
    let d = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 2, "preemptible context is fine");
    for q in [a, b, c, d] {
        // SAFETY: ours.
        unsafe { m.__free_pages(q, Order::ZERO) };
    }
}

/// An order-0 `__GFP_ZERO` page (a user page) comes from the order-0 fast path and is
/// cleared as the full path clears it: the per-CPU list's hot page, dirtied before its free,
/// comes back zeroed; a sleeping request in atomic context still takes the full path and
/// its report; a `__GFP_COMP` on order 0 changes nothing.
#[test]
fn order0_zero_pages_from_the_fast_path_are_cleared() {
    use kmem::Platform;
    let m = MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    let user = Gfp::HIGHUSER_MOVABLE | Gfp::ZERO | Gfp::COMP;
    for gfp in [Gfp::KERNEL | Gfp::ZERO, user] {
        let mut b = m.alloc(gfp.without(Gfp::ZERO), Order::ZERO).unwrap();
        b.as_mut_slice().unwrap().fill(0x5a);
        let pfn = b.pfn();
        drop(b);
        let z = m.alloc_pages(gfp, Order::ZERO).unwrap();
        assert_eq!(z.pfn(), pfn, "the per-CPU list's hot page ({gfp:?})");
        assert_eq!(z.refcount(), 1);
        assert!(!z.is_head(), "__GFP_COMP on order 0 makes no compound page");
        let va = m.page_address(z).unwrap();
        // SAFETY: the page is ours and in the direct map.
        let bytes = unsafe { std::slice::from_raw_parts(va.as_mut_ptr::<u8>(), 4096) };
        assert!(bytes.iter().all(|&x| x == 0), "a dirty page came back uncleared ({gfp:?})");
        // SAFETY: ours.
        unsafe { m.__free_pages(z, Order::ZERO) };
    }
    let p = m.platform();
    p.preempt_disable();
    let a = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, Order::ZERO).unwrap();
    p.preempt_enable();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "the full path's might_sleep report");
    // SAFETY: ours.
    unsafe { m.__free_pages(a, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    m.verify().unwrap();
}
