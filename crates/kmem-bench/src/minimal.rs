//! A minimal platform: what a uniprocessor kernel gives kmem, and so what a kernel's fast
//! paths cost without the hosted CPU emulation (the "minimal" column of the instruction
//! counts, `scripts/cost_check.sh`).
//!
//! - One CPU. `preempt_disable`/`preempt_enable` and [`Platform::pin_cpu`] are a plain
//!   counter (a relaxed load and store, as a kernel's per-CPU `preempt_count` is a plain
//!   increment); interrupts are a flag, and none ever arrive.
//! - The direct map is a page-aligned heap buffer (zeroed, faulted in on first touch),
//!   leaked: it lives as long as the process.
//! - vmalloc: a [`VMALLOC_BYTES`] range of reserved, inaccessible address space (never
//!   dereferenced by the core) with x86-64-style 4-level page tables kept in pages the core
//!   hands out ([`kmem::PageTableAlloc`]), walked through the direct map, as a kernel's
//!   `vmap_pages_range` does. No TLB to flush.
//! - Reports are written to stderr (the core counts them: `Kmem::report_count`).
//!
//! The zone layout is x86-64's, as the hosted machines': DMA below 16 MiB, Normal above.
//!
//! ```
//! use kmem::Gfp;
//! // SAFETY: this thread alone uses the machine.
//! let m = unsafe { kmem_bench::minimal::boot(64) };
//! let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
//! // SAFETY: from kmalloc, unused, freed once.
//! unsafe { m.kfree(p.as_ptr()) };
//! let v = m.vmalloc(4096).unwrap();
//! // SAFETY: from vmalloc, never accessed (the minimal platform's vmalloc range is not
//! // backed), freed once.
//! unsafe { m.vfree(v.as_ptr()) };
//! assert_eq!(m.report_count(kmem::ReportKind::Warning), 0);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};

use kmem::{
    BootConfig, CpuId, DirectMap, IrqState, Kmem, MapError, MemRegion, PageProt, PageTableAlloc, Pfn, PhysAddr, Pinned,
    Platform, ReportKind, TaskId, TlbFlush, VirtAddr, ZoneLayout, PAGE_SIZE,
};

/// Bytes of the vmalloc range.
pub const VMALLOC_BYTES: usize = 1 << 30;

const PRESENT: u64 = 1;

/// The platform of [`boot`]: see the module documentation.
#[derive(Debug)]
pub struct MinimalPlatform {
    dm: DirectMap,
    preempt: AtomicU32,
    irqs_off: AtomicBool,
    vstart: usize,
    /// Pfn of the top-level page table, 0 until the first mapping.
    root: AtomicUsize,
}

/// Boots a machine with `ram_mib` MiB of RAM on a [`MinimalPlatform`].
///
/// # Safety
///
/// One thread at a time may use the machine (and everything allocated from it): its CPU's
/// data are protected by a plain counter, as on a uniprocessor kernel, which excludes nothing
/// between host threads. Handing the machine to another thread through a synchronising
/// channel (a `Mutex`, a join) is fine.
///
/// # Panics
///
/// If `ram_mib` is below 2 or the machine does not boot.
pub unsafe fn boot(ram_mib: usize) -> Kmem<MinimalPlatform> {
    assert!(ram_mib >= 2, "at least 2 MiB of RAM");
    let bytes = ram_mib << 20;
    let layout = std::alloc::Layout::from_size_align(bytes, PAGE_SIZE).expect("RAM layout");
    // SAFETY: a non-zero size.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    let vstart = reserve(VMALLOC_BYTES);
    let platform = MinimalPlatform {
        dm: DirectMap { base: VirtAddr::new(base as usize), limit: PhysAddr::new(bytes as u64) },
        preempt: AtomicU32::new(0),
        irqs_off: AtomicBool::new(false),
        vstart,
        root: AtomicUsize::new(0),
    };
    let regions = [MemRegion::usable(0, bytes as u64)];
    let cfg = BootConfig::new(&regions, ZoneLayout::X86_64);
    // SAFETY: the buffer is page aligned, read-write, ours alone and never freed (leaked), and
    // covers the memory map; the caller keeps the machine to one thread at a time.
    unsafe { Kmem::boot(platform, &cfg, |_| Ok(())) }.expect("minimal machine boots")
}

