//! The order-0 fast paths (`Kmem::rmqueue_pcp_fast`, `__free_pages`' `free_page_fast` and
//! `Kmem::free_pcp_fast`) on the test platform, whose `try_pin_cpu` always pins: what they
//! count, where a freed page goes by its pageblock's type, and that misuse still takes the
//! checked path and is reported.

use crate::addr::Order;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page::pg;
use crate::mm::zone::{EventCounts, Zone};
use crate::mm::zone_type::{Migratetype, ZoneType};
use crate::platform::ReportKind;
use crate::testing::{self, TestPlatform};

/// A machine whose order-0 allocations take the fast path: one node, lists on, flat
/// memmap; its lists drained (boot's own allocations leave pages on them).
fn machine() -> Kmem<TestPlatform> {
    let k = testing::machine(256);
    assert!(k.page_fast_ok() && k.memmap().flat().is_some(), "the fast paths apply");
    k.drain_all_pages();
    assert!(normal(&k).pageset(0).unwrap().batch() > 2);
    k
}

fn normal(k: &Kmem<TestPlatform>) -> &Zone {
    k.node(0).unwrap().zone(ZoneType::Normal)
}

fn events(k: &Kmem<TestPlatform>) -> EventCounts {
    normal(k).event_counts()
}

#[test]
fn an_order0_pair_pops_and_pushes_the_hot_end_and_counts_like_the_full_path() {
    let k = machine();
    let pcp = normal(&k).pageset(0).unwrap();
    // The first allocation refills through the full path; the second is a fast pop.
    let a = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let (count, ev) = (pcp.count(), events(&k));
    assert!(count > 0, "the refill left pages on the list");
    let b = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(pcp.count(), count - 1);
    let ev2 = events(&k);
    assert_eq!(
        (ev2.pgalloc, ev2.numa_hit, ev2.numa_local, ev2.numa_miss, ev2.numa_other),
        (ev.pgalloc + 1, ev.numa_hit + 1, ev.numa_local + 1, ev.numa_miss, ev.numa_other)
    );
    assert_eq!((b.refcount(), b.page().alloc_order(), b.page().private()), (1, Some(0), 0));
    assert!(!b.page().is_pcp());
    // SAFETY: ours, no longer used.
    unsafe { k.__free_pages(b, Order::ZERO) };
    assert_eq!(pcp.count(), count);
    assert_eq!(events(&k).pgfree, ev2.pgfree + 1);
    assert!(b.page().is_pcp() && b.page().alloc_order().is_none());
    // LIFO: the page just freed is the next one handed out.
    let c = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(c.pfn(), b.pfn());
    // SAFETY: ours, no longer used.
    unsafe {
        k.__free_pages(c, Order::ZERO);
        k.__free_pages(a, Order::ZERO);
    }
    assert_eq!(k.report_count(ReportKind::BadPage), 0);
    k.verify().unwrap();
}

