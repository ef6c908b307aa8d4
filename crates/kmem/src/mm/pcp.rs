//! Per-CPU page lists (`struct per_cpu_pages`): each CPU keeps a few free pages of each
//! low order (0..=3) and of pageblock order per zone, so the common allocation and free take
//! no zone lock and do no splitting or merging.
//!
//! Protocol: a CPU's pagesets belong to the CPU. The allocation and free paths pin it
//! ([`Platform::pin_cpu`], Linux's `local_lock_irqsave` before 5.19) and use its lists with no
//! lock and no atomic read-modify-write. An empty list is refilled with `batch` blocks in one
//! zone-lock section (`rmqueue_bulk`); a free that pushes `count` to `high` returns the
//! coldest blocks to the buddy in one zone-lock section (`free_pcppages_bulk`). Another CPU's
//! lists are drained by running as that CPU ([`Platform::run_on_cpu`], Linux's
//! `drain_all_pages` queues work on each CPU), which the allocator does before failing a
//! request that may sleep; an atomic request drains only its own CPU's lists.
//!
//! The protocol lives in [`PerCpuPages`]'s methods, which reach the buddy allocator only
//! through `PcpBuddy`: the allocator passes its zone (`ZoneBuddy`), and the loom models
//! (`pcp/loom_tests.rs`, `scripts/loom.sh`) run the same methods against a small zone.
//! The allocator's entry points (`Kmem::rmqueue_pcplist`, the order-0 fast paths,
//! `free_unref_page`, the drains) are in `pcp/paths.rs`.
//!
//! Lock order: the pinned CPU, then the zone lock. Pages on a per-CPU list carry the PCP page type
//! (`Page::is_pcp`) with their order and migratetype; they count as free in MemFree but not
//! in buddyinfo or the zone's free counter (which the watermarks check), as in Linux.
//!
//! Sizes: `batch` and `high` use Linux's `zone_batchsize`/`zone_highsize`; `high` stays at
//! `high_min` (no auto-tuning, which Linux 6.7+ does between `high_min` and `high_max`). The
//! pagesets are carved at boot, one array per zone (`boot/pagesets.rs`). Events are counted
//! per CPU, so the fast path makes no shared write. `Kmem::set_pcp_enabled(false)` bypasses
//! the lists (every call then takes the zone lock).

#![forbid(unsafe_code)]

mod list;
mod paths;

use list::PcpList;

use crate::addr::{Order, Pfn, PAGEBLOCK_ORDER, PAGE_ALLOC_COSTLY_ORDER};
use crate::mm::buddy::{self, Take};
use crate::mm::memmap::Memmap;
use crate::mm::page::Page;
use crate::mm::pfn_list::PageLookup;
use crate::mm::zone::{bump_locked, EventCounts, Zone, ZoneEvents};
use crate::mm::zone_type::{Migratetype, MIGRATE_PCPTYPES};
use crate::platform::Platform;
use crate::sync::{array_of, const_fn_unless_loom, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Lists for orders 0..=PAGE_ALLOC_COSTLY_ORDER, one per ordinary migratetype.
pub const NR_LOWORDER_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER as usize + 1);
/// All lists: the low orders plus one for pageblock-order blocks (Linux's THP list).
pub const NR_PCP_LISTS: usize = NR_LOWORDER_PCP_LISTS + 1;
/// `MIN_PERCPU_PAGELIST_HIGH_FRACTION`: `high_max` is a zone's managed pages over this.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: usize = 8;

/// True for the orders that go through per-CPU lists (`pcp_allowed_order`).
#[inline]
pub fn pcp_allowed_order(order: Order) -> bool {
    order.as_u32() <= PAGE_ALLOC_COSTLY_ORDER as u32 || order.as_u32() == PAGEBLOCK_ORDER as u32
}

/// `order_to_pindex()`.
#[inline]
fn order_to_pindex(mt: Migratetype, order: Order) -> usize {
    if order.as_u32() > PAGE_ALLOC_COSTLY_ORDER as u32 {
        NR_LOWORDER_PCP_LISTS
    } else {
        MIGRATE_PCPTYPES * order.index() + mt.index()
    }
}

/// The order of the blocks on list `pindex` (the inverse of [`order_to_pindex`]'s order).
#[inline]
fn pindex_order(pindex: usize) -> u32 {
    if pindex == NR_LOWORDER_PCP_LISTS {
        PAGEBLOCK_ORDER as u32
    } else {
        (pindex / MIGRATE_PCPTYPES) as u32
    }
}