/// Reserves `bytes` of inaccessible address space (never unmapped).
fn reserve(bytes: usize) -> usize {
    use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
    // SAFETY: a new mapping at an address of the kernel's choosing; no existing memory is
    // affected.
    let p = unsafe {
        mmap_anonymous(std::ptr::null_mut(), bytes, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::NORESERVE)
    };
    p.expect("vmalloc reservation") as usize
}

impl MinimalPlatform {
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
            // only these tables use, reached by one thread at a time (`boot`'s contract).
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

/// A `fmt::Write` into a fixed buffer that drops what does not fit (reports may come from
/// contexts that must not allocate).
struct StackBuf {
    buf: [u8; 2048],
    len: usize,
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

// SAFETY: the direct map is a leaked, page-aligned, read-write heap buffer of `limit` bytes,
// ours alone; `current_cpu` is always 0 and `nr_cpus` always 1; `map_temporary` keeps its
// default (the direct map). The per-CPU exclusion that `pin_cpu` promises holds because one
// thread at a time uses the machine (`boot`'s contract) and no interrupts exist. The vmalloc
// range is reserved inaccessible address space that no mapping here ever makes accessible:
// its mappings live only in the software tables.
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
        self.preempt.load(Relaxed)
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
        let was = self.irqs_off.load(Relaxed);
        self.irqs_off.store(true, Relaxed);
        IrqState(was)
    }
    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        self.irqs_off.store(state.0, Relaxed);
    }
    #[inline]
    fn irqs_disabled(&self) -> bool {
        self.irqs_off.load(Relaxed)
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
        use std::io::Write;
        let mut b = StackBuf { buf: [0; 2048], len: 0 };
        let _ = body(&mut b);
        let _ = std::io::stderr().write_all(&b.buf[..b.len]);
    }
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        Some((VirtAddr::new(self.vstart), VirtAddr::new(self.vstart + VMALLOC_BYTES)))
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

impl MinimalPlatform {
    /// The frame mapped at `va` in the vmalloc range, if any.
    pub fn translate(&self, va: usize) -> Option<Pfn> {
        let e = self.pte(va, None)?;
        // SAFETY: a PTE slot inside a table page (see `pte`).
        let v = unsafe { e.read() };
        (v & PRESENT != 0).then(|| Pfn::new((v >> 12) as usize))
    }
}

#[cfg(test)]
mod tests {
    use kmem::{Gfp, Platform, SlabFlags};

    #[test]
    fn every_fast_path_runs_and_gives_memory_back() {
        // SAFETY: this test's thread alone uses the machine.
        let m = unsafe { super::boot(64) };
        let free0: usize = m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
        let page = m.alloc_pages(Gfp::KERNEL, kmem::Order::ZERO).unwrap();
        // SAFETY: ours, unused.
        unsafe { m.__free_pages(page, kmem::Order::ZERO) };
        let c = m.kmem_cache_create("minimal-test", 64, 0, SlabFlags::NONE, None).unwrap();
        let o = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        // SAFETY: from this cache, unused, freed once.
        unsafe { m.kmem_cache_free(&c, o) };
        drop(c);
        let k = m.kmalloc(100, Gfp::KERNEL).unwrap();
        // SAFETY: from kmalloc, freed once.
        unsafe { m.kfree(k.as_ptr()) };
        let v = m.vmalloc(3 * 4096).unwrap();
        let pfn = m.platform().translate(v.as_ptr() as usize + 8192).expect("the third page is mapped");
        assert!(pfn.phys().as_u64() < 64 << 20);
        // SAFETY: from vmalloc, never accessed, freed once.
        unsafe { m.vfree(v.as_ptr()) };
        assert_eq!(m.platform().preempt_count(), 0, "every section ended");
        for kind in kmem::ReportKind::ALL.into_iter().filter(|k| *k != kmem::ReportKind::Info) {
            assert_eq!(m.report_count(kind), 0, "{kind:?}");
        }
        // Per-CPU lists may keep pages; everything else went back.
        let free1: usize = m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
        assert!(free0 - free1 < 64, "{free0} -> {free1}");
    }
}
