//! The vmalloc range (and, with HighMem, the kmap area) of a hosted machine: reserved
//! `PROT_NONE` regions of the process.
//!
//! Mapping a page is a real `mmap(MAP_FIXED | MAP_SHARED)` of the RAM memfd at the page's
//! physical offset, so a write through a vmalloc address is visible through the page's
//! direct-map address, as in a kernel; runs of physically contiguous pages are one call.
//! Unmapping puts `PROT_NONE` anonymous memory back, so the range (and every guard page,
//! which is never mapped) faults. The host kernel flushes its TLBs inside those calls, so
//! `flush_tlb_kernel_range` has nothing left to do. Guard pages and purged areas fault
//! (`tests/vmalloc_fault.rs` checks it in forked children). Machines on private RAM
//! (`MachineBuilder::anonymous_ram`: kmem-alloc's global machine, `kmem replay`) have no
//! vmalloc range: nothing can alias private pages.

use std::os::fd::{BorrowedFd, RawFd};

use kmem::{MapError, MemRegion, PageProt, Pfn, RegionKind, TlbFlush, VirtAddr, PAGE_SIZE};
use rustix::mm::{mmap, mmap_anonymous, mremap_fixed, munmap, MapFlags, MremapFlags, ProtFlags};

/// The reservation; unmapped on drop.
#[derive(Debug)]
pub struct VSpace {
    base: usize,
    len: usize,
}

impl VSpace {
    /// Reserves `len` bytes (rounded to pages) of address space, aligned to 4 MiB.
    pub fn reserve(len: usize) -> Result<VSpace, rustix::io::Errno> {
        let len = len.next_multiple_of(PAGE_SIZE);
        let base = crate::ram::reserve_aligned(len, 4 << 20)?;
        Ok(VSpace { base, len })
    }
    /// [`VSpace::reserve`], but readable: it reads as zero wherever nothing is mapped into it
    /// (the vmemmap: the descriptor slots of absent sections, so the memory map is dense).
    pub fn reserve_zeroes(len: usize) -> Result<VSpace, rustix::io::Errno> {
        let len = len.next_multiple_of(PAGE_SIZE);
        let base = crate::ram::reserve_aligned_prot(len, 4 << 20, rustix::mm::ProtFlags::READ)?;
        Ok(VSpace { base, len })
    }
    /// `[start, end)`.
    pub fn range(&self) -> (usize, usize) {
        (self.base, self.base + self.len)
    }
}

impl Drop for VSpace {
    fn drop(&mut self) {
        // SAFETY: our reservation; the machine using it is dropped first (Machine's field
        // order), so nothing accesses vmalloc addresses any more.
        let _ = unsafe { munmap(self.base as *mut core::ffi::c_void, self.len) };
    }
}

/// Maps `npages` frames from `pfn` at `va` (see the module docs).
///
/// # Safety
///
/// `[va, va + npages pages)` lies in a live [`VSpace`] and nothing references it; `fd` is the
/// RAM memfd and the frames lie inside it.
pub(crate) unsafe fn map(fd: RawFd, va: VirtAddr, pfn: Pfn, npages: usize, prot: PageProt) -> Result<(), MapError> {
    let mut p = ProtFlags::READ;
    if prot.write {
        p |= ProtFlags::WRITE;
    }
    if prot.exec {
        p |= ProtFlags::EXEC;
    }
    // SAFETY: the memfd outlives the machine's mappings (Machine drops its Kmem and VSpace
    // before its Ram).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // SAFETY: the caller's contract: the range is ours and unreferenced; MAP_FIXED replaces
    // its PROT_NONE reservation.
    unsafe {
        mmap(
            va.as_mut_ptr::<core::ffi::c_void>(),
            npages * PAGE_SIZE,
            p,
            MapFlags::SHARED | MapFlags::FIXED | MapFlags::POPULATE,
            fd,
            pfn.phys().as_u64(),
        )
    }
    .map(|_| ())
    .map_err(|e| MapError::Host(e.raw_os_error()))
}