/// `zone_batchsize()`: about a quarter of a MiB of pages, as `2^n - 1`; 63 for zones of a GiB.
pub fn zone_batchsize(managed: usize) -> usize {
    let b = (managed >> 10).min((1 << 20) / crate::addr::PAGE_SIZE) / 4;
    let b = b.max(1);
    let v = b + b / 2;
    (1usize << (usize::BITS - 1 - v.leading_zeros())) - 1
}

/// `zone_highsize()`: `total / cpus_of_node`, at least `4 * batch`, where `total` is the low
/// watermark (`fraction` 0) or `managed / fraction`.
pub fn zone_highsize(low_wmark: usize, managed: usize, batch: usize, cpus_of_node: usize, fraction: usize) -> usize {
    let total = managed.checked_div(fraction).unwrap_or(low_wmark);
    (total / cpus_of_node.max(1)).max(batch << 2)
}

/// One CPU's lists for one zone. Only its CPU changes them (pinned, or run as by another).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct PerCpuPages {
    count: AtomicUsize,
    high: AtomicUsize,
    high_min: AtomicUsize,
    high_max: AtomicUsize,
    batch: AtomicUsize,
    lists: [PcpList; NR_PCP_LISTS],
    /// Allocation and free events counted on this CPU (written by its CPU only).
    pub events: ZoneEvents,
    /// Order-0 pages the one-node fast path allocated (`rmqueue_pcp_fast`): each is a
    /// `pgalloc`, a `numa_hit` and a `numa_local`, counted once here and added to all three
    /// when read ([`PerCpuPages::add_events_to`]): two increments fewer a page.
    local_allocs: AtomicU64,
    /// [`PCP_READY`] once written: [`PerCpuPages::new`] writes it so; a pageset left as
    /// zeroed RAM at boot (a CPU that comes up later) reads 0 until its CPU is prepared
    /// (`Pagesets::prepare`), and no lookup but the pinned CPU's own hands it out before.
    state: AtomicU32,
}

/// [`PerCpuPages`]'s state: zeroed RAM, not yet written (boot left it for its CPU to come up).
pub(crate) const PCP_UNWRITTEN: u32 = 0;
/// [`PerCpuPages`]'s state: being written by the CPU's preparation.
pub(crate) const PCP_WRITING: u32 = 1;
/// [`PerCpuPages`]'s state: written; its lists and sizes are valid.
pub(crate) const PCP_READY: u32 = 2;

impl Default for PerCpuPages {
    fn default() -> Self {
        Self::new()
    }
}

