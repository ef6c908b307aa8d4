//! Routing one request to the right part of a machine, by size and alignment:
//!
//! | request | served by |
//! |---|---|
//! | up to 8 KiB, alignment up to 8 | `kmalloc` size classes (slab) |
//! | larger alignment (power of two) | `kmalloc` of the next power of two (naturally aligned) |
//! | up to 128 KiB, on the process machine | slab caches of their own (`medium.rs`) |
//! | up to 4 MiB (`KMALLOC_MAX_SIZE`) | `kmalloc`'s large path: compound pages |
//! | above 4 MiB | host mappings (`huge`), until kmem has vmalloc |
//!
//! A request the machine cannot serve makes it grow (`Machine::hot_add`, 128 MiB at a time)
//! and is retried. It grows **before it reclaims**: the slow path's requests carry no
//! `__GFP_DIRECT_RECLAIM` while the hotplug reserve lasts, so a full machine takes another
//! section (address space and descriptors: pages cost the host only once touched) instead of
//! running direct reclaim, whose flush of every CPU's sheaves (each CPU stopped) a heap that
//! only grows paid again each time the little it freed was used up (`perl` building a hash of
//! 500,000 entries: 484 reclaim sweeps, 1.07x glibc's time, now 0.90x; a C++ program of 4
//! threads each building a `std::map` of 600,000 entries: 15-20x glibc's time, now 0.87x).
//! Before it grows, the machine sweeps the slab lists, which stops no CPU (`global::grow`):
//! what frees parked in the barns serves other sizes first. Once the reserve is used up, the
//! request is made with `GFP_KERNEL` (direct reclaim, then the failure).

use core::ptr::NonNull;

use kmem::kmalloc::{kmalloc_index_aligned, KMALLOC_ALIGN, KMALLOC_MAX_SIZE, KMALLOC_MIN_SIZE, ZERO_SIZE_PTR};
use kmem::{Gfp, Kmem};
use kmem_hosted::{Machine, ProcessCpu};

use crate::{global, huge, medium};

/// The kmalloc request that serves `size` bytes aligned to `align`, if kmalloc can.
#[inline]
pub(crate) fn kmalloc_request(size: usize, align: usize) -> Option<usize> {
    if align <= KMALLOC_MIN_SIZE || (align <= KMALLOC_ALIGN && align.is_power_of_two()) {
        // Every kmalloc object of KMALLOC_ALIGN bytes or more is that aligned (kmem's
        // guarantee), large blocks are page-aligned: the exact class serves malloc's 16.
        let size = if align > KMALLOC_MIN_SIZE { size.max(KMALLOC_ALIGN) } else { size.max(1) };
        return (size <= KMALLOC_MAX_SIZE).then_some(size);
    }
    if !align.is_power_of_two() || align > KMALLOC_MAX_SIZE {
        return None;
    }
    // Power-of-two kmalloc sizes are naturally aligned (slab buckets and page blocks alike).
    let r = size.max(align).checked_next_power_of_two()?;
    (r <= KMALLOC_MAX_SIZE).then_some(r)
}

/// Whether `p` lies in the machine's RAM (was handed out by kmalloc).
#[inline]
pub(crate) fn in_ram(m: &Machine, p: *const u8) -> bool {
    let (base, len) = m.ram_range();
    (p as usize).wrapping_sub(base) < len
}

/// The flags of every fast-path request: GFP_NOWAIT, since the fast path takes an object
/// from the CPU's sheaf and never sleeps either way, and a request that may not sleep skips
/// the atomic-context test (`might_alloc`), which the slow path's GFP_KERNEL still makes;
/// `__GFP_ZERO` for `calloc` and `alloc_zeroed` (the fast path zeroes the object).
#[inline(always)]
const fn fast_gfp(zero: bool) -> Gfp {
    if zero {
        Gfp::NOWAIT.union(Gfp::NOWARN).union(Gfp::ZERO)
    } else {
        Gfp::NOWAIT.union(Gfp::NOWARN)
    }
}

