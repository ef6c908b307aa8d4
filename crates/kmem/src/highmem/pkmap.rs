//! `kmap`/`kunmap`: the permanent kmap area (`kmap_high`, `kunmap_high`,
//! `flush_all_zero_pkmaps`, `page_address()` through `page_address_htable`). See the module
//! docs of [`crate::highmem`].

use super::{HighmemState, KmapError, LAST_PKMAP, LAST_PKMAP_MASK};
use crate::addr::{Pfn, VirtAddr};
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::platform::{PageProt, Platform, TlbFlush};
use crate::sync::{Ordering, SpinGuard};
use crate::vmalloc::alloc::TableAlloc;

/// Page tables for the kmap area. Linux populates them once at boot
/// (`permanent_kmaps_init`, `kmap_init`); a platform that asks for one gets it with
/// `GFP_ATOMIC` (the hosted platform never asks).
pub(crate) fn kmap_tables<P: Platform>(k: &Kmem<P>) -> TableAlloc<'_, P> {
    TableAlloc { k, gfp: crate::gfp::Gfp::ATOMIC }
}

impl HighmemState {
    /// The slot mapping `pfn`, if any (`page_address()` of a HighMem page). Caller holds the
    /// lock, or accepts a racy answer.
    pub(crate) fn lookup(&self, pfn: Pfn) -> Option<usize> {
        let want = pfn.as_usize() as u32 + 1;
        let mut s = self.heads[Self::chain(pfn)].load(Ordering::Acquire);
        let mut steps = 0;
        while s != 0 && steps <= LAST_PKMAP {
            let nr = s as usize - 1;
            if self.page[nr].load(Ordering::Acquire) == want {
                return Some(nr);
            }
            s = self.next[nr].load(Ordering::Acquire);
            steps += 1;
        }
        None
    }

    /// `set_page_address(page, PKMAP_ADDR(nr))`. Under the lock.
    fn hash_insert(&self, nr: usize, pfn: Pfn) {
        let c = Self::chain(pfn);
        self.page[nr].store(pfn.as_usize() as u32 + 1, Ordering::Release);
        self.next[nr].store(self.heads[c].load(Ordering::Relaxed), Ordering::Release);
        self.heads[c].store(nr as u16 + 1, Ordering::Release);
    }

    /// `set_page_address(page, NULL)`. Under the lock.
    fn hash_remove(&self, nr: usize) {
        let frame = self.page[nr].load(Ordering::Relaxed);
        if frame == 0 {
            return;
        }
        let c = Self::chain(Pfn::new(frame as usize - 1));
        let next = self.next[nr].load(Ordering::Relaxed);
        let mut link = &self.heads[c];
        loop {
            let s = link.load(Ordering::Relaxed);
            if s == 0 {
                break;
            }
            if s as usize - 1 == nr {
                link.store(next, Ordering::Release);
                break;
            }
            link = &self.next[s as usize - 1];
        }
        self.page[nr].store(0, Ordering::Release);
        self.next[nr].store(0, Ordering::Relaxed);
    }
}

impl<P: Platform> Kmem<P> {
    /// `kmap()`: a mapping of `page` that stays until [`Kmem::kunmap`], usable from any CPU.
    /// A lowmem page's direct-map address; a HighMem page's pkmap slot, shared by every
    /// `kmap` of the page (refcounted). Waits while all `LAST_PKMAP` slots are in use. Must
    /// not be called from atomic context (a `might_sleep` report, then it goes ahead).
    ///
    /// ```
    /// use kmem::{Gfp, Order};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(1024).preset(kmem_hosted::Preset::X86_32).build().unwrap();
    /// let p = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap();
    /// assert!(m.page_address(p).is_none()); // HighMem: no address until mapped
    /// let va = m.kmap(p).unwrap();
    /// assert_eq!(m.page_address(p), Some(va));
    /// m.kunmap(p);
    /// // SAFETY: ours, and no mapping is in use.
    /// unsafe { m.__free_pages(p, Order::ZERO) };
    /// ```
    pub fn kmap(&self, page: PageRef<'_>) -> Result<VirtAddr, KmapError> {
        if self.platform().atomic_context() {
            self.might_sleep_report("mm/highmem.c");
        }
        if !self.owns_page(page) {
            self.page_of_other_machine("mm/highmem.c", "kmap", page);
            return Err(KmapError::OtherMachine);
        }
        if let Some(va) = self.phys_to_virt(page.pfn().phys()) {
            return Ok(va);
        }
        let h = self.highmem().ok_or(KmapError::NoKmapArea)?;
        self.kmap_high(h, page.pfn())
    }

