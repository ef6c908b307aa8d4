//! The helpers Linux users expect (`include/linux/highmem.h`): `clear_highpage`,
//! `memzero_page`, `memcpy_to_page`, `memcpy_from_page`, `copy_highpage`, and
//! `kernel_init_pages` under `__GFP_ZERO`. Each maps a HighMem page with `kmap_local` for the
//! access; lowmem pages are reached through the direct map. Safe wrappers on the owning
//! [`Pages`] handle read and write any block, HighMem included.

use crate::addr::{Order, Pfn, PAGE_SIZE};
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::mm::pages::Pages;
use crate::platform::Platform;

impl<P: Platform> Kmem<P> {
    /// Runs `f` on the address of frame `pfn`, mapped with `kmap_local` if it is HighMem.
    fn with_frame<R>(&self, pfn: Pfn, f: impl FnOnce(*mut u8) -> R) -> R {
        if let Some(va) = self.phys_to_virt(pfn.phys()) {
            return f(va.as_mut_ptr());
        }
        let h = self.highmem().expect("a HighMem frame on a machine without a kmap area");
        let va = match self.kmap_local_pfn(h, pfn) {
            Ok(va) => va,
            Err(e) => panic!("cannot map HighMem frame {:#x}: {e}", pfn.as_usize()),
        };
        let r = f(va.as_mut_ptr());
        self.kunmap_local(va);
        r
    }

    /// Zeroes a block for `__GFP_ZERO` (`kernel_init_pages`: `clear_highpage` per page;
    /// HighMem pages one at a time through `kmap_local`). Never inlined: it would make
    /// `prep_new_page` too large to inline into the allocation fast path (+39 instructions
    /// per order-0 pair, `scripts/cost_check.sh`).
    #[inline(never)]
    pub(crate) fn clear_pages(&self, pfn: Pfn, order: Order) {
        let dm = self.direct_map();
        let last = crate::addr::PhysAddr::new(pfn.phys().as_u64() + order.bytes() as u64 - 1);
        if let Some(va) = dm.phys_to_virt(last).and(dm.phys_to_virt(pfn.phys())) {
            // SAFETY: the block was just taken off the free lists, so nobody else uses it, and
            // it lies wholly in the direct map, which maps RAM writable (boot's contract).
            unsafe { core::ptr::write_bytes(va.as_mut_ptr::<u8>(), 0, order.bytes()) };
            return;
        }
        for i in 0..order.nr_pages() {
            // SAFETY: the page is ours (just allocated) and mapped writable for the closure.
            self.with_frame(pfn.add(i), |p| unsafe { core::ptr::write_bytes(p, 0, PAGE_SIZE) });
        }
    }

    /// Whether `[offset, offset + len)` fits in a page; reports `VM_BUG_ON` otherwise.
    fn page_range_ok(&self, func: &str, offset: usize, len: usize) -> bool {
        if offset.checked_add(len).is_some_and(|e| e <= PAGE_SIZE) {
            return true;
        }
        self.highmem_bug(func, &|w| write!(w, "VM_BUG_ON(offset + len > PAGE_SIZE): offset {offset}, len {len}"));
        false
    }

    /// `clear_highpage()`: zeroes one page.
    ///
    /// # Safety
    ///
    /// The caller owns the page's contents: nothing else reads or writes it meanwhile.
    pub unsafe fn clear_highpage(&self, page: PageRef<'_>) {
        // SAFETY: the caller's contract; the closure gets a writable mapping of the page.
        self.with_frame(page.pfn(), |p| unsafe { core::ptr::write_bytes(p, 0, PAGE_SIZE) });
    }

    /// `memzero_page()`: zeroes `len` bytes at `offset` in the page (a range past the page is
    /// reported and refused).
    ///
    /// # Safety
    ///
    /// As [`Kmem::clear_highpage`], for the range.
    pub unsafe fn memzero_page(&self, page: PageRef<'_>, offset: usize, len: usize) {
        if self.page_range_ok("memzero_page", offset, len) {
            // SAFETY: the caller's contract; the range lies inside the mapped page.
            self.with_frame(page.pfn(), |p| unsafe { core::ptr::write_bytes(p.add(offset), 0, len) });
        }
    }

