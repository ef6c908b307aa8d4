//! Software page tables for unit tests: x86-64-style 4-level tables kept in pages the core
//! hands out through `PageTableAlloc`, as a kernel's arch layer keeps them. A `TestPlatform`
//! with these has a vmalloc range that is never dereferenced: mappings live only in the
//! tables, which tests walk.

use super::std::{sync::Mutex, vec::Vec};
use crate::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::platform::{DirectMap, MapError, PageTableAlloc, TlbFlush};

/// Start of the test vmalloc range (x86-64's `VMALLOC_START`).
pub const VSTART: usize = 0xffff_c900_0000_0000;
/// Bytes of the test vmalloc range.
pub const VLEN: usize = 1 << 30;
const PRESENT: u64 = 1;

/// The tables (their root) and the TLB flushes asked for.
#[derive(Debug, Default)]
pub struct PageTables {
    /// The root table, allocated on the first map.
    pub root: Mutex<Option<Pfn>>,
    /// Every `flush_tlb_kernel_range`, as `[start, end)`.
    pub flushes: Mutex<Vec<(usize, usize)>>,
}

impl PageTables {
    fn table(dm: &DirectMap, pfn: Pfn) -> *mut u64 {
        dm.phys_to_virt(pfn.phys()).expect("tables are direct-mapped").as_mut_ptr()
    }

    /// The PTE slot of `va`, allocating tables on the way with `tables` (None: lookup only).
    fn pte(&self, dm: &DirectMap, va: usize, mut tables: Option<&mut dyn PageTableAlloc>) -> Option<*mut u64> {
        let mut root = self.root.lock().unwrap();
        if root.is_none() {
            *root = Some(tables.as_mut()?.alloc_table()?);
        }
        let mut t = root.expect("set above");
        for level in [39, 30, 21] {
            let e = Self::table(dm, t).wrapping_add((va >> level) & 511);
            // SAFETY: `e` is inside a table page (512 entries), RAM of this machine that only
            // these tables use, under the root lock.
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
        Some(Self::table(dm, t).wrapping_add((va >> 12) & 511))
    }

    /// The frame mapped at `va` (for the vmalloc and highmem tests, not the loom models).
    #[cfg_attr(loom, allow(dead_code))]
    pub fn translate(&self, dm: &DirectMap, va: usize) -> Option<Pfn> {
        let e = self.pte(dm, va, None)?;
        // SAFETY: a PTE slot inside a table page (see `pte`).
        let v = unsafe { e.read() };
        (v & PRESENT != 0).then(|| Pfn::new((v >> 12) as usize))
    }

    /// `map_kernel_pages`.
    pub fn map(
        &self,
        dm: &DirectMap,
        va: VirtAddr,
        pfn: Pfn,
        npages: usize,
        tables: &mut dyn PageTableAlloc,
    ) -> Result<(), MapError> {
        for i in 0..npages {
            let e = self.pte(dm, va.as_usize() + i * PAGE_SIZE, Some(&mut *tables)).ok_or(MapError::NoMemory)?;
            // SAFETY: a PTE slot inside a table page (see `pte`).
            unsafe {
                assert_eq!(e.read() & PRESENT, 0, "mapping over a live entry");
                e.write(((pfn.as_usize() + i) as u64) << 12 | PRESENT);
            }
        }
        Ok(())
    }

    /// `unmap_kernel_pages`.
    pub fn unmap(&self, dm: &DirectMap, va: VirtAddr, npages: usize) -> TlbFlush {
        for i in 0..npages {
            if let Some(e) = self.pte(dm, va.as_usize() + i * PAGE_SIZE, None) {
                // SAFETY: a PTE slot inside a table page (see `pte`).
                unsafe { e.write(0) };
            }
        }
        TlbFlush::range(va, npages)
    }

    /// `flush_tlb_kernel_range`: recorded.
    pub fn flush(&self, flush: TlbFlush) {
        if let Some((s, e)) = flush.bounds() {
            self.flushes.lock().unwrap().push((s.as_usize(), e.as_usize()));
        }
        flush.done();
    }
}
