//! The allocator's paths through the per-CPU lists (`Kmem`'s side of the protocol in
//! `mm/pcp.rs`): `rmqueue_pcplist`, the order-0 fast paths, `free_unref_page`, the drains,
//! and the NUMA counting of an allocation.

#![forbid(unsafe_code)]

use super::{PerCpuPages, ZoneBuddy, MIGRATE_PCPTYPES};
use crate::addr::{Order, Pfn};
use crate::machine::{FastZone, Kmem};
use crate::mm::buddy::Take;
use crate::mm::page::Page;
use crate::mm::zone::{bump_locked, Zone, ZoneEvents};
use crate::mm::zone_type::Migratetype;
use crate::platform::{CpuId, Platform};
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// `zone`'s buddy allocator as its pagesets see it.
    #[inline]
    fn zone_buddy<'a>(&'a self, zone: &'a Zone, take: Take) -> ZoneBuddy<'a, P> {
        ZoneBuddy { platform: self.platform(), mm: self.memmap(), zone, take }
    }

    /// `rmqueue_pcplist()`: a block from this CPU's list, refilling it from the buddy if empty.
    /// `None`: the zone has nothing for it.
    #[inline]
    pub(crate) fn rmqueue_pcplist(
        &self,
        zone: &Zone,
        order: Order,
        mt: Migratetype,
        take: Take,
        preferred_nid: usize,
    ) -> Option<(Pfn, &Page)> {
        let p = self.platform().pin_cpu();
        let pcp = zone.pageset(p.cpu.index());
        let got = pcp.and_then(|pcp| {
            let got = pcp.rmqueue_pinned(self.memmap(), &self.zone_buddy(zone, take), order, mt, take.cold);
            if got.is_some() {
                self.count_alloc(zone, &pcp.events, preferred_nid, order.nr_pages());
            }
            got
        });
        self.platform().unpin_cpu(p);
        got
    }

    /// The order-0 allocation fast path's `rmqueue_pcplist()`: the hot end of this CPU's
    /// `mt` list of `zone`, inlined, on a one-node machine (the caller checked it: every
    /// allocation is then a NUMA hit and local; the fast zone has a pageset for every CPU).
    /// `None` when that takes more than the pop: a CPU that [`Platform::try_pin_cpu`] cannot
    /// pin, an empty hot end; the
    /// caller's full path ([`Kmem::rmqueue_pcplist`]) does the rest. The list's links are
    /// looked up through the flat view of the memmap ([`Memmap::flat`]: the mode tested once),
    /// or the memmap itself when it is not flat.
    #[inline(always)]
    pub(crate) fn rmqueue_pcp_fast(&self, zone: FastZone<'_>, mt: Migratetype) -> Option<(Pfn, &Page)> {
        let mm = self.memmap();
        let p = self.platform().try_pin_cpu()?;
        let pcp = zone.pageset(p.cpu);
        let got = match mm.flat() {
            Some(flat) => pcp.pop_order0(flat, mt),
            None => pcp.pop_order0(mm, mt),
        };
        if got.is_some() {
            // count_alloc() of a one-node machine: a pgalloc, a NUMA hit and a local one.
            bump_locked(&pcp.local_allocs, 1);
        }
        self.platform().unpin_cpu_fast(p);
        got
    }

    /// The order-0 free fast path's `free_unref_page_commit()`: `page` (frame `pfn`, its
    /// pageblock's type `mt`, one of the per-CPU types) on this CPU's list of `zone`, inlined;
    /// the drain when the lists reach `high` out of line; `zone` is the fast zone, whose CPU
    /// pagesets need no test ([`FastZone::pageset`]). `false` (nothing done): a CPU that
    /// [`Platform::try_pin_cpu`] cannot pin; the caller frees through its full path. The push
    /// looks up no descriptor but `page` (the list is singly linked: `pcp/list.rs`).
    #[inline(always)]
    pub(crate) fn free_pcp_fast(&self, zone: FastZone<'_>, pfn: Pfn, page: &Page, mt: Migratetype) -> bool {
        debug_assert!(mt.index() < MIGRATE_PCPTYPES);
        let Some(p) = self.platform().try_pin_cpu() else { return false };
        let pcp = zone.pageset(p.cpu);
        if pcp.push_order0(pfn, page, mt) {
            self.pcp_free_high(zone.zone(), pcp);
        }
        self.platform().unpin_cpu_fast(p);
        true
    }

    /// [`PerCpuPages::free_high`] for the free fast path, out of line: once a batch.
    #[inline(never)]
    fn pcp_free_high(&self, zone: &Zone, pcp: &PerCpuPages) {
        pcp.free_high(self.memmap(), &self.zone_buddy(zone, Take::default()));
    }

    /// `free_unref_page_commit()`: puts a block whose last reference was dropped on this CPU's
    /// list, returning a batch to the buddy when the lists reach `high`. `false`: the block
    /// cannot go on a list (isolated pageblock, no pageset); the caller frees to the buddy.
    /// Always inlined into `free_block`, its caller.
    #[inline(always)]
    pub(crate) fn free_unref_page(&self, zone: &Zone, pfn: Pfn, page: &Page, order: Order, mt: Migratetype) -> bool {
        let mt = match mt {
            Migratetype::Isolate => return false,
            Migratetype::HighAtomic => Migratetype::Movable,
            m => m,
        };
        let p = self.platform().pin_cpu();
        let done = match zone.pageset(p.cpu.index()) {
            Some(pcp) => {
                pcp.free_pinned(self.memmap(), &self.zone_buddy(zone, Take::default()), pfn, page, order, mt);
                true
            }
            None => false,
        };
        self.platform().unpin_cpu(p);
        done
    }

    /// `drain_all_pages()`: returns every CPU's listed pages in every zone to the buddy,
    /// running as each CPU that has some ([`Platform::run_on_cpu`]). Call it with no kmem
    /// lock held and outside any preemption- or interrupt-disabled section.
    pub fn drain_all_pages(&self) {
        let p = self.platform();
        for cpu in 0..self.nr_cpus() {
            if self.zones().any(|z| z.pageset(cpu).is_some_and(|pcp| pcp.count() > 0)) {
                p.run_on_cpu(CpuId(cpu as u32), &mut || self.drain_this_cpu());
            }
        }
    }

    /// `drain_local_pages()`: the current CPU's lists only (any context).
    pub fn drain_local_pages(&self) {
        self.drain_this_cpu();
    }

    /// Every zone's lists of the CPU the caller runs on (pinned here).
    pub(crate) fn drain_this_cpu(&self) {
        let p = self.platform().pin_cpu();
        for zone in self.zones() {
            if let Some(pcp) = zone.pageset(p.cpu.index()) {
                pcp.drain(self.memmap(), &self.zone_buddy(zone, Take::default()));
            }
        }
        self.platform().unpin_cpu(p);
    }

    /// Checks `cpu`'s lists in `zone` (walked as that CPU): the pages found equal its count.
    pub(crate) fn check_pageset(&self, zone: &Zone, cpu: usize) -> bool {
        let Some(pcp) = zone.pageset(cpu) else { return true };
        let mut ok = true;
        let mm = self.memmap();
        let ran = self.platform().run_on_cpu(CpuId(cpu as u32), &mut || {
            ok = pcp.check(mm).is_ok_and(|n| n == pcp.count());
        });
        ok || !ran
    }

    /// Counts an allocation in `ev` (the zone's or a pageset's; its lock is held).
    #[inline]
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
