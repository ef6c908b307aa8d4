//! Allocations above `KMALLOC_MAX_SIZE` (4 MiB): host mappings, until kmem has vmalloc.
//!
//! Each block is an anonymous mapping with a header just before the returned pointer
//! (mapping base, length, usable bytes). Freed mappings are kept for reuse (a program that
//! allocates and frees 5-25 MiB blocks in a loop then makes no system calls): at most
//! [`CACHE_SLOTS`] mappings and [`CACHE_BYTES`] in all, the oldest unmapped first. A request
//! takes the smallest cached mapping that needs between half of it and all of it; failing
//! that, the largest cached mapping smaller than it, grown with `mremap` (its pages stay:
//! only the new part faults in); failing that, a fresh mapping. So a loop over blocks of
//! varying size soon finds a mapping of the right size in the cache every time, with no
//! system call and no page fault.

use core::cell::UnsafeCell;
use core::ffi::c_void;

use rustix::mm::{mmap_anonymous, mremap, munmap, MapFlags, MremapFlags, ProtFlags};

use crate::lock::RawLock;

/// Freed mappings kept for reuse.
pub const CACHE_SLOTS: usize = 16;
/// Bytes of freed mappings kept for reuse.
pub const CACHE_BYTES: usize = 64 << 20;

const PAGE: usize = 4096;
const MAGIC: usize = 0x6b6d_656d_6875_6765; // "kmemhuge"

#[repr(C)]
struct Header {
    magic: usize,
    base: usize,
    len: usize,
    usable: usize,
}

struct Cache {
    maps: [(usize, usize); CACHE_SLOTS],
    n: usize,
    bytes: usize,
}

/// The cache behind its lock ([`RawLock`], so that `fork_prepare` can hold it across
/// `fork`: a child must not inherit it locked by a thread it does not have).
struct Locked {
    lock: RawLock,
    cache: UnsafeCell<Cache>,
}

// SAFETY: `cache` is only reached through `with_cache`, under `lock`.
unsafe impl Sync for Locked {}

static CACHE: Locked =
    Locked { lock: RawLock::new(), cache: UnsafeCell::new(Cache { maps: [(0, 0); CACHE_SLOTS], n: 0, bytes: 0 }) };

/// Runs `f` on the cache, under its lock. `f` must not allocate or call back here.
fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    CACHE.lock.lock();
    // SAFETY: we hold the lock, so this is the only reference to the cache.
    let r = f(unsafe { &mut *CACHE.cache.get() });
    // SAFETY: taken above.
    unsafe { CACHE.lock.unlock() };
    r
}

/// `fork_prepare`: holds the cache lock across `fork`.
pub(crate) fn fork_lock() {
    CACHE.lock.lock();
}

/// After `fork`, in the parent and in the child: gives back what [`fork_lock`] took.
///
/// # Safety
///
/// After [`fork_lock`], in the thread that called it (or the child's copy of it).
pub(crate) unsafe fn fork_unlock() {
    // SAFETY: caller's contract.
    unsafe { CACHE.lock.unlock() };
}

/// Mapping length for `size` bytes at `align`: a header page in front, the alignment slack.
fn needed(size: usize, align: usize) -> Option<usize> {
    size.checked_add(align.max(PAGE))?.checked_add(PAGE).map(|n| n.next_multiple_of(PAGE))
}

/// A cached mapping for a request of `len` bytes (see the module docs): one of at least
/// `len` bytes, or the largest smaller one, for the caller to grow.
fn take_cached(len: usize) -> Option<(usize, usize)> {
    with_cache(|c| {
        let maps = &c.maps[..c.n];
        let fit = (0..c.n).filter(|&i| maps[i].1 >= len && maps[i].1 / 2 <= len).min_by_key(|&i| maps[i].1);
        let i = fit.or_else(|| (0..c.n).filter(|&i| maps[i].1 < len).max_by_key(|&i| maps[i].1))?;
        let m = c.maps[i];
        let n = c.n;
        c.maps.copy_within(i + 1..n, i);
        c.n -= 1;
        c.bytes -= m.1;
        Some(m)
    })
}