impl PerCpuPages {
    const_fn_unless_loom! {
        /// The boot pageset: `high` 0 and `batch` 1, so nothing stays on the lists.
        pub fn new() -> Self {
            Self {
                count: AtomicUsize::new(0),
                high: AtomicUsize::new(0),
                high_min: AtomicUsize::new(0),
                high_max: AtomicUsize::new(0),
                batch: AtomicUsize::new(1),
                lists: array_of![PcpList::new(); NR_PCP_LISTS],
                events: ZoneEvents::new(),
                local_allocs: AtomicU64::new(0),
                state: AtomicU32::new(PCP_READY),
            }
        }
    }
    /// Whether the pageset is written (not zeroed RAM left for its CPU to come up).
    #[inline]
    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == PCP_READY
    }
    /// Writes a pageset that boot left as zeroed RAM (the CPU comes up): empty lists, the
    /// boot pageset's sizes, then `PCP_READY`. Only one caller writes (a compare-exchange
    /// from [`PCP_UNWRITTEN`]); another waits until it is written. Returns whether this call
    /// wrote it.
    pub(crate) fn write_once(&self) -> bool {
        match self.state.compare_exchange(PCP_UNWRITTEN, PCP_WRITING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // Zeroed RAM: the counters are already 0; the lists' empty mark is not.
                for l in &self.lists {
                    l.clear();
                }
                self.batch.store(1, Ordering::Relaxed);
                self.state.store(PCP_READY, Ordering::SeqCst);
                true
            }
            Err(_) => {
                while !self.is_ready() {
                    crate::sync::spin_loop();
                }
                false
            }
        }
    }
    /// Adds this CPU's events to `t` (the one-node fast path's allocations to `pgalloc`,
    /// `numa_hit` and `numa_local`).
    pub(crate) fn add_events_to(&self, t: &mut EventCounts) {
        self.events.add_to(t);
        let local = self.local_allocs.load(Ordering::Relaxed);
        t.pgalloc += local;
        t.numa_hit += local;
        t.numa_local += local;
    }
    /// Pages on the lists.
    #[inline]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
    /// Free back to the buddy when `count` reaches this.
    #[inline]
    pub fn high(&self) -> usize {
        self.high.load(Ordering::Relaxed)
    }
    /// Blocks moved per refill or drain.
    #[inline]
    pub fn batch(&self) -> usize {
        self.batch.load(Ordering::Relaxed)
    }
    /// Lower bound of `high`.
    pub fn high_min(&self) -> usize {
        self.high_min.load(Ordering::Relaxed)
    }
    /// Upper bound of `high`.
    pub fn high_max(&self) -> usize {
        self.high_max.load(Ordering::Relaxed)
    }
    /// Sets batch and high (`pageset_update`); `high` starts at `high_min`.
    pub(crate) fn update(&self, batch: usize, high_min: usize, high_max: usize) {
        self.batch.store(batch, Ordering::Relaxed);
        self.high_min.store(high_min, Ordering::Relaxed);
        self.high_max.store(high_max, Ordering::Relaxed);
        self.high.store(high_min, Ordering::Relaxed);
    }
    /// `high` 0 while `__GFP_NOFAIL` allocations sleep for memory, so that every free goes
    /// on to the buddy lists where they look (and wakes them); `high_min` again after. Linux
    /// lowers `high` the same way for a zone under reclaim (`ZONE_RECLAIM_ACTIVE`).
    pub(crate) fn set_nofail_sleeping(&self, on: bool) {
        self.high.store(if on { 0 } else { self.high_min() }, Ordering::Relaxed);
    }
    #[inline]
    fn add_count(&self, delta: isize) {
        self.count.store(self.count().wrapping_add_signed(delta), Ordering::Relaxed);
    }
    /// `rmqueue_pcplist()` on the pinned CPU: a block from the `order`/`mt` list (its tail
    /// with `cold`), refilling an empty list with a batch from `buddy` first (`rmqueue_bulk`).
    /// `None`: the buddy has nothing for it either.
    #[inline]
    fn rmqueue_pinned<'m>(
        &self,
        mm: &'m Memmap,
        buddy: &impl PcpBuddy,
        order: Order,
        mt: Migratetype,
        cold: bool,
    ) -> Option<(Pfn, &'m Page)> {
        let list = &self.lists[order_to_pindex(mt, order)];
        if list.is_empty() {
            self.refill(mm, buddy, list, order, mt);
        }
        let (pfn, page) = match (cold, mm.flat()) {
            (false, Some(flat)) => list.pop_first(flat)?,
            (false, None) => list.pop_first(mm)?,
            (true, _) => list.pop_last(mm)?,
        };
        page.clear_buddy();
        self.add_count(-(order.nr_pages() as isize));
        Some((pfn, page))
    }

    /// The order-0 pop of the allocation fast path on the pinned CPU: the hot end of the
    /// `mt` list, or `None` when its hot stack is empty (`pcp/list.rs`: the caller's full
    /// path, [`PerCpuPages::rmqueue_pinned`], refills an empty list or flips the cold stack).
    /// `mm` is the flat view the fast path took once.
    #[inline(always)]
    pub(crate) fn pop_order0<'m>(&self, mm: impl PageLookup<'m>, mt: Migratetype) -> Option<(Pfn, &'m Page)> {
        let (pfn, page) = self.lists[order_to_pindex(mt, Order::ZERO)].pop_hot(mm)?;
        page.clear_buddy();
        self.add_count(-1);
        Some((pfn, page))
    }

    /// The order-0 push of the free fast path on the pinned CPU
    /// ([`PerCpuPages::free_pinned`] without the drain): `true` when the lists reached
    /// `high`, and the caller returns a batch to the buddy ([`PerCpuPages::free_high`]).
    #[inline(always)]
    pub(crate) fn push_order0(&self, pfn: Pfn, page: &Page, mt: Migratetype) -> bool {
        page.set_pcp(0, mt as u32);
        self.lists[order_to_pindex(mt, Order::ZERO)].push_head(pfn, page);
        let count = self.count() + 1;
        self.count.store(count, Ordering::Relaxed);
        bump_locked(&self.events.pgfree, 1);
        count >= self.high()
    }

    /// `rmqueue_bulk()`: an empty list takes `batch` blocks from the buddy.
    #[inline(never)]
    fn refill(&self, mm: &Memmap, buddy: &impl PcpBuddy, list: &PcpList, order: Order, mt: Migratetype) {
        // Descriptors through the flat view when there is one (the mode tested once).
        match mm.flat() {
            Some(flat) => self.refill_in(flat, buddy, list, order, mt),
            None => self.refill_in(mm, buddy, list, order, mt),
        }
    }

    #[inline(always)]
    fn refill_in<'m>(
        &self,
        mm: impl PageLookup<'m>,
        buddy: &impl PcpBuddy,
        list: &PcpList,
        order: Order,
        mt: Migratetype,
    ) {
        let n = if order == Order::ZERO { self.batch() } else { (self.batch() >> order.as_u32()).max(2) };
        buddy.take_bulk(n, order, mt, |pfn| {
            let page = mm.link(pfn.as_usize() as u32);
            page.set_pcp(order.as_u32(), mt as u32);
            list.push_tail(pfn, page);
            self.add_count(order.nr_pages() as isize);
        });
    }

    /// `free_unref_page_commit()` on the pinned CPU: puts a block on its list and, when the
    /// lists reach `high`, returns a batch to `buddy`.
    #[inline(always)]
    fn free_pinned(&self, mm: &Memmap, buddy: &impl PcpBuddy, pfn: Pfn, page: &Page, order: Order, mt: Migratetype) {
        page.set_pcp(order.as_u32(), mt as u32);
        self.lists[order_to_pindex(mt, order)].push_head(pfn, page);
        self.add_count(order.nr_pages() as isize);
        bump_locked(&self.events.pgfree, order.nr_pages() as u64);
        if self.count() >= self.high() {
            self.free_high(mm, buddy);
        }
    }

    /// The lists reached `high`: `nr_pcp_free()` brings `count` back to `high - batch`,
    /// freeing at least a batch (`free_pcppages_bulk`).
    #[inline]
    fn free_high(&self, mm: &Memmap, buddy: &impl PcpBuddy) {
        let (count, high, batch) = (self.count(), self.high(), self.batch());
        let to_free = (count + batch).saturating_sub(high).max(batch).min(count);
        self.free_bulk(mm, buddy, to_free);
    }

    /// `free_pcppages_bulk()` on the pageset's CPU: returns at least `pages` pages from the
    /// cold ends of the lists to `buddy`, in one zone-lock section. As in Linux, a list is
    /// drained until it is empty (or enough went) before the next non-empty one is taken,
    /// round-robin: taking one page per list and moving on cost every page a walk over the
    /// other, usually empty, lists (about 500 instructions a page).
    /// Out of line: once a batch, and the per-CPU free path that would inline it stays small.
    #[inline(never)]
    fn free_bulk(&self, mm: &Memmap, buddy: &impl PcpBuddy, pages: usize) {
        // Descriptors through the flat view when there is one (the mode tested once).
        match mm.flat() {
            Some(flat) => self.free_bulk_in(flat, buddy, pages),
            None => self.free_bulk_in(mm, buddy, pages),
        }
    }

    #[inline(always)]
    fn free_bulk_in<'m>(&self, mm: impl PageLookup<'m>, buddy: &impl PcpBuddy, pages: usize) {
        let (mut freed, mut idx) = (0, 0);
        buddy.give_bulk(|| {
            if freed >= pages || self.count() == 0 {
                return None;
            }
            let mut empty = 0;
            let (pfn, page) = loop {
                if let Some(got) = self.lists[idx].pop_last(mm) {
                    break got;
                }
                idx = if idx + 1 == NR_PCP_LISTS { 0 } else { idx + 1 };
                empty += 1;
                if empty == NR_PCP_LISTS {
                    // A count with every list empty: corrupt. Stop rather than spin with the
                    // zone lock held.
                    debug_assert!(false, "pcp count {} with every list empty", self.count());
                    return None;
                }
            };
            let order = Order::new(page.private() & 0xff).expect("pcp pages record a valid order");
            page.clear_buddy();
            self.add_count(-(order.nr_pages() as isize));
            freed += order.nr_pages();
            Some((pfn, order))
        });
    }

    /// `drain_pages_zone()` for this pageset, on its CPU (pinned, or run as): every page
    /// back to `buddy`.
    fn drain(&self, mm: &Memmap, buddy: &impl PcpBuddy) {
        if self.count() > 0 {
            self.free_bulk(mm, buddy, self.count());
        }
    }
    /// Walks every list; returns the pages found, or the first malformed block.
    pub(crate) fn check(&self, mm: &Memmap) -> Result<usize, Pfn> {
        let mut pages = 0;
        for (i, l) in self.lists.iter().enumerate() {
            let order = pindex_order(i);
            pages += l.walk(mm, self.count(), |_, p, _| p.is_pcp() && p.private() & 0xff == order)? << order;
        }
        Ok(pages)
    }
}

