//! `mm/vmscan.c` for a kernel without LRU lists: `shrink_slab`, direct reclaim
//! (`try_to_free_pages`) and kswapd's balancing step (`balance_pgdat`), which a platform runs
//! from its own thread ([`Kmem::kswapd_run_once`]).
//!
//! What reclaim frees: first the registered shrinkers' objects, in proportion to what they
//! hold (`do_shrink_slab`), then the empty slabs of every slab cache (the built-in slab
//! shrinker), caches with `SLAB_RECLAIM_ACCOUNT` (SReclaimable) first.
//!
//! The slab sweep comes in two strengths (issue 16: direct reclaim that crawled). At the
//! first pass (and after any pass whose shrinkers freed objects) it takes what needs no
//! other CPU: the node barns' sheaves go back to their slabs, and the nodes' empty slabs to
//! the page allocator. Only the lowest-priority pass (0, reached when the others got less
//! than [`SWAP_CLUSTER_MAX`] pages) runs `kmem_cache_shrink` proper, flushing every CPU's
//! sheaves through `run_on_cpu`, and that at most once per slow-path entry (the slow path's
//! `flush_cpus`, as Linux's `__alloc_pages_direct_reclaim` drains the per-CPU lists once);
//! kswapd's balancing pass may flush once. Flushing every pass cost a cross-CPU call per
//! cache and CPU and took the allocating CPU's own sheaves away: the slab slow path that
//! paid for a new slab found its main sheaf gone, and the slab it listed empty was freed by
//! the next reclaim, one page of "progress" per round, forever (the slab side of the fix:
//! `add_new_slab` takes the caller's object under the lock that lists the slab).
//!
//! Progress (`did_some_progress`, which resets `should_reclaim_retry`'s count of
//! [`MAX_RECLAIM_RETRIES`] no-progress loops) is counted in pages usable by the allocation:
//! the growth of the free pages (buddy and per-CPU lists) of the zones it may use, over the
//! call, or the pages of the slabs the sweeps without the CPUs found empty if that is more
//! (other CPUs allocating at the same time hide part of the growth). Slab pages a CPU flush
//! frees count only as growth: objects moved out of sheaves that the next allocations
//! refill are not reclaim.

#![forbid(unsafe_code)]

use crate::addr::Order;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::alloc_flags::AllocFlags;
use crate::mm::watermark::watermark_ok;
use crate::mm::zone::{Wmark, Zone};
use crate::mm::zone_type::ZoneType;
use crate::platform::Platform;
use crate::reclaim::shrinker::{ShrinkControl, ShrinkerFlags, DEF_PRIORITY, MAX_SHRINKERS};
use crate::reclaim::{MAX_RECLAIM_RETRIES, SWAP_CLUSTER_MAX};
use crate::sync::Ordering;

/// What one kswapd pass did ([`Kmem::kswapd_run_once`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct KswapdRun {
    /// Pages reclaimed.
    pub reclaimed: usize,
    /// The node is over its high watermark now.
    pub balanced: bool,
}

impl<P: Platform> Kmem<P> {
    /// Free pages, buddy and per-CPU lists, of the zones an allocation up to `highest` on
    /// `nodes` may use: what reclaim's progress is measured in.
    fn free_usable(&self, nodes: NodeSet, highest: ZoneType) -> usize {
        (0..self.nr_nodes())
            .filter(|&n| nodes.has(n))
            .filter_map(|n| self.node(n))
            .flat_map(|n| n.zones.iter())
            .filter(|z| z.zone_type() <= highest)
            .map(|z| z.free_pages() + z.pcp_pages())
            .sum()
    }

    /// `shrink_slab(gfp, nid, priority)` over the registered shrinkers the allocation's
    /// context allows. Returns the objects freed.
    pub(crate) fn shrink_slab(&self, gfp: Gfp, nid: usize, priority: u32) -> usize {
        let mut freed = 0;
        for i in 0..MAX_SHRINKERS {
            let Some(t) = self.shrinker_get(i) else { continue };
            if t.flags.allowed_for(gfp) {
                let nid = if t.flags.contains(ShrinkerFlags::NUMA_AWARE) { nid } else { 0 };
                let mut sc = ShrinkControl { gfp_mask: gfp, nid, nr_to_scan: 0, nr_scanned: 0 };
                self.count_reclaim(|e| &e.shrinker_calls, 1);
                freed = self.do_shrink_slab(&mut sc, &t, priority).unwrap_or(0).saturating_add(freed);
            } else {
                self.count_reclaim(|e| &e.shrinker_skipped, 1);
            }
            drop(t);
        }
        freed
    }

