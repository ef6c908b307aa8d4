//! Allocation: `kmem_cache_alloc` and friends.
//!
//! Fast path: pop this CPU's main sheaf, with the CPU pinned (no lock, no atomic
//! read-modify-write). Slow path, in Linux 6.18's order: the spare sheaf, a full sheaf from
//! the node's barn, a refill from the node's partial slabs (all with the CPU pinned), then a
//! new slab from the page allocator (with the CPU released, since that may sleep).

use core::ptr::NonNull;

use super::cache::KmemCache;
use super::sheaf::{take_main, trade_for_full, CpuSheaves, Sheaf, SlubStat};
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

/// What the pinned part of the allocation slow path found.
enum Got {
    /// An object, and a sheaf retired from the CPU to free (0: none).
    Object(usize, usize),
    /// Nothing; a retired sheaf to free (0: none).
    Retired(usize),
    /// The CPU has no main sheaf.
    Nothing,
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_alloc(s, gfp)`: an object of `s`, from the local node if possible.
    ///
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    /// let c = m.kmem_cache_create("demo_obj", 200, 0, SlabFlags::HWCACHE_ALIGN, None).unwrap();
    /// let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    /// // SAFETY: `p` is a live 200-byte object of ours: real, writable memory.
    /// unsafe { p.as_ptr().write_bytes(0xab, 200) };
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
            if s.is_of(self) && nid >= s.nr_nodes as usize {
                return Err(SlabAllocError::NoSuchNode(nid));
            }
        }
        self.slab_alloc(s, gfp, node, core::panic::Location::caller())
    }

    /// `slab_alloc_node()`: pre-alloc checks, the fast path, else the slow path; zeroing.
    /// Inlined down to the fast path, which zeroes for `__GFP_ZERO` itself: anything unusual
    /// (a sleeping request in atomic context, bad GFP bits, a node, `__GFP_ZERO` on a cache
    /// with a constructor) and the slow path are out of line.
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
        if let Some(obj) = self.slab_alloc_try_fast(s, gfp, node) {
            return Ok(obj);
        }
        self.slab_alloc_careful(s, gfp, node, caller, orig_size)
    }

    /// The fast path of [`Kmem::slab_alloc_sized`] alone: an object when nothing needs
    /// checking, fixing up or reporting and the CPU's sheaf has one; `None` sends the caller
    /// to its careful path. (kmalloc returns its own error type: calling this itself, it
    /// returns the object straight, where mapping the slab path's `Result` made the compiler
    /// write the `Ok` into the caller's result slot on the fast path.)
    #[inline(always)]
    pub(crate) fn slab_alloc_try_fast(&self, s: &KmemCache, gfp: Gfp, node: Option<usize>) -> Option<NonNull<u8>> {
        self.slab_alloc_try_fast_if(s, gfp, node, || s.fast_is_of(self))
    }

    /// `kmem_cache_alloc` of a cache known to be this machine's (its owning handle's
    /// [`Cache::alloc`](super::Cache::alloc), a typed cache's): the fast path tests only that
    /// failslab and KFENCE are not armed, not the cache's machine (the handle says it).
    #[inline(always)]
    pub(crate) fn slab_alloc_own(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        caller: &'static core::panic::Location<'static>,
    ) -> Result<NonNull<u8>, SlabAllocError> {
        debug_assert!(s.is_of(self), "a handle's cache is its machine's");
        if let Some(obj) = self.slab_alloc_try_fast_if(s, gfp, None, || s.fast_unarmed()) {
            return Ok(obj);
        }
        self.slab_alloc_careful(s, gfp, None, caller, None)
    }

    /// [`Kmem::slab_alloc_try_fast`] with the cache's test (`ours`: it is this machine's
    /// and nothing is armed) given by the caller.
    #[inline(always)]
    fn slab_alloc_try_fast_if(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        ours: impl FnOnce() -> bool,
    ) -> Option<NonNull<u8>> {
        if node.is_none()
            && !gfp.intersects(Gfp::SLAB_BUG_MASK)
            && !(gfp.allows_blocking() && self.platform().atomic_context())
            && ours()
            // `__GFP_ZERO` on a cache with a constructor is warned about (careful path).
            && (!gfp.contains(Gfp::ZERO) || s.ctor.is_none())
        {
            if let Some(obj) = self.alloc_fast(s, gfp.contains(Gfp::ZERO)) {
                // SAFETY: object addresses are direct-map addresses, never 0.
                return Some(unsafe { NonNull::new_unchecked(obj as *mut u8) });
            }
        }
        None
    }

    /// [`Kmem::slab_alloc`] with every check: might_sleep, GFP fix-up, zeroing.
    #[cold]
    #[inline(never)]
    pub(crate) fn slab_alloc_careful(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
        orig_size: Option<u32>,
    ) -> Result<NonNull<u8>, SlabAllocError> {
        if !s.is_of(self) {
            // A cache of another machine (whose per-CPU sheaves this machine's CPUs would
            // index): refused before anything of it is touched.
            return Err(self.cache_of_other_machine("kmem_cache_alloc", s));
        }
        // A safe point for objects kfree_nolock deferred (slab/defer.rs): one load.
        self.free_deferred_if_pending();
        let gfp = self.slab_pre_alloc(s, gfp);
        if self.should_failslab(s, gfp, caller) {
            return Err(SlabAllocError::FaultInjected);
        }
        // KFENCE's sampling gate (`kfence_alloc` in `slab_alloc_node`): one load while no
        // pool exists; the object comes zeroed and constructed as asked.
        let want = orig_size.map_or(s.object_size(), |n| n as usize);
        if let Some(obj) = self.kfence_alloc(s, want, gfp, node, caller) {
            // SAFETY: pool objects are page addresses plus an offset, never 0.
            return Ok(unsafe { NonNull::new_unchecked(obj as *mut u8) });
        }
        let fast = if node.is_none() { self.alloc_fast_pinned(s, self.platform().pin_cpu()) } else { None };
        let obj = match fast {
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
        // init_on_alloc (`mm/meminit.rs`): the zeroing `__GFP_ZERO` asks for, done once.
        let gfp = self.slab_alloc_gfp(s, gfp);
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

    /// The fast path (`alloc_from_pcs`): pop this CPU's main sheaf, and with `zero`
    /// (`__GFP_ZERO`: kzalloc, calloc) zero the whole object, as the careful path zeroes a
    /// plain cache's (sheaves are plain caches': no debugging, no kmalloc red zone; the
    /// caller keeps caches with a constructor off it). `None` when the careful path must
    /// run (the CPU is not to be had without a call, no sheaf yet, or it is empty). Makes
    /// no call but the zeroing.
    #[inline(always)]
    pub(crate) fn alloc_fast(&self, s: &KmemCache, zero: bool) -> Option<usize> {
        let (p, t) = self.try_pin_fast_table()?;
        // SAFETY: the pinned CPU's table, and an entry's word (`FastTable::named_word`). The
        // entry names the cache's main sheaf, or the empty sheaf (not filled yet, or no entry
        // for the cache's id: the careful path).
        let obj = unsafe { super::fast_table::FastTable::at(t).sheaf_unchecked(s.fast_word as usize) }.pop();
        self.platform().unpin_cpu_fast(p);
        let obj = self.alloc_fast_took(s, obj)?;
        if zero {
            // SAFETY: the object is ours: just allocated, `object_size` bytes.
            unsafe { super::object::fill(obj, 0, s.object_size()) };
        }
        Some(obj)
    }

    /// [`Kmem::alloc_fast`] on a CPU pinned the ordinary way (the careful path).
    #[inline(always)]
    fn alloc_fast_pinned(&self, s: &KmemCache, p: crate::platform::Pinned) -> Option<usize> {
        let pcs = s.pcs(self, p.cpu.index());
        self.fast_table_fill(s, p.cpu.index(), pcs);
        let obj = pcs.main().and_then(Sheaf::pop);
        self.platform().unpin_cpu(p);
        self.alloc_fast_took(s, obj)
    }

    #[inline(always)]
    fn alloc_fast_took(&self, s: &KmemCache, obj: Option<usize>) -> Option<usize> {
        let obj = obj?;
        // The object is ours now: its free pointer stops looking like a free object's
        // (the free path's double-free check).
        // SAFETY: a word-aligned slot inside the object's slot, which we own.
        unsafe { super::object::clear_free_word(s.fp_addr(obj)) };
        Some(obj)
    }

    /// `___slab_alloc()` / `__pcs_replace_empty_main()`: refill this CPU's main sheaf (from
    /// its spare, the node's barn, the node's partial slabs, a new slab) and pop it.
    #[cold]
    pub(crate) fn alloc_slow(&self, s: &KmemCache, req: Req) -> Result<usize, SlabAllocError> {
        if s.debug {
            return self.debug_alloc(s, req);
        }
        let local = self.numa_node_id();
        // A request for a node, on a machine with several, goes to that node's slabs: the
        // sheaves hold the CPU's node's objects, but the CPU (and so its node) may change
        // under a thread between here and its pinning (Linux checks the object's node).
        if s.sheaf_capacity == 0 || (req.node.is_some() && self.nr_nodes() > 1) {
            return self.alloc_direct(s, req);
        }
        loop {
            let p = self.platform().pin_cpu();
            let pcs = s.pcs(self, p.cpu.index());
            pcs.stat(SlubStat::AllocSlowpath);
            let had_main = pcs.main_addr() != 0;
            let got = self.refill_main(s, pcs, local);
            let has_main = pcs.main().is_some();
            if has_main && !had_main {
                // The CPU's first main sheaf of the cache (from the barn): its class entry,
                // which mirrored no sheaf, names it now (`fast_table.rs`).
                self.fast_table_fill(s, p.cpu.index(), pcs);
            }
            self.platform().unpin_cpu(p);
            match got {
                Got::Object(obj, retired) => {
                    self.free_sheaf(retired);
                    // SAFETY: as in `alloc_fast`.
                    unsafe { super::object::clear_free_word(s.fp_addr(obj)) };
                    return Ok(obj);
                }
                Got::Retired(retired) => self.free_sheaf(retired),
                Got::Nothing => {}
            }
            if !has_main {
                // The CPU's first allocation from this cache: give it a main sheaf.
                match self.alloc_sheaf(s, req.gfp) {
                    Some(sh) => self.install_sheaf(s, sh),
                    None => return self.alloc_direct(s, req),
                }
                continue;
            }
            // Nothing on this node: a new slab, with the CPU released (it may sleep; the
            // thread may come back on another CPU).
            // Its first objects go to the main sheaf: their free pointers are not chained.
            let unlinked = s.sheaf_capacity;
            let slab = self.new_slab_or_report(s, req.gfp, None, unlinked)?;
            let p = self.platform().pin_cpu();
            let pcs = s.pcs(self, p.cpu.index());
            pcs.stat(SlubStat::AllocSlab);
            // A main sheaf to fill, else (the sheaf went while the CPU was released, e.g.
            // flushed by the reclaim the new slab cost, or another thread refilled it) one
            // object straight from the new slab: the slab must serve this allocation.
            let main = pcs.main().filter(|m| m.size() == 0);
            let obj = self.add_new_slab(s, slab, main, unlinked).or_else(|| pcs.main().and_then(Sheaf::pop));
            self.platform().unpin_cpu(p);
            if let Some(obj) = obj {
                // SAFETY: as in `alloc_fast`.
                unsafe { super::object::clear_free_word(s.fp_addr(obj)) };
                return Ok(obj);
            }
        }
    }

    /// The refill steps that need no sleeping, with the CPU pinned: an object from the main
    /// sheaf (another thread may have filled it), else the spare, a full sheaf from the
    /// barn, or the node's partial slabs.
    fn refill_main(&self, s: &KmemCache, pcs: &CpuSheaves, nid: usize) -> Got {
        if pcs.main().is_none() {
            // The CPU's first allocation from this cache since it came online: a sheaf
            // parked in the barn (full, else empty) rather than a new one.
            let (barn, p) = (&s.node(nid).barn, self.platform());
            if take_main(pcs, barn, p, true) || take_main(pcs, barn, p, false) {
                pcs.stat(SlubStat::BarnGet);
            }
        }
        let Some(main) = pcs.main() else { return Got::Nothing };
        if let Some(o) = main.pop() {
            return Got::Object(o, 0);
        }
        if pcs.spare().is_some_and(|sp| sp.size() > 0) {
            pcs.swap();
            return pcs.main().and_then(Sheaf::pop).map_or(Got::Nothing, |o| Got::Object(o, 0));
        }
        let depth = self.slab().cpu_stash as u32;
        if depth > 0 {
            // A stashed full sheaf for the empty main, which takes its place in the stash.
            let full = pcs.stash_take(true);
            if full != 0 {
                let empty = pcs.set_main(full);
                let kept = pcs.stash_put(empty, depth);
                debug_assert!(kept, "a sheaf left the stash just before");
                return pcs.main().and_then(Sheaf::pop).map_or(Got::Nothing, |o| Got::Object(o, 0));
            }
        }
        let barn = &s.node(nid).barn;
        let mut retired = 0;
        if barn.nr_full() > 0 {
            let (got, r) = trade_for_full(pcs, barn, self.platform());
            retired = r;
            if got {
                pcs.stat(SlubStat::BarnGet);
                if let Some(o) = pcs.main().and_then(Sheaf::pop) {
                    return Got::Object(o, retired);
                }
            }
        } else {
            pcs.stat(SlubStat::BarnGetFail);
        }
        let main = pcs.main().expect("main sheaf present");
        if self.refill_from_partial(s, nid, main) > 0 {
            pcs.stat(SlubStat::SheafRefill);
            pcs.stat(SlubStat::AllocFromPartial);
            if let Some(o) = main.pop() {
                return Got::Object(o, retired);
            }
        }
        if retired != 0 {
            // Keep it as the spare rather than free it with the CPU pinned.
            if pcs.spare().is_none() {
                pcs.set_spare(retired);
                retired = 0;
            }
        }
        Got::Retired(retired)
    }

    /// Allocation without sheaves (`kmem_sheaf`, another node, no sheaf to be had): one
    /// object from a partial slab, or from a new one.
    pub(crate) fn alloc_direct(&self, s: &KmemCache, req: Req) -> Result<usize, SlabAllocError> {
        let obj = self.alloc_direct_raw(s, req)?;
        // SAFETY: as in `alloc_fast`: the object is ours, its free pointer stops looking free.
        unsafe { super::object::clear_free_word(s.fp_addr(obj)) };
        Ok(obj)
    }

    fn alloc_direct_raw(&self, s: &KmemCache, req: Req) -> Result<usize, SlabAllocError> {
        loop {
            let local = req.node.unwrap_or_else(|| self.numa_node_id());
            if let Some(obj) = self.alloc_single(s, local) {
                return Ok(obj);
            }
            if req.node.is_none() {
                // `get_any_partial`: other nodes that keep more partial slabs than they need.
                let other = (0..s.nr_nodes as usize)
                    .filter(|&nid| nid != local && s.node(nid).nr_partial() > s.min_partial as usize)
                    .find_map(|nid| self.alloc_single(s, nid));
                if let Some(obj) = other {
                    return Ok(obj);
                }
            }
            let slab = self.new_slab_or_report(s, req.gfp, req.node, 0)?;
            if let Some(obj) = self.add_new_slab(s, slab, None, 0) {
                return Ok(obj);
            }
        }
    }
    /// A cache of another machine passed to `func`: reported, refused.
    #[cold]
    #[inline(never)]
    pub(crate) fn cache_of_other_machine(&self, func: &str, s: &KmemCache) -> SlabAllocError {
        // Only the name is read: it lives in the other machine's RAM, which the caller's
        // reference keeps alive, and never changes.
        self.other_machine("mm/slub.c", func, &|w| write!(w, "cache {}", s.name()));
        SlabAllocError::OtherMachine
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
