//! `vmalloc` and `vfree`: `__vmalloc_node_range` (area, page array, pages, mapping),
//! `vfree`, `vrealloc`, `vmalloc_to_page`, and the helpers vmap and the stacks share.

use core::panic::Location;
use core::ptr::NonNull;

use super::area::{vm_flags, VaRef, VmStruct};
use super::{VmallocError, VmallocErrorKind};
use crate::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page::pg;
use crate::platform::{PageProt, PageTableAlloc, Platform, ReportKind};
use crate::sync::{AtomicUsize, Ordering, SpinGuard};

/// Largest order tried for vmalloc pages before smaller ones (64 pages): one block per 256 KiB
/// of an area means one mapping call per run (an `mmap` on a hosted machine), and the area's
/// pages, freed together, can merge back.
const VM_TRY_ORDER: u32 = 6;

/// What [`Kmem::remove_vm_area`] did.
pub(crate) enum Removed<'a> {
    /// The area stays busy, marked cached: its `VmStruct` (address) goes to a recycle slot.
    Cached(usize),
    /// The area left the busy tree: its `VmStruct`, and whether a purge is due.
    Gone(&'a mut VmStruct, bool),
}

/// What an area is for.
pub(crate) struct AreaReq {
    pub(crate) flags: u32,
    pub(crate) align: usize,
    pub(crate) caller: &'static Location<'static>,
}

/// Page tables for the platform, from this machine's page allocator.
pub(crate) struct TableAlloc<'a, P: Platform> {
    pub(crate) k: &'a Kmem<P>,
    pub(crate) gfp: Gfp,
}

impl<P: Platform> PageTableAlloc for TableAlloc<'_, P> {
    fn alloc_table(&mut self) -> Option<Pfn> {
        let g = (self.gfp & Gfp::RECLAIM_MASK) | Gfp::ZERO;
        let p = self.k.alloc_pages(g, crate::Order::ZERO).ok()?;
        p.page().set(pg::PGTABLE);
        self.k.vm().nr_pagetables.fetch_add(1, Ordering::Relaxed);
        Some(p.pfn())
    }
}

impl<P: Platform> Kmem<P> {
    /// `vmalloc(size)`: `size` bytes of virtually contiguous memory (`GFP_KERNEL`),
    /// page-aligned, with a guard page after it.
    ///
    /// ```
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.vmalloc(3 * 4096 + 1).unwrap();
    /// // SAFETY: 12289 fresh bytes, ours.
    /// unsafe { p.as_ptr().add(12288).write(7) };
    /// assert!(m.is_vmalloc_addr(p.as_ptr()));
    /// // SAFETY: from vmalloc, no longer used.
    /// unsafe { m.vfree(p.as_ptr()) };
    /// ```
    #[track_caller]
    pub fn vmalloc(&self, size: usize) -> Result<NonNull<u8>, VmallocError> {
        self.vmalloc_at(size, 1, Gfp::KERNEL, None, 0, Location::caller())
    }

    /// `vzalloc(size)`: zeroed.
    #[track_caller]
    pub fn vzalloc(&self, size: usize) -> Result<NonNull<u8>, VmallocError> {
        self.vmalloc_at(size, 1, Gfp::KERNEL | Gfp::ZERO, None, 0, Location::caller())
    }

    /// `vmalloc_user(size)`: zeroed, marked `VM_USERMAP` (may be mapped to user space).
    #[track_caller]
    pub fn vmalloc_user(&self, size: usize) -> Result<NonNull<u8>, VmallocError> {
        self.vmalloc_at(size, 1, Gfp::KERNEL | Gfp::ZERO, None, vm_flags::USERMAP, Location::caller())
    }

    /// `vmalloc_node(size, node)`: pages from `node` first (`None`: `NUMA_NO_NODE`).
    #[track_caller]
    pub fn vmalloc_node(&self, size: usize, node: Option<usize>) -> Result<NonNull<u8>, VmallocError> {
        self.vmalloc_at(size, 1, Gfp::KERNEL, node, 0, Location::caller())
    }

    /// `__vmalloc(size, gfp)`. Non-blocking flags (`GFP_ATOMIC`, `GFP_NOWAIT`) never sleep;
    /// a sleeping request from atomic context gets the `might_sleep` report.
    #[track_caller]
    pub fn __vmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, VmallocError> {
        self.vmalloc_at(size, 1, gfp, None, 0, Location::caller())
    }