    /// `kmap_high()`.
    fn kmap_high(&self, h: &HighmemState, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        let mut waited = false;
        loop {
            let g = h.lock.lock_irqsave(self.platform());
            let nr = match h.lookup(pfn) {
                Some(nr) => nr,
                None => match self.map_new_virtual(h, &g, pfn)? {
                    Some(nr) => nr,
                    None => {
                        // Every slot has users: wait for a kunmap (`pkmap_map_wait`), then
                        // start again (someone may have mapped the page meanwhile).
                        let gen = h.wait_gen.load(Ordering::Relaxed);
                        drop(g);
                        if !waited {
                            h.waits.fetch_add(1, Ordering::Relaxed);
                            waited = true;
                        }
                        while h.wait_gen.load(Ordering::Acquire) == gen {
                            self.platform().cpu_relax();
                        }
                        continue;
                    }
                },
            };
            let c = h.count[nr].load(Ordering::Relaxed) + 1;
            h.count[nr].store(c, Ordering::Relaxed);
            if c == 2 {
                h.in_use.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(VirtAddr::new(h.pkmap_addr(nr)));
        }
    }

    /// `map_new_virtual()`: the next free slot of the ring, mapped to `pfn` with count 1;
    /// `None` when every slot is in use. Under the lock.
    fn map_new_virtual(&self, h: &HighmemState, _g: &SpinGuard<'_, P>, pfn: Pfn) -> Result<Option<usize>, KmapError> {
        let mut count = LAST_PKMAP;
        let nr = loop {
            let last = (h.last_pkmap_nr.load(Ordering::Relaxed) + 1) & LAST_PKMAP_MASK;
            h.last_pkmap_nr.store(last, Ordering::Relaxed);
            if last == 0 {
                self.flush_all_zero_pkmaps(h);
                count = LAST_PKMAP;
            }
            if h.count[last].load(Ordering::Relaxed) == 0 {
                break last;
            }
            count -= 1;
            if count == 0 {
                return Ok(None);
            }
        };
        // SAFETY: the slot is in the kmap area (the platform's `kmap_range`), count 0 means
        // its PTE was cleared and flushed, and the frame is RAM of this machine.
        unsafe {
            self.platform().map_kernel_pages(
                VirtAddr::new(h.pkmap_addr(nr)),
                pfn,
                1,
                PageProt::KERNEL,
                &mut kmap_tables(self),
            )
        }
        .map_err(KmapError::Map)?;
        h.maps.fetch_add(1, Ordering::Relaxed);
        h.count[nr].store(1, Ordering::Relaxed);
        h.hash_insert(nr, pfn);
        Ok(Some(nr))
    }

    /// `flush_all_zero_pkmaps()`: unmaps every slot with no users (count 1), runs of
    /// neighbours in one call, then one TLB flush of the area. Under the lock.
    fn flush_all_zero_pkmaps(&self, h: &HighmemState) {
        let mut flush = TlbFlush::none();
        let mut need = false;
        let mut i = 0;
        while i < LAST_PKMAP {
            if h.count[i].load(Ordering::Relaxed) != 1 {
                i += 1;
                continue;
            }
            let start = i;
            while i < LAST_PKMAP && h.count[i].load(Ordering::Relaxed) == 1 {
                h.count[i].store(0, Ordering::Relaxed);
                h.hash_remove(i);
                i += 1;
            }
            // SAFETY: slots with count 1 have no users; the range lies in the kmap area.
            let f = unsafe { self.platform().unmap_kernel_pages(VirtAddr::new(h.pkmap_addr(start)), i - start) };
            flush = flush.merge(f);
            need = true;
        }
        if need {
            h.flushes.fetch_add(1, Ordering::Relaxed);
            self.platform().flush_tlb_kernel_range(flush);
        } else {
            flush.done();
        }
    }

    /// `kunmap()`: drops one `kmap` of `page`. A lowmem page needs nothing. Unmapping a page
    /// that is not kmapped is Linux's `BUG()` in `kunmap_high`: reported, nothing changes.
    pub fn kunmap(&self, page: PageRef<'_>) {
        if self.phys_to_virt(page.pfn().phys()).is_some() {
            return;
        }
        let Some(h) = self.highmem() else { return };
        let g = h.lock.lock_irqsave(self.platform());
        let nr = h.lookup(page.pfn());
        let c = nr.map_or(0, |nr| h.count[nr].load(Ordering::Relaxed));
        let Some(nr) = nr.filter(|_| c >= 2) else {
            drop(g);
            self.highmem_bug("kunmap_high", &|w| {
                write!(w, "page {:#x} is not kmapped (pkmap_count would drop to 0)", page.pfn().as_usize())
            });
            return;
        };
        h.count[nr].store(c - 1, Ordering::Relaxed);
        if c - 1 == 1 {
            // The slot has no users left: it may be reused after the next flush; wake waiters.
            h.in_use.fetch_sub(1, Ordering::Relaxed);
            h.wait_gen.fetch_add(1, Ordering::Release);
        }
    }

    /// The pkmap address of a kmapped HighMem frame (`page_address()` through the hash).
    pub(crate) fn pkmap_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        let h = self.highmem()?;
        let _g = h.lock.lock_irqsave(self.platform());
        h.lookup(pfn).map(|nr| VirtAddr::new(h.pkmap_addr(nr)))
    }

    /// A `BUG()`/`BUG_ON()` of mm/highmem.c: reported (counted as a warning), the caller
    /// refuses the operation instead of halting.
    #[cold]
    pub(crate) fn highmem_bug(&self, func: &str, what: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        self.report(crate::platform::ReportKind::Warning, &|w| {
            writeln!(w, "kernel BUG at mm/highmem.c: {func}!")?;
            writeln!(w, "CPU: {cpu} PID: {} Comm: {}", task.pid, task.comm())?;
            what(w)?;
            writeln!(w)
        });
    }

    /// A `WARN_ON_ONCE()` of mm/highmem.c (reported every time, so each misuse is counted).
    #[cold]
    pub(crate) fn highmem_warn(&self, func: &str, what: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        self.report(crate::platform::ReportKind::Warning, &|w| {
            write!(w, "WARNING: CPU: {cpu} PID: {} at mm/highmem.c {func}: ", task.pid)?;
            what(w)?;
            writeln!(w)
        });
    }
}
