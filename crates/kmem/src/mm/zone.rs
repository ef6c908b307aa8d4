//! A zone: a range of page frames of one [`ZoneType`] on one node, with its buddy free lists,
//! watermarks and counters.

#![forbid(unsafe_code)]

use crate::addr::Pfn;
use crate::boot::pagesets::Pagesets;
use crate::mm::free_area::FreeArea;
use crate::mm::pcp::PerCpuPages;
use crate::mm::zone_type::{ZoneType, MAX_NR_ZONES};
use crate::sync::{
    array_of, const_fn_unless_loom, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// Watermark indices (`enum zone_watermarks`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Wmark {
    /// Below this only reserve-entitled allocations succeed.
    Min = 0,
    /// kswapd is woken below this; the fast path allocates down to here.
    Low = 1,
    /// kswapd sleeps again above this.
    High = 2,
    /// Memory-tiering promotion threshold (printed, unused).
    Promo = 3,
}

/// Adds to an event counter that only the zone-lock holder writes (no locked instruction).
#[inline]
pub(crate) fn bump_locked(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Per-zone event counters (the zone's share of `/proc/vmstat` and zoneinfo's numa lines).
/// All but `numa_foreign` are written under the zone lock.
#[derive(Debug, Default)]
pub struct ZoneEvents {
    /// Pages allocated from this zone (`pgalloc_<zone>`).
    pub pgalloc: AtomicU64,
    /// Pages freed to this zone (`pgfree`).
    pub pgfree: AtomicU64,
    /// Allocations served on the preferred node.
    pub numa_hit: AtomicU64,
    /// Allocations that wanted another node but got this one.
    pub numa_miss: AtomicU64,
    /// Allocations that wanted this node but were served elsewhere.
    pub numa_foreign: AtomicU64,
    /// Allocations by a CPU of this node served here.
    pub numa_local: AtomicU64,
    /// Allocations by a CPU of another node served here.
    pub numa_other: AtomicU64,
}

/// One zone (`struct zone`).
#[derive(Debug)]
pub struct Zone {
    /// Free lists and the zone lock.
    pub(crate) area: FreeArea,
    ztype: ZoneType,
    node: u8,
    start_pfn: AtomicUsize,
    spanned: AtomicUsize,
    present: AtomicUsize,
    managed: AtomicUsize,
    /// Free frames whose descriptors are not initialised yet (`boot/deferred.rs`). 32 bits
    /// (frame numbers are): it fits beside the two byte fields, so `Zone` and `Node` keep their
    /// sizes and boot's carving its layout.
    deferred: AtomicU32,
    /// `__GFP_NOFAIL` allocations sleeping until this zone gets pages back
    /// (`reclaim/nofail.rs`); the free paths that reach the buddy lists wake them. 16 bits:
    /// it fits in the padding beside `deferred`, so `Zone` keeps its size.
    pub(crate) nofail_waiters: AtomicU16,
    wmark: [AtomicUsize; 4],
    /// `lowmem_reserve[]`, in pages (32 bits, as frame numbers are: with `fast_mark` beside
    /// it, `Zone` keeps the size it had with 64-bit reserves, and boot's carving its layout).
    lowmem_reserve: [AtomicU32; MAX_NR_ZONES],
    /// The order-0 fast path's mark for requests whose highest zone is `h`:
    /// `wmark[Low] + lowmem_reserve[h] + nr_reserved_highatomic`, saturated to 32 bits, and
    /// `u32::MAX` (no request passes) for an `h` below this zone, which such requests may
    /// not use. Kept current by every writer of its terms ([`Zone::refresh_fast_marks`]), so
    /// the fast path tests the zone and the free count with one load and one compare, where
    /// Linux's `zone_watermark_fast` adds three terms after the zonelist's zone test
    /// (measured: 6 instructions off every fast order-0 allocation).
    fast_mark: [AtomicU32; MAX_NR_ZONES],
    free_pages: AtomicIsize,
    /// Event counters of the buddy path (the per-CPU path counts in each pageset).
    pub events: ZoneEvents,
    pagesets: Pagesets,
}

/// Totals of a zone's event counters over the zone and its pagesets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Pages allocated.
    pub pgalloc: u64,
    /// Pages freed.
    pub pgfree: u64,
    /// See [`ZoneEvents::numa_hit`].
    pub numa_hit: u64,
    /// See [`ZoneEvents::numa_miss`].
    pub numa_miss: u64,
    /// See [`ZoneEvents::numa_foreign`].
    pub numa_foreign: u64,
    /// See [`ZoneEvents::numa_local`].
    pub numa_local: u64,
    /// See [`ZoneEvents::numa_other`].
    pub numa_other: u64,
}

