//! Per-CPU page lists: refill and drain in batches, `high`, cross-CPU frees, draining before
//! failure, accounting (MemFree includes them, buddyinfo does not).

use crate::common;

use kmem::{Gfp, Order, PageRef, ZoneType};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn machine(cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(cpus).build().unwrap()
}

fn dma32(m: &Machine) -> &kmem::mm::zone::Zone {
    m.node(0).unwrap().zone(ZoneType::Dma32)
}

#[test]
fn first_allocation_refills_a_batch_and_free_returns_to_the_list() {
    pin_current_thread(0);
    let m = machine(2);
    // Boot's own slab allocations may have left pages on the lists.
    m.drain_all_pages();
    let z = dma32(&m);
    let pcp = z.pageset(0).unwrap();
    let (batch, high) = (pcp.batch(), pcp.high());
    assert!(batch > 1 && high >= 4 * batch, "batch {batch} high {high}");
    let buddy_before = z.free_pages();
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(pcp.count(), batch - 1, "one refill of `batch` pages, one handed out");
    assert_eq!(z.free_pages(), buddy_before - batch, "the refill came from the buddy in one go");
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert_eq!(pcp.count(), batch);
    assert_eq!(z.free_pages(), buddy_before - batch, "the free stayed on the list");
    assert!(m.pfn_to_page(p.pfn()).unwrap().page().is_pcp());
    // The same page comes back first (LIFO: cache-hot).
    let q = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(q.pfn(), p.pfn());
    // SAFETY: ours.
    unsafe { m.__free_pages(q, Order::ZERO) };
    m.verify().unwrap();
}

#[test]
fn lists_never_exceed_high_and_drain_in_batches() {
    pin_current_thread(0);
    let m = machine(2);
    let pcp = dma32(&m).pageset(0).unwrap();
    let n = pcp.high() * 2;
    let pages: Vec<PageRef<'_>> = (0..n).map(|_| m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
    let mut max = 0;
    for p in pages {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
        max = max.max(pcp.count());
    }
    assert!(max < pcp.high(), "count {max} reached high {}", pcp.high());
    assert!(pcp.count() >= pcp.high() - 2 * pcp.batch());
    m.verify().unwrap();
}

#[test]
fn pcp_pages_are_free_memory_but_not_buddy_memory() {
    pin_current_thread(1);
    let m = machine(2);
    let total_free = common::free_pages(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(3)).unwrap();
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::of(3)) };
    let z = dma32(&m);
    assert!(z.pcp_pages() >= 8);
    assert_eq!(common::free_pages(&m), total_free);
    let mut meminfo = String::new();
    kmem::proc::meminfo(&m, &mut meminfo).unwrap();
    let free_kb: usize = meminfo.lines().find(|l| l.starts_with("MemFree:")).unwrap()[9..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    assert_eq!(free_kb, total_free * 4, "MemFree counts pages on per-CPU lists");
    let buddy: usize = m.zones().map(|z| z.free_pages()).sum();
    assert_eq!(buddy + m.zones().map(|z| z.pcp_pages()).sum::<usize>(), total_free);
    m.drain_all_pages();
    assert_eq!(m.zones().map(|z| z.pcp_pages()).sum::<usize>(), 0);
    m.verify().unwrap();
}

#[test]
fn a_free_on_another_cpu_lands_on_that_cpus_list() {
    let m = machine(2);
    let p = std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread(0);
            m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap().pfn()
        })
        .join()
        .unwrap()
    });
    let before1 = dma32(&m).pageset(1).unwrap().count();
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread(1);
            // SAFETY: ownership of the page passed to this thread.
            unsafe { m.__free_pages(m.pfn_to_page(p).unwrap(), Order::ZERO) };
        });
    });
    assert_eq!(dma32(&m).pageset(1).unwrap().count(), before1 + 1);
    m.verify().unwrap();
}

