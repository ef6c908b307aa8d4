//! Physical RAM of a hosted machine: a sparse memfd the size of the physical address space,
//! mapped once (the direct map). Ranges that are not usable RAM (holes, firmware) are
//! `PROT_NONE`, so a stray access faults as it would on hardware.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use kmem::{MemRegion, RegionKind, PAGE_SIZE};
use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::mm::{mmap, mmap_anonymous, mprotect, munmap, MapFlags, MprotectFlags, ProtFlags};

/// The memfd and its mapping.
#[derive(Debug)]
pub struct Ram {
    /// The memfd; `None` for anonymous RAM ([`Ram::anonymous`]).
    fd: Option<OwnedFd>,
    base: NonNull<u8>,
    len: usize,
    /// Anonymous RAM advised for transparent huge pages (`MADV_HUGEPAGE`).
    hugepages: bool,
}

// SAFETY: `Ram` only hands out the base address; the mapping itself is process-wide and stays
// valid until drop, whichever thread drops it.
unsafe impl Send for Ram {}
// SAFETY: as for Send: no interior state besides the immutable base and length.
unsafe impl Sync for Ram {}

/// Why RAM could not be set up.
#[derive(Debug)]
pub enum RamError {
    /// memfd_create/ftruncate/mmap/mprotect failed.
    Os(&'static str, rustix::io::Errno),
    /// The memory map is empty.
    Empty,
}

impl std::fmt::Display for RamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RamError::Os(what, e) => write!(f, "{what} failed: {e}"),
            RamError::Empty => write!(f, "memory map is empty"),
        }
    }
}

impl std::error::Error for RamError {}

impl Ram {
    /// Creates RAM covering `[0, end of the highest region)`, with everything that is not a
    /// usable region made inaccessible.
    pub fn new(regions: &[MemRegion]) -> Result<Ram, RamError> {
        Self::with_reserve(regions, 0)
    }

    /// As [`Ram::new`], with the physical address space extended to at least `space` bytes:
    /// the part beyond the memory map is inaccessible until [`Ram::make_usable`] (memory
    /// hot-add). The memfd is sparse: space costs nothing until written.
    pub fn with_reserve(regions: &[MemRegion], space: u64) -> Result<Ram, RamError> {
        Self::build(regions, space, None)
    }

    /// As [`Ram::with_reserve`], but RAM is private anonymous memory in small pages
    /// (`MADV_NOHUGEPAGE`): touching a page commits one page. Nothing can alias it, so a
    /// machine on anonymous RAM has no vmalloc range; a forked child gets a copy.
    pub fn anonymous(regions: &[MemRegion], space: u64) -> Result<Ram, RamError> {
        Self::build(regions, space, Some(false))
    }

    /// As [`Ram::anonymous`], choosing whether transparent huge pages may back it: `true`
    /// advises `MADV_HUGEPAGE` (fewer host faults and TLB misses for a machine that touches
    /// much of its RAM, where the host keeps huge pages cheap; see
    /// `MachineBuilder::ram_hugepages` for when it does not).
    pub fn anonymous_with(regions: &[MemRegion], space: u64, hugepages: bool) -> Result<Ram, RamError> {
        Self::build(regions, space, Some(hugepages))
    }

