//! Medium blocks: requests above kmalloc's largest slab class (8 KiB) up to [`MAX`] (128
//! KiB), on the process machine, from slab caches of their own: `malloc-16k`, `malloc-32k`,
//! `malloc-64k` and `malloc-128k`, power-of-two objects aligned to their size, created at the
//! first request of each size.
//!
//! kmalloc gives such requests whole compound pages, as Linux's does: an allocation through
//! the per-CPU page lists or the buddy allocator (order 2 to 5) and the head and tail
//! descriptors written; a free that checks every tail and drops the head's reference with a
//! locked instruction, which waits for every store before it (the block's own, missing the
//! cache). A C loop over 64 live blocks of 32-64 KiB took 275 ns a step, mimalloc's 50; of
//! 64-128 KiB 335 (mimalloc 113, glibc 357). From a slab cache the block comes from the CPU's
//! sheaf and goes back to it, as the small ones do (the free's fast path finds the cache by
//! its id, as for kmalloc's own caches): 45 and 68 ns. Larger blocks keep kmalloc's pages:
//! a sheaf of even two 256 KiB blocks, six per CPU at most (main, spare and stash), would
//! keep 3 MiB per CPU.
//!
//! The caches ask for small sheaves ([`SHEAF_BYTES`] of objects a sheaf, at least 2), so that
//! the blocks the CPUs keep stay few: kmem's default sheaf of 32 objects or more would keep 2
//! MiB of 64 KiB blocks per CPU, and a process machine has a CPU per thread. The node's barn
//! keeps at most 4 MiB of each (`slab::sheaf::BARN_BYTES_MAX`). Only the process machine has
//! them: other machines' allocators ([`crate::api2`]) keep kmalloc's pages.

use std::sync::atomic::{AtomicPtr, Ordering};

use kmem::{Cache, Gfp, KmemCache, KmemCacheArgs, SlabFlags};
use kmem_hosted::Machine;

use crate::global;

/// The largest medium block: blocks above it keep kmalloc's compound pages.
pub(crate) const MAX: usize = 128 << 10;
/// The smallest medium object (the next power of two above kmalloc's 8 KiB class).
const MIN_SHIFT: u32 = 14;
/// Bytes of objects a medium cache's sheaf holds.
const SHEAF_BYTES: usize = 256 << 10;
const NAMES: [&str; 4] = ["malloc-16k", "malloc-32k", "malloc-64k", "malloc-128k"];

/// Each size's cache once made (null before): published with a compare-exchange, no lock
/// and no waiting (a `fork` while another thread makes a cache leaves the child nothing to
/// wait for, where a `OnceLock` being initialised would block it for good).
static CACHES: [AtomicPtr<KmemCache>; NAMES.len()] = [const { AtomicPtr::new(core::ptr::null_mut()) }; NAMES.len()];

/// Whether a kmalloc request of `req` bytes is a medium one.
#[inline]
pub(crate) fn is_medium(req: usize) -> bool {
    req > kmem::kmalloc::KMALLOC_MAX_CACHE_SIZE && req <= MAX
}

/// A medium block for a kmalloc request of `req` bytes ([`is_medium`]) on the process
/// machine `m`, allocated with `gfp`: `None` for another machine, or when the size's cache
/// could not be made (the request then goes to kmalloc's pages); `Some(None)` when the
/// cache has no memory for it.
pub(crate) fn alloc(m: &Machine, req: usize, gfp: Gfp) -> Option<Option<*mut u8>> {
    debug_assert!(is_medium(req));
    let g = global::ready().filter(|g| core::ptr::eq(m, *g))?;
    let size = req.next_power_of_two();
    let cache = cache(g, (size.trailing_zeros() - MIN_SHIFT) as usize, size)?;
    Some(g.kmem_cache_alloc(cache, gfp).ok().map(|p| p.as_ptr()))
}

/// The cache of `size`-byte blocks (index `i`), made at its first use. Two threads that make
/// it at once each make one; the one that loses the compare-exchange destroys its own.
fn cache(g: &'static Machine, i: usize, size: usize) -> Option<&'static KmemCache> {
    let p = CACHES[i].load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: a published cache of the process machine, never destroyed.
        return Some(unsafe { &*p });
    }
    let args = KmemCacheArgs { align: size, sheaf_capacity: (SHEAF_BYTES / size).max(2) as u32, ctor: None };
    let made = g.kmem_cache_create_args(NAMES[i], size, &args, SlabFlags::empty()).ok()?.into_raw();
    match CACHES[i].compare_exchange(core::ptr::null_mut(), made.as_ptr(), Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: published: never destroyed.
        Ok(_) => Some(unsafe { made.as_ref() }),
        Err(other) => {
            // SAFETY: `made` came from `into_raw` on the process machine and nobody else has
            // it (it was never published): dropping the handle destroys the unused cache.
            drop(unsafe { Cache::from_raw(g, made) });
            // SAFETY: as in the first case.
            Some(unsafe { &*other })
        }
    }
}
