//! Zeroing page frames (`clear_highpage`): through the direct map, or one page at a time
//! through the platform's temporary mapping for HighMem. The mechanism under `__GFP_ZERO`
//! (the page allocator's policy code has no `unsafe`). Hosted machines implement
//! `Platform::map_temporary` through their RAM mapping, until a highmem layer brings kmap.

use crate::addr::{Order, Pfn, PhysAddr, PAGE_SIZE};
use crate::machine::Kmem;
use crate::platform::Platform;

impl<P: Platform> Kmem<P> {
    /// Zeroes a block (`clear_highpage` per page; HighMem pages through a temporary mapping).
    pub(crate) fn clear_pages(&self, pfn: Pfn, order: Order) {
        let dm = self.direct_map();
        let last = PhysAddr::new(pfn.phys().as_u64() + order.bytes() as u64 - 1);
        if let Some(va) = dm.phys_to_virt(last).and(dm.phys_to_virt(pfn.phys())) {
            // SAFETY: the block was just taken off the free lists, so nobody else uses it, and
            // it lies wholly in the direct map, which maps RAM writable (boot's contract).
            unsafe { core::ptr::write_bytes(va.as_mut_ptr::<u8>(), 0, order.bytes()) };
            return;
        }
        for i in 0..order.nr_pages() {
            let p = pfn.add(i);
            let va = self.platform().map_temporary(p).expect("platform cannot map a page");
            // SAFETY: the page is ours (just allocated) and `map_temporary` maps a whole
            // writable page until `unmap_temporary` (Platform contract).
            unsafe { core::ptr::write_bytes(va.as_mut_ptr::<u8>(), 0, PAGE_SIZE) };
            self.platform().unmap_temporary(va);
        }
    }
}