    /// One reclaim pass over the nodes an allocation may use, at `priority`: the registered
    /// shrinkers, then the slab caches' empty slabs if the shrinkers freed objects, at the
    /// first pass, or with `flush_cpus` (the CPUs' sheaves flushed too). Returns (objects
    /// freed, slab pages given back).
    fn shrink_nodes(&self, gfp: Gfp, nodes: NodeSet, priority: u32, flush_cpus: bool) -> (usize, usize) {
        let mut objs = 0;
        for nid in (0..self.nr_nodes()).filter(|&n| nodes.has(n)) {
            objs += self.shrink_slab(gfp, nid, priority);
        }
        let sweep = objs > 0 || priority == DEF_PRIORITY || flush_cpus;
        let pages = if sweep { self.shrink_slab_caches(flush_cpus) } else { 0 };
        (objs, pages)
    }

    /// `try_to_free_pages()`: direct reclaim for an allocation (`__perform_reclaim`), with
    /// `PF_MEMALLOC` set. Priorities from [`DEF_PRIORITY`] down to 0 until
    /// [`SWAP_CLUSTER_MAX`] pages are back; the lowest flushes every CPU's sheaves if
    /// `*flush_cpus`, and clears it (the slow path flushes once per entry, as Linux drains
    /// the per-CPU lists once). Counts `allocstall_<zone>` and the direct pgscan/pgsteal.
    /// Returns the pages reclaimed (see the module docs for what counts).
    pub(crate) fn try_to_free_pages(
        &self,
        gfp: Gfp,
        highest: ZoneType,
        nodes: NodeSet,
        flush_cpus: &mut bool,
    ) -> usize {
        self.count_reclaim(|e| &e.allocstall[highest as usize], 1);
        let reclaimed =
            self.with_memalloc(|| self.reclaim_passes(gfp, nodes, highest, flush_cpus, |r| r >= SWAP_CLUSTER_MAX));
        self.count_reclaim(|e| &e.pgsteal_direct, reclaimed as u64);
        reclaimed
    }

    /// Reclaim passes at falling priority until `enough(reclaimed)`; the last (priority 0)
    /// flushes the CPUs' sheaves if `*flush_cpus` (then cleared). Reclaimed: the growth of
    /// the free pages the allocation may use (zones up to `highest` on `nodes`), or the
    /// pages of slabs found empty on the lists if more (other CPUs allocating meanwhile hide
    /// part of the growth); what a CPU flush frees counts only as growth.
    fn reclaim_passes(
        &self,
        gfp: Gfp,
        nodes: NodeSet,
        highest: ZoneType,
        flush_cpus: &mut bool,
        enough: impl Fn(usize) -> bool,
    ) -> usize {
        let before = self.free_usable(nodes, highest);
        let mut slab_pages = 0;
        let mut reclaimed = 0;
        for priority in (0..=DEF_PRIORITY).rev() {
            let flush = priority == 0 && *flush_cpus;
            let (_, pages) = self.shrink_nodes(gfp, nodes, priority, flush);
            if flush {
                *flush_cpus = false;
            } else {
                slab_pages += pages;
            }
            reclaimed = self.free_usable(nodes, highest).saturating_sub(before).max(slab_pages);
            if enough(reclaimed) {
                break;
            }
        }
        reclaimed
    }

    /// `pgdat_balanced()`: some zone of node `nid` up to `highest` is over its high watermark
    /// for `order` (with the lowmem reserve `highest` implies).
    pub fn pgdat_balanced(&self, nid: usize, order: Order, highest: ZoneType) -> bool {
        let Some(node) = self.node(nid) else { return true };
        let mut any = false;
        for z in node.zones.iter().filter(|z| z.is_managed() && z.zone_type() <= highest) {
            any = true;
            if zone_ok(z, order, Wmark::High, highest) {
                return true;
            }
        }
        !any
    }

