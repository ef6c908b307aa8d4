//! The buddy algorithm of one zone: split (`expand`), take (`__rmqueue_smallest`), steal from
//! other migratetypes (`__rmqueue_claim` / `__rmqueue_steal`) and merge on free
//! (`__free_one_page`). Policy only: no `unsafe` (the compiler checks); every function runs
//! under the zone lock and takes its guard.

#![forbid(unsafe_code)]

use crate::addr::{Order, Pfn, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::mm::free_area::{buddy_order, FreeArea};
use crate::mm::memmap::Memmap;
use crate::mm::page::{pg, Page};
use crate::mm::pfn_list::PageLookup;
use crate::mm::zone::Zone;
use crate::mm::zone_type::Migratetype;
use crate::platform::Platform;
use crate::sync::SpinGuard;

/// How to take a block off a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Take {
    /// Take from the tail (cache-cold, `__GFP_COLD`) instead of the head.
    pub cold: bool,
    /// Page mobility grouping is off (tiny zones): any fallback may claim whole pageblocks.
    pub grouping_disabled: bool,
}

/// `expand()`: split the block of order `high` at `pfn` down to `low`, putting the upper halves
/// on the `mt` lists, high to low (the order Linux keeps for IO scatter-list merging).
fn expand<P: Platform>(
    g: &SpinGuard<'_, P>,
    area: &FreeArea,
    mm: &Memmap,
    pfn: Pfn,
    low: Order,
    high: Order,
    mt: Migratetype,
) {
    let zeroed = zeroed_bit(mm, pfn);
    let mut o = high;
    while o > low {
        o = o.down().expect("order above low has a lower order");
        let half = pfn.add(o.nr_pages());
        inherit_zeroed(mm, half, zeroed);
        area.add(g, mm, half, o, mt, false);
    }
}

/// The [`pg::ZEROED`] bit of the block headed by `pfn` (0 or the bit).
fn zeroed_bit(mm: &Memmap, pfn: Pfn) -> u64 {
    mm.pfn_to_page(pfn).flags() & pg::ZEROED
}

/// A piece of a block being split (at `pfn`) reads as zero if the block did (`zeroed`,
/// from [`zeroed_bit`]): `mm/zeroed.rs`.
fn inherit_zeroed(mm: &Memmap, pfn: Pfn, zeroed: u64) {
    if zeroed != 0 {
        mm.pfn_to_page(pfn).set_exclusive(zeroed);
    }
}

fn take_block<P: Platform>(
    g: &SpinGuard<'_, P>,
    area: &FreeArea,
    order: Order,
    mt: Migratetype,
    cold: bool,
) -> Option<Pfn> {
    if cold {
        area.last(g, order, mt)
    } else {
        area.first(g, order, mt)
    }
}

/// `__rmqueue_smallest()`: the smallest free block of `mt` at or above `order`, split to size.
pub fn rmqueue_smallest<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    order: Order,
    mt: Migratetype,
    take: Take,
) -> Option<Pfn> {
    let area = &zone.area;
    let mut cur = order;
    loop {
        if area.nr_free_mt(cur, mt) != 0 {
            let pfn = take_block(g, area, cur, mt, take.cold)?;
            area.del(g, mm, pfn);
            expand(g, area, mm, pfn, order, cur, mt);
            zone.mod_free_pages(-(order.nr_pages() as isize));
            return Some(pfn);
        }
        cur = cur.up()?;
    }
}

/// `can_steal_fallback()`: may a request of `start` type claim a whole pageblock of another?
fn can_claim(order: Order, start: Migratetype, take: Take) -> bool {
    order.as_u32() >= PAGEBLOCK_ORDER as u32
        || order.as_u32() >= PAGEBLOCK_ORDER as u32 / 2
        || matches!(start, Migratetype::Reclaimable | Migratetype::Unmovable)
        || take.grouping_disabled
}

