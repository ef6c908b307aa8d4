//! KFENCE's operations (`mm/kfence/core.c`): building the pool, the sampled allocation, the
//! checked free, the page-fault handler, cache shutdown, and the lookups `kfree`, `ksize`
//! and `kmem_cache_free` make.

use core::panic::Location;

use super::meta::{ErrorType, KfencePool, ObjectState, Snap, C_ALLOCATED, C_ALLOCS, C_BUGS, C_FREES, C_ZOMBIES};
use super::meta::{C_SKIP_CAPACITY, C_SKIP_INCOMPAT};
use super::report::Error;
use super::{KfenceConfig, KfenceFault, KfenceInitError, MAX_NUM_OBJECTS};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{PageProt, PageTableAlloc, Platform, ReportKind};
use crate::slab::{KmemCache, SlabFlags};
use crate::sync::Ordering;
use crate::{Order, Pfn, VirtAddr, PAGE_SIZE};

/// `KFENCE_CANARY_PATTERN_U8(addr)`: the canary byte at `addr`.
#[inline]
pub(crate) fn canary(addr: usize) -> u8 {
    0xaa ^ (addr & 0x7) as u8
}

/// Page tables are never allocated when KFENCE maps a pool page back: the pool was mapped
/// whole at boot, so its tables exist.
struct NoTables;

impl PageTableAlloc for NoTables {
    fn alloc_table(&mut self) -> Option<Pfn> {
        None
    }
}

impl<P: Platform> Kmem<P> {
    /// `kfence_init()`: builds the pool (a vmalloc area), protects its guard pages, fills the
    /// freelist, and opens the gate after one interval. A failure is reported and leaves
    /// KFENCE off.
    pub(crate) fn kfence_init(&self, cfg: KfenceConfig) -> Result<(), KfenceInitError> {
        let r = self.kfence_init_pool(cfg);
        if let Err(e) = r {
            self.report(ReportKind::Info, &|w| writeln!(w, "kfence: failed to allocate pool ({e:?})"));
        }
        r
    }

    fn kfence_init_pool(&self, cfg: KfenceConfig) -> Result<(), KfenceInitError> {
        let nr = cfg.num_objects;
        if nr == 0 || nr > MAX_NUM_OBJECTS {
            return Err(KfenceInitError::BadNumObjects(nr));
        }
        if self.platform().vmalloc_range().is_none() {
            return Err(KfenceInitError::NoVmallocArea);
        }
        let pages = KfencePool::pages(nr);
        let meta_bytes = KfencePool::block_bytes(nr);
        let order = crate::slab::layout::get_order(meta_bytes as u32);
        // Boot runs this (Linux carves the pool from memblock): nothing may sleep, and a
        // platform may boot with interrupts off, so the allocations do not ask to (at boot
        // there is memory enough; a failure leaves KFENCE off, reported).
        let gfp = Gfp::NOWAIT;
        let block = self.alloc_pages(gfp | Gfp::ZERO, Order::of(order)).map_err(|_| KfenceInitError::NoMemory)?;
        let block = self.page_address(block).ok_or(KfenceInitError::NoMemory)?.as_usize();
        let pool = self.vmalloc_at(pages * PAGE_SIZE, PAGE_SIZE, gfp, None, 0, Location::caller()).map_err(|_| {
            // SAFETY: the block was allocated just above and nothing refers to it.
            unsafe { self.free_pages(VirtAddr::new(block), Order::of(order)) };
            KfenceInitError::NoMemory
        })?;
        let start = pool.as_ptr() as usize;
        // SAFETY: a zeroed block of `2^order` pages >= `block_bytes(nr)`, page-aligned,
        // never freed (the pool lives as long as the machine).
        let kp = unsafe { KfencePool::init(block, nr, start, self.platform().now_ns() ^ start as u64) };
        for page in 0..pages {
            let pfn = self.vmalloc_to_pfn((start + page * PAGE_SIZE) as *const u8).ok_or(KfenceInitError::NoMemory)?;
            kp.frame(page).store(pfn.as_usize(), Ordering::Relaxed);
        }
        // Page 0 and every odd page are guards (`kfence_init_pool`).
        for page in (0..pages).filter(|p| p % 2 == 1 || *p == 0) {
            self.kfence_protect(start + page * PAGE_SIZE);
        }
        {
            let g = kp.freelist_lock.lock_irqsave(self.platform());
            for i in 0..nr {
                kp.push_free_locked(i);
            }
            drop(g);
        }
        kp.interval_ms.store(cfg.sample_interval_ms, Ordering::Relaxed);
        kp.next_ns.store(
            self.platform().now_ns().saturating_add(cfg.sample_interval_ms.saturating_mul(1_000_000)),
            Ordering::Relaxed,
        );
        self.state().kfence.pool.store(kp as *const KfencePool as usize, Ordering::Release);
        self.report(ReportKind::Info, &|w| {
            writeln!(
                w,
                "kfence: initialized - using {} bytes for {nr} objects at 0x{start:016x}-0x{:016x}",
                pages * PAGE_SIZE,
                start + pages * PAGE_SIZE
            )
        });
        Ok(())
    }

