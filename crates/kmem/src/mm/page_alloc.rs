//! The page allocator's allocation side: `alloc_pages` and friends, the zonelist walk, the slow
//! path with GFP semantics, and `prep_new_page`.
//!
//! Data flow: `__alloc_pages` -> fast path at the low watermark -> slow path
//! (`slowpath.rs`: kswapd, reserves, direct reclaim, retry rules, OOM, `__GFP_NOFAIL`'s wait)
//! -> `warn_alloc` unless `__GFP_NOWARN`.
//!
//! Policy only: zeroing (`highmem/helpers.rs`) is the one thing here that writes memory.

#![forbid(unsafe_code)]

use crate::addr::{Order, Pfn, VirtAddr};
use crate::gfp::{Gfp, GfpZone};
use crate::machine::Kmem;
use crate::mm::alloc_flags::AllocFlags;
use crate::mm::buddy::{self, Take};
use crate::mm::node::ZoneList;
use crate::mm::page::{pg, Page};
use crate::mm::page_ref::{AllocError, AllocErrorKind, PageRef};
use crate::mm::pcp::pcp_allowed_order;
use crate::mm::watermark::watermark_ok;
use crate::mm::zone::{Wmark, Zone};
use crate::mm::zone_type::{Migratetype, ZoneType};
use crate::platform::{Platform, ReportKind};
use crate::sync::Ordering;

mod highatomic;
mod nolock;
mod slowpath;

/// What one allocation is allowed (`struct alloc_context`).
struct AllocContext<'a> {
    zonelist: &'a ZoneList,
    highest: ZoneType,
    mt: Migratetype,
    preferred_nid: usize,
    take: Take,
}

