//! The full scanner: walks every free list of every zone and cross-checks it against the
//! counters and the page descriptors. O(free blocks + frames); for tests and debugging.

#![forbid(unsafe_code)]

use crate::addr::{Order, Pfn, PAGEBLOCK_NR_PAGES};
use crate::machine::Kmem;
use crate::mm::free_area::{buddy_migratetype, FreeAreaCorruption};
use crate::mm::memmap::{Memmap, MAX_ORDER_NR_PAGES};
use crate::mm::zone::Zone;
use crate::mm::zone_type::Migratetype;
use crate::platform::Platform;

/// What [`Kmem::verify`] found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// A free list is malformed.
    FreeList {
        /// Node of the zone.
        node: usize,
        /// Zone name.
        zone: &'static str,
        /// What was wrong.
        what: FreeAreaCorruption,
    },
    /// The zone's free-page counter disagrees with its lists.
    FreeCount {
        /// Node of the zone.
        node: usize,
        /// Zone name.
        zone: &'static str,
        /// Pages on the lists.
        listed: usize,
        /// The counter.
        counter: usize,
    },
    /// A per-CPU list is malformed, or its count disagrees with it.
    PcpList {
        /// Node of the zone.
        node: usize,
        /// Zone name.
        zone: &'static str,
        /// The CPU.
        cpu: usize,
    },
    /// A `PG_buddy` page is not on any list (the scan by descriptor found more free pages than
    /// the lists hold), or a free block overlaps another block.
    StrayBuddy {
        /// The page.
        pfn: Pfn,
    },
    /// A zone's count of deferred frames (struct-page init not done yet) disagrees with its
    /// deferred chunks, or the machine's total with the zones'.
    Deferred {
        /// Node of the zone.
        node: usize,
        /// Zone name.
        zone: &'static str,
        /// Frames of the zone's deferred chunks.
        counted: usize,
        /// The counter.
        counter: usize,
    },
    /// The highatomic reserve's size disagrees with its pageblocks (`pageblock_nr_pages` for
    /// each `HighAtomic` one), or a free block of a `HighAtomic` pageblock is on another
    /// type's list or the other way round.
    HighAtomic {
        /// Node of the zone.
        node: usize,
        /// Zone name.
        zone: &'static str,
        /// Pages in the zone's `HighAtomic` pageblocks.
        counted: usize,
        /// `nr_reserved_highatomic`.
        counter: usize,
    },
    /// The vmalloc area trees are malformed or do not tile the vmalloc range.
    VmapAreas {
        /// Where the check failed.
        addr: usize,
    },
}

impl<P: Platform> Kmem<P> {
    /// Checks every zone's free lists, counters and `PG_buddy` flags, every per-CPU list, the
    /// deferred-init counts (`boot/deferred.rs`), and the vmalloc area trees
    /// ([`Kmem::vmalloc_verify`]). Takes each zone lock in turn, so it is safe (if slow) on a
    /// running machine.
    pub fn verify(&self) -> Result<(), VerifyError> {
        let mm = self.memmap();
        for zone in self.zones().filter(|z| z.is_populated()) {
            let (node, name) = (zone.node(), zone.name());
            let g = zone.area.lock(self.platform());
            let listed = zone.area.check(&g, mm).map_err(|what| VerifyError::FreeList { node, zone: name, what })?;
            if listed != zone.free_pages() {
                return Err(VerifyError::FreeCount { node, zone: name, listed, counter: zone.free_pages() });
            }
            // Walk the span: buddy heads must tile without overlap, and cover exactly `listed`.
            let (mut p, mut seen) = (zone.start_pfn(), 0usize);
            while p < zone.end_pfn() {
                if !mm.pfn_valid(p) {
                    // No section, or a deferred chunk (its slots are all zero: no buddy there).
                    p = Pfn::new((p.as_usize() / MAX_ORDER_NR_PAGES + 1) * MAX_ORDER_NR_PAGES);
                    continue;
                }
                match mm.page(p) {
                    Some(page) if page.is_buddy() => {
                        let n = Order::new(page.private() & 0xff).map_or(1, Order::nr_pages);
                        // On the HighAtomic list iff in HighAtomic pageblocks (all of them,
                        // for a block of pageblock order or more).
                        let listed_reserved = buddy_migratetype(page) == Migratetype::HighAtomic;
                        let mut blocks = (0..n).step_by(PAGEBLOCK_NR_PAGES).map(|i| p.add(i));
                        if blocks.any(|b| (mm.pageblock_migratetype(b) == Migratetype::HighAtomic) != listed_reserved) {
                            return Err(highatomic_error(zone, mm));
                        }
                        for i in 1..n {
                            if mm.page(p.add(i)).is_some_and(|t| t.is_buddy()) {
                                return Err(VerifyError::StrayBuddy { pfn: p.add(i) });
                            }
                        }
                        seen += n;
                        p = p.add(n);
                    }
                    _ => p = p.add(1),
                }
            }
            if seen != listed {
                return Err(VerifyError::StrayBuddy { pfn: zone.start_pfn() });
            }
            if let err @ VerifyError::HighAtomic { counted, counter, .. } = highatomic_error(zone, mm) {
                if counted != counter {
                    return Err(err);
                }
            }
            drop(g);
            for cpu in 0..self.nr_cpus() {
                if !self.check_pageset(zone, cpu) {
                    return Err(VerifyError::PcpList { node, zone: name, cpu });
                }
            }
        }
        self.verify_deferred().map_err(|(node, zt, counted, counter)| VerifyError::Deferred {
            node,
            zone: zt.name(),
            counted,
            counter,
        })?;
        self.vmalloc_verify().map_err(|addr| VerifyError::VmapAreas { addr })
    }
}

/// The zone's highatomic figures, as a [`VerifyError::HighAtomic`] (an error only if they
/// disagree, or for the caller's reason).
fn highatomic_error(zone: &Zone, mm: &Memmap) -> VerifyError {
    let (start, end) = (zone.start_pfn().as_usize(), zone.end_pfn().as_usize());
    let blocks = (start..end)
        .step_by(PAGEBLOCK_NR_PAGES)
        .map(Pfn::new)
        .filter(|&p| mm.pfn_valid(p) && mm.pageblock_migratetype(p) == Migratetype::HighAtomic)
        .count();
    VerifyError::HighAtomic {
        node: zone.node(),
        zone: zone.name(),
        counted: blocks * PAGEBLOCK_NR_PAGES,
        counter: zone.nr_reserved_highatomic(),
    }
}
