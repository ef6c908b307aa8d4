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
//! forms), which is kmem's, so what these deletes get is kmem's.
//!
//! Unless the program replaced `operator new` or `delete` itself (a pool of its own, a
//! debugging allocator): C++ says the default sized and array deletes call the unsized
//! `operator delete(void*)`, so a program may replace just that one and still get every
//! delete. The first delete looks the forms up (`look_up`): if any `operator new` or
//! unsized `operator delete` the program sees is not the one libstdc++ and this library
//! define, every form here forwards to libstdc++'s own (`dlsym(RTLD_NEXT)`), which calls
//! the program's, as without this library. Otherwise they free directly.
//!
//! Symbols (Itanium C++ ABI, x86-64: `std::size_t` is `unsigned long`, `m`;
//! `std::align_val_t` is passed as a `std::size_t`; `const std::nothrow_t&` as a pointer):
//! `_ZdlPv` `operator delete(void*)`, `_ZdaPv` `operator delete[](void*)`, `_ZdlPvm`,
//! `_ZdaPvm` (sized), `_ZdlPvSt11align_val_t`, `_ZdaPvSt11align_val_t` (aligned),
//! `_ZdlPvmSt11align_val_t`, `_ZdaPvmSt11align_val_t` (sized and aligned), and the
//! `nothrow_t` forms `_ZdlPvRKSt9nothrow_t`, `_ZdaPvRKSt9nothrow_t`,
//! `_ZdlPvSt11align_val_tRKSt9nothrow_t`, `_ZdaPvSt11align_val_tRKSt9nothrow_t`.

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use kmem_alloc::raw;

use crate::MIN_ALIGN;

/// The forms, in the order of [`NAMES`].
#[derive(Clone, Copy)]
enum Form {
    Del = 0,
    DelArr,
    DelSized,
    DelArrSized,
    DelAl,
    DelArrAl,
    DelSizedAl,
    DelArrSizedAl,
    DelNothrow,
    DelArrNothrow,
    DelAlNothrow,
    DelArrAlNothrow,
}

/// The symbols of [`Form`]s, NUL-terminated for `dlsym`.
const NAMES: [&[u8]; 12] = [
    b"_ZdlPv\0",
    b"_ZdaPv\0",
    b"_ZdlPvm\0",
    b"_ZdaPvm\0",
    b"_ZdlPvSt11align_val_t\0",
    b"_ZdaPvSt11align_val_t\0",
    b"_ZdlPvmSt11align_val_t\0",
    b"_ZdaPvmSt11align_val_t\0",
    b"_ZdlPvRKSt9nothrow_t\0",
    b"_ZdaPvRKSt9nothrow_t\0",
    b"_ZdlPvSt11align_val_tRKSt9nothrow_t\0",
    b"_ZdaPvSt11align_val_tRKSt9nothrow_t\0",
];

/// The `operator new` forms a program may replace.
const NEWS: [&[u8]; 4] = [b"_Znwm\0", b"_Znam\0", b"_ZnwmSt11align_val_t\0", b"_ZnamSt11align_val_t\0"];

/// 0: not looked up yet; 1: free directly; 2: forward to libstdc++'s deletes.
static MODE: AtomicU8 = AtomicU8::new(0);
/// libstdc++'s definition of each [`Form`] (`dlsym(RTLD_NEXT)`), once [`MODE`] is 2.
static NEXT: [AtomicUsize; 12] = [const { AtomicUsize::new(0) }; 12];

fn sym(handle: *mut c_void, name: &[u8]) -> usize {
    // SAFETY: `name` is NUL-terminated; dlsym has no other precondition.
    unsafe { libc::dlsym(handle, name.as_ptr().cast::<c_char>()) as usize }
}

#[cold]
#[inline(never)]
fn look_up() -> bool {
    // Ours: defined in this library (a definition's address cannot be taken here: the
    // exported symbols are preemptible, so the object file has no direct reference to them).
    let base = |f: usize| {
        // SAFETY: `Dl_info` is plain pointers, for which zero is valid.
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        // SAFETY: dladdr only reads the loader's tables and writes `info`.
        (f != 0 && unsafe { libc::dladdr(f as *const c_void, &mut info) } != 0).then_some(info.dli_fbase as usize)
    };
    let mine = base(look_up as *const () as usize);
    let deletes_ours = [Form::Del, Form::DelArr, Form::DelAl, Form::DelArrAl]
        .iter()
        .all(|&f| mine.is_some() && base(sym(libc::RTLD_DEFAULT, NAMES[f as usize])) == mine);
    // libstdc++'s `operator new` is the next definition after this library's (which has none).
    let news_libstdcxx = NEWS.iter().all(|n| sym(libc::RTLD_DEFAULT, n) == sym(libc::RTLD_NEXT, n));
    let direct = deletes_ours && news_libstdcxx;
    if !direct {
        for (slot, name) in NEXT.iter().zip(NAMES) {
            slot.store(sym(libc::RTLD_NEXT, name), Ordering::Relaxed);
        }
    }
    MODE.store(if direct { 1 } else { 2 }, Ordering::Release);
    direct
}