/// `__rmqueue()`: own type first, then claim a pageblock of a fallback type, then steal a
/// single block of one.
pub fn rmqueue<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    order: Order,
    mt: Migratetype,
    take: Take,
) -> Option<Pfn> {
    if let Some(pfn) = rmqueue_smallest(g, zone, mm, order, mt, take) {
        return Some(pfn);
    }
    rmqueue_claim(g, zone, mm, order, mt, take).or_else(|| rmqueue_steal(g, zone, mm, order, mt, take))
}

/// `rmqueue_bulk()`'s loop (the per-CPU lists' refill): up to `n` blocks of `order` for `mt`,
/// handed to `put` one by one; returns how many. The same blocks in the same order as `n`
/// calls of [`rmqueue`], leaving the same lists, at a fraction of the cost: a block of the
/// request's own type found at order `cur` is taken off its list once and its sub-blocks of
/// `order` are handed out in address order, which is what `n` splits would do (`expand` puts
/// each upper half at the head of its list, the lists below `cur` were empty, so every next
/// call takes the block's next sub-block); only what is left of it goes on the lists, each
/// piece (one per order) at the head, where the splits leave it. The zone's free counter
/// moves once per block. Cold takes (`__GFP_COLD`: the tails) and the fallback types' steps
/// are the per-block [`rmqueue`].
#[allow(clippy::too_many_arguments)]
pub fn rmqueue_bulk<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    order: Order,
    mt: Migratetype,
    take: Take,
    n: usize,
    mut put: impl FnMut(Pfn),
) -> usize {
    let area = &zone.area;
    let mut got = 0;
    while got < n {
        let mut cur = Some(order);
        while let Some(o) = cur.filter(|&o| area.nr_free_mt(o, mt) == 0) {
            cur = o.up();
        }
        let (Some(cur), false) = (cur, take.cold) else {
            // No block of the own type (or a cold take): one block as `__rmqueue` takes it.
            let Some(pfn) = rmqueue(g, zone, mm, order, mt, take) else { break };
            put(pfn);
            got += 1;
            continue;
        };
        let Some(pfn) = area.first(g, cur, mt) else { break };
        area.del(g, mm, pfn);
        let subs = 1usize << (cur.as_u32() - order.as_u32());
        let k = subs.min(n - got);
        let zeroed = zeroed_bit(mm, pfn);
        for i in 0..k {
            let sub = pfn.add(i << order.as_u32());
            inherit_zeroed(mm, sub, zeroed);
            put(sub);
        }
        got += k;
        zone.mod_free_pages(-((k << order.as_u32()) as isize));
        // The rest, `[k, subs)` sub-blocks: from each position, the largest aligned block
        // (its lowest set bit) up to the end; every piece has its own order.
        let mut at = k;
        while at < subs {
            let o = Order::of(at.trailing_zeros() + order.as_u32());
            inherit_zeroed(mm, pfn.add(at << order.as_u32()), zeroed);
            area.add(g, mm, pfn.add(at << order.as_u32()), o, mt, false);
            at += 1 << (o.as_u32() - order.as_u32());
        }
    }
    got
}

/// `__rmqueue_claim()`: search the fallback lists from the largest block down, and if the
/// request may claim pageblocks, move the block's pageblock(s) to `mt` and allocate from them.
fn rmqueue_claim<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    order: Order,
    mt: Migratetype,
    take: Take,
) -> Option<Pfn> {
    let area = &zone.area;
    for cur in Order::all().rev().filter(|&o| o >= order) {
        for &fb in mt.fallbacks() {
            if area.nr_free_mt(cur, fb) == 0 {
                continue;
            }
            if !can_claim(cur, mt, take) {
                continue;
            }
            let pfn = take_block(g, area, cur, fb, take.cold)?;
            if try_to_claim_block(g, zone, mm, pfn, cur, mt, take) {
                return rmqueue_smallest(g, zone, mm, order, mt, take);
            }
        }
    }
    None
}

