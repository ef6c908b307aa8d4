//! Allocations above `KMALLOC_MAX_SIZE` (4 MiB): host mappings, until kmem has vmalloc.
//!
//! Each block is an anonymous mapping; the pointer handed out is the mapping's start (or the
//! first address at the requested alignment in it). What the block is (its mapping's base
//! and length) is kept out of band, in a table of live blocks looked up by that pointer
//! ([`crate::huge_table`]): nothing is read from the block itself, so `free`,
//! `malloc_usable_size` and `realloc` of a pointer that is not a live block (freed already,
//! interior, stack, global, or a buffer holding a forged header) find nothing, are reported
//! ([`crate::misuse`]) and change nothing. A mapping is unmapped or handed out again only
//! from what the table and the reuse cache recorded when kmem mapped it.
//!
//! Freed mappings are kept for reuse (a program that allocates and frees 5-25 MiB blocks in
//! a loop then makes no system calls): at most [`CACHE_SLOTS`] mappings and [`CACHE_BYTES`]
//! in all, the oldest unmapped first. A request takes the smallest cached mapping that needs
//! between half of it and all of it; failing that, the largest cached mapping smaller than
//! it, grown with `mremap` (its pages stay: only the new part faults in); failing that, a
//! fresh mapping. So a loop over blocks of varying size soon finds a mapping of the right
//! size in the cache every time, with no system call and no page fault. A `realloc` from
//! one such block to another resizes its mapping ([`remap`]): nothing is copied. A cached mapping
//! remembers the pointer it was freed as, so that freeing that pointer again is reported as
//! a double free (once the mapping is unmapped or reused, as an invalid pointer, or as the
//! new block's free).

use core::cell::UnsafeCell;
use core::ffi::c_void;

use rustix::mm::{mmap_anonymous, mremap, munmap, MapFlags, MremapFlags, ProtFlags};

use crate::huge_table::{Block, Table};
use crate::lock::RawLock;
use crate::misuse::{self, Misuse};

/// Freed mappings kept for reuse.
pub const CACHE_SLOTS: usize = 16;
/// Bytes of freed mappings kept for reuse.
pub const CACHE_BYTES: usize = 64 << 20;

const PAGE: usize = 4096;

/// Freed mappings kept for reuse, oldest first, each as the block it last was.
struct Cache {
    maps: [Block; CACHE_SLOTS],
    n: usize,
    bytes: usize,
}

/// What the lock protects: the live blocks and the reuse cache.
struct State {
    live: Table,
    cache: Cache,
}

/// The state behind its lock ([`RawLock`], so that `fork_prepare` can hold it across
/// `fork`: a child must not inherit it locked by a thread it does not have).
struct Locked {
    lock: RawLock,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only reached through `with_state`, under `lock`.
unsafe impl Sync for Locked {}

const NO_BLOCK: Block = Block { ptr: 0, base: 0, len: 0 };

static STATE: Locked = Locked {
    lock: RawLock::new(),
    state: UnsafeCell::new(State {
        live: Table::new(),
        cache: Cache { maps: [NO_BLOCK; CACHE_SLOTS], n: 0, bytes: 0 },
    }),
};

/// Runs `f` on the state, under its lock. `f` must not allocate or call back here.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.lock.lock();
    // SAFETY: we hold the lock, so this is the only reference to the state.
    let r = f(unsafe { &mut *STATE.state.get() });
    // SAFETY: taken above.
    unsafe { STATE.lock.unlock() };
    r
}

/// `fork_prepare`: holds the lock across `fork`.
pub(crate) fn fork_lock() {
    STATE.lock.lock();
}

/// After `fork`, in the parent and in the child: gives back what [`fork_lock`] took.
///
/// # Safety
///
/// After [`fork_lock`], in the thread that called it (or the child's copy of it).
pub(crate) unsafe fn fork_unlock() {
    // SAFETY: caller's contract.
    unsafe { STATE.lock.unlock() };
}

/// Mapping length for `size` bytes at `align`: the alignment slack beyond a page, whole pages.
/// None above `isize::MAX` (`PTRDIFF_MAX`), which no mapping can have: such a request fails
/// before any system call, as glibc's does (and `mremap` to such a length is not even
/// well defined under valgrind, whose emulation asserts on it).
fn needed(size: usize, align: usize) -> Option<usize> {
    let len = size.checked_add(align.max(PAGE) - PAGE)?.checked_next_multiple_of(PAGE)?;
    (len <= isize::MAX as usize).then_some(len)
}

