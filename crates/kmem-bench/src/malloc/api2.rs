//! [`Api2`]: any `GlobalAlloc` as an `allocator_api2` allocator.

use super::*;

/// A `GlobalAlloc` as an `allocator_api2` `Allocator` (for `allocator_api2::vec::Vec` and
/// `hashbrown::HashMap`).
#[derive(Debug)]
pub struct Api2<'a, A: GlobalAlloc>(pub &'a A);

impl<A: GlobalAlloc> Clone for Api2<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: GlobalAlloc> Copy for Api2<'_, A> {}

#[inline]
fn slice(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(std::ptr::slice_from_raw_parts_mut(p, len)).ok_or(AllocError)
}

#[inline]
fn dangling(align: usize) -> *mut u8 {
    std::ptr::without_provenance_mut(align)
}

// SAFETY: blocks come from `A` with the layout asked for (zero-sized requests get a dangling,
// aligned pointer and are never passed to `A`); `deallocate`/`grow`/`shrink` hand `A` back
// exactly what it returned, with the layout it was allocated with. Copies share `&A`, so a
// block from one is valid in all.
unsafe impl<A: GlobalAlloc> Allocator for Api2<'_, A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return slice(dangling(layout.align()), 0);
        }
        // SAFETY: non-zero size.
        slice(unsafe { self.0.alloc(layout) }, layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return slice(dangling(layout.align()), 0);
        }
        // SAFETY: non-zero size.
        slice(unsafe { self.0.alloc_zeroed(layout) }, layout.size())
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by `A` with `layout` (Allocator's contract).
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    #[inline]
    unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded Allocator contract.
        unsafe { self.resize(ptr, old, new) }
    }

    #[inline]
    unsafe fn shrink(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded Allocator contract.
        unsafe { self.resize(ptr, old, new) }
    }
}

impl<A: GlobalAlloc> Api2<'_, A> {
    /// `realloc` when the alignment stays and both sizes are non-zero, else allocate, copy
    /// and free.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live block of this allocator of layout `old`.
    #[inline]
    unsafe fn resize(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if old.align() == new.align() && old.size() != 0 && new.size() != 0 {
            // SAFETY: `ptr` is a live block of `old`; the new size is non-zero and, rounded
            // to the same alignment, a valid layout (it is one).
            return slice(unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) }, new.size());
        }
        let n = self.allocate(new)?;
        // SAFETY: both blocks are live and distinct; the smaller size fits both.
        unsafe {
            std::ptr::copy_nonoverlapping(ptr.as_ptr(), n.as_ptr().cast::<u8>(), old.size().min(new.size()));
            self.deallocate(ptr, old);
        }
        Ok(n)
    }
}
