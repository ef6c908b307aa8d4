//! `kmap`/`kunmap`: the permanent kmap area (`kmap_high`, `kunmap_high`,
//! `flush_all_zero_pkmaps`, `page_address()` through `page_address_htable`). See the module
//! docs of [`crate::highmem`].
//!
//! The slot protocol ([`Pkmap`]) is generic over the number of slots and hash chains and
//! over the page-table calls ([`SlotOps`]), so that its loom model (`loom_tests.rs`) runs the
//! same code on two slots.

use super::{HighmemState, KmapError};
use crate::addr::{Pfn, VirtAddr};
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::platform::{MapError, PageProt, Platform, TlbFlush};
use crate::sync::{array_of, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock};
use crate::vmalloc::alloc::TableAlloc;

/// The page-table side of the slot protocol.
pub(crate) trait SlotOps {
    /// Maps slot `nr` to `pfn`; the slot's PTE is clear and flushed.
    fn map(&self, nr: usize, pfn: Pfn) -> Result<(), MapError>;
    /// Clears the PTEs of slots `[nr, nr + n)`; the flush is owed.
    fn unmap(&self, nr: usize, n: usize) -> TlbFlush;
    /// Ends stale translations (`flush_tlb_kernel_range`).
    fn flush(&self, f: TlbFlush);
}

/// `N` pkmap slots with `H` hash chains: Linux's `pkmap_count`, `last_pkmap_nr`,
/// `pkmap_map_wait` and `page_address_htable`, all under `lock` (`kmap_lock`).
#[derive(Debug)]
pub(crate) struct Pkmap<const N: usize, const H: usize> {
    /// `kmap_lock`.
    pub(crate) lock: RawSpinLock,
    /// `pkmap_count`: 0 free and flushed; 1 mapped, no users; n: n-1 users.
    pub(crate) count: [AtomicU32; N],
    /// The frame + 1 each slot maps (0: none).
    pub(crate) page: [AtomicU32; N],
    /// Hash chains: the next slot + 1 in the same chain (0: end).
    next: [AtomicU16; N],
    /// Hash chain heads: slot + 1 (0: empty chain).
    heads: [AtomicU16; H],
    /// `last_pkmap_nr`.
    last: AtomicUsize,
    /// Bumped by every `kunmap` that frees a slot: what a waiting `kmap` watches.
    wait_gen: AtomicU32,
    /// Slots with at least one user.
    pub(crate) in_use: AtomicUsize,
    /// Whole-area TLB flushes done (ring wraps that unmapped something).
    pub(crate) flushes: AtomicU64,
    /// `kmap` calls that had to wait for a free slot.
    pub(crate) waits: AtomicU64,
    /// Slots mapped (page-table changes).
    pub(crate) maps: AtomicU64,
}

impl<const N: usize, const H: usize> Pkmap<N, H> {
    /// No slot in use.
    pub(crate) fn new() -> Self {
        Self {
            lock: RawSpinLock::new(),
            count: array_of![AtomicU32::new(0); N],
            page: array_of![AtomicU32::new(0); N],
            next: array_of![AtomicU16::new(0); N],
            heads: array_of![AtomicU16::new(0); H],
            last: AtomicUsize::new(0),
            wait_gen: AtomicU32::new(0),
            in_use: AtomicUsize::new(0),
            flushes: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            maps: AtomicU64::new(0),
        }
    }

    /// The chain a frame hashes to (`page_slot()`).
    #[inline]
    fn chain(pfn: Pfn) -> usize {
        // hash_ptr-like: a multiplicative hash of the frame number.
        (((pfn.as_usize() as u32).wrapping_mul(0x9E37_79B9) as u64 * H as u64) >> 32) as usize
    }

