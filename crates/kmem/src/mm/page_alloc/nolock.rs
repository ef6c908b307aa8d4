//! `alloc_pages_nolock()` (Linux 6.15+, `try_alloc_pages` before 6.16): pages from any
//! context, an NMI that interrupted the page allocator on the same CPU included.
//!
//! Linux's rules (mm/page_alloc.c, `ALLOC_TRYLOCK`): no reclaim, no kswapd, no sleeping, no
//! `__GFP_NOFAIL`; every lock is trylocked and a busy one fails the request; the block is
//! zeroed and compound; no `page allocation failure` report; the min watermark applies
//! (no reserves). kmem's per-CPU page lists are protected by owning the CPU, which an
//! interrupting context cannot know it may do, so this path skips them and goes to the
//! zones' free lists under `spin_trylock` (Linux trylocks the pageset first). Orders are
//! limited to what the per-CPU lists serve (`pcp_allowed_order`), as in Linux.
//!
//! The slab allocator uses it for new slabs of `kmalloc_nolock` (`crate::slab`), with a
//! node's `list_lock` held: that is the established order (list lock, then zone lock), and
//! neither is waited for here.

#![forbid(unsafe_code)]

use crate::addr::Order;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::alloc_flags::AllocFlags;
use crate::mm::buddy::{self, Take};
use crate::mm::page_ref::{AllocError, AllocErrorKind, PageRef};
use crate::mm::pcp::pcp_allowed_order;
use crate::mm::zone::Wmark;
use crate::mm::zone_type::Migratetype;
use crate::platform::Platform;

impl<P: Platform> Kmem<P> {
    /// `alloc_pages_nolock(gfp, nid, order)`: a zeroed block of `2^order` pages (compound
    /// above order 0) from any context, or `Err` without waiting for anything. `gfp` may
    /// hold only `__GFP_ACCOUNT` (Linux's `VM_WARN_ON_ONCE`; kmem reports a `WARNING` and
    /// refuses other bits). `nid` `None` is the caller's node; zones of other nodes follow
    /// in the zonelist's order, as for `alloc_pages`. Errors: `FlagsNotAllowed`, `Busy` when a zone lock was
    /// held, `NoMemory` when no zone passed its min watermark, `OrderTooLarge` above
    /// `PAGE_ALLOC_COSTLY_ORDER` (other than a pageblock).
    ///
    /// ```
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// use kmem::{Gfp, Order};
    /// let page = m.alloc_pages_nolock(Gfp::empty(), None, Order::ZERO).unwrap();
    /// assert_eq!(page.refcount(), 1);
    /// // SAFETY: our block, no longer used.
    /// unsafe { m.__free_pages(page, Order::ZERO) };
    /// ```
    ///
    /// Its pair `free_pages_nolock` is not there yet: blocks go back with `__free_pages` from
    /// a context that may take the zone lock.
    pub fn alloc_pages_nolock(&self, gfp: Gfp, nid: Option<usize>, order: Order) -> Result<PageRef<'_>, AllocError> {
        let err = |kind| AllocError { gfp, order: order.as_u32(), kind };
        if !gfp.without(Gfp::ACCOUNT).is_empty() {
            self.warn_on("alloc_pages_nolock", &|w| {
                write!(w, "gfp {:#x} ({gfp:#}): only __GFP_ACCOUNT is allowed", gfp.bits())
            });
            return Err(err(AllocErrorKind::FlagsNotAllowed));
        }
        if !pcp_allowed_order(order) {
            return Err(err(AllocErrorKind::OrderTooLarge));
        }
        let nid = nid.unwrap_or_else(|| self.numa_node_id());
        self.alloc_pages_trylock(gfp, nid, order)
    }

    /// The allocation of [`Kmem::alloc_pages_nolock`] (`ALLOC_TRYLOCK`), for callers inside
    /// kmem whose `gfp` may also carry zone and mobility bits (a slab cache's `allocflags`):
    /// zeroed, compound, no reserves, every zone lock trylocked.
    pub(crate) fn alloc_pages_trylock(&self, gfp: Gfp, nid: usize, order: Order) -> Result<PageRef<'_>, AllocError> {
        let err = |kind| AllocError { gfp, order: order.as_u32(), kind };
        let node = self.node(nid).ok_or(err(AllocErrorKind::NoSuchNode(nid)))?;
        let highest = match gfp.zone() {
            Ok(gz) => self.highest_zone(gz),
            Err(_) => return Err(err(AllocErrorKind::BadZoneModifiers)),
        };
        let alloc_gfp = Gfp::NOWARN.union(Gfp::ZERO).union(Gfp::COMP).union(Gfp::NOMEMALLOC).union(gfp);
        let mt = if self.state().grouping_disabled { Migratetype::Unmovable } else { alloc_gfp.migratetype() };
        let take = Take { cold: false, grouping_disabled: self.state().grouping_disabled };
        let mut busy = false;
        for zr in node.zonelist().as_slice() {
            if zr.zone_type() > highest {
                continue;
            }
            let Some(zn) = self.node(zr.node as usize) else { continue };
            let zone = zn.zone(zr.zone_type());
            if !self.zone_watermark_fast(zone, order, zone.wmark(Wmark::Min), highest, AllocFlags::WMARK_MIN) {
                continue;
            }
            let Some(g) = zone.area.try_lock_nolock(self.platform()) else {
                busy = true;
                continue;
            };
            let pfn = buddy::rmqueue(&g, zone, self.memmap(), order, mt, take);
            if pfn.is_some() {
                self.count_alloc(zone, &zone.events, nid, order.nr_pages());
            }
            drop(g);
            if let Some(pfn) = pfn {
                let page = self.memmap().pfn_to_page(pfn);
                return Ok(self.prep_new_page(pfn, page, order, alloc_gfp));
            }
        }
        Err(err(if busy { AllocErrorKind::Busy } else { AllocErrorKind::NoMemory }))
    }
}
