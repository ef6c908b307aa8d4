//! Free page reporting (`mm/page_reporting.c`): hand the contents of large free blocks back
//! to whoever provides the RAM (a hypervisor's balloon, or a hosted machine's host), so an
//! idle machine does not keep memory it does not use.
//!
//! Blocks of at least the reporting order that were not reported yet are *isolated* (taken
//! off the free lists under the zone lock, as `__isolate_free_page`), handed to the caller's
//! `report` with no lock held (it may make system calls), then put back marked `REPORTED`
//! (`__putback_isolated_page`). The mark is dropped when the block is allocated or merges
//! with an unreported buddy, so each block is reported once per time it becomes free.

#![forbid(unsafe_code)]

use crate::addr::{Order, Pfn};
use crate::machine::Kmem;
use crate::mm::buddy;
use crate::mm::free_area::buddy_migratetype;
use crate::mm::page::pg;
use crate::mm::zone_type::{Migratetype, MIGRATE_PCPTYPES};
use crate::platform::Platform;

/// `PAGE_REPORTING_MIN_ORDER`: pageblock order (2 MiB blocks).
pub const PAGE_REPORTING_MIN_ORDER: Order = Order::PAGEBLOCK;
/// Blocks isolated per zone-lock section (`PAGE_REPORTING_CAPACITY`).
const CAPACITY: usize = 32;

impl<P: Platform> Kmem<P> {
    /// Reports up to `budget` free blocks of order `min_order` or more that were not reported
    /// since they last became free: `report(pfn, order)` is called for each with no lock held
    /// while the block is off the free lists, so its memory may be discarded (its contents
    /// are garbage anyway). `report` returns whether the block reads as zero afterwards (its
    /// memory discarded and zero-filled on the next touch, as `MADV_DONTNEED` leaves private
    /// anonymous memory): such a block is marked so (`mm/zeroed.rs`), and a `__GFP_ZERO`
    /// allocation of it skips the clearing. Returns the blocks reported.
    ///
    /// ```
    /// use kmem::{Order, Pfn};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let mut pages = 0;
    /// let n = m.report_free_pages(Order::PAGEBLOCK, usize::MAX, &mut |_pfn: Pfn, o: Order| {
    ///     pages += o.nr_pages();
    ///     false // the memory was kept as it was
    /// });
    /// assert!(n > 0 && pages > 10_000);
    /// // Nothing changed since: nothing new to report.
    /// assert_eq!(m.report_free_pages(Order::PAGEBLOCK, usize::MAX, &mut |_, _| false), 0);
    /// ```
    pub fn report_free_pages(
        &self,
        min_order: Order,
        budget: usize,
        report: &mut dyn FnMut(Pfn, Order) -> bool,
    ) -> usize {
        let mm = self.memmap();
        let mut done = 0;
        for zone in self.zones().filter(|z| z.is_populated()) {
            loop {
                let mut batch = [(Pfn::new(0), Order::ZERO, Migratetype::Movable, false); CAPACITY];
                let mut n = 0;
                {
                    let g = zone.area.lock(self.platform());
                    'orders: for order in Order::all().rev().filter(|o| *o >= min_order) {
                        for mt in Migratetype::ALL.into_iter().take(MIGRATE_PCPTYPES) {
                            while n < CAPACITY && done + n < budget {
                                // Unreported blocks sit at the head: reported ones go back
                                // to the tail.
                                let Some(pfn) = zone.area.first(&g, order, mt) else { break };
                                let page = mm.pfn_to_page(pfn);
                                if page.test(pg::REPORTED) {
                                    break;
                                }
                                let bmt = buddy_migratetype(page);
                                zone.area.del(&g, mm, pfn);
                                zone.mod_free_pages(-(order.nr_pages() as isize));
                                batch[n] = (pfn, order, bmt, false);
                                n += 1;
                            }
                            if n == CAPACITY || done + n >= budget {
                                break 'orders;
                            }
                        }
                    }
                }
                if n == 0 {
                    break;
                }
                for (pfn, order, _, zeroed) in &mut batch[..n] {
                    *zeroed = report(*pfn, *order);
                }
                let g = zone.area.lock(self.platform());
                for &(pfn, order, mt, zeroed) in &batch[..n] {
                    let page = mm.pfn_to_page(pfn);
                    page.set_exclusive(if zeroed { pg::REPORTED | pg::ZEROED } else { pg::REPORTED });
                    buddy::free_one_page(&g, zone, mm, pfn, order, mt, true);
                }
                drop(g);
                done += n;
                if done >= budget || n < CAPACITY {
                    break;
                }
            }
        }
        done
    }
}