/// libstdc++'s definition of `form` ([`MODE`] 2), or `None` if it has none (then the
/// caller frees directly: what libstdc++'s would do).
fn next(form: Form) -> Option<usize> {
    let f = NEXT[form as usize].load(Ordering::Relaxed);
    (f != 0).then_some(f)
}

/// Calls libstdc++'s `form` with the arguments of its C signature.
///
/// # Safety
///
/// `f` must be that form's definition; the arguments, the caller's.
unsafe fn call(f: usize, form: Form, p: *mut c_void, a: usize, b: usize) {
    // SAFETY: `f` is the form's function (caller's contract); every form takes a pointer
    // and up to two word-sized arguments (size_t, align_val_t, const nothrow_t&) in the C
    // calling convention, which the Itanium ABI uses for these functions.
    unsafe {
        match form {
            Form::Del | Form::DelArr => core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void)>(f)(p),
            Form::DelSized
            | Form::DelArrSized
            | Form::DelAl
            | Form::DelArrAl
            | Form::DelNothrow
            | Form::DelArrNothrow => core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void, usize)>(f)(p, a),
            _ => core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void, usize, usize)>(f)(p, a, b),
        }
    }
}

/// A delete of form `form`: directly (`free_sized` with `size` and `align` when `sized`,
/// else `free`) once the forms are known to be ours and libstdc++'s; else the cold path,
/// in tail position (so the direct path saves no registers).
///
/// # Safety
///
/// As C `free`, for a block of the matching `operator new`.
#[inline(always)]
unsafe fn delete_form(form: Form, p: *mut c_void, sized: Option<(usize, usize)>, a: usize, b: usize) {
    if MODE.load(Ordering::Relaxed) == 1 {
        return match sized {
            // SAFETY: caller's contract.
            Some((size, align)) => unsafe { free_sized_direct(p, size, align) },
            // SAFETY: caller's contract.
            None => unsafe { crate::free(p) },
        };
    }
    // SAFETY: caller's contract.
    unsafe { delete_slow(form, p, a, b) }
}

/// `free_sized` in a function of its own, which the deletes tail-call: inlined into each of
/// them, beside the check of [`MODE`], it made the compiler keep the fast path's
/// thread-local lookups out of line (a call and seven saved registers a delete).
///
/// # Safety
///
/// As [`delete_form`].
#[inline(never)]
unsafe fn free_sized_direct(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: caller's contract.
    unsafe { raw::free_sized(p.cast(), size, align.max(MIN_ALIGN)) }
}

/// [`delete_form`] before the forms are looked up, or when the program replaced new or
/// delete: libstdc++'s definition of the form (which calls the program's), if it has one;
/// else `free` (the first delete: the size hint is only worth its code on the fast path,
/// whose tail call this is: four arguments, all in registers).
///
/// # Safety
///
/// As [`delete_form`].
#[cold]
#[inline(never)]
unsafe fn delete_slow(form: Form, p: *mut c_void, a: usize, b: usize) {
    let direct = match MODE.load(Ordering::Acquire) {
        0 => look_up(),
        m => m == 1,
    };
    match (direct, next(form)) {
        // SAFETY: libstdc++'s definition of the form the program called, with its arguments.
        (false, Some(f)) => unsafe { call(f, form, p, a, b) },
        // SAFETY: caller's contract.
        _ => unsafe { crate::free(p) },
    }
}

/// `operator delete(void*)`.
///
/// # Safety
///
/// `p` must be null or a live block of `operator new` (this library's `malloc`).
#[no_mangle]
pub unsafe extern "C" fn _ZdlPv(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::Del, p, None, 0, 0) }
}

/// `operator delete[](void*)`.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPv(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelArr, p, None, 0, 0) }
}

/// `operator delete(void*, std::size_t)`: sized.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvm(p: *mut c_void, size: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelSized, p, Some((size, MIN_ALIGN)), size, 0) }
}

/// `operator delete[](void*, std::size_t)`: sized.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvm(p: *mut c_void, size: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelArrSized, p, Some((size, MIN_ALIGN)), size, 0) }
}

/// `operator delete(void*, std::align_val_t)`.
///
/// # Safety
///
/// As [`_ZdlPv`], for a block of an aligned `operator new`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_t(p: *mut c_void, _align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelAl, p, None, _align, 0) }
}

/// `operator delete[](void*, std::align_val_t)`.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_t(p: *mut c_void, _align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelArrAl, p, None, _align, 0) }
}

/// `operator delete(void*, std::size_t, std::align_val_t)`: sized and aligned.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelSizedAl, p, Some((size, align)), size, align) }
}

/// `operator delete[](void*, std::size_t, std::align_val_t)`: sized and aligned.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelArrSizedAl, p, Some((size, align)), size, align) }
}

/// `operator delete(void*, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvRKSt9nothrow_t(p: *mut c_void, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelNothrow, p, None, _nothrow as usize, 0) }
}

/// `operator delete[](void*, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPv`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvRKSt9nothrow_t(p: *mut c_void, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelArrNothrow, p, None, _nothrow as usize, 0) }
}

/// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, _align: usize, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelAlNothrow, p, None, _align, _nothrow as usize) }
}

/// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
///
/// As [`_ZdlPvSt11align_val_t`].
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, _align: usize, _nothrow: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { delete_form(Form::DelArrAlNothrow, p, None, _align, _nothrow as usize) }
}