    /// `kfence_protect()`: unmaps one pool page (and flushes its TLB entry).
    fn kfence_protect(&self, page: usize) {
        let p = self.platform();
        // SAFETY: the page lies in the pool's vmalloc area, which KFENCE alone maps and
        // unmaps after boot; it is a guard page or a freed object's page, which nothing may
        // access any more (an access faults and is reported).
        let flush = unsafe { p.unmap_kernel_pages(VirtAddr::new(page & !(PAGE_SIZE - 1)), 1) };
        p.flush_tlb_kernel_range(flush);
    }

    /// `kfence_unprotect()`: maps one pool page back to its own frame. False if the platform
    /// refused.
    fn kfence_unprotect(&self, pool: &KfencePool, addr: usize) -> bool {
        let page = addr & !(PAGE_SIZE - 1);
        let pfn = Pfn::new(pool.frame((page - pool.start) / PAGE_SIZE).load(Ordering::Relaxed));
        // SAFETY: the page lies in the pool's vmalloc area and is unmapped (protected) or
        // mapped to this same frame (two faults racing: MAP_FIXED replaces it with itself);
        // the frame belongs to the pool's area.
        unsafe { self.platform().map_kernel_pages(VirtAddr::new(page), pfn, 1, PageProt::KERNEL, &mut NoTables) }
            .is_ok()
    }

    /// `kfence_alloc()` on the slab careful path: a pool object for this request if the
    /// sampling gate is open (or an allocation was forced), else `None`. `size` is what the
    /// caller asked for (kmalloc's request, or the cache's object size).
    #[inline]
    pub(crate) fn kfence_alloc(
        &self,
        s: &KmemCache,
        size: usize,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static Location<'static>,
    ) -> Option<usize> {
        if self.state().kfence.pool.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.kfence_alloc_gated(s, size, gfp, node, caller)
    }

