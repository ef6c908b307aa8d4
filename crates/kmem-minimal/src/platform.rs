//! [`MinimalPlatform`]: what a uniprocessor kernel gives kmem.
//!
//! - One CPU. `preempt_disable`/`preempt_enable` and [`Platform::pin_cpu`] are a plain
//!   counter (a relaxed load and store, as a kernel's per-CPU `preempt_count` is a plain
//!   increment); interrupts are a flag, and none ever arrive.
//! - The direct map is the RAM region the caller gives ([`MinimalPlatform::new`]): physical
//!   address `p` lives at `ram + p`.
//! - vmalloc (optional, [`MinimalPlatform::with_vmalloc_range`]): a range of kernel virtual
//!   address space with x86-64-style 4-level page tables kept in pages the core hands out
//!   ([`PageTableAlloc`]), walked through the direct map, as a kernel's `vmap_pages_range`
//!   does. The tables are software only: nothing loads them into the MMU (a bootable kernel
//!   would point its CR3 at them), so vmalloc addresses are never dereferenced here, and
//!   there is no TLB to flush. [`MinimalPlatform::translate`] reads them.
//! - Reports go to the console function the caller gives
//!   ([`MinimalPlatform::with_console`]), formatted into a 2 KiB stack buffer (reports may
//!   come from contexts that must not allocate); without one they are only counted
//!   (`Kmem::report_count`).
//! - No clock (`now_ns` is 0: report rate limits never expire), one task (`minimal`, pid 1).

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use kmem::{
    CpuId, DirectMap, IrqState, MapError, PageProt, PageTableAlloc, Pfn, PhysAddr, Pinned, Platform, ReportKind,
    TaskId, TlbFlush, VirtAddr, PAGE_SIZE,
};

const PRESENT: u64 = 1;

/// [`MinimalPlatform`]'s state-word bit for "interrupts disabled" (above any preemption
/// depth the counter reaches).
const IRQS_OFF: u32 = 1 << 31;

/// The platform: see the module documentation.
#[derive(Debug)]
pub struct MinimalPlatform {
    dm: DirectMap,
    /// The CPU's one state word: the preemption count in the low bits, [`IRQS_OFF`] while
    /// interrupts are disabled, so that "may the caller sleep?" (`atomic_context`, which
    /// every sleeping allocation asks) is one load and test, as a kernel keeping both in one
    /// per-CPU word (x86's `preempt_count` folds its resched bit the same way) answers it.
    preempt: AtomicU32,
    vmalloc: Option<(VirtAddr, VirtAddr)>,
    /// Pfn of the top-level page table, 0 until the first mapping.
    root: AtomicUsize,
    /// The CPU's area word (`Platform::set_cpu_area`: kmem's fast table of the CPU), as a
    /// kernel keeps its CPU's `this_cpu_off`.
    area: AtomicUsize,
    console: Option<fn(&str)>,
}

impl MinimalPlatform {
    /// A platform whose RAM is the `bytes` bytes at `ram`: physical address `p < bytes` lives
    /// at `ram + p` (the direct map). No vmalloc range and no console until the `with_`
    /// methods add them.
    ///
    /// # Safety
    ///
    /// - `[ram, ram + bytes)` is readable and writable memory that nothing else uses, for as
    ///   long as the platform, a machine booted on it, and anything allocated from that
    ///   machine live (a `static` region taken once, [`crate::StaticRam`], qualifies).
    /// - One thread at a time uses the platform and its machine (and everything allocated
    ///   from it): the CPU's data are protected by a plain counter, as on a uniprocessor
    ///   kernel, which excludes nothing between host threads. Handing the machine to another
    ///   thread through a synchronising channel (a `Mutex`, a join) is fine.
    ///
    /// # Panics
    ///
    /// If `ram` is not page aligned or `bytes` is below one page.
    pub unsafe fn new(ram: NonNull<u8>, bytes: usize) -> Self {
        assert!(ram.as_ptr() as usize % PAGE_SIZE == 0, "RAM must be page aligned");
        assert!(bytes >= PAGE_SIZE, "RAM must hold at least one page");
        MinimalPlatform {
            dm: DirectMap { base: VirtAddr::new(ram.as_ptr() as usize), limit: PhysAddr::new(bytes as u64) },
            preempt: AtomicU32::new(0),
            vmalloc: None,
            root: AtomicUsize::new(0),
            area: AtomicUsize::new(0),
            console: None,
        }
    }