/// `__rmqueue_steal()`: take the smallest fallback block without claiming its pageblock; the
/// split remainders stay on the fallback type's lists.
fn rmqueue_steal<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    order: Order,
    mt: Migratetype,
    take: Take,
) -> Option<Pfn> {
    let area = &zone.area;
    for cur in Order::all().filter(|&o| o >= order) {
        for &fb in mt.fallbacks() {
            if area.nr_free_mt(cur, fb) == 0 {
                continue;
            }
            let pfn = take_block(g, area, cur, fb, take.cold)?;
            area.del(g, mm, pfn);
            expand(g, area, mm, pfn, order, cur, fb);
            zone.mod_free_pages(-(order.nr_pages() as isize));
            return Some(pfn);
        }
    }
    None
}

/// `try_to_claim_block()`: a block at or above pageblock order changes type wholesale;
/// below it, the pageblock changes type when at least half of it is free (kmem does not track
/// "alike" allocated pages).
fn try_to_claim_block<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    pfn: Pfn,
    order: Order,
    mt: Migratetype,
    take: Take,
) -> bool {
    let area = &zone.area;
    if order.as_u32() >= PAGEBLOCK_ORDER as u32 {
        change_pageblock_range(mm, pfn, order, mt);
        area.move_to(g, mm, pfn, mt);
        return true;
    }
    let start = Pfn::new(pfn.as_usize() & !(PAGEBLOCK_NR_PAGES - 1));
    let end = start.add(PAGEBLOCK_NR_PAGES);
    if start < zone.start_pfn() || end > zone.end_pfn() {
        return false;
    }
    let free = count_free_in(mm, start, end);
    if free >= PAGEBLOCK_NR_PAGES / 2 || take.grouping_disabled {
        move_free_in(g, area, mm, start, end, mt);
        mm.set_pageblock_migratetype(start, mt);
        return true;
    }
    false
}

/// `move_freepages_block()`: moves every free block of the pageblock holding `pfn` to the `mt`
/// lists and makes `mt` the pageblock's type. `false` (nothing changed) if the pageblock
/// straddles the zone's span (Linux's `-1`).
pub fn move_freepages_block<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    pfn: Pfn,
    mt: Migratetype,
) -> bool {
    let start = Pfn::new(pfn.as_usize() & !(PAGEBLOCK_NR_PAGES - 1));
    let end = start.add(PAGEBLOCK_NR_PAGES);
    if start < zone.start_pfn() || end > zone.end_pfn() {
        return false;
    }
    move_free_in(g, &zone.area, mm, start, end, mt);
    mm.set_pageblock_migratetype(start, mt);
    true
}

/// `change_pageblock_range()`: every pageblock of the block of `order` (at or above pageblock
/// order) at `pfn` becomes `mt`.
pub fn change_pageblock_range(mm: &Memmap, pfn: Pfn, order: Order, mt: Migratetype) {
    let mut p = pfn;
    while p < pfn.add(order.nr_pages()) {
        mm.set_pageblock_migratetype(p, mt);
        p = p.add(PAGEBLOCK_NR_PAGES);
    }
}

/// Free pages in `[start, end)`, walking buddy blocks.
fn count_free_in(mm: &Memmap, start: Pfn, end: Pfn) -> usize {
    let (mut p, mut free) = (start, 0);
    while p < end {
        match mm.page(p) {
            Some(page) if page.is_buddy() => {
                let n = 1usize << buddy_order(page);
                free += n;
                p = p.add(n);
            }
            _ => p = p.add(1),
        }
    }
    free
}

/// `move_freepages()`: moves every free block in `[start, end)` to the `mt` lists.
fn move_free_in<P: Platform>(
    g: &SpinGuard<'_, P>,
    area: &FreeArea,
    mm: &Memmap,
    start: Pfn,
    end: Pfn,
    mt: Migratetype,
) {
    let mut p = start;
    while p < end {
        match mm.page(p) {
            Some(page) if page.is_buddy() => {
                let n = 1usize << buddy_order(page);
                area.move_to(g, mm, p, mt);
                p = p.add(n);
            }
            _ => p = p.add(1),
        }
    }
}

