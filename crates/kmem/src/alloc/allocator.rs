//! The three backends of the owning handles: how each allocates, grows and frees a block of
//! a `core::alloc::Layout`.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use crate::gfp::Gfp;
use crate::kmalloc::{KmallocError, KmallocErrorKind, KMALLOC_ALIGN, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MIN_SIZE};
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::vmalloc::{VmallocError, VmallocErrorKind};
use crate::PAGE_SIZE;

mod private {
    pub trait Sealed {}
}

/// A backend of [`super::Box`] and [`super::Vec`]: [`Kmalloc`], [`Vmalloc`] or
/// [`KVmalloc`] (Rust-for-Linux's `Allocator`). Sealed: the handles rely on each backend's
/// alignment guarantee.
pub trait Allocator: private::Sealed {
    /// What a failed allocation returns.
    type Error: fmt::Debug + fmt::Display + Copy;

    /// A block for `layout` (size above 0, alignment at most a page), aligned to it.
    #[doc(hidden)]
    fn alloc<P: Platform>(kmem: &Kmem<P>, layout: Layout, gfp: Gfp) -> Result<NonNull<u8>, Self::Error>;

    /// Resizes `ptr` (of `old`) to `new` (same alignment, size above 0); on failure `ptr` is
    /// untouched. The first `min(old, new)` bytes are kept.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this backend on `kmem`, allocated for `old`, owned by the
    /// caller, who uses only the returned pointer after success.
    #[doc(hidden)]
    unsafe fn realloc<P: Platform>(
        kmem: &Kmem<P>,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, Self::Error>;

    /// Frees `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this backend on `kmem`, owned by the caller, not used after.
    #[doc(hidden)]
    unsafe fn free<P: Platform>(kmem: &Kmem<P>, ptr: NonNull<u8>);

    /// The error for a request whose size overflows (`n` elements of `size` bytes).
    #[doc(hidden)]
    fn overflow(size: usize, gfp: Gfp) -> Self::Error;
}

/// kmalloc and its guarantees: the bytes to ask for so that the block is aligned to
/// `layout.align()`, or the error for an alignment above a page.
fn kmalloc_size(layout: Layout, gfp: Gfp) -> Result<usize, KmallocError> {
    let (size, align) = (layout.pad_to_align().size(), layout.align());
    if align > PAGE_SIZE {
        return Err(KmallocError { size, gfp, kind: KmallocErrorKind::Align(align) });
    }
    // Up to KMALLOC_ALIGN, every bucket of at least that size is aligned enough; above it
    // only power-of-two buckets (naturally aligned) and large blocks (page-aligned) are.
    if align > KMALLOC_MIN_SIZE && size <= KMALLOC_MAX_CACHE_SIZE {
        if align <= KMALLOC_ALIGN {
            return Ok(size.max(KMALLOC_ALIGN));
        }
        return Ok(size.next_power_of_two());
    }
    Ok(size)
}

/// `p` if it is aligned to `align`; otherwise freed (with `free`) and an error. A guard: the
/// backends' guarantees make this never fail.
fn checked<E>(
    p: NonNull<u8>,
    align: usize,
    free: impl FnOnce(NonNull<u8>),
    err: impl FnOnce() -> E,
) -> Result<NonNull<u8>, E> {
    if (p.as_ptr() as usize) % align == 0 {
        Ok(p)
    } else {
        free(p);
        Err(err())
    }
}

/// The kmalloc backend (`kmalloc`, `krealloc`, `kfree`).
#[derive(Clone, Copy, Debug)]
pub struct Kmalloc;
/// The vmalloc backend (`__vmalloc`, `vrealloc`, `vfree`).
#[derive(Clone, Copy, Debug)]
pub struct Vmalloc;
/// The kvmalloc backend (`kvmalloc`, `kvfree`; growth allocates, copies and frees).
#[derive(Clone, Copy, Debug)]
pub struct KVmalloc;

impl private::Sealed for Kmalloc {}
impl private::Sealed for Vmalloc {}
impl private::Sealed for KVmalloc {}

impl Allocator for Kmalloc {
    type Error = KmallocError;

    #[track_caller]
    fn alloc<P: Platform>(kmem: &Kmem<P>, layout: Layout, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let size = kmalloc_size(layout, gfp)?;
        let p = kmem.kmalloc(size, gfp)?;
        // SAFETY: `q` is the block just allocated, ours.
        let free = |q: NonNull<u8>| unsafe { kmem.kfree(q.as_ptr()) };
        checked(p, layout.align(), free, || KmallocError { size, gfp, kind: KmallocErrorKind::Align(layout.align()) })
    }

