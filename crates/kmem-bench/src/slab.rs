//! Slab workloads: kmem's `kmem_cache_alloc`/`kmem_cache_free` against two peers, on the same
//! object size, side by side in one run (the `slab` bench and the `slab_cost` example).
//!
//! - [`ObjectAllocator`]: "objects of one fixed size", implemented by
//!   - [`KmemObjects`]: a kmem cache (`kmem_cache_create(name, size, 0, SLAB_NO_MERGE)`) on a
//!     hosted machine; also [`KmemObjects::alloc_bulk`]/[`KmemObjects::free_bulk`]
//!     (`kmem_cache_alloc_bulk`/`kmem_cache_free_bulk`);
//!   - [`SlabmallocObjects`]: one `slabmalloc::SCAllocator` (gz's `no_std` slab allocator, the
//!     per-size-class part of its `ZoneAllocator`) fed 4 KiB pages from one aligned, pre-faulted
//!     std allocation; single-threaded ([`LockedSlabmalloc`] puts it behind a `Mutex` for the
//!     cross-thread workload);
//!   - [`Mimalloc`]: `mi_malloc(size)` / `mi_free` (`libmimalloc-sys`, called directly; the
//!     bench binaries keep the system allocator as their global allocator).
//! - Workloads: [`pair`] (one hot alloc + free), [`alloc_n_free_n`] (n allocations, then n
//!   frees in allocation order), [`remote_free`] (a producer thread allocates, a consumer
//!   thread frees, objects crossing in batches through a ring), and [`ColourTouch`] (many live
//!   objects, first 8 bytes of each touched in a loop: what cache colouring is for).
//!
//! ```
//! use kmem_bench::slab::{alloc_n_free_n, pair, slab_machine, KmemObjects, Mimalloc, SlabmallocObjects};
//!
//! let m = slab_machine(1);
//! let kmem = KmemObjects::new(&m, "doc-64", 64, kmem::SlabFlags::NONE);
//! let sm = SlabmallocObjects::new(64, 64);
//! let mi = Mimalloc::new(64);
//! let mut slots = vec![None; 100];
//! pair(&kmem);
//! pair(&sm);
//! pair(&mi);
//! alloc_n_free_n(&kmem, &mut slots);
//! alloc_n_free_n(&sm, &mut slots);
//! alloc_n_free_n(&mi, &mut slots);
//! kmem.alloc_bulk(&mut slots);
//! // SAFETY: the objects were just allocated from this cache and are unused.
//! unsafe { kmem.free_bulk(&mut slots) };
//! assert!(slots.iter().all(Option::is_none));
//! kmem.assert_no_reports();
//! ```
//!
//! ## Notes and limits
//!
//! - kmem's fast paths run on the hosted platform: finding the current CPU is a thread-local
//!   access, as `this_cpu_ptr` is a segment-relative load in a kernel. No critical section is
//!   entered on the fast path (the CPU word's tid makes it safe without one, as in SLUB).
//! - slabmalloc's `SCAllocator` needs `&mut` for allocation and has no cross-thread free path
//!   of its own (its `ZoneAllocator` is wrapped in a lock by its users); here it is called
//!   without any lock except in [`LockedSlabmalloc`]. It finds free objects with a first-fit
//!   bitmap search and does not move pages between its lists on free; when it reports out of
//!   memory, [`SlabmallocObjects`] first lets it rebalance its lists
//!   (`try_reclaim_pages(0, ..)`), then refills it with a fresh page.
//! - mimalloc is a general-purpose malloc with size classes; 64 and 256 bytes are exact size
//!   classes, so it hands out the same object sizes.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use kmem::{Cache, Gfp, SlabFlags};
use kmem_hosted::{HostedPlatform, Machine, MachineBuilder};
use slabmalloc::{AllocablePage, ObjectPage, SCAllocator};

use crate::handoff::{handoff, Side};
use crate::BENCH_RAM_MIB;

/// An allocator of objects of one fixed size (a slab cache, or malloc of one size).
pub trait ObjectAllocator {
    /// Bytes of each object.
    fn size(&self) -> usize;

    /// Allocates an object.
    ///
    /// # Panics
    ///
    /// When out of memory: the workloads are sized to fit.
    fn alloc(&self) -> NonNull<u8>;

