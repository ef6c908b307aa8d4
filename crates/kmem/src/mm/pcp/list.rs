//! A per-CPU page list: Linux's `pcp->lists[i]` (a `list_head`: blocks taken and freed at the
//! head, the hot end; refills appended at the tail; drains and `__GFP_COLD` allocations take
//! from the tail, the cold end) built from two singly linked stacks threaded through the
//! descriptors' `next` links by 32-bit frame numbers:
//!
//! - the **hot** stack, top first: the list's head end, in list order;
//! - the **cold** stack, top first: the list's tail end, in reverse list order.
//!
//! The list is the hot stack from its top followed by the cold stack from its bottom. A free
//! pushes on the hot stack and an allocation pops it: one load and one store each, no
//! neighbour's `prev` link to keep (a doubly linked list writes it on every push and pop:
//! about five instructions each way on the order-0 page pair), no tail to keep. A refill
//! pushes on the cold stack (each block after the last: the list's tail); a drain pops the
//! cold stack (the list's tail, the coldest block: Linux's `free_pcppages_bulk` takes
//! `list_last_entry` again and again, so the buddy sees the same frees in the same order).
//! When the stack an end needs is empty, the other one is reversed onto it (`flip`): every
//! block is moved at most once per trip from one end of the list to the other, so each
//! operation is O(1) amortized; the list's order never changes.
//!
//! A block on this list keeps its `prev` link [`NIL`]: it came from the buddy lists or from
//! an allocation, both of which leave NIL links, and the list never writes it (debug builds
//! check it on every push). A block leaves with its `next` link reset to NIL.
//!
//! Locking: the owner's exclusive use (the pinned CPU's), as for
//! [`PfnList`](crate::mm::pfn_list::PfnList); fields are atomics with plain loads and stores.

#![forbid(unsafe_code)]

use crate::addr::Pfn;
use crate::mm::memmap::Memmap;
use crate::mm::page::{Page, NIL};
use crate::mm::pfn_list::PageLookup;
use crate::sync::{const_fn_unless_loom, AtomicU32, Ordering};

/// One per-CPU list (module docs): the tops of its hot and cold stacks.
#[derive(Debug)]
pub(crate) struct PcpList {
    hot: AtomicU32,
    cold: AtomicU32,
}

impl PcpList {
    const_fn_unless_loom! {
        /// An empty list.
        pub(crate) fn new() -> Self {
            Self { hot: AtomicU32::new(NIL), cold: AtomicU32::new(NIL) }
        }
    }

    /// Makes the list empty, over zeroed RAM (its pageset written as its CPU comes up):
    /// never over a list with blocks.
    pub(crate) fn clear(&self) {
        self.hot.store(NIL, Ordering::Relaxed);
        self.cold.store(NIL, Ordering::Relaxed);
    }

    /// True if empty.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.hot.load(Ordering::Relaxed) == NIL && self.cold.load(Ordering::Relaxed) == NIL
    }

    /// Pushes `page` (at `pfn`) on `stack`.
    #[inline(always)]
    fn push(stack: &AtomicU32, pfn: Pfn, page: &Page) {
        debug_assert_eq!(page.links().1, NIL, "a block entering a per-CPU list has a prev link");
        page.set_next(stack.load(Ordering::Relaxed));
        stack.store(pfn.as_usize() as u32, Ordering::Relaxed);
    }

    /// Pops `stack`'s top, its `next` link reset.
    #[inline(always)]
    fn pop<'m>(stack: &AtomicU32, mm: impl PageLookup<'m>) -> Option<(Pfn, &'m Page)> {
        let top = stack.load(Ordering::Relaxed);
        if top == NIL {
            return None;
        }
        let page = mm.link(top);
        stack.store(page.next_link(), Ordering::Relaxed);
        page.set_next(NIL);
        Some((Pfn::new(top as usize), page))
    }

    /// Reverses the stack `from` onto the empty stack `to`: the blocks keep their list order.
    #[cold]
    fn flip<'m>(from: &AtomicU32, to: &AtomicU32, mm: impl PageLookup<'m>) {
        debug_assert_eq!(to.load(Ordering::Relaxed), NIL, "flip onto a stack that has blocks");
        let (mut cur, mut top) = (from.load(Ordering::Relaxed), NIL);
        while cur != NIL {
            let page = mm.link(cur);
            let next = page.next_link();
            page.set_next(top);
            (top, cur) = (cur, next);
        }
        from.store(NIL, Ordering::Relaxed);
        to.store(top, Ordering::Relaxed);
    }

    /// Links `page` (at `pfn`) at the head: a free.
    #[inline(always)]
    pub(crate) fn push_head(&self, pfn: Pfn, page: &Page) {
        Self::push(&self.hot, pfn, page);
    }

    /// Links `page` (at `pfn`) at the tail: a refill, which keeps the buddy's order.
    #[inline(always)]
    pub(crate) fn push_tail(&self, pfn: Pfn, page: &Page) {
        Self::push(&self.cold, pfn, page);
    }

    /// Unlinks and returns the first block if the hot stack has it (the fast path: no
    /// flip); `None` also when only the cold stack has blocks ([`PcpList::pop_first`]).
    #[inline(always)]
    pub(crate) fn pop_hot<'m>(&self, mm: impl PageLookup<'m>) -> Option<(Pfn, &'m Page)> {
        Self::pop(&self.hot, mm)
    }

    /// Unlinks and returns the first block (the hot end), if any.
    #[inline]
    pub(crate) fn pop_first<'m>(&self, mm: impl PageLookup<'m>) -> Option<(Pfn, &'m Page)> {
        if self.hot.load(Ordering::Relaxed) == NIL {
            Self::flip(&self.cold, &self.hot, mm);
        }
        Self::pop(&self.hot, mm)
    }

    /// Unlinks and returns the last block (the cold end), if any: a drain, a `__GFP_COLD`
    /// allocation.
    #[inline]
    pub(crate) fn pop_last<'m>(&self, mm: impl PageLookup<'m>) -> Option<(Pfn, &'m Page)> {
        if self.cold.load(Ordering::Relaxed) == NIL {
            Self::flip(&self.hot, &self.cold, mm);
        }
        Self::pop(&self.cold, mm)
    }

    /// Walks the list checking it: calls `each(pfn, page, cold)` for every block, the hot
    /// stack's from the head, then the cold stack's from the tail (`cold` set), and returns
    /// the count, or the first frame that is malformed (absent, a `prev` link set, `each`
    /// says no, or more blocks than `limit`: a cycle).
    pub(crate) fn walk(
        &self,
        mm: &Memmap,
        limit: usize,
        mut each: impl FnMut(Pfn, &Page, bool) -> bool,
    ) -> Result<usize, Pfn> {
        let mut n = 0;
        for (stack, cold) in [(&self.hot, false), (&self.cold, true)] {
            let mut cur = stack.load(Ordering::Relaxed);
            while cur != NIL {
                let pfn = Pfn::new(cur as usize);
                let page = mm.page(pfn).ok_or(pfn)?;
                let (next, prev) = page.links();
                if prev != NIL || !each(pfn, page, cold) || n >= limit {
                    return Err(pfn);
                }
                n += 1;
                cur = next;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
