//! A minimal platform: what a uniprocessor kernel gives kmem, and so what a kernel's fast
//! paths cost without the hosted CPU emulation (the "minimal" column of the instruction
//! counts, `scripts/cost_check.sh`).
//!
//! The platform is the bare-metal example's, [`kmem_minimal::MinimalPlatform`] (one CPU,
//! `preempt_disable` and `pin_cpu` a plain counter, interrupts a flag that no interrupt ever
//! finds clear, software 4-level page tables for vmalloc); this module gives it what a
//! process has:
//!
//! - the direct map is a page-aligned heap buffer (zeroed, faulted in on first touch),
//!   leaked: it lives as long as the process;
//! - the vmalloc range is [`VMALLOC_BYTES`] of reserved, inaccessible address space (never
//!   dereferenced by the core or the platform);
//! - reports are written to stderr (the core counts them: `Kmem::report_count`).
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

use std::io::Write;
use std::ptr::NonNull;

use kmem::{Kmem, MemRegion, VirtAddr, PAGE_SIZE};
pub use kmem_minimal::MinimalPlatform;

/// Bytes of the vmalloc range.
pub const VMALLOC_BYTES: usize = 1 << 30;

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
    let Some(base) = NonNull::new(base) else { std::alloc::handle_alloc_error(layout) };
    let vstart = reserve(VMALLOC_BYTES);
    // SAFETY: the buffer is page aligned, read-write, ours alone and never freed (leaked); the
    // caller keeps the machine to one thread at a time.
    let platform = unsafe { MinimalPlatform::new(base, bytes) }
        .with_vmalloc_range(VirtAddr::new(vstart), VirtAddr::new(vstart + VMALLOC_BYTES))
        .with_console(to_stderr);
    kmem_minimal::boot(platform, &[MemRegion::usable(0, bytes as u64)]).expect("minimal machine boots")
}

/// The console: reports are formatted into a stack buffer by the platform, so nothing here
/// allocates.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
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