/// Allocates `size` bytes aligned to `align` (zeroed with `zero`), growing the machine as
/// needed; null on failure.
/// The fast path (a class whose CPU sheaf has an object) makes no call but the tail call
/// to [`alloc_slow`]. It takes the requests of the usual alignments only (at most 8, and
/// 16), and leaves size 0 (`kmalloc_try_fast` refuses it) and everything else to the slow
/// path, so that it tests the size once (against the largest slab class).
#[inline(always)]
pub(crate) fn alloc(m: &Machine, size: usize, align: usize, zero: bool) -> *mut u8 {
    if let Some(req) = fast_request(size, align) {
        if let Some(p) = m.kmalloc_try_fast(req, fast_gfp(zero)) {
            return p.as_ptr();
        }
    }
    alloc_slow(m, size, align, zero)
}

/// [`alloc`] of `size` bytes aligned to [`KMALLOC_ALIGN`] (16: C's `malloc` and `calloc`,
/// glibc's `MALLOC_ALIGNMENT`): the size goes to its class in one table lookup
/// (`kmalloc_index_aligned`, size 0 included, which gets the 16-byte class the slow path
/// gives it), where `alloc` clamps the size to 16 first. A function of its own: in `alloc`,
/// whose alignment a Rust program's layouts give at run time, a second inlined copy of the
/// fast path made its callers save more registers.
#[inline(always)]
pub(crate) fn alloc16(m: &Machine, size: usize, zero: bool) -> *mut u8 {
    if let Some(p) = alloc16_fast(m, size, zero) {
        return p.as_ptr();
    }
    alloc_slow(m, size, KMALLOC_ALIGN, zero)
}

/// [`alloc`]'s fast path on the thread's process CPU as its gate has it
/// (`raw::alloc_aligned`): `None` for the caller's slow path (which the gate's being closed
/// leads to too).
#[inline(always)]
pub(crate) fn alloc_on(cpu: ProcessCpu, size: usize, align: usize, zero: bool) -> Option<NonNull<u8>> {
    let req = fast_request(size, align)?;
    if req.wrapping_sub(1) >= kmem::kmalloc::KMALLOC_MAX_CACHE_SIZE {
        return None;
    }
    class_fast_on(cpu, kmem::kmalloc::kmalloc_index(req), zero)
}

/// [`alloc16_fast`] on the thread's process CPU as its gate has it (`raw::alloc_malloc_fast`).
#[inline(always)]
pub(crate) fn alloc16_fast_on(cpu: ProcessCpu, size: usize, zero: bool) -> Option<NonNull<u8>> {
    class_fast_on(cpu, kmalloc_index_aligned(size)?, zero)
}

/// An object of kmalloc class `index` from the sheaf of the thread's process CPU, the
/// machine reached only once that CPU is pinned (so only if the machine exists).
#[inline(always)]
fn class_fast_on(cpu: ProcessCpu, index: usize, zero: bool) -> Option<NonNull<u8>> {
    // SAFETY: the pin goes to its own machine's fast path, and the machine is reached only
    // after it succeeded (a pin of the thread's process CPU proves the machine exists).
    Kmem::kmalloc_class_fast_with(|| unsafe { &**cpu.machine_unchecked() }, index, zero, || unsafe { cpu.try_pin() })
}

/// [`alloc16`]'s fast path alone: `None` where it would go on to [`alloc_slow`].
#[inline(always)]
pub(crate) fn alloc16_fast(m: &Machine, size: usize, zero: bool) -> Option<NonNull<u8>> {
    let index = kmalloc_index_aligned(size)?;
    m.kmalloc_try_fast_index(index, fast_gfp(zero))
}

/// The kmalloc request of [`alloc`]'s fast path: the usual alignments (at most 8, and 16),
/// and larger powers of two for the slab classes (`aligned_alloc(64, n)`, C++'s
/// `alignas(64)` objects: a power-of-two bucket is naturally aligned); `None` for the others
/// and for sizes past the slab classes. The slow path's [`kmalloc_request`] makes the same
/// request for these. A size the request cannot serve (0, or too large) is left for
/// `kmalloc_try_fast` to refuse.
#[inline(always)]
pub(crate) fn fast_request(size: usize, align: usize) -> Option<usize> {
    if align <= KMALLOC_MIN_SIZE {
        Some(size)
    } else if align == KMALLOC_ALIGN {
        // Every kmalloc object of KMALLOC_ALIGN bytes or more is that aligned.
        Some(size.max(KMALLOC_ALIGN))
    } else {
        fast_request_aligned(size, align)
    }
}

