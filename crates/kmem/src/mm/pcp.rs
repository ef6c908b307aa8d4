//! Per-CPU page lists (`struct per_cpu_pages`): each CPU keeps a few free pages of each
//! low order (0..=3) and of pageblock order per zone, so the common allocation and free take
//! no zone lock and do no splitting or merging.
//!
//! Protocol (as Linux since 5.19): the CPU is pinned (`preempt_disable`), then the CPU's
//! pageset lock is *tried*; if it is busy (another CPU is draining it, or an interrupt
//! handler on this CPU got here first) the request goes straight to the buddy allocator. An
//! empty list is refilled with `batch` blocks in one zone-lock section (`rmqueue_bulk`); a
//! free that pushes `count` to `high` returns the coldest blocks to the buddy in one zone-lock
//! section (`free_pcppages_bulk`). Any CPU may drain any pageset by taking its lock
//! (`drain_all_pages`), which the allocator does before failing a request.
//!
//! The protocol lives in [`PerCpuPages`]'s methods, which reach the buddy allocator only
//! through [`PcpBuddy`]: the allocator passes its zone ([`ZoneBuddy`]), and the loom models
//! (`pcp/loom_tests.rs`, `scripts/loom.sh`) run the same methods against a small zone.
//!
//! Lock order: pageset lock, then zone lock. Pages on a per-CPU list carry the PCP page type
//! (`Page::is_pcp`) with their order and migratetype; they count as free in MemFree but not
//! in buddyinfo or the zone's free counter (which the watermarks check), as in Linux.

use crate::addr::{Order, Pfn, PAGEBLOCK_ORDER, PAGE_ALLOC_COSTLY_ORDER};
use crate::machine::Kmem;
use crate::mm::buddy::{self, Take};
use crate::mm::memmap::Memmap;
use crate::mm::page::Page;
use crate::mm::pfn_list::PfnList;
use crate::mm::zone::{bump_locked, Zone, ZoneEvents};
use crate::mm::zone_type::{Migratetype, MIGRATE_PCPTYPES};
use crate::platform::Platform;
use crate::sync::{array_of, const_fn_unless_loom, AtomicUsize, Ordering, RawSpinLock};

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

