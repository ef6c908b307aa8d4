//! The flat and dense lookups of the memory map (the module docs of `mm/memmap.rs`, "Flat
//! memmap" and "Dense"): [`Memmap::pfn_to_page`] of a frame kmem vouches for, the
//! [`FlatMemmap`] view a fast path takes once, and the dense slot of any direct-map address.

use super::{Memmap, NOT_DENSE};
use crate::addr::{Pfn, PAGE_SHIFT};
use crate::mm::page::Page;
use crate::sync::Ordering;

impl Memmap {
    /// The flat base `B` (module docs), if the memmap is flat.
    pub fn flat_base(&self) -> Option<usize> {
        let f = self.flat.load(Ordering::Relaxed);
        (f & 1 == 0).then_some(f & !NOT_DENSE)
    }

    /// Marks a flat memmap dense (module docs): boot, once it knows that every frame below
    /// the direct-map limit `limit` (bytes) has a readable descriptor slot at `B + pfn * 32`
    /// that is its real descriptor or reads as zero. No effect on a memmap that is not flat.
    /// Boot calls it before the machine is shared (hence `&mut`).
    ///
    /// # Safety
    ///
    /// That property holds, for the life of the memmap: [`Memmap::page_below_limit`] and
    /// [`Memmap::dense_page`] read such slots for any frame below the limit, whoever passed
    /// its address.
    pub(crate) unsafe fn mark_dense(&mut self, limit: u64) {
        let marked = self
            .flat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| (f & 3 == NOT_DENSE).then_some(f & !NOT_DENSE));
        if let Ok(f) = marked {
            self.dense_base = f & !NOT_DENSE;
            // Direct-mapped bytes fit an address (`usize::MAX` caps a 32-bit machine's).
            self.dense_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
        }
    }

    /// The descriptor slot of the frame at physical address `pa`, if `pa` lies below the
    /// direct-map limit boot marked dense with ([`Memmap::mark_dense`]): one compare, one
    /// shift and one add, no test of the memmap's mode (what [`Memmap::page_below_limit`]
    /// adds); `None` above it, and always on a memmap boot did not mark dense, where the
    /// caller takes [`Memmap::page_below_limit`]'s way. The free fast path (`kfree`, C's
    /// `free`) passes an address nobody vouches for, offset from the direct map's base: the
    /// compare is also its range test (the dense bytes are at most the direct map's).
    #[inline(always)]
    pub(crate) fn dense_page(&self, pa: usize) -> Option<&Page> {
        if pa >= self.dense_limit() {
            return None;
        }
        // SAFETY: just checked.
        Some(unsafe { self.dense_slot(pa) })
    }

    /// The bytes below which [`Memmap::dense_slot`] may be used (0 if boot did not mark the
    /// memmap dense).
    #[inline(always)]
    pub(crate) fn dense_limit(&self) -> usize {
        self.dense_bytes
    }

    /// The descriptor slot of the frame at physical address `pa`: `dense_base + pfn * 32`.
    ///
    /// # Safety
    ///
    /// `pa` is below [`Memmap::dense_limit`].
    #[inline(always)]
    pub(crate) unsafe fn dense_slot(&self, pa: usize) -> &Page {
        debug_assert!(pa < self.dense_limit());
        // SAFETY: caller's contract; the base is this memmap's, which outlives the borrow.
        unsafe { Self::dense_slot_at(self.dense_base, pa) }
    }

    /// The flat base boot marked the memmap dense with (0 if it did not):
    /// [`Memmap::dense_slot_at`]'s `base`.
    pub(crate) fn dense_base(&self) -> usize {
        self.dense_base
    }

    /// [`Memmap::dense_slot`] of a memmap whose [`Memmap::dense_base`] is `base`, for a
    /// caller that copied its dense words (`slab::free_map`).
    ///
    /// # Safety
    ///
    /// `base` is a dense memmap's base, `pa` is below its [`Memmap::dense_limit`], and the
    /// memmap lives for `'a`.
    #[inline(always)]
    pub(crate) unsafe fn dense_slot_at<'a>(base: usize, pa: usize) -> &'a Page {
        let at = base.wrapping_add((pa >> PAGE_SHIFT) * Page::SIZE);
        // SAFETY: `pa` is below the limit boot marked dense with (caller's contract), whose
        // slots are readable descriptors or zeros for the life of the memmap (`mark_dense`'s
        // contract). A slot's address is never 0 (telling the compiler so spares the callers
        // a null test).
        unsafe {
            core::hint::assert_unchecked(at != 0);
            &*(at as *const Page)
        }
    }

    /// True while the memmap is flat and dense (module docs).
    pub fn is_dense(&self) -> bool {
        self.flat.load(Ordering::Relaxed) & 3 == 0
    }

    /// True while every present section's descriptors lie in one array indexed by pfn
    /// (module docs), so [`Memmap::pfn_to_page`] is one multiply-add.
    pub fn is_flat(&self) -> bool {
        self.flat.load(Ordering::Relaxed) & 1 == 0
    }

    /// `pfn_to_page()` of a frame kmem vouches for: one on its own free or per-CPU lists, in
    /// a block it handed out or holds, so in a present section. On a flat memmap one
    /// multiply-add (module docs), else the sparse lookup.
    ///
    /// # Panics
    ///
    /// If the memmap is not flat and `pfn`'s section is absent (a corrupt list link).
    #[inline(always)]
    pub(crate) fn pfn_to_page(&self, pfn: Pfn) -> &Page {
        let flat = self.flat.load(Ordering::Relaxed);
        // Dense first: the same one-bit-test cost as flat, and the shape of the machines
        // that matter (every vmemmap machine); a flat, not dense one takes a second test.
        // (A `match flat & 3` here costs page_order0 three instructions: keep this shape.)
        let base = if flat & 3 == 0 {
            flat
        } else if flat & 1 == 0 {
            flat - NOT_DENSE
        } else {
            // Inline, not a call: a call on the cold side would make the hot side keep its
            // live values in callee-saved registers or on the stack.
            return self.page(pfn).expect("a frame of kmem's lists has a descriptor");
        };
        debug_assert!(self.page(pfn).is_some(), "pfn_to_page({pfn:?}): no present section");
        let at = base.wrapping_add(pfn.as_usize() * Page::SIZE);
        // SAFETY: the flat base is every present section's map word (`set_section_map`), so
        // `at` is `pfn`'s descriptor in its section's array, which lives as long as `self`:
        // `pfn` lies in a present section (this function's contract, which every caller meets
        // with a frame from kmem's own lists or blocks).
        unsafe { &*(at as *const Page) }
    }

    /// The flat view of the memmap ([`FlatMemmap`]), if it is flat now: one load and one bit
    /// test, made once by a fast path that then looks up every frame it meets with a
    /// multiply-add and no further test of the mode.
    #[inline(always)]
    pub(crate) fn flat(&self) -> Option<FlatMemmap<'_>> {
        let flat = self.flat.load(Ordering::Relaxed);
        (flat & 1 == 0).then_some(FlatMemmap { mm: self, base: flat & !NOT_DENSE })
    }

    /// The descriptor slot of a frame below the direct-map limit that nobody vouches for (the
    /// frame of a pointer passed to `kfree`): on a dense memmap one multiply-add and no load
    /// but the base's (the slot is the frame's descriptor, or reads as zero: no flags, no page
    /// type, nothing takes it for a slab); otherwise the checked [`Memmap::page`].
    #[inline(always)]
    pub fn page_below_limit(&self, pfn: Pfn) -> Option<&Page> {
        let flat = self.flat.load(Ordering::Relaxed);
        if flat & 3 == 0 {
            let at = flat.wrapping_add(pfn.as_usize() * Page::SIZE);
            // SAFETY: a dense memmap (`mark_dense`'s contract) has a readable slot that is the
            // frame's descriptor or zeros at `B + pfn * 32` for every frame below the
            // direct-map limit, for its whole life; callers pass only such frames. A slot's
            // address is never 0 (telling the compiler so spares the callers a null test).
            unsafe {
                core::hint::assert_unchecked(at != 0);
                Some(&*(at as *const Page))
            }
        } else {
            self.page(pfn)
        }
    }
}