/// [`fast_request`] for alignments above 16: the power of two at or above both, while it
/// names a slab class (at most 8 KiB, so that no overflow is possible).
#[inline(always)]
fn fast_request_aligned(size: usize, align: usize) -> Option<usize> {
    const MAX: usize = kmem::kmalloc::KMALLOC_MAX_CACHE_SIZE;
    if !align.is_power_of_two() || align > MAX || size > MAX {
        return None;
    }
    Some(size.max(align).next_power_of_two())
}

/// [`alloc`] past its fast path: zeroing, huge mappings, kmalloc's slow paths (without
/// direct reclaim: see the module docs), growing.
#[inline(never)]
pub(crate) fn alloc_slow(m: &Machine, size: usize, align: usize, zero: bool) -> *mut u8 {
    // Size 0 gives a unique minimal block, as C's malloc.
    let size = size.max(1);
    let Some(req) = kmalloc_request(size, align) else { return huge::alloc(size, align, zero) };
    let gfp = if zero { Gfp::KERNEL | Gfp::NOWARN | Gfp::ZERO } else { Gfp::KERNEL | Gfp::NOWARN };
    if medium::is_medium(req) {
        match medium::alloc(m, req, gfp.without(Gfp::DIRECT_RECLAIM)) {
            Some(Some(p)) => return p,
            Some(None) => return alloc_growing(m, req, gfp),
            None => {}
        }
    }
    match m.kmalloc(req, gfp.without(Gfp::DIRECT_RECLAIM)) {
        Ok(p) => p.as_ptr(),
        Err(_) => alloc_growing(m, req, gfp),
    }
}

/// [`alloc`] once the machine had nothing: grow it and retry, still without direct reclaim,
/// until the hotplug reserve is used up; then one `GFP_KERNEL` request (direct reclaim
/// first), whose failure is the caller's null.
#[cold]
#[inline(never)]
fn alloc_growing(m: &Machine, req: usize, gfp: Gfp) -> *mut u8 {
    // The request as `alloc_slow` makes it: a medium block from its cache, else kmalloc.
    let try_alloc = |gfp: Gfp| {
        if medium::is_medium(req) {
            if let Some(p) = medium::alloc(m, req, gfp) {
                return p;
            }
        }
        m.kmalloc(req, gfp).ok().map(|p| p.as_ptr())
    };
    loop {
        let seen = global::grown();
        if let Some(p) = try_alloc(gfp.without(Gfp::DIRECT_RECLAIM)) {
            return p;
        }
        if !global::grow(m, seen) {
            return try_alloc(gfp).unwrap_or(core::ptr::null_mut());
        }
    }
}

/// Frees anything [`alloc`] returned (null and `ZERO_SIZE_PTR` included). Returns the bytes
/// of kmem memory freed (its `ksize`; 0 for huge mappings and no-ops). A pointer outside
/// the RAM that is no live huge mapping is reported and ignored ([`crate::misuse`]).
///
/// # Safety
///
/// `p` must come from [`alloc`]/[`realloc`] on `m` (or be null) and not be used afterwards.
#[inline]
pub(crate) unsafe fn free(m: &Machine, p: *mut u8) -> usize {
    if (p as usize) <= ZERO_SIZE_PTR {
        return 0;
    }
    if in_ram(m, p) {
        // SAFETY: a kmalloc allocation of `m` (caller's contract).
        unsafe { m.kfree_large(p) }
    } else {
        // Not in RAM: a huge mapping, or a pointer `huge` does not find and reports.
        huge::free(p);
        0
    }
}

