//! Whole-cache operations: `flush_all`, `kmem_cache_shrink`, `validate_slab_cache`, and the
//! shutdown half of `kmem_cache_destroy` with its leak report.

use core::panic::Location;
use core::ptr::NonNull;

use super::cache::{CacheNode, KmemCache, MAX_CACHES};
use super::debug::{ObjectMap, ValidateReport};
use super::slab_page::{slab_addr, Slab};
use super::SlabFlags;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::pfn_list::PfnList;
use crate::platform::{Platform, ReportKind};
use crate::sync::{Ordering, SpinGuard};

/// Partial slabs with at most this many free objects are sorted by fill on shrink
/// (`SHRINK_PROMOTE_MAX`).
const SHRINK_PROMOTE_MAX: usize = 32;

impl<P: Platform> Kmem<P> {
    /// The built-in slab shrinker: every cache's empty slabs, SReclaimable caches first.
    /// With `flush_cpus` it is `kmem_cache_shrink` on each (every CPU's sheaves flushed
    /// through `run_on_cpu`, the barns too); without, only what needs no other CPU: the
    /// barns' sheaves and the nodes' empty slabs ([`Kmem::shrink_cache_lists`]). Returns the
    /// slab pages given back.
    pub(crate) fn shrink_slab_caches(&self, flush_cpus: bool) -> usize {
        let mut pages = 0;
        for reclaimable in [true, false] {
            for id in 0..MAX_CACHES as u32 {
                let Some(c) = self.cache_get(id) else { continue };
                // SAFETY: `cache_get` took a reference, so the descriptor is live until
                // `cache_put`.
                let s = unsafe { c.as_ref() };
                if s.flags().contains(SlabFlags::RECLAIM_ACCOUNT) == reclaimable {
                    let slabs = |s: &KmemCache| s.nodes().map(|(_, n)| n.nr_slabs()).sum::<usize>();
                    let before = slabs(s);
                    if flush_cpus {
                        self.kmem_cache_shrink(s);
                    } else {
                        self.shrink_cache_lists(s);
                    }
                    pages += before.saturating_sub(slabs(s)) << s.order();
                }
                self.cache_put(c);
            }
        }
        self.count_reclaim(|e| &e.slab_pages_reclaimed, pages as u64);
        self.count_reclaim(|e| &e.slab_sweeps, 1);
        if flush_cpus {
            self.count_reclaim(|e| &e.slab_cpu_flushes, 1);
        }
        pages
    }

    /// Every cache's barns and empty slabs back to the page allocator, the CPUs' sheaves left
    /// alone: reclaim's slab sweep at every priority but the lowest, on its own. It stops no
    /// other CPU, so a caller may run it where a full reclaim would be too dear (a process
    /// allocator about to grow its machine: `kmem-alloc`). Returns the slab pages given
    /// back; counted as a sweep (`slab_sweeps`, `slab_pages_reclaimed`), not as a stall.
    ///
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(16).build().unwrap();
    /// let c = m.kmem_cache_create("doc-lists", 256, 0, SlabFlags::NONE, None).unwrap();
    /// let objs: Vec<_> = (0..4096).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    /// for o in objs {
    ///     // SAFETY: each allocated above from `c`, freed once.
    ///     unsafe { m.kmem_cache_free(&c, o) };
    /// }
    /// assert!(m.shrink_slab_lists() > 0, "the freed objects' slabs went back");
    /// ```
    pub fn shrink_slab_lists(&self) -> usize {
        self.shrink_slab_caches(false)
    }

    /// A reference on the cache with id `id`, if it is live (boot caches need none).
    fn cache_get(&self, id: u32) -> Option<NonNull<KmemCache>> {
        let st = self.slab();
        let g = st.list_lock.lock_irqsave(self.platform());
        let c = st.cache(id)?;
        let rc = c.refcount.load(Ordering::Relaxed);
        if rc == 0 {
            return None;
        }
        if rc > 0 {
            c.refcount.store(rc + 1, Ordering::Relaxed);
        }
        drop(g);
        Some(NonNull::from(c))
    }

    /// Drops a reference taken by `cache_get`; the last one destroys the cache (its owner
    /// destroyed it meanwhile).
    fn cache_put(&self, c: NonNull<KmemCache>) {
        // SAFETY: we own the reference `cache_get` took; `destroy_cache_ref` gives it up
        // (and destroys the cache if it was the last, as its owner's destroy would have).
        unsafe { self.destroy_cache_ref(c, Location::caller()) };
    }

