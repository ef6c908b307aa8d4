//! The slab side of the any-context allocator (Linux 6.18 mm/slub.c: `kmalloc_nolock`'s
//! `__slab_alloc_node` with `allow_spin == false`, `kfree_nolock`'s `do_slab_free`): one
//! object in or out of a cache from a context that may have interrupted kmem itself on the
//! same CPU, with no lock waited for.
//!
//! Routes, in order (each one only if it needs no waiting):
//! 1. **The CPU's sheaves**, if [`Platform::try_pin_cpu_nolock`] says no context on this
//!    CPU holds it (Linux's `local_trylock` of `cpu_sheaves->lock`). kmem pins a whole CPU
//!    where Linux locks one cache's per-CPU part, so a context that interrupted *any*
//!    section on its CPU keeps off every sheaf of that CPU.
//! 2. **The node's slabs** under `spin_trylock` of `list_lock`: an object from a partial
//!    slab, or a new slab from [`Kmem::alloc_pages_trylock`] (zone lock trylocked, taken
//!    with the list lock held: the usual order, and neither waited for). A free goes onto
//!    its slab's freelist; a slab it empties stays on the partial list (the next shrink or
//!    ordinary free gives it back: giving pages back would take the zone lock).
//! 3. Otherwise an allocation fails with [`NolockError::Busy`]; a free is deferred
//!    (`defer.rs`) and completed at the next safe point.
//!
//! Debug caches (`slub_debug`) have no sheaves and check every free under `list_lock`: their
//! allocations take route 2 without the checks' poisoning and tracking, so kmem refuses them
//! (`Unsupported`), and their frees are always deferred to the ordinary, checking `kfree`.
//! Linux runs the debug checks under the trylocked `list_lock`.

use super::cache::{CacheNode, KmemCache};
use super::object::{claim_word, clear_free_word, read_word};
use super::sheaf::Sheaf;
use super::slab_page::Slab;
use super::word::tagged;
use crate::addr::Order;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page_ref::AllocErrorKind;
use crate::mm::pfn_list::PfnList;
use crate::platform::Platform;

/// Why `kmalloc_nolock` gave nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NolockError {
    /// A lock or the CPU's sheaves were held, perhaps by the interrupted context: the
    /// any-context allocator does not wait (Linux's `-EBUSY` inside `kmalloc_nolock`).
    Busy,
    /// No free object and no page for a new slab above the min watermark.
    NoMemory,
    /// A GFP bit other than `__GFP_ACCOUNT`, `__GFP_ZERO`, `__GFP_NO_OBJ_EXT` (reported).
    BadGfp,
    /// Above `KMALLOC_MAX_CACHE_SIZE`: `kmalloc_nolock` has no large-kmalloc route.
    TooLarge,
    /// The cache has debugging on (see the module documentation), or the node does not
    /// exist.
    Unsupported,
}

impl core::fmt::Display for NolockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NolockError::Busy => "busy: a lock the request needs is held",
            NolockError::NoMemory => "no memory without waiting",
            NolockError::BadGfp => "GFP flags other than __GFP_ACCOUNT | __GFP_ZERO | __GFP_NO_OBJ_EXT",
            NolockError::TooLarge => "size above KMALLOC_MAX_CACHE_SIZE",
            NolockError::Unsupported => "debug cache or no such node",
        })
    }
}

impl core::error::Error for NolockError {}

impl<P: Platform> Kmem<P> {
    /// [`Platform::try_pin_cpu_nolock`].
    fn try_pin_nolock(&self) -> Option<crate::platform::Pinned> {
        self.platform().try_pin_cpu_nolock()
    }

    /// `list_lock` trylocked.
    fn try_list_lock<'a>(&'a self, n: &'a super::cache::CacheNode) -> Option<crate::sync::SpinGuard<'a, P>> {
        n.list_lock.try_lock_nolock(self.platform())
    }