/// A mapping for `size` bytes aligned to `align`; null on failure.
pub(crate) fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let Some(len) = needed(size, align) else { return core::ptr::null_mut() };
    let cached = take_cached(len).and_then(|(b, l)| {
        if l >= len {
            return Some((b, l));
        }
        // SAFETY: a cached mapping of ours (`l` bytes at `b`) that nothing uses; MAYMOVE lets
        // the kernel move it (its pages come along).
        match unsafe { mremap(b as *mut c_void, l, len, MremapFlags::MAYMOVE) } {
            Ok(p) => Some((p as usize, len)),
            Err(_) => {
                // SAFETY: as above; it is dropped instead.
                let _ = unsafe { munmap(b as *mut c_void, l) };
                None
            }
        }
    });
    let (base, len, fresh) = match cached {
        Some((b, l)) => (b, l, false),
        None => {
            // SAFETY: a fresh private anonymous mapping; it aliases nothing.
            match unsafe {
                mmap_anonymous(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
            } {
                Ok(p) => (p as usize, len, true),
                Err(_) => return core::ptr::null_mut(),
            }
        }
    };
    let ptr = (base + PAGE).next_multiple_of(align.max(PAGE));
    let usable = base + len - ptr;
    // SAFETY: the header lies in the mapping (ptr >= base + PAGE), which is ours.
    unsafe {
        ((ptr - core::mem::size_of::<Header>()) as *mut Header).write(Header { magic: MAGIC, base, len, usable })
    };
    if zero && !fresh {
        // SAFETY: the usable part of our mapping.
        unsafe { core::ptr::write_bytes(ptr as *mut u8, 0, size) };
    }
    ptr as *mut u8
}

/// The header of a huge block, checked.
///
/// # Safety
///
/// `p` must be a pointer [`alloc`] returned and not freed.
unsafe fn header<'a>(p: *const u8) -> &'a Header {
    // SAFETY: caller's contract: the header precedes `p` in its mapping.
    let h = unsafe { &*((p as usize - core::mem::size_of::<Header>()) as *const Header) };
    assert_eq!(h.magic, MAGIC, "free of a pointer kmem did not hand out: {p:?}");
    h
}

/// Usable bytes of a huge block.
///
/// # Safety
///
/// As [`header`].
pub(crate) unsafe fn usable_size(p: *const u8) -> usize {
    // SAFETY: caller's contract.
    unsafe { header(p) }.usable
}

/// Frees a huge block: into the reuse cache, the oldest cached mappings unmapped if over
/// the limits.
///
/// # Safety
///
/// As [`header`]; `p` is not used afterwards.
pub(crate) unsafe fn free(p: *mut u8) {
    let (base, len) = {
        // SAFETY: caller's contract.
        let h = unsafe { header(p) };
        (h.base, h.len)
    };
    let mut evict = [(0usize, 0usize); CACHE_SLOTS + 1];
    let mut ne = 0;
    with_cache(|c| {
        while c.n > 0 && (c.n == CACHE_SLOTS || c.bytes + len > CACHE_BYTES) {
            evict[ne] = c.maps[0];
            ne += 1;
            let n = c.n;
            c.bytes -= c.maps[0].1;
            c.maps.copy_within(1..n, 0);
            c.n -= 1;
        }
        if len <= CACHE_BYTES {
            let n = c.n;
            c.maps[n] = (base, len);
            c.n += 1;
            c.bytes += len;
        } else {
            evict[ne] = (base, len);
            ne += 1;
        }
    });
    for &(b, l) in &evict[..ne] {
        // SAFETY: mappings we created and nothing uses any more.
        let _ = unsafe { munmap(b as *mut c_void, l) };
    }
}