    /// Frees an object.
    ///
    /// # Safety
    ///
    /// `obj` must come from `self.alloc()`, must not have been freed since, and must not be
    /// used afterwards.
    unsafe fn free(&self, obj: NonNull<u8>);
}

/// A booted hosted machine for the slab benchmarks: `cpus` CPUs, [`BENCH_RAM_MIB`] MiB.
///
/// # Panics
///
/// If it does not boot.
pub fn slab_machine(cpus: usize) -> Machine {
    crate::kfence_from_env(MachineBuilder::new().ram_mib(BENCH_RAM_MIB).thread_cpus(cpus))
        .build()
        .expect("kmem machine boots")
}

/// A kmem slab cache of one object size.
#[derive(Debug)]
pub struct KmemObjects<'m> {
    machine: &'m Machine,
    cache: Cache<'m, HostedPlatform>,
}

impl<'m> KmemObjects<'m> {
    /// `kmem_cache_create(name, size, 0, flags | SLAB_NO_MERGE, NULL)` on `machine`.
    ///
    /// # Panics
    ///
    /// If the cache cannot be created.
    pub fn new(machine: &'m Machine, name: &str, size: usize, flags: SlabFlags) -> Self {
        let cache = machine.kmem_cache_create(name, size, 0, flags | SlabFlags::NO_MERGE, None).expect("cache created");
        Self { machine, cache }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache<'m, HostedPlatform> {
        &self.cache
    }

    /// `kmem_cache_alloc_bulk(s, GFP_KERNEL, out.len(), out)`: fills every slot.
    ///
    /// # Panics
    ///
    /// If the allocation fails.
    #[inline]
    pub fn alloc_bulk(&self, out: &mut [Option<NonNull<u8>>]) {
        let n = self.machine.kmem_cache_alloc_bulk(&self.cache, Gfp::KERNEL, out);
        assert_eq!(n, out.len(), "kmem_cache_alloc_bulk failed");
    }

    /// `kmem_cache_free_bulk(s, objs.len(), objs)`: frees every `Some` slot and empties it.
    ///
    /// # Safety
    ///
    /// Every `Some` slot must hold an object of this cache, owned by the caller and unused
    /// from now on.
    #[inline]
    pub unsafe fn free_bulk(&self, objs: &mut [Option<NonNull<u8>>]) {
        // SAFETY: forwarded caller contract.
        unsafe { self.machine.kmem_cache_free_bulk(&self.cache, objs) };
    }

    /// Checks that kmem made no report (bad free, warning, failed allocation) so far;
    /// informational messages (KFENCE's `kfence: initialized`) do not count.
    ///
    /// # Panics
    ///
    /// With the text of a report if there was one.
    pub fn assert_no_reports(&self) {
        for kind in kmem::ReportKind::ALL.into_iter().filter(|&k| k != kmem::ReportKind::Info) {
            if let Some(r) = self.machine.reports().texts(kind).pop() {
                panic!("kmem reported during the benchmark:\n{r}");
            }
        }
    }
}

impl ObjectAllocator for KmemObjects<'_> {
    fn size(&self) -> usize {
        self.cache.object_size()
    }

    #[inline(always)]
    fn alloc(&self) -> NonNull<u8> {
        self.cache.alloc(Gfp::KERNEL).expect("kmem_cache_alloc")
    }

    #[inline(always)]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: the caller owns `obj`, an object of this cache, unused from now on.
        unsafe { self.cache.free(obj) }
    }
}

/// slabmalloc's page type: 4 KiB, its bitmap and list links in its last 80 bytes.
type SmPage = ObjectPage<'static>;

struct SmInner {
    sc: SCAllocator<'static, SmPage>,
    /// Pages handed to `sc` so far.
    used: usize,
}

/// One `slabmalloc::SCAllocator` of one object size, fed 4 KiB pages from a private region.
/// Single-threaded (`!Sync`).
pub struct SlabmallocObjects {
    inner: UnsafeCell<SmInner>,
    layout: std::alloc::Layout,
    region: NonNull<u8>,
    region_layout: std::alloc::Layout,
    pages: usize,
}

impl std::fmt::Debug for SlabmallocObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlabmallocObjects").field("size", &self.layout.size()).field("pages", &self.pages).finish()
    }
}