/// A cached mapping for a request of `len` bytes (see the module docs): one of at least
/// `len` bytes, or the largest smaller one, for the caller to grow. As `(base, len)`.
fn take_cached(len: usize) -> Option<(usize, usize)> {
    with_state(|s| {
        let c = &mut s.cache;
        let maps = &c.maps[..c.n];
        let fit = (0..c.n).filter(|&i| maps[i].len >= len && maps[i].len / 2 <= len).min_by_key(|&i| maps[i].len);
        let i = fit.or_else(|| (0..c.n).filter(|&i| maps[i].len < len).max_by_key(|&i| maps[i].len))?;
        let m = c.maps[i];
        let n = c.n;
        c.maps.copy_within(i + 1..n, i);
        c.n -= 1;
        c.bytes -= m.len;
        Some((m.base, m.len))
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
    let ptr = base.next_multiple_of(align.max(PAGE));
    if zero && !fresh {
        // SAFETY: the usable part of our mapping (`ptr + size <= base + len`, see `needed`).
        unsafe { core::ptr::write_bytes(ptr as *mut u8, 0, size) };
    }
    if !with_state(|s| s.live.insert(Block { ptr, base, len })) {
        // SAFETY: our mapping, which nobody else knows of.
        let _ = unsafe { munmap(base as *mut c_void, len) };
        return core::ptr::null_mut();
    }
    ptr as *mut u8
}

/// Resizes the live block `p` to `size` bytes by resizing its mapping (`mremap`, which may
/// move it: the pages go along, nothing is copied), as glibc's `realloc` does for its mapped
/// chunks; `None`, with `p` unchanged, if `p` is no live block whose mapping starts at it,
/// `align` needs more than page alignment, or the kernel refused: the caller then copies.
///
/// The block leaves the table while its mapping changes, so a racing `free` of `p` (a
/// program's bug) finds nothing and is reported, rather than unmapping what `mremap` moved.
pub(crate) fn remap(p: *mut u8, size: usize, align: usize) -> Option<*mut u8> {
    if align > PAGE {
        return None;
    }
    let len = needed(size, align)?;
    let b = with_state(|s| {
        if s.live.get(p as usize).is_none_or(|b| b.ptr != b.base) {
            return None;
        }
        s.live.remove(p as usize)
    })?;
    // SAFETY: the whole mapping of a live block, which the caller owns (`realloc`'s contract)
    // and which is out of the table: nothing else unmaps, reuses or resizes it meanwhile. On
    // success only the returned mapping is used.
    let moved = unsafe { mremap(b.base as *mut c_void, b.len, len, MremapFlags::MAYMOVE) };
    let nb = match moved {
        Ok(n) => Block { ptr: n as usize, base: n as usize, len },
        Err(_) => b,
    };
    // A removal made room: the insert needs no growth.
    let back = with_state(|s| s.live.insert(nb));
    debug_assert!(back, "the table refused a block after a removal");
    moved.ok().map(|n| n as *mut u8)
}

/// Usable bytes of the live block `p`; 0 if `p` is not one (nothing is reported: glibc's
/// `malloc_usable_size` returns 0 too).
pub(crate) fn usable_size(p: *const u8) -> usize {
    with_state(|s| s.live.get(p as usize).map_or(0, |b| b.usable()))
}

/// Frees the live block `p`: into the reuse cache, the oldest cached mappings unmapped if
/// over the limits. A `p` that is no live block is reported ([`Misuse::DoubleFree`] if a
/// cached mapping was freed as `p`, else [`Misuse::InvalidFree`]) and nothing changes.
///
/// Safe to call with any pointer: only the table is trusted. (The caller of a successful
/// free must not use the block any more, which `raw::free`'s contract says.)
pub(crate) fn free(p: *mut u8) {
    let mut evict = [NO_BLOCK; CACHE_SLOTS + 1];
    let mut ne = 0;
    let freed = with_state(|s| {
        let Some(b) = s.live.remove(p as usize) else {
            let c = &s.cache;
            return Err(if c.maps[..c.n].iter().any(|m| m.ptr == p as usize) {
                Misuse::DoubleFree
            } else {
                Misuse::InvalidFree
            });
        };
        let c = &mut s.cache;
        while c.n > 0 && (c.n == CACHE_SLOTS || c.bytes + b.len > CACHE_BYTES) {
            evict[ne] = c.maps[0];
            ne += 1;
            let n = c.n;
            c.bytes -= c.maps[0].len;
            c.maps.copy_within(1..n, 0);
            c.n -= 1;
        }
        if b.len <= CACHE_BYTES {
            c.maps[c.n] = b;
            c.n += 1;
            c.bytes += b.len;
        } else {
            evict[ne] = b;
            ne += 1;
        }
        Ok(())
    });
    for m in &evict[..ne] {
        // SAFETY: mappings we created (recorded when mapped) and nothing uses any more.
        let _ = unsafe { munmap(m.base as *mut c_void, m.len) };
    }
    if let Err(kind) = freed {
        misuse::report(kind, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_above_ptrdiff_max_are_refused_before_any_system_call() {
        assert_eq!(needed(1, 1), Some(PAGE));
        assert_eq!(needed(PAGE + 1, 2 * PAGE), Some(3 * PAGE));
        assert_eq!(needed(isize::MAX as usize - PAGE + 1, 1), Some(isize::MAX as usize - PAGE + 1));
        assert_eq!(needed(isize::MAX as usize - PAGE + 2, 1), None);
        assert_eq!(needed(usize::MAX - 4095, 1), None);
        assert_eq!(needed(usize::MAX, 1), None);
    }
}
