//! `__alloc_pages_slowpath()` in Linux's order (`mm/page_alloc.c`, 6.18):
//!
//! 1. wake kswapd (`__GFP_KSWAPD_RECLAIM`) and retry at the min watermark with the reserves
//!    the context grants (`gfp_to_alloc_flags`; `__GFP_MEMALLOC` or a reclaiming task:
//!    no watermarks, unless `__GFP_NOMEMALLOC`);
//! 2. direct reclaim if `__GFP_DIRECT_RECLAIM` and not already reclaiming (`PF_MEMALLOC`):
//!    shrinkers and slab caches (`reclaim/vmscan.rs`), then a retry, then a highatomic
//!    pageblock given back (a zone keeps its last one: `highatomic.rs`) and the per-CPU lists
//!    drained, and one more;
//! 3. `__GFP_NORETRY` stops after that one light attempt; costly orders (> 3) stop unless
//!    `__GFP_RETRY_MAYFAIL`; otherwise `should_reclaim_retry` (progress, at most
//!    [`MAX_RECLAIM_RETRIES`] passes without, and a zone that could pass its min watermark);
//!    when it says stop, the highatomic reserve is given back first, one pageblock a pass
//!    (another pass follows while one was);
//! 4. the OOM path (`__alloc_pages_may_oom`), not for costly orders, `__GFP_RETRY_MAYFAIL`,
//!    `__GFP_THISNODE` or allocations below ZONE_NORMAL: OOM notifiers, else the `out of
//!    memory` report; a notifier that freed memory means retry;
//! 5. nothing: `__GFP_NOFAIL` takes the min reserve, then sleeps until memory is freed and
//!    takes any block then (what Linux's loop grants it through the OOM path's
//!    `ALLOC_NO_WATERMARKS` fallback; `reclaim/nofail.rs`); the rest fail (`warn_alloc` in
//!    the caller).
//!
//! Where kmem differs: atomic requests drain this CPU's per-CPU lists before failing (as kmem
//! always has); direct reclaim drains the lists even when it reclaimed nothing (pages parked
//! there are what an LRU-less kernel has left); `GFP_NOFS`/`GFP_NOIO` requests whose OOM
//! notifiers free nothing fail without the report (Linux retries them forever: "the OOM
//! killer does not compensate for IO-less reclaim"); with no process to kill, the OOM path
//! reports and fails where Linux would panic.

#![forbid(unsafe_code)]