/// One CPU's lists for one zone.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct PerCpuPages {
    lock: RawSpinLock,
    count: AtomicUsize,
    high: AtomicUsize,
    high_min: AtomicUsize,
    high_max: AtomicUsize,
    batch: AtomicUsize,
    lists: [PfnList; NR_PCP_LISTS],
    /// Allocation and free events counted on this CPU (written under `lock`).
    pub events: ZoneEvents,
}

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
                lock: RawSpinLock::new(),
                count: AtomicUsize::new(0),
                high: AtomicUsize::new(0),
                high_min: AtomicUsize::new(0),
                high_max: AtomicUsize::new(0),
                batch: AtomicUsize::new(1),
                lists: array_of![PfnList::new(); NR_PCP_LISTS],
                events: ZoneEvents::new(),
            }
        }
    }
    /// Pages on the lists.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
    /// Free back to the buddy when `count` reaches this.
    pub fn high(&self) -> usize {
        self.high.load(Ordering::Relaxed)
    }
    /// Blocks moved per refill or drain.
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
    fn add_count(&self, delta: isize) {
        self.count.store(self.count().wrapping_add_signed(delta), Ordering::Relaxed);
    }
    /// Takes the pageset lock if it is free (`pcp_spin_trylock`; the caller has pinned its
    /// CPU). Pair with `self.lock.unlock()`.
    #[inline]
    fn trylock(&self) -> bool {
        self.lock.try_lock_raw()
    }

    /// `rmqueue_pcplist()` with the pageset lock held: a block from the `order`/`mt` list (its
    /// tail with `cold`), refilling an empty list with a batch from `buddy` first
    /// (`rmqueue_bulk`). `None`: the buddy has nothing for it either.
    #[inline]
    fn rmqueue_locked(
        &self,
        mm: &Memmap,
        buddy: &impl PcpBuddy,
        order: Order,
        mt: Migratetype,
        cold: bool,
    ) -> Option<Pfn> {
        debug_assert!(self.lock.is_locked());
        let list = &self.lists[order_to_pindex(mt, order)];
        if list.is_empty() {
            let n = if order == Order::ZERO { self.batch() } else { (self.batch() >> order.as_u32()).max(2) };
            buddy.take_bulk(n, order, mt, |pfn| {
                let page = mm.page(pfn).expect("free page has a descriptor");
                page.set_pcp(order.as_u32(), mt as u32);
                list.push(mm, pfn, page, true);
                self.add_count(order.nr_pages() as isize);
            });
        }
        let pfn = if cold { list.last() } else { list.first() }?;
        let page = mm.page(pfn).expect("pcp page has a descriptor");
        list.unlink(mm, page);
        page.clear_buddy();
        self.add_count(-(order.nr_pages() as isize));
        Some(pfn)
    }

    /// `free_unref_page_commit()` with the pageset lock held: puts a block on its list and,
    /// when the lists reach `high`, returns a batch to `buddy`.
    #[inline]
    fn free_locked(&self, mm: &Memmap, buddy: &impl PcpBuddy, pfn: Pfn, page: &Page, order: Order, mt: Migratetype) {
        debug_assert!(self.lock.is_locked());
        page.set_pcp(order.as_u32(), mt as u32);
        self.lists[order_to_pindex(mt, order)].push(mm, pfn, page, false);
        self.add_count(order.nr_pages() as isize);
        bump_locked(&self.events.pgfree, order.nr_pages() as u64);
        let (count, high, batch) = (self.count(), self.high(), self.batch());
        if count >= high {
            // nr_pcp_free(): bring count back to `high - batch`, freeing at least a batch.
            let to_free = (count + batch).saturating_sub(high).max(batch).min(count);
            self.free_bulk_locked(mm, buddy, to_free);
        }
    }

    /// `free_pcppages_bulk()` with the pageset lock held: returns at least `pages` pages from
    /// the cold ends of the lists (round-robin over them) to `buddy`, in one zone-lock section.
    fn free_bulk_locked(&self, mm: &Memmap, buddy: &impl PcpBuddy, pages: usize) {
        debug_assert!(self.lock.is_locked());
        let (mut freed, mut idx, mut empty) = (0, 0, 0);
        buddy.give_bulk(|| {
            while freed < pages && self.count() > 0 {
                let list = &self.lists[idx % NR_PCP_LISTS];
                idx += 1;
                let Some(pfn) = list.last() else {
                    empty += 1;
                    if empty == NR_PCP_LISTS {
                        // A count with every list empty: corrupt. Stop rather than spin with
                        // the zone lock held.
                        debug_assert!(false, "pcp count {} with every list empty", self.count());
                        return None;
                    }
                    continue;
                };
                empty = 0;
                let page = mm.page(pfn).expect("pcp page has a descriptor");
                let (order, mt) =
                    (page.private() & 0xff, Migratetype::from_index(((page.private() >> 8) & 0xff) as usize));
                let order = Order::new(order).expect("pcp pages record a valid order");
                list.unlink(mm, page);
                page.clear_buddy();
                self.add_count(-(order.nr_pages() as isize));
                freed += order.nr_pages();
                return Some((pfn, order, mt.unwrap_or(Migratetype::Movable)));
            }
            None
        });
    }

    /// `drain_pages_zone()` for this pageset, from any CPU (the caller has disabled
    /// preemption): takes the lock, waiting for its owner, and returns every page to `buddy`.
    fn drain<P: Platform>(&self, platform: &P, mm: &Memmap, buddy: &impl PcpBuddy) {
        if self.count() == 0 {
            return;
        }
        self.lock.lock_raw(platform);
        self.free_bulk_locked(mm, buddy, self.count());
        self.lock.unlock();
    }

    /// Runs `f` with the lock held (preemption must be disabled by the caller).
    pub(crate) fn lock_for_check<P: Platform>(&self, p: &P, f: impl FnOnce(&Self) -> bool) -> bool {
        self.lock.lock_raw(p);
        let r = f(self);
        self.lock.unlock();
        r
    }
    /// Walks every list; returns the pages found, or the first malformed block.
    pub fn check(&self, mm: &Memmap) -> Result<usize, Pfn> {
        let mut pages = 0;
        for (i, l) in self.lists.iter().enumerate() {
            let order = if i == NR_LOWORDER_PCP_LISTS { PAGEBLOCK_ORDER as u32 } else { (i / MIGRATE_PCPTYPES) as u32 };
            pages += l.walk(mm, |_, p| p.is_pcp() && p.private() & 0xff == order)? << order;
        }
        Ok(pages)
    }
}

/// The buddy side of the per-CPU protocol: where a pageset refills from and where its frees
/// and drains go. Each call is one zone-lock section, as `rmqueue_bulk` and
/// `free_pcppages_bulk` take the zone lock once per batch; the callbacks run inside it, with
/// the pageset lock held too (lock order: pageset, then zone).
pub(crate) trait PcpBuddy {
    /// Takes up to `n` blocks of `order` for `mt` from the buddy lists and hands each to `put`.
    fn take_bulk(&self, n: usize, order: Order, mt: Migratetype, put: impl FnMut(Pfn));
    /// Frees every block `next` yields to the buddy lists, until it yields `None`.
    fn give_bulk(&self, next: impl FnMut() -> Option<(Pfn, Order, Migratetype)>);
}

/// A zone's buddy allocator as the [`PcpBuddy`] of its pagesets.
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
    fn take_bulk(&self, n: usize, order: Order, mt: Migratetype, mut put: impl FnMut(Pfn)) {
        let g = self.zone.area.lock(self.platform);
        for _ in 0..n {
            let Some(pfn) = buddy::rmqueue(&g, self.zone, self.mm, order, mt, self.take) else { break };
            put(pfn);
        }
    }

    #[inline]
    fn give_bulk(&self, mut next: impl FnMut() -> Option<(Pfn, Order, Migratetype)>) {
        let g = self.zone.area.lock(self.platform);
        while let Some((pfn, order, mt)) = next() {
            buddy::free_one_page(&g, self.zone, self.mm, pfn, order, mt, false);
        }
    }
}