    /// `slub_cpu_dead()` for the CPU the caller runs as (`run_on_cpu`): every cache's
    /// sheaves on it go to the node's barn, or back to the slabs and freed when the barn is
    /// full ([`Kmem::retire_cpu_sheaves`]).
    pub(crate) fn slab_cpu_dead(&self) {
        let st = self.slab();
        let g = st.list_lock.lock_irqsave(self.platform());
        st.for_each_locked(&g, |s| self.retire_cpu_sheaves(s));
        drop(g);
    }

    /// `kmem_cache_shrink(s)`: empties and frees the CPUs' sheaves and the barns' (the next
    /// allocation on a CPU gets new ones), gives every empty slab back to
    /// the page allocator, and sorts the partial slabs with few free objects fullest first.
    /// Returns 0 if the cache has no slab left, 1 otherwise (Linux's `__kmem_cache_shrink`).
    pub fn kmem_cache_shrink(&self, s: &KmemCache) -> i32 {
        if !s.is_of(self) {
            self.cache_of_other_machine("kmem_cache_shrink", s);
            return 1;
        }
        self.free_deferred_if_pending();
        self.flush_all(s, true);
        self.shrink_nodes_of(s) as i32
    }

    /// `kmem_cache_shrink` without the CPUs: the barns' sheaves back to their slabs (and
    /// freed), then the nodes' empty slabs back to the page allocator. Reclaim's sweep at
    /// every priority but the lowest: it needs no other CPU, and leaves every CPU's sheaves
    /// (the allocating CPU's among them) alone.
    pub(crate) fn shrink_cache_lists(&self, s: &KmemCache) {
        self.free_deferred_if_pending();
        if s.sheaf_capacity != 0 {
            self.flush_barns(s, true);
        }
        self.shrink_nodes_of(s);
    }

    /// Frees every node's empty slabs and sorts its partial slabs; true if a slab is left.
    fn shrink_nodes_of(&self, s: &KmemCache) -> bool {
        let mut any = false;
        for (_, n) in s.nodes() {
            let empty = self.shrink_node(n);
            self.discard_list(s, &empty);
            any |= n.nr_slabs() > 0;
        }
        any
    }

    fn shrink_node(&self, n: &CacheNode) -> PfnList {
        let mm = self.memmap();
        let empty = PfnList::new();
        let promote: [PfnList; SHRINK_PROMOTE_MAX] = core::array::from_fn(|_| PfnList::new());
        let g = n.list_lock.lock_irqsave(self.platform());
        self.sift_partial(&g, n, &empty, |slab| {
            let w = slab.word();
            // Saturating: a corrupt word (reported when it is next followed) must not panic.
            let free = w.objects.saturating_sub(w.inuse) as usize;
            if (1..=SHRINK_PROMOTE_MAX).contains(&free) {
                n.partial.unlink(mm, slab.page);
                promote[free - 1].push(mm, slab.pfn, slab.page, false);
            }
        });
        // Fullest first at the head: promote[0] (1 free object) ends up first.
        for list in promote.iter().rev() {
            while let Some(pfn) = list.last() {
                let slab = self.slab_at(pfn.as_usize());
                list.unlink(mm, slab.page);
                n.partial.push(mm, slab.pfn, slab.page, false);
            }
        }
        drop(g);
        empty
    }