    /// `anonymous`: `None` for a memfd, `Some(hugepages)` for anonymous memory.
    fn build(regions: &[MemRegion], space: u64, anonymous: Option<bool>) -> Result<Ram, RamError> {
        let end = regions.iter().map(|r| r.end().as_u64()).max().ok_or(RamError::Empty)?.max(space);
        let len = (end as usize).next_multiple_of(PAGE_SIZE);
        // The direct map is aligned to the largest buddy block (4 MiB), so a block's virtual
        // address is as aligned as its physical one: kmalloc's natural alignment of
        // power-of-two sizes holds for virtual addresses too.
        let align = PAGE_SIZE << kmem::MAX_PAGE_ORDER;
        let at = reserve_aligned(len, align).map_err(|e| RamError::Os("mmap", e))?;
        let rw = ProtFlags::READ | ProtFlags::WRITE;
        let (fd, p) = if let Some(huge) = anonymous {
            // The reservation is private anonymous memory already (`PROT_NONE`, no commit
            // charge): the usable ranges become readable and writable below, and nothing
            // replaces it (a `MAP_FIXED` mapping of the whole range, then a `PROT_NONE` above
            // the usable RAM, cost one system call more at every process start).
            let p = at as *mut core::ffi::c_void;
            let advice = if huge { rustix::mm::Advice::LinuxHugepage } else { rustix::mm::Advice::LinuxNoHugepage };
            // SAFETY: advice only, on our reservation; failure (no THP) is harmless.
            let _ = unsafe { rustix::mm::madvise(p, len, advice) };
            (None, p)
        } else {
            let fd = memfd_create("kmem-ram", MemfdFlags::CLOEXEC).map_err(|e| RamError::Os("memfd_create", e))?;
            ftruncate(&fd, len as u64).map_err(|e| RamError::Os("ftruncate", e))?;
            // SAFETY: `[at, at + len)` lies inside our reservation, which only we use; MAP_FIXED
            // replaces that part of it with the memfd.
            let p = unsafe {
                mmap(
                    at as *mut core::ffi::c_void,
                    len,
                    rw,
                    MapFlags::SHARED | MapFlags::NORESERVE | MapFlags::FIXED,
                    &fd,
                    0,
                )
            }
            .map_err(|e| RamError::Os("mmap", e))?;
            (Some(fd), p)
        };
        let hugepages = anonymous == Some(true);
        let ram = Ram { fd, base: NonNull::new(p.cast()).expect("mmap returned null"), len, hugepages };
        let mut usable: Vec<(u64, u64)> = regions
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| (r.start.as_u64(), r.end().as_u64()))
            .collect();
        usable.sort_unstable();
        // The holes between usable ranges become inaccessible (memfd RAM, mapped whole);
        // anonymous RAM, inaccessible whole, opens what lies between the holes instead.
        let mut cur = 0u64;
        let mut open_from = 0usize;
        for (s, e) in usable.into_iter().chain([(len as u64, len as u64)]) {
            let (hs, he) = (cur.next_multiple_of(PAGE_SIZE as u64), s - s % PAGE_SIZE as u64);
            if he > hs {
                match ram.fd {
                    Some(_) => ram.protect_none(hs as usize, (he - hs) as usize)?,
                    None if hs as usize > open_from => ram.make_usable(open_from, hs as usize - open_from)?,
                    None => {}
                }
                open_from = he as usize;
            }
            cur = cur.max(e);
        }
        if ram.fd.is_none() && open_from < len {
            ram.make_usable(open_from, len - open_from)?;
        }
        Ok(ram)
    }

    fn protect_none(&self, off: usize, len: usize) -> Result<(), RamError> {
        // SAFETY: the range lies inside our own mapping (offsets below `self.len`, page aligned);
        // nothing references hole memory.
        unsafe { mprotect(self.base.as_ptr().add(off).cast(), len, MprotectFlags::empty()) }
            .map_err(|e| RamError::Os("mprotect", e))
    }

    /// Makes everything from `off` (page aligned) to the end inaccessible: the part of RAM
    /// above the direct map on a machine with HighMem.
    pub(crate) fn seal_from(&self, off: usize) -> Result<(), RamError> {
        if off < self.len {
            self.protect_none(off, self.len - off)?;
        }
        Ok(())
    }

    /// Makes `[off, off + len)` readable and writable (hot-added RAM).
    pub fn make_usable(&self, off: usize, len: usize) -> Result<(), RamError> {
        assert!(off % PAGE_SIZE == 0 && len % PAGE_SIZE == 0 && off + len <= self.len, "range outside RAM");
        // SAFETY: the range lies inside our own mapping (checked above); making it accessible
        // changes nothing any reference relies on.
        unsafe { mprotect(self.base.as_ptr().add(off).cast(), len, MprotectFlags::READ | MprotectFlags::WRITE) }
            .map_err(|e| RamError::Os("mprotect", e))
    }

    /// The memfd (for aliasing mappings: vmalloc maps RAM pages by file offset); `None` for
    /// anonymous RAM.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }
    /// Virtual address of physical address 0.
    pub fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }
    /// Size of the physical address space mapped.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the mapping was advised for transparent huge pages (anonymous RAM built with
    /// `hugepages`; the host may still back it with small pages).
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }
    /// True if nothing is mapped (never, for a constructed `Ram`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Reserves `len` bytes of `PROT_NONE` address space at an `align`-aligned address (the
/// slack around it is given back) and returns the address.
pub(crate) fn reserve_aligned(len: usize, align: usize) -> Result<usize, rustix::io::Errno> {
    reserve_aligned_prot(len, align, ProtFlags::empty())
}

/// [`reserve_aligned`] with protection `prot`: `ProtFlags::READ` makes a reservation that
/// reads as zero (private anonymous, never written: every read hits the zero page).
pub(crate) fn reserve_aligned_prot(len: usize, align: usize, prot: ProtFlags) -> Result<usize, rustix::io::Errno> {
    // SAFETY: a fresh private reservation at an address the kernel picks; nothing else uses it.
    let resv =
        unsafe { mmap_anonymous(std::ptr::null_mut(), len + align, prot, MapFlags::PRIVATE | MapFlags::NORESERVE) }?
            as usize;
    let at = resv.next_multiple_of(align);
    // SAFETY: the reservation's slack before and after `[at, at + len)` is ours and unused.
    unsafe {
        if at > resv {
            let _ = munmap(resv as *mut core::ffi::c_void, at - resv);
        }
        let tail = resv + len + align - (at + len);
        if tail > 0 {
            let _ = munmap((at + len) as *mut core::ffi::c_void, tail);
        }
    }
    Ok(at)
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: we created this mapping and nothing uses it any more (the machine that used
        // it is dropped first: `Machine` declares its `Kmem` before its `Ram`).
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}