    /// `__vmalloc_node(size, align, gfp, node, caller)`: with an alignment (a power of two).
    #[track_caller]
    pub fn __vmalloc_node(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        node: Option<usize>,
    ) -> Result<NonNull<u8>, VmallocError> {
        self.vmalloc_at(size, align, gfp, node, 0, Location::caller())
    }

    /// `__vmalloc_node_range()` over the whole vmalloc range.
    pub(crate) fn vmalloc_at(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        node: Option<usize>,
        flags: u32,
        caller: &'static Location<'static>,
    ) -> Result<NonNull<u8>, VmallocError> {
        let err = |kind| VmallocError { size, gfp, kind };
        if size == 0 {
            return Err(err(VmallocErrorKind::ZeroSize));
        }
        self.vmalloc_ready(gfp).map_err(err)?;
        let Some(bytes) = size.checked_next_multiple_of(PAGE_SIZE) else {
            return Err(self.vmalloc_warn(size, gfp, "exceeds total pages", VmallocErrorKind::TooLarge));
        };
        let nr = bytes / PAGE_SIZE;
        if nr > self.totalram_pages() {
            return Err(self.vmalloc_warn(size, gfp, "exceeds total pages", VmallocErrorKind::TooLarge));
        }
        let user_gfp = gfp;
        // init_on_alloc: recycled areas are zeroed as `__GFP_ZERO` asks (fresh pages are
        // zeroed by the page allocator).
        let gfp = self.page_alloc_gfp(self.vm_might_alloc(gfp));
        if align <= PAGE_SIZE && node.is_none() {
            if let Some(p) = self.recycle_take(nr, size, gfp, vm_flags::ALLOC | flags) {
                return Ok(p);
            }
        }
        let req = AreaReq { flags: vm_flags::ALLOC | flags, align: align.max(PAGE_SIZE), caller };
        let (va, vm) = match self.get_vm_area(bytes, &req, gfp) {
            Ok(x) => x,
            Err(VmallocErrorKind::BadAlign) => return Err(err(VmallocErrorKind::BadAlign)),
            Err(k) => return Err(self.vmalloc_warn(size, user_gfp, "vm_struct allocation failed", k)),
        };
        // The page array: kmalloc'ed up to a page, vmalloc'ed above (`vpages`).
        let arr_bytes = nr * core::mem::size_of::<Pfn>();
        let nested = (gfp & Gfp::RECLAIM_MASK) | Gfp::NOWARN;
        let arr = if arr_bytes <= PAGE_SIZE {
            self.kmalloc_node_at(arr_bytes, nested, node, caller).ok()
        } else {
            vm.flags |= vm_flags::VPAGES;
            self.vmalloc_at(arr_bytes, 1, nested, node, 0, caller).ok()
        };
        let Some(arr) = arr else {
            self.release_unpublished(va, vm);
            return Err(self.vmalloc_warn(size, user_gfp, "failed to allocate page array", VmallocErrorKind::NoMemory));
        };
        vm.pages = arr.as_ptr().cast::<Pfn>();
        vm.zone_gfp = (gfp & Gfp::ZONEMASK).bits();
        let mut got = self.vm_area_alloc_pages(vm, nr, gfp, node);
        if got.is_err() && self.recycle_drain() {
            got = self.vm_area_alloc_pages(vm, nr, gfp, node);
        }
        if got.is_err() {
            self.free_vm_pages(vm);
            self.release_unpublished(va, vm);
            let what = "page order 0, failed to allocate pages";
            return Err(self.vmalloc_warn(size, user_gfp, what, VmallocErrorKind::NoMemory));
        }
        if let Err(e) = self.map_vm(vm, PageProt::KERNEL, gfp) {
            self.free_vm_pages(vm);
            self.release_unpublished(va, vm);
            return Err(self.vmalloc_warn(size, user_gfp, "failed to map pages", VmallocErrorKind::Map(e)));
        }
        vm.requested.store(size, Ordering::Relaxed);
        self.vm().nr_pages.fetch_add(nr, Ordering::Relaxed);
        va.set_vm(Some(vm));
        Ok(NonNull::new(vm.addr as *mut u8).expect("vmalloc addresses are never null"))
    }

