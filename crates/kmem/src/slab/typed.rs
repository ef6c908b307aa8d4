//! The typed, safe layer: a cache of `T` ([`TypedCache`]) handing out owning boxes
//! ([`SlabBox`]) that drop their value and free the object.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use super::cache::{Cache, KmemCache};
use super::flags::SlabFlags;
use super::{CacheError, SlabAllocError};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;

/// A slab cache of `T`s.
///
/// ```
/// use kmem::{Gfp, SlabFlags};
/// struct Task { pid: u32, comm: [u8; 16] }
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let tasks = m.typed_cache::<Task>("task_struct", SlabFlags::HWCACHE_ALIGN).unwrap();
/// let mut t = tasks.alloc(Gfp::KERNEL, Task { pid: 1, comm: *b"init\0\0\0\0\0\0\0\0\0\0\0\0" }).unwrap();
/// t.pid = 2;
/// assert_eq!(t.pid, 2);
/// drop(t); // drops the Task and frees the object
/// ```
pub struct TypedCache<'m, P: Platform, T> {
    cache: Cache<'m, P>,
    _t: PhantomData<fn() -> T>,
}

impl<P: Platform> Kmem<P> {
    /// A cache of `T` (`KMEM_CACHE(T, flags)`): objects of `size_of::<T>()` bytes aligned
    /// to `align_of::<T>()`.
    pub fn typed_cache<T>(&self, name: &str, flags: SlabFlags) -> Result<TypedCache<'_, P, T>, CacheError> {
        let cache =
            self.kmem_cache_create(name, core::mem::size_of::<T>().max(1), core::mem::align_of::<T>(), flags, None)?;
        Ok(TypedCache { cache, _t: PhantomData })
    }
}

impl<'m, P: Platform, T> TypedCache<'m, P, T> {
    /// Allocates an object and moves `value` into it. On failure `value` is dropped.
    #[track_caller]
    pub fn alloc(&self, gfp: Gfp, value: T) -> Result<SlabBox<'_, P, T>, SlabAllocError> {
        let p =
            self.cache.kmem.slab_alloc(&self.cache, gfp.without(Gfp::ZERO), None, core::panic::Location::caller())?;
        let ptr = p.cast::<T>();
        // SAFETY: a fresh object of at least size_of::<T>() bytes aligned for T, ours.
        unsafe { ptr.as_ptr().write(value) };
        Ok(SlabBox { kmem: self.cache.kmem, cache: &self.cache, ptr })
    }
    /// The underlying cache.
    pub fn cache(&self) -> &Cache<'m, P> {
        &self.cache
    }
}

impl<P: Platform, T> fmt::Debug for TypedCache<'_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cache.fmt(f)
    }
}

/// A `T` in a slab object, owned: dropping it drops the `T` and frees the object.
pub struct SlabBox<'c, P: Platform, T> {
    kmem: &'c Kmem<P>,
    cache: &'c KmemCache,
    ptr: NonNull<T>,
}

// SAFETY: the box owns its T like a Box does; the cache and machine are Sync.
unsafe impl<P: Platform, T: Send> Send for SlabBox<'_, P, T> {}
// SAFETY: shared access to the box is shared access to the T.
unsafe impl<P: Platform, T: Sync> Sync for SlabBox<'_, P, T> {}

impl<'c, P: Platform, T> SlabBox<'c, P, T> {
    /// Gives up ownership without dropping or freeing (free later with `kmem_cache_free`).
    pub fn into_raw(self) -> NonNull<T> {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }
    /// Takes ownership of an object holding a `T`.
    ///
    /// # Safety
    ///
    /// `ptr` must be an object of `cache` holding an initialised `T`, owned by nobody else.
    pub unsafe fn from_raw(kmem: &'c Kmem<P>, cache: &'c KmemCache, ptr: NonNull<T>) -> Self {
        Self { kmem, cache, ptr }
    }
}

impl<P: Platform, T> Deref for SlabBox<'_, P, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box owns an initialised T.
        unsafe { self.ptr.as_ref() }
    }
}

impl<P: Platform, T> DerefMut for SlabBox<'_, P, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns an initialised T, and `&mut self` is exclusive.
        unsafe { self.ptr.as_mut() }
    }
}

impl<P: Platform, T> Drop for SlabBox<'_, P, T> {
    fn drop(&mut self) {
        // SAFETY: the box owns the T and the object; both are released exactly once here.
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            self.kmem.kmem_cache_free(self.cache, self.ptr.cast());
        }
    }
}

impl<P: Platform, T: fmt::Debug> fmt::Debug for SlabBox<'_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
