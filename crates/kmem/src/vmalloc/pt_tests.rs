//! The bare-metal path of the platform boundary: a platform that keeps x86-64-style 4-level
//! page tables in pages the core hands it through `PageTableAlloc` (as a kernel's arch layer
//! would), so the test can walk them. vmalloc maps every page at its address, accounts the
//! table pages, and a purge clears the entries and asks for one merged TLB flush.

use self::std::{boxed::Box, fmt, string::String, sync::Mutex, vec::Vec};
use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::boot::{BootConfig, MemRegion, ZoneLayout};
use crate::machine::Kmem;
use crate::mm::page::pg;
use crate::platform::{
    CpuId, DirectMap, IrqState, MapError, PageProt, PageTableAlloc, Platform, ReportKind, TaskId, TlbFlush,
};
use crate::testing::std;

const VSTART: usize = 0xffff_c900_0000_0000;
const VLEN: usize = 1 << 30;
const PRESENT: u64 = 1;

/// A one-CPU platform with software page tables under one root table.
#[derive(Debug)]
struct PtPlatform {
    dm: DirectMap,
    root: Mutex<Option<Pfn>>,
    flushes: Mutex<Vec<(usize, usize)>>,
}

impl PtPlatform {
    fn table(&self, pfn: Pfn) -> *mut u64 {
        self.dm.phys_to_virt(pfn.phys()).expect("tables are direct-mapped").as_mut_ptr()
    }
    /// The PTE slot of `va`, allocating tables on the way with `tables` (None: lookup only).
    fn pte(&self, va: usize, mut tables: Option<&mut dyn PageTableAlloc>) -> Option<*mut u64> {
        let mut root = self.root.lock().unwrap();
        if root.is_none() {
            *root = Some(tables.as_mut()?.alloc_table()?);
        }
        let mut t = root.expect("set above");
        for level in [39, 30, 21] {
            let e = self.table(t).wrapping_add((va >> level) & 511);
            // SAFETY: `e` is inside a table page (512 entries), RAM of this machine that only
            // this platform uses, under the root lock.
            let v = unsafe { e.read() };
            t = if v & PRESENT != 0 {
                Pfn::new((v >> 12) as usize)
            } else {
                let n = tables.as_mut()?.alloc_table()?;
                // SAFETY: as above.
                unsafe { e.write(((n.as_usize() as u64) << 12) | PRESENT) };
                n
            };
        }
        Some(self.table(t).wrapping_add((va >> 12) & 511))
    }
    fn translate(&self, va: usize) -> Option<Pfn> {
        let e = self.pte(va, None)?;
        // SAFETY: a PTE slot inside a table page (see `pte`).
        let v = unsafe { e.read() };
        (v & PRESENT != 0).then(|| Pfn::new((v >> 12) as usize))
    }
}

// SAFETY: the direct map is a leaked, page-aligned heap buffer; one CPU; the vmalloc range
// is never dereferenced by the test (mappings only live in the software tables).
unsafe impl Platform for PtPlatform {
    fn nr_cpus(&self) -> usize {
        1
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
    fn now_ns(&self) -> u64 {
        0
    }
    fn current_task(&self) -> TaskId {
        TaskId::new(1, "pt")
    }
    fn report(&self, kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        let mut s = String::new();
        body(&mut s).unwrap();
        panic!("unexpected {kind:?} report: {s}");
    }
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        Some((VirtAddr::new(VSTART), VirtAddr::new(VSTART + VLEN)))
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
            // SAFETY: a PTE slot inside a table page (see `pte`).
            unsafe {
                assert_eq!(e.read() & PRESENT, 0, "mapping over a live entry");
                e.write(((pfn.as_usize() + i) as u64) << 12 | PRESENT);
            }
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
    fn flush_tlb_kernel_range(&self, flush: TlbFlush) {
        if let Some((s, e)) = flush.bounds() {
            self.flushes.lock().unwrap().push((s.as_usize(), e.as_usize()));
        }
        flush.done();
    }
}

fn machine(mib: usize) -> Kmem<PtPlatform> {
    let bytes = mib << 20;
    let buf: &'static mut [u8] = Box::leak(std::vec![0u8; bytes + PAGE_SIZE].into_boxed_slice());
    let base = (buf.as_mut_ptr() as usize).next_multiple_of(PAGE_SIZE);
    let dm = DirectMap { base: VirtAddr::new(base), limit: PhysAddr::new(bytes as u64) };
    let regions = [MemRegion::usable(0, bytes as u64)];
    let layout = ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None };
    let p = PtPlatform { dm, root: Mutex::new(None), flushes: Mutex::new(Vec::new()) };
    let mut cfg = BootConfig::new(&regions, layout);
    cfg.vmalloc_recycle = false;
    // SAFETY: the buffer is leaked (lives forever), page aligned, ours alone, and covers the map.
    unsafe { Kmem::boot(p, &cfg, |_| Ok(())) }.expect("test machine boots")
}

#[test]
fn vmalloc_builds_real_page_tables() {
    let k = machine(64);
    let p = k.vmalloc(40 * PAGE_SIZE).unwrap().as_ptr() as usize;
    let q = k.vmalloc(3 * PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(q, p + 41 * PAGE_SIZE, "lowest fit after the first area and its guard page");
    for i in 0..40 {
        let va = p + i * PAGE_SIZE;
        assert_eq!(k.platform().translate(va), k.vmalloc_to_pfn(va as *const u8));
        assert!(k.platform().translate(va).is_some());
    }
    assert_eq!(k.platform().translate(p + 40 * PAGE_SIZE), None, "the guard page is not mapped");
    // Root, PUD, PMD and one PTE table: 4 pages, flagged and counted.
    let st = k.vmalloc_stats();
    assert_eq!(st.pagetables, 4);
    let root = k.platform().root.lock().unwrap().unwrap();
    assert!(k.memmap().page(root).unwrap().test(pg::PGTABLE));
    // Freed areas keep their entries until the purge, which clears them and flushes once.
    // SAFETY: ours, never accessed (only the software tables map it).
    unsafe {
        k.vfree(p as *const u8);
        k.vfree(q as *const u8);
    }
    assert!(k.platform().translate(p).is_some());
    k.vm_unmap_aliases();
    assert_eq!(k.platform().translate(p), None);
    assert_eq!(k.platform().translate(q), None);
    let f = k.platform().flushes.lock().unwrap().clone();
    assert_eq!(f, [(p, q + 4 * PAGE_SIZE)], "one flush covering both areas");
    assert_eq!(k.verify(), Ok(()));
}