/// The buddy side of the per-CPU protocol: where a pageset refills from and where its frees
/// and drains go. Each call is one zone-lock section, as `rmqueue_bulk` and
/// `free_pcppages_bulk` take the zone lock once per batch; the callbacks run inside it, on
/// the pageset's CPU (lock order: the CPU, then the zone).
pub(crate) trait PcpBuddy {
    /// Takes up to `n` blocks of `order` for `mt` from the buddy lists and hands each to `put`.
    fn take_bulk(&self, n: usize, order: Order, mt: Migratetype, put: impl FnMut(Pfn));
    /// Frees every block `next` yields to the buddy lists (onto its pageblock's migratetype
    /// list, as `free_pcppages_bulk` does), until it yields `None`.
    fn give_bulk(&self, next: impl FnMut() -> Option<(Pfn, Order)>);
}

/// A zone's buddy allocator as the `PcpBuddy` of its pagesets.
pub(crate) struct ZoneBuddy<'a, P: Platform> {
    /// Takes the zone lock.
    pub(crate) platform: &'a P,
    /// The machine's page descriptors.
    pub(crate) mm: &'a Memmap,
    /// The zone.
    pub(crate) zone: &'a Zone,
    /// How refills take blocks (`__GFP_COLD`, grouping).
    pub(crate) take: Take,
}