impl ZoneEvents {
    const_fn_unless_loom! {
        /// All zero.
        pub fn new() -> Self {
            Self {
                pgalloc: AtomicU64::new(0),
                pgfree: AtomicU64::new(0),
                numa_hit: AtomicU64::new(0),
                numa_miss: AtomicU64::new(0),
                numa_foreign: AtomicU64::new(0),
                numa_local: AtomicU64::new(0),
                numa_other: AtomicU64::new(0),
            }
        }
    }
    pub(crate) fn add_to(&self, t: &mut EventCounts) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        t.pgalloc += r(&self.pgalloc);
        t.pgfree += r(&self.pgfree);
        t.numa_hit += r(&self.numa_hit);
        t.numa_miss += r(&self.numa_miss);
        t.numa_foreign += r(&self.numa_foreign);
        t.numa_local += r(&self.numa_local);
        t.numa_other += r(&self.numa_other);
    }
}

impl Zone {
    const_fn_unless_loom! {
        /// An empty zone (nothing spanned).
        pub fn new(ztype: ZoneType, node: u8) -> Self {
            Self {
                area: FreeArea::new(),
                ztype,
                node,
                start_pfn: AtomicUsize::new(0),
                spanned: AtomicUsize::new(0),
                present: AtomicUsize::new(0),
                managed: AtomicUsize::new(0),
                deferred: AtomicU32::new(0),
                nofail_waiters: AtomicU16::new(0),
                wmark: array_of![AtomicUsize::new(0); 4],
                lowmem_reserve: array_of![AtomicU32::new(0); MAX_NR_ZONES],
                // No fast allocation before the watermarks are set.
                fast_mark: array_of![AtomicU32::new(u32::MAX); MAX_NR_ZONES],
                free_pages: AtomicIsize::new(0),
                events: ZoneEvents::new(),
                pagesets: Pagesets::new(),
            }
        }
    }

