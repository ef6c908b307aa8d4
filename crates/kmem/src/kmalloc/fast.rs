//! The call-free fast paths of kmalloc and kfree, for allocators built on kmem (kmem-alloc's
//! `malloc` and `GlobalAlloc`): every call left in them is a tail call, so a caller that
//! inlines them saves no registers. Anything unusual returns to the caller's own slow path
//! ([`Kmem::kmalloc_try_fast`]) or goes to the function it passes ([`Kmem::kfree_slab_or`]).

use core::ptr::NonNull;

use super::index::{kmalloc_index, KmallocType, KMALLOC_MAX_CACHE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::cache::KmemCache;
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// [`Kmem::kfree`] of an object of a plain slab (the common case, on the fast path),
    /// else `other(p)`, which must free or report anything else (a large block, a debug
    /// cache's object, a bad pointer): `other` may be [`Kmem::kfree_large`] with the caller's
    /// bookkeeping around it. Every call in it is a tail call, so an allocator built on it
    /// (`kmem-alloc`) saves no registers on its free path.
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let small = m.kmalloc(64, Gfp::KERNEL).unwrap();
    /// let large = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap();
    /// let mut others = 0;
    /// for p in [small, large] {
    ///     // SAFETY: both are live kmalloc blocks, not used afterwards.
    ///     unsafe {
    ///         m.kfree_slab_or(p.as_ptr(), |p| {
    ///             others += 1;
    ///             m.kfree(p)
    ///         })
    ///     };
    /// }
    /// assert_eq!(others, 1, "the slab object took the fast path, the large block the other");
    /// ```
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_slab_or(&self, p: *const u8, other: impl FnOnce(*const u8)) {
        let addr = p as usize;
        // NULL and ZERO_SIZE_PTR need no test of their own: they are outside the direct map,
        // or in a frame boot reserved (`Kmem::boot`), never in a slab.
        if let Some((slab, word, off)) = self.slab_head_off(addr) {
            if let Some(c) = self.plain_slab_cache(word) {
                if c.is_plain_object(off) {
                    return self.free_checked(c, slab, off as u32, addr - off);
                }
            }
        }
        other(p)
    }

    /// `kmalloc(size, gfp)` when the class's cache exists and this CPU's main sheaf has an
    /// object to hand out with no call at all (see [`Kmem::kmalloc`]); `None` otherwise, and
    /// nothing is reported: the caller then calls [`Kmem::kmalloc`], which takes every
    /// careful and slow path. Not for `__GFP_ZERO` or requests that may report.
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// // The class's sheaf is empty before the first kmalloc: the caller's slow path.
    /// let p = m.kmalloc_try_fast(100, Gfp::KERNEL).map_or_else(|| m.kmalloc(100, Gfp::KERNEL).unwrap(), |p| p);
    /// assert!(m.kmalloc_try_fast(100, Gfp::KERNEL | Gfp::ZERO).is_none(), "never zeroes");
    /// // SAFETY: ours, not used afterwards.
    /// unsafe { m.kfree(p.as_ptr()) };
    /// ```
    #[inline(always)]
    pub fn kmalloc_try_fast(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        if size.wrapping_sub(1) >= KMALLOC_MAX_CACHE_SIZE
            || gfp.intersects(Gfp::ZERO.union(Gfp::SLAB_BUG_MASK))
            || (gfp.allows_blocking() && self.platform().atomic_context())
        {
            return None;
        }
        let p = self.kmalloc_state().caches[KmallocType::of(gfp) as usize][kmalloc_index(size)].load(Ordering::Acquire);
        if p == 0 {
            return None;
        }
        // SAFETY: slots hold descriptors of kmalloc caches, which are never destroyed.
        let cache = unsafe { &*(p as *const KmemCache) };
        // Armed fault injection (failslab) marks the cache's machine word: kmalloc's careful
        // path runs the hook.
        if !cache.fast_is_of(self) {
            return None;
        }
        let obj = self.alloc_fast(cache)?;
        // SAFETY: object addresses are direct-map addresses, never 0.
        Some(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }
}