    /// Moves every empty slab of `n`'s partial list onto `empty` and calls `rest` with each
    /// other one (which may unlink it). `g` holds `n`'s list lock.
    fn sift_partial(&self, g: &SpinGuard<'_, P>, n: &CacheNode, empty: &PfnList, mut rest: impl FnMut(Slab<'_>)) {
        debug_assert!(g.holds(&n.list_lock));
        let mm = self.memmap();
        let mut cur = n.partial.first();
        while let Some(pfn) = cur {
            let slab = self.slab_at(pfn.as_usize());
            cur = PfnList::next_of(slab.page);
            if slab.word().inuse == 0 {
                n.partial.unlink(mm, slab.page);
                empty.push(mm, slab.pfn, slab.page, false);
            } else {
                rest(slab);
            }
        }
    }

    /// Gives every slab of a detached list back to the page allocator (no lock held).
    pub(crate) fn discard_list(&self, s: &KmemCache, list: &PfnList) {
        while let Some(pfn) = list.first() {
            let slab = self.slab_at(pfn.as_usize());
            list.unlink(self.memmap(), slab.page);
            self.discard_slab(s, slab);
        }
    }

    /// Free objects on a node's partial lists (`count_partial(n, count_free)`), for
    /// slabinfo's `active_objs`.
    pub(crate) fn count_partial_free(&self, n: &CacheNode) -> usize {
        if n.partial.is_empty() {
            return 0;
        }
        let g = n.list_lock.lock_irqsave(self.platform());
        let mut free = 0;
        let _ = n.partial.walk(self.memmap(), |pfn, _| {
            let w = self.slab_at(pfn.as_usize()).word();
            free += w.objects.saturating_sub(w.inuse) as usize;
            true
        });
        drop(g);
        free
    }

    /// `validate_slab_cache(s)`: flushes the CPUs, then checks every slab of every node (its
    /// counters and freelist, and with debugging every object against its state), and the
    /// node counters against what was found. Problems are reported and repaired.
    pub fn validate_slab_cache(&self, s: &KmemCache) -> ValidateReport {
        if !s.is_of(self) {
            self.cache_of_other_machine("validate_slab_cache", s);
            return ValidateReport { errors: 1, ..ValidateReport::default() };
        }
        let before = self.report_count(ReportKind::SlabBug);
        self.flush_all(s, false);
        let mut page = self.alloc(Gfp::KERNEL | Gfp::NOWARN, crate::Order::ZERO).ok();
        let mut map = ObjectMap::new(page.as_mut().and_then(|p| p.as_mut_slice()));
        let mut r = ValidateReport::default();
        for (nid, n) in s.nodes() {
            let g = n.list_lock.lock_irqsave(self.platform());
            let mut slabs = 0;
            for list in [&n.partial, &n.full] {
                // Validation edits counters and freelists, never list links.
                let _ = list.walk(self.memmap(), |pfn, _| {
                    r.objects += self.validate_slab(s, self.slab_at(pfn.as_usize()), &mut map);
                    slabs += 1;
                    true
                });
            }
            let counter = n.nr_slabs();
            drop(g);
            if slabs != counter {
                self.report(ReportKind::SlabBug, &|w| {
                    writeln!(w, "SLUB: {} {slabs} slabs counted but counter={counter} (node {nid})", s.name())
                });
            }
            r.slabs += slabs;
        }
        r.errors = self.report_count(ReportKind::SlabBug) - before;
        r
    }

    /// `__kmem_cache_shutdown()`: flushes, frees every empty slab, and reports the slabs that
    /// still hold objects (`Objects remaining in <cache> on __kmem_cache_shutdown()`). True if
    /// nothing is left.
    pub(crate) fn kmem_cache_shutdown(&self, s: &KmemCache) -> bool {
        self.flush_all(s, true);
        let mm = self.memmap();
        let mut clean = true;
        let mut page = self.alloc(Gfp::KERNEL | Gfp::NOWARN, crate::Order::ZERO).ok();
        let mut map = ObjectMap::new(page.as_mut().and_then(|p| p.as_mut_slice()));
        for (_, n) in s.nodes() {
            let empty = PfnList::new();
            let g = n.list_lock.lock_irqsave(self.platform());
            self.sift_partial(&g, n, &empty, |_| {});
            for list in [&n.partial, &n.full] {
                let _ = list.walk(mm, |pfn, _| {
                    self.list_slab_objects(s, self.slab_at(pfn.as_usize()), &mut map);
                    clean = false;
                    true
                });
            }
            drop(g);
            self.discard_list(s, &empty);
        }
        clean
    }

    /// `list_slab_objects()`: one report per slab naming its live objects.
    fn list_slab_objects(&self, s: &KmemCache, slab: super::slab_page::Slab<'_>, map: &mut ObjectMap<'_>) {
        let w = slab.word();
        let base = s.obj_base(self, slab);
        let addr = slab_addr(self, slab);
        let known = map.fill(self, s, slab);
        self.slab_err(
            s,
            slab,
            &|f| write!(f, "Objects remaining in {} on __kmem_cache_shutdown()", s.name()),
            Some(&|f| {
                let objects = w.objects.min(s.max_objects(slab)) as usize;
                for i in (0..objects).filter(|&i| known && !map.is_free(i)) {
                    let obj = base + i * s.layout.size as usize;
                    write!(f, "Object 0x{obj:016x} @offset={}", obj - addr)?;
                    match super::debug::track::alloc_site(self, s, obj)
                        .filter(|_| s.layout.flags.contains(super::SlabFlags::STORE_USER))
                    {
                        Some(loc) => writeln!(f, " allocated at {loc}")?,
                        None => writeln!(f)?,
                    }
                }
                Ok(())
            }),
        );
    }
}