    #[track_caller]
    unsafe fn realloc<P: Platform>(
        kmem: &Kmem<P>,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, KmallocError> {
        let size = kmalloc_size(new, gfp)?;
        // SAFETY: the caller's contract; krealloc keeps `ptr` on failure.
        let p = unsafe { kmem.krealloc(ptr.as_ptr(), size, gfp) }?;
        // SAFETY: `q` is the block krealloc returned, ours.
        let free = |q: NonNull<u8>| unsafe { kmem.kfree(q.as_ptr()) };
        checked(p, new.align(), free, || KmallocError { size, gfp, kind: KmallocErrorKind::Align(new.align()) })
    }

    unsafe fn free<P: Platform>(kmem: &Kmem<P>, ptr: NonNull<u8>) {
        // SAFETY: the caller's contract.
        unsafe { kmem.kfree(ptr.as_ptr()) }
    }

    fn overflow(size: usize, gfp: Gfp) -> KmallocError {
        KmallocError { size, gfp, kind: KmallocErrorKind::Overflow }
    }
}

/// The alignment check of the vmalloc backend: pages are aligned to at most a page.
fn vmalloc_align(layout: Layout, gfp: Gfp) -> Result<(), VmallocError> {
    if layout.align() > PAGE_SIZE {
        return Err(VmallocError { size: layout.size(), gfp, kind: VmallocErrorKind::BadAlign });
    }
    Ok(())
}

impl Allocator for Vmalloc {
    type Error = VmallocError;

    #[track_caller]
    fn alloc<P: Platform>(kmem: &Kmem<P>, layout: Layout, gfp: Gfp) -> Result<NonNull<u8>, VmallocError> {
        vmalloc_align(layout, gfp)?;
        kmem.__vmalloc(layout.size(), gfp)
    }

    #[track_caller]
    unsafe fn realloc<P: Platform>(
        kmem: &Kmem<P>,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, VmallocError> {
        vmalloc_align(new, gfp)?;
        // SAFETY: the caller's contract; vrealloc keeps `ptr` on failure. A size above 0
        // never frees, so `None` cannot come back.
        match unsafe { kmem.vrealloc(ptr.as_ptr(), new.size(), gfp) }? {
            Some(p) => Ok(p),
            None => Err(VmallocError { size: new.size(), gfp, kind: VmallocErrorKind::ZeroSize }),
        }
    }

    unsafe fn free<P: Platform>(kmem: &Kmem<P>, ptr: NonNull<u8>) {
        // SAFETY: the caller's contract.
        unsafe { kmem.vfree(ptr.as_ptr()) }
    }

    fn overflow(size: usize, gfp: Gfp) -> VmallocError {
        VmallocError { size, gfp, kind: VmallocErrorKind::TooLarge }
    }
}

impl Allocator for KVmalloc {
    type Error = KmallocError;

    #[track_caller]
    fn alloc<P: Platform>(kmem: &Kmem<P>, layout: Layout, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let size = kmalloc_size(layout, gfp)?;
        let p = kmem.kvmalloc(size, gfp)?;
        // SAFETY: `q` is the block just allocated, ours.
        let free = |q: NonNull<u8>| unsafe { kmem.kvfree(q.as_ptr()) };
        checked(p, layout.align(), free, || KmallocError { size, gfp, kind: KmallocErrorKind::Align(layout.align()) })
    }

    #[track_caller]
    unsafe fn realloc<P: Platform>(
        kmem: &Kmem<P>,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, KmallocError> {
        let p = Self::alloc(kmem, new, gfp)?;
        // SAFETY: both blocks are live, distinct and hold at least the bytes copied; the
        // caller's contract lets us free `ptr`.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), old.size().min(new.size()));
            kmem.kvfree(ptr.as_ptr());
        }
        Ok(p)
    }

    unsafe fn free<P: Platform>(kmem: &Kmem<P>, ptr: NonNull<u8>) {
        // SAFETY: the caller's contract.
        unsafe { kmem.kvfree(ptr.as_ptr()) }
    }

    fn overflow(size: usize, gfp: Gfp) -> KmallocError {
        KmallocError { size, gfp, kind: KmallocErrorKind::Overflow }
    }
}
