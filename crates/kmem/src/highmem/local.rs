//! `kmap_local_page` and `kmap_atomic`: a per-CPU stack of `KM_MAX_IDX` fixmap slots,
//! strictly nested (`__kmap_local_pfn_prot`, `kunmap_local_indexed`). The raw calls detect
//! misuse; the scoped guards ([`KmapScope`], [`KmapLocal`]) make it impossible. See the
//! module docs of [`crate::highmem`].

use core::fmt;
use core::marker::PhantomData;

use super::pkmap::kmap_tables;
use super::{HighmemState, LocalStack, KM_MAX_IDX, RELEASED};
use crate::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::platform::{MapError, PageProt, Platform};
use crate::sync::Ordering;

/// Why a kmap failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmapError {
    /// The CPU's `kmap_local` stack is full (`KM_MAX_IDX` mappings): reported as Linux's
    /// `BUG_ON(idx >= KM_MAX_IDX)`.
    StackFull,
    /// The platform could not map the page.
    Map(MapError),
    /// A HighMem page on a machine with no kmap area.
    NoKmapArea,
    /// The page belongs to another machine (reported).
    OtherMachine,
    /// `kmap_local_folio` of an offset past the folio (reported).
    OutOfFolio,
}

impl fmt::Display for KmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmapError::StackFull => write!(f, "kmap_local stack full ({KM_MAX_IDX} nested mappings)"),
            KmapError::Map(e) => write!(f, "the platform could not map the page: {e:?}"),
            KmapError::NoKmapArea => write!(f, "the machine has no kmap area"),
            KmapError::OtherMachine => write!(f, "the page belongs to another machine"),
            KmapError::OutOfFolio => write!(f, "the offset is past the folio"),
        }
    }
}

impl core::error::Error for KmapError {}

impl<P: Platform> Kmem<P> {
    /// `kmap_local_page()`: a CPU-local mapping of `page` until [`Kmem::kunmap_local`], which
    /// must come in reverse order of mapping (a stack). A lowmem page's direct-map address
    /// (nothing to unmap). The caller keeps its CPU until the unmap (`migrate_disable`), but
    /// preemption and page faults stay enabled. Prefer [`Kmem::kmap_local_scope`], whose
    /// guards cannot be unmapped out of order.
    #[inline(always)]
    pub fn kmap_local_page(&self, page: PageRef<'_>) -> Result<VirtAddr, KmapError> {
        if let Some(va) = self.phys_to_virt(page.pfn().phys()) {
            return Ok(va);
        }
        match self.highmem() {
            Some(h) if self.owns_page(page) => self.kmap_local_pfn(h, page.pfn()),
            _ => self.kmap_local_refused(page),
        }
    }

    /// `kmap_local_folio()`: maps the page of the compound page (folio) `folio` that holds
    /// byte `offset`, and returns the address of that byte; end it with
    /// [`Kmem::kunmap_local`] (any address inside the page). Only that one page is mapped.
    /// An offset past the folio is Linux's `VM_BUG_ON`: reported, refused.
    ///
    /// ```
    /// use kmem::{Gfp, Order};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(1024).preset(kmem_hosted::Preset::X86_32).build().unwrap();
    /// let folio = m.alloc_pages(Gfp::HIGHUSER | Gfp::COMP | Gfp::ZERO, Order::of(2)).unwrap();
    /// let va = m.kmap_local_folio(folio, 3 * 4096 + 100).unwrap();
    /// assert_eq!(va.as_usize() % 4096, 100);
    /// // SAFETY: a byte of our folio's fourth page, mapped until the unmap.
    /// unsafe { va.as_mut_ptr::<u8>().write(7) };
    /// m.kunmap_local(va);
    /// // SAFETY: ours, no longer used.
    /// unsafe { m.__free_pages(folio, Order::of(2)) };
    /// ```
    pub fn kmap_local_folio(&self, folio: PageRef<'_>, offset: usize) -> Result<VirtAddr, KmapError> {
        let head = self.compound_head(folio);
        let size = PAGE_SIZE << self.compound_order(head);
        let page = match (offset < size).then(|| self.pfn_to_page(head.pfn().add(offset / PAGE_SIZE))).flatten() {
            Some(p) => p,
            None => {
                self.highmem_bug("kmap_local_folio", &|w| {
                    write!(w, "VM_BUG_ON: offset {offset:#x} past a folio of {size:#x} bytes")
                });
                return Err(KmapError::OutOfFolio);
            }
        };
        let va = self.kmap_local_page(page)?;
        Ok(VirtAddr::new(va.as_usize() + offset % PAGE_SIZE))
    }