use super::AllocContext;
use crate::addr::Order;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::alloc_flags::{gfp_pfmemalloc_flags, gfp_to_alloc_flags, AllocFlags};
use crate::mm::page_ref::PageRef;
use crate::mm::zone::{Wmark, Zone};
use crate::mm::zone_type::ZoneType;
use crate::platform::Platform;
use crate::reclaim::vmscan::NodeSet;
use crate::reclaim::MAX_RECLAIM_RETRIES;
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// `__alloc_pages_slowpath()` (see the module docs).
    pub(super) fn alloc_slowpath(&self, gfp: Gfp, order: Order, ac: &AllocContext<'_>) -> Option<PageRef<'_>> {
        self.state().events.slowpath.fetch_add(1, Ordering::Relaxed);
        let flags = gfp_to_alloc_flags(gfp, order.as_u32());
        let can_reclaim = gfp.allows_blocking() && !self.platform().atomic_context();
        // Deferred struct-page init (boot/deferred.rs): free RAM not handed over yet comes first.
        while self.deferred_grow(ac.zonelist, ac.highest, order) {
            if let Some(p) = self.get_page_from_freelist(gfp, order, flags, ac) {
                return Some(p);
            }
        }
        let mut no_progress_loops = 0;
        // Direct reclaim flushes every CPU's sheaves once per slow-path entry.
        let mut flush_cpus = true;
        let mut best;
        loop {
            if flags.contains(AllocFlags::KSWAPD) {
                self.wake_all_kswapds(order, ac);
            }
            let reserve = self.reserve_flags(gfp);
            best = if reserve.contains(AllocFlags::NO_WATERMARKS) {
                if flags.contains(AllocFlags::KSWAPD) {
                    reserve | AllocFlags::KSWAPD
                } else {
                    reserve
                }
            } else {
                flags
            };
            if let Some(p) = self.get_page_from_freelist(gfp, order, best, ac) {
                return Some(p);
            }
            if !can_reclaim || self.platform().in_reclaim() {
                break;
            }
            let (page, progress) = self.direct_reclaim(gfp, order, best, ac, &mut flush_cpus);
            if page.is_some() {
                return page;
            }
            if gfp.contains(Gfp::NORETRY) || (order.is_costly() && !gfp.contains(Gfp::RETRY_MAYFAIL)) {
                break;
            }
            if self.should_reclaim_retry(order, ac, best, progress > 0, &mut no_progress_loops) {
                continue;
            }
            let (page, progress) = self.may_oom(gfp, order, ac);
            if page.is_some() {
                return page;
            }
            if progress {
                no_progress_loops = 0;
                continue;
            }
            break;
        }
        self.nopage(gfp, order, best, can_reclaim, ac)
    }

    /// The reserves the context grants beyond `gfp_to_alloc_flags` (`__gfp_pfmemalloc_flags`):
    /// `__GFP_MEMALLOC` or a reclaiming task (`PF_MEMALLOC`), unless `__GFP_NOMEMALLOC`.
    fn reserve_flags(&self, gfp: Gfp) -> AllocFlags {
        let f = gfp_pfmemalloc_flags(gfp);
        if f.contains(AllocFlags::NO_WATERMARKS) || gfp.contains(Gfp::NOMEMALLOC) {
            return f;
        }
        if !self.platform().in_interrupt() && self.platform().in_reclaim() {
            AllocFlags::NO_WATERMARKS
        } else {
            f
        }
    }

    /// `wake_all_kswapds()`: every node of the zonelist, once.
    fn wake_all_kswapds(&self, order: Order, ac: &AllocContext<'_>) {
        let mut seen = 0u64;
        for zr in ac.zonelist.as_slice().iter().filter(|zr| zr.zone_type() <= ac.highest) {
            let nid = zr.node as usize;
            if seen & (1 << (nid % 64)) == 0 {
                seen |= 1 << (nid % 64);
                self.wakeup_kswapd(nid, order, ac.highest);
            }
        }
    }

    /// `__alloc_pages_direct_reclaim()`: reclaim, retry, give back a highatomic pageblock
    /// (keeping a zone's last) and drain the per-CPU lists, retry.
    fn direct_reclaim(
        &self,
        gfp: Gfp,
        order: Order,
        flags: AllocFlags,
        ac: &AllocContext<'_>,
        flush_cpus: &mut bool,
    ) -> (Option<PageRef<'_>>, usize) {
        let nodes = if gfp.contains(Gfp::THISNODE) { NodeSet::one(ac.preferred_nid) } else { NodeSet::ALL };
        let progress = self.try_to_free_pages(gfp, ac.highest, nodes, flush_cpus);
        if let Some(p) = self.get_page_from_freelist(gfp, order, flags, ac) {
            return (Some(p), progress);
        }
        let unreserved = self.unreserve_highatomic_pageblock(ac, false);
        let page = self.drain_then_try(gfp, order, flags, ac).or_else(|| {
            // drain_then_try retries only when the lists held pages.
            if unreserved {
                self.get_page_from_freelist(gfp, order, flags, ac)
            } else {
                None
            }
        });
        (page, progress)
    }

    /// `should_reclaim_retry()`: another pass while reclaim makes progress (costly orders
    /// always count as no progress), at most [`MAX_RECLAIM_RETRIES`] without, and only if
    /// some zone could pass its min watermark with what is free (kmem has no reclaimable LRU
    /// pages to add). Before saying no (and so before OOM), it gives back a pageblock of the
    /// highatomic reserve, and says yes if it could.
    fn should_reclaim_retry(
        &self,
        order: Order,
        ac: &AllocContext<'_>,
        flags: AllocFlags,
        progress: bool,
        no_progress_loops: &mut u32,
    ) -> bool {
        if progress && !order.is_costly() {
            *no_progress_loops = 0;
        } else {
            *no_progress_loops += 1;
        }
        if *no_progress_loops > MAX_RECLAIM_RETRIES {
            return self.unreserve_highatomic_pageblock(ac, true);
        }
        let mut ok = false;
        self.for_each_eligible_zone(ac, &mut |z| {
            ok |= self.zone_watermark_fast(z, order, z.wmark(Wmark::Min), ac.highest, flags);
        });
        ok || self.unreserve_highatomic_pageblock(ac, true)
    }

    /// `__alloc_pages_may_oom()`: (page, progress).
    fn may_oom(&self, gfp: Gfp, order: Order, ac: &AllocContext<'_>) -> (Option<PageRef<'_>>, bool) {
        let r = self.reclaim();
        // oom_lock: one OOM at a time; a loser counts as progress and retries.
        if r.oom_lock.swap(true, Ordering::Acquire) {
            self.platform().cpu_relax();
            return (None, true);
        }
        let out = self.may_oom_locked(gfp, order, ac);
        r.oom_lock.store(false, Ordering::Release);
        out
    }

    fn may_oom_locked(&self, gfp: Gfp, order: Order, ac: &AllocContext<'_>) -> (Option<PageRef<'_>>, bool) {
        // Someone else may have freed memory meanwhile: try hard, at the high watermark.
        let high = AllocFlags::WMARK_HIGH | AllocFlags::CPUSET;
        if let Some(p) = self.get_page_from_freelist(gfp | Gfp::HARDWALL, order, high, ac) {
            return (Some(p), false);
        }
        if order.is_costly() || gfp.intersects(Gfp::RETRY_MAYFAIL.union(Gfp::THISNODE)) || ac.highest < ZoneType::Normal
        {
            return (None, false);
        }
        // kmem: IO-less requests get the notifiers but never the report (see the module docs).
        let progress = if gfp.contains(Gfp::FS) {
            self.out_of_memory(gfp, order.as_u32())
        } else {
            self.oom_notify(gfp, order.as_u32()) > 0
        };
        if !progress && gfp.contains(Gfp::NOFAIL) {
            // `__alloc_pages_cpuset_fallback(..., ALLOC_NO_WATERMARKS)`: a NOFAIL request may
            // take every reserve before it waits.
            return (self.get_page_from_freelist(gfp, order, AllocFlags::NO_WATERMARKS, ac), false);
        }
        (None, progress)
    }

    /// The `nopage:` label: `__GFP_NOFAIL` takes the min reserve, then waits for memory;
    /// the rest fail (an atomic request drains this CPU's per-CPU lists first).
    fn nopage(
        &self,
        gfp: Gfp,
        order: Order,
        best: AllocFlags,
        can_reclaim: bool,
        ac: &AllocContext<'_>,
    ) -> Option<PageRef<'_>> {
        if !gfp.contains(Gfp::NOFAIL) {
            return self.drain_then_try(gfp, order, best, ac);
        }
        if order.is_costly() {
            self.warn_on("__alloc_pages_slowpath", &|w| {
                write!(w, "__GFP_NOFAIL with order {order} > PAGE_ALLOC_COSTLY_ORDER")
            });
        }
        let retry = best | AllocFlags::MIN_RESERVE;
        if let Some(p) = self.drain_then_try(gfp, order, retry, ac) {
            return Some(p);
        }
        if !can_reclaim {
            // An atomic NOFAIL request cannot sleep: it spins, as Linux's loop does.
            loop {
                if let Some(p) = self.get_page_from_freelist(gfp, order, retry, ac) {
                    return Some(p);
                }
                self.platform().cpu_relax();
            }
        }
        // The sleep: what Linux's loop ends up granting a NOFAIL request (the OOM path's
        // `ALLOC_NO_WATERMARKS` fallback), so any block of the order wakes it.
        let nodes = if gfp.contains(Gfp::THISNODE) { NodeSet::one(ac.preferred_nid) } else { NodeSet::ALL };
        // The wait's reclaims flush the CPUs' sheaves once, as a slow-path entry does.
        let flush_cpus = core::cell::Cell::new(true);
        let ready = || {
            let mut ok = false;
            self.for_each_eligible_zone(ac, &mut |z| {
                ok |= z.free_pages() >= order.nr_pages()
                    && (order == Order::ZERO
                        || Order::all().filter(|&o| o >= order).any(|o| z.area.has_pcptype_block(o)));
            });
            ok
        };
        let page = self.nofail_wait(
            &|f| self.for_each_eligible_zone(ac, f),
            &ready,
            &|| self.get_page_from_freelist(gfp, order, AllocFlags::NO_WATERMARKS, ac),
            &|| {
                if self.platform().in_reclaim() {
                    return 0;
                }
                let mut f = flush_cpus.get();
                let got = self.try_to_free_pages(gfp, ac.highest, nodes, &mut f);
                flush_cpus.set(f);
                got
            },
        );
        Some(page)
    }

    /// Calls `f` with every zone of the zonelist the allocation may use.
    fn for_each_eligible_zone(&self, ac: &AllocContext<'_>, f: &mut dyn FnMut(&Zone)) {
        for zr in ac.zonelist.as_slice().iter().filter(|zr| zr.zone_type() <= ac.highest) {
            if let Some(node) = self.node(zr.node as usize) {
                f(node.zone(zr.zone_type()));
            }
        }
    }
}
