//! # kmem-malloc: an `LD_PRELOAD` malloc on kmem
//!
//! Built as `libkmem_malloc.so` (`cd crates/kmem-malloc && cargo build --release`, see
//! `README.md`); `LD_PRELOAD=target/kmem-malloc-pie/release/libkmem_malloc.so <program>`
//! runs a program with kmem as its allocator (the process's global machine of
//! [`kmem_alloc::global`], booted on the first allocation). Rust code inside the library
//! allocates through [`kmem_alloc::KmemAlloc`] directly.
//!
//! ## Exports and their semantics
//!
//! These are the functions glibc's manual lists for replacing malloc, plus `reallocarray`.
//! Every block is aligned to at least 16 bytes (`alignof(max_align_t)` on x86-64). Unless
//! stated otherwise a failure returns `NULL` with `errno = ENOMEM`; success leaves `errno`
//! as it was (the first call, which boots the machine, restores it too).
//!
//! | function | semantics |
//! |---|---|
//! | `malloc(n)` | `n` bytes; `malloc(0)` is a unique minimal block (16 usable bytes), as glibc |
//! | `free(p)` | `free(NULL)` does nothing; never changes `errno` (POSIX 2024) |
//! | `free_sized(p, n)`, `free_aligned_sized(p, a, n)` | C23: `free(p)`, with the size (and alignment) the block was asked for as a hint that makes the free faster; a wrong hint frees `p` as `free` does |
//! | C++ `operator delete` (all twelve forms) | `free`, and the sized forms `free_sized`: g++ and clang++ pass `delete`'s size by default since C++14 ([`cxx`]); `operator new` stays libstdc++'s, which calls `malloc`; a program that replaces new or the unsized delete keeps its own (the deletes forward to libstdc++'s) |
//! | `calloc(n, m)` | `n * m` zeroed bytes; `n * m` overflowing `size_t` is `NULL` + `ENOMEM`; `calloc(0, m)` is a unique minimal block |
//! | `realloc(p, n)` | `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` with `p != NULL` frees `p` and returns `NULL` (glibc's behaviour, `errno` untouched); in place when `p`'s bucket holds `n`; on failure `NULL` + `ENOMEM` and `p` untouched |
//! | `reallocarray(p, n, m)` | `realloc(p, n * m)`; overflow is `NULL` + `ENOMEM` with `p` untouched |
//! | `posix_memalign(&p, a, n)` | `a` must be a power of two and a multiple of `sizeof(void *)`, else `EINVAL`; `ENOMEM` on failure; `*p` is only written on success and `errno` is never changed |
//! | `aligned_alloc(a, n)` | `a` must be a power of two (C17 DR 460, glibc 2.38), else `NULL` + `EINVAL`; `n` need not be a multiple of `a` |
//! | `memalign(a, n)` | glibc's: `a` at most 16 is `malloc`; a non-power of two is rounded up to one; an `a` with no power of two above it is `NULL` + `EINVAL` |
//! | `valloc(n)` | `memalign(page size, n)` |
//! | `pvalloc(n)` | `valloc` of `n` rounded up to whole pages; `pvalloc(0)` is one page; overflow is `NULL` + `ENOMEM` |
//! | `malloc_usable_size(p)` | usable bytes of `p` (kmalloc's power-of-two buckets: 16, 32, 64, ..., then whole pages and mappings); `0` for `NULL` |
//! | `malloc_trim(pad)` | gives free memory back to the host now: the slab lists swept (no CPU stopped), every free 2 MiB block `MADV_DONTNEED`; `pad` ignored; 1 if memory went back, else 0 |
//! | `kmem_malloc_online_bytes()` | kmem's RAM online now (boot RAM plus hot-added sections); `0` before boot. Lets a program tell kmem is its allocator |
//!
//! ## Misuse
//!
//! A double or invalid `free` (or `realloc`) of a pointer outside kmem's RAM (a freed block
//! above 4 MiB, a stack, global, interior or wild pointer, a forged header) is one line on
//! stderr (`kmem: free(): invalid pointer 0x...` and the like) and changes nothing;
//! `malloc_usable_size` of such a pointer is 0. Pointers inside the RAM get the machine's
//! Linux-style reports. Policy: report and continue; `KMEM_ABORT_ON_MISUSE=1` aborts after
//! the first report line. See [`kmem_alloc::misuse`] and the README's table.
//!
//! ## Fork
//!
//! The boot (the first allocation) registers `pthread_atfork` handlers, once per process
//! ([`kmem_alloc::global`]): prepare runs [`kmem_alloc::raw::fork_prepare`] (it waits for
//! a growth in progress, takes the huge-mapping cache's lock and stops the machine, so no
//! other thread holds any kmem lock while `fork` copies the process), parent and child
//! restart it. Handlers registered later (nearly all of them) have their prepare run
//! before ours and their child handler after ours, so they may allocate. The child gets a
//! copy of the heap: kmem-alloc makes the machine's RAM private memory at boot.
//!
//! ## Thread-local storage
//!
//! This crate has no thread-locals. The allocation path has one: the hosted CPU state of
//! `kmem-hosted` (`cpus.rs`, `thread_local! { static CTX: Ctx = const { .. } }`), which
//! needs no destructor, so it is valid from a thread's first instruction to its last (a
//! new thread whose first call is `realloc`, or a TLS destructor that frees at thread
//! exit, both find it initialised). In a shared object stable rustc compiles it with the
//! local-dynamic model (a `__tls_get_addr` call per access, which may allocate); built
//! with `-C relocation-model=pie` (`crates/kmem-malloc/.cargo/config.toml`, and what the
//! tests build) every TLS access of kmem's code is initial-exec. `README.md` has the
//! measurements.

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use kmem_alloc::raw;