    #[inline(never)]
    fn kfence_alloc_gated(
        &self,
        s: &KmemCache,
        size: usize,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static Location<'static>,
    ) -> Option<usize> {
        let pool = self.kfence_pool()?;
        let k = pool;
        let forced = k.forced.load(Ordering::Acquire) > 0;
        let interval = k.interval_ms.load(Ordering::Relaxed);
        let now = self.platform().now_ns();
        let deadline = k.next_ns.load(Ordering::Relaxed);
        if !forced && (interval == 0 || now < deadline) {
            return None;
        }
        // The gate is open: requests KFENCE cannot serve are counted, and leave it open.
        // `SLAB_TYPESAFE_BY_RCU` objects are among them: RCU readers may still read an object
        // of such a cache after its free, which a protected KFENCE page would turn into a
        // false use-after-free (Linux defers `kfence_guarded_free` by a grace period; kmem
        // does not sample these caches).
        let dma = s.flags().intersects(SlabFlags::CACHE_DMA) || gfp.intersects(Gfp::DMA | Gfp::DMA32);
        if size == 0
            || size > PAGE_SIZE
            || dma
            || s.flags().contains(SlabFlags::TYPESAFE_BY_RCU)
            || (node.is_some() && gfp.contains(Gfp::THISNODE) && self.nr_nodes() > 1)
        {
            pool.count(C_SKIP_INCOMPAT, 1);
            return None;
        }
        // Take the gate: one allocation per opening.
        if !super::meta::take_gate(&k.next_ns, &k.forced, now, interval) {
            return None;
        }
        let i = {
            let g = pool.freelist_lock.lock_irqsave(self.platform());
            let i = pool.pop_free_locked();
            drop(g);
            i
        };
        let Some(i) = i else {
            pool.count(C_SKIP_CAPACITY, 1);
            return None;
        };
        Some(self.kfence_guarded_alloc(pool, i, s, size, gfp, caller))
    }

    /// `kfence_guarded_alloc()`: places the object, fills the canary, records the allocation.
    fn kfence_guarded_alloc(
        &self,
        pool: &KfencePool,
        i: usize,
        s: &KmemCache,
        size: usize,
        gfp: Gfp,
        caller: &'static Location<'static>,
    ) -> usize {
        let m = pool.meta(i);
        let page = pool.page_addr(i);
        let align = (s.layout().align as usize).max(1);
        let addr = if pool.coin() { (page + PAGE_SIZE - size) & !(align - 1) } else { page };
        let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
        let now = self.platform().now_ns();
        let g = m.lock.lock_irqsave(self.platform());
        // Unprotect if this page is being reused.
        if m.state() == ObjectState::Freed {
            self.kfence_unprotect(pool, page);
        }
        m.addr.store(addr, Ordering::Relaxed);
        m.size.store(size, Ordering::Relaxed);
        m.cache.store(s as *const KmemCache as usize, Ordering::Release);
        m.alloc.set(caller, pid, cpu, now);
        m.free.caller.store(0, Ordering::Relaxed);
        m.set_state(ObjectState::Allocated);
        drop(g);
        // SAFETY: the page is the object's, mapped (unprotected above or never protected),
        // and ours alone until the pointer is returned.
        unsafe {
            let p = page as *mut u8;
            for off in 0..PAGE_SIZE {
                p.add(off).write(canary(page + off));
            }
            if gfp.contains(Gfp::ZERO) {
                core::ptr::write_bytes(addr as *mut u8, 0, size);
            }
            if let Some(ctor) = s.ctor {
                ctor(core::slice::from_raw_parts_mut(addr as *mut u8, size));
            }
        }
        pool.count(C_ALLOCATED, 1);
        pool.count(C_ALLOCS, 1);
        addr
    }

    /// `kfence_ksize()`: the requested size of a live pool object at `addr`, or `None` for an
    /// address outside the pool. A pointer that starts no live object is 0.
    pub(crate) fn kfence_ksize(&self, addr: usize) -> Option<usize> {
        if !self.is_kfence_address(addr as *const u8) {
            return None;
        }
        let pool = self.kfence_pool()?;
        let m = pool.meta(pool.index_of(addr)?);
        let live = m.state() == ObjectState::Allocated && m.addr.load(Ordering::Relaxed) == addr;
        Some(if live { m.size.load(Ordering::Relaxed) } else { 0 })
    }

    /// The cache of the live pool object at `addr` (`kfence_object_cache`-like), if any.
    pub(crate) fn kfence_object_cache(&self, addr: usize) -> Option<&KmemCache> {
        let pool = self.kfence_pool()?;
        let m = pool.meta(pool.index_of(addr)?);
        if m.state() != ObjectState::Allocated || m.addr.load(Ordering::Relaxed) != addr {
            return None;
        }
        let c = m.cache.load(Ordering::Acquire);
        // SAFETY: a live object's cache is live (`kfence_shutdown_cache` runs before a cache
        // with live objects could be freed, and leaves them zombies).
        (c != 0).then(|| unsafe { &*(c as *const KmemCache) })
    }