// SAFETY: the allocator and its pages are owned by this value alone (the region is private
// and freed only in `drop`); moving it to another thread moves all of its state with it.
unsafe impl Send for SlabmallocObjects {}

impl SlabmallocObjects {
    /// An allocator of `size`-byte objects (8-byte aligned) over a pre-faulted region of
    /// `pages` 4 KiB pages, handed to it one at a time as it runs out.
    ///
    /// # Panics
    ///
    /// If `size` is 0 or does not fit a slabmalloc page, or `pages` is 0.
    pub fn new(size: usize, pages: usize) -> Self {
        assert!(size > 0 && size <= SmPage::SIZE - 80 && pages > 0, "slabmalloc serves 1..=4016 bytes");
        let region_layout = std::alloc::Layout::from_size_align(pages * SmPage::SIZE, SmPage::SIZE).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(region_layout) };
        let Some(region) = NonNull::new(raw) else { std::alloc::handle_alloc_error(region_layout) };
        // SAFETY: a fresh allocation of `region_layout.size()` bytes, ours alone; writing it
        // faults every page in now rather than during measurement.
        unsafe { std::ptr::write_bytes(region.as_ptr(), 0, region_layout.size()) };
        Self {
            inner: UnsafeCell::new(SmInner { sc: SCAllocator::new(size), used: 0 }),
            layout: std::alloc::Layout::from_size_align(size, 8).expect("layout"),
            region,
            region_layout,
            pages,
        }
    }

    /// Pages handed to slabmalloc so far.
    pub fn pages_used(&self) -> usize {
        // SAFETY: `!Sync` and no method of ours holds a reference to `inner` across a call.
        unsafe { (*self.inner.get()).used }
    }

    /// The out-of-memory path: rebalance the lists and retry, else a fresh page.
    #[cold]
    fn alloc_slow(&self, inner: &mut SmInner) -> NonNull<u8> {
        // Moves pages that frees emptied back to the lists allocation searches (slabmalloc's
        // free does not), reclaiming none.
        inner.sc.try_reclaim_pages(0, &mut |_| {});
        if let Ok(p) = inner.sc.allocate(self.layout) {
            return p;
        }
        assert!(inner.used < self.pages, "slabmalloc region of {} pages exhausted", self.pages);
        let page = self.region.as_ptr().wrapping_add(inner.used * SmPage::SIZE).cast::<SmPage>();
        inner.used += 1;
        // SAFETY: `page` is a 4 KiB-aligned, zeroed (valid for every field of ObjectPage: bytes,
        // null links, atomics) page of our region that was never handed out before; it lives
        // until `drop`, after which `sc` is never used, so the 'static borrow is never outlived
        // in practice.
        unsafe { inner.sc.refill(&mut *page) };
        inner.sc.allocate(self.layout).expect("a fresh page serves an object")
    }
}

impl ObjectAllocator for SlabmallocObjects {
    fn size(&self) -> usize {
        self.layout.size()
    }

    #[inline]
    fn alloc(&self) -> NonNull<u8> {
        // SAFETY: `!Sync`, and no reference to `inner` outlives a call of ours (none calls
        // another while holding it), so this is the only one.
        let inner = unsafe { &mut *self.inner.get() };
        match inner.sc.allocate(self.layout) {
            Ok(p) => p,
            Err(_) => self.alloc_slow(inner),
        }
    }

    #[inline]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: as in `alloc`.
        let inner = unsafe { &*self.inner.get() };
        inner.sc.deallocate(obj, self.layout).expect("slabmalloc deallocate");
    }
}

impl Drop for SlabmallocObjects {
    fn drop(&mut self) {
        // SAFETY: the region was allocated in `new` with `region_layout`; `sc` (dropped with
        // `self`, no drop code of its own) is not used again.
        unsafe { std::alloc::dealloc(self.region.as_ptr(), self.region_layout) };
    }
}

/// [`SlabmallocObjects`] behind a `Mutex`, so that threads can share it (slabmalloc's
/// `SCAllocator` needs `&mut` and has no synchronisation of its own).
#[derive(Debug)]
pub struct LockedSlabmalloc(Mutex<SlabmallocObjects>);

