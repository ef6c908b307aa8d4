//! Page allocator tests: every order, every zone, the watermarks, every node.

use kmem::mm::zone::Wmark;
use kmem::{Gfp, Kmem, Order, PageRef, ZoneType, MAX_PAGE_ORDER, PAGE_SIZE};

use super::{check, TestResult};
use crate::kernel::platform::BootPlatform;

fn touch(m: &Kmem<BootPlatform>, page: PageRef<'_>, order: Order) -> TestResult {
    let va = m.page_address(page).ok_or("a lowmem page has no direct-map address")?;
    let bytes = PAGE_SIZE << order.as_u32();
    let p = va.as_mut_ptr::<u8>();
    // SAFETY: the block is ours, `bytes` long, mapped at `va` by the direct map.
    unsafe {
        p.write_volatile(0xa5);
        p.add(bytes - 1).write_volatile(0x5a);
        check(p.read_volatile() == 0xa5 && p.add(bytes - 1).read_volatile() == 0x5a, "a block did not keep its bytes")
    }
}

/// `alloc_pages` of every order 0..=MAX_PAGE_ORDER, written at both ends through the direct
/// map, freed; a second round of the same order from the per-CPU lists.
pub fn every_order(m: &'static Kmem<BootPlatform>) -> TestResult {
    for o in 0..=MAX_PAGE_ORDER as u32 {
        let order = Order::of(o);
        for _ in 0..2 {
            let page = m.alloc_pages(Gfp::KERNEL, order).map_err(|_| "alloc_pages failed")?;
            check(page.pfn().as_usize() % (1 << o) == 0, "a block is not aligned to its order")?;
            let r = touch(m, page, order);
            // SAFETY: ours, this order, unused.
            unsafe { m.__free_pages(page, order) };
            r?;
        }
    }
    Ok(())
}

fn gfp_for(zt: ZoneType) -> Option<Gfp> {
    match zt {
        ZoneType::Dma => Some(Gfp::KERNEL | Gfp::DMA),
        ZoneType::Dma32 => Some(Gfp::KERNEL | Gfp::DMA32),
        ZoneType::Normal => Some(Gfp::KERNEL),
        ZoneType::Movable => Some(Gfp::HIGHUSER | Gfp::MOVABLE),
        _ => None,
    }
}

/// For every populated zone of every node: an allocation on that node (`__GFP_THISNODE`)
/// whose highest zone is that zone lands in it.
pub fn every_zone(m: &'static Kmem<BootPlatform>) -> TestResult {
    let mut tested = 0;
    for z in m.zones().filter(|z| z.managed_pages() > 0) {
        let Some(gfp) = gfp_for(z.zone_type()) else { continue };
        if z.zone_type() == ZoneType::Movable {
            continue;
        }
        let page = m
            .alloc_pages_node(Some(z.node()), gfp | Gfp::THISNODE, Order::ZERO)
            .map_err(|_| "alloc_pages_node failed")?;
        let pfn = page.pfn();
        let r = touch(m, page, Order::ZERO);
        // SAFETY: ours, order 0, unused.
        unsafe { m.__free_pages(page, Order::ZERO) };
        r?;
        check(z.spans(pfn), "a page came from another zone")?;
        kprintln!("    node {} {}: pfn {:#x}", z.node(), z.name(), pfn.as_usize());
        tested += 1;
    }
    check(tested >= 2, "fewer than two zones populated")
}

/// Every zone's watermarks are ordered; draining ZONE_DMA with `GFP_NOWAIT` stops at its
/// min watermark (never below), and everything goes back.
pub fn watermarks(m: &'static Kmem<BootPlatform>) -> TestResult {
    for z in m.zones().filter(|z| z.managed_pages() > 0) {
        let (min, low, high) = (z.wmark(Wmark::Min), z.wmark(Wmark::Low), z.wmark(Wmark::High));
        check(0 < min && min < low && low < high && high < z.managed_pages(), "watermarks out of order")?;
    }
    let dma = m.zones().find(|z| z.zone_type() == ZoneType::Dma && z.managed_pages() > 0).ok_or("no ZONE_DMA")?;
    // The taken pages form a list through their own first word (no array on the stack).
    const MAX: usize = 1 << 16;
    let mut head = 0usize;
    let mut n = 0;
    while n < MAX {
        match m.alloc_pages(Gfp::NOWAIT | Gfp::DMA, Order::ZERO) {
            Ok(p) => {
                let va = m.page_address(p).ok_or("no page address")?;
                // SAFETY: the page is ours and direct mapped.
                unsafe { va.as_mut_ptr::<usize>().write(head) };
                head = p.pfn().as_usize();
                n += 1;
            }
            Err(_) => break,
        }
    }
    let free_at_stop = dma.free_pages();
    let min = dma.wmark(Wmark::Min);
    let low = dma.wmark(Wmark::Low);
    while head != 0 {
        let page = m.pfn_to_page(kmem::Pfn::new(head)).ok_or("a pfn without a page")?;
        let va = m.page_address(page).ok_or("no page address")?;
        // SAFETY: written above; the page is still ours.
        head = unsafe { va.as_mut_ptr::<usize>().read() };
        // SAFETY: allocated above, order 0, unused.
        unsafe { m.__free_pages(page, Order::ZERO) };
    }
    kprintln!("    ZONE_DMA: {n} pages taken, {free_at_stop} free at the stop (min {min}, low {low})");
    check(n > 0 && n < MAX, "ZONE_DMA never ran out")?;
    check(free_at_stop >= min / 2 && free_at_stop <= low, "ZONE_DMA stopped away from its min watermark")
}

/// With several nodes: `alloc_pages_node` on each lands on that node.
pub fn every_node(m: &'static Kmem<BootPlatform>) -> TestResult {
    let nodes = m.nr_nodes();
    for nid in 0..nodes {
        let page = m
            .alloc_pages_node(Some(nid), Gfp::KERNEL | Gfp::THISNODE, Order::ZERO)
            .map_err(|_| "alloc_pages_node failed")?;
        let pfn = page.pfn();
        // SAFETY: ours, order 0, unused.
        unsafe { m.__free_pages(page, Order::ZERO) };
        check(m.zones().any(|z| z.node() == nid && z.spans(pfn)), "a page came from another node")?;
    }
    kprintln!("    {nodes} node(s)");
    Ok(())
}

/// The memory map lies in the vmemmap (`paging::map_vmemmap_section`): one array over every
/// section, holes in the physical map (the PCI hole of the 4 GiB configuration) included,
/// so `pfn_to_page` is one multiply-add; descriptors of pages of every node are there.
pub fn vmemmap(m: &'static Kmem<BootPlatform>) -> TestResult {
    use crate::kernel::paging::{VMEMMAP_BYTES, VMEMMAP_START};
    check(m.memmap_is_flat(), "the memory map is not flat")?;
    for nid in 0..m.nr_nodes() {
        let page = m
            .alloc_pages_node(Some(nid), Gfp::KERNEL | Gfp::THISNODE, Order::of(0))
            .map_err(|_| "alloc_pages_node failed")?;
        let desc = page.page() as *const _ as usize;
        let inside = (VMEMMAP_START..VMEMMAP_START + VMEMMAP_BYTES).contains(&desc);
        let r = touch(m, page, Order::of(0));
        // SAFETY: ours, order 0, unused.
        unsafe { m.__free_pages(page, Order::of(0)) };
        r?;
        check(inside, "a page descriptor outside the vmemmap")?;
    }
    Ok(())
}