    /// `kfence_free()` / `__kfence_free()`: frees a pool address (`kfree`,
    /// `kmem_cache_free`). Anything but a live object's start is an `invalid free` report.
    pub(crate) fn kfence_free(&self, addr: usize, caller: &'static Location<'static>) {
        let Some(pool) = self.kfence_pool() else { return };
        let Some(i) = pool.index_of(addr) else {
            // The pool's first two pages belong to no object.
            pool.count(C_BUGS, 1);
            self.kfence_report(pool, Error::InvalidFree { addr, caller }, None);
            return;
        };
        self.kfence_guarded_free(pool, i, addr, caller, false);
    }

    /// `kfence_guarded_free()`.
    fn kfence_guarded_free(
        &self,
        pool: &KfencePool,
        i: usize,
        addr: usize,
        caller: &'static Location<'static>,
        zombie: bool,
    ) {
        let m = pool.meta(i);
        let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
        let g = m.lock.lock_irqsave(self.platform());
        if m.state() != ObjectState::Allocated || m.addr.load(Ordering::Relaxed) != addr {
            // Invalid or double free: bail out.
            let snap = pool.snapshot(i);
            drop(g);
            pool.count(C_BUGS, 1);
            self.kfence_report(pool, Error::InvalidFree { addr, caller }, Some(&snap));
            return;
        }
        let unprotected = m.unprotected.swap(0, Ordering::Relaxed);
        m.free.set(caller, pid, cpu, self.platform().now_ns());
        m.set_state(ObjectState::Freed);
        if zombie {
            m.cache.store(0, Ordering::Release);
        }
        let snap = pool.snapshot(i);
        drop(g);
        if unprotected != 0 {
            // SAFETY: the guard page was mapped back by an out-of-bounds fault; zero what the
            // bad access may have left, then protect it again.
            unsafe { core::ptr::write_bytes((unprotected & !(PAGE_SIZE - 1)) as *mut u8, 0, PAGE_SIZE) };
            self.kfence_protect(unprotected);
        }
        self.kfence_check_canary(pool, &snap, caller);
        self.kfence_protect(addr);
        if zombie {
            pool.count(C_ZOMBIES, 1);
        } else {
            let g = pool.freelist_lock.lock_irqsave(self.platform());
            pool.push_free_locked(i);
            drop(g);
            pool.count(C_FREES, 1);
        }
        pool.count(C_ALLOCATED, -1);
    }

    /// `check_canary()`: the first damaged byte on each side of the object is reported.
    fn kfence_check_canary(&self, pool: &KfencePool, snap: &Snap, caller: &'static Location<'static>) {
        let page = snap.addr & !(PAGE_SIZE - 1);
        // SAFETY: the object's page is mapped (the object was live until now) and only read.
        let byte = |a: usize| unsafe { (a as *const u8).read_volatile() };
        let left = (page..snap.addr).find(|&a| byte(a) != canary(a));
        let right = (snap.addr + snap.size..page + PAGE_SIZE).find(|&a| byte(a) != canary(a));
        for at in [left, right].into_iter().flatten() {
            let mut shown = [0u8; 16];
            let end = if at < snap.addr { (at + 16).min(snap.addr) } else { (at + 16).min(page + PAGE_SIZE) };
            for (k, a) in (at..end).enumerate() {
                shown[k] = byte(a);
            }
            pool.count(C_BUGS, 1);
            let e = Error::Corruption { addr: at, bytes: shown, len: end - at, caller };
            self.kfence_report(pool, e, Some(snap));
        }
    }

