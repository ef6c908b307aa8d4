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

use crate::addr::{Order, Pfn, NR_PAGE_ORDERS};
use crate::mm::memmap::Memmap;
use crate::mm::page::{Page, NIL};
use crate::mm::zone_type::{Migratetype, MIGRATE_PCPTYPES, MIGRATE_TYPES};
use crate::platform::Platform;
use crate::sync::{AtomicU32, AtomicUsize, Ordering, RawSpinLock, SpinGuard};

#[derive(Debug)]
struct FreeList {
    head: AtomicU32,
    tail: AtomicU32,
    len: AtomicUsize,
}

impl FreeList {
    const fn new() -> Self {
        Self { head: AtomicU32::new(NIL), tail: AtomicU32::new(NIL), len: AtomicUsize::new(0) }
    }
}

/// The free lists of one zone and the lock that guards them (the zone lock).
#[derive(Debug)]
pub struct FreeArea {
    lock: RawSpinLock,
    lists: [[FreeList; MIGRATE_TYPES]; NR_PAGE_ORDERS],
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
    /// Empty lists.
    pub const fn new() -> Self {
        Self { lock: RawSpinLock::new(), lists: [const { [const { FreeList::new() }; MIGRATE_TYPES] }; NR_PAGE_ORDERS] }
    }

    /// Takes the zone lock with interrupts saved.
    #[inline]
    pub fn lock<'a, P: Platform>(&'a self, platform: &'a P) -> SpinGuard<'a, P> {
        self.lock.lock_irqsave(platform)
    }

    /// Free blocks of `order` on the `mt` list (lock-free, may be stale).
    #[inline]
    pub fn nr_free_mt(&self, order: Order, mt: Migratetype) -> usize {
        self.lists[order.index()][mt.index()].len.load(Ordering::Relaxed)
    }

    /// Free blocks of `order` over all migratetypes (`free_area[order].nr_free`).
    pub fn nr_free(&self, order: Order) -> usize {
        Migratetype::ALL.iter().map(|&mt| self.nr_free_mt(order, mt)).sum()
    }

    /// True if some list of `order` usable by ordinary allocations is non-empty.
    #[inline]
    pub fn has_pcptype_block(&self, order: Order) -> bool {
        self.lists[order.index()][..MIGRATE_PCPTYPES].iter().any(|l| l.len.load(Ordering::Relaxed) != 0)
    }

    /// Free pages held by the lists (sum of blocks times their size).
    pub fn free_pages(&self) -> usize {
        Order::all().map(|o| self.nr_free(o) * o.nr_pages()).sum()
    }

    /// The first block on a list (`get_page_from_free_area`).
    #[inline]
    pub fn first<P: Platform>(&self, g: &SpinGuard<'_, P>, order: Order, mt: Migratetype) -> Option<Pfn> {
        debug_assert!(g.holds(&self.lock));
        let h = self.lists[order.index()][mt.index()].head.load(Ordering::Relaxed);
        (h != NIL).then(|| Pfn::new(h as usize))
    }

    /// The last block on a list (cache-cold end).
    #[inline]
    pub fn last<P: Platform>(&self, g: &SpinGuard<'_, P>, order: Order, mt: Migratetype) -> Option<Pfn> {
        debug_assert!(g.holds(&self.lock));
        let t = self.lists[order.index()][mt.index()].tail.load(Ordering::Relaxed);
        (t != NIL).then(|| Pfn::new(t as usize))
    }

    /// Puts a block on a list at the head (hot) or tail (cold) and marks it `PG_buddy`
    /// (`__add_to_free_list`).
    #[inline]
    pub fn add<P: Platform>(
        &self,
        g: &SpinGuard<'_, P>,
        mm: &Memmap,
        pfn: Pfn,
        order: Order,
        mt: Migratetype,
        tail: bool,
    ) {
        debug_assert!(g.holds(&self.lock));
        let page = mm.page(pfn).expect("free block without descriptor");
        let list = &self.lists[order.index()][mt.index()];
        let me = pfn.as_usize() as u32;
        page.set_buddy(order.as_u32(), mt as u32);
        if tail {
            let t = list.tail.load(Ordering::Relaxed);
            page.set_links(NIL, t);
            if t == NIL {
                list.head.store(me, Ordering::Relaxed);
            } else {
                link_page(mm, t).set_next(me);
            }
            list.tail.store(me, Ordering::Relaxed);
        } else {
            let h = list.head.load(Ordering::Relaxed);
            page.set_links(h, NIL);
            if h == NIL {
                list.tail.store(me, Ordering::Relaxed);
            } else {
                link_page(mm, h).set_prev(me);
            }
            list.head.store(me, Ordering::Relaxed);
        }
        bump(&list.len, 1);
    }

