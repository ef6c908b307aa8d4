//! `init_on_alloc=1` / `init_on_free=1`: memory zeroed when handed out or when given back
//! (Linux `mm/mm_init.c`'s `init_mem_debugging_and_hardening`, `want_init_on_alloc`,
//! `want_init_on_free`; `mm/slub.c`'s `slab_want_init_on_alloc`/`_free`).
//!
//! Boot options ([`crate::BootConfig::init_on_alloc`], [`crate::BootConfig::init_on_free`];
//! `MachineBuilder::init_on_alloc`/`init_on_free` on the hosted platform), fixed for the life
//! of the machine.
//!
//! - **Pages:** with `init_on_alloc` every page allocation is zeroed as if it asked for
//!   `__GFP_ZERO` (one zeroing when it did: the flag is added, not a second pass); with
//!   `init_on_free` every block is zeroed when its last reference goes, before it reaches the
//!   per-CPU or buddy lists.
//! - **Slab objects:** `init_on_alloc` adds `__GFP_ZERO` to every allocation of a cache
//!   without a constructor and without `SLAB_TYPESAFE_BY_RCU` (both exempt, as in Linux: a
//!   constructed object must keep its constructed state, a TYPESAFE_BY_RCU object may still
//!   be read after its free); `init_on_free` zeroes the object (its `object_size` bytes) when
//!   it is freed, of the same caches, before its free pointer is written.
//!
//! **Cost when off.** Nothing is added to the fast paths: when either option is on, the
//! machine clears the flags the fast paths already test (`page_fast` for page allocation,
//! `page_free_fast` in place of `pcp_enabled` for page freeing, the armed bit of every
//! cache's machine word for slab allocation, and the *plain* bit of the cache's slabs for
//! slab frees), so every request takes the careful path where the zeroing is.
//!
//! **Differences from Linux.** Pages released to the buddy allocator at boot (and by memory
//! hot-add or deferred initialisation) are not zeroed, so with both options on, page
//! allocations are zeroed on allocation too (Linux skips that when `init_on_free` is set).
//! kmem's own metadata caches (`kmem_cache`, `kmem_sheaf`) follow the options like any cache.

use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::{KmemCache, SlabFlags};
use crate::sync::Ordering;

/// A cache's objects are zeroed on allocation (`KmemCache::meminit`).
pub(crate) const INIT_ALLOC: u8 = 1;
/// A cache's objects are zeroed on free.
pub(crate) const INIT_FREE: u8 = 2;

impl<P: Platform> Kmem<P> {
    /// `want_init_on_alloc()` without a GFP: the `init_on_alloc=1` boot option is on.
    pub fn want_init_on_alloc(&self) -> bool {
        self.state().init_on_alloc.load(Ordering::Relaxed)
    }

    /// `want_init_on_free()`: the `init_on_free=1` boot option is on.
    pub fn want_init_on_free(&self) -> bool {
        self.state().init_on_free.load(Ordering::Relaxed)
    }

    /// Applies the boot options (before the slab allocator starts, after boot released the
    /// memory map to the buddy allocator) and clears the fast paths' flags if either is on.
    pub(crate) fn meminit_setup(&self, on_alloc: bool, on_free: bool) {
        let st = self.state();
        st.init_on_alloc.store(on_alloc, Ordering::Relaxed);
        st.init_on_free.store(on_free, Ordering::Relaxed);
        if on_alloc || on_free {
            // No cache exists yet: the ones to come take the armed bit at creation.
            st.fault.slab_armed.store(true, Ordering::Relaxed);
        }
        self.fault_rearm();
    }

    /// The `KmemCache::meminit` bits of a new cache (`slab_want_init_on_alloc/_free`).
    pub(crate) fn cache_meminit(&self, flags: SlabFlags, has_ctor: bool) -> u8 {
        if has_ctor || flags.contains(SlabFlags::TYPESAFE_BY_RCU) {
            return 0;
        }
        (if self.want_init_on_alloc() { INIT_ALLOC } else { 0 })
            | (if self.want_init_on_free() { INIT_FREE } else { 0 })
    }

    /// The page allocator's GFP with `init_on_alloc`: `__GFP_ZERO` added (only on the paths
    /// that the cleared `page_fast` flag sends every allocation to).
    #[inline]
    pub(crate) fn page_alloc_gfp(&self, gfp: Gfp) -> Gfp {
        if self.want_init_on_alloc() {
            gfp | Gfp::ZERO
        } else {
            gfp
        }
    }

    /// The slab allocator's GFP with `init_on_alloc` for cache `s`.
    #[inline]
    pub(crate) fn slab_alloc_gfp(&self, s: &KmemCache, gfp: Gfp) -> Gfp {
        if s.meminit & INIT_ALLOC != 0 {
            gfp | Gfp::ZERO
        } else {
            gfp
        }
    }
}