    /// A HighMem page of another machine, or a machine without a kmap area.
    #[cold]
    #[inline(never)]
    fn kmap_local_refused(&self, page: PageRef<'_>) -> Result<VirtAddr, KmapError> {
        if !self.owns_page(page) {
            self.page_of_other_machine("mm/highmem.c", "kmap_local_page", page);
            return Err(KmapError::OtherMachine);
        }
        Err(KmapError::NoKmapArea)
    }

    /// `__kmap_local_pfn_prot()`. The fast path: the slot on top of this CPU's stack already
    /// maps the frame (no page-table change); everything else is [`Self::kmap_local_push_slow`].
    #[inline(always)]
    pub(crate) fn kmap_local_pfn(&self, h: &HighmemState, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        let cpu = self.platform().migrate_disable().index();
        let st = &h.local[cpu];
        let idx = st.idx.load(Ordering::Relaxed) as usize;
        let frame = pfn.as_usize() as u32 + 1;
        if idx < KM_MAX_IDX {
            // Push first: an interrupt arriving now pushes above this entry (and may remap the
            // slots above it, never this one).
            st.idx.store(idx as u32 + 1, Ordering::Relaxed);
            if st.mapped[idx].load(Ordering::Relaxed) == frame {
                st.live[idx].store(frame, Ordering::Relaxed);
                return Ok(VirtAddr::new(h.fixmap_addr(cpu, idx)));
            }
        }
        self.kmap_local_push_slow(h, cpu, idx, pfn)
    }

    /// The rest of `__kmap_local_pfn_prot()`: a full stack (reported), or a slot whose PTE
    /// maps another frame (remapped). Entered with the CPU held and, below `KM_MAX_IDX`, the
    /// entry pushed.
    #[cold]
    #[inline(never)]
    fn kmap_local_push_slow(&self, h: &HighmemState, cpu: usize, idx: usize, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        let st = &h.local[cpu];
        if idx >= KM_MAX_IDX {
            self.platform().migrate_enable();
            self.kmap_local_overflow();
            return Err(KmapError::StackFull);
        }
        let va = h.fixmap_addr(cpu, idx);
        if let Err(e) = self.fixmap_set(h, st, idx, va, pfn) {
            st.idx.store(idx as u32, Ordering::Relaxed);
            self.platform().migrate_enable();
            return Err(KmapError::Map(e));
        }
        st.live[idx].store(pfn.as_usize() as u32 + 1, Ordering::Relaxed);
        Ok(VirtAddr::new(va))
    }

    /// Points slot `idx`'s PTE at `pfn` (the slot's mapping is kept after `kunmap_local`, so
    /// this runs only when the slot mapped another frame).
    fn fixmap_set(&self, h: &HighmemState, st: &LocalStack, idx: usize, va: usize, pfn: Pfn) -> Result<(), MapError> {
        let va = VirtAddr::new(va);
        if st.mapped[idx].swap(0, Ordering::Relaxed) != 0 {
            // SAFETY: the slot is this CPU's (held), and no mapping uses it (it is at the top
            // of the stack, just pushed).
            let f = unsafe { self.platform().unmap_kernel_pages(va, 1) };
            self.platform().flush_tlb_kernel_range(f);
        }
        // SAFETY: the slot lies in the kmap area, its PTE was cleared and flushed above (or
        // never set), and the frame is RAM of this machine.
        unsafe { self.platform().map_kernel_pages(va, pfn, 1, PageProt::KERNEL, &mut kmap_tables(self)) }?;
        h.maps.fetch_add(1, Ordering::Relaxed);
        st.mapped[idx].store(pfn.as_usize() as u32 + 1, Ordering::Relaxed);
        Ok(())
    }

