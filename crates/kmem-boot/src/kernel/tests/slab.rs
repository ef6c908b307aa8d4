//! Slab and kmalloc tests.

use core::ptr::NonNull;

use kmem::{Gfp, Kmem, ReportKind, SlabFlags};

use super::{check, TestResult};
use crate::kernel::platform::BootPlatform;

const OBJ: usize = 40;
fn debug_flags() -> SlabFlags {
    SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER | SlabFlags::CONSISTENCY_CHECKS
}

/// A debug cache: 300 objects written and checked, freed; no report.
pub fn debug_cache(m: &'static Kmem<BootPlatform>) -> TestResult {
    let before = m.report_count(ReportKind::SlabBug);
    let cache =
        m.kmem_cache_create("boot_debug", OBJ, 8, debug_flags(), None).map_err(|_| "kmem_cache_create failed")?;
    let mut objs: [Option<NonNull<u8>>; 300] = [None; 300];
    for (i, o) in objs.iter_mut().enumerate() {
        let p = m.kmem_cache_alloc(&cache, Gfp::KERNEL).map_err(|_| "kmem_cache_alloc failed")?;
        // SAFETY: a fresh object of OBJ bytes, ours.
        unsafe { core::ptr::write_bytes(p.as_ptr(), i as u8, OBJ) };
        *o = Some(p);
    }
    let mut ok = true;
    for (i, o) in objs.iter().enumerate() {
        let p = o.ok_or("missing object")?;
        // SAFETY: written above, ours.
        ok &= unsafe { core::slice::from_raw_parts(p.as_ptr(), OBJ) }.iter().all(|&b| b == i as u8);
    }
    for p in objs.iter().flatten() {
        // SAFETY: from this cache, freed once.
        unsafe { m.kmem_cache_free(&cache, *p) };
    }
    drop(cache);
    check(ok, "an object lost its contents")?;
    check(m.report_count(ReportKind::SlabBug) == before, "a healthy cache reported a slab bug")
}

/// A write one byte past an object of a red-zoned cache is reported (`BUG boot_redzone:
/// ... Redzone overwritten`) when the object is freed, and the cache keeps working.
pub fn redzone_misuse(m: &'static Kmem<BootPlatform>) -> TestResult {
    let before = m.report_count(ReportKind::SlabBug);
    let cache =
        m.kmem_cache_create("boot_redzone", OBJ, 8, debug_flags(), None).map_err(|_| "kmem_cache_create failed")?;
    let p = m.kmem_cache_alloc(&cache, Gfp::KERNEL).map_err(|_| "kmem_cache_alloc failed")?;
    // SAFETY: the byte after the object is its right red zone, inside the slab's memory
    // (RED_ZONE lays one out): the deliberate overflow the debug checks must catch.
    unsafe { p.as_ptr().add(OBJ).write_volatile(0x42) };
    // SAFETY: from this cache, freed once.
    unsafe { m.kmem_cache_free(&cache, p) };
    let provoked = m.report_count(ReportKind::SlabBug) - before;
    super::PROVOKED_SLAB_BUGS.fetch_add(provoked, core::sync::atomic::Ordering::Relaxed);
    let reported = provoked > 0;
    let q = m.kmem_cache_alloc(&cache, Gfp::KERNEL).map_err(|_| "the cache stopped working")?;
    // SAFETY: from this cache, freed once.
    unsafe { m.kmem_cache_free(&cache, q) };
    // The corrupted object stays allocated (SLUB does not free an object whose red zone is
    // broken), so the cache is left alive rather than destroyed with an object in it.
    core::mem::forget(cache);
    check(reported, "the red-zone overwrite was not reported")
}

/// kmalloc of every size class up to 8 KiB and two large sizes: `ksize` covers the
/// request, the requested bytes hold, `kfree` takes them back. Only the requested bytes are
/// written: with `slub_debug=Z` the rest of the bucket is the kmalloc red zone, and writing
/// it after `ksize` is the misuse Linux 6.x reports (callers use `kmalloc_size_roundup`).
pub fn kmalloc_sizes(m: &'static Kmem<BootPlatform>) -> TestResult {
    for size in [1, 8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 3 * 4096 + 5, 64 << 10] {
        for gfp in [Gfp::KERNEL, Gfp::ATOMIC, Gfp::KERNEL | Gfp::ZERO] {
            let p = m.kmalloc(size, gfp).map_err(|_| "kmalloc failed")?;
            // SAFETY: `p` is ours.
            let ks = unsafe { m.ksize(p.as_ptr()) };
            // SAFETY: `size` bytes at `p` are ours (`ks >= size` checked first).
            let ok = ks >= size
                && unsafe {
                    let zero_ok = !gfp.contains(Gfp::ZERO)
                        || core::slice::from_raw_parts(p.as_ptr(), size).iter().all(|&b| b == 0);
                    core::ptr::write_bytes(p.as_ptr(), 0x77, size);
                    zero_ok && p.as_ptr().add(size - 1).read_volatile() == 0x77
                };
            // SAFETY: from kmalloc, freed once.
            unsafe { m.kfree(p.as_ptr()) };
            check(ok, "a kmalloc object is smaller than asked, not zeroed, or lost its bytes")?;
        }
    }
    Ok(())
}
