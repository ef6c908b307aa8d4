//! The typed, safe layer: a cache of `T` ([`TypedCache`]) handing out owning boxes
//! ([`SlabBox`]) that drop their value and free the object, or, for a cache with a
//! constructor, hand out constructed objects that keep their state across free and reuse.

use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
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
///
/// With a constructor ([`Kmem::typed_cache_with_ctor`]), Linux's contract holds: the
/// constructor runs once on each object when its slab is populated, not on each allocation;
/// [`TypedCache::alloc_constructed`] hands out an object in whatever state its last user
/// freed it in (the constructed state, if users keep Linux's rule of freeing objects in it),
/// and freeing does not drop the `T`. No `T` of a constructor cache is ever dropped (Linux
/// has no destructor): give such caches types whose drop does nothing that matters.
///
/// ```
/// use core::mem::MaybeUninit;
/// use kmem::{Gfp, SlabFlags};
/// struct Inode { state: u32, lock_init: bool }
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let inodes = m
///     .typed_cache_with_ctor("inode_cache", SlabFlags::NONE, |slot: &mut MaybeUninit<Inode>| {
///         slot.write(Inode { state: 0, lock_init: true })
///     })
///     .unwrap();
/// let mut i = inodes.alloc_constructed(Gfp::KERNEL).unwrap();
/// assert!(i.lock_init);
/// i.state = 5;
/// drop(i); // freed in its current state, not dropped
/// let j = inodes.alloc_constructed(Gfp::KERNEL).unwrap();
/// assert_eq!(j.state, 5); // the same object, as its last user left it
/// ```
pub struct TypedCache<'m, P: Platform, T> {
    cache: Cache<'m, P>,
    ctor: bool,
    _t: PhantomData<fn() -> T>,
}

impl<P: Platform> Kmem<P> {
    /// A cache of `T` (`KMEM_CACHE(T, flags)`): objects of `size_of::<T>()` bytes aligned
    /// to `align_of::<T>()`.
    pub fn typed_cache<T>(&self, name: &str, flags: SlabFlags) -> Result<TypedCache<'_, P, T>, CacheError> {
        let cache =
            self.kmem_cache_create(name, core::mem::size_of::<T>().max(1), core::mem::align_of::<T>(), flags, None)?;
        Ok(TypedCache { cache, ctor: false, _t: PhantomData })
    }

    /// A cache of `T` with a constructor (`KMEM_CACHE` with a `ctor`): `ctor` initialises
    /// each object once, when a new slab is populated, and returns it (as
    /// `MaybeUninit::write` does). Objects keep their state across free and reuse; see
    /// [`TypedCache`].
    ///
    /// `ctor` is a function or a closure that captures nothing (Linux's constructor takes no
    /// context either): one of another kind is refused at compile time. If it returns a
    /// reference other than the one it was given, it panics (the object would be
    /// uninitialised).
    ///
    /// ```compile_fail
    /// # use core::mem::MaybeUninit;
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let start = 5u32;
    /// // Captures `start`: refused.
    /// let c = m.typed_cache_with_ctor("x", kmem::SlabFlags::NONE, move |s: &mut MaybeUninit<u32>| s.write(start));
    /// ```
    pub fn typed_cache_with_ctor<T, F>(
        &self,
        name: &str,
        flags: SlabFlags,
        ctor: F,
    ) -> Result<TypedCache<'_, P, T>, CacheError>
    where
        F: Fn(&mut MaybeUninit<T>) -> &mut T + Copy + Send + Sync + 'static,
    {
        const { assert!(core::mem::size_of::<F>() == 0, "a slab constructor may not capture anything") };
        let _witness = ctor; // a value of F exists: `construct` may conjure it
        let cache = self.kmem_cache_create(
            name,
            core::mem::size_of::<T>().max(1),
            core::mem::align_of::<T>(),
            flags,
            Some(construct::<T, F>),
        )?;
        Ok(TypedCache { cache, ctor: true, _t: PhantomData })
    }
}

