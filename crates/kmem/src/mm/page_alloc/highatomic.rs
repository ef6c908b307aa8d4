//! The highatomic reserve (`MIGRATE_HIGHATOMIC`, `mm/page_alloc.c` 6.18): pageblocks set aside
//! for high-order atomic allocations, which cannot reclaim and so fail first when memory is
//! fragmented.
//!
//! - Growing: a request with `ALLOC_HIGHATOMIC` (GFP_ATOMIC-like, order > 0, in the slow path)
//!   that got a block makes the block's pageblock `HighAtomic`
//!   ([`Kmem::reserve_highatomic_pageblock`]), its free pages moving to the `HighAtomic` lists,
//!   up to about 1% of the zone (`ALIGN(managed / 100, pageblock_nr_pages)`); a zone whose 1%
//!   is less than a pageblock gets no reserve.
//! - Using: `rmqueue_buddy` takes from the reserve first for `ALLOC_HIGHATOMIC`, last for
//!   `ALLOC_OOM` / `ALLOC_NON_BLOCK`; nothing else ever does, and the watermark checks do not
//!   count its free pages for requests without `ALLOC_RESERVES`.
//! - Giving back: before OOM ([`Kmem::unreserve_highatomic_pageblock`], from the slow path's
//!   direct reclaim, keeping one pageblock, and from `should_reclaim_retry`, keeping none)
//!   a reserved pageblock with free pages becomes the failing request's migratetype.
//!
//! The size (`zone->nr_reserved_highatomic`) lives in the zone's free area
//! (`FreeArea::nr_reserved_highatomic`), under the zone lock; the free pages are counted from
//! the `HighAtomic` lists.

#![forbid(unsafe_code)]