    /// `kfence_handle_page_fault(addr, is_write, regs)`: what a platform's page-fault handler
    /// calls for a kernel address. False if `addr` is not in this machine's pool (the
    /// platform handles the fault as before). Otherwise the access is reported (out of
    /// bounds on a guard page, use after free on a freed object's page, an invalid access
    /// with no object near), the page is mapped back, and true says the access may be
    /// retried. Takes only the object's record lock and makes no allocation; reports go
    /// through the platform's sink.
    pub fn kfence_handle_page_fault(&self, fault: KfenceFault) -> bool {
        let addr = fault.addr;
        if !self.is_kfence_address(addr as *const u8) {
            return false;
        }
        let Some(pool) = self.kfence_pool() else { return false };
        let unprotect = |at: usize| self.kfence_unprotect(pool, at);
        if pool.interval_ms.load(Ordering::Relaxed) == 0 {
            // Disabled at run time: unprotect and proceed.
            return unprotect(addr);
        }
        pool.count(C_BUGS, 1);
        let page_index = (addr - pool.start) / PAGE_SIZE;
        let live = |i: Option<usize>| i.filter(|&i| pool.meta(i).state() == ObjectState::Allocated);
        let oob = page_index % 2 == 1;
        let mut to_report;
        if oob {
            // A guard page: the nearer live object on either side overflowed.
            let left = live(addr.checked_sub(PAGE_SIZE).and_then(|a| pool.index_of(a)));
            let right = live(pool.index_of(addr + PAGE_SIZE));
            let dist_left = left.map(|i| {
                let m = pool.meta(i);
                addr.wrapping_sub(m.addr.load(Ordering::Relaxed) + m.size.load(Ordering::Relaxed))
            });
            to_report = left;
            if let Some(r) = right {
                let d = pool.meta(r).addr.load(Ordering::Relaxed).wrapping_sub(addr);
                if to_report.is_none() || dist_left.is_some_and(|dl| dl > d) {
                    to_report = Some(r);
                }
            }
        } else {
            to_report = pool.index_of(addr);
        }
        match to_report {
            Some(i) => {
                let m = pool.meta(i);
                let g = m.lock.lock_irqsave(self.platform());
                if oob {
                    m.unprotected.store(addr, Ordering::Relaxed);
                }
                let snap = pool.snapshot(i);
                drop(g);
                let e = if oob { Error::Oob { fault } } else { Error::Uaf { fault } };
                self.kfence_report(pool, e, Some(&snap));
            }
            None => self.kfence_report(pool, Error::Invalid { fault }, None),
        }
        unprotect(addr)
    }

    /// `kfence_shutdown_cache()`: the cache is being destroyed. Its live pool objects become
    /// zombies (protected, never reused); its freed ones forget it. Returns the zombies.
    pub(crate) fn kfence_shutdown_cache(&self, s: &KmemCache, caller: &'static Location<'static>) -> usize {
        let Some(pool) = self.kfence_pool() else { return 0 };
        let me = s as *const KmemCache as usize;
        let mut zombies = 0;
        for i in 0..pool.nr {
            let m = pool.meta(i);
            if m.cache.load(Ordering::Acquire) != me {
                continue;
            }
            if m.state() == ObjectState::Allocated {
                zombies += 1;
                self.kfence_guarded_free(pool, i, m.addr.load(Ordering::Relaxed), caller, true);
            }
            let g = m.lock.lock_irqsave(self.platform());
            if m.cache.load(Ordering::Relaxed) == me {
                m.cache.store(0, Ordering::Release);
            }
            drop(g);
        }
        zombies
    }

    /// Counts and emits one KFENCE report.
    fn kfence_report(&self, pool: &KfencePool, e: Error, obj: Option<&Snap>) {
        let ty: ErrorType = e.error_type();
        pool.errors[ty as usize].fetch_add(1, Ordering::Relaxed);
        let now = self.platform().now_ns();
        let (cpu, task) = (self.platform().current_cpu().0, self.platform().current_task());
        self.report(ReportKind::Kfence, &|w| super::report::write_report(w, &e, obj, now, cpu, &task));
    }
}
