//! [`Vec`]: a growable array in memory of a backend, grown with its realloc.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use super::allocator::Allocator;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;

/// A growable array of `T` in memory of the backend `A` of machine `'m` (Rust-for-Linux's
/// `Vec<T, A>`): every call that may allocate takes the GFP flags and returns the backend's
/// error instead of aborting. Dropping it drops the elements and frees the memory. Use it
/// as [`super::KVec`] (grown by `krealloc`), [`super::VVec`] (`vrealloc`) or
/// [`super::KVVec`].
///
/// ```
/// use kmem::{Gfp, KVec};
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut v = KVec::with_capacity(&m, 2, Gfp::KERNEL).unwrap();
/// v.push(1u16, Gfp::KERNEL).unwrap();
/// v.extend_from_slice(&[2, 3, 4], Gfp::KERNEL).unwrap();
/// assert_eq!(v.as_slice(), &[1, 2, 3, 4]);
/// assert!(v.capacity() >= 4);
/// assert_eq!(v.pop(), Some(4));
/// assert_eq!(v.len(), 3);
/// ```
pub struct Vec<'m, P: Platform, T, A: Allocator> {
    kmem: &'m Kmem<P>,
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    _own: PhantomData<(T, A)>,
}

// SAFETY: the vector owns its elements as `std::vec::Vec` does; the machine is Sync.
unsafe impl<P: Platform, T: Send, A: Allocator> Send for Vec<'_, P, T, A> {}
// SAFETY: shared access to the vector is shared access to its elements.
unsafe impl<P: Platform, T: Sync, A: Allocator> Sync for Vec<'_, P, T, A> {}

impl<'m, P: Platform, T, A: Allocator> Vec<'m, P, T, A> {
    /// An empty vector; allocates nothing.
    pub fn new(kmem: &'m Kmem<P>) -> Self {
        let cap = if size_of::<T>() == 0 { usize::MAX } else { 0 };
        Self { kmem, ptr: NonNull::dangling(), len: 0, cap, _own: PhantomData }
    }

    /// An empty vector with room for `capacity` elements.
    #[track_caller]
    pub fn with_capacity(kmem: &'m Kmem<P>, capacity: usize, gfp: Gfp) -> Result<Self, A::Error> {
        let mut v = Self::new(kmem);
        v.reserve(capacity, gfp)?;
        Ok(v)
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements it can hold without growing (`usize::MAX` for zero-sized `T`).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is aligned and non-null, and the first `len` elements are initialised
        // and owned by us.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and `&mut self` is exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The machine the memory belongs to.
    pub fn machine(&self) -> &'m Kmem<P> {
        self.kmem
    }

    /// Makes room for at least `additional` more elements, growing the allocation (to at
    /// least twice its capacity) with the backend's realloc. On failure nothing changes.
    #[track_caller]
    pub fn reserve(&mut self, additional: usize, gfp: Gfp) -> Result<(), A::Error> {
        let Some(need) = self.len.checked_add(additional) else {
            return Err(A::overflow(size_of::<T>(), gfp));
        };
        if need <= self.cap {
            return Ok(());
        }
        let min = if size_of::<T>() <= 64 { 8 } else { 1 };
        let cap = need.max(self.cap.saturating_mul(2)).max(min);
        let (Ok(new), Ok(old)) = (Layout::array::<T>(cap), Layout::array::<T>(self.cap)) else {
            return Err(A::overflow(size_of::<T>(), gfp));
        };
        let p = if self.cap == 0 {
            A::alloc(self.kmem, new, gfp)?
        } else {
            // SAFETY: `ptr` is our live block of `old`; on success only the result is used.
            unsafe { A::realloc(self.kmem, self.ptr.cast(), old, new, gfp)? }
        };
        self.ptr = p.cast();
        self.cap = cap;
        Ok(())
    }

    /// Appends `value` (Rust-for-Linux's `push(v, GFP_KERNEL)`); on failure `value` is
    /// dropped and the vector unchanged.
    #[track_caller]
    pub fn push(&mut self, value: T, gfp: Gfp) -> Result<(), A::Error> {
        self.reserve(1, gfp)?;
        // SAFETY: `len < cap`: the slot is inside our block and uninitialised.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
        Ok(())
    }

    /// Appends clones of `other`'s elements; on failure the vector is unchanged.
    #[track_caller]
    pub fn extend_from_slice(&mut self, other: &[T], gfp: Gfp) -> Result<(), A::Error>
    where
        T: Clone,
    {
        self.reserve(other.len(), gfp)?;
        for x in other {
            // SAFETY: reserved: the slot is inside our block and uninitialised. `len` counts
            // each clone as it lands, so a panicking `clone` leaks nothing unowned.
            unsafe { self.ptr.as_ptr().add(self.len).write(x.clone()) };
            self.len += 1;
        }
        Ok(())
    }

    /// Appends the items of `iter`; on failure the items appended so far stay.
    #[track_caller]
    pub fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I, gfp: Gfp) -> Result<(), A::Error> {
        let iter = iter.into_iter();
        self.reserve(iter.size_hint().0, gfp)?;
        for x in iter {
            self.push(x, gfp)?;
        }
        Ok(())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the element at the old `len - 1` is initialised and no longer counted.
        Some(unsafe { self.ptr.as_ptr().add(self.len).read() })
    }

    /// Drops the elements from `len` on (none if it holds fewer).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let tail = core::ptr::slice_from_raw_parts_mut(
            // SAFETY: `len < self.len`: inside the initialised part.
            unsafe { self.ptr.as_ptr().add(len) },
            self.len - len,
        );
        self.len = len;
        // SAFETY: the tail's elements are initialised and no longer counted.
        unsafe { tail.drop_in_place() };
    }

    /// Drops every element; keeps the capacity.
    pub fn clear(&mut self) {
        self.truncate(0);
    }
}

impl<P: Platform, T, A: Allocator> Deref for Vec<'_, P, T, A> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<P: Platform, T, A: Allocator> DerefMut for Vec<'_, P, T, A> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<P: Platform, T, A: Allocator> Drop for Vec<'_, P, T, A> {
    fn drop(&mut self) {
        self.clear();
        if self.cap != 0 && size_of::<T>() != 0 {
            // SAFETY: our live block, freed once; its elements were dropped above.
            unsafe { A::free(self.kmem, self.ptr.cast()) };
        }
    }
}

impl<P: Platform, T: fmt::Debug, A: Allocator> fmt::Debug for Vec<'_, P, T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}