use super::AllocContext;
use crate::addr::{Order, Pfn, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::machine::Kmem;
use crate::mm::buddy;
use crate::mm::zone::Zone;
use crate::mm::zone_type::Migratetype;
use crate::platform::Platform;

/// The most pages `zone`'s reserve may hold: about 1% of it in whole pageblocks, none if 1% is
/// less than one.
pub(crate) fn max_reserved_highatomic(zone: &Zone) -> usize {
    let pct = zone.managed_pages() / 100;
    if pct < PAGEBLOCK_NR_PAGES {
        0
    } else {
        pct.next_multiple_of(PAGEBLOCK_NR_PAGES)
    }
}

impl<P: Platform> Kmem<P> {
    /// `reserve_highatomic_pageblock()`: after a high-order atomic allocation got the block of
    /// `order` at `pfn` in `zone`, reserve its pageblock (or, for a block of pageblock order
    /// or more, its pageblocks) for such allocations, within the cap.
    #[cold]
    #[inline(never)]
    pub(super) fn reserve_highatomic_pageblock(&self, zone: &Zone, pfn: Pfn, order: Order) {
        let max = max_reserved_highatomic(zone);
        // Checked without the lock first, as Linux does ("race-prone but harmless").
        if zone.area.nr_reserved_highatomic() >= max {
            return;
        }
        let g = zone.area.lock(self.platform());
        if zone.area.nr_reserved_highatomic() >= max {
            return;
        }
        let mm = self.memmap();
        // Only ordinary pageblocks (a reserved one is reserved already; Isolate stays).
        if !buddy::is_mergeable(mm.pageblock_migratetype(pfn)) {
            return;
        }
        if order.as_u32() < PAGEBLOCK_ORDER as u32 {
            if !buddy::move_freepages_block(&g, zone, mm, pfn, Migratetype::HighAtomic) {
                return;
            }
            zone.mod_reserved_highatomic(&g, PAGEBLOCK_NR_PAGES as isize);
        } else {
            buddy::change_pageblock_range(mm, pfn, order, Migratetype::HighAtomic);
            zone.mod_reserved_highatomic(&g, order.nr_pages() as isize);
        }
    }

    /// `unreserve_highatomic_pageblock()`: gives one reserved pageblock with free pages back,
    /// as `ac`'s migratetype (the request that needs the pages, sparing it the stealing
    /// heuristics). Without `force`, a zone keeps its last reserved pageblock. True if a
    /// pageblock was given back.
    #[cold]
    #[inline(never)]
    pub(super) fn unreserve_highatomic_pageblock(&self, ac: &AllocContext<'_>, force: bool) -> bool {
        let mm = self.memmap();
        for zr in ac.zonelist.as_slice().iter().filter(|zr| zr.zone_type() <= ac.highest) {
            let Some(node) = self.node(zr.node as usize) else { continue };
            let zone = node.zone(zr.zone_type());
            let area = &zone.area;
            if !force && area.nr_reserved_highatomic() <= PAGEBLOCK_NR_PAGES {
                continue;
            }
            let g = area.lock(self.platform());
            for order in Order::all() {
                let Some(pfn) = area.first(&g, order, Migratetype::HighAtomic) else { continue };
                let size = PAGEBLOCK_NR_PAGES.max(order.nr_pages());
                // Cannot happen while every change holds the zone lock; Linux warns and clamps.
                debug_assert!(size <= area.nr_reserved_highatomic(), "highatomic reserve count below its blocks");
                zone.mod_reserved_highatomic(&g, -(size.min(area.nr_reserved_highatomic()) as isize));
                let moved = if order.as_u32() < PAGEBLOCK_ORDER as u32 {
                    buddy::move_freepages_block(&g, zone, mm, pfn, ac.mt)
                } else {
                    area.move_to(&g, mm, pfn, ac.mt);
                    buddy::change_pageblock_range(mm, pfn, order, ac.mt);
                    true
                };
                // Reserving the pageblock succeeded, so its span is inside the zone.
                debug_assert!(moved, "a reserved pageblock straddles its zone");
                if moved {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn cap_is_one_percent_in_pageblocks_and_none_below_one_pageblock() {
        let biggest = |k: &crate::Kmem<testing::TestPlatform>| k.zones().map(Zone::managed_pages).max().unwrap();
        // 64 MiB: no zone has 51,200 managed pages, so 1% is under a pageblock.
        let k = testing::machine(64);
        let z = k.zones().find(|z| z.managed_pages() == biggest(&k)).unwrap();
        assert!(z.managed_pages() / 100 < PAGEBLOCK_NR_PAGES);
        assert_eq!(max_reserved_highatomic(z), 0);
        // 256 MiB: 1% of the big zone is a little over one pageblock, rounded up to two.
        let k = testing::machine(256);
        let z = k.zones().find(|z| z.managed_pages() == biggest(&k)).unwrap();
        let pct = z.managed_pages() / 100;
        assert!((PAGEBLOCK_NR_PAGES + 1..2 * PAGEBLOCK_NR_PAGES).contains(&pct), "{pct}");
        assert_eq!(max_reserved_highatomic(z), 2 * PAGEBLOCK_NR_PAGES);
    }

    #[test]
    fn verify_catches_a_reserve_count_that_disagrees_with_its_pageblocks() {
        use crate::mm::verify::VerifyError;
        let k = testing::machine(64);
        k.set_pcp_enabled(false);
        // One page from DMA splits its lowest block: its pageblock holds 511 free pages in
        // blocks of orders 0..=8, all on the list of the pageblock's type.
        let page = k.alloc(crate::Gfp::DMA, Order::ZERO).unwrap();
        let z = k.page_zone(page.page().page());
        let mt = k.memmap().pageblock_migratetype(page.pfn());
        k.verify().unwrap();
        // Marked HighAtomic behind the counter's back: the count disagrees.
        k.memmap().set_pageblock_migratetype(page.pfn(), Migratetype::HighAtomic);
        assert!(matches!(k.verify(), Err(VerifyError::HighAtomic { counted: 512, counter: 0, .. })));
        // Counted, but its free pages are still on an ordinary list: still caught.
        let g = z.area.lock(k.platform());
        z.mod_reserved_highatomic(&g, PAGEBLOCK_NR_PAGES as isize);
        drop(g);
        assert!(matches!(k.verify(), Err(VerifyError::HighAtomic { counted: 512, counter: 512, .. })));
        // Done properly (move_freepages_block), it verifies.
        k.memmap().set_pageblock_migratetype(page.pfn(), mt);
        let g = z.area.lock(k.platform());
        assert!(buddy::move_freepages_block(&g, z, k.memmap(), page.pfn(), Migratetype::HighAtomic));
        drop(g);
        k.verify().unwrap();
        assert_eq!(z.nr_free_highatomic(), PAGEBLOCK_NR_PAGES - 1);
    }

    #[test]
    fn the_fast_mark_follows_the_watermark_the_reserves_and_the_highatomic_count() {
        use crate::mm::zone::Wmark;
        use crate::mm::zone_type::ZoneType;
        let k = testing::machine(256);
        let expect = |z: &Zone, h: ZoneType| {
            if h < z.zone_type() {
                u32::MAX as usize
            } else {
                z.wmark(Wmark::Low) + z.lowmem_reserve(h) + z.nr_reserved_highatomic()
            }
        };
        let check = |k: &crate::Kmem<testing::TestPlatform>| {
            for z in k.zones().filter(|z| z.is_populated()) {
                for h in ZoneType::ALL {
                    assert_eq!(z.fast_mark(h), expect(z, h), "{} for highest {h:?}", z.name());
                }
            }
        };
        check(&k);
        assert!(
            k.zones().any(|z| !z.is_populated() && z.fast_mark(ZoneType::HighMem) == u32::MAX as usize),
            "an empty zone is never fast"
        );
        assert!(k.zones().any(|z| ZoneType::ALL.iter().any(|&h| z.lowmem_reserve(h) > 0)), "a reserve to sum");
        let z = k.zones().max_by_key(|z| z.managed_pages()).unwrap();
        let g = z.area.lock(k.platform());
        z.mod_reserved_highatomic(&g, PAGEBLOCK_NR_PAGES as isize);
        drop(g);
        check(&k);
        assert_eq!(z.fast_mark(z.zone_type()), z.wmark(Wmark::Low) + PAGEBLOCK_NR_PAGES);
        let g = z.area.lock(k.platform());
        z.mod_reserved_highatomic(&g, -(PAGEBLOCK_NR_PAGES as isize));
        drop(g);
        check(&k);
        z.set_wmarks([1, 2, 3, 4]);
        check(&k);
        assert_eq!(z.fast_mark(z.zone_type()), 2);
    }
}
