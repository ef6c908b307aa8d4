//! [`demo`]: what a kernel does with kmem once it has booted it, in the three calls it uses
//! most: `alloc_pages`, a slab cache of its own objects, and `kmalloc` (and `vmalloc` where
//! the platform has a vmalloc range).

use core::fmt;
use core::ptr::NonNull;

use kmem::{
    AllocError, CacheError, Gfp, KmallocError, Kmem, Order, Pfn, Platform, SlabAllocError, SlabFlags, VmallocError,
    PAGE_SIZE,
};

use crate::MinimalPlatform;

/// A kernel object for the demo's slab cache (a task-struct in miniature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Task {
    /// Process id.
    pub pid: u32,
    /// Scheduling priority.
    pub prio: i32,
    /// Command name (`comm`).
    pub comm: [u8; 16],
}

/// Objects the demo allocates from its cache: more than fit in one slab, so the cache grows.
pub const DEMO_TASKS: usize = 200;

/// What [`demo`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoSummary {
    /// First frame of the order-1 block from `alloc_pages`.
    pub block_pfn: Pfn,
    /// Objects per slab of the `task_struct` cache.
    pub tasks_per_slab: usize,
    /// Order of that cache's slabs.
    pub task_slab_order: u32,
    /// `ksize` of a 100-byte `kmalloc` (the size class it came from).
    pub kmalloc_ksize: usize,
    /// Frame behind the last page of a three-page `vmalloc`, `None` without a vmalloc range.
    pub vmalloc_last_pfn: Option<Pfn>,
    /// Free pages (buddy lists and per-CPU lists, all zones) before the demo.
    pub free_pages_before: usize,
    /// The same after it: everything went back to the allocators that hold it, so the two
    /// differ only by what per-CPU lists and slab caches keep.
    pub free_pages_after: usize,
}

/// Why [`demo`] failed: which call, and its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoError {
    /// `alloc_pages` failed.
    Pages(AllocError),
    /// `kmem_cache_create` failed.
    CacheCreate(CacheError),
    /// `kmem_cache_alloc` failed.
    CacheAlloc(SlabAllocError),
    /// `kmalloc` failed.
    Kmalloc(KmallocError),
    /// `vmalloc` failed.
    Vmalloc(VmallocError),
    /// Memory did not hold what was written to it, or a mapping was missing.
    Corrupted(&'static str),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pages(e) => write!(f, "demo: alloc_pages failed: {e}"),
            Self::CacheCreate(e) => write!(f, "demo: kmem_cache_create failed: {e}"),
            Self::CacheAlloc(e) => write!(f, "demo: kmem_cache_alloc failed: {e}"),
            Self::Kmalloc(e) => write!(f, "demo: kmalloc failed: {e}"),
            Self::Vmalloc(e) => write!(f, "demo: vmalloc failed: {e}"),
            Self::Corrupted(what) => write!(f, "demo: {what}"),
        }
    }
}

impl core::error::Error for DemoError {}

fn free_pages(m: &Kmem<MinimalPlatform>) -> usize {
    m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum()
}