/// Why the per-CPU path could not serve a request; the caller uses the buddy instead.
pub(crate) struct PcpBusy;

/// Holds a pageset lock and the pinned CPU.
struct PcpGuard<'a, P: Platform> {
    pcp: &'a PerCpuPages,
    platform: &'a P,
}

impl<P: Platform> Drop for PcpGuard<'_, P> {
    #[inline]
    fn drop(&mut self) {
        self.pcp.lock.unlock();
        self.platform.preempt_enable();
    }
}

impl<P: Platform> Kmem<P> {
    /// Pins the CPU and tries its pageset lock (`pcp_spin_trylock`).
    #[inline]
    fn pcp_trylock<'a>(&'a self, zone: &'a Zone) -> Option<PcpGuard<'a, P>> {
        let p = self.platform();
        let cpu = p.preempt_disable_cpu();
        let pcp = zone.pageset(cpu.index());
        match pcp {
            Some(pcp) if pcp.trylock() => Some(PcpGuard { pcp, platform: p }),
            _ => {
                p.preempt_enable();
                None
            }
        }
    }

    /// `zone`'s buddy allocator as its pagesets see it.
    #[inline]
    fn zone_buddy<'a>(&'a self, zone: &'a Zone, take: Take) -> ZoneBuddy<'a, P> {
        ZoneBuddy { platform: self.platform(), mm: self.memmap(), zone, take }
    }

    /// `rmqueue_pcplist()`: a block from this CPU's list, refilling it from the buddy if empty.
    /// `Ok(None)`: the zone has nothing for it.
    #[inline]
    pub(crate) fn rmqueue_pcplist(
        &self,
        zone: &Zone,
        order: Order,
        mt: Migratetype,
        take: Take,
        preferred_nid: usize,
    ) -> Result<Option<Pfn>, PcpBusy> {
        let g = self.pcp_trylock(zone).ok_or(PcpBusy)?;
        let pfn = g.pcp.rmqueue_locked(self.memmap(), &self.zone_buddy(zone, take), order, mt, take.cold);
        if pfn.is_some() {
            self.count_alloc(zone, &g.pcp.events, preferred_nid, order.nr_pages());
        }
        Ok(pfn)
    }

    /// `free_unref_page_commit()`: puts a block whose last reference was dropped on this CPU's
    /// list, returning a batch to the buddy when the lists reach `high`. `false`: the per-CPU
    /// path is busy; the caller frees to the buddy.
    #[inline]
    pub(crate) fn free_unref_page(&self, zone: &Zone, pfn: Pfn, page: &Page, order: Order, mt: Migratetype) -> bool {
        let mt = match mt {
            Migratetype::Isolate => return false,
            Migratetype::HighAtomic => Migratetype::Movable,
            m => m,
        };
        let Some(g) = self.pcp_trylock(zone) else { return false };
        g.pcp.free_locked(self.memmap(), &self.zone_buddy(zone, Take::default()), pfn, page, order, mt);
        true
    }

    /// `drain_all_pages()`: returns every CPU's listed pages in every zone to the buddy.
    pub fn drain_all_pages(&self) {
        for zone in self.zones() {
            for cpu in 0..self.nr_cpus() {
                self.drain_pages_zone(zone, cpu);
            }
        }
    }

    /// `drain_local_pages()`: the current CPU's lists only.
    pub fn drain_local_pages(&self) {
        let p = self.platform();
        p.preempt_disable();
        let cpu = p.current_cpu().index();
        for zone in self.zones() {
            self.drain_pages_zone(zone, cpu);
        }
        p.preempt_enable();
    }

    /// `drain_pages_zone()`: one CPU's lists of one zone, taken from any CPU.
    pub(crate) fn drain_pages_zone(&self, zone: &Zone, cpu: usize) {
        let Some(pcp) = zone.pageset(cpu) else { return };
        if pcp.count() == 0 {
            return;
        }
        let p = self.platform();
        p.preempt_disable();
        pcp.drain(p, self.memmap(), &self.zone_buddy(zone, Take::default()));
        p.preempt_enable();
    }

    /// Counts an allocation in `ev` (the zone's or a pageset's; its lock is held).
    pub(crate) fn count_alloc(&self, zone: &Zone, ev: &ZoneEvents, preferred_nid: usize, pages: usize) {
        bump_locked(&ev.pgalloc, pages as u64);
        if zone.node() == preferred_nid {
            bump_locked(&ev.numa_hit, 1);
        } else {
            bump_locked(&ev.numa_miss, 1);
            if let Some(pref) = self.node(preferred_nid) {
                // Another zone's counter: not covered by the lock we hold.
                pref.zone(zone.zone_type()).events.numa_foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.nr_nodes() == 1 || zone.node() == self.numa_node_id() {
            bump_locked(&ev.numa_local, 1);
        } else {
            bump_locked(&ev.numa_other, 1);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_high_match_a_real_linux_6_18_zoneinfo() {
        // ../shared/reference/linux-6.18-proc/zoneinfo.txt, 2 CPUs on node 0.
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