    /// `memcpy_to_page()`: copies `src` into the page at `offset`.
    ///
    /// # Safety
    ///
    /// As [`Kmem::clear_highpage`], for the range.
    pub unsafe fn memcpy_to_page(&self, page: PageRef<'_>, offset: usize, src: &[u8]) {
        if self.page_range_ok("memcpy_to_page", offset, src.len()) {
            // SAFETY: the caller's contract; the range lies inside the mapped page, and `src`
            // is not in it (it is a shared borrow, the page the caller's to write).
            self.with_frame(page.pfn(), |p| unsafe {
                core::ptr::copy_nonoverlapping(src.as_ptr(), p.add(offset), src.len())
            });
        }
    }

    /// `memcpy_from_page()`: copies from the page at `offset` into `dst`.
    ///
    /// # Safety
    ///
    /// Nothing writes the range meanwhile.
    pub unsafe fn memcpy_from_page(&self, dst: &mut [u8], page: PageRef<'_>, offset: usize) {
        if self.page_range_ok("memcpy_from_page", offset, dst.len()) {
            // SAFETY: the caller's contract; the range lies inside the mapped page.
            self.with_frame(page.pfn(), |p| unsafe {
                core::ptr::copy_nonoverlapping(p.add(offset), dst.as_mut_ptr(), dst.len())
            });
        }
    }

    /// `copy_highpage()`: copies one page to another (both may be HighMem: two nested
    /// `kmap_local` mappings, as Linux's `copy_user_highpage`).
    ///
    /// # Safety
    ///
    /// The caller owns `to`'s contents, and nothing writes `from` meanwhile.
    pub unsafe fn copy_highpage(&self, to: PageRef<'_>, from: PageRef<'_>) {
        self.with_frame(from.pfn(), |src| {
            self.with_frame(to.pfn(), |dst| {
                if src != dst {
                    // SAFETY: the caller's contract; two distinct mapped pages.
                    unsafe { core::ptr::copy_nonoverlapping(src, dst, PAGE_SIZE) };
                }
            })
        });
    }
}

impl<P: Platform> Pages<'_, P> {
    /// Copies `src` into the block at byte `offset` (HighMem pages through `kmap_local`).
    /// Panics if the range does not fit in the block.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) {
        assert!(offset.checked_add(src.len()).is_some_and(|e| e <= self.order().bytes()), "range outside the block");
        let (k, first) = (self.kmem(), self.pfn());
        let mut done = 0;
        while done < src.len() {
            let at = offset + done;
            let n = (PAGE_SIZE - at % PAGE_SIZE).min(src.len() - done);
            let page = k.pfn_to_page(first.add(at / PAGE_SIZE)).expect("block pages have descriptors");
            // SAFETY: this handle owns the block, and `&mut self` excludes other accesses.
            unsafe { k.memcpy_to_page(page, at % PAGE_SIZE, &src[done..done + n]) };
            done += n;
        }
    }

    /// Copies from the block at byte `offset` into `dst` (HighMem pages through
    /// `kmap_local`). Panics if the range does not fit in the block.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) {
        assert!(offset.checked_add(dst.len()).is_some_and(|e| e <= self.order().bytes()), "range outside the block");
        let (k, first) = (self.kmem(), self.pfn());
        let mut done = 0;
        while done < dst.len() {
            let at = offset + done;
            let n = (PAGE_SIZE - at % PAGE_SIZE).min(dst.len() - done);
            let page = k.pfn_to_page(first.add(at / PAGE_SIZE)).expect("block pages have descriptors");
            // SAFETY: this handle owns the block; writers need `&mut self`.
            unsafe { k.memcpy_from_page(&mut dst[done..done + n], page, at % PAGE_SIZE) };
            done += n;
        }
    }
}
