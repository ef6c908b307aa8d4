//! `allocator_api2::alloc::Allocator` over kmem: [`Kmalloc`] (any layout, through
//! kmalloc's routing) and [`SlabAlloc`] (one slab cache's objects).

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use kmem::{Gfp, KmemCache};
use kmem_hosted::Machine;

use crate::route;

/// kmalloc (and the page path, and host mappings above 4 MiB) of a machine as an
/// `Allocator`, with `GFP_KERNEL`. Grows the machine on demand if it has a hotplug reserve.
#[derive(Clone, Copy, Debug)]
pub struct Kmalloc<'m> {
    m: &'m Machine,
}

impl<'m> Kmalloc<'m> {
    /// The allocator of machine `m`.
    pub fn new(m: &'m Machine) -> Self {
        Self { m }
    }
}

fn slice(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(core::ptr::slice_from_raw_parts_mut(p, len)).ok_or(AllocError)
}

// SAFETY: blocks are `layout`-sized and aligned, valid until deallocated, and
// `deallocate` accepts exactly those; the allocator is a shared handle to the machine, so
// clones use the same memory.
unsafe impl Allocator for Kmalloc<'_> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return slice(route::dangling(layout.align()), 0);
        }
        slice(route::alloc(self.m, layout.size(), layout.align(), false), layout.size())
    }
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return slice(route::dangling(layout.align()), 0);
        }
        slice(route::alloc(self.m, layout.size(), layout.align(), true), layout.size())
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // By size first, as `KmemAlloc`'s `dealloc` (`Kmem::kfree_sized_or`: the layout
            // names the block's cache); anything else the long way.
            let req = route::fast_request(layout.size(), layout.align()).unwrap_or(0);
            let m = self.m;
            // SAFETY: `ptr` came from this allocator with `layout` (Allocator's contract).
            unsafe {
                m.kfree_sized_or(ptr.as_ptr(), req, |p| {
                    route::free(m, p.cast_mut());
                })
            };
        }
    }
    unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: `ptr` is a live block of `old` (Allocator's contract).
        let p = unsafe { route::realloc(self.m, ptr.as_ptr(), Some(old.size()), new.size(), new.align()) };
        slice(p, new.size())
    }
    unsafe fn shrink(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: as in `deallocate`.
            unsafe { self.deallocate(ptr, old) };
            return slice(route::dangling(new.align()), 0);
        }
        // SAFETY: as in `grow`.
        let p = unsafe { route::realloc(self.m, ptr.as_ptr(), Some(new.size()), new.size(), new.align()) };
        slice(p, new.size())
    }
}

/// A slab cache as an `Allocator`: every layout that fits the cache's objects (size and
/// alignment) is one object; anything else is an `AllocError`.
#[derive(Clone, Copy, Debug)]
pub struct SlabAlloc<'c> {
    m: &'c Machine,
    cache: &'c KmemCache,
}

impl<'c> SlabAlloc<'c> {
    /// The objects of `cache` on machine `m`.
    pub fn new(m: &'c Machine, cache: &'c KmemCache) -> Self {
        Self { m, cache }
    }
    fn fits(&self, layout: Layout) -> bool {
        layout.size() <= self.cache.object_size() && layout.align() <= self.cache.layout().align as usize
    }
}

// SAFETY: objects are at least `object_size` bytes aligned to the cache's alignment, which
// `fits` checks against the layout; `deallocate` frees exactly those objects to their cache.
unsafe impl Allocator for SlabAlloc<'_> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return slice(route::dangling(layout.align()), 0);
        }
        if !self.fits(layout) {
            return Err(AllocError);
        }
        let p = self.m.kmem_cache_alloc(self.cache, Gfp::KERNEL | Gfp::NOWARN).map_err(|_| AllocError)?;
        slice(p.as_ptr(), self.cache.object_size())
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: an object of this cache (Allocator's contract).
            unsafe { self.m.kmem_cache_free(self.cache, ptr) }
        }
    }
}
