//! A zone's buddy free lists: one doubly linked list per (order, migratetype), threaded through
//! the page descriptors by 32-bit frame numbers, plus lock-free readable block counts.
//!
//! Invariants (checked by [`FreeArea::check`] in tests):
//! - a page is on exactly one list iff it has `PG_buddy`; its `private` says which
//!   (`order | migratetype << 8`);
//! - `nr_free[order][mt]` equals the length of that list;
//! - every list is well formed (`prev` of `next` is self; head has no prev, tail no next).
//!
//! Writers must hold the area's lock; every mutating method takes the guard as proof.
//!
//! The area also keeps the zone's `nr_reserved_highatomic` (pages in pageblocks reserved for
//! high-order atomic allocations, `page_alloc/highatomic.rs`): it sits in the padding after
//! the lock byte, so `Zone` keeps its size (and boot its metadata layout). Linux's second
//! counter, `nr_free_highatomic`, is derived from the `HighAtomic` list lengths instead
//! ([`FreeArea::nr_free_highatomic`]).

#![forbid(unsafe_code)]

use crate::addr::{Order, Pfn, NR_PAGE_ORDERS};
use crate::mm::memmap::Memmap;
use crate::mm::page::Page;
use crate::mm::pfn_list::{PageLookup, PfnList};
use crate::mm::zone_type::{Migratetype, MIGRATE_PCPTYPES, MIGRATE_TYPES};
use crate::platform::Platform;
use crate::sync::{array_of, const_fn_unless_loom, AtomicU32, Ordering, RawSpinLock, SpinGuard};

/// The free lists of one zone and the lock that guards them (the zone lock).
#[derive(Debug)]
pub struct FreeArea {
    lock: RawSpinLock,
    /// `zone->nr_reserved_highatomic`, in pages (frame counts fit 32 bits). Written under the
    /// lock, read without it (the reserve's cap check and `show_mem`, as Linux reads it).
    nr_reserved_highatomic: AtomicU32,
    lists: [[PfnList; MIGRATE_TYPES]; NR_PAGE_ORDERS],
}

/// The order of a free page, from its `private` word.
#[inline]
pub fn buddy_order(page: &Page) -> u32 {
    page.private() & 0xff
}

/// The migratetype list a free page is on.
#[inline]
pub fn buddy_migratetype(page: &Page) -> Migratetype {
    Migratetype::from_index(((page.private() >> 8) & 0xff) as usize).unwrap_or(Migratetype::Movable)
}

impl Default for FreeArea {
    fn default() -> Self {
        Self::new()
    }
}

impl FreeArea {
    const_fn_unless_loom! {
        /// Empty lists.
        pub fn new() -> Self {
            Self {
                lock: RawSpinLock::new(),
                nr_reserved_highatomic: AtomicU32::new(0),
                lists: array_of![array_of![PfnList::new(); MIGRATE_TYPES]; NR_PAGE_ORDERS],
            }
        }
    }

    /// Takes the zone lock with interrupts saved.
    #[inline]
    pub fn lock<'a, P: Platform>(&'a self, platform: &'a P) -> SpinGuard<'a, P> {
        self.lock.lock_irqsave(platform)
    }

    /// Tries the zone lock without waiting and without touching interrupts
    /// (`spin_trylock` on `ALLOC_TRYLOCK` paths: `alloc_pages_nolock`).
    #[inline]
    pub fn try_lock_nolock<'a, P: Platform>(&'a self, platform: &'a P) -> Option<SpinGuard<'a, P>> {
        self.lock.try_lock_nolock(platform)
    }

    /// Free blocks of `order` on the `mt` list (lock-free, may be stale).
    #[inline]
    pub fn nr_free_mt(&self, order: Order, mt: Migratetype) -> usize {
        self.lists[order.index()][mt.index()].len()
    }

    /// Free blocks of `order` over all migratetypes (`free_area[order].nr_free`).
    pub fn nr_free(&self, order: Order) -> usize {
        Migratetype::ALL.iter().map(|&mt| self.nr_free_mt(order, mt)).sum()
    }

    /// True if some list of `order` usable by ordinary allocations is non-empty.
    #[inline]
    pub fn has_pcptype_block(&self, order: Order) -> bool {
        self.lists[order.index()][..MIGRATE_PCPTYPES].iter().any(|l| !l.is_empty())
    }

    /// True if a list of `order` the request may use is non-empty: an ordinary one, or with
    /// `highatomic` (`ALLOC_HIGHATOMIC` or `ALLOC_OOM`) also the `HighAtomic` one (the block
    /// test of `__zone_watermark_ok`).
    #[inline]
    pub fn has_block(&self, order: Order, highatomic: bool) -> bool {
        self.has_pcptype_block(order)
            || (highatomic && !self.lists[order.index()][Migratetype::HighAtomic.index()].is_empty())
    }

    /// Pages in pageblocks reserved for high-order atomic allocations
    /// (`zone->nr_reserved_highatomic`; lock-free, may be stale).
    #[inline]
    pub fn nr_reserved_highatomic(&self) -> usize {
        self.nr_reserved_highatomic.load(Ordering::Relaxed) as usize
    }