/// The untyped constructor of a typed constructor cache: runs `F` on the object as a
/// `MaybeUninit<T>`.
fn construct<T, F>(object: &mut [u8])
where
    F: Fn(&mut MaybeUninit<T>) -> &mut T + Copy + Send + Sync + 'static,
{
    assert!(object.len() >= core::mem::size_of::<T>() && object.as_ptr().align_offset(core::mem::align_of::<T>()) == 0);
    // SAFETY: F is zero-sized (checked at compile time in `typed_cache_with_ctor`), Copy, and
    // a value of it was given to `typed_cache_with_ctor`, the only place that names
    // `construct::<T, F>`: any F is a copy of that value, and a ZST has no bytes to zero.
    let f: F = unsafe { core::mem::zeroed() };
    // SAFETY: the object is at least size_of::<T>() bytes aligned for T (asserted), and the
    // slice's exclusive borrow is ours for the call.
    let slot = unsafe { &mut *object.as_mut_ptr().cast::<MaybeUninit<T>>() };
    let at = slot.as_mut_ptr();
    let done: *mut T = f(slot);
    assert!(core::ptr::eq(done, at), "a slab constructor returned a reference to another object");
}

impl<'m, P: Platform, T> TypedCache<'m, P, T> {
    /// Allocates an object and moves `value` into it. On failure `value` is dropped. In a
    /// cache with a constructor, `value` replaces (and drops) the object's constructed state.
    #[track_caller]
    pub fn alloc(&self, gfp: Gfp, value: T) -> Result<SlabBox<'_, P, T>, SlabAllocError> {
        let p = self.cache.kmem.slab_alloc_own(&self.cache, gfp.without(Gfp::ZERO), core::panic::Location::caller())?;
        let ptr = p.cast::<T>();
        if self.ctor {
            // SAFETY: an object of a constructor cache: it holds an initialised T, ours.
            unsafe { *ptr.as_ptr() = value };
        } else {
            // SAFETY: a fresh object of at least size_of::<T>() bytes aligned for T, ours.
            unsafe { ptr.as_ptr().write(value) };
        }
        Ok(SlabBox { kmem: self.cache.kmem, cache: &self.cache, ptr })
    }

    /// Allocates a constructed object (`kmem_cache_alloc` of a cache with a constructor):
    /// the state the constructor gave it, or the state its last user freed it in.
    /// [`SlabAllocError::NoConstructor`] for a cache made without one (its objects hold no
    /// `T`).
    #[track_caller]
    pub fn alloc_constructed(&self, gfp: Gfp) -> Result<SlabBox<'_, P, T>, SlabAllocError> {
        if !self.ctor {
            return Err(SlabAllocError::NoConstructor);
        }
        let p = self.cache.kmem.slab_alloc_own(&self.cache, gfp.without(Gfp::ZERO), core::panic::Location::caller())?;
        Ok(SlabBox { kmem: self.cache.kmem, cache: &self.cache, ptr: p.cast() })
    }

    /// Whether the cache has a constructor.
    pub fn has_ctor(&self) -> bool {
        self.ctor
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

/// A `T` in a slab object, owned: dropping it drops the `T` and frees the object; in a
/// cache with a constructor it frees the object without dropping the `T`, which keeps its
/// state for the object's next user (Linux's constructor contract).
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
        // SAFETY: the box owns the T and the object; both are released exactly once here (a
        // constructor cache's T stays in the object, initialised, for its next user).
        unsafe {
            if self.cache.ctor.is_none() {
                self.ptr.as_ptr().drop_in_place();
            }
            // The box's cache came from its machine's handle.
            self.kmem.kmem_cache_free_own(self.cache, self.ptr.cast(), core::panic::Location::caller());
        }
    }
}

impl<P: Platform, T: fmt::Debug> fmt::Debug for SlabBox<'_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