    /// `__get_vm_area_node()`: a busy area of `bytes` (plus the guard page unless
    /// `VM_NO_GUARD`) and its `VmStruct`, not yet published.
    // The VmStruct is fresh kmalloc memory the caller owns until it publishes it, not a part
    // of `self`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn get_vm_area(
        &self,
        bytes: usize,
        req: &AreaReq,
        gfp: Gfp,
    ) -> Result<(VaRef<'_>, &mut VmStruct), VmallocErrorKind> {
        let v = self.vm();
        let range = v.end.load(Ordering::Relaxed) - v.start.load(Ordering::Relaxed);
        if !req.align.is_power_of_two() || req.align > range {
            return Err(VmallocErrorKind::BadAlign);
        }
        let guard = if req.flags & (vm_flags::NO_GUARD | vm_flags::MAP_RAM) != 0 { 0 } else { PAGE_SIZE };
        let size = bytes.checked_add(guard).ok_or(VmallocErrorKind::NoSpace)?;
        if size > range {
            return Err(VmallocErrorKind::NoSpace);
        }
        let nested = (gfp & Gfp::RECLAIM_MASK) | Gfp::NOWARN;
        let p = self
            .kmalloc_node_at(core::mem::size_of::<VmStruct>(), nested, None, req.caller)
            .map_err(|_| VmallocErrorKind::NoMemory)?;
        let va = match self.alloc_vmap_area(size, req.align, gfp) {
            Ok(va) => va,
            Err(e) => {
                // SAFETY: the fresh kmalloc block above, unused.
                unsafe { self.kfree(p.as_ptr()) };
                return Err(e);
            }
        };
        let vm = p.as_ptr().cast::<VmStruct>();
        // SAFETY: a fresh kmalloc block of VmStruct's size (kmalloc aligns to at least 8, all
        // VmStruct needs), ours until published with `set_vm`.
        let vm = unsafe {
            vm.write(VmStruct {
                addr: va.start(),
                size,
                flags: req.flags,
                nr_pages: 0,
                pages: core::ptr::null_mut(),
                caller: req.caller,
                requested: AtomicUsize::new(bytes),
                zone_gfp: 0,
                cached: crate::sync::AtomicU32::new(0),
            });
            &mut *vm
        };
        Ok((va, vm))
    }

    /// Undoes `get_vm_area` for an area that was never published.
    /// A partly mapped area goes through the lazy purge like any freed one.
    pub(crate) fn release_unpublished(&self, va: VaRef<'_>, vm: &mut VmStruct) {
        self.free_page_array(vm);
        self.abort_vmap_area(va);
        // SAFETY: the kmalloc'ed VmStruct of an area nobody else saw.
        unsafe { self.kfree((vm as *mut VmStruct).cast::<u8>()) };
    }

    fn free_page_array(&self, vm: &mut VmStruct) {
        let arr = core::mem::replace(&mut vm.pages, core::ptr::null_mut());
        if arr.is_null() {
            return;
        }
        if vm.flags & vm_flags::VPAGES != 0 {
            self.vfree_area(arr as usize);
        } else {
            // SAFETY: the page array was kmalloc'ed for this area alone.
            unsafe { self.kfree(arr.cast::<u8>()) };
        }
    }

    /// `vm_area_alloc_pages()`: fills the page array, trying orders up to 6 without reclaim
    /// first and splitting them. `Err` when not even a single page could be had. The pages
    /// may be HighMem unless DMA zones were asked for (`__vmalloc_area_node` adds
    /// `__GFP_HIGHMEM`; only on machines with a HighMem zone, where Linux's 64-bit
    /// `OPT_ZONE_HIGHMEM` is Normal anyway): they are reached through the area's mapping.
    fn vm_area_alloc_pages(&self, vm: &mut VmStruct, nr: usize, gfp: Gfp, node: Option<usize>) -> Result<(), ()> {
        let nid = node.filter(|&n| self.node(n).is_some()).unwrap_or_else(|| self.numa_node_id());
        let mut g = gfp.without(Gfp::COMP);
        if self.highmem().is_some() && !g.intersects(Gfp::DMA | Gfp::DMA32) {
            g |= Gfp::HIGHMEM;
        }
        while vm.nr_pages < nr {
            let left = nr - vm.nr_pages;
            let mut order = (usize::BITS - 1 - left.leading_zeros()).min(VM_TRY_ORDER);
            let page = loop {
                let try_gfp = if order > 0 { g | Gfp::NORETRY | Gfp::NOWARN } else { g | Gfp::NOWARN };
                match self.alloc_pages_checked(try_gfp, order, nid, false) {
                    Ok(p) => break p,
                    Err(_) if order > 0 => order -= 1,
                    Err(_) => return Err(()),
                }
            };
            if order > 0 {
                // SAFETY: a fresh non-compound block of `order`, ours.
                unsafe { self.split_page(page, crate::Order::of(order)) };
            }
            for i in 0..1usize << order {
                let pfn = page.pfn().add(i);
                self.memmap().pfn_to_page(pfn).set(pg::VMALLOC);
                // SAFETY: the array has room for `nr` entries and `vm.nr_pages < nr`.
                unsafe { vm.pages.add(vm.nr_pages).write(pfn) };
                vm.nr_pages += 1;
            }
        }
        Ok(())
    }

    /// Frees the pages of a vmalloc'ed area (`VM_ALLOC`) and its page array.
    pub(crate) fn free_vm_pages(&self, vm: &mut VmStruct) {
        if vm.flags & vm_flags::ALLOC != 0 {
            for &pfn in vm.pages() {
                let page = self.pfn_to_page(pfn).expect("vmalloc pages have descriptors");
                page.page().clear(pg::VMALLOC);
                // SAFETY: the area owned this order-0 page, and its mapping is gone from
                // every user (the area left the busy tree or was never published).
                unsafe { self.__free_pages(page, crate::Order::ZERO) };
            }
        }
        vm.nr_pages = 0;
        self.free_page_array(vm);
    }

    /// `vmap_pages_range()`: maps the page array, one platform call per physically
    /// contiguous run.
    pub(crate) fn map_vm(&self, vm: &VmStruct, prot: PageProt, gfp: Gfp) -> Result<(), crate::platform::MapError> {
        let pages = vm.pages();
        let mut tables = TableAlloc { k: self, gfp };
        let mut i = 0;
        while i < pages.len() {
            let mut n = 1;
            while i + n < pages.len() && pages[i + n].as_usize() == pages[i].as_usize() + n {
                n += 1;
            }
            // SAFETY: `[addr + i pages, + n pages)` is inside this unpublished busy area of the
            // vmalloc range, unmapped (areas are reused only after their purge unmapped them),
            // and the frames are RAM of this machine (from its page allocator or the caller's
            // pages for vmap).
            unsafe {
                self.platform().map_kernel_pages(VirtAddr::new(vm.addr + i * PAGE_SIZE), pages[i], n, prot, &mut tables)
            }?;
            i += n;
        }
        Ok(())
    }

    /// `might_alloc()` for the vmalloc layer: a sleeping request from atomic context is
    /// reported once, then served without sleeping (its nested allocations lose
    /// `__GFP_DIRECT_RECLAIM`, so they neither sleep nor report again).
    pub(crate) fn vm_might_alloc(&self, gfp: Gfp) -> Gfp {
        if gfp.allows_blocking() && self.platform().atomic_context() {
            self.might_sleep_report("mm/vmalloc.c");
            return gfp.without(Gfp::DIRECT_RECLAIM);
        }
        gfp
    }

    /// The `vmalloc error: size N, <what>` report (`warn_alloc`), unless `__GFP_NOWARN`.
    #[cold]
    pub(crate) fn vmalloc_warn(&self, size: usize, gfp: Gfp, what: &str, kind: VmallocErrorKind) -> VmallocError {
        if !gfp.contains(Gfp::NOWARN) {
            let p = self.platform();
            let (cpu, task) = (p.current_cpu().0, p.current_task());
            self.report(ReportKind::PageAllocFailure, &|w| {
                writeln!(
                    w,
                    "{}: vmalloc error: size {size}, {what}, mode:{:#x}({:#}), nodemask=(null)",
                    task.comm(),
                    gfp.bits(),
                    gfp
                )?;
                writeln!(w, "CPU: {cpu} PID: {} Comm: {}", task.pid, task.comm())
            });
        }
        VmallocError { size, gfp, kind }
    }

    /// A `WARN()` from mm/vmalloc.c.
    #[cold]
    pub(crate) fn vm_warn(&self, func: &str, msg: &str, addr: usize) {
        let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
        self.report(ReportKind::Warning, &|w| {
            writeln!(w, "WARNING: CPU: {cpu} PID: {pid} at mm/vmalloc.c {func}: {msg} ({addr:#x})")
        });
    }

    /// The busy area starting at `addr` and its `VmStruct` (`g` holds the vmap lock;
    /// unpublished areas have none).
    pub(crate) fn busy_vm_at(&self, g: &SpinGuard<'_, P>, addr: usize) -> Option<(VaRef<'_>, &VmStruct)> {
        debug_assert!(g.holds(&self.vm().lock));
        let va = self.vm().busy.find(addr).filter(|va| va.start() == addr)?;
        Some((va, va.vm()?))
    }

    /// Unlinks the busy area starting at `addr` whose flags match `want` (any of them), in
    /// recycle state `cached` (0 live, 1 in a recycle slot), and moves it to the lazy tree;
    /// or, with `recycle` and an area the recycle cache takes, marks it cached instead (one
    /// lookup under one lock either way).
    // A removed VmStruct became the caller's alone when its area left the busy tree.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn remove_vm_area(&self, addr: usize, want: u32, cached: u32, recycle: bool) -> Option<Removed<'_>> {
        let v = self.vm();
        if v.init.load(Ordering::Acquire) != super::INIT_READY {
            return None;
        }
        let g = v.lock.lock_irqsave(self.platform());
        let (va, vm) = self.busy_vm_at(&g, addr)?;
        if vm.flags & want == 0 || vm.cached.load(Ordering::Relaxed) != cached {
            return None;
        }
        if recycle && self.recyclable(vm) {
            vm.cached.store(1, Ordering::Relaxed);
            v.nr_recycled.fetch_add(1, Ordering::Relaxed);
            return Some(Removed::Cached(vm as *const VmStruct as usize));
        }
        v.busy.remove(addr);
        // SAFETY: the area just left the busy tree under the lock.
        let vm = unsafe { va.take_vm() }.expect("checked above");
        let over = self.lazy_insert_locked(&g, va);
        Some(Removed::Gone(vm, over))
    }

    /// `vfree(addr)`: frees a vmalloc'ed area (null: nothing). A non-vmalloc address, an
    /// unaligned one, or a second `vfree` gets Linux's warning and changes nothing. From
    /// interrupt context it frees at once (Linux defers to `vfree_atomic`; kmem's path
    /// never sleeps); elsewhere in atomic context the `might_sleep` report is made.
    ///
    /// # Safety
    ///
    /// `addr` came from this machine's vmalloc family and is not used afterwards. (A stale
    /// address whose range was purged and reused by a new area frees that area.)
    #[track_caller]
    pub unsafe fn vfree(&self, addr: *const u8) {
        if addr.is_null() {
            return;
        }
        let p = self.platform();
        if !p.in_interrupt() && p.atomic_context() {
            self.might_sleep_report("mm/vmalloc.c");
        }
        let a = addr as usize;
        if a % PAGE_SIZE != 0 {
            self.vm_warn("vfree", "Trying to vfree() bad address", a);
            return;
        }
        self.vfree_area(a);
    }

    /// `vfree` after its context checks.
    fn vfree_area(&self, a: usize) {
        // init_on_free (`mm/meminit.rs`): the pages go back to the page allocator, which
        // zeroes them, instead of waiting mapped in a recycle slot.
        match self.remove_vm_area(a, vm_flags::ALLOC | vm_flags::MAP, 0, !self.want_init_on_free()) {
            Some(Removed::Cached(vm)) => self.recycle_put(vm),
            Some(Removed::Gone(vm, over)) => self.vfree_removed(vm, over),
            None => self.vm_warn("vfree", "Trying to vfree() nonexistent vm area", a),
        }
    }

    /// Really frees a cached area (evicted from a recycle slot).
    pub(crate) fn vfree_cached(&self, a: usize) {
        if let Some(Removed::Gone(vm, over)) = self.remove_vm_area(a, vm_flags::ALLOC, 1, false) {
            self.vfree_removed(vm, over);
        }
    }

    fn vfree_removed(&self, vm: &mut VmStruct, over: bool) {
        if vm.flags & vm_flags::ALLOC != 0 {
            self.vm().nr_pages.fetch_sub(vm.nr_pages, Ordering::Relaxed);
        }
        self.free_vm_pages(vm);
        // SAFETY: the kmalloc'ed VmStruct of an area we just removed.
        unsafe { self.kfree((vm as *mut VmStruct).cast::<u8>()) };
        if over {
            self.try_purge_vmap_area_lazy();
        }
    }

    /// `vrealloc(p, size, gfp)`: resizes a vmalloc'ed block. In place while the area's pages
    /// hold `size` (a shrink zeroes what it drops with `__GFP_ZERO`; a growth zeroes the new
    /// part with `__GFP_ZERO`); otherwise a new area, the old contents copied, the old freed.
    /// Null `p` is `__vmalloc`; size 0 frees and returns `Ok(None)`.
    ///
    /// # Safety
    ///
    /// `p` is null or a live block of this machine's vmalloc family, not used afterwards
    /// unless the same address is returned.
    #[track_caller]
    pub unsafe fn vrealloc(&self, p: *mut u8, size: usize, gfp: Gfp) -> Result<Option<NonNull<u8>>, VmallocError> {
        let caller = Location::caller();
        if p.is_null() {
            return self.vmalloc_at(size, 1, gfp, None, 0, caller).map(Some);
        }
        if size == 0 {
            // SAFETY: the caller's contract.
            unsafe { self.vfree(p) };
            return Ok(None);
        }
        let Some((cap, old)) = self.vm_resize_in_place(p as usize, size) else {
            self.vm_warn("vrealloc", "Trying to vrealloc() nonexistent vm area", p as usize);
            return Err(VmallocError { size, gfp, kind: VmallocErrorKind::NotFound });
        };
        if size <= cap {
            if gfp.contains(Gfp::ZERO) {
                let (lo, hi) = (size.min(old), size.max(old));
                // SAFETY: `[lo, hi)` lies inside the area's mapped pages (`hi <= cap`), which
                // the caller owns.
                unsafe { core::ptr::write_bytes(p.add(lo), 0, hi - lo) };
            }
            return Ok(NonNull::new(p));
        }
        let n = self.vmalloc_at(size, 1, gfp, None, 0, caller)?;
        // SAFETY: both blocks are live and distinct; `old <= cap < size` bytes fit in both.
        unsafe {
            core::ptr::copy_nonoverlapping(p, n.as_ptr(), old);
            self.vfree(p);
        }
        Ok(Some(n))
    }

    /// (mapped bytes, requested bytes) of the live vmalloc'ed area starting at `addr`; if
    /// `size` fits the mapped bytes, it becomes the requested size (in the same lock section).
    fn vm_resize_in_place(&self, addr: usize, size: usize) -> Option<(usize, usize)> {
        let v = self.vm();
        if v.init.load(Ordering::Acquire) != super::INIT_READY {
            return None;
        }
        let g = v.lock.lock_irqsave(self.platform());
        let (_, vm) = self.busy_vm_at(&g, addr)?;
        if vm.flags & vm_flags::ALLOC == 0 || vm.cached.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let (cap, old) = (vm.mapped_size(), vm.requested.load(Ordering::Relaxed));
        if size <= cap {
            vm.requested.store(size, Ordering::Relaxed);
        }
        Some((cap, old))
    }

    /// `vmalloc_to_pfn(addr)`: the frame mapped at a vmalloc address (`None` outside a busy
    /// area's mapped pages).
    pub fn vmalloc_to_pfn(&self, addr: *const u8) -> Option<Pfn> {
        let v = self.vm();
        if !self.is_vmalloc_addr(addr) || v.init.load(Ordering::Acquire) != super::INIT_READY {
            return None;
        }
        let a = addr as usize;
        let _g = v.lock.lock_irqsave(self.platform());
        let va = v.busy.find(a)?;
        let vm = va.vm().filter(|vm| vm.cached.load(Ordering::Relaxed) == 0)?;
        vm.pages().get((a - va.start()) / PAGE_SIZE).copied()
    }

    /// `vmalloc_to_page(addr)`.
    pub fn vmalloc_to_page(&self, addr: *const u8) -> Option<crate::PageRef<'_>> {
        self.pfn_to_page(self.vmalloc_to_pfn(addr)?)
    }
}