    /// One object of `s` from any context (`__slab_alloc_node` without spinning): the
    /// object's free-pointer word is cleared (an allocated object's), and with `zero` the
    /// whole object. `node` `None` is the caller's node.
    pub(crate) fn slab_alloc_nolock(
        &self,
        s: &KmemCache,
        node: Option<usize>,
        zero: bool,
    ) -> Result<usize, NolockError> {
        if s.debug || !s.is_of(self) || node.is_some_and(|n| n >= s.nr_nodes as usize) {
            return Err(NolockError::Unsupported);
        }
        let obj = match self.alloc_from_pcs_nolock(s, node) {
            Some(obj) => obj,
            None => self.alloc_from_node_nolock(s, node)?,
        };
        // SAFETY: a word-aligned slot inside the object we now own (as `alloc_fast` does).
        unsafe { clear_free_word(s.fp_addr(obj)) };
        if zero {
            // SAFETY: the object is ours: just allocated, `object_size` bytes.
            unsafe { super::object::fill(obj, 0, s.object_size()) };
        }
        Ok(obj)
    }

    /// Route 1: this CPU's main sheaf, if no context on the CPU holds it.
    fn alloc_from_pcs_nolock(&self, s: &KmemCache, node: Option<usize>) -> Option<usize> {
        if s.sheaf_capacity == 0 {
            return None;
        }
        let p = self.try_pin_nolock()?;
        let local = self.cpu_to_node(p.cpu.index());
        let obj =
            if node.is_none_or(|n| n == local) { s.pcs(self, p.cpu.index()).main().and_then(Sheaf::pop) } else { None };
        self.platform().unpin_cpu(p);
        obj
    }

    /// Route 2: a partial slab of the node, else a new slab, under a trylocked `list_lock`.
    fn alloc_from_node_nolock(&self, s: &KmemCache, node: Option<usize>) -> Result<usize, NolockError> {
        let nid = node.unwrap_or_else(|| self.numa_node_id());
        let n = s.node(nid);
        let g = self.try_list_lock(n).ok_or(NolockError::Busy)?;
        if let Some(obj) = self.alloc_single_locked(s, n, &g) {
            return Ok(obj);
        }
        let order = s.layout.order;
        let gfp = s.allocflags.union(Gfp::NOWARN).union(Gfp::NOMEMALLOC);
        let page = Order::new(order)
            .ok_or(AllocErrorKind::OrderTooLarge)
            .and_then(|o| self.alloc_pages_trylock(gfp, nid, o).map_err(|e| e.kind))
            .map_err(|k| if k == AllocErrorKind::Busy { NolockError::Busy } else { NolockError::NoMemory })?;
        let slab = self.init_slab(s, page, order, 0);
        n.partial.push(self.memmap(), slab.pfn, slab.page, false);
        self.alloc_single_locked(s, n, &g).ok_or(NolockError::NoMemory)
    }

    /// `do_slab_free()` without spinning, for an object of a non-debug cache at `off` from
    /// object 0 at `base` in `slab`, whose pointer the caller checked.
    pub(crate) fn slab_free_nolock(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) {
        let obj = base + off as usize;
        // With one thread (`Platform::sole_thread`) the mapped frees mark an object free with
        // a plain store after reading its word; a handler that interrupted one of them between
        // the two must not claim the same object, so every nolock free waits for a safe point.
        if s.debug || P::sole_thread() {
            return self.defer_free(obj);
        }
        let fp = s.fp_addr(obj);
        // SAFETY: the free-pointer word of an object of a live slab, which the caller owns.
        let w = unsafe { read_word(fp) };
        if tagged(w, s.marker) {
            return self.free_suspect_nolock(s, slab, off, base, w);
        }
        if self.free_to_pcs_nolock(s, slab, obj, w) {
            return;
        }
        if self.free_to_node_nolock(s, slab, off, base, w) {
            return;
        }
        // Unclaimed: the deferred free runs the ordinary free's checks and claim later.
        self.defer_free(obj);
    }