/// Usable bytes of an allocation; 0 for a pointer outside the RAM that is no live huge
/// mapping.
///
/// # Safety
///
/// As [`free`], for a live allocation.
pub(crate) unsafe fn usable_size(m: &Machine, p: *const u8) -> usize {
    if (p as usize) <= ZERO_SIZE_PTR {
        0
    } else if in_ram(m, p) {
        // SAFETY: a live kmalloc allocation (caller's contract).
        unsafe { m.ksize(p) }
    } else {
        // 0 for a pointer that is no live huge mapping.
        huge::usable_size(p)
    }
}

/// Resizes: in place when the allocation's bucket (or mapping) holds `new_size` at the
/// alignment, a host mapping that stays one by `mremap` (`huge::remap`), else a new
/// allocation with `copy` bytes copied (at most the old usable size).
/// Null on failure, with `p` untouched.
///
/// # Safety
///
/// As [`free`]; on success only the returned pointer may be used.
pub(crate) unsafe fn realloc(m: &Machine, p: *mut u8, copy: Option<usize>, new_size: usize, align: usize) -> *mut u8 {
    if (p as usize) <= ZERO_SIZE_PTR {
        return alloc(m, new_size, align, false);
    }
    // Inside RAM `ksize_checked`, not `ksize`: a block already freed is reported, not
    // resized in place (which would hand it out while a sheaf still holds it).
    let us = if in_ram(m, p) {
        // SAFETY: a live allocation of `m` (caller's contract; a freed one is reported).
        unsafe { m.ksize_checked(p) }
    } else {
        huge::usable_size(p)
    };
    if us == 0 {
        // Not a live block: outside RAM, `huge` knows no such block (reported here); inside,
        // `ksize_checked` reported it. Null, `p` untouched.
        if !in_ram(m, p) {
            crate::misuse::report(crate::misuse::Misuse::InvalidRealloc, p);
        }
        return core::ptr::null_mut();
    }
    let shrink_a_lot = us > 4096 && new_size < us / 4;
    if new_size <= us && (p as usize) % align.max(1) == 0 && !shrink_a_lot {
        return p;
    }
    if new_size > KMALLOC_MAX_SIZE && !in_ram(m, p) {
        // A host mapping that stays one: its mapping is resized (moved if need be), not copied.
        if let Some(n) = huge::remap(p, new_size, align) {
            return n;
        }
    }
    let n = alloc(m, new_size, align, false);
    if !n.is_null() {
        let len = copy.unwrap_or(us).min(us).min(new_size);
        // SAFETY: both allocations are live and ours; `len` fits both.
        unsafe {
            core::ptr::copy_nonoverlapping(p, n, len);
            free(m, p);
        }
    }
    n
}

/// A non-null pointer for zero-sized Rust allocations (never dereferenced).
pub(crate) fn dangling(align: usize) -> *mut u8 {
    NonNull::<u8>::dangling().as_ptr().wrapping_add(align.max(1) - 1)
}

#[cfg(test)]
mod tests {
    use super::{fast_request, kmalloc_request};

    /// The fast path asks kmalloc for what the slow path would (so a block's class is the
    /// same whichever path served it, and `free_sized` finds it from the layout), for every
    /// alignment it takes; it leaves the rest to the slow path.
    #[test]
    fn the_fast_request_is_the_slow_one() {
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 256, 4096, 8192] {
            for size in [1usize, 7, 8, 15, 16, 17, 24, 63, 64, 65, 100, 1000, 1024, 4096, 5000, 8192] {
                if let Some(r) = fast_request(size, align) {
                    assert_eq!(Some(r), kmalloc_request(size, align), "size {size} align {align}");
                    if align > 16 {
                        assert!(r.is_power_of_two() && r >= align && r >= size, "naturally aligned bucket");
                    }
                }
            }
        }
        assert_eq!(fast_request(100, 64), Some(128));
        assert_eq!(fast_request(5000, 4096), Some(8192));
        assert_eq!(fast_request(8193, 64), None, "past the slab classes: the slow path");
        assert_eq!(fast_request(100, 16384), None);
        assert_eq!(fast_request(100, 48), None, "not a power of two");
    }
}