#[test]
fn an_allocation_about_to_fail_drains_every_cpu() {
    let m = machine(2);
    // CPU 1 parks pages on its lists.
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread(1);
            let v: Vec<_> = (0..200).map(|_| m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
            for p in v {
                // SAFETY: ours.
                unsafe { m.__free_pages(p, Order::ZERO) };
            }
        });
    });
    let parked = dma32(&m).pageset(1).unwrap().count();
    assert!(parked > 0);
    // CPU 0 takes everything GFP_KERNEL|__GFP_MEMALLOC can take: that must include CPU 1's pages.
    pin_current_thread(0);
    let free = common::free_pages(&m);
    let all: Vec<_> =
        std::iter::from_fn(|| m.alloc_pages(Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NOWARN, Order::ZERO).ok()).collect();
    assert_eq!(all.len(), free, "every free page, including those parked on CPU 1, was handed out");
    assert_eq!(dma32(&m).pageset(1).unwrap().count(), 0);
    for p in all {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    m.verify().unwrap();
}

#[test]
fn disabling_pcp_drains_and_bypasses() {
    pin_current_thread(0);
    let m = machine(2);
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert!(dma32(&m).pcp_pages() > 0);
    m.set_pcp_enabled(false);
    assert_eq!(dma32(&m).pcp_pages(), 0);
    let q = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(dma32(&m).pcp_pages(), 0, "no refill when disabled");
    // SAFETY: ours.
    unsafe { m.__free_pages(q, Order::ZERO) };
    assert_eq!(dma32(&m).pcp_pages(), 0);
}

#[test]
fn threads_sharing_and_migrating_between_cpus_keep_lists_consistent() {
    let m = MachineBuilder::new().ram_mib(128).cpus(3).migrate_every(5).build().unwrap();
    let boot = common::buddyinfo(&m);
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let m = &m;
            s.spawn(move || {
                let mut live: Vec<(PageRef<'_>, u32)> = Vec::new();
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if live.len() < 64 && x % 3 != 0 {
                        let order = [0, 0, 0, 1, 2, 3, 9][(x >> 8) as usize % 7];
                        if let Ok(p) = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(order)) {
                            // SAFETY: ours, mapped.
                            unsafe { m.page_address(p).unwrap().as_mut_ptr::<u64>().write(p.pfn().as_usize() as u64) };
                            live.push((p, order));
                        }
                    } else if !live.is_empty() {
                        let (p, o) = live.swap_remove((x >> 20) as usize % live.len());
                        // SAFETY: ours, mapped.
                        let v = unsafe { m.page_address(p).unwrap().as_mut_ptr::<u64>().read() };
                        assert_eq!(v, p.pfn().as_usize() as u64, "block contents changed under us");
                        // SAFETY: ours.
                        unsafe { m.__free_pages(p, Order::of(o)) };
                    }
                }
                for (p, o) in live {
                    // SAFETY: ours.
                    unsafe { m.__free_pages(p, Order::of(o)) };
                }
            });
        }
    });
    m.verify().unwrap();
    assert_eq!(common::buddyinfo(&m), boot);
    assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0);
}

/// The order-0 fast paths (inlined pop and push, `try_pin_cpu`) on machines with a CPU per
/// thread, where they run: on a flat memory map and on a sparse one (a hole of a section,
/// no vmemmap: the lists' links take the checked lookup), a working set allocated and freed
/// in rounds crosses refills and frees at `high`, with every page accounted for.
#[test]
fn order0_fast_paths_keep_the_lists_sound_on_flat_and_sparse_memmaps() {
    const MIB: u64 = 1 << 20;
    for vmemmap in [true, false] {
        let m = MachineBuilder::new()
            .memory_map(vec![kmem::MemRegion::usable(0, 128 * MIB), kmem::MemRegion::usable(256 * MIB, 128 * MIB)])
            .zone_layout(kmem::ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None })
            .vmemmap(vmemmap)
            .thread_cpus(1)
            .build()
            .unwrap();
        assert_eq!(m.memmap_is_flat(), vmemmap);
        let total_free = common::free_pages(&m);
        let high = m.zones().filter_map(|z| z.pageset(0)).map(|p| p.high()).max().unwrap();
        for round in 0..4 {
            let n = high / 2 + round * high / 2;
            let pages: Vec<PageRef<'_>> = (0..n).map(|_| m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
            assert!(pages.iter().all(|p| p.refcount() == 1 && p.page().alloc_order() == Some(0)));
            for p in pages.into_iter().rev() {
                // SAFETY: ours, no longer used.
                unsafe { m.__free_pages(p, Order::ZERO) };
            }
            assert_eq!(common::free_pages(&m), total_free, "vmemmap {vmemmap}, round {round}");
        }
        assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0);
        m.verify().unwrap();
    }
}
