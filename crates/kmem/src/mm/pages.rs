//! [`Pages`]: an owning handle to a block from the page allocator; dropping it frees the block.

use core::fmt;

use crate::addr::{Order, Pfn, VirtAddr};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page_ref::{AllocError, PageRef};
use crate::platform::Platform;

/// A block of `2^order` pages owned by this handle.
///
/// ```
/// use kmem::{Gfp, Order};
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut block = m.alloc(Gfp::KERNEL | Gfp::ZERO, Order::of(1)).unwrap();
/// let bytes = block.as_mut_slice().unwrap();
/// assert_eq!(bytes.len(), 8192);
/// assert!(bytes.iter().all(|&b| b == 0));
/// bytes[0] = 42;
/// drop(block); // back to the buddy lists
/// ```
pub struct Pages<'m, P: Platform> {
    kmem: &'m Kmem<P>,
    page: PageRef<'m>,
    order: Order,
}

impl<P: Platform> Kmem<P> {
    /// Allocates an owned block (`alloc_pages` with a `Drop` that frees it).
    pub fn alloc(&self, gfp: Gfp, order: Order) -> Result<Pages<'_, P>, AllocError> {
        let page = self.alloc_pages(gfp, order)?;
        Ok(Pages { kmem: self, page, order })
    }
}

impl<'m, P: Platform> Pages<'m, P> {
    /// The machine.
    pub(crate) fn kmem(&self) -> &'m Kmem<P> {
        self.kmem
    }
    /// The first page.
    pub fn page(&self) -> PageRef<'m> {
        self.page
    }
    /// The first frame.
    pub fn pfn(&self) -> Pfn {
        self.page.pfn()
    }
    /// The block's order.
    pub fn order(&self) -> Order {
        self.order
    }
    /// Direct-map address; `None` for HighMem (unless it is `kmap`ped: its pkmap address).
    pub fn addr(&self) -> Option<VirtAddr> {
        self.kmem.page_address(self.page)
    }
    /// The block's bytes through the direct map; `None` for HighMem (use
    /// [`Pages::read_at`]/[`Pages::write_at`], or `kmap_local`).
    pub fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        let va = self.kmem.phys_to_virt(self.pfn().phys())?;
        // SAFETY: this handle owns the whole block (allocated with `order`, freed only by
        // drop or by unsafe raw calls whose contract forbids freeing what a handle owns), and the
        // direct map maps it writable for the machine's life, which `'m` bounds.
        Some(unsafe { core::slice::from_raw_parts_mut(va.as_mut_ptr::<u8>(), self.order.bytes()) })
    }
    /// Gives up ownership without freeing (`into_raw`); free later with `__free_pages`.
    pub fn into_raw(self) -> PageRef<'m> {
        let p = self.page;
        core::mem::forget(self);
        p
    }
    /// Takes ownership of a raw block.
    ///
    /// # Safety
    ///
    /// `page` must start a block of `order` that the caller owns (one reference), on `kmem`.
    pub unsafe fn from_raw(kmem: &'m Kmem<P>, page: PageRef<'m>, order: Order) -> Self {
        Self { kmem, page, order }
    }
}

impl<P: Platform> Drop for Pages<'_, P> {
    fn drop(&mut self) {
        // SAFETY: the handle owns one reference to the block of `order` and is going away.
        unsafe { self.kmem.__free_pages(self.page, self.order) }
    }
}

impl<P: Platform> fmt::Debug for Pages<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages").field("pfn", &self.pfn()).field("order", &self.order).finish()
    }
}