    #[cold]
    fn kmap_local_overflow(&self) {
        self.highmem_bug("kmap_local_idx_push", &|w| {
            write!(w, "BUG_ON(idx >= KM_MAX_IDX): more than {KM_MAX_IDX} nested kmap_local mappings on this CPU")
        });
    }

    /// `kunmap_local()`: ends the innermost `kmap_local_page` mapping, at `addr`. Addresses
    /// outside the fixmap slots (lowmem pages) need nothing. Unmapping anything but the
    /// innermost mapping is reported as Linux's `WARN_ON_ONCE(addr != __fix_to_virt(...))`;
    /// the other mappings stay intact (the entry is released and popped when everything above
    /// it is). An address that is not mapped on this CPU is reported and ignored.
    pub fn kunmap_local(&self, addr: VirtAddr) {
        self.kunmap_local_indexed(addr);
    }

    /// Returns whether `addr` was a mapping of the fixmap stack that this call ended. The fast
    /// path: the innermost mapping of the CPU the caller holds, with no released entry under
    /// it; everything else (and every misuse) is [`Self::kunmap_local_careful`].
    #[inline]
    fn kunmap_local_indexed(&self, addr: VirtAddr) -> Option<bool> {
        let h = self.highmem()?;
        let slot = (addr.as_usize().wrapping_sub(h.fixmap_base)) / PAGE_SIZE;
        let (scpu, sidx) = (slot / KM_MAX_IDX, slot % KM_MAX_IDX);
        // The held CPU is below the CPU count, so `scpu` matching it also bounds `addr`
        // (an address below the fixmap slots wraps to a huge `scpu`).
        if let (Some(st), Some(cpu)) = (h.local.get(scpu), self.platform().held_cpu()) {
            if cpu.index() == scpu
                && st.idx.load(Ordering::Relaxed) as usize == sidx + 1
                && (sidx == 0 || st.live[sidx - 1].load(Ordering::Relaxed) != RELEASED)
            {
                let entry = st.live[sidx].load(Ordering::Relaxed);
                if entry != 0 && entry != RELEASED {
                    st.live[sidx].store(0, Ordering::Relaxed);
                    st.idx.store(sidx as u32, Ordering::Relaxed);
                    self.platform().migrate_enable();
                    return Some(true);
                }
            }
        }
        self.kunmap_local_careful(h, addr)
    }

    /// `kunmap_local_indexed()` with every check and report: addresses outside the fixmap
    /// slots, another CPU's slot, an entry not mapped, out-of-order unmapping, and the pop of
    /// released entries under the innermost one.
    #[cold]
    #[inline(never)]
    fn kunmap_local_careful(&self, h: &HighmemState, addr: VirtAddr) -> Option<bool> {
        let a = addr.as_usize() & !(PAGE_SIZE - 1);
        if !(h.fixmap_base..h.fixmap_end).contains(&a) {
            if h.pkmap_nr(a).is_some() {
                self.highmem_warn("kunmap_local_indexed", &|w| {
                    write!(w, "{:#x} is a kmap() address: unmap it with kunmap()", addr.as_usize())
                });
                return None;
            }
            return Some(false);
        }
        let slot = (a - h.fixmap_base) / PAGE_SIZE;
        let (scpu, sidx) = (slot / KM_MAX_IDX, slot % KM_MAX_IDX);
        // Hold the CPU while looking at its stack (a nested hold if the caller has it).
        let cpu = self.platform().migrate_disable().index();
        let st = &h.local[cpu];
        let idx = st.idx.load(Ordering::Relaxed) as usize;
        let entry = if sidx < idx { st.live[sidx].load(Ordering::Relaxed) } else { 0 };
        if scpu != cpu || entry == 0 || entry == RELEASED {
            self.platform().migrate_enable();
            self.highmem_warn("kunmap_local_indexed", &|w| {
                write!(w, "{:#x} is not mapped by kmap_local on CPU {cpu} (unbalanced kunmap_local)", addr.as_usize())
            });
            return None;
        }
        if sidx + 1 != idx {
            st.live[sidx].store(RELEASED, Ordering::Relaxed);
            self.platform().migrate_enable();
            let top = h.fixmap_addr(cpu, idx - 1);
            self.highmem_warn("kunmap_local_indexed", &|w| {
                write!(
                    w,
                    "WARN_ON_ONCE(addr != __fix_to_virt(FIX_KMAP_BEGIN + idx)): kunmap_local({:#x}) out of order, \
                     innermost mapping is {top:#x}",
                    addr.as_usize()
                )
            });
            self.platform().migrate_enable();
            return Some(true);
        }
        let mut i = sidx;
        st.live[i].store(0, Ordering::Relaxed);
        while i > 0 && st.live[i - 1].load(Ordering::Relaxed) == RELEASED {
            i -= 1;
            st.live[i].store(0, Ordering::Relaxed);
        }
        st.idx.store(i as u32, Ordering::Relaxed);
        self.platform().migrate_enable();
        self.platform().migrate_enable();
        Some(true)
    }