/// The descriptor of `buddy` if it is a free block of exactly `order` inside `[start, end)`,
/// the zone's span (`page_is_buddy`). `order` is below `MAX_PAGE_ORDER`, so the buddy lies
/// in the block's `MAX_ORDER_NR_PAGES` chunk, in a present section.
#[inline]
fn free_buddy<'m>(mm: impl PageLookup<'m>, start: Pfn, end: Pfn, buddy: Pfn, order: Order) -> Option<&'m Page> {
    if buddy < start || buddy >= end {
        return None;
    }
    Some(mm.link(buddy.as_usize() as u32)).filter(|p| p.is_buddy() && buddy_order(p) == order.as_u32())
}

/// `__free_one_page()`: returns the block of `order` at `pfn` to the zone, merging with free
/// buddies as far as possible, onto the `mt` list (head, or tail when the next merge is likely
/// or `to_tail` asks for it).
pub fn free_one_page<P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    pfn: Pfn,
    order: Order,
    mt: Migratetype,
    to_tail: bool,
) {
    // Descriptors through the flat view when there is one: the mode tested once, not at
    // each of the half dozen lookups of a merge step.
    match mm.flat() {
        Some(flat) => free_one_page_in(g, zone, mm, flat, pfn, order, mt, to_tail),
        None => free_one_page_in(g, zone, mm, mm, pfn, order, mt, to_tail),
    }
}

/// [`free_one_page`] with the descriptors looked up in `lk`, a view of `mm`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn free_one_page_in<'m, P: Platform>(
    g: &SpinGuard<'_, P>,
    zone: &Zone,
    mm: &Memmap,
    lk: impl PageLookup<'m>,
    mut pfn: Pfn,
    mut order: Order,
    mt: Migratetype,
    to_tail: bool,
) {
    let mm_page = |p: Pfn| lk.link(p.as_usize() as u32);
    let area = &zone.area;
    let (start, end) = (zone.start_pfn(), zone.end_pfn());
    zone.mod_free_pages(order.nr_pages() as isize);
    // A merged block counts as reported (its memory given back to the host), or as reading
    // zero, only if every piece of it did.
    const CONTENT: u64 = pg::REPORTED | pg::ZEROED;
    let mut content = mm_page(pfn).flags() & CONTENT;
    while order < Order::MAX {
        let buddy = pfn.buddy(order);
        let Some(bpage) = free_buddy(lk, start, end, buddy, order) else { break };
        content &= bpage.flags();
        bpage.clear_exclusive(CONTENT);
        if order.as_u32() >= PAGEBLOCK_ORDER as u32 {
            let bmt = mm.pageblock_migratetype(buddy);
            if bmt != mt {
                if !is_mergeable(bmt) || !is_mergeable(mt) {
                    break;
                }
                // Match the buddy's type so a later expand() puts sub-blocks on the right lists.
                let mut p = buddy;
                while p < buddy.add(order.nr_pages()) {
                    mm.set_pageblock_migratetype(p, mt);
                    p = p.add(PAGEBLOCK_NR_PAGES);
                }
            }
        }
        area.del_page(g, lk, bpage);
        mm_page(pfn).clear_exclusive(CONTENT);
        pfn = Pfn::new(pfn.as_usize() & buddy.as_usize());
        order = order.up().expect("order below MAX has a higher order");
    }
    let tail = to_tail || buddy_merge_likely(lk, start, end, pfn, order);
    if content != 0 {
        mm_page(pfn).set_exclusive(content);
    }
    area.add(g, lk, pfn, order, mt, tail);
}

/// `migratetype_is_mergeable()`: the ordinary types, whose pageblocks merge with each other.
pub fn is_mergeable(mt: Migratetype) -> bool {
    matches!(mt, Migratetype::Unmovable | Migratetype::Movable | Migratetype::Reclaimable)
}