impl LockedSlabmalloc {
    /// As [`SlabmallocObjects::new`].
    pub fn new(size: usize, pages: usize) -> Self {
        Self(Mutex::new(SlabmallocObjects::new(size, pages)))
    }
}

impl ObjectAllocator for LockedSlabmalloc {
    fn size(&self) -> usize {
        self.0.lock().expect("lock").size()
    }

    #[inline]
    fn alloc(&self) -> NonNull<u8> {
        self.0.lock().expect("lock").alloc()
    }

    #[inline]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.lock().expect("lock").free(obj) }
    }
}

/// mimalloc's `mi_malloc(size)` / `mi_free`, called directly.
#[derive(Clone, Copy, Debug)]
pub struct Mimalloc {
    size: usize,
}

impl Mimalloc {
    /// Allocations of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self { size }
    }
}

impl ObjectAllocator for Mimalloc {
    fn size(&self) -> usize {
        self.size
    }

    #[inline]
    fn alloc(&self) -> NonNull<u8> {
        // SAFETY: mi_malloc may be called with any size from any thread.
        let p = unsafe { libmimalloc_sys::mi_malloc(self.size) };
        NonNull::new(p.cast()).expect("mi_malloc")
    }

    #[inline]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: `obj` came from mi_malloc and is freed once (caller's contract); mi_free
        // accepts frees from any thread.
        unsafe { libmimalloc_sys::mi_free(obj.as_ptr().cast()) }
    }
}

/// One allocation and its free, back to back: the hot LIFO path.
#[inline]
pub fn pair<A: ObjectAllocator + ?Sized>(a: &A) {
    let p = a.alloc();
    // SAFETY: `p` was just allocated and is never used.
    unsafe { a.free(black_box(p)) };
}

/// Allocates an object into every slot, then frees them in the same order (emptying the
/// slots).
#[inline]
pub fn alloc_n_free_n<A: ObjectAllocator + ?Sized>(a: &A, slots: &mut [Option<NonNull<u8>>]) {
    for s in slots.iter_mut() {
        *s = Some(a.alloc());
    }
    black_box(&mut *slots);
    for s in slots.iter_mut() {
        if let Some(p) = s.take() {
            // SAFETY: `p` was allocated by `a` just above and is freed once.
            unsafe { a.free(p) };
        }
    }
}

/// [`alloc_n_free_n`] with `kmem_cache_alloc_bulk` / `kmem_cache_free_bulk`.
#[inline]
pub fn bulk_n_free_n(k: &KmemObjects<'_>, slots: &mut [Option<NonNull<u8>>]) {
    k.alloc_bulk(slots);
    black_box(&mut *slots);
    // SAFETY: the slots hold objects just allocated from `k`, unused.
    unsafe { k.free_bulk(slots) };
}

/// Cross-thread frees: a producer thread allocates `objects` objects and passes them, in
/// batches of `batch`, through a 1024-slot ring ([`handoff`]) to a consumer thread that frees them. Returns
/// the time from the producer's first allocation to the consumer's last free.
///
/// Each thread is pinned to its kmem CPU (`kmem_hosted::pin_current_thread`, harmless for
/// the other allocators) and, where possible, to the host CPU of the same number modulo the
/// host's CPUs: producer on `cpus.0`, consumer on `cpus.1`.
///
/// # Panics
///
/// If `batch` is 0 or above 1024, or an allocation fails.
pub fn remote_free<A: ObjectAllocator + Sync + ?Sized>(
    a: &A,
    objects: u64,
    batch: usize,
    cpus: (usize, usize),
) -> Duration {
    let side = |c: usize| Side { host_cpu: Some(c), kmem_cpu: Some(c as u32) };
    handoff(
        objects as usize,
        batch,
        (side(cpus.0), side(cpus.1)),
        || pair(a), // warm: the CPU's active slab, the thread's heap
        || a.alloc().as_ptr() as usize,
        // SAFETY: `handoff` passes each object `a.alloc()` returned exactly once, after the
        // producer published it; nothing else uses it.
        |p| unsafe { a.free(NonNull::new_unchecked(p as *mut u8)) },
    )
}

/// Live objects whose first 8 bytes are read and written in a loop: the access pattern cache
/// colouring is for (the first words of many objects of many slabs, which without colouring
/// sit at the same few offsets of every slab and so in the same few cache sets).
#[derive(Debug)]
pub struct ColourTouch<'a, 'm> {
    k: &'a KmemObjects<'m>,
    objs: Vec<NonNull<u8>>,
}

