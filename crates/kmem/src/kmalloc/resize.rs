//! Sizes and resizes of kmalloc allocations: `ksize`, `krealloc`, `kfree_sensitive`, and
//! [`Kmem::ksize_checked`], the size a resize may trust (a freed object is reported, not
//! resized in place).

use core::ptr::NonNull;

use super::{zero_size_ptr, KmallocError, KmallocErrorKind, Owner};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::{KmemCache, SlabFlags};
use crate::PAGE_SIZE;

impl<P: Platform> Kmem<P> {
    /// `ksize(p)`: bytes of the allocation the caller may use (the bucket, or the large
    /// block); 0 for null, `ZERO_SIZE_PTR` and (reported) pointers kmalloc did not return.
    ///
    /// # Safety
    ///
    /// `p` must be null, `ZERO_SIZE_PTR` or a live allocation of this machine.
    pub unsafe fn ksize(&self, p: *const u8) -> usize {
        match self.kmalloc_owner(p) {
            Owner::Nothing => 0,
            Owner::Slab(_, c, _, _) => c.layout().ksize() as usize,
            Owner::NotObject(..) => {
                self.kfree_invalid("ksize", p);
                0
            }
            Owner::Large(_, order) => PAGE_SIZE << order,
            // `kfence_ksize()`: the size asked for, not the bucket's.
            Owner::Kfence => match self.kfence_ksize(p as usize) {
                Some(n) if n > 0 => n,
                _ => {
                    self.kfree_invalid("ksize", p);
                    0
                }
            },
            Owner::Invalid => {
                self.kfree_invalid("ksize", p);
                0
            }
        }
    }

    /// `kfree_sensitive(p)`: zeroes the whole bucket (`ksize` bytes) before freeing.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[track_caller]
    pub unsafe fn kfree_sensitive(&self, p: *const u8) {
        // SAFETY: forwarded caller contract.
        let ks = unsafe { self.ksize(p) };
        if ks != 0 {
            // SAFETY: the allocation is the caller's and `ks` bytes long; volatile so the
            // zeroing is not optimised away (`memzero_explicit`).
            unsafe {
                for i in 0..ks {
                    core::ptr::write_volatile((p as *mut u8).add(i), 0);
                }
            }
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.kfree(p) };
    }

    /// `krealloc(p, new_size, gfp)`: resizes in place when the bucket allows (with
    /// `__GFP_ZERO` the bytes between the old request and the new size are zeroed when the
    /// old size is known, i.e. on debug caches that record it, as Linux 6.x); otherwise a new
    /// allocation, the old contents copied, the old one freed. `new_size` 0 frees `p` and
    /// returns `ZERO_SIZE_PTR`; a null `p` allocates. On failure `p` is untouched.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`] for `p`; on success the caller must use only the returned pointer.
    #[track_caller]
    pub unsafe fn krealloc(&self, p: *mut u8, new_size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let caller = core::panic::Location::caller();
        if new_size == 0 {
            // SAFETY: forwarded caller contract.
            unsafe { self.kfree(p) };
            return Ok(zero_size_ptr());
        }
        let Some((ks, orig, cache)) = self.resize_owner(p, caller) else {
            return Err(KmallocError { size: new_size, gfp, kind: KmallocErrorKind::InvalidPointer });
        };
        if ks == 0 {
            // `p` is null or `ZERO_SIZE_PTR`: an allocation.
            return self.kmalloc_node_at(new_size, gfp, None, caller);
        }
        if new_size <= ks {
            // SAFETY: the allocation is the caller's, `ks` bytes.
            unsafe {
                if gfp.contains(Gfp::ZERO) {
                    if orig < new_size {
                        core::ptr::write_bytes(p.add(orig), 0, new_size - orig);
                    } else {
                        core::ptr::write_bytes(p.add(new_size), 0, ks - new_size);
                    }
                }
            }
            if let Some(c) = cache.filter(|c| c.layout().has_orig_size()) {
                self.set_orig_size(c, p as usize, new_size as u32);
                if c.flags().contains(SlabFlags::RED_ZONE) && new_size < ks {
                    // SAFETY: the bucket's tail, part of the caller's object slot.
                    unsafe { core::ptr::write_bytes(p.add(new_size), crate::slab::debug::RED_ACTIVE, ks - new_size) };
                }
            }
            // SAFETY: `p` is a live allocation, not null.
            return Ok(unsafe { NonNull::new_unchecked(p) });
        }
        let n = self.kmalloc_node_at(new_size, gfp, None, caller)?;
        // SAFETY: both allocations are the caller's; the old one holds `orig.min(ks)` bytes of
        // the caller's data and the new one at least `new_size > ks` bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(p, n.as_ptr(), orig.min(ks));
            self.kfree(p);
        }
        Ok(n)
    }

    /// `ksize(p)` for a resize of `p` (`krealloc`, or an allocator's `realloc` built on
    /// kmalloc): the bytes the caller may use, as [`Kmem::ksize`], but an object already
    /// free is reported as the double free it would become (`Object already free`) and gives
    /// 0, as does (reported) any pointer kmalloc did not hand out; 0 and no report for null
    /// and `ZERO_SIZE_PTR`. `ksize` itself does not look (Linux's does not either): resizing
    /// a freed object in place would hand it to the caller while a sheaf or freelist still
    /// holds it, and so to two owners.
    ///
    /// # Safety
    ///
    /// As [`Kmem::ksize`].
    #[track_caller]
    pub unsafe fn ksize_checked(&self, p: *const u8) -> usize {
        self.resize_owner(p, core::panic::Location::caller()).map_or(0, |(ks, _, _)| ks)
    }

    /// What a resize of `p` starts from: its usable bytes, the bytes of the caller's data in
    /// them (the request recorded by a debug cache, else the usable bytes) and its cache;
    /// `(0, 0, None)` for null and `ZERO_SIZE_PTR`; `None` (reported) for a freed object or
    /// anything kmalloc did not hand out.
    fn resize_owner(
        &self,
        p: *const u8,
        caller: &'static core::panic::Location<'static>,
    ) -> Option<(usize, usize, Option<&KmemCache>)> {
        match self.kmalloc_owner(p) {
            Owner::Nothing => Some((0, 0, None)),
            Owner::Slab(slab, c, off, base) => {
                if self.object_is_free(c, slab, off, base) {
                    // Resizing a freed object would hand it out twice.
                    self.double_free(c, slab, p as usize);
                    return None;
                }
                Some((c.object_size(), self.get_orig_size(c, p as usize) as usize, Some(c)))
            }
            Owner::NotObject(..) | Owner::Invalid => {
                self.kfree_invalid("krealloc", p);
                None
            }
            Owner::Large(_, order) => Some((PAGE_SIZE << order, PAGE_SIZE << order, None)),
            Owner::Kfence => match self.kfence_ksize(p as usize) {
                Some(n) if n > 0 => Some((n, n, None)),
                _ => {
                    // Not a live KFENCE object: KFENCE's invalid-free report.
                    self.kfence_free(p as usize, caller);
                    None
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