#[test]
fn a_free_at_high_returns_a_batch_to_the_buddy() {
    let k = machine();
    let z = normal(&k);
    let pcp = z.pageset(0).unwrap();
    let pages: crate::testing::std::vec::Vec<_> =
        (0..pcp.high() + pcp.batch()).map(|_| k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
    let mut max = 0;
    for p in pages {
        // SAFETY: ours, no longer used.
        unsafe { k.__free_pages(p, Order::ZERO) };
        max = max.max(pcp.count());
    }
    assert!(max < pcp.high(), "count {max} reached high {}", pcp.high());
    k.verify().unwrap();
}

/// The pageblock's type at free time decides, as `free_unref_page`'s
/// `get_pfnblock_migratetype`: an isolated pageblock's page skips the lists, a HighAtomic
/// one's goes on the Movable list.
#[test]
fn the_pageblock_type_at_free_picks_the_list_or_the_buddy() {
    let k = machine();
    let pcp = normal(&k).pageset(0).unwrap();
    let mm = k.memmap();
    let p = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let was = mm.pageblock_migratetype(p.pfn());
    mm.set_pageblock_migratetype(p.pfn(), Migratetype::HighAtomic);
    let count = pcp.count();
    // SAFETY: ours, no longer used.
    unsafe { k.__free_pages(p, Order::ZERO) };
    assert_eq!(pcp.count(), count + 1);
    assert!(p.page().is_pcp());
    assert_eq!(p.page().private() >> 8 & 0xff, Migratetype::Movable as u32, "HighAtomic goes on the Movable list");
    mm.set_pageblock_migratetype(p.pfn(), was);

    let q = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    mm.set_pageblock_migratetype(q.pfn(), Migratetype::Isolate);
    let (count, free) = (pcp.count(), normal(&k).free_pages());
    // SAFETY: ours, no longer used.
    unsafe { k.__free_pages(q, Order::ZERO) };
    assert_eq!(pcp.count(), count, "an isolated pageblock's page bypasses the lists");
    assert!(!q.page().is_pcp() && normal(&k).free_pages() >= free, "it went to the buddy lists");
    assert_eq!(k.report_count(ReportKind::BadPage), 0);
}

/// Misuse never takes the fast path's shortcut: a double free, a wrong order and a bad flag
/// are reported as before, and the lists stay sound.
#[test]
fn misuse_takes_the_checked_path_and_is_reported() {
    let k = machine();
    let pcp = normal(&k).pageset(0).unwrap();
    let p = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    // SAFETY: ours; the second free is the misuse under test (the page stays on kmem's lists).
    unsafe {
        k.__free_pages(p, Order::ZERO);
        let count = pcp.count();
        k.__free_pages(p, Order::ZERO);
        assert_eq!(pcp.count(), count, "a double free changes nothing");
    }
    assert_eq!(k.report_count(ReportKind::BadPage), 1);

    // An order-1 block freed as order 0: reported, then freed with its real order.
    let b = k.alloc_pages(Gfp::KERNEL, Order::of(1)).unwrap();
    // SAFETY: ours, no longer used (freed with the wrong order on purpose).
    unsafe { k.__free_pages(b, Order::ZERO) };
    assert_eq!(k.report_count(ReportKind::BadPage), 2);
    assert!(b.page().alloc_order().is_none(), "freed with its real order");

    // A page with a flag that must be clear at free: reported, not freed.
    let r = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    r.page().set_exclusive(pg::RESERVED);
    let count = pcp.count();
    // SAFETY: ours; the bad flag is the misuse under test.
    unsafe { k.__free_pages(r, Order::ZERO) };
    assert_eq!(k.report_count(ReportKind::BadPage), 3);
    assert_eq!((pcp.count(), r.refcount()), (count, 1), "refused: still allocated");
    r.page().clear_exclusive(pg::RESERVED);
    // SAFETY: ours, no longer used.
    unsafe { k.__free_pages(r, Order::ZERO) };
    assert_eq!(k.report_count(ReportKind::BadPage), 3);
    k.verify().unwrap();
}

/// A page of another zone than the fast one (here DMA's) takes the full path, which puts it
/// on the CPU's list of its own zone, counted there, as the fast path does for the fast zone.
#[test]
fn a_page_of_another_zone_goes_on_that_zones_list() {
    let k = machine();
    let dma = k.node(0).unwrap().zone(ZoneType::Dma);
    let dma_pcp = dma.pageset(0).expect("DMA is populated");
    let normal_count = normal(&k).pageset(0).unwrap().count();
    let p = k.alloc_pages(Gfp::KERNEL | Gfp::DMA, Order::ZERO).unwrap();
    assert_eq!(p.page().zone_index(), ZoneType::Dma.index());
    let (count, pgfree) = (dma_pcp.count(), dma.event_counts().pgfree);
    // SAFETY: ours, no longer used.
    unsafe { k.__free_pages(p, Order::ZERO) };
    assert_eq!(dma_pcp.count(), count + 1, "on DMA's list");
    assert!(p.page().is_pcp());
    assert_eq!(dma.event_counts().pgfree, pgfree + 1);
    assert_eq!(normal(&k).pageset(0).unwrap().count(), normal_count, "not on the fast zone's");
    assert_eq!(k.report_count(ReportKind::BadPage), 0);
    k.verify().unwrap();
}

/// The free fast path tells the fast zone's pages by one compare of their flags' zone and
/// node bits with the key boot recorded: a fresh page of the fast zone matches it, a DMA
/// page does not.
#[test]
fn the_fast_zones_pages_match_its_key() {
    let k = machine();
    let p = k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let key = p.page().plain_order0().expect("a fresh order-0 page is plain");
    let fast = k.state().fast_zone_of(key).expect("the fast zone's key");
    assert!(core::ptr::eq(fast.zone(), normal(&k)));
    let d = k.alloc_pages(Gfp::KERNEL | Gfp::DMA, Order::ZERO).unwrap();
    assert!(k.state().fast_zone_of(d.page().plain_order0().unwrap()).is_none());
    // SAFETY: ours, no longer used.
    unsafe {
        k.__free_pages(p, Order::ZERO);
        k.__free_pages(d, Order::ZERO);
    }
}
