//! [`Box`]: one `T` in memory of a backend, dropped and freed with the box.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::NonNull;

use super::allocator::Allocator;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;

/// A `T` owned in memory of the backend `A` of machine `'m`: dropping the box drops the
/// `T` and frees the memory. Use it as [`super::KBox`], [`super::VBox`] or
/// [`super::KVBox`].
///
/// ```
/// use kmem::{Gfp, KBox, KVBox};
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut b = KBox::new(&m, [1u32, 2, 3], Gfp::KERNEL).unwrap();
/// b[0] = 10;
/// assert_eq!(b.iter().sum::<u32>(), 15);
/// let u = KVBox::<_, u64>::new_uninit(&m, Gfp::KERNEL).unwrap();
/// let u = KVBox::write(u, 7);
/// assert_eq!(KVBox::into_inner(u), 7); // freed here
/// ```
pub struct Box<'m, P: Platform, T, A: Allocator> {
    kmem: &'m Kmem<P>,
    ptr: NonNull<T>,
    _own: PhantomData<(T, A)>,
}

// SAFETY: the box owns its T as `std::boxed::Box` does; the machine is Sync.
unsafe impl<P: Platform, T: Send, A: Allocator> Send for Box<'_, P, T, A> {}
// SAFETY: shared access to the box is shared access to the T.
unsafe impl<P: Platform, T: Sync, A: Allocator> Sync for Box<'_, P, T, A> {}

impl<'m, P: Platform, T, A: Allocator> Box<'m, P, T, A> {
    /// Room for a `T`, not yet initialised (Rust-for-Linux's `Box::new_uninit`).
    #[track_caller]
    pub fn new_uninit(kmem: &'m Kmem<P>, gfp: Gfp) -> Result<Box<'m, P, MaybeUninit<T>, A>, A::Error> {
        let layout = Layout::new::<T>();
        let ptr = if layout.size() == 0 { NonNull::dangling() } else { A::alloc(kmem, layout, gfp)?.cast() };
        Ok(Box { kmem, ptr, _own: PhantomData })
    }

    /// Moves `value` into a new allocation (Rust-for-Linux's `KBox::new(x, GFP_KERNEL)`). On
    /// failure `value` is dropped and the backend's error returned.
    #[track_caller]
    pub fn new(kmem: &'m Kmem<P>, value: T, gfp: Gfp) -> Result<Self, A::Error> {
        Ok(Box::write(Self::new_uninit(kmem, gfp)?, value))
    }

    /// [`Box::new`], pinned: the `T` never moves until it is dropped.
    #[track_caller]
    pub fn pin(kmem: &'m Kmem<P>, value: T, gfp: Gfp) -> Result<Pin<Self>, A::Error> {
        Ok(Self::into_pin(Self::new(kmem, value, gfp)?))
    }

    /// Pins the box (the `T` stays where it is until dropped).
    pub fn into_pin(b: Self) -> Pin<Self> {
        // SAFETY: the T lives in memory the box owns and never moves while the box lives;
        // the box hands out no `&mut T` once pinned except through `Pin`.
        unsafe { Pin::new_unchecked(b) }
    }

    /// Moves the `T` out and frees the memory.
    pub fn into_inner(b: Self) -> T {
        let (kmem, ptr) = (b.kmem, b.ptr);
        core::mem::forget(b);
        // SAFETY: the box owned an initialised T, read once; the memory is then freed once.
        unsafe {
            let value = ptr.as_ptr().read();
            free::<P, T, A>(kmem, ptr);
            value
        }
    }

    /// Gives up ownership without dropping or freeing: free with [`Box::from_raw`] (or the
    /// backend's raw free).
    pub fn into_raw(b: Self) -> NonNull<T> {
        let p = b.ptr;
        core::mem::forget(b);
        p
    }

    /// Takes back ownership of a pointer from [`Box::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` came from `Box::into_raw` of a box of the same `T` and `A` on `kmem`, and is
    /// owned by nobody else.
    pub unsafe fn from_raw(kmem: &'m Kmem<P>, ptr: NonNull<T>) -> Self {
        Self { kmem, ptr, _own: PhantomData }
    }

    /// The address of the `T`.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr().cast()
    }

    /// The machine the memory belongs to.
    pub fn machine(&self) -> &'m Kmem<P> {
        self.kmem
    }
}

impl<'m, P: Platform, T, A: Allocator> Box<'m, P, MaybeUninit<T>, A> {
    /// Initialises the box with `value` (Rust-for-Linux's `Box::write`).
    pub fn write(mut b: Self, value: T) -> Box<'m, P, T, A> {
        (*b).write(value);
        // SAFETY: just initialised.
        unsafe { Self::assume_init(b) }
    }

    /// The box as initialised.
    ///
    /// # Safety
    ///
    /// The `T` must be initialised.
    pub unsafe fn assume_init(b: Self) -> Box<'m, P, T, A> {
        let (kmem, ptr) = (b.kmem, b.ptr);
        core::mem::forget(b);
        Box { kmem, ptr: ptr.cast(), _own: PhantomData }
    }
}

/// Frees the memory of a box (none for a zero-sized `T`).
///
/// # Safety
///
/// `ptr` is a box's memory, not used afterwards; its `T` is dropped or moved out.
unsafe fn free<P: Platform, T, A: Allocator>(kmem: &Kmem<P>, ptr: NonNull<T>) {
    if core::mem::size_of::<T>() != 0 {
        // SAFETY: the caller's contract; a T of size above 0 was allocated with `A`.
        unsafe { A::free(kmem, ptr.cast()) }
    }
}

impl<P: Platform, T, A: Allocator> Deref for Box<'_, P, T, A> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box owns an initialised T.
        unsafe { self.ptr.as_ref() }
    }
}

impl<P: Platform, T, A: Allocator> DerefMut for Box<'_, P, T, A> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns an initialised T, and `&mut self` is exclusive.
        unsafe { self.ptr.as_mut() }
    }
}

impl<P: Platform, T, A: Allocator> Drop for Box<'_, P, T, A> {
    fn drop(&mut self) {
        // SAFETY: the box owns the T and its memory; both are released exactly once here.
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            free::<P, T, A>(self.kmem, self.ptr);
        }
    }
}

impl<P: Platform, T: fmt::Debug, A: Allocator> fmt::Debug for Box<'_, P, T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<P: Platform, T: fmt::Display, A: Allocator> fmt::Display for Box<'_, P, T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<P: Platform, T, A: Allocator> AsRef<T> for Box<'_, P, T, A> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<P: Platform, T, A: Allocator> AsMut<T> for Box<'_, P, T, A> {
    fn as_mut(&mut self) -> &mut T {
        self
    }
}
