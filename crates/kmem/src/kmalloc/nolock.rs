//! `kmalloc_nolock()` / `kfree_nolock()` (Linux 6.18, mm/slub.c): kmalloc from any context,
//! including one that interrupted kmem itself on the same CPU (an NMI; on the hosted
//! platform, a signal handler), never spinning on a lock the interrupted context may hold.
//!
//! - `kmalloc_nolock(size, gfp, node)`: `gfp` may hold only `__GFP_ACCOUNT`, `__GFP_ZERO`
//!   and `__GFP_NO_OBJ_EXT` (others: a `WARNING`, Linux's `VM_WARN_ON_ONCE`, and kmem
//!   refuses the request); sizes up to `KMALLOC_MAX_CACHE_SIZE` (slab-backed only: no large
//!   kmalloc); size 0 is `ZERO_SIZE_PTR`. When the size class's routes are busy (the CPU's
//!   sheaves or the node's `list_lock` held), it tries the next size class once, as Linux
//!   does, then fails with [`NolockError::Busy`]. Never reports an allocation failure,
//!   never reclaims, never runs fault injection (Linux skips `should_failslab` here too).
//!   kmem makes the kmalloc caches at a machine's first kmalloc (Linux: at boot); until
//!   then `kmalloc_nolock` cannot make them (that takes locks) and answers `Busy`.
//! - `kfree_nolock(p)`: frees an object of any slab cache (normally one `kmalloc_nolock`
//!   gave); when it cannot be freed without waiting it is deferred to the next safe point
//!   (`slab/defer.rs`). A large kmalloc block is refused with Linux's warning.
//!
//! The routes are in `slab/nolock.rs`, the page side in `mm/page_alloc/nolock.rs`.
//! `kfree_rcu_nolock` is with the RCU engine (`rcu/kvfree.rs`) and uses the same deferred list.

use core::ptr::NonNull;

use super::index::{kmalloc_index, kmalloc_size, KmallocType, KMALLOC_MAX_CACHE_SIZE, ZERO_SIZE_PTR};
use super::zero_size_ptr;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::free::Lookup;
use crate::slab::{KmemCache, NolockError};
use crate::sync::Ordering;

/// The GFP bits `kmalloc_nolock` takes.
const NOLOCK_GFP: Gfp = Gfp::ACCOUNT.union(Gfp::ZERO).union(Gfp::NO_OBJ_EXT);

impl<P: Platform> Kmem<P> {
    /// `kmalloc_nolock(size, gfp, node)`: `size` bytes from any context, or `Err` at once
    /// when that would mean waiting. See the module documentation for the rules.
    ///
    /// ```
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// use kmem::{Gfp, NolockError};
    /// // The kmalloc caches exist once anything has used kmalloc (creating them takes locks).
    /// # let first = m.kmalloc(8, Gfp::KERNEL).unwrap();
    /// # unsafe { m.kfree(first.as_ptr()) };
    /// let p = m.kmalloc_nolock(100, Gfp::ZERO, None).unwrap();
    /// // SAFETY: 100 bytes, ours.
    /// assert!(unsafe { core::slice::from_raw_parts(p.as_ptr(), 100) }.iter().all(|&b| b == 0));
    /// // SAFETY: ours, no longer used.
    /// unsafe { m.kfree_nolock(p.as_ptr()) };
    /// assert_eq!(m.kmalloc_nolock(16384, Gfp::empty(), None), Err(NolockError::TooLarge));
    /// ```
    pub fn kmalloc_nolock(&self, size: usize, gfp: Gfp, node: Option<usize>) -> Result<NonNull<u8>, NolockError> {
        if !gfp.without(NOLOCK_GFP).is_empty() {
            self.warn_on("kmalloc_nolock", &|w| {
                write!(
                    w,
                    "gfp {:#x} ({gfp:#}): only __GFP_ACCOUNT | __GFP_ZERO | __GFP_NO_OBJ_EXT are allowed",
                    gfp.bits()
                )
            });
            return Err(NolockError::BadGfp);
        }
        if size == 0 {
            return Ok(zero_size_ptr());
        }
        let mut size = size;
        let mut can_retry = true;
        loop {
            if size > KMALLOC_MAX_CACHE_SIZE {
                return Err(if can_retry { NolockError::TooLarge } else { NolockError::Busy });
            }
            let s = self.kmalloc_cache_nolock(kmalloc_index(size))?;
            match self.slab_alloc_nolock(s, node, gfp.contains(Gfp::ZERO)) {
                Ok(obj) => {
                    // SAFETY: object addresses are direct-map addresses, never 0.
                    return Ok(unsafe { NonNull::new_unchecked(obj as *mut u8) });
                }
                // Linux: "pick the next kmalloc bucket", once.
                Err(NolockError::Busy) if can_retry => {
                    size = s.object_size() + 1;
                    can_retry = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The normal kmalloc cache of class `index`, without creating it (creation takes
    /// locks): `Busy` before the machine's first kmalloc made them.
    fn kmalloc_cache_nolock(&self, index: usize) -> Result<&KmemCache, NolockError> {
        debug_assert!(kmalloc_size(index) > 0);
        let p = self.state().kmalloc.caches[KmallocType::Normal as usize][index].load(Ordering::Acquire);
        super::KmallocState::cache_of(p).ok_or(NolockError::Busy)
    }

    /// `kfree_nolock(p)`: frees a slab object (normally from [`Kmem::kmalloc_nolock`]) from
    /// any context, at once if that needs no waiting, else at the next safe point (see
    /// [`Kmem::defer_free_barrier`]). Null and `ZERO_SIZE_PTR` are no-ops; a large kmalloc
    /// block is refused with a `WARNING` (`large_kmalloc is not supported by
    /// kfree_nolock()`), a pointer that starts no object is reported and not freed, and a
    /// double free found without waiting is reported.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`]: `p` is null, `ZERO_SIZE_PTR`, or a slab object of this machine that
    /// the caller owns and no longer uses.
    pub unsafe fn kfree_nolock(&self, p: *const u8) {
        let addr = p as usize;
        if addr <= ZERO_SIZE_PTR {
            return;
        }
        match self.lookup_object(addr) {
            // kmem's own objects (sheaves, cache descriptors) are nobody else's to free.
            Lookup::Object(_, c, ..) | Lookup::Invalid(_, c) if c.is_kmem_internal() => {
                self.kfree_invalid("kfree_nolock", p)
            }
            Lookup::Object(slab, c, off, base) => self.slab_free_nolock(c, slab, off, base),
            Lookup::Invalid(slab, c) => self.invalid_object_pointer(c, Some(slab), addr),
            Lookup::NotSlab => {
                self.warn_on("kfree_nolock", &|w| w.write_str("large_kmalloc is not supported by kfree_nolock()"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