    /// The slot mapping `pfn`, if any. Caller holds the lock, or accepts a racy answer.
    pub(crate) fn lookup(&self, pfn: Pfn) -> Option<usize> {
        let want = pfn.as_usize() as u32 + 1;
        let mut s = self.heads[Self::chain(pfn)].load(Ordering::Acquire);
        let mut steps = 0;
        while s != 0 && steps <= N {
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

    /// `kmap_high()`: one more user of `pfn`'s slot, mapping it in a free slot first if it
    /// has none; waits while every slot is in use. Returns the slot.
    pub(crate) fn kmap_high<P: Platform>(&self, p: &P, ops: &impl SlotOps, pfn: Pfn) -> Result<usize, MapError> {
        let mut waited = false;
        loop {
            let g = self.lock.lock_irqsave(p);
            let nr = match self.lookup(pfn) {
                Some(nr) => nr,
                None => match self.map_new_virtual(ops, pfn)? {
                    Some(nr) => nr,
                    None => {
                        // Every slot has users: wait for a kunmap (`pkmap_map_wait`), then
                        // start again (someone may have mapped the page meanwhile). The
                        // generation is read under the lock, so no wake-up is missed.
                        let gen = self.wait_gen.load(Ordering::Relaxed);
                        drop(g);
                        if !waited {
                            self.waits.fetch_add(1, Ordering::Relaxed);
                            waited = true;
                        }
                        while self.wait_gen.load(Ordering::Acquire) == gen {
                            p.cpu_relax();
                        }
                        continue;
                    }
                },
            };
            let c = self.count[nr].load(Ordering::Relaxed) + 1;
            self.count[nr].store(c, Ordering::Relaxed);
            if c == 2 {
                self.in_use.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(nr);
        }
    }

    /// `map_new_virtual()`: the next free slot of the ring, mapped to `pfn` with count 1;
    /// `None` when every slot is in use. Under the lock.
    fn map_new_virtual(&self, ops: &impl SlotOps, pfn: Pfn) -> Result<Option<usize>, MapError> {
        let mut count = N;
        let nr = loop {
            let last = (self.last.load(Ordering::Relaxed) + 1) % N;
            self.last.store(last, Ordering::Relaxed);
            if last == 0 {
                self.flush_all_zero_pkmaps(ops);
                count = N;
            }
            if self.count[last].load(Ordering::Relaxed) == 0 {
                break last;
            }
            count -= 1;
            if count == 0 {
                return Ok(None);
            }
        };
        ops.map(nr, pfn)?;
        self.maps.fetch_add(1, Ordering::Relaxed);
        self.count[nr].store(1, Ordering::Relaxed);
        self.hash_insert(nr, pfn);
        Ok(Some(nr))
    }

    /// `flush_all_zero_pkmaps()`: unmaps every slot with no users (count 1), runs of
    /// neighbours in one call, then one TLB flush. Under the lock.
    fn flush_all_zero_pkmaps(&self, ops: &impl SlotOps) {
        let mut flush = TlbFlush::none();
        let mut need = false;
        let mut i = 0;
        while i < N {
            if self.count[i].load(Ordering::Relaxed) != 1 {
                i += 1;
                continue;
            }
            let start = i;
            while i < N && self.count[i].load(Ordering::Relaxed) == 1 {
                self.count[i].store(0, Ordering::Relaxed);
                self.hash_remove(i);
                i += 1;
            }
            flush = flush.merge(ops.unmap(start, i - start));
            need = true;
        }
        if need {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            ops.flush(flush);
        } else {
            flush.done();
        }
    }

    /// `kunmap_high()`: one user less; false (and nothing changes) if `pfn` has no slot with
    /// a user (Linux's `BUG()`).
    /// `kmap_high_get()`: the slot of `pfn` with one more user, if it is mapped; never maps
    /// and never waits.
    pub(crate) fn kmap_high_get<P: Platform>(&self, p: &P, pfn: Pfn) -> Option<usize> {
        let _g = self.lock.lock_irqsave(p);
        let nr = self.lookup(pfn)?;
        let c = self.count[nr].load(Ordering::Relaxed);
        debug_assert!(c >= 1, "a slot in the hash has a count");
        self.count[nr].store(c + 1, Ordering::Relaxed);
        if c + 1 == 2 {
            self.in_use.fetch_add(1, Ordering::Relaxed);
        }
        Some(nr)
    }

    pub(crate) fn kunmap_high<P: Platform>(&self, p: &P, pfn: Pfn) -> bool {
        let _g = self.lock.lock_irqsave(p);
        let Some(nr) = self.lookup(pfn) else { return false };
        let c = self.count[nr].load(Ordering::Relaxed);
        if c < 2 {
            return false;
        }
        self.count[nr].store(c - 1, Ordering::Relaxed);
        if c - 1 == 1 {
            // The slot has no users left: it may be reused after the next flush; wake waiters.
            self.in_use.fetch_sub(1, Ordering::Relaxed);
            self.wait_gen.fetch_add(1, Ordering::Release);
        }
        true
    }
}

/// [`SlotOps`] of a machine: the platform's page-table calls on the pkmap area.
struct MachineSlots<'a, P: Platform> {
    k: &'a Kmem<P>,
    h: &'a HighmemState,
}

impl<P: Platform> SlotOps for MachineSlots<'_, P> {
    fn map(&self, nr: usize, pfn: Pfn) -> Result<(), MapError> {
        // SAFETY: the slot is in the kmap area (the platform's `kmap_range`), the protocol
        // maps only slots whose PTE was cleared and flushed, and the frame is RAM of this
        // machine.
        unsafe {
            self.k.platform().map_kernel_pages(
                VirtAddr::new(self.h.pkmap_addr(nr)),
                pfn,
                1,
                PageProt::KERNEL,
                &mut kmap_tables(self.k),
            )
        }
    }
    fn unmap(&self, nr: usize, n: usize) -> TlbFlush {
        // SAFETY: slots with count 1 have no users; the range lies in the kmap area.
        unsafe { self.k.platform().unmap_kernel_pages(VirtAddr::new(self.h.pkmap_addr(nr)), n) }
    }
    fn flush(&self, f: TlbFlush) {
        self.k.platform().flush_tlb_kernel_range(f);
    }
}

/// Page tables for the kmap area. Linux populates them once at boot
/// (`permanent_kmaps_init`, `kmap_init`); a platform that asks for one gets it with
/// `GFP_ATOMIC` (the hosted platform never asks).
pub(crate) fn kmap_tables<P: Platform>(k: &Kmem<P>) -> TableAlloc<'_, P> {
    TableAlloc { k, gfp: crate::gfp::Gfp::ATOMIC }
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
        let nr =
            h.pkmap.kmap_high(self.platform(), &MachineSlots { k: self, h }, page.pfn()).map_err(KmapError::Map)?;
        Ok(VirtAddr::new(h.pkmap_addr(nr)))
    }

    /// `kmap_high_get()`: the `kmap` address of a HighMem page that is already kmapped, with
    /// one more reference (end it with [`Kmem::kunmap`]); `None` when the page has no pkmap
    /// slot now (nothing is mapped and nothing waits, so atomic context may call it). A
    /// lowmem page's direct-map address (no reference to drop). Linux builds it only where
    /// `ARCH_NEEDS_KMAP_HIGH_GET` (ARM's aliasing caches) asks; kmem always has it.
    ///
    /// ```
    /// use kmem::{Gfp, Order};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(1024).preset(kmem_hosted::Preset::X86_32).build().unwrap();
    /// let p = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap();
    /// assert_eq!(m.kmap_high_get(p), None);
    /// let va = m.kmap(p).unwrap();
    /// assert_eq!(m.kmap_high_get(p), Some(va));
    /// m.kunmap(p);
    /// m.kunmap(p);
    /// // SAFETY: ours, no longer used.
    /// unsafe { m.__free_pages(p, Order::ZERO) };
    /// ```
    pub fn kmap_high_get(&self, page: PageRef<'_>) -> Option<VirtAddr> {
        if !self.owns_page(page) {
            self.page_of_other_machine("mm/highmem.c", "kmap_high_get", page);
            return None;
        }
        if let Some(va) = self.phys_to_virt(page.pfn().phys()) {
            return Some(va);
        }
        let h = self.highmem()?;
        let nr = h.pkmap.kmap_high_get(self.platform(), page.pfn())?;
        Some(VirtAddr::new(h.pkmap_addr(nr)))
    }

    /// `kunmap()`: drops one `kmap` of `page`. A lowmem page needs nothing. Unmapping a page
    /// that is not kmapped is Linux's `BUG()` in `kunmap_high`: reported, nothing changes.
    pub fn kunmap(&self, page: PageRef<'_>) {
        if self.phys_to_virt(page.pfn().phys()).is_some() {
            return;
        }
        let Some(h) = self.highmem() else { return };
        if !h.pkmap.kunmap_high(self.platform(), page.pfn()) {
            self.highmem_bug("kunmap_high", &|w| {
                write!(w, "page {:#x} is not kmapped (pkmap_count would drop to 0)", page.pfn().as_usize())
            });
        }
    }

    /// The pkmap address of a kmapped HighMem frame (`page_address()` through the hash).
    pub(crate) fn pkmap_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        let h = self.highmem()?;
        let _g = h.pkmap.lock.lock_irqsave(self.platform());
        h.pkmap.lookup(pfn).map(|nr| VirtAddr::new(h.pkmap_addr(nr)))
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