    /// Takes a block off its list and clears `PG_buddy` (`del_page_from_free_list`). The list
    /// is the one recorded in the page.
    #[inline]
    pub fn del<P: Platform>(&self, g: &SpinGuard<'_, P>, mm: &Memmap, pfn: Pfn) {
        self.del_page(g, mm, mm.page(pfn).expect("free block without descriptor"));
    }

    /// [`FreeArea::del`] for a descriptor already at hand.
    #[inline]
    pub fn del_page<P: Platform>(&self, g: &SpinGuard<'_, P>, mm: &Memmap, page: &Page) {
        debug_assert!(g.holds(&self.lock));
        debug_assert!(page.is_buddy());
        let list = &self.lists[buddy_order(page) as usize][buddy_migratetype(page).index()];
        let (next, prev) = page.links();
        if prev == NIL {
            list.head.store(next, Ordering::Relaxed);
        } else {
            link_page(mm, prev).set_next(next);
        }
        if next == NIL {
            list.tail.store(prev, Ordering::Relaxed);
        } else {
            link_page(mm, next).set_prev(prev);
        }
        page.set_links(NIL, NIL);
        page.clear_buddy();
        bump(&list.len, usize::MAX);
    }

    /// Moves a free block to another migratetype's list (`move_to_free_list`).
    pub fn move_to<P: Platform>(&self, g: &SpinGuard<'_, P>, mm: &Memmap, pfn: Pfn, mt: Migratetype) {
        let page = mm.page(pfn).expect("free block without descriptor");
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
                let list = &self.lists[order.index()][mt.index()];
                let mut prev = NIL;
                let mut cur = list.head.load(Ordering::Relaxed);
                let mut n = 0;
                while cur != NIL {
                    let pfn = Pfn::new(cur as usize);
                    let page = mm.page(pfn).ok_or(FreeAreaCorruption::NoDescriptor(pfn))?;
                    let (next, p) = page.links();
                    if p != prev
                        || !page.is_buddy()
                        || buddy_order(page) != order.as_u32()
                        || buddy_migratetype(page) != mt
                    {
                        return Err(FreeAreaCorruption::BadLink(pfn));
                    }
                    if !pfn.is_aligned(order) {
                        return Err(FreeAreaCorruption::Misaligned(pfn));
                    }
                    n += 1;
                    prev = cur;
                    cur = next;
                }
                if prev != list.tail.load(Ordering::Relaxed) || n != list.len.load(Ordering::Relaxed) {
                    return Err(FreeAreaCorruption::Count { order, mt });
                }
                pages += n * order.nr_pages();
            }
        }
        Ok(pages)
    }
}

/// What [`FreeArea::check`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeAreaCorruption {
    /// A link names a frame without a descriptor.
    NoDescriptor(Pfn),
    /// A page's links, flags or recorded list disagree with the list it is on.
    BadLink(Pfn),
    /// A block is not aligned to its order.
    Misaligned(Pfn),
    /// A list's length or tail disagrees with its walk.
    Count {
        /// The list's order.
        order: Order,
        /// The list's migratetype.
        mt: Migratetype,
    },
}

/// Adds `delta` (wrapping) to a counter only the zone-lock holder writes: a plain load and
/// store instead of a locked read-modify-write; lock-free readers see either value.
#[inline]
fn bump(c: &AtomicUsize, delta: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(delta), Ordering::Relaxed);
}

#[inline]
fn link_page(mm: &Memmap, pfn: u32) -> &Page {
    mm.page(Pfn::new(pfn as usize)).expect("free-list link without descriptor")
}
