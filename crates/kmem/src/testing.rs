//! Test support for the core's unit tests: a tiny machine on a heap buffer, single CPU.

// The core is no_std; its unit tests (this module exists only under cfg(test)) use std,
// reachable to other modules' tests as `crate::testing::std`.
pub extern crate std; // cfg(test)

use self::std::{boxed::Box, fmt, string::String, sync::Mutex, vec::Vec};

use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::boot::{BootConfig, MemRegion, ZoneLayout};
use crate::machine::Kmem;
use crate::platform::{
    CpuId, DirectMap, IrqState, MapError, PageProt, PageTableAlloc, Platform, ReportKind, TaskId, TlbFlush,
};

/// A one-CPU platform whose direct map is a leaked heap buffer.
/// Also the platform of the loom models ([`TestPlatform::model`]).
#[derive(Debug)]
pub struct TestPlatform {
    dm: DirectMap,
    nr_cpus: usize,
    /// Reports panic instead of being logged (models expect none).
    strict: bool,
    pub log: Mutex<Vec<(ReportKind, String)>>,
    /// Software page tables and a vmalloc range ([`machine_with_page_tables`]); `None`: no
    /// vmalloc range.
    pub pt: Option<page_tables::PageTables>,
    /// A kmap area (in the software page tables, after the vmalloc range): machines with
    /// HighMem ([`machine_with_highmem`]).
    pub kmap: bool,
}

impl TestPlatform {
    /// The platform of a loom model: no RAM mapped, 2 CPUs (the caller is always CPU 0), any
    /// report fails the model.
    #[cfg(loom)]
    pub fn model() -> Self {
        let dm = DirectMap { base: VirtAddr::new(0), limit: PhysAddr::new(0) };
        Self { dm, nr_cpus: 2, strict: true, log: Mutex::new(Vec::new()), pt: None, kmap: false }
    }
}

// SAFETY: the direct map is either a leaked, page-aligned, read-write heap buffer of `limit`
// bytes that is never freed (`machine`), or empty (`model`: it describes no memory the core
// could touch). `current_cpu` is always 0, below `nr_cpus`, which never changes;
// the vmalloc range and the kmap area (with `pt`) are never dereferenced: their mappings live
// only in the software tables.
unsafe impl Platform for TestPlatform {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }
    fn current_cpu(&self) -> CpuId {
        CpuId(0)
    }
    fn preempt_count(&self) -> u32 {
        0
    }
    fn preempt_disable(&self) {}
    fn preempt_enable(&self) {}
    fn local_irq_save(&self) -> IrqState {
        IrqState(false)
    }
    fn local_irq_restore(&self, _: IrqState) {}
    fn irqs_disabled(&self) -> bool {
        false
    }
    fn in_interrupt(&self) -> bool {
        false
    }
    fn direct_map(&self) -> DirectMap {
        self.dm
    }
    fn cpu_relax(&self) {
        #[cfg(loom)]
        ::loom::thread::yield_now();
        #[cfg(not(loom))]
        core::hint::spin_loop();
    }
    fn now_ns(&self) -> u64 {
        0
    }
    fn current_task(&self) -> TaskId {
        TaskId::new(1, "test")
    }
    fn report(&self, kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        let mut s = String::new();
        body(&mut s).unwrap();
        assert!(!self.strict, "unexpected {kind:?} report: {s}");
        self.log.lock().unwrap().push((kind, s));
    }
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        let r = page_tables::VSTART;
        self.pt.as_ref().map(|_| (VirtAddr::new(r), VirtAddr::new(r + page_tables::VLEN)))
    }
    fn kmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        let s = page_tables::VSTART + page_tables::VLEN;
        (self.kmap && self.pt.is_some())
            .then(|| (VirtAddr::new(s), VirtAddr::new(s + crate::highmem::kmap_area_bytes(self.nr_cpus))))
    }
    unsafe fn map_kernel_pages(
        &self,
        va: VirtAddr,
        pfn: Pfn,
        npages: usize,
        _prot: PageProt,
        tables: &mut dyn PageTableAlloc,
    ) -> Result<(), MapError> {
        self.pt.as_ref().ok_or(MapError::Unsupported)?.map(&self.dm, va, pfn, npages, tables)
    }
    unsafe fn unmap_kernel_pages(&self, va: VirtAddr, npages: usize) -> TlbFlush {
        match &self.pt {
            Some(pt) => pt.unmap(&self.dm, va, npages),
            None => TlbFlush::none(),
        }
    }
    fn flush_tlb_kernel_range(&self, flush: TlbFlush) {
        match &self.pt {
            Some(pt) => pt.flush(flush),
            None => flush.done(),
        }
    }
}

/// Boots a machine with `mib` MiB of RAM at physical 0, DMA below 16 MiB, Normal above.
pub fn machine(mib: usize) -> Kmem<TestPlatform> {
    boot(mib, None, |_| {})
}

/// [`machine`] with software page tables and a vmalloc range (recycling off, strict reports).
/// (The vmalloc and highmem tests use it; the loom models do not.)
#[cfg_attr(loom, allow(dead_code))]
pub fn machine_with_page_tables(mib: usize) -> Kmem<TestPlatform> {
    boot(mib, Some(page_tables::PageTables::default()), |cfg| cfg.vmalloc_recycle = false)
}

/// A machine of `mib` MiB whose direct map ends at `low_mib` MiB: HighMem above, a kmap area
/// and software page tables (reports are logged, not fatal). HighMem pages must not be
/// touched (their mappings exist only in the tables): no `__GFP_ZERO` for them.
#[cfg_attr(loom, allow(dead_code))]
pub fn machine_with_highmem(mib: usize, low_mib: usize) -> Kmem<TestPlatform> {
    boot_with(mib, Some(low_mib), Some(page_tables::PageTables::default()), |_| {})
}

fn boot(mib: usize, pt: Option<page_tables::PageTables>, tune: impl FnOnce(&mut BootConfig<'_>)) -> Kmem<TestPlatform> {
    boot_with(mib, None, pt, tune)
}

fn boot_with(
    mib: usize,
    low_mib: Option<usize>,
    pt: Option<page_tables::PageTables>,
    tune: impl FnOnce(&mut BootConfig<'_>),
) -> Kmem<TestPlatform> {
    let bytes = mib << 20;
    let buf: &'static mut [u8] = Box::leak(std::vec![0u8; bytes + PAGE_SIZE].into_boxed_slice());
    let base = (buf.as_mut_ptr() as usize).next_multiple_of(PAGE_SIZE);
    let limit = low_mib.map_or(bytes, |l| l << 20);
    let dm = DirectMap { base: VirtAddr::new(base), limit: PhysAddr::new(limit as u64) };
    let regions = [MemRegion::usable(0, bytes as u64)];
    let highmem_start = low_mib.map(|l| PhysAddr::new((l << 20) as u64));
    let layout = ZoneLayout { dma_end: Some(PhysAddr::new(16 << 20)), dma32_end: None, highmem_start };
    let strict = pt.is_some() && low_mib.is_none();
    let kmap = low_mib.is_some();
    let platform = TestPlatform { dm, nr_cpus: 1, strict, log: Mutex::new(Vec::new()), pt, kmap };
    let mut cfg = BootConfig::new(&regions, layout);
    tune(&mut cfg);
    // SAFETY: the buffer is leaked (lives forever), page aligned, ours alone, and covers the map.
    unsafe { Kmem::boot(platform, &cfg, |_| Ok(())) }.expect("test machine boots")
}

#[cfg(loom)]
pub mod loom;
pub mod page_tables;