    /// Gives vmalloc the kernel virtual range `[start, end)`. The platform never dereferences
    /// it: its mappings live only in the software page tables ([`MinimalPlatform::translate`]).
    ///
    /// # Panics
    ///
    /// If the range is empty, not page aligned, or overlaps the direct map (the core tells
    /// vmalloc addresses from direct-map ones by range).
    pub fn with_vmalloc_range(mut self, start: VirtAddr, end: VirtAddr) -> Self {
        let (s, e) = (start.as_usize(), end.as_usize());
        assert!(s < e && s % PAGE_SIZE == 0 && e % PAGE_SIZE == 0, "vmalloc range must be page aligned and non-empty");
        let (ds, de) = (self.dm.base.as_usize(), self.dm.base.as_usize() + self.dm.limit.as_u64() as usize);
        assert!(e <= ds || s >= de, "vmalloc range overlaps the direct map");
        self.vmalloc = Some((start, end));
        self
    }

    /// Sends reports to `console` (a kernel's printk console: a serial port, a framebuffer),
    /// one call per report; texts longer than 2 KiB are cut.
    pub fn with_console(mut self, console: fn(&str)) -> Self {
        self.console = Some(console);
        self
    }

    /// The frame mapped at `va` in the vmalloc range, if any.
    pub fn translate(&self, va: usize) -> Option<Pfn> {
        let e = self.pte(va, None)?;
        // SAFETY: a PTE slot inside a table page (see `pte`).
        let v = unsafe { e.read() };
        (v & PRESENT != 0).then(|| Pfn::new((v >> 12) as usize))
    }

    fn table(&self, pfn: usize) -> *mut u64 {
        self.dm.phys_to_virt(Pfn::new(pfn).phys()).expect("page tables are direct-mapped").as_mut_ptr()
    }

    /// The PTE slot of `va`, allocating tables on the way from `tables` (`None`: lookup only).
    fn pte(&self, va: usize, mut tables: Option<&mut dyn PageTableAlloc>) -> Option<*mut u64> {
        let mut t = self.root.load(Relaxed);
        if t == 0 {
            t = tables.as_mut()?.alloc_table()?.as_usize();
            self.root.store(t, Relaxed);
        }
        for shift in [39, 30, 21] {
            let e = self.table(t).wrapping_add((va >> shift) & 511);
            // SAFETY: `e` is one of the 512 entries of a table page: RAM of this machine that
            // only these tables use, reached by one thread at a time (`new`'s contract).
            let v = unsafe { e.read() };
            t = if v & PRESENT != 0 {
                (v >> 12) as usize
            } else {
                let n = tables.as_mut()?.alloc_table()?.as_usize();
                // SAFETY: as above.
                unsafe { e.write(((n as u64) << 12) | PRESENT) };
                n
            };
        }
        Some(self.table(t).wrapping_add((va >> 12) & 511))
    }
}

/// A `fmt::Write` into a fixed buffer that drops what does not fit, cutting at a character
/// boundary (reports may come from contexts that must not allocate).
struct StackBuf {
    buf: [u8; 2048],
    len: usize,
}