/// Returns `[va, va + npages pages)` to `PROT_NONE`.
///
/// # Safety
///
/// The range lies in a live [`VSpace`] and nothing accesses it any more.
pub(crate) unsafe fn unmap(va: VirtAddr, npages: usize) -> TlbFlush {
    // SAFETY: the caller's contract; MAP_FIXED replaces the mapping with a fresh reservation.
    let r = unsafe {
        mmap_anonymous(
            va.as_mut_ptr::<core::ffi::c_void>(),
            npages * PAGE_SIZE,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
        )
    };
    // Failing to replace a mapping (ENOMEM for the VMA count) leaves it mapped: a stale
    // alias, as a missing TLB flush would be; it is not a safety problem for kmem itself.
    debug_assert!(r.is_ok(), "unmapping a vmalloc range failed: {r:?}");
    TlbFlush::range(va, npages)
}

/// Moves the `len` bytes of RAM mapping at `from` to `to` in a [`VSpace`] (`mremap`), and
/// reserves `from` again as `PROT_NONE`: the pages, memfd or anonymous, now live only at `to`
/// (a section's page descriptors moving to their vmemmap slot; the direct map has a hole
/// there, which kmem never reaches).
///
/// # Safety
///
/// `[from, from + len)` lies in the RAM mapping, read-write, and nothing references it;
/// `[to, to + len)` lies in a live [`VSpace`] and is not mapped yet; both page aligned.
pub(crate) unsafe fn move_pages(from: usize, to: usize, len: usize) -> Result<(), rustix::io::Errno> {
    // SAFETY: the caller's contract: both ranges are ours and unreferenced; MREMAP_FIXED
    // replaces the reservation at `to`.
    unsafe {
        mremap_fixed(from as *mut core::ffi::c_void, len, len, MremapFlags::MAYMOVE, to as *mut core::ffi::c_void)
    }?;
    // SAFETY: `from` was just vacated; the reservation keeps the host from mapping anything
    // else into the RAM mapping's range.
    unsafe {
        mmap_anonymous(
            from as *mut core::ffi::c_void,
            len,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
        )
    }?;
    Ok(())
}

/// Makes `[at, at + len)` of a [`VSpace::reserve_zeroes`] reservation writable: its pages,
/// private and never written, read as zero until written (a section's page descriptors on a
/// machine with anonymous RAM, [`move_pages`]'s cheaper twin).
///
/// # Safety
///
/// The range lies in a live readable reservation, page aligned, and nothing references it.
pub(crate) unsafe fn commit_zeroes(at: usize, len: usize) -> Result<(), rustix::io::Errno> {
    // SAFETY: the caller's contract: the range is ours, mapped private and anonymous.
    unsafe {
        rustix::mm::mprotect(
            at as *mut core::ffi::c_void,
            len,
            rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
        )
    }
}

/// Whether boot lays the descriptors of a machine with `regions` out flat without a vmemmap
/// (`kmem::boot::flat_run`): the sections usable RAM overlaps are one run, on one node.
/// Without a hotplug reserve, such a machine needs no vmemmap.
pub(crate) fn flat_without_vmemmap(regions: &[MemRegion]) -> bool {
    let sec = kmem::boot::PAGES_PER_SECTION_BYTES;
    let usable = || regions.iter().filter(|r| r.kind == RegionKind::Usable && r.size > 0);
    let nr_sections = usable().map(|r| r.end().as_u64()).max().unwrap_or(0).div_ceil(sec) as usize;
    let node_of = |nr: usize| {
        let (s, e) = (nr as u64 * sec, (nr as u64 + 1) * sec);
        Ok(usable().find(|r| r.start.as_u64() < e && s < r.end().as_u64()).map(|r| r.node))
    };
    // A section across two nodes is refused by boot anyway.
    kmem::boot::flat_run(nr_sections, node_of).is_ok_and(|run| run.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_without_vmemmap_needs_one_run_on_one_node() {
        const MIB: u64 = 1 << 20;
        let r = |s: u64, n: u64| MemRegion::usable(s * MIB, n * MIB);
        assert!(flat_without_vmemmap(&[r(1, 100), r(100, 200)]));
        assert!(!flat_without_vmemmap(&[r(0, 128), r(256, 128)]), "a section-sized hole");
        assert!(flat_without_vmemmap(&[r(0, 100), r(200, 100)]), "a hole inside present sections");
        assert!(!flat_without_vmemmap(&[r(0, 128), r(128, 128).on_node(1)]), "two nodes");
    }
}