    /// Adds `delta` pages to the reserve's size (the lock holder only). Through
    /// [`Zone::mod_reserved_highatomic`](crate::mm::zone::Zone::mod_reserved_highatomic),
    /// which keeps the zone's fast marks current.
    pub(crate) fn mod_reserved_highatomic<P: Platform>(&self, g: &SpinGuard<'_, P>, delta: isize) {
        debug_assert!(g.holds(&self.lock));
        let v = self.nr_reserved_highatomic() as isize + delta;
        debug_assert!(v >= 0, "nr_reserved_highatomic underflow");
        self.nr_reserved_highatomic.store(v.max(0) as u32, Ordering::Relaxed);
    }

    /// Free pages on the `HighAtomic` lists (`zone->nr_free_highatomic`; lock-free, may be
    /// stale). Derived from the list lengths, and only when a reserve exists: with none, no
    /// pageblock is `HighAtomic` and no free page can be on those lists, so the common case
    /// costs one load.
    #[inline]
    pub fn nr_free_highatomic(&self) -> usize {
        if self.nr_reserved_highatomic.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        Order::all().map(|o| self.nr_free_mt(o, Migratetype::HighAtomic) << o.as_u32()).sum()
    }

    /// The first block on a list (`get_page_from_free_area`).
    #[inline]
    pub fn first<P: Platform>(&self, g: &SpinGuard<'_, P>, order: Order, mt: Migratetype) -> Option<Pfn> {
        debug_assert!(g.holds(&self.lock));
        self.lists[order.index()][mt.index()].first()
    }

    /// The last block on a list (cache-cold end).
    #[inline]
    pub fn last<P: Platform>(&self, g: &SpinGuard<'_, P>, order: Order, mt: Migratetype) -> Option<Pfn> {
        debug_assert!(g.holds(&self.lock));
        self.lists[order.index()][mt.index()].last()
    }

    /// Puts a block on a list at the head (hot) or tail (cold) and marks it `PG_buddy`
    /// (`__add_to_free_list`).
    #[inline(always)]
    pub fn add<'m, P: Platform>(
        &self,
        g: &SpinGuard<'_, P>,
        mm: impl PageLookup<'m>,
        pfn: Pfn,
        order: Order,
        mt: Migratetype,
        tail: bool,
    ) {
        debug_assert!(g.holds(&self.lock));
        let page = mm.link(pfn.as_usize() as u32);
        page.set_buddy(order.as_u32(), mt as u32);
        self.lists[order.index()][mt.index()].push(mm, pfn, page, tail);
    }

    /// Takes a block off its list and clears `PG_buddy` (`del_page_from_free_list`). The list
    /// is the one recorded in the page.
    #[inline(always)]
    pub fn del<P: Platform>(&self, g: &SpinGuard<'_, P>, mm: &Memmap, pfn: Pfn) {
        self.del_page(g, mm, mm.pfn_to_page(pfn));
    }

    /// [`FreeArea::del`] for a descriptor already at hand.
    #[inline(always)]
    pub fn del_page<'m, P: Platform>(&self, g: &SpinGuard<'_, P>, mm: impl PageLookup<'m>, page: &Page) {
        debug_assert!(g.holds(&self.lock));
        debug_assert!(page.is_buddy());
        self.lists[buddy_order(page) as usize][buddy_migratetype(page).index()].unlink(mm, page);
        page.clear_buddy();
    }

    /// Moves a free block to another migratetype's list (`move_to_free_list`).
    pub fn move_to<P: Platform>(&self, g: &SpinGuard<'_, P>, mm: &Memmap, pfn: Pfn, mt: Migratetype) {
        let page = mm.pfn_to_page(pfn);
        let order = Order::new(buddy_order(page)).expect("corrupt buddy order");
        self.del(g, mm, pfn);
        self.add(g, mm, pfn, order, mt, true);
    }

    /// Walks every list and checks the invariants in the module docs; returns the number of
    /// free pages found. Meant for tests and debugging: O(free blocks).
    pub fn check<P: Platform>(&self, g: &SpinGuard<'_, P>, mm: &Memmap) -> Result<usize, FreeAreaCorruption> {
        debug_assert!(g.holds(&self.lock));
        let mut pages = 0;
        for order in Order::all() {
            for mt in Migratetype::ALL {
                let n = self.lists[order.index()][mt.index()]
                    .walk(mm, |pfn, page| {
                        page.is_buddy()
                            && buddy_order(page) == order.as_u32()
                            && buddy_migratetype(page) == mt
                            && pfn.is_aligned(order)
                    })
                    .map_err(FreeAreaCorruption::BadLink)?;
                pages += n * order.nr_pages();
            }
        }
        Ok(pages)
    }
}

/// What [`FreeArea::check`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeAreaCorruption {
    /// A list is malformed at this block: a link names a frame without a descriptor, links
    /// disagree, the block's buddy type, order or migratetype disagree with its list, it is
    /// misaligned, or the list's length or tail disagrees with its walk.
    BadLink(Pfn),
}