/// Allocates, uses and frees memory of every kind a kernel asks kmem for, on one machine:
///
/// 1. `alloc_pages(GFP_KERNEL | __GFP_ZERO, 1)`: two zeroed pages, written through the
///    direct map (`page_address`), then `__free_pages`.
/// 2. `kmem_cache_create("task_struct", ...)`: [`DEMO_TASKS`] [`Task`]s, each written and read
///    back, freed, then the cache destroyed (dropped).
/// 3. `kmalloc(100, GFP_KERNEL)`: a 128-byte object (`ksize`), filled, then `kfree`.
/// 4. With a vmalloc range: `vmalloc(3 pages)`, its last page looked up in the page tables,
///    then `vfree`. The memory is not touched (the minimal platform's tables are not loaded
///    into an MMU).
///
/// Leaves nothing allocated. Reports nothing on a healthy machine (a test checks
/// `report_count`).
pub fn demo(m: &Kmem<MinimalPlatform>) -> Result<DemoSummary, DemoError> {
    let free_pages_before = free_pages(m);

    // 1. Pages.
    let order = Order::of(1);
    let page = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, order).map_err(DemoError::Pages)?;
    let block_pfn = page.pfn();
    let addr = m.page_address(page).ok_or(DemoError::Corrupted("a lowmem page has no direct-map address"))?;
    let bytes = PAGE_SIZE << order.as_u32();
    // SAFETY: the block is ours (just allocated), `bytes` long and mapped at `addr`.
    let block = unsafe { core::slice::from_raw_parts_mut(addr.as_mut_ptr::<u8>(), bytes) };
    let zeroed = block.iter().all(|&b| b == 0);
    block.fill(0x5a);
    let kept = block.iter().all(|&b| b == 0x5a);
    // SAFETY: ours, allocated with this order, no longer used (`block` ends here).
    unsafe { m.__free_pages(page, order) };
    if !zeroed || !kept {
        return Err(DemoError::Corrupted("an alloc_pages block was not zeroed or did not keep its contents"));
    }

    // 2. A slab cache of the kernel's own objects.
    let cache = m
        .kmem_cache_create("task_struct", size_of::<Task>(), align_of::<Task>(), SlabFlags::HWCACHE_ALIGN, None)
        .map_err(DemoError::CacheCreate)?;
    let mut tasks: [Option<NonNull<Task>>; DEMO_TASKS] = [None; DEMO_TASKS];
    let mut result = Ok(());
    for (pid, slot) in tasks.iter_mut().enumerate() {
        match m.kmem_cache_alloc(&cache, Gfp::KERNEL) {
            Ok(obj) => {
                let t = obj.cast::<Task>();
                // SAFETY: a fresh object of this cache: `size_of::<Task>()` bytes aligned for
                // `Task`, ours until freed.
                unsafe { t.write(Task { pid: pid as u32, prio: 120, comm: *b"kworker/0:1\0\0\0\0\0" }) };
                *slot = Some(t);
            }
            Err(e) => {
                result = Err(DemoError::CacheAlloc(e));
                break;
            }
        }
    }
    for (pid, t) in tasks.iter().enumerate() {
        // SAFETY: written above, ours.
        if t.is_some_and(|t| unsafe { t.read() }.pid != pid as u32) {
            result = result.and(Err(DemoError::Corrupted("a task_struct object lost its contents")));
        }
    }
    let (tasks_per_slab, task_slab_order) = (cache.objects_per_slab(), cache.order());
    for t in tasks.into_iter().flatten() {
        // SAFETY: from this cache, freed once, not used after.
        unsafe { m.kmem_cache_free(&cache, t.cast()) };
    }
    drop(cache); // kmem_cache_destroy
    result?;

    // 3. kmalloc.
    let p = m.kmalloc(100, Gfp::KERNEL).map_err(DemoError::Kmalloc)?;
    // SAFETY: `p` is ours; ksize says how much of it we may use.
    let kmalloc_ksize = unsafe { m.ksize(p.as_ptr()) };
    // SAFETY: `kmalloc_ksize` bytes at `p` are ours.
    unsafe { core::ptr::write_bytes(p.as_ptr(), 0xa5, kmalloc_ksize) };
    // SAFETY: from kmalloc, freed once, not used after.
    unsafe { m.kfree(p.as_ptr()) };

    // 4. vmalloc, where the platform has a range for it.
    let mut vmalloc_last_pfn = None;
    if m.platform().vmalloc_range().is_some() {
        let v = m.vmalloc(3 * PAGE_SIZE).map_err(DemoError::Vmalloc)?;
        vmalloc_last_pfn = m.platform().translate(v.as_ptr() as usize + 2 * PAGE_SIZE);
        // SAFETY: from vmalloc, never accessed, freed once.
        unsafe { m.vfree(v.as_ptr()) };
        if vmalloc_last_pfn.is_none() {
            return Err(DemoError::Corrupted("a vmalloc page is not mapped"));
        }
    }

    Ok(DemoSummary {
        block_pfn,
        tasks_per_slab,
        task_slab_order,
        kmalloc_ksize,
        vmalloc_last_pfn,
        free_pages_before,
        free_pages_after: free_pages(m),
    })
}