impl<P: Platform> PcpBuddy for ZoneBuddy<'_, P> {
    #[inline]
    fn take_bulk(&self, n: usize, order: Order, mt: Migratetype, put: impl FnMut(Pfn)) {
        let g = self.zone.area.lock(self.platform);
        buddy::rmqueue_bulk(&g, self.zone, self.mm, order, mt, self.take, n, put);
    }

    #[inline]
    fn give_bulk(&self, mut next: impl FnMut() -> Option<(Pfn, Order)>) {
        let g = self.zone.area.lock(self.platform);
        while let Some((pfn, order)) = next() {
            // The pageblock's type now, as `free_pcppages_bulk` reads it: a block that went on
            // the list as Movable may since be reserved HighAtomic (its pageblock was reserved,
            // or it came from a reserved one) or claimed by another type.
            let mt = self.mm.pageblock_migratetype_vouched(pfn);
            buddy::free_one_page(&g, self.zone, self.mm, pfn, order, mt, false);
        }
        drop(g);
        self.zone.wake_nofail_waiters(self.platform);
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_high_match_a_real_linux_6_18_zoneinfo() {
        // fixtures/linux-6.18-proc/zoneinfo.txt, 2 CPUs on node 0.
        assert_eq!(zone_batchsize(772_497), 63);
        assert_eq!(zone_batchsize(589_824), 63);
        assert_eq!(zone_batchsize(3840).max(1), 1);
        assert_eq!(zone_highsize(11941, 772_497, 63, 2, 0), 5970);
        assert_eq!(zone_highsize(11941, 772_497, 63, 2, MIN_PERCPU_PAGELIST_HIGH_FRACTION), 48281);
        assert_eq!(zone_highsize(58, 3840, 1, 2, 0), 29);
        assert_eq!(zone_highsize(58, 3840, 1, 2, MIN_PERCPU_PAGELIST_HIGH_FRACTION), 240);
        assert_eq!(zone_highsize(9117, 589_824, 63, 2, 0), 4558);
        assert_eq!(zone_highsize(9117, 589_824, 63, 2, MIN_PERCPU_PAGELIST_HIGH_FRACTION), 36864);
    }

    #[test]
    fn pindex_layout() {
        let o = |n| Order::new(n).unwrap();
        assert_eq!(order_to_pindex(Migratetype::Unmovable, o(0)), 0);
        assert_eq!(order_to_pindex(Migratetype::Reclaimable, o(0)), 2);
        assert_eq!(order_to_pindex(Migratetype::Movable, o(3)), 10);
        assert_eq!(order_to_pindex(Migratetype::Movable, o(9)), NR_LOWORDER_PCP_LISTS);
        assert!(pcp_allowed_order(o(3)) && pcp_allowed_order(o(9)));
        assert!(!pcp_allowed_order(o(4)) && !pcp_allowed_order(o(10)));
    }
}