impl<P: Platform> Kmem<P> {
    /// `alloc_pages(gfp, order)`: a block of `2^order` pages from the local node (falling back
    /// to others by distance).
    ///
    /// ```
    /// use kmem::{Gfp, Order, ReportKind};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let page = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, Order::of(2)).unwrap();
    /// assert_eq!(page.refcount(), 1);
    /// // SAFETY: we own the block and no longer use it.
    /// unsafe { m.__free_pages(page, Order::of(2)) };
    /// assert_eq!(m.report_count(ReportKind::BadPage), 0);
    /// ```
    #[inline]
    pub fn alloc_pages(&self, gfp: Gfp, order: Order) -> Result<PageRef<'_>, AllocError> {
        if let Some(p) = self.alloc_page_fast(gfp, order) {
            return Ok(p);
        }
        self.alloc_pages_inner(gfp, order.as_u32(), self.numa_node_id())
    }

    /// The common case in one straight line: an order-0 page on a one-node machine, from
    /// the preferred zone's per-CPU list, the zone comfortably above its low watermark, a
    /// request that may be made where it is made, the per-CPU lists on and `fail_page_alloc`
    /// not armed ([`Kmem::page_fast_ok`]). The list pop is inlined ([`Kmem::rmqueue_pcp_fast`]),
    /// and so is `prep_new_page` (one flags store). Anything else (an empty list, a CPU that
    /// cannot be pinned cheaply, an empty zone) takes the full path, which decides the same
    /// way and does the rest (refill included). The free pages of a highatomic
    /// reserve are not usable here (`__zone_watermark_unusable_free`): the test counts the
    /// whole reserve, an upper bound of its free pages kept in one word, and leaves a zone
    /// near the mark to the full path's exact count.
    #[inline(always)]
    fn alloc_page_fast(&self, gfp: Gfp, order: Order) -> Option<PageRef<'_>> {
        self.alloc_page_fast_zeroed(gfp, order).map(|(p, _)| p)
    }

    /// [`Kmem::alloc_page_fast`], and whether the page reads as zero ([`pg::ZEROED`]).
    #[inline(always)]
    fn alloc_page_fast_zeroed(&self, gfp: Gfp, order: Order) -> Option<(PageRef<'_>, bool)> {
        let st = self.state();
        // `page_fast_ok` includes a one-node machine.
        if order != Order::ZERO || gfp.intersects(Gfp::THISNODE.union(Gfp::ZERO).union(Gfp::COLD)) {
            return None;
        }
        if gfp.allows_blocking() && self.platform().atomic_context() {
            return None;
        }
        // Node 0's first zonelist zone, recorded at boot, while the fast path may run.
        let fast = st.fast_zone_if_ok()?;
        let highest = self.highest_zone(gfp.zone().ok()?);
        let zone = fast.zone();
        // Signed: the counter may dip below zero transiently, as `free_pages()` clamps it. A
        // zone above `highest` has the mark no count passes (`Zone::fast_mark`).
        if zone.free_pages_signed() <= zone.fast_mark(highest) as isize {
            return None;
        }
        let mt = if st.grouping_disabled { Migratetype::Unmovable } else { gfp.migratetype() };
        let (pfn, page) = self.rmqueue_pcp_fast(fast, mt)?;
        debug_assert_eq!(page.state_flags() & pg::CHECK_AT_FREE, 0, "new page {pfn:?} has bad flags");
        // prep_new_page() without __GFP_ZERO / __GFP_COMP.
        let zeroed = page.prep_order0();
        Some((PageRef::new(pfn, page), zeroed))
    }

    /// `alloc_pages_node(nid, gfp, order)`: prefer node `nid` (`None`: `NUMA_NO_NODE`, the
    /// local node). A node that does not exist fails with [`AllocErrorKind::NoSuchNode`].
    pub fn alloc_pages_node(&self, nid: Option<usize>, gfp: Gfp, order: Order) -> Result<PageRef<'_>, AllocError> {
        let nid = nid.unwrap_or_else(|| self.numa_node_id());
        self.alloc_pages_inner(gfp, order.as_u32(), nid)
    }

    /// `alloc_page(gfp)`.
    #[inline]
    pub fn alloc_page(&self, gfp: Gfp) -> Result<PageRef<'_>, AllocError> {
        self.alloc_pages(gfp, Order::ZERO)
    }

    /// `__get_free_pages(gfp, order)`: the direct-map address of a new block. `__GFP_HIGHMEM`
    /// is ignored, as Linux strips it, since a HighMem page has no address.
    pub fn __get_free_pages(&self, gfp: Gfp, order: Order) -> Result<VirtAddr, AllocError> {
        let gfp = gfp.without(Gfp::HIGHMEM);
        let page = self.alloc_pages(gfp, order)?;
        self.page_address(page).ok_or(AllocError { gfp, order: order.as_u32(), kind: AllocErrorKind::NotDirectMapped })
    }

    /// `__get_free_page(gfp)`.
    pub fn __get_free_page(&self, gfp: Gfp) -> Result<VirtAddr, AllocError> {
        self.__get_free_pages(gfp, Order::ZERO)
    }

    /// `get_zeroed_page(gfp)`.
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<VirtAddr, AllocError> {
        self.__get_free_pages(gfp | Gfp::ZERO, Order::ZERO)
    }

    /// `__get_dma_pages(gfp, order)`: from ZONE_DMA.
    pub fn __get_dma_pages(&self, gfp: Gfp, order: Order) -> Result<VirtAddr, AllocError> {
        self.__get_free_pages(gfp | Gfp::DMA, order)
    }

    /// `alloc_pages_bulk(gfp, nr, array)`: fills the `None` slots of `out` with order-0 pages and
    /// returns how many slots are now `Some` (Linux returns the populated count). Takes the zone
    /// lock once for as many pages as the first suitable zone can give, then falls back to
    /// single allocations.
    pub fn alloc_pages_bulk<'a>(&'a self, gfp: Gfp, out: &mut [Option<PageRef<'a>>]) -> usize {
        let want = out.iter().filter(|s| s.is_none()).count();
        if want > 0 {
            if let Ok(ac) = self.prepare_alloc(gfp, 0, self.numa_node_id(), true) {
                self.bulk_from_one_zone(gfp, &ac, want, out);
            }
        }
        for slot in out.iter_mut().filter(|s| s.is_none()) {
            match self.alloc_pages(gfp | Gfp::NOWARN, Order::ZERO) {
                Ok(p) => *slot = Some(p),
                Err(_) => break,
            }
        }
        out.iter().filter(|s| s.is_some()).count()
    }

    fn bulk_from_one_zone<'a>(&'a self, gfp: Gfp, ac: &AllocContext<'_>, want: usize, out: &mut [Option<PageRef<'a>>]) {
        let mm = self.memmap();
        for zr in ac.zonelist.as_slice() {
            if zr.zone_type() > ac.highest {
                continue;
            }
            let Some(node) = self.node(zr.node as usize) else { continue };
            let zone = node.zone(zr.zone_type());
            let mark = zone.wmark(Wmark::Low) + want;
            if !self.zone_watermark_fast(zone, Order::ZERO, mark, ac.highest, AllocFlags::WMARK_LOW) {
                continue;
            }
            let g = zone.area.lock(self.platform());
            let mut got = 0;
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                let Some(pfn) = buddy::rmqueue(&g, zone, mm, Order::ZERO, ac.mt, ac.take) else { break };
                *slot = Some(PageRef::new(pfn, mm.pfn_to_page(pfn)));
                got += 1;
            }
            self.count_alloc(zone, &zone.events, ac.preferred_nid, got);
            drop(g);
            for p in out.iter().flatten().filter(|p| p.refcount() == 0) {
                self.prep_new_page(p.pfn(), p.page(), Order::ZERO, gfp);
            }
            return;
        }
    }

    /// `__alloc_pages()`. Never inlined: `alloc_pages` is the fast path and a call to this.
    /// A `__GFP_ZERO` request goes through [`Kmem::alloc_zeroed`].
    #[inline(never)]
    fn alloc_pages_inner(&self, gfp: Gfp, order: u32, nid: usize) -> Result<PageRef<'_>, AllocError> {
        // One test and branch for every other request (the rest of the test out of line).
        if gfp.contains(Gfp::ZERO) {
            return self.alloc_zeroed(gfp, order, nid);
        }
        self.alloc_pages_checked(gfp, order, nid, true)
    }

    /// A `__GFP_ZERO` request. Order 0 (a user page: `GFP_HIGHUSER_MOVABLE | __GFP_ZERO`):
    /// the order-0 fast path, then the clearing `prep_new_page` would do; the full path when
    /// the fast path declines (it decides everything else as the full path does). Out of
    /// line, so that the test for `__GFP_ZERO` is all other requests pay on their way to the
    /// full path, and its inlined copy in `alloc_pages` stays one branch shorter.
    #[inline(never)]
    fn alloc_zeroed(&self, gfp: Gfp, order: u32, nid: usize) -> Result<PageRef<'_>, AllocError> {
        // `nid` 0: the fast path serves the only node of a one-node machine (`page_fast_ok`).
        if order == 0 && nid == 0 {
            if let Some((p, zeroed)) = self.alloc_page_fast_zeroed(gfp.without(Gfp::ZERO), Order::ZERO) {
                if !zeroed {
                    self.clear_pages(p.pfn(), Order::ZERO);
                }
                return Ok(p);
            }
        }
        self.alloc_pages_checked(gfp, order, nid, true)
    }

    /// [`Kmem::alloc_pages_checked`] with the order-0 fast path first, as `alloc_pages` has it
    /// (the slab allocator's pages: every new slab of an order-0 cache).
    #[inline]
    pub(crate) fn alloc_pages_fast_checked(
        &self,
        gfp: Gfp,
        order: u32,
        nid: usize,
        might_sleep: bool,
    ) -> Result<PageRef<'_>, AllocError> {
        if order == 0 && nid == 0 {
            if let Some(p) = self.alloc_page_fast(gfp, Order::ZERO) {
                return Ok(p);
            }
        }
        self.alloc_pages_checked(gfp, order, nid, might_sleep)
    }

    /// `__alloc_pages()` for callers that made the `might_alloc` check themselves (the slab
    /// allocator, whose `slab_pre_alloc_hook` already reported a sleeping request in atomic
    /// context): `might_sleep` false skips it, so one bad call makes one report.
    pub(crate) fn alloc_pages_checked(
        &self,
        gfp: Gfp,
        order: u32,
        nid: usize,
        might_sleep: bool,
    ) -> Result<PageRef<'_>, AllocError> {
        let gfp = self.page_alloc_gfp(gfp);
        if self.node(nid).is_none() {
            return Err(AllocError { gfp, order, kind: AllocErrorKind::NoSuchNode(nid) });
        }
        let ac = self.prepare_alloc(gfp, order, nid, might_sleep)?;
        let ord = Order::new(order).expect("checked by prepare_alloc");
        if let Some(p) = self.get_page_from_freelist(gfp, ord, AllocFlags::WMARK_LOW, &ac) {
            return Ok(p);
        }
        match self.alloc_slowpath(gfp, ord, &ac) {
            Some(p) => Ok(p),
            None => {
                self.state().events.alloc_fail.fetch_add(1, Ordering::Relaxed);
                if !gfp.contains(Gfp::NOWARN) {
                    self.warn_alloc(gfp, order);
                }
                Err(AllocError { gfp, order, kind: AllocErrorKind::NoMemory })
            }
        }
    }

    /// `prepare_alloc_pages()`: validate, pick the zonelist, highest zone and migratetype.
    fn prepare_alloc(
        &self,
        gfp: Gfp,
        order: u32,
        nid: usize,
        might_sleep: bool,
    ) -> Result<AllocContext<'_>, AllocError> {
        let err = |kind| AllocError { gfp, order, kind };
        if Order::new(order).is_none() {
            if !gfp.contains(Gfp::NOWARN) {
                self.warn_on("__alloc_pages", &|w| write!(w, "order {order} > MAX_PAGE_ORDER ({})", Order::MAX));
            }
            return Err(err(AllocErrorKind::OrderTooLarge));
        }
        let gz = match gfp.zone() {
            Ok(z) => z,
            Err(bad) => {
                self.warn_on("gfp_zone", &|w| write!(w, "{bad}"));
                return Err(err(AllocErrorKind::BadZoneModifiers));
            }
        };
        if might_sleep {
            self.might_alloc(gfp);
        }
        if self.should_fail_alloc_page(gfp, order) {
            return Err(err(AllocErrorKind::FaultInjected));
        }
        let node = self.node(nid).ok_or(err(AllocErrorKind::NoSuchNode(nid)))?;
        let zonelist = if gfp.contains(Gfp::THISNODE) { node.zonelist_thisnode() } else { node.zonelist() };
        let mt = if self.state().grouping_disabled { Migratetype::Unmovable } else { gfp.migratetype() };
        Ok(AllocContext {
            zonelist,
            highest: self.highest_zone(gz),
            mt,
            preferred_nid: nid,
            take: Take { cold: gfp.contains(Gfp::COLD), grouping_disabled: self.state().grouping_disabled },
        })
    }

    /// `gfp_zone()` mapped onto the zones this architecture has (`OPT_ZONE_DMA32` and friends).
    fn highest_zone(&self, gz: GfpZone) -> ZoneType {
        let want = gz.zone_type();
        let layout = self.layout();
        if layout.has(want) {
            want
        } else {
            ZoneType::Normal
        }
    }

    /// `get_page_from_freelist()`. Always inlined: as a function of its own, its frame cost
    /// every order above 0 about 40 instructions a pair (measured: order 3, 637 -> 598).
    #[inline(always)]
    fn get_page_from_freelist(
        &self,
        gfp: Gfp,
        order: Order,
        flags: AllocFlags,
        ac: &AllocContext<'_>,
    ) -> Option<PageRef<'_>> {
        for zr in ac.zonelist.as_slice() {
            if zr.zone_type() > ac.highest {
                continue;
            }
            let zone = self.node(zr.node as usize)?.zone(zr.zone_type());
            if !flags.contains(AllocFlags::NO_WATERMARKS) {
                let mark = zone.wmark(match flags.wmark_index() {
                    0 => Wmark::Min,
                    1 => Wmark::Low,
                    _ => Wmark::High,
                });
                if !self.zone_watermark_fast(zone, order, mark, ac.highest, flags) {
                    continue;
                }
            }
            let buddy = || self.rmqueue_buddy(zone, order, flags, ac).map(|pfn| (pfn, self.memmap().pfn_to_page(pfn)));
            // `rmqueue()`: the per-CPU lists first; the buddy lists after them only for a
            // request that may reach the highatomic reserve there (the lists' refill already
            // tried the rest).
            let got = if pcp_allowed_order(order) && self.pcp_enabled() {
                self.rmqueue_pcplist(zone, order, ac.mt, ac.take, ac.preferred_nid).or_else(|| {
                    if flags.intersects(AllocFlags::HIGHATOMIC.union(AllocFlags::OOM).union(AllocFlags::NON_BLOCK)) {
                        buddy()
                    } else {
                        None
                    }
                })
            } else {
                buddy()
            };
            if let Some((pfn, page)) = got {
                let page = self.prep_new_page(pfn, page, order, gfp);
                if flags.contains(AllocFlags::HIGHATOMIC) {
                    self.reserve_highatomic_pageblock(zone, pfn, order);
                }
                return Some(page);
            }
        }
        None
    }

    /// `rmqueue_buddy()`: one block straight from the zone's free lists. `ALLOC_HIGHATOMIC`
    /// tries the highatomic reserve first; `ALLOC_OOM` and `ALLOC_NON_BLOCK` fall back to it
    /// when everything else failed (failing now is worse than failing a high-order atomic
    /// request later). No other request ever takes its pages.
    #[inline(never)]
    fn rmqueue_buddy(&self, zone: &Zone, order: Order, flags: AllocFlags, ac: &AllocContext<'_>) -> Option<Pfn> {
        let g = zone.area.lock(self.platform());
        let mm = self.memmap();
        let highatomic = |g: &_| buddy::rmqueue_smallest(g, zone, mm, order, Migratetype::HighAtomic, ac.take);
        let pfn = flags
            .contains(AllocFlags::HIGHATOMIC)
            .then(|| highatomic(&g))
            .flatten()
            .or_else(|| buddy::rmqueue(&g, zone, mm, order, ac.mt, ac.take))
            .or_else(|| {
                if flags.intersects(AllocFlags::OOM.union(AllocFlags::NON_BLOCK)) {
                    highatomic(&g)
                } else {
                    None
                }
            });
        if pfn.is_some() {
            self.count_alloc(zone, &zone.events, ac.preferred_nid, order.nr_pages());
        }
        pfn
    }

    /// Drains the per-CPU lists back to the buddy and tries once more, if any held pages
    /// (the allocator's last resort before failing): every CPU's from a context that may
    /// sleep, only this CPU's from an atomic one (draining others runs as each of them).
    fn drain_then_try(&self, gfp: Gfp, order: Order, flags: AllocFlags, ac: &AllocContext<'_>) -> Option<PageRef<'_>> {
        if self.zones().all(|z| z.pcp_pages() == 0) {
            return None;
        }
        if self.platform().atomic_context() {
            self.drain_local_pages();
        } else {
            self.drain_all_pages();
        }
        self.get_page_from_freelist(gfp, order, flags, ac)
    }

    /// `zone_watermark_fast()`.
    #[inline]
    fn zone_watermark_fast(
        &self,
        zone: &Zone,
        order: Order,
        mark: usize,
        highest: ZoneType,
        flags: AllocFlags,
    ) -> bool {
        let free = zone.free_pages();
        let reserve = zone.lowmem_reserve(highest);
        if order == Order::ZERO {
            // A free highatomic reserve is not usable without ALLOC_RESERVES.
            let unusable = if flags.intersects(AllocFlags::RESERVES) { 0 } else { zone.area.nr_free_highatomic() };
            if free.saturating_sub(unusable) > mark + reserve {
                return true;
            }
        }
        Self::watermark_slow(zone, free, order, mark, reserve, flags)
    }

    /// `__zone_watermark_ok()` for what the order-0 shortcut does not settle.
    #[inline(never)]
    fn watermark_slow(zone: &Zone, free: usize, order: Order, mark: usize, reserve: usize, flags: AllocFlags) -> bool {
        let area = &zone.area;
        watermark_ok(free, order, mark, reserve, flags, area.nr_free_highatomic(), |o, h| area.has_block(o, h))
    }

    /// `prep_new_page()`: refcount, allocation order, `__GFP_ZERO` (unless the block reads
    /// as zero already: [`pg::ZEROED`]), `__GFP_COMP`.
    #[inline]
    pub(crate) fn prep_new_page<'a>(&'a self, pfn: Pfn, head: &'a Page, order: Order, gfp: Gfp) -> PageRef<'a> {
        let mm = self.memmap();
        debug_assert_eq!(head.state_flags() & pg::CHECK_AT_FREE, 0, "new page {pfn:?} has bad flags");
        head.set_private(0);
        head.set_data(0);
        let zeroed = head.test(pg::ZEROED);
        head.clear_exclusive(pg::REPORTED);
        // Forgets ZEROED too: the block is its owner's to write from now on.
        head.set_alloc_order(Some(order.as_u32() as u8));
        if gfp.contains(Gfp::ZERO) && !zeroed {
            self.clear_pages(pfn, order);
        }
        if order != Order::ZERO && gfp.contains(Gfp::COMP) {
            head.set_exclusive(pg::HEAD);
            for (i, tail) in mm.block_pages(pfn, order).iter().enumerate().skip(1) {
                tail.set_exclusive(pg::TAIL);
                // Linux's `compound_head` is in the tail's `lru.next`: the distance goes in
                // the link word (a tail is on no list), `private` is the tail's own (a slab's
                // word, `Page::slab_word_any`), 0 until then.
                tail.set_next(i as u32);
                tail.set_private(0);
            }
        }
        head.set_refcount(1);
        PageRef::new(pfn, head)
    }

    /// `might_alloc()`: a sleeping allocation from atomic context is reported (and, as in
    /// Linux, goes ahead).
    fn might_alloc(&self, gfp: Gfp) {
        if gfp.allows_blocking() && self.platform().atomic_context() {
            self.might_sleep_report("mm/page_alloc.c");
        }
    }

    /// The `might_sleep()` report: Linux's `BUG: sleeping function called from invalid
    /// context at <file>` with the context lines. Counted; the caller goes ahead.
    #[cold]
    pub(crate) fn might_sleep_report(&self, file: &str) {
        let p = self.platform();
        {
            let task = p.current_task();
            let (atomic, irqs, pc) = (p.in_atomic() as u8, p.irqs_disabled() as u8, p.preempt_count());
            self.report(ReportKind::SleepInAtomic, &|w| {
                writeln!(w, "BUG: sleeping function called from invalid context at {file}")?;
                writeln!(
                    w,
                    "in_atomic(): {atomic}, irqs_disabled(): {irqs}, non_block: 0, pid: {}, name: {}",
                    task.pid,
                    task.comm()
                )?;
                writeln!(w, "preempt_count: {pc:x}, expected: 0")?;
                writeln!(w, "RCU nest depth: 0, expected: 0")
            });
        }
    }

    /// A `WARNING:` report in Linux's shape.
    pub(crate) fn warn_on(&self, func: &str, what: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        self.report(ReportKind::Warning, &|w| {
            write!(w, "WARNING: CPU: {cpu} PID: {} at mm/page_alloc.c {func}: ", task.pid)?;
            what(w)?;
            writeln!(w)
        });
    }

    /// `page_address()`: the direct-map address of a page; for HighMem, its `kmap` address
    /// while it is kmapped (found through the page-address hash), else `None`.
    #[inline]
    pub fn page_address(&self, page: PageRef<'_>) -> Option<VirtAddr> {
        match self.phys_to_virt(page.pfn().phys()) {
            Some(va) => Some(va),
            None => self.pkmap_address(page.pfn()),
        }
    }

    /// `pfn_valid()`: the frame has an initialised descriptor (false with no section, and for
    /// a chunk whose initialisation is still deferred).
    #[inline]
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        self.memmap().pfn_valid(pfn)
    }

    /// `pfn_to_page()`: `None` if the frame has no initialised descriptor (`!pfn_valid`: no
    /// section, or a chunk whose initialisation is still deferred).
    #[inline]
    pub fn pfn_to_page(&self, pfn: Pfn) -> Option<PageRef<'_>> {
        self.memmap().valid_page(pfn).map(|p| PageRef::new(pfn, p))
    }

    /// `get_pfnblock_migratetype()`: the migratetype of the pageblock holding `pfn` (what
    /// `/proc/pagetypeinfo` counts).
    pub fn pageblock_migratetype(&self, pfn: Pfn) -> Migratetype {
        self.memmap().pageblock_migratetype(pfn)
    }

    /// `page_to_pfn()`.
    #[inline]
    pub fn page_to_pfn(&self, page: PageRef<'_>) -> Pfn {
        page.pfn()
    }

    /// `virt_to_page()`: the page of a direct-map address.
    #[inline]
    pub fn virt_to_page(&self, addr: VirtAddr) -> Option<PageRef<'_>> {
        self.pfn_to_page(self.virt_to_phys(addr)?.pfn())
    }

    /// `compound_head()`: the head of a compound page, or the page itself.
    pub fn compound_head<'a>(&'a self, page: PageRef<'a>) -> PageRef<'a> {
        if page.is_tail() {
            let head = page.pfn().sub(page.page().tail_back() as usize);
            self.pfn_to_page(head).unwrap_or(page)
        } else {
            page
        }
    }

    /// `compound_order()`: the order of a compound page (0 otherwise).
    pub fn compound_order(&self, page: PageRef<'_>) -> u32 {
        let head = self.compound_head(page);
        if head.is_head() {
            head.page().alloc_order().unwrap_or(0) as u32
        } else {
            0
        }
    }
}
