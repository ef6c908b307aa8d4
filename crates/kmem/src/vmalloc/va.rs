//! The vmap-area allocator: `alloc_vmap_area`, `free_vmap_area_noflush` (lazy),
//! `__purge_vmap_area_lazy`, `merge_or_add_vmap_area`, and the vmalloc layer's start-up.
//!
//! Policy code over the trees; the records' memory comes from the `vmap_area` slab cache.

use core::ptr::NonNull;

use super::area::VaRef;
use super::{VmallocErrorKind, VmallocState, VmallocStats, INIT_BUSY, INIT_NONE, INIT_NO_AREA, INIT_READY};
use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{Platform, ReportKind, TlbFlush};
use crate::slab::create::CreateArgs;
use crate::slab::{KmemCache, SlabFlags};
use crate::sync::{Ordering, SpinGuard};

/// What [`Kmem::vmalloc_batch`] calls per area: `(index, start, end, vm)`.
pub(crate) type AreaVisitor<'a> = dyn FnMut(usize, usize, usize, Option<&super::VmStruct>) + 'a;

/// `fls()`: the 1-based index of the highest set bit (0 for 0).
const fn fls(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

impl<P: Platform> Kmem<P> {
    pub(crate) fn vm(&self) -> &VmallocState {
        &self.state().vmalloc
    }

    /// `VMALLOC_START..VMALLOC_END`, if the platform has a vmalloc range.
    pub fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        self.platform().vmalloc_range()
    }

    /// `is_vmalloc_addr(addr)`: whether `addr` lies in the vmalloc range.
    pub fn is_vmalloc_addr(&self, addr: *const u8) -> bool {
        // The KFENCE pool is a vmalloc area, but its objects are slab objects (in Linux it
        // lies in the linear map): `kvfree` sends them to `kfree`.
        self.vmalloc_range().is_some_and(|(s, e)| (s.as_usize()..e.as_usize()).contains(&(addr as usize)))
            && !self.is_kfence_address(addr)
    }

    /// `lazy_max_pages()`: `fls(nr_cpus) * 32 MiB / PAGE_SIZE`, or the boot override.
    pub fn lazy_max_pages(&self) -> usize {
        match self.vm().lazy_max_override {
            0 => fls(self.nr_cpus()) * ((32 << 20) / PAGE_SIZE),
            n => n,
        }
    }

    /// The vmalloc counters.
    pub fn vmalloc_stats(&self) -> VmallocStats {
        let v = self.vm();
        let (free_areas, largest_free, busy_areas, lazy_areas) = if v.init.load(Ordering::Acquire) == INIT_READY {
            let _g = v.lock.lock_irqsave(self.platform());
            (v.free.len(), v.free.max_size(), v.busy.len() - v.nr_recycled.load(Ordering::Relaxed), v.lazy.len())
        } else {
            (0, 0, 0, 0)
        };
        VmallocStats {
            total_bytes: self.vmalloc_range().map_or(0, |(s, e)| e.as_usize() - s.as_usize()),
            used_pages: v.nr_pages.load(Ordering::Relaxed),
            busy_areas,
            free_areas,
            lazy_areas,
            lazy_pages: v.lazy_nr.load(Ordering::Relaxed),
            lazy_max_pages: self.lazy_max_pages(),
            purges: v.purges.load(Ordering::Relaxed),
            largest_free,
            stacks: v.nr_stacks.load(Ordering::Relaxed),
            pagetables: v.nr_pagetables.load(Ordering::Relaxed),
            recycled: v.nr_recycled.load(Ordering::Relaxed),
        }
    }

    fn area_cache(&self) -> &KmemCache {
        let p = self.vm().cache.load(Ordering::Acquire);
        // SAFETY: set once by `vmalloc_init` (before INIT_READY is published) to a cache that
        // is never destroyed.
        unsafe { &*(p as *const KmemCache) }
    }

    /// Ensures the vmalloc layer is set up (`vmalloc_init`, on first use).
    #[inline]
    pub(crate) fn vmalloc_ready(&self, gfp: Gfp) -> Result<(), VmallocErrorKind> {
        match self.vm().init.load(Ordering::Acquire) {
            INIT_READY => Ok(()),
            INIT_NO_AREA => Err(VmallocErrorKind::NoVmallocArea),
            _ => self.vmalloc_init(gfp),
        }
    }

    #[cold]
    fn vmalloc_init(&self, gfp: Gfp) -> Result<(), VmallocErrorKind> {
        let v = self.vm();
        let Some((start, end)) = self.vmalloc_range() else {
            v.init.store(INIT_NO_AREA, Ordering::Release);
            return Err(VmallocErrorKind::NoVmallocArea);
        };
        loop {
            match v.init.compare_exchange(INIT_NONE, INIT_BUSY, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(INIT_READY) => return Ok(()),
                Err(INIT_NO_AREA) => return Err(VmallocErrorKind::NoVmallocArea),
                Err(_) => self.platform().cpu_relax(),
            }
        }
        let blocking = gfp.allows_blocking() && !self.platform().atomic_context();
        let cgfp = if blocking { Gfp::KERNEL } else { Gfp::ATOMIC };
        let args = CreateArgs {
            name: "vmap_area",
            size: core::mem::size_of::<super::VmapArea>(),
            align: 0,
            flags: SlabFlags::NONE,
            ctor: None,
            gfp: cgfp,
            mergeable: false,
            internal: true,
            sheaf_capacity: None,
        };
        let cache = match self.create_cache(args) {
            Ok(c) => c.into_raw(),
            Err(_) => {
                v.init.store(INIT_NONE, Ordering::Release);
                return Err(VmallocErrorKind::NoMemory);
            }
        };
        v.cache.store(cache.as_ptr() as usize, Ordering::Release);
        let Some(all) = self.new_area(cgfp, start.as_usize(), end.as_usize()) else {
            v.init.store(INIT_NONE, Ordering::Release);
            return Err(VmallocErrorKind::NoMemory);
        };
        v.start.store(start.as_usize(), Ordering::Relaxed);
        v.end.store(end.as_usize(), Ordering::Relaxed);
        {
            let _g = v.lock.lock_irqsave(self.platform());
            v.free.insert(all);
        }
        v.init.store(INIT_READY, Ordering::Release);
        Ok(())
    }

    /// A fresh area record covering `[start, end)`.
    fn new_area(&self, gfp: Gfp, start: usize, end: usize) -> Option<VaRef<'_>> {
        let cache = self.area_cache();
        let p = self
            .slab_alloc(cache, (gfp & Gfp::RECLAIM_MASK) | Gfp::NOWARN, None, core::panic::Location::caller())
            .ok()?;
        let va = p.as_ptr() as *mut super::VmapArea;
        // SAFETY: a fresh object of the vmap_area cache: sized and aligned for a VmapArea,
        // ours alone until linked.
        let r = unsafe {
            va.write(super::VmapArea::default());
            VaRef::from_addr(va as usize)
        };
        r.reset(start, end);
        Some(r)
    }

    /// Returns an unlinked area record to its cache.
    fn drop_area(&self, va: VaRef<'_>) {
        let p = NonNull::new(va.addr() as *mut u8).expect("records are never null");
        // SAFETY: an object of the vmap_area cache that no tree links any more (the caller
        // unlinked it or never linked it) and nothing else references.
        unsafe { self.kmem_cache_free(self.area_cache(), p) };
    }

    /// Frees a list of unlinked records chained through their right links.
    fn drop_list(&self, mut head: Option<VaRef<'_>>) {
        while let Some(v) = head {
            head = v.right();
            self.drop_area(v);
        }
    }

    /// `alloc_vmap_area()`: a busy area of `size` bytes (guard included) aligned to
    /// `align`, lowest address first. One purge and retry before failing.
    pub(crate) fn alloc_vmap_area(&self, size: usize, align: usize, gfp: Gfp) -> Result<VaRef<'_>, VmallocErrorKind> {
        let v = self.vm();
        let Some(va) = self.new_area(gfp, 0, PAGE_SIZE) else { return Err(VmallocErrorKind::NoMemory) };
        // The preloaded split record (`ne_fit_preload_node`).
        let mut spare = self.new_area(gfp, 0, PAGE_SIZE);
        let range = v.end.load(Ordering::Relaxed) - v.start.load(Ordering::Relaxed);
        let vstart = v.start.load(Ordering::Relaxed);
        // Linux: adjust the search size only for alignments above a page (unless the request
        // spans the whole range), so a page-aligned request may fill an exact hole.
        let length = if align > PAGE_SIZE && size != range { size.saturating_add(align - 1) } else { size };
        let mut purged = false;
        loop {
            let mut unused = None;
            let found = {
                let _g = v.lock.lock_irqsave(self.platform());
                match v.free.lowest_match(size, align, vstart, length) {
                    Some((fa, at)) => {
                        let (s, e) = (fa.start(), fa.end());
                        let done = if at == s && at + size == e {
                            v.free.remove(s);
                            unused = Some(fa);
                            true
                        } else if at == s {
                            v.free.resize(fa, at + size, e);
                            true
                        } else if at + size == e {
                            v.free.resize(fa, s, at);
                            true
                        } else if let Some(n) = spare.take() {
                            v.free.resize(fa, s, at);
                            n.reset(at + size, e);
                            v.free.insert(n);
                            true
                        } else {
                            false
                        };
                        if done {
                            va.reset(at, at + size);
                            v.busy.insert(va);
                        }
                        Some(done)
                    }
                    None => None,
                }
            };
            if let Some(u) = unused {
                self.drop_area(u);
            }
            match found {
                Some(true) => {
                    if let Some(s) = spare {
                        self.drop_area(s);
                    }
                    return Ok(va);
                }
                Some(false) => {
                    // No split record: get one and retry.
                    spare = self.new_area(gfp, 0, PAGE_SIZE);
                    if spare.is_none() {
                        self.drop_area(va);
                        return Err(VmallocErrorKind::NoMemory);
                    }
                }
                None if !purged => {
                    purged = true;
                    self.recycle_drain();
                    self.purge_vmap_area_lazy();
                }
                None => {
                    self.drop_area(va);
                    if let Some(s) = spare {
                        self.drop_area(s);
                    }
                    return Err(VmallocErrorKind::NoSpace);
                }
            }
        }
    }

    /// Moves a busy area (already unlinked by the caller from the busy tree under the lock
    /// `g` holds) to the lazy tree. Returns whether the lazy pages now exceed
    /// `lazy_max_pages()`.
    pub(crate) fn lazy_insert_locked(&self, g: &SpinGuard<'_, P>, va: VaRef<'_>) -> bool {
        let v = self.vm();
        debug_assert!(g.holds(&v.lock));
        va.set_vm(None);
        v.lazy.insert(va);
        let nr = v.lazy_nr.fetch_add(va.size() / PAGE_SIZE, Ordering::Relaxed) + va.size() / PAGE_SIZE;
        nr > self.lazy_max_pages()
    }

    /// `__purge_vmap_area_lazy()`: unmaps every lazily freed area (one platform call per run
    /// of adjacent areas), flushes the TLB once, and returns them to the free tree. Returns
    /// whether anything was purged. Waits for a purge running on another CPU.
    /// From atomic context it only tries (Linux's purge lock is a mutex): the interrupted
    /// code, or a task preempted on this CPU, may hold it.
    pub fn purge_vmap_area_lazy(&self) -> bool {
        let v = self.vm();
        if v.init.load(Ordering::Acquire) != INIT_READY {
            return false;
        }
        if self.platform().atomic_context() {
            return self.try_purge_vmap_area_lazy();
        }
        v.purge_lock.lock_raw(self.platform());
        self.purge_locked()
    }

    /// A purge if none is running (the lazy-threshold trigger of `vfree`: Linux schedules
    /// its drain work; a purge already running will be triggered again by later frees).
    pub(crate) fn try_purge_vmap_area_lazy(&self) -> bool {
        let v = self.vm();
        v.init.load(Ordering::Acquire) == INIT_READY && v.purge_lock.try_lock_raw() && self.purge_locked()
    }

    /// The purge, with the purge lock held (released here).
    fn purge_locked(&self) -> bool {
        let v = self.vm();
        debug_assert!(v.purge_lock.is_locked(), "the purge runs with the purge lock held");
        let head = {
            let _g = v.lock.lock_irqsave(self.platform());
            v.lazy_nr.store(0, Ordering::Relaxed);
            v.lazy.take_sorted()
        };
        if head.is_none() {
            v.purge_lock.unlock();
            return false;
        }
        let mut flush = TlbFlush::none();
        let mut cur = head;
        while let Some(first) = cur {
            let (start, mut end) = (first.start(), first.end());
            let mut n = first.right();
            while let Some(x) = n.filter(|x| x.start() == end) {
                end = x.end();
                n = x.right();
            }
            // SAFETY: the run is made of areas freed by their owners (vfree/vunmap), now in
            // no tree: no one may access them, and they lie in the vmalloc range.
            let f = unsafe { self.platform().unmap_kernel_pages(VirtAddr::new(start), (end - start) / PAGE_SIZE) };
            flush = flush.merge(f);
            cur = n;
        }
        self.platform().flush_tlb_kernel_range(flush);
        let mut unused = None;
        {
            let _g = v.lock.lock_irqsave(self.platform());
            let mut cur = head;
            while let Some(x) = cur {
                cur = x.right();
                for u in self.merge_or_add_locked(x).into_iter().flatten() {
                    u.set_right(unused);
                    unused = Some(u);
                }
            }
        }
        v.purges.fetch_add(1, Ordering::Relaxed);
        v.purge_lock.unlock();
        self.drop_list(unused);
        true
    }

    /// `merge_or_add_vmap_area()`: puts `x` into the free tree, merged with free neighbours.
    /// Returns the records that became unused.
    fn merge_or_add_locked<'a>(&'a self, x: VaRef<'a>) -> [Option<VaRef<'a>>; 2] {
        let v = self.vm();
        let (s, e) = (x.start(), x.end());
        let prev = v.free.prev(s);
        let next = v.free.next(s);
        if prev.is_some_and(|p| p.end() > s) || next.is_some_and(|n| n.start() < e) {
            let (ps, pe) = prev.map_or((0, 0), |p| (p.start(), p.end()));
            let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
            self.report(ReportKind::Warning, &|w| {
                writeln!(
                    w,
                    "WARNING: CPU: {cpu} PID: {pid} at mm/vmalloc.c merge_or_add_vmap_area: vmalloc bug: {s:#x}-{e:#x} overlaps with {ps:#x}-{pe:#x}"
                )
            });
            // Leak the record rather than corrupt the tree.
            return [None, None];
        }
        let prev = prev.filter(|p| p.end() == s);
        let next = next.filter(|n| n.start() == e);
        match (prev, next) {
            (Some(p), Some(n)) => {
                let ne = n.end();
                v.free.remove(n.start());
                v.free.resize(p, p.start(), ne);
                [Some(x), Some(n)]
            }
            (Some(p), None) => {
                v.free.resize(p, p.start(), e);
                [Some(x), None]
            }
            (None, Some(n)) => {
                v.free.resize(n, s, n.end());
                [Some(x), None]
            }
            (None, None) => {
                x.reset(s, e);
                v.free.insert(x);
                [None, None]
            }
        }
    }

    /// Releases a busy area that was never published (a failed vmalloc): it may be partly
    /// mapped, so it goes to the lazy tree like any freed area.
    pub(crate) fn abort_vmap_area(&self, va: VaRef<'_>) {
        let v = self.vm();
        let over = {
            let g = v.lock.lock_irqsave(self.platform());
            v.busy.remove(va.start());
            self.lazy_insert_locked(&g, va)
        };
        if over {
            self.try_purge_vmap_area_lazy();
        }
    }

    /// Up to `max` areas of the busy (or, with `lazy`, the lazy) tree starting at or above
    /// `cursor`, in address order, passed to `f(index, start, end, vm)` under the vmap lock.
    /// Busy areas not yet published are skipped. Returns how many were passed.
    pub(crate) fn vmalloc_batch(&self, lazy: bool, cursor: usize, f: &mut AreaVisitor<'_>, max: usize) -> usize {
        let v = self.vm();
        if v.init.load(Ordering::Acquire) != INIT_READY {
            return 0;
        }
        let tree = if lazy { &v.lazy } else { &v.busy };
        let _g = v.lock.lock_irqsave(self.platform());
        let (mut n, mut at) = (0, cursor);
        while n < max {
            let Some(va) = tree.next(at) else { break };
            at = va.start() + 1;
            let vm = va.vm();
            if !lazy && vm.is_none_or(|vm| vm.cached.load(Ordering::Relaxed) != 0) {
                continue;
            }
            f(n, va.start(), va.end(), vm);
            n += 1;
        }
        n
    }

    /// Checks the vmalloc layer: each tree well formed, and the free, busy and lazy areas
    /// tiling the vmalloc range exactly, with no two free areas adjacent (they merge).
    /// Returns the address where the check failed.
    pub fn vmalloc_verify(&self) -> Result<(), usize> {
        let v = self.vm();
        if v.init.load(Ordering::Acquire) != INIT_READY {
            return Ok(());
        }
        let _g = v.lock.lock_irqsave(self.platform());
        for t in [&v.free, &v.busy, &v.lazy] {
            t.check()?;
        }
        let (mut at, end) = (v.start.load(Ordering::Relaxed), v.end.load(Ordering::Relaxed));
        let mut last_free = false;
        while at < end {
            let hit = |t: &super::tree::Tree| t.next(at).filter(|n| n.start() == at);
            let (n, free) = match (hit(&v.free), hit(&v.busy).or_else(|| hit(&v.lazy))) {
                (Some(n), None) => (n, true),
                (None, Some(n)) => (n, false),
                _ => return Err(at),
            };
            if free && last_free {
                return Err(at);
            }
            last_free = free;
            at = n.end();
        }
        if at == end {
            Ok(())
        } else {
            Err(at)
        }
    }

    /// `vm_unmap_aliases()`: purges every lazily freed area now.
    pub fn vm_unmap_aliases(&self) {
        self.recycle_drain();
        self.purge_vmap_area_lazy();
    }
}
