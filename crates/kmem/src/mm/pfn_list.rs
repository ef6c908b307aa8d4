//! An intrusive doubly linked list of page blocks, threaded through the descriptors' `lru`
//! links by 32-bit frame numbers. The buddy free lists and the slab nodes' lists are made of
//! it (the per-CPU page lists are singly linked: `mm/pcp/list.rs`).
//!
//! A list does not lock itself: each user guards its lists with one lock (the zone lock, a
//! slab node's list lock) and calls these methods only while holding it. Fields are atomics so
//! that lock-free readers of `len` (watermark checks, /proc) are well defined; writers use
//! plain loads and stores, which the lock serialises.

#![forbid(unsafe_code)]

use crate::addr::Pfn;
use crate::mm::memmap::{FlatMemmap, Memmap};
use crate::mm::page::{Page, NIL};
use crate::sync::{const_fn_unless_loom, AtomicU32, AtomicUsize, Ordering};

/// One list. See the module docs for the locking rule.
#[derive(Debug)]
pub struct PfnList {
    head: AtomicU32,
    tail: AtomicU32,
    len: AtomicUsize,
}

impl Default for PfnList {
    fn default() -> Self {
        Self::new()
    }
}

/// How a list finds the descriptor of a linked frame: the memmap ([`Memmap::pfn_to_page`],
/// which tests the map's mode on every lookup), or a fast path's flat view of it
/// ([`FlatMemmap`], tested once). Both are references, passed by value.
pub trait PageLookup<'m>: Copy {
    /// The descriptor of `pfn`, a frame on one of kmem's lists.
    fn link(self, pfn: u32) -> &'m Page;
}

impl<'m> PageLookup<'m> for &'m Memmap {
    #[inline(always)]
    fn link(self, pfn: u32) -> &'m Page {
        self.pfn_to_page(Pfn::new(pfn as usize))
    }
}

impl<'m> PageLookup<'m> for FlatMemmap<'m> {
    #[inline(always)]
    fn link(self, pfn: u32) -> &'m Page {
        self.pfn_to_page(Pfn::new(pfn as usize))
    }
}

#[inline(always)]
fn link<'m>(mm: impl PageLookup<'m>, pfn: u32) -> &'m Page {
    mm.link(pfn)
}

impl PfnList {
    const_fn_unless_loom! {
        /// An empty list.
        pub fn new() -> Self {
            Self { head: AtomicU32::new(NIL), tail: AtomicU32::new(NIL), len: AtomicUsize::new(0) }
        }
    }

    /// Number of blocks (lock-free; may be stale).
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True if empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First block (the hot end).
    #[inline]
    pub fn first(&self) -> Option<Pfn> {
        let h = self.head.load(Ordering::Relaxed);
        (h != NIL).then(|| Pfn::new(h as usize))
    }

    /// Last block (the cold end).
    #[inline]
    pub fn last(&self) -> Option<Pfn> {
        let t = self.tail.load(Ordering::Relaxed);
        (t != NIL).then(|| Pfn::new(t as usize))
    }

    /// The block after `page` on whatever list it is on (walks that unlink as they go).
    #[inline]
    pub fn next_of(page: &Page) -> Option<Pfn> {
        let (next, _) = page.links();
        (next != NIL).then(|| Pfn::new(next as usize))
    }

    /// Links `page` (at `pfn`) at the head, or the tail with `tail`. The caller holds the lock
    /// that guards the list (its owner checks it: `FreeArea` takes the zone guard, the slab
    /// node's callers hold their list's lock).
    #[inline(always)]
    pub fn push<'m>(&self, mm: impl PageLookup<'m>, pfn: Pfn, page: &Page, tail: bool) {
        let me = pfn.as_usize() as u32;
        if tail {
            let t = self.tail.load(Ordering::Relaxed);
            page.set_links(NIL, t);
            if t == NIL {
                self.head.store(me, Ordering::Relaxed);
            } else {
                link(mm, t).set_next(me);
            }
            self.tail.store(me, Ordering::Relaxed);
        } else {
            let h = self.head.load(Ordering::Relaxed);
            page.set_links(h, NIL);
            if h == NIL {
                self.tail.store(me, Ordering::Relaxed);
            } else {
                link(mm, h).set_prev(me);
            }
            self.head.store(me, Ordering::Relaxed);
        }
        self.len.store(self.len() + 1, Ordering::Relaxed);
    }

    /// Unlinks `page`, which must be on this list. The caller holds the list's lock, as for
    /// [`PfnList::push`].
    #[inline(always)]
    pub fn unlink<'m>(&self, mm: impl PageLookup<'m>, page: &Page) {
        let (next, prev) = page.links();
        if prev == NIL {
            self.head.store(next, Ordering::Relaxed);
        } else {
            link(mm, prev).set_next(next);
        }
        if next == NIL {
            self.tail.store(prev, Ordering::Relaxed);
        } else {
            link(mm, next).set_prev(prev);
        }
        page.set_links(NIL, NIL);
        self.len.store(self.len() - 1, Ordering::Relaxed);
    }

    /// Walks the list checking its links; calls `each(pfn, page)` for every block and returns
    /// the count, or the first frame whose links are inconsistent.
    pub fn walk(&self, mm: &Memmap, mut each: impl FnMut(Pfn, &Page) -> bool) -> Result<usize, Pfn> {
        let (mut prev, mut cur, mut n) = (NIL, self.head.load(Ordering::Relaxed), 0);
        while cur != NIL {
            let pfn = Pfn::new(cur as usize);
            let page = mm.page(pfn).ok_or(pfn)?;
            let (next, p) = page.links();
            if p != prev || !each(pfn, page) {
                return Err(pfn);
            }
            n += 1;
            prev = cur;
            cur = next;
        }
        if prev != self.tail.load(Ordering::Relaxed) || n != self.len() {
            return Err(Pfn::new(prev as usize));
        }
        Ok(n)
    }
}