    /// Claims object `obj`, whose free-pointer word the caller read as `w` and found not a
    /// free object's, for this free (`claim_word`: of two frees at once, one wins); reports
    /// the double free if another free claimed it first.
    fn claim_nolock(&self, s: &KmemCache, slab: Slab<'_>, obj: usize, w: u64) -> bool {
        // SAFETY: the free-pointer word of an object of a live slab, which the caller owns.
        if unsafe { claim_word(s.fp_addr(obj), w, s.sheaf_marker()) } {
            return true;
        }
        self.double_free(s, slab, obj);
        false
    }

    /// Route 1 of a free: this CPU's main sheaf, if no context on the CPU holds it and the
    /// sheaf has room.
    fn free_to_pcs_nolock(&self, s: &KmemCache, slab: Slab<'_>, obj: usize, w: u64) -> bool {
        if s.sheaf_capacity == 0 {
            return false;
        }
        let Some(p) = self.try_pin_nolock() else { return false };
        let mut pushed = false;
        if slab.nid() == self.cpu_to_node(p.cpu.index()) {
            if let Some(m) = s.pcs(self, p.cpu.index()).main().filter(|m| m.size() < m.capacity()) {
                // The object is the caller's; claimed, it is a free object in a sheaf (lost,
                // the double free is reported and the free is done).
                pushed = !self.claim_nolock(s, slab, obj, w) || m.push(obj);
                debug_assert!(pushed, "a sheaf with room refused an object");
            }
        }
        self.platform().unpin_cpu(p);
        pushed
    }

    /// Route 2 of a free: the slab's freelist under a trylocked `list_lock`. A slab this
    /// empties stays on the partial list. False if the lock was busy. The object is claimed
    /// first (its word read as `w`), as the sheaf's route claims it.
    fn free_to_node_nolock(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize, w: u64) -> bool {
        let n = s.node(slab.nid());
        let Some(g) = self.try_list_lock(n) else { return false };
        let obj = base + off as usize;
        if !self.claim_nolock(s, slab, obj, w) {
            return true;
        }
        let discard = PfnList::new();
        let ok = self.free_to_slab_locked(s, n, &g, slab, off, base, &discard);
        self.keep_on_partial(n, &discard);
        drop(g);
        if !ok {
            self.double_free(s, slab, base + off as usize);
        }
        true
    }

    /// The slabs a nolock free emptied (`discard`) go back on the node's partial list
    /// instead of to the page allocator, whose zone lock the interrupted context may hold.
    /// Called with the node's `list_lock` held.
    fn keep_on_partial(&self, n: &CacheNode, discard: &PfnList) {
        let mm = self.memmap();
        while let Some(pfn) = discard.first() {
            let empty = self.slab_at(pfn.as_usize());
            discard.unlink(mm, empty.page);
            n.partial.push(mm, empty.pfn, empty.page, true);
        }
    }

    /// A free of an object whose free pointer looks like a free object's: the sheaf marker
    /// is a double free (reported, nothing freed); otherwise the slab's freelist decides,
    /// if its lock is free. If it is not, the object is left alone: freeing it through a
    /// list would corrupt the list if it is free already, and the one-in-2^32 live object
    /// whose data looks free is lost (a leak, never a corruption).
    ///
    /// Not on the freelist, the object is claimed from its word as read (`w`) before it is
    /// linked, so that a free of it racing on another CPU cannot also put it on a sheaf.
    #[cold]
    fn free_suspect_nolock(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize, w: u64) {
        let obj = base + off as usize;
        if w == s.sheaf_marker() {
            return self.double_free(s, slab, obj);
        }
        let n = s.node(slab.nid());
        let Some(g) = self.try_list_lock(n) else { return };
        let discard = PfnList::new();
        let free = self.on_slab_freelist_locked(s, slab, off, base);
        // SAFETY: the free-pointer word of an object of a live slab, which the caller owns.
        let ok = !free
            && unsafe { claim_word(s.fp_addr(obj), w, s.sheaf_marker()) }
            && self.free_to_slab_locked(s, n, &g, slab, off, base, &discard);
        self.keep_on_partial(n, &discard);
        drop(g);
        if !ok {
            self.double_free(s, slab, obj);
        }
    }
}