/// A flat memmap's lookups with the mode tested once ([`Memmap::flat`]): `pfn_to_page` of a
/// frame kmem vouches for is `base + pfn * 32`, Linux's FLATMEM / SPARSEMEM_VMEMMAP
/// `pfn_to_page`, however many links a list operation follows. A section that becomes
/// present elsewhere (hot-add) ends flatness; its frames reach kmem's lists only after
/// [`Memmap::set_section_map`] returns, and a fast path pins its CPU before it takes the view,
/// so it never meets such a frame with a view taken before.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlatMemmap<'a> {
    mm: &'a Memmap,
    base: usize,
}

impl<'a> FlatMemmap<'a> {
    /// `pfn_to_page()` of a frame kmem vouches for (as [`Memmap::pfn_to_page`]'s callers):
    /// one multiply-add.
    #[inline(always)]
    pub(crate) fn pfn_to_page(&self, pfn: Pfn) -> &'a Page {
        debug_assert!(self.mm.page(pfn).is_some(), "pfn_to_page({pfn:?}): no present section");
        let at = self.base.wrapping_add(pfn.as_usize() * Page::SIZE);
        // SAFETY: `base` was the flat base when the view was taken: every present section's
        // map word (`set_section_map`), so `at` is `pfn`'s descriptor in its section's array,
        // which lives as long as the memmap; `pfn` lies in a present section (the contract
        // every caller meets with a frame from kmem's own lists or blocks). A descriptor's
        // address is never 0 (telling the compiler so spares the callers a null test, which
        // an `Option` of the reference would otherwise make).
        unsafe {
            core::hint::assert_unchecked(at != 0);
            &*(at as *const Page)
        }
    }
}