    /// The zone's type.
    pub fn zone_type(&self) -> ZoneType {
        self.ztype
    }
    /// The zone's node.
    pub fn node(&self) -> usize {
        self.node as usize
    }
    /// Linux's zone name.
    pub fn name(&self) -> &'static str {
        self.ztype.name()
    }
    /// First frame spanned.
    #[inline]
    pub fn start_pfn(&self) -> Pfn {
        Pfn::new(self.start_pfn.load(Ordering::Relaxed))
    }
    /// One past the last frame spanned.
    #[inline]
    pub fn end_pfn(&self) -> Pfn {
        self.start_pfn().add(self.spanned_pages())
    }
    /// Frames between start and end, holes included.
    pub fn spanned_pages(&self) -> usize {
        self.spanned.load(Ordering::Relaxed)
    }
    /// Frames with RAM behind them.
    pub fn present_pages(&self) -> usize {
        self.present.load(Ordering::Relaxed)
    }
    /// Frames handed to the buddy allocator (present minus boot reservations).
    pub fn managed_pages(&self) -> usize {
        self.managed.load(Ordering::Relaxed)
    }
    /// Free frames of the zone whose descriptors are not initialised yet (deferred struct-page
    /// init): counted in `present`, not yet in `managed` or the free pages.
    pub fn deferred_pages(&self) -> usize {
        self.deferred.load(Ordering::Relaxed) as usize
    }
    /// True if the zone has RAM (`populated_zone`).
    pub fn is_populated(&self) -> bool {
        self.present_pages() != 0
    }
    /// True if the zone manages pages (`managed_zone`).
    pub fn is_managed(&self) -> bool {
        self.managed_pages() != 0
    }
    /// True if `pfn` lies in the zone's span.
    #[inline]
    pub fn spans(&self, pfn: Pfn) -> bool {
        pfn >= self.start_pfn() && pfn < self.end_pfn()
    }
    /// A watermark in pages.
    #[inline]
    pub fn wmark(&self, w: Wmark) -> usize {
        self.wmark[w as usize].load(Ordering::Relaxed)
    }
    /// `lowmem_reserve[highest]`: pages kept back from allocations that could use `highest`.
    #[inline]
    pub fn lowmem_reserve(&self, highest: ZoneType) -> usize {
        self.lowmem_reserve[highest.index()].load(Ordering::Relaxed) as usize
    }
    /// The order-0 fast path's mark for a request whose highest zone is `highest`: the low
    /// watermark, `highest`'s lowmem reserve and the highatomic reserve, summed (the test of
    /// `zone_watermark_fast` for order 0 without `ALLOC_HIGHATOMIC`); `u32::MAX` if
    /// `highest` is below this zone (the request may not use it).
    #[inline(always)]
    pub(crate) fn fast_mark(&self, highest: ZoneType) -> usize {
        self.fast_mark[highest.index()].load(Ordering::Relaxed) as usize
    }
    /// Recomputes every [`Zone::fast_mark`] from its terms. Called by each writer of a term,
    /// after its write; a racing reader sees the old or the new sum, as it would have seen
    /// the old or the new term.
    fn refresh_fast_marks(&self) {
        let base = self.wmark(Wmark::Low).saturating_add(self.nr_reserved_highatomic());
        for (h, slot) in self.fast_mark.iter().enumerate() {
            let reserve = self.lowmem_reserve[h].load(Ordering::Relaxed) as usize;
            let mark = if h < self.ztype.index() { usize::MAX } else { base.saturating_add(reserve) };
            slot.store(u32::try_from(mark).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
    }
    /// Adds `delta` pages to the highatomic reserve's size (the zone lock's holder only).
    pub(crate) fn mod_reserved_highatomic<P: crate::platform::Platform>(
        &self,
        g: &crate::sync::SpinGuard<'_, P>,
        delta: isize,
    ) {
        self.area.mod_reserved_highatomic(g, delta);
        self.refresh_fast_marks();
    }
    /// Free blocks of `order` on the zone's buddy lists, all migratetypes
    /// (`free_area[order].nr_free`; lock-free, may be stale).
    pub fn nr_free(&self, order: crate::addr::Order) -> usize {
        self.area.nr_free(order)
    }
    /// Free blocks of `order` on the `mt` list (`/proc/pagetypeinfo`; lock-free, may be
    /// stale).
    pub fn nr_free_mt(&self, order: crate::addr::Order, mt: crate::mm::zone_type::Migratetype) -> usize {
        self.area.nr_free_mt(order, mt)
    }
    /// Pages in pageblocks reserved for high-order atomic allocations
    /// (`nr_reserved_highatomic`; `mm/page_alloc/highatomic.rs`).
    pub fn nr_reserved_highatomic(&self) -> usize {
        self.area.nr_reserved_highatomic()
    }
    /// Free pages of the highatomic reserve (`nr_free_highatomic`).
    pub fn nr_free_highatomic(&self) -> usize {
        self.area.nr_free_highatomic()
    }
    /// Free pages in the buddy lists (`NR_FREE_PAGES`).
    #[inline]
    pub fn free_pages(&self) -> usize {
        self.free_pages.load(Ordering::Relaxed).max(0) as usize
    }
    /// `NR_FREE_PAGES` as the signed counter it is (a compare against a mark needs no clamp).
    #[inline]
    pub(crate) fn free_pages_signed(&self) -> isize {
        self.free_pages.load(Ordering::Relaxed)
    }
    /// Adjusts the free-page counter. Only the zone-lock holder writes it, so this is a plain
    /// load and store; readers never take the lock.
    #[inline]
    pub(crate) fn mod_free_pages(&self, delta: isize) {
        self.free_pages.store(self.free_pages.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }

    /// CPU `cpu`'s pageset of this zone, if the zone has pagesets.
    #[inline]
    pub fn pageset(&self, cpu: usize) -> Option<&PerCpuPages> {
        self.pagesets.get(cpu)
    }

    /// The zone's pagesets (boot installs them).
    pub(crate) fn pagesets(&self) -> &Pagesets {
        &self.pagesets
    }

    /// Pages on all CPUs' lists of this zone (`free_pcp`).
    pub fn pcp_pages(&self) -> usize {
        (0..self.pagesets.len()).filter_map(|c| self.pageset(c)).map(PerCpuPages::count).sum()
    }

    /// Event totals over the buddy path and every CPU's pageset.
    pub fn event_counts(&self) -> EventCounts {
        let mut t = EventCounts::default();
        self.events.add_to(&mut t);
        for c in 0..self.pagesets.len() {
            if let Some(p) = self.pageset(c) {
                p.add_events_to(&mut t);
            }
        }
        t
    }

    pub(crate) fn set_span(&self, start: Pfn, end: Pfn) {
        self.start_pfn.store(start.as_usize(), Ordering::Relaxed);
        self.spanned.store(end.as_usize() - start.as_usize(), Ordering::Relaxed);
    }
    pub(crate) fn add_present(&self, pages: usize) {
        self.present.fetch_add(pages, Ordering::Relaxed);
    }
    pub(crate) fn add_managed(&self, pages: usize) {
        self.managed.fetch_add(pages, Ordering::Relaxed);
    }
    pub(crate) fn add_deferred(&self, pages: usize) {
        self.deferred.fetch_add(pages as u32, Ordering::Relaxed);
    }
    pub(crate) fn sub_deferred(&self, pages: usize) {
        self.deferred.fetch_sub(pages as u32, Ordering::Relaxed);
    }
    pub(crate) fn set_wmarks(&self, w: [usize; 4]) {
        for (slot, v) in self.wmark.iter().zip(w) {
            slot.store(v, Ordering::Relaxed);
        }
        self.refresh_fast_marks();
    }
    pub(crate) fn set_lowmem_reserve(&self, r: [usize; MAX_NR_ZONES]) {
        for (slot, v) in self.lowmem_reserve.iter().zip(r) {
            slot.store(u32::try_from(v).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
        self.refresh_fast_marks();
    }
}

impl Zone {
    /// Pages just went back to this zone's buddy lists (the zone lock is released): wakes
    /// the `__GFP_NOFAIL` sleepers waiting for it. A fence and a load when nobody waits; the
    /// per-CPU fast path never calls it (a sleeper lowers the lists' `high` so frees reach
    /// the buddy lists).
    #[inline]
    pub(crate) fn wake_nofail_waiters<P: crate::platform::Platform>(&self, p: &P) {
        if self.has_nofail_waiters() {
            p.wake_free_memory_waiters();
        }
    }

    /// Whether a `__GFP_NOFAIL` sleeper may wait for this zone's pages, asked after pages
    /// went back to the buddy lists (the free side of `reclaim/nofail.rs`'s protocol; its
    /// loom model is `reclaim/loom_tests.rs`).
    #[inline]
    pub(crate) fn has_nofail_waiters(&self) -> bool {
        // Pairs with the sleeper's fence between counting itself and checking the free
        // pages: either it sees these pages, or this load sees it.
        crate::sync::fence(Ordering::SeqCst);
        self.nofail_waiters.load(Ordering::Relaxed) != 0
    }
}