    /// `kmap_atomic()`: disables preemption and page faults, then [`Kmem::kmap_local_page`].
    /// Deprecated in Linux in favour of `kmap_local_page`; end it with [`Kmem::kunmap_atomic`].
    pub fn kmap_atomic(&self, page: PageRef<'_>) -> Result<VirtAddr, KmapError> {
        let cpu = self.platform().preempt_disable_cpu().index();
        self.pagefault_disable(cpu);
        let r = self.kmap_local_page(page);
        if r.is_err() {
            self.pagefault_enable(cpu);
            self.platform().preempt_enable();
        }
        r
    }

    /// `kunmap_atomic()`: [`Kmem::kunmap_local`], then page faults and preemption back on.
    /// An address that was not mapped is reported and changes nothing.
    pub fn kunmap_atomic(&self, addr: VirtAddr) {
        let ended = match self.highmem() {
            Some(_) => self.kunmap_local_indexed(addr).is_some(),
            None => true,
        };
        if ended {
            let cpu = self.platform().current_cpu().index();
            self.pagefault_enable(cpu);
            self.platform().preempt_enable();
        }
    }

    fn pagefault_disable(&self, cpu: usize) {
        if let Some(h) = self.highmem() {
            let st = &h.local[cpu].pagefault;
            st.store(st.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    fn pagefault_enable(&self, cpu: usize) {
        if let Some(h) = self.highmem() {
            let st = &h.local[cpu].pagefault;
            st.store(st.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
        }
    }

    /// `pagefault_disabled()`: inside a `kmap_atomic` section on this CPU.
    pub fn pagefault_disabled(&self) -> bool {
        let cpu = self.platform().current_cpu().index();
        self.highmem().is_some_and(|h| h.local[cpu].pagefault.load(Ordering::Relaxed) != 0)
    }

    /// Mappings on the current CPU's `kmap_local` stack (`kmap_ctrl.idx`), released entries
    /// still under a live one included.
    pub fn kmap_local_depth(&self) -> usize {
        let cpu = self.platform().current_cpu().index();
        self.highmem().map_or(0, |h| h.local[cpu].idx.load(Ordering::Relaxed) as usize)
    }

    /// Runs `f` with a [`KmapScope`], the root of safe `kmap_local` guards: each mapping
    /// borrows its parent mutably, so inner mappings must be dropped (unmapped) before outer
    /// ones, and none outlives the scope.
    ///
    /// ```
    /// use kmem::{Gfp, Order};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(1024).preset(kmem_hosted::Preset::X86_32).build().unwrap();
    /// let a = m.alloc(Gfp::HIGHUSER | Gfp::ZERO, Order::ZERO).unwrap();
    /// let b = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    /// m.kmap_local_scope(|s| {
    ///     let mut ma = s.map(a.page()).unwrap();
    ///     let src = ma.as_ptr(); // taken before nesting: `mb` borrows `ma`
    ///     let mb = ma.map(b.page()).unwrap();
    ///     // SAFETY: both pages are ours and mapped for the guards' lifetimes.
    ///     unsafe { core::ptr::copy_nonoverlapping(src, mb.as_ptr(), 4096) };
    /// });
    /// ```
    ///
    /// Unmapping the outer mapping first does not compile:
    ///
    /// ```compile_fail,E0505
    /// use kmem::{Gfp, Order};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(1024).preset(kmem_hosted::Preset::X86_32).build().unwrap();
    /// let a = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    /// m.kmap_local_scope(|s| {
    ///     let mut ma = s.map(a.page()).unwrap();
    ///     let mb = ma.map(a.page()).unwrap();
    ///     drop(ma);
    ///     drop(mb);
    /// });
    /// ```
    pub fn kmap_local_scope<R>(&self, f: impl FnOnce(&mut KmapScope<'_, P>) -> R) -> R {
        let mut scope = KmapScope { k: self, _not_send: PhantomData };
        f(&mut scope)
    }
}

/// The root of a nest of `kmap_local` guards (see [`Kmem::kmap_local_scope`]).
pub struct KmapScope<'k, P: Platform> {
    k: &'k Kmem<P>,
    _not_send: PhantomData<*mut ()>,
}

impl<P: Platform> KmapScope<'_, P> {
    /// `kmap_local_page()` as a guard that unmaps on drop.
    pub fn map(&mut self, page: PageRef<'_>) -> Result<KmapLocal<'_, P>, KmapError> {
        KmapLocal::new(self.k, page, false)
    }
    /// `kmap_atomic()` as a guard (preemption and page faults off until it drops).
    pub fn map_atomic(&mut self, page: PageRef<'_>) -> Result<KmapLocal<'_, P>, KmapError> {
        KmapLocal::new(self.k, page, true)
    }
}

/// A `kmap_local_page` (or `kmap_atomic`) mapping, unmapped on drop. Nested mappings borrow
/// it mutably, so they are unmapped first; take its [`KmapLocal::addr`] before nesting to
/// use both pages at once (the mapping outlives the nested one).
pub struct KmapLocal<'s, P: Platform> {
    k: &'s Kmem<P>,
    va: VirtAddr,
    atomic: bool,
    _nest: PhantomData<&'s mut ()>,
    _not_send: PhantomData<*mut ()>,
}

impl<'s, P: Platform> KmapLocal<'s, P> {
    fn new(k: &'s Kmem<P>, page: PageRef<'_>, atomic: bool) -> Result<Self, KmapError> {
        let va = if atomic { k.kmap_atomic(page)? } else { k.kmap_local_page(page)? };
        Ok(Self { k, va, atomic, _nest: PhantomData, _not_send: PhantomData })
    }
    /// A mapping nested inside this one.
    pub fn map(&mut self, page: PageRef<'_>) -> Result<KmapLocal<'_, P>, KmapError> {
        KmapLocal::new(self.k, page, false)
    }
    /// A `kmap_atomic` mapping nested inside this one.
    pub fn map_atomic(&mut self, page: PageRef<'_>) -> Result<KmapLocal<'_, P>, KmapError> {
        KmapLocal::new(self.k, page, true)
    }
    /// The mapping's address (one page).
    pub fn addr(&self) -> VirtAddr {
        self.va
    }
    /// The mapping's address as a pointer to its `PAGE_SIZE` bytes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.va.as_mut_ptr()
    }
}

impl<P: Platform> Drop for KmapLocal<'_, P> {
    fn drop(&mut self) {
        if self.atomic {
            self.k.kunmap_atomic(self.va);
        } else {
            self.k.kunmap_local(self.va);
        }
    }
}

impl<P: Platform> fmt::Debug for KmapLocal<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmapLocal").field("va", &self.va).field("atomic", &self.atomic).finish()
    }
}

impl<P: Platform> fmt::Debug for KmapScope<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmapScope").finish()
    }
}
