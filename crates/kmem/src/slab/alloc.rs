//! Allocation: `kmem_cache_alloc` and friends, the lockless fast path and `___slab_alloc`.
//!
//! Fast path: pop the head of this CPU's freelist of its active slab with one
//! compare-and-exchange of the CPU word (see `cpu.rs` for why that is safe without a lock).
//! Slow path, with interrupts off and the CPU's local lock held, in Linux's order: the active
//! slab's remote frees, the node's partial slabs, then a new slab from the page allocator
//! (with the CPU released, since that may sleep).

use core::ptr::NonNull;

use super::cache::KmemCache;
use super::cpu::{Active, CpuLock, SlubStat};
use super::slab_page::{take_freelist, Slab};
use super::word::OFF_NONE;
use super::SlabAllocError;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{Platform, ReportKind};

/// What one allocation asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Req {
    pub gfp: Gfp,
    pub node: Option<usize>,
    pub caller: &'static core::panic::Location<'static>,
    /// Bytes the caller will use (kmalloc's request; `object_size` otherwise).
    pub orig_size: u32,
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_alloc(s, gfp)`: an object of `s`, from the local node if possible.
    ///
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    /// let c = m.kmem_cache_create("demo_obj", 200, 0, SlabFlags::HWCACHE_ALIGN, None).unwrap();
    /// let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    /// unsafe { p.as_ptr().write_bytes(0xab, 200) }; // real, writable memory
    /// // SAFETY: `p` came from `c` and is no longer used.
    /// unsafe { m.kmem_cache_free(&c, p) };
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn kmem_cache_alloc(&self, s: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, SlabAllocError> {
        self.slab_alloc(s, gfp, None, core::panic::Location::caller())
    }

    /// `kmem_cache_zalloc(s, gfp)`: a zeroed object (`__GFP_ZERO`).
    #[inline]
    #[track_caller]
    pub fn kmem_cache_zalloc(&self, s: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, SlabAllocError> {
        self.slab_alloc(s, gfp | Gfp::ZERO, None, core::panic::Location::caller())
    }

    /// `kmem_cache_alloc_node(s, gfp, node)`: an object from a slab on `node` (`None`:
    /// `NUMA_NO_NODE`, any). As in Linux, a node without memory falls back to others unless
    /// `__GFP_THISNODE`.
    #[track_caller]
    pub fn kmem_cache_alloc_node(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
    ) -> Result<NonNull<u8>, SlabAllocError> {
        if let Some(nid) = node {
            if nid >= s.nr_nodes as usize {
                return Err(SlabAllocError::NoSuchNode(nid));
            }
        }
        self.slab_alloc(s, gfp, node, core::panic::Location::caller())
    }

    /// `slab_alloc_node()`: pre-alloc checks, the fast path, else the slow path; zeroing.
    /// Inlined down to the fast path: anything unusual (a sleeping request in atomic
    /// context, `__GFP_ZERO`, bad GFP bits) and the slow path are out of line.
    #[inline(always)]
    pub(crate) fn slab_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
    ) -> Result<NonNull<u8>, SlabAllocError> {
        self.slab_alloc_sized(s, gfp, node, caller, None)
    }

    /// [`Kmem::slab_alloc`] for a caller that uses only `orig_size` bytes of the object
    /// (kmalloc): debug caches with `SLAB_STORE_USER` record it and red-zone the rest.
    #[inline(always)]
    pub(crate) fn slab_alloc_sized(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
        orig_size: Option<u32>,
    ) -> Result<NonNull<u8>, SlabAllocError> {
        if gfp.intersects(Gfp::ZERO.union(Gfp::SLAB_BUG_MASK))
            || (gfp.allows_blocking() && self.platform().atomic_context())
        {
            return self.slab_alloc_careful(s, gfp, node, caller, orig_size);
        }
        match self.alloc_fast(s, node) {
            // SAFETY: object addresses are direct-map addresses, never 0.
            Some(obj) => Ok(unsafe { NonNull::new_unchecked(obj as *mut u8) }),
            None => self.slab_alloc_careful(s, gfp, node, caller, orig_size),
        }
    }

    /// [`Kmem::slab_alloc`] with every check: might_sleep, GFP fix-up, zeroing.
    #[cold]
    #[inline(never)]
    fn slab_alloc_careful(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
        orig_size: Option<u32>,
    ) -> Result<NonNull<u8>, SlabAllocError> {
        let gfp = self.slab_pre_alloc(s, gfp);
        let obj = match self.alloc_fast(s, node) {
            Some(o) => o,
            None => {
                let orig_size = orig_size.unwrap_or(s.object_size() as u32);
                let req = Req { gfp, node, caller, orig_size };
                self.alloc_slow(s, req)?
            }
        };
        if gfp.contains(Gfp::ZERO) {
            // Debug kmalloc caches zero only what was asked for: the rest is the kmalloc red
            // zone (`slab_post_alloc_hook`'s `zero_size = orig_size`).
            let len = match orig_size {
                Some(n) if s.layout.has_orig_size() || s.layout.flags.contains(super::SlabFlags::RED_ZONE) => {
                    n as usize
                }
                _ => s.object_size(),
            };
            // SAFETY: the object is ours: just allocated, at least `len` bytes.
            unsafe { super::object::fill(obj, 0, len) };
        }
        // SAFETY: object addresses are direct-map addresses, never 0.
        Ok(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }

    /// `slab_pre_alloc_hook()`: `might_alloc` and the GFP sanity fix-up.
    #[inline]
    pub(crate) fn slab_pre_alloc(&self, s: &KmemCache, gfp: Gfp) -> Gfp {
        if gfp.allows_blocking() && self.platform().atomic_context() {
            self.might_sleep_report("mm/slub.c");
        }
        if gfp.intersects(Gfp::SLAB_BUG_MASK) {
            return self.kmalloc_fix_flags(gfp);
        }
        if gfp.contains(Gfp::ZERO) && s.ctor.is_some() {
            self.slab_warn(s, "__GFP_ZERO on a cache with a constructor");
        }
        gfp
    }

    /// `kmalloc_fix_flags()`: strips bits slab allocations must not carry, and says so.
    #[cold]
    fn kmalloc_fix_flags(&self, gfp: Gfp) -> Gfp {
        let fixed = gfp.without(Gfp::SLAB_BUG_MASK);
        self.report(ReportKind::Warning, &|w| {
            writeln!(
                w,
                "Unexpected gfp: {:#x} ({:#}). Fixing up to gfp: {:#x} ({:#}). Fix your code!",
                Gfp::from_bits(gfp.bits() & Gfp::SLAB_BUG_MASK.bits()).bits(),
                Gfp::from_bits(gfp.bits() & Gfp::SLAB_BUG_MASK.bits()),
                fixed.bits(),
                fixed
            )
        });
        fixed
    }

    /// The lockless fast path: pop this CPU's freelist head. `None` when the slow path must
    /// run (empty or locked freelist, node mismatch, corrupt free pointer).
    #[inline(always)]
    fn alloc_fast(&self, s: &KmemCache, node: Option<usize>) -> Option<usize> {
        let c = s.cpu(self, self.platform().current_cpu().index());
        // SAFETY: `fast_pop` calls this only for `base + head` of the slab the word it read
        // belongs to (it re-checks the word after loading `base`/`limit`), so `obj` is an
        // object address of a slab of `s`; if the object was taken or the slab freed since,
        // the memory is still mapped (the direct map), the read may see garbage, and the
        // CAS that follows fails.
        c.fast_pop(node.map(|n| n as u32), |obj| unsafe { s.get_fp(obj) })
    }

    /// `___slab_alloc()`.
    #[cold]
    pub(crate) fn alloc_slow(&self, s: &KmemCache, req: Req) -> Result<usize, SlabAllocError> {
        if s.debug {
            return self.debug_alloc(s, req);
        }
        let cl = CpuLock::new(self.platform(), |cpu| s.cpu(self, cpu));
        cl.c.stat(SlubStat::AllocSlowpath);
        let (head, tid) = cl.c.lock_word();
        if let Some(obj) = self.refill_locked(s, &cl, head, tid, req.node) {
            return Ok(obj);
        }
        // Nothing on this CPU or its node: a new slab, without the CPU (it may sleep).
        cl.c.unlock_word(OFF_NONE, tid);
        drop(cl);
        let slab = self.new_slab_or_report(s, req.gfp, req.node)?;
        // Possibly another CPU now: the thread may have migrated while the CPU was released.
        let cl = CpuLock::new(self.platform(), |cpu| s.cpu(self, cpu));
        cl.c.stat(SlubStat::AllocSlab);
        let (head, tid) = cl.c.lock_word();
        if let Some(a) = cl.c.active() {
            // Another thread on this CPU installed a slab meanwhile: ours replaces it.
            self.deactivate_slab(s, self.slab_at(a.slab), head, a.base);
        }
        let slab_head = super::slab_page::freeze_new(slab);
        Ok(self.install_and_pop(s, &cl, slab, slab_head, tid))
    }

    /// The part of the slow path that runs with the CPU word locked: take the active slab's
    /// remote frees, or replace the active slab with a partial one. Returns an object, with
    /// the word unlocked; `None` leaves the word locked and the CPU without an active slab.
    fn refill_locked(
        &self,
        s: &KmemCache,
        cl: &CpuLock<'_, P>,
        head: u32,
        tid: u32,
        node: Option<usize>,
    ) -> Option<usize> {
        let c = cl.c;
        if let Some(a) = c.active() {
            let node_ok = node.is_none_or(|n| n as u32 == a.node);
            if node_ok {
                if head != OFF_NONE {
                    // Frees reached the CPU freelist after the fast path gave up.
                    return Some(self.pop_and_unlock(s, cl, a, head, tid));
                }
                if let Some(h) = take_freelist(self.slab_at(a.slab)) {
                    c.stat(SlubStat::AllocRefill);
                    return Some(self.pop_and_unlock(s, cl, a, h, tid));
                }
            } else {
                c.stat(SlubStat::AllocNodeMismatch);
            }
            self.deactivate_slab(s, self.slab_at(a.slab), head, a.base);
            c.stat(if node_ok { SlubStat::DeactivateFull } else { SlubStat::DeactivateToTail });
            c.set_active(None);
        }
        let (slab, h) = self.get_partial(s, node)?;
        c.stat(SlubStat::AllocFromPartial);
        Some(self.install_and_pop(s, cl, slab, h, tid))
    }

    /// Makes `slab` (frozen, its freelist `head` taken) the active slab and pops its first
    /// object; unlocks the word.
    pub(crate) fn install_and_pop(
        &self,
        s: &KmemCache,
        cl: &CpuLock<'_, P>,
        slab: Slab<'_>,
        head: u32,
        tid: u32,
    ) -> usize {
        let objects = slab.word().objects;
        let a = Active {
            slab: slab.pfn.as_usize(),
            base: s.obj_base(self, slab),
            limit: objects * s.layout.size,
            node: slab.nid() as u32,
        };
        cl.c.set_active(Some(a));
        self.pop_and_unlock(s, cl, a, head, tid)
    }

    /// Pops `head` off a chain of the active slab and publishes the rest as the CPU freelist.
    fn pop_and_unlock(&self, s: &KmemCache, cl: &CpuLock<'_, P>, a: Active, head: u32, tid: u32) -> usize {
        let obj = a.base + head as usize;
        // SAFETY: `head` is the first object of a chain the CPU owns (word locked).
        let next = unsafe { s.get_fp(obj) };
        let objects = a.limit / s.layout.size;
        let next = if s.valid_next(next, objects) {
            next as u32
        } else {
            // SAFETY: as above.
            unsafe { s.set_fp(obj, OFF_NONE) };
            self.freelist_corrupt(s, self.slab_at(a.slab), obj);
            OFF_NONE
        };
        cl.c.unlock_word(next, tid);
        obj
    }

    /// `slab_out_of_memory()`: Linux's `SLUB: Unable to allocate memory on node` report.
    #[cold]
    pub(crate) fn report_slab_oom(&self, s: &KmemCache, gfp: Gfp, node: Option<usize>) {
        let l = s.layout;
        self.report(ReportKind::PageAllocFailure, &|w| {
            match node {
                Some(n) => {
                    writeln!(w, "SLUB: Unable to allocate memory on node {n}, gfp={:#x}({:#})", gfp.bits(), gfp)?
                }
                None => writeln!(w, "SLUB: Unable to allocate memory on node -1, gfp={:#x}({:#})", gfp.bits(), gfp)?,
            }
            writeln!(
                w,
                "  cache: {}, object size: {}, buffer size: {}, default order: {}, min order: {}",
                s.name(),
                s.object_size(),
                l.size,
                l.order,
                l.min_order
            )?;
            for (nid, n) in s.nodes() {
                let (slabs, objs) = (n.nr_slabs(), n.total_objects());
                let free = self.count_partial_free(n);
                writeln!(w, "  node {nid}: slabs: {slabs}, objs: {objs}, free: {free}")?;
            }
            Ok(())
        });
    }
}