impl<'a, 'm> ColourTouch<'a, 'm> {
    /// Allocates `n` objects from `k` (of at least 8 bytes), kept until drop.
    ///
    /// # Panics
    ///
    /// If the objects are smaller than 8 bytes or an allocation fails.
    pub fn new(k: &'a KmemObjects<'m>, n: usize) -> Self {
        assert!(k.size() >= 8, "objects of at least 8 bytes");
        let objs: Vec<_> = (0..n).map(|_| k.alloc()).collect();
        for p in &objs {
            // SAFETY: a live object of at least 8 bytes, ours; kmem objects are 8-aligned.
            unsafe { p.as_ptr().cast::<u64>().write(0) };
        }
        Self { k, objs }
    }

    /// Reads and increments the first 8 bytes of every object, in allocation order; returns
    /// the sum read.
    #[inline(never)]
    pub fn touch(&self) -> u64 {
        let mut sum = 0u64;
        for p in &self.objs {
            let w = p.as_ptr().cast::<u64>();
            // SAFETY: as in `new`: live, ours, 8 bytes, aligned.
            unsafe {
                let v = w.read();
                sum = sum.wrapping_add(v);
                w.write(v.wrapping_add(1));
            }
        }
        sum
    }

    /// Objects.
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    /// True without objects.
    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }

    /// Distinct 64-byte cache-line offsets within a page (0..64) that the objects' first
    /// words fall on: the L1 sets (of a 64-set cache) the touch loop can use.
    pub fn line_offsets(&self) -> usize {
        let mut seen = [false; 64];
        for p in &self.objs {
            seen[(p.as_ptr() as usize >> 6) & 63] = true;
        }
        seen.iter().filter(|&&s| s).count()
    }
}

impl Drop for ColourTouch<'_, '_> {
    fn drop(&mut self) {
        for p in self.objs.drain(..) {
            // SAFETY: allocated from `k` in `new`, freed once here.
            unsafe { self.k.free(p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slabmalloc_reuses_its_pages() {
        let sm = SlabmallocObjects::new(64, 64);
        let mut slots = vec![None; 1000];
        for _ in 0..20 {
            alloc_n_free_n(&sm, &mut slots);
        }
        // 62 objects of 64 bytes per page: 17 pages hold 1000, plus what a rebalance misses.
        assert!(sm.pages_used() <= 20, "{} pages", sm.pages_used());
        for _ in 0..10_000 {
            pair(&sm);
        }
        assert!(sm.pages_used() <= 20);
    }

    #[test]
    fn remote_free_moves_every_object() {
        let m = slab_machine(2);
        let k = KmemObjects::new(&m, "remote-test", 64, SlabFlags::NONE);
        for batch in [1, 64, crate::handoff::RING] {
            assert!(remote_free(&k, 10_000, batch, (0, 1)) > Duration::ZERO);
        }
        k.assert_no_reports();
        // Every object came back: shrinking frees every slab.
        m.kmem_cache_shrink(k.cache());
        assert!(k.cache().nodes().all(|(_, n)| n.nr_slabs() == 0));
        assert!(remote_free(&Mimalloc::new(64), 10_000, 64, (0, 1)) > Duration::ZERO);
        assert!(remote_free(&LockedSlabmalloc::new(64, 256), 10_000, 64, (0, 1)) > Duration::ZERO);
    }

    #[test]
    fn colour_spreads_first_words() {
        let m = slab_machine(1);
        let plain = KmemObjects::new(&m, "colour-off", 192, SlabFlags::NONE);
        let coloured = KmemObjects::new(&m, "colour-on", 192, SlabFlags::COLOUR);
        let (a, b) = (ColourTouch::new(&plain, 4096), ColourTouch::new(&coloured, 4096));
        assert!(b.line_offsets() > a.line_offsets(), "{} vs {}", b.line_offsets(), a.line_offsets());
        assert_eq!(a.touch(), 0);
        assert_eq!(b.touch(), 0);
        assert_eq!(b.touch(), 4096);
        drop((a, b));
        plain.assert_no_reports();
    }
}