mod cxx;

#[global_allocator]
static GLOBAL: kmem_alloc::KmemAlloc = kmem_alloc::KmemAlloc;

/// `alignof(max_align_t)`: what `malloc` guarantees.
pub(crate) const MIN_ALIGN: usize = 16;

#[cold]
fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// `NULL` with `errno` set to `ENOMEM`, out of line (a tail call: the fast path keeps no
/// registers for it).
#[cold]
#[inline(never)]
fn enomem() -> *mut c_void {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// `malloc`, `calloc` and the aligned allocations: the fast path inlined, everything else
/// (and `errno`) in [`alloc_careful`], a tail call, so the fast path saves no register.
#[inline(always)]
fn alloc(size: usize, align: usize, zero: bool) -> *mut c_void {
    // `malloc` and `calloc` pass MIN_ALIGN, a constant: their size goes to its class in one
    // lookup.
    if align == MIN_ALIGN {
        if let Some(p) = raw::alloc_malloc_fast(size, zero) {
            return p.as_ptr().cast();
        }
    }
    alloc_careful(size, align, zero)
}

/// [`alloc`] past its fast path: `NULL` and `ENOMEM` on failure.
#[inline(never)]
fn alloc_careful(size: usize, align: usize, zero: bool) -> *mut c_void {
    let p =
        if align == MIN_ALIGN { raw::alloc_malloc_aligned(size, zero) } else { raw::alloc_aligned(size, align, zero) };
    if p.is_null() {
        return enomem();
    }
    p.cast()
}

/// C `malloc`: `size` bytes aligned to 16; `malloc(0)` is a unique minimal block. `NULL`
/// and `ENOMEM` on failure.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, MIN_ALIGN, false)
}

/// C `free`: `NULL` is a no-op; `errno` is preserved.
///
/// # Safety
///
/// `p` must be `NULL` or a live block from this allocator, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // kmem's free makes no C library call that could set errno (its system calls go
    // through rustix, which never touches errno), so there is nothing to save.
    // SAFETY: caller's contract.
    unsafe { raw::free(p.cast()) };
}

/// C23 `free_sized`: `free(p)` of a block `malloc`, `calloc` (`n * m`) or `realloc` gave for
/// `size` bytes. kmem takes the size as a hint (the cache the block should be in, found
/// without the block's slab: a faster free); a wrong one frees the block as `free` does.
///
/// # Safety
///
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: caller's contract.
    unsafe { raw::free_sized(p.cast(), size, MIN_ALIGN) };
}

/// C23 `free_aligned_sized`: `free(p)` of a block `aligned_alloc(align, size)` gave; the
/// size and alignment are hints, as for [`free_sized`].
///
/// # Safety
///
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: caller's contract.
    unsafe { raw::free_sized(p.cast(), size, align.max(MIN_ALIGN)) };
}

/// C `calloc`: `n * size` zeroed bytes; overflow is `NULL` + `ENOMEM`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => alloc(total, MIN_ALIGN, true),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// C `realloc`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns
/// `NULL` (glibc); on failure `NULL` + `ENOMEM` with `p` untouched.
///
/// # Safety
///
/// `p` must be `NULL` or a live block from this allocator; on success only the returned
/// pointer may be used.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: caller's contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    let n = unsafe { raw::realloc_aligned(p.cast(), None, size, MIN_ALIGN) };
    if n.is_null() {
        set_errno(libc::ENOMEM);
    }
    n.cast()
}

/// `reallocarray`: `realloc(p, n * size)` with an overflow check (`NULL` + `ENOMEM`, `p`
/// untouched).
///
/// # Safety
///
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: caller's contract.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `posix_memalign`: `EINVAL` unless `align` is a power of two multiple of
/// `sizeof(void *)`; `ENOMEM` on failure; `*memptr` written only on success; `errno` never
/// changed.
///
/// # Safety
///
/// `memptr` must be valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = raw::alloc_aligned(size, align.max(MIN_ALIGN), false);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller's contract.
    unsafe { memptr.write(p.cast()) };
    0
}

/// C11 `aligned_alloc`: `align` must be a power of two (else `NULL` + `EINVAL`); any size.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    alloc(size, align.max(MIN_ALIGN), false)
}

/// `memalign` (glibc's rules): alignments up to 16 are `malloc`'s, others are rounded up
/// to a power of two; none exists above `SIZE_MAX / 2 + 1`: `NULL` + `EINVAL`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => alloc(size, a.max(MIN_ALIGN), false),
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// `valloc`: `size` bytes aligned to the page size.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc(size, page_size(), false)
}

/// `pvalloc`: `size` rounded up to whole pages (`0` to one page), page aligned; overflow is
/// `NULL` + `ENOMEM`.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(n) => alloc(n, page, false),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `malloc_usable_size`: the usable bytes of `p`; `0` for `NULL`.
///
/// # Safety
///
/// `p` must be `NULL` or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: caller's contract.
    unsafe { raw::usable_size(p.cast()) }
}

/// glibc's `malloc_trim(pad)`: gives free memory back to the host now
/// ([`kmem_alloc::global::trim`]: the slab lists swept, every free 2 MiB block reported,
/// no rate limit). `pad` (glibc's room to leave at the top of its main heap) has no
/// counterpart and is ignored. Returns 1 if memory went back, else 0.
#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> core::ffi::c_int {
    let _ = pad;
    core::ffi::c_int::from(kmem_alloc::global::trim())
}

/// kmem's RAM online now, in bytes (`0` before the first allocation): a program (or a
/// test) calls it through `dlsym` to tell that kmem is its allocator.
#[no_mangle]
pub extern "C" fn kmem_malloc_online_bytes() -> u64 {
    kmem_alloc::global::online_bytes()
}