impl StackBuf {
    fn as_str(&self) -> &str {
        // `write_str` copies whole characters only.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut n = s.len().min(self.buf.len() - self.len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

// SAFETY: the direct map is the caller's RAM region, readable, writable and ours alone
// (`new`'s contract); `current_cpu` is always 0 and `nr_cpus` always 1; `map_temporary`
// keeps its default (the direct map). The per-CPU exclusion that `pin_cpu` promises holds
// because one thread at a time uses the machine (`new`'s contract) and no interrupts exist.
// The vmalloc range is disjoint from the direct map (`with_vmalloc_range` checks) and is
// never dereferenced here: its mappings live only in the software tables.
unsafe impl Platform for MinimalPlatform {
    fn nr_cpus(&self) -> usize {
        1
    }
    #[inline]
    fn current_cpu(&self) -> CpuId {
        CpuId(0)
    }
    #[inline]
    fn preempt_count(&self) -> u32 {
        self.preempt.load(Relaxed) & !IRQS_OFF
    }
    #[inline]
    fn preempt_disable(&self) {
        self.preempt.store(self.preempt.load(Relaxed) + 1, Relaxed);
    }
    #[inline]
    fn preempt_enable(&self) {
        self.preempt.store(self.preempt.load(Relaxed) - 1, Relaxed);
    }
    #[inline]
    fn local_irq_save(&self) -> IrqState {
        let w = self.preempt.load(Relaxed);
        self.preempt.store(w | IRQS_OFF, Relaxed);
        IrqState(w & IRQS_OFF != 0)
    }
    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        let w = self.preempt.load(Relaxed) & !IRQS_OFF;
        self.preempt.store(if state.0 { w | IRQS_OFF } else { w }, Relaxed);
    }
    #[inline]
    fn irqs_disabled(&self) -> bool {
        self.preempt.load(Relaxed) & IRQS_OFF != 0
    }
    /// One load and test: the preemption count and the interrupt bit share the word.
    #[inline]
    fn atomic_context(&self) -> bool {
        self.preempt.load(Relaxed) != 0
    }
    #[inline]
    fn in_interrupt(&self) -> bool {
        false
    }
    #[inline]
    fn pin_cpu(&self) -> Pinned {
        self.preempt_disable();
        Pinned { cpu: CpuId(0), token: 0 }
    }
    #[inline]
    fn unpin_cpu(&self, _pinned: Pinned) {
        self.preempt_enable();
    }
    const CPU_AREA: bool = true;
    fn set_cpu_area(&self, _cpu: CpuId, area: usize) {
        self.area.store(area, Relaxed);
    }
    #[inline(always)]
    fn try_pin_cpu_area(&self) -> Option<(Pinned, usize)> {
        Some((self.pin_cpu(), self.area.load(Relaxed)))
    }
    /// The CPU is free when nothing has preemption disabled: every kmem section (a pin, a
    /// spinlock) raises the counter, so an interrupt handler that finds it at 0 interrupted
    /// no section. (An interrupt between a section's load and store of the counter sees the
    /// old value, 0, and puts it back before returning.)
    #[inline]
    fn try_pin_cpu_nolock(&self) -> Option<Pinned> {
        if self.preempt.load(Relaxed) != 0 {
            return None;
        }
        Some(self.pin_cpu())
    }
    #[inline]
    fn direct_map(&self) -> DirectMap {
        self.dm
    }
    fn now_ns(&self) -> u64 {
        0
    }
    fn current_task(&self) -> TaskId {
        TaskId::new(1, "minimal")
    }
    fn report(&self, _kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        if let Some(console) = self.console {
            let mut b = StackBuf { buf: [0; 2048], len: 0 };
            let _ = body(&mut b);
            console(b.as_str());
        }
    }
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        self.vmalloc
    }
    unsafe fn map_kernel_pages(
        &self,
        va: VirtAddr,
        pfn: Pfn,
        npages: usize,
        _prot: PageProt,
        tables: &mut dyn PageTableAlloc,
    ) -> Result<(), MapError> {
        for i in 0..npages {
            let e = self.pte(va.as_usize() + i * PAGE_SIZE, Some(&mut *tables)).ok_or(MapError::NoMemory)?;
            // SAFETY: a PTE slot inside a table page (see `pte`); the core's contract says
            // the range is unmapped.
            unsafe { e.write(((pfn.as_usize() + i) as u64) << 12 | PRESENT) };
        }
        Ok(())
    }
    unsafe fn unmap_kernel_pages(&self, va: VirtAddr, npages: usize) -> TlbFlush {
        for i in 0..npages {
            if let Some(e) = self.pte(va.as_usize() + i * PAGE_SIZE, None) {
                // SAFETY: a PTE slot inside a table page (see `pte`).
                unsafe { e.write(0) };
            }
        }
        TlbFlush::range(va, npages)
    }
}
