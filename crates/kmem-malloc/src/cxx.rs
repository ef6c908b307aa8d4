//! C++'s `operator delete` family, so that a C++ program's sized deletes reach kmem with
//! their size.
//!
//! g++ and clang++ compile C++14 and later with sized deallocation: `delete p` of a complete
//! type calls `operator delete(void*, std::size_t)` with the size `new` was asked for.
//! libstdc++'s definition drops the size and calls `free`. Defined here, in the preloaded
//! library, it wins over libstdc++'s (a program's own definition still wins over both: the
//! executable comes first in symbol lookup), and the size makes the free find its kmalloc
//! cache and CPU sheaf up front ([`raw::free_sized`]): the faster free that Rust's `dealloc`
//! gets. The size is only a hint: a wrong one frees the block as `free` does.
//!
//! Only the deletes are here. `operator new` must throw `std::bad_alloc` on failure, which
//! this library cannot do; libstdc++'s calls `malloc` (or `aligned_alloc` for the aligned
//! forms), which is kmem's, so what these deletes get is always kmem's.
//!
//! Symbols (Itanium C++ ABI, x86-64: `std::size_t` is `unsigned long`, `m`;
//! `std::align_val_t` is passed as a `std::size_t`; `const std::nothrow_t&` as a pointer):
//! `_ZdlPv` `operator delete(void*)`, `_ZdaPv` `operator delete[](void*)`, `_ZdlPvm`,
//! `_ZdaPvm` (sized), `_ZdlPvSt11align_val_t`, `_ZdaPvSt11align_val_t` (aligned),
//! `_ZdlPvmSt11align_val_t`, `_ZdaPvmSt11align_val_t` (sized and aligned), and the
//! `nothrow_t` forms `_ZdlPvRKSt9nothrow_t`, `_ZdaPvRKSt9nothrow_t`,
//! `_ZdlPvSt11align_val_tRKSt9nothrow_t`, `_ZdaPvSt11align_val_tRKSt9nothrow_t`.

use core::ffi::c_void;

use kmem_alloc::raw;

use crate::MIN_ALIGN;

/// A sized delete of a block `operator new` (through `malloc`: 16-aligned) or an aligned
/// `operator new` (`aligned_alloc(align, size)`) gave.
///
/// # Safety
///
/// As C `free`.
#[inline(always)]
unsafe fn delete_sized(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: caller's contract.
    unsafe { raw::free_sized(p.cast(), size, align.max(MIN_ALIGN)) }
}

/// An unsized delete: C `free`.
///
/// # Safety
///
/// As C `free`.
#[inline(always)]
unsafe fn delete(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete(void*)`.
///
/// # Safety
///
/// `p` must be null or a live block of `operator new` (this library's `malloc`).
#[no_mangle]
pub unsafe extern "C" fn _ZdlPv(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete[](void*)`.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPv(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete(void*, std::size_t)`: sized.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvm(p: *mut c_void, size: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_sized(p, size, MIN_ALIGN) }
}

/// `operator delete[](void*, std::size_t)`: sized.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvm(p: *mut c_void, size: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_sized(p, size, MIN_ALIGN) }
}

/// `operator delete(void*, std::align_val_t)`.
///
/// # Safety
///
/// As [`_ZdlPv`], for a block of an aligned `operator new`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_t(p: *mut c_void, _align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete[](void*, std::align_val_t)`.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_t(p: *mut c_void, _align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete(void*, std::size_t, std::align_val_t)`: sized and aligned.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_sized(p, size, align) }
}

/// `operator delete[](void*, std::size_t, std::align_val_t)`: sized and aligned.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_sized(p, size, align) }
}

/// `operator delete(void*, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvRKSt9nothrow_t(p: *mut c_void, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete[](void*, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvRKSt9nothrow_t(p: *mut c_void, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, _align: usize, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}

/// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, _align: usize, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete(p) }
}
