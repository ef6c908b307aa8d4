//! The page allocator's free side: `__free_pages`, `free_pages`, `get_page`/`put_page`,
//! `split_page`, and the checks that turn misuse into `BUG: Bad page state` reports instead of
//! corruption.
//!
//! The refcount decides: only the caller that takes it from 1 to 0 frees the block. A count
//! already at 0 means a double free, a free of a page that was never allocated, or of an
//! interior page; the count is restored and the free refused. A page freed with a different
//! order than it was allocated with is reported, then freed with its real order.

use crate::addr::{Order, Pfn, VirtAddr};
use crate::machine::Kmem;
use crate::mm::buddy;
use crate::mm::page::{pg, write_flag_names};
use crate::mm::page_ref::PageRef;
use crate::mm::pcp::pcp_allowed_order;
use crate::mm::zone::bump_locked;
use crate::platform::{Platform, ReportKind};
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// `__free_pages(page, order)`: drops the caller's reference; frees the block when it was
    /// the last. With other references held on a non-compound block, frees all but the first
    /// page, as Linux does.
    ///
    /// # Safety
    ///
    /// The caller must own a reference to a block of `order` at `page` and must not use the
    /// block's memory afterwards (unless other references it holds keep the page alive).
    /// Misuse (double free, wrong order, reserved page) is detected and reported where
    /// possible, but memory the caller still uses may be handed to someone else.
    pub unsafe fn __free_pages(&self, page: PageRef<'_>, order: Order) {
        if !self.owns_page(page) {
            return self.page_of_other_machine("mm/page_alloc.c", "__free_pages", page);
        }
        let ord = order;
        let head = page.is_head();
        // The state pointer once, before the refcount's atomic update (after which the
        // compiler would load it again).
        let st = self.state();
        let Ok(old) = page.page().ref_dec_positive() else {
            self.bad_page(page, "VM_BUG_ON_PAGE(page_ref_count(page) == 0)");
            return;
        };
        if old > 1 {
            if !head && ord != Order::ZERO {
                // Others still hold the first page: free the rest, keep page 0 as an order-0 block.
                page.page().set_alloc_order(Some(0));
                let mut o = ord;
                while let Some(lower) = o.down() {
                    let pfn = page.pfn().add(lower.nr_pages());
                    self.free_block(pfn, self.memmap().pfn_to_page(pfn), lower);
                    o = lower;
                }
            }
            return;
        }
        if ord == Order::ZERO && self.free_page_fast(st, page) {
            return;
        }
        self.free_last_ref(page, ord);
    }

    /// The order-0 free fast path, inlined (Linux's `free_unref_page` shape): the last
    /// reference to a plain order-0 page ([`Page::plain_order0`], so nothing to check or
    /// report) of the fast zone goes on this CPU's list of it, under the type of its
    /// pageblock. `false`: not done here (not plain, another zone, the per-CPU lists off or
    /// `init_on_free`, an isolated pageblock, no cheap pin); the page is unchanged and the
    /// caller takes the full path.
    #[inline(always)]
    fn free_page_fast(&self, st: &crate::machine::MachineState, page: PageRef<'_>) -> bool {
        // One load of the state pointer for the whole path (`st`, the caller's): stores
        // through the page would make the compiler reload it for every `self.state()`.
        let p = page.page();
        let Some(key) = p.plain_order0() else { return false };
        // A page of the fast zone (one compare; the allocation fast path's zone, where nearly
        // every order-0 page comes from): its CPU's pageset needs no test. Others, and every
        // page of a machine with several nodes but node 0's, take the full path; so does
        // every page while `page_free_fast` is off (the per-CPU lists off, init_on_free: the
        // key is then none).
        let Some(fast) = st.fast_zone_of(key) else { return false };
        let mt = match st.memmap.pageblock_migratetype_vouched(page.pfn()) {
            crate::Migratetype::Isolate => return false,
            crate::Migratetype::HighAtomic => crate::Migratetype::Movable,
            m => m,
        };
        p.set_alloc_order(None);
        p.set_data(0);
        if self.free_pcp_fast(fast, page.pfn(), p, mt) {
            return true;
        }
        p.set_alloc_order(Some(0));
        false
    }

    /// The refcount just dropped to 0: check the page and return the block to its zone.
    /// Always inlined: out of line, its call costs every order above 0 about 15
    /// instructions a pair.
    #[inline(always)]
    fn free_last_ref(&self, page: PageRef<'_>, order: Order) {
        let p = page.page();
        if p.state_flags() & pg::CHECK_AT_FREE != 0 {
            p.refcount_add(1);
            self.bad_page(page, "PAGE_FLAGS_CHECK_AT_FREE flag(s) set");
            return;
        }
        let order = match p.alloc_order() {
            Some(o) if o as u32 == order.as_u32() => order,
            Some(o) => {
                let real = Order::new(o as u32).expect("recorded orders are valid");
                self.bad_page_with(page, &|w| write!(w, "freed with order {order} but allocated with order {real}"));
                real
            }
            None => {
                p.refcount_add(1);
                self.bad_page(page, "not the first page of an allocation");
                return;
            }
        };
        if p.test(pg::HEAD) && !self.free_tail_pages_check(page, order) {
            return;
        }
        self.free_block(page.pfn(), p, order);
    }

    /// Tail checks of a compound free (`free_tail_page_prepare`); clears the compound state.
    /// One pass, as Linux's: each tail is checked and cleared in turn (a C loop over 64 live
    /// blocks of 256 KiB-1 MiB, 10% faster than with a pass to check and one to clear). A bad
    /// tail leaves the block a compound page again (the tails before it restored) and
    /// leaked: reported, never freed.
    fn free_tail_pages_check(&self, head: PageRef<'_>, order: Order) -> bool {
        let tails = &self.memmap().block_pages(head.pfn(), order)[1..];
        for (i, t) in (1..).zip(tails) {
            let bad = if !t.test(pg::TAIL) {
                Some("PageTail not set")
            } else if t.tail_back() as usize != i {
                Some("compound_head not consistent")
            } else if t.refcount() != 0 {
                Some("nonzero _refcount")
            } else {
                None
            };
            if let Some(why) = bad {
                for (j, u) in (1..).zip(&tails[..i - 1]) {
                    u.set_exclusive(pg::TAIL);
                    u.set_next(j as u32);
                }
                head.page().refcount_add(1);
                self.bad_page(PageRef::new(head.pfn().add(i), t), why);
                return false;
            }
            t.clear_exclusive(pg::TAIL);
            t.set_next(crate::mm::page::NIL);
            t.set_private(0);
        }
        head.page().clear_exclusive(pg::HEAD);
        true
    }

    /// Returns a block (head frame `pfn`, its descriptor `page`) whose pages nobody
    /// references to its zone (`free_one_page`). Out of line: the order-0 fast path
    /// ([`Kmem::__free_pages`]) has its own inlined push.
    #[inline(never)]
    pub(crate) fn free_block(&self, pfn: Pfn, page: &crate::mm::page::Page, order: Order) {
        let mm = self.memmap();
        page.set_alloc_order(None);
        page.set_data(0);
        let zone = self.page_zone(page);
        let mt = mm.pageblock_migratetype(pfn);
        // `page_free_fast` is `pcp_enabled` unless init_on_free is on (`mm/meminit.rs`).
        if pcp_allowed_order(order) && self.state().page_free_fast.load(Ordering::Relaxed) {
            if self.free_unref_page(zone, pfn, page, order, mt) {
                return;
            }
        } else if self.want_init_on_free() {
            return self.free_block_init(pfn, order, zone, mt);
        }
        self.free_one_page(zone, pfn, order, mt);
    }

    /// [`Kmem::free_block`] with `init_on_free`: zero the block, then the per-CPU lists if
    /// they are on, else the buddy lists.
    #[cold]
    #[inline(never)]
    fn free_block_init(&self, pfn: Pfn, order: Order, zone: &crate::mm::zone::Zone, mt: crate::Migratetype) {
        self.clear_pages(pfn, order);
        let page = self.memmap().pfn_to_page(pfn);
        // It reads as zero now: a `__GFP_ZERO` allocation of it need not clear it again (as
        // Linux's `post_alloc_hook` skips clearing under init_on_free).
        page.set_exclusive(pg::ZEROED);
        if pcp_allowed_order(order) && self.pcp_enabled() && self.free_unref_page(zone, pfn, page, order, mt) {
            return;
        }
        self.free_one_page(zone, pfn, order, mt);
    }

    /// `free_one_page()`: a block straight to the buddy lists (orders the per-CPU lists do not
    /// take, or with them off), then a wake-up for `__GFP_NOFAIL` sleepers. Out of line, so
    /// the per-CPU free path that inlines `free_block` stays as small as it was.
    #[inline(never)]
    fn free_one_page(&self, zone: &crate::mm::zone::Zone, pfn: Pfn, order: Order, mt: crate::Migratetype) {
        let g = zone.area.lock(self.platform());
        buddy::free_one_page(&g, zone, self.memmap(), pfn, order, mt, false);
        bump_locked(&zone.events.pgfree, order.nr_pages() as u64);
        drop(g);
        zone.wake_nofail_waiters(self.platform());
    }

    /// `free_pages(addr, order)`: `__free_pages` by direct-map address; a null address is
    /// ignored; an address outside the direct map is reported.
    ///
    /// # Safety
    ///
    /// As [`Kmem::__free_pages`].
    pub unsafe fn free_pages(&self, addr: VirtAddr, order: Order) {
        if addr.as_usize() == 0 {
            return;
        }
        match self.virt_to_page(addr) {
            // SAFETY: forwarded caller contract.
            Some(page) => unsafe { self.__free_pages(page, order) },
            None => self.warn_on("free_pages", &|w| write!(w, "VM_BUG_ON(!virt_addr_valid({addr}))")),
        }
    }

    /// `free_page(addr)`.
    ///
    /// # Safety
    ///
    /// As [`Kmem::__free_pages`].
    pub unsafe fn free_page(&self, addr: VirtAddr) {
        // SAFETY: forwarded caller contract.
        unsafe { self.free_pages(addr, Order::ZERO) }
    }

    /// `get_page()`: takes another reference (on the compound head for a tail page). Taking a
    /// reference to a free page is reported and refused.
    pub fn get_page(&self, page: PageRef<'_>) {
        if !self.owns_page(page) {
            return self.page_of_other_machine("include/linux/mm.h", "get_page", page);
        }
        let head = self.compound_head(page);
        if !head.page().ref_inc_not_zero() {
            self.bad_page(head, "VM_BUG_ON_PAGE(page_ref_count(page) <= 0)");
        }
    }

    /// `put_page()`: drops a reference; the last one frees the page (the whole compound page,
    /// or the whole block it was allocated as).
    ///
    /// # Safety
    ///
    /// The caller must own the reference it drops, and not use the page if it was the last.
    pub unsafe fn put_page(&self, page: PageRef<'_>) {
        if !self.owns_page(page) {
            return self.page_of_other_machine("include/linux/mm.h", "put_page", page);
        }
        let head = self.compound_head(page);
        let Ok(old) = head.page().ref_dec_positive() else {
            self.bad_page(head, "VM_BUG_ON_PAGE(page_ref_count(page) == 0)");
            return;
        };
        if old == 1 {
            let order = head.page().alloc_order().unwrap_or(0) as u32;
            self.free_last_ref(head, Order::new(order).expect("recorded orders are valid"));
        }
    }

    /// `split_page(page, order)`: turns a non-compound block into `2^order` order-0 pages, each
    /// with refcount 1 and freeable on its own.
    ///
    /// # Safety
    ///
    /// The caller must own the block (allocated with `order`, not compound).
    pub unsafe fn split_page(&self, page: PageRef<'_>, order: Order) {
        if !self.owns_page(page) {
            return self.page_of_other_machine("mm/page_alloc.c", "split_page", page);
        }
        let p = page.page();
        if page.is_compound() || p.refcount() <= 0 || p.alloc_order() != Some(order.as_u32() as u8) {
            self.bad_page(page, "split_page of a compound, free or mis-sized page");
            return;
        }
        let mm = self.memmap();
        for i in 0..order.nr_pages() {
            let t = mm.pfn_to_page(page.pfn().add(i));
            t.set_alloc_order(Some(0));
            if i > 0 {
                t.set_refcount(1);
            }
        }
    }

    /// `bad_page()`: Linux's `BUG: Bad page state` report; the page is left as it was.
    pub(crate) fn bad_page(&self, page: PageRef<'_>, reason: &str) {
        self.bad_page_with(page, &|w| w.write_str(reason));
    }

    fn bad_page_with(&self, page: PageRef<'_>, reason: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result) {
        let task = self.platform().current_task();
        let (pfn, flags, rc) = (page.pfn().as_usize(), page.page().state_flags(), page.refcount());
        let addr = page.page() as *const _ as usize;
        self.report(ReportKind::BadPage, &|w| {
            writeln!(w, "BUG: Bad page state in process {}  pfn:{pfn:05x}", task.comm())?;
            writeln!(w, "page: refcount:{rc} mapcount:0 mapping:0000000000000000 index:0x0 pfn:{pfn:#x}")?;
            write!(w, "flags: {flags:#x}(")?;
            write_flag_names(w, flags)?;
            writeln!(w, ")")?;
            writeln!(w, "raw: {addr:016x}")?;
            write!(w, "page dumped because: ")?;
            reason(w)?;
            writeln!(w)
        });
    }
}

#[cfg(all(test, not(loom)))]
mod fast_tests;
#[cfg(all(test, not(loom)))]
mod tail_tests;
