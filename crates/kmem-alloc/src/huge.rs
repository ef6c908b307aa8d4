//! Allocations above `KMALLOC_MAX_SIZE` (4 MiB): host mappings, until kmem has vmalloc.
//!
//! Each block is an anonymous mapping with a header just before the returned pointer
//! (mapping base, length, usable bytes). Freed mappings are kept for reuse (a program that
//! allocates and frees 5-25 MiB blocks in a loop then makes no system calls): at most
//! [`CACHE_SLOTS`] mappings and [`CACHE_BYTES`] in all, the oldest unmapped first; a cached
//! mapping serves a request that needs between half of it and all of it.

use std::sync::Mutex;

use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

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

static CACHE: Mutex<Cache> = Mutex::new(Cache { maps: [(0, 0); CACHE_SLOTS], n: 0, bytes: 0 });

/// Mapping length for `size` bytes at `align`: a header page in front, the alignment slack.
fn needed(size: usize, align: usize) -> Option<usize> {
    size.checked_add(align.max(PAGE))?.checked_add(PAGE).map(|n| n.next_multiple_of(PAGE))
}

fn take_cached(len: usize) -> Option<(usize, usize)> {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let i = (0..c.n).find(|&i| c.maps[i].1 >= len && c.maps[i].1 / 2 <= len)?;
    let m = c.maps[i];
    let n = c.n;
    c.maps.copy_within(i + 1..n, i);
    c.n -= 1;
    c.bytes -= m.1;
    Some(m)
}

/// A mapping for `size` bytes aligned to `align`; null on failure.
pub(crate) fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let Some(len) = needed(size, align) else { return core::ptr::null_mut() };
    let (base, len, fresh) = match take_cached(len) {
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
    {
        let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
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
    }
    for &(b, l) in &evict[..ne] {
        // SAFETY: mappings we created and nothing uses any more.
        let _ = unsafe { munmap(b as *mut core::ffi::c_void, l) };
    }
}