/// `buddy_merge_likely()`: if the buddy of the block one order up is free, this block is
/// likely to merge soon, so keep it at the tail where it will not be handed out first.
fn buddy_merge_likely<'m>(mm: impl PageLookup<'m>, start: Pfn, end: Pfn, pfn: Pfn, order: Order) -> bool {
    if order.as_u32() >= Order::MAX.as_u32() - 1 {
        return false;
    }
    let up = order.up().expect("checked above");
    let higher = Pfn::new(pfn.as_usize() & pfn.buddy(order).as_usize());
    let higher_buddy = higher.buddy(up);
    // `up` is below `MAX_PAGE_ORDER`: the buddy lies in the block's chunk, as in `free_buddy`.
    higher_buddy >= start && higher_buddy < end && mm.link(higher_buddy.as_usize() as u32).is_buddy()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gfp::Gfp;
    use crate::testing;
    use crate::ZoneType;

    fn counts(k: &crate::Kmem<testing::TestPlatform>, zt: ZoneType) -> [usize; 11] {
        let z = k.node(0).unwrap().zone(zt);
        core::array::from_fn(|o| z.area.nr_free(Order::new(o as u32).unwrap()))
    }

    #[test]
    fn boot_frees_in_maximal_aligned_blocks() {
        let k = testing::machine(64);
        // DMA: 16 MiB = 4 order-10 blocks (metadata lives at the top of Normal).
        assert_eq!(counts(&k, ZoneType::Dma), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
        k.verify().unwrap();
    }

    #[test]
    fn expand_puts_upper_halves_on_each_lower_order() {
        let k = testing::machine(64);
        k.set_pcp_enabled(false); // these tests look at the buddy lists themselves
        let dma = k.node(0).unwrap().zone(ZoneType::Dma);
        let before = counts(&k, ZoneType::Dma);
        let p = k.alloc(Gfp::DMA, Order::ZERO).unwrap();
        // The lowest block was split: one free block at each order 0..=9, one fewer at 10.
        let after = counts(&k, ZoneType::Dma);
        assert_eq!(after, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, before[10] - 1]);
        // Lowest-address-first: the allocation is the first frame of the zone's first block,
        // and the free order-0 block is its buddy.
        assert_eq!(p.pfn(), dma.start_pfn());
        let g = dma.area.lock(k.platform());
        // GFP_DMA is unmovable: the block's pageblocks were claimed for Unmovable first.
        assert_eq!(dma.area.first(&g, Order::ZERO, Migratetype::Unmovable), Some(p.pfn().add(1)));
        drop(g);
        drop(p);
        assert_eq!(counts(&k, ZoneType::Dma), before, "free merges all the way back up");
        k.verify().unwrap();
    }

    #[test]
    fn merge_needs_both_buddies() {
        let k = testing::machine(64);
        k.set_pcp_enabled(false);
        let before = counts(&k, ZoneType::Dma);
        let a = k.alloc(Gfp::DMA, Order::ZERO).unwrap();
        let b = k.alloc(Gfp::DMA, Order::ZERO).unwrap();
        assert_eq!(b.pfn(), a.pfn().buddy(Order::ZERO), "second order-0 comes from the first's buddy");
        drop(a);
        assert_eq!(counts(&k, ZoneType::Dma)[0], 1, "a cannot merge while b is allocated");
        drop(b);
        assert_eq!(counts(&k, ZoneType::Dma), before);
    }

    #[test]
    fn unmovable_request_claims_a_movable_pageblock() {
        let k = testing::machine(64);
        let mm = k.memmap();
        // Everything is Movable at boot; GFP_KERNEL is Unmovable and must claim a pageblock.
        let p = k.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
        assert_eq!(mm.pageblock_migratetype(p.pfn()), Migratetype::Unmovable);
        // A Movable request elsewhere keeps Movable blocks.
        let q = k.alloc(Gfp::HIGHUSER_MOVABLE, Order::ZERO).unwrap();
        assert_eq!(mm.pageblock_migratetype(q.pfn()), Migratetype::Movable);
        assert_ne!(p.pfn().as_usize() >> 9, q.pfn().as_usize() >> 9, "different pageblocks");
        drop((p, q));
        k.verify().unwrap();
    }

    type Taken = (testing::std::vec::Vec<(Pfn, u32)>, testing::std::vec::Vec<testing::std::vec::Vec<Pfn>>, usize);

    /// On a machine fragmented by a fixed pattern, takes `n` blocks of `order` for `mt`
    /// from the zone of `gfp`, with [`rmqueue_bulk`] or with `n` calls of [`rmqueue`]:
    /// the blocks taken (with their `private` words), every list head to tail, the zone's
    /// free counter.
    fn take_n(bulk: bool, gfp: Gfp, order: u32, mt: Migratetype, n: usize, cold: bool) -> Taken {
        use testing::std::vec::Vec;
        let k = testing::machine(64);
        k.set_pcp_enabled(false);
        let mut held = Vec::new();
        for i in 0..600u32 {
            let gfp = if i % 5 == 0 { Gfp::KERNEL_ACCOUNT | Gfp::RECLAIMABLE } else { gfp };
            held.push(k.alloc(gfp, Order::of(i % 4)).unwrap());
        }
        let zone = k.page_zone(held[0].page().page());
        // Frees two of every seven (dropping frees), leaving holes of every order.
        let held: Vec<_> = held.into_iter().enumerate().filter(|(i, _)| i % 7 >= 2).collect();
        let (mm, take) = (k.memmap(), Take { cold, grouping_disabled: false });
        let g = zone.area.lock(k.platform());
        let mut got = Vec::new();
        if bulk {
            let k = rmqueue_bulk(&g, zone, mm, Order::of(order), mt, take, n, |p| got.push(p));
            assert_eq!(k, got.len());
        } else {
            got.extend((0..n).map_while(|_| rmqueue(&g, zone, mm, Order::of(order), mt, take)));
        }
        let mut lists = Vec::new();
        for o in Order::all() {
            for t in Migratetype::ALL {
                let mut l = Vec::new();
                let mut at = zone.area.first(&g, o, t);
                while let Some(p) = at {
                    l.push(p);
                    at = crate::mm::pfn_list::PfnList::next_of(mm.pfn_to_page(p));
                }
                lists.push(l);
            }
        }
        let got = got.into_iter().map(|p| (p, mm.pfn_to_page(p).private())).collect();
        drop((g, held));
        (got, lists, zone.free_pages())
    }

    #[test]
    fn bulk_takes_and_leaves_what_single_takes_do() {
        use Migratetype::{Movable, Reclaimable, Unmovable};
        let cases = [
            (Gfp::KERNEL, 0, Unmovable, 1, false),
            (Gfp::KERNEL, 0, Unmovable, 5, false),
            (Gfp::KERNEL, 0, Unmovable, 63, false),
            (Gfp::KERNEL, 0, Unmovable, 3000, false),
            (Gfp::KERNEL, 1, Unmovable, 7, false),
            (Gfp::KERNEL, 2, Unmovable, 31, false),
            (Gfp::KERNEL, 3, Unmovable, 2, false),
            (Gfp::KERNEL, 9, Unmovable, 2, false),
            (Gfp::HIGHUSER_MOVABLE, 0, Movable, 200, false),
            // Runs out of its own type: claims and steals from the others.
            (Gfp::KERNEL, 0, Reclaimable, 2000, false),
            (Gfp::KERNEL, 0, Unmovable, 40, true),
        ];
        for (gfp, order, mt, n, cold) in cases {
            let bulk = take_n(true, gfp, order, mt, n, cold);
            assert!(!bulk.0.is_empty());
            assert_eq!(bulk, take_n(false, gfp, order, mt, n, cold), "order {order} {mt:?} n {n} cold {cold}");
        }
    }

    #[test]
    fn cold_takes_the_tail() {
        let k = testing::machine(64);
        let hot = k.alloc(Gfp::DMA, Order::MAX).unwrap();
        let cold = k.alloc(Gfp::DMA | Gfp::COLD, Order::MAX).unwrap();
        assert!(cold.pfn() > hot.pfn().add(1024), "cold block comes from the list tail");
    }
}