    /// `wakeup_kswapd()` for node `nid`: records the order and zone kswapd must balance for,
    /// and wakes it through the platform unless the node is balanced already or kswapd has
    /// failed [`MAX_RECLAIM_RETRIES`] times in a row (a hopeless node: direct reclaim's turn).
    pub(crate) fn wakeup_kswapd(&self, nid: usize, order: Order, highest: ZoneType) {
        let Some(k) = self.node(nid).map(|n| &n.kswapd) else { return };
        k.order.fetch_max(order.as_u32() as u8, Ordering::Relaxed);
        k.highest.fetch_max(highest as u8 + 1, Ordering::Relaxed);
        if u32::from(k.failures.load(Ordering::Relaxed)) >= MAX_RECLAIM_RETRIES
            || self.pgdat_balanced(nid, order, highest)
        {
            return;
        }
        k.pending.store(true, Ordering::Release);
        if self.platform().wake_kswapd(nid) {
            self.state().events.kswapd_wake.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `kswapd()`'s work for node `nid`, one `balance_pgdat` pass: runs the shrinkers (with
    /// `GFP_KERNEL`, `PF_MEMALLOC` set) at falling priority until the node is over its high
    /// watermark for the order and zone it was woken for. A platform calls it from its
    /// kswapd thread when woken ([`Platform::wake_kswapd`]), then
    /// [`Kmem::kswapd_try_to_sleep`].
    pub fn kswapd_run_once(&self, nid: usize) -> KswapdRun {
        let Some(k) = self.node(nid).map(|n| &n.kswapd) else { return KswapdRun::default() };
        k.pending.store(false, Ordering::Relaxed);
        let order = Order::new(k.order.swap(0, Ordering::Relaxed).into()).unwrap_or(Order::ZERO);
        let highest = self.kswapd_highest(nid, k.highest.swap(0, Ordering::Relaxed).into());
        self.count_reclaim(|e| &e.pageoutrun, 1);
        let nodes = NodeSet::one(nid);
        let reclaimed = self.with_memalloc(|| {
            if self.pgdat_balanced(nid, order, highest) {
                return 0;
            }
            let mut flush_cpus = true;
            self.reclaim_passes(Gfp::KERNEL, nodes, highest, &mut flush_cpus, |_| {
                self.pgdat_balanced(nid, order, highest)
            })
        });
        self.count_reclaim(|e| &e.pgsteal_kswapd, reclaimed as u64);
        let balanced = self.pgdat_balanced(nid, order, highest);
        if reclaimed == 0 && !balanced {
            let f = k.failures.load(Ordering::Relaxed);
            k.failures.store(f.saturating_add(1), Ordering::Relaxed);
        } else {
            k.failures.store(0, Ordering::Relaxed);
        }
        KswapdRun { reclaimed, balanced }
    }

    /// `kswapd_try_to_sleep()`: true if kswapd of node `nid` may sleep now. False when it was
    /// woken again during its pass (`kswapd_low_wmark_hit_quickly`) or the node is below its
    /// high watermark again (`kswapd_high_wmark_hit_quickly`); a node kswapd failed to balance
    /// [`MAX_RECLAIM_RETRIES`] times in a row lets it sleep anyway (Linux's hopeless node).
    /// kmem has no timer to take a short nap first: the "quickly" is "before sleeping".
    pub fn kswapd_try_to_sleep(&self, nid: usize) -> bool {
        let Some(k) = self.node(nid).map(|n| &n.kswapd) else { return true };
        if u32::from(k.failures.load(Ordering::Relaxed)) >= MAX_RECLAIM_RETRIES {
            k.pending.store(false, Ordering::Relaxed);
            return true;
        }
        if k.pending.load(Ordering::Acquire) {
            self.count_reclaim(|e| &e.kswapd_low_wmark_hit_quickly, 1);
            return false;
        }
        let highest = self.kswapd_highest(nid, 0);
        if !self.pgdat_balanced(nid, Order::ZERO, highest) {
            self.count_reclaim(|e| &e.kswapd_high_wmark_hit_quickly, 1);
            return false;
        }
        true
    }

    /// Whether node `nid`'s kswapd has a wake-up it has not taken yet.
    pub fn kswapd_pending(&self, nid: usize) -> bool {
        self.node(nid).map(|n| &n.kswapd).is_some_and(|k| k.pending.load(Ordering::Acquire))
    }

    /// The highest zone kswapd balances: the one recorded (index + 1), else the node's highest
    /// managed zone.
    fn kswapd_highest(&self, nid: usize, recorded: u32) -> ZoneType {
        if let Some(z) = recorded.checked_sub(1).and_then(|i| ZoneType::ALL.get(i as usize)) {
            return *z;
        }
        self.node(nid)
            .and_then(|n| n.zones.iter().filter(|z| z.is_managed()).map(Zone::zone_type).max())
            .unwrap_or(ZoneType::Normal)
    }
}

/// `zone_watermark_ok()` at mark `w`, with the lowmem reserve for `highest`.
pub(crate) fn zone_ok(z: &Zone, order: Order, w: Wmark, highest: ZoneType) -> bool {
    watermark_ok(
        z.free_pages(),
        order,
        z.wmark(w),
        z.lowmem_reserve(highest),
        AllocFlags::empty(),
        z.area.nr_free_highatomic(),
        |o, h| z.area.has_block(o, h),
    )
}

/// A set of node ids (`nodemask_t`, up to 64 nodes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct NodeSet(u64);

impl NodeSet {
    /// Every node.
    pub(crate) const ALL: NodeSet = NodeSet(!0);
    /// Node `nid` only.
    pub(crate) const fn one(nid: usize) -> NodeSet {
        NodeSet(1 << (nid % 64))
    }
    /// Whether `nid` is in the set.
    pub(crate) const fn has(self, nid: usize) -> bool {
        self.0 & (1 << (nid % 64)) != 0
    }
}
