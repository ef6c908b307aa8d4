//! vmalloc (`mm/vmalloc.c`): virtually contiguous kernel memory from physically scattered
//! pages, mapped into the platform's vmalloc range through real page tables.
//!
//! - **Areas** ([`area`], `tree.rs`, [`va`]): the range `VMALLOC_START..VMALLOC_END` is
//!   divided into `vmap_area`s kept in three augmented trees under one lock: free (with the
//!   largest free block per subtree, for an O(log n) lowest-address fit), busy (lookup by
//!   address) and lazy (freed, not yet unmapped). Every area but `vm_map_ram`'s has a guard
//!   page after it, so the page below any area is never mapped by another (kernel stacks get
//!   their guard below for free). The records are objects of the slab cache `vmap_area` with
//!   all-atomic fields; the records a split needs are allocated before the lock is taken.
//! - **Lazy purge**: a freed area stays mapped until the lazily freed pages exceed
//!   `lazy_max_pages()` (`fls(nr_cpus) * 32 MiB / PAGE_SIZE`, Linux's rule); then one purge
//!   unmaps runs of adjacent lazy areas with one call each, flushes the TLB once for all,
//!   and returns the areas to the free tree. Areas are reused only after their purge.
//!   kmem defers the unmap itself, not only the TLB flush, to the purge (one host `mmap`
//!   per run instead of one per area); only a use after `vfree` can tell, and in Linux a
//!   stale TLB entry gives it the same access.
//! - **vmalloc** ([`alloc`]): pages from the page allocator with the caller's GFP flags
//!   (orders up to 6 tried first without reclaim, split into single pages, so host mappings
//!   coalesce), a page array (kmalloc'ed, or vmalloc'ed above a page: `vpages`), mapping, and
//!   `vfree`, `vrealloc`, `vmalloc_to_page`. Non-blocking GFP works without sleeping. The
//!   area's `VmStruct` is kmalloc'ed; pages are marked `PG_vmalloc`; each physically
//!   contiguous run is one `map_kernel_pages` call; the area is published last (`va.vm` set
//!   with Release ordering; `/proc/vmallocinfo` skips unpublished areas). `vfree` moves the
//!   area from the busy tree to the lazy one and frees its pages at once, as Linux does.
//! - **vmap** ([`vmap`]): `vmap`/`vunmap` of caller pages, `vm_map_ram`/`vm_unmap_ram`.
//! - **Recycling** ([`recycle`]): each CPU keeps its last few freed areas of up to 4 pages,
//!   mapped, for the next request of that size (Linux's stack cache, for every small area).
//!   A cached area is busy-but-cached: a double `vfree` is still reported, the views skip it,
//!   `VmallocUsed` counts it. Drained by `vm_unmap_aliases` and before any vmalloc fails;
//!   `BootConfig::vmalloc_recycle` turns it off.
//! - **Kernel stacks** ([`stack`]): `THREAD_SIZE` stacks with a guard page below and a
//!   two-entry per-CPU cache, as `CONFIG_VMAP_STACK`.
//!
//! Lock order: the purge lock, then the vmap lock, then the slab and page allocator locks.
//! Nothing is allocated or freed under the vmap lock (area records are preallocated and
//! freed after it is dropped); host mapping calls are made with no lock but the purge lock.
//!
//! Differences from Linux: the deferred unmap (above); recycling of every small area;
//! `vm_map_ram` gives every call its own area (no per-CPU `vmap_block`s); `vfree` from
//! interrupt context frees at once (Linux defers to `vfree_atomic`), since nothing in the
//! path sleeps; `vmalloc(0)` fails without the `WARN_ON_ONCE`; `/proc/vmallocinfo` prints
//! full addresses and `file:line` callers.

pub mod alloc;
pub mod area;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod pt_tests;
pub mod recycle;
pub mod stack;
pub(crate) mod tree;
pub mod va;
pub mod vmap;

use core::fmt;

pub use area::{vm_flags, VmStruct, VmapArea};
pub use stack::{KernelStack, THREAD_SIZE};

use crate::gfp::Gfp;
use crate::platform::MapError;
use crate::sync::{const_fn_unless_loom, AtomicU32, AtomicU64, AtomicUsize, RawSpinLock};
use tree::Tree;

/// Why a vmalloc-family call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmallocErrorKind {
    /// Size 0.
    ZeroSize,
    /// More pages than the machine has (`exceeds total pages`).
    TooLarge,
    /// The platform gives no vmalloc range.
    NoVmallocArea,
    /// No free virtual range of the size and alignment (`vm_struct allocation failed`).
    NoSpace,
    /// The alignment is not a power of two, or larger than the vmalloc range.
    BadAlign,
    /// The page allocator (or the metadata's allocator) could not give memory.
    NoMemory,
    /// The platform could not map the pages.
    Map(MapError),
    /// The address is not the start of a live area of the right kind.
    NotFound,
    /// A page to map belongs to another machine (reported as a `WARNING`).
    OtherMachine,
}

/// A failed vmalloc-family call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmallocError {
    /// Bytes asked for.
    pub size: usize,
    /// GFP flags.
    pub gfp: Gfp,
    /// The cause.
    pub kind: VmallocErrorKind,
}

impl VmallocErrorKind {
    /// What failed, as a phrase.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ZeroSize => "size 0",
            Self::TooLarge => "more pages than the machine has",
            Self::NoVmallocArea => "the platform gives no vmalloc range",
            Self::NoSpace => "no free virtual range of that size and alignment",
            Self::BadAlign => "alignment not a power of two, or above what vmalloc gives",
            Self::NoMemory => "out of memory for the pages or their metadata",
            Self::Map(MapError::Unsupported) => "the platform cannot map pages",
            Self::Map(MapError::NoMemory) => "no memory for page tables",
            Self::Map(MapError::Host(_)) => "the host refused the mapping",
            Self::NotFound => "no live vmalloc area starts at that address",
            Self::OtherMachine => "a page belongs to another machine",
        }
    }

    /// The errno a Linux caller would return (negative): `-EINVAL` for bad arguments,
    /// `-ENOMEM` otherwise.
    pub const fn errno(&self) -> i32 {
        match self {
            Self::ZeroSize | Self::BadAlign | Self::NotFound | Self::OtherMachine => -22,
            _ => -12,
        }
    }
}

impl fmt::Display for VmallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vmalloc({}, {:#}): {}", self.size, self.gfp, self.kind.reason())?;
        if let VmallocErrorKind::Map(MapError::Host(e)) = self.kind {
            write!(f, " (host errno {e})")?;
        }
        f.write_str(if self.kind.errno() == -22 { " (-EINVAL)" } else { " (-ENOMEM)" })
    }
}

impl core::error::Error for VmallocError {}

/// Initialisation states.
const INIT_NONE: u32 = 0;
const INIT_BUSY: u32 = 1;
const INIT_READY: u32 = 2;
const INIT_NO_AREA: u32 = 3;

/// One machine's vmalloc state (in `MachineState`).
#[derive(Debug)]
pub(crate) struct VmallocState {
    /// `free_vmap_area_lock` + `vmap_area_lock`: guards the three trees.
    pub(crate) lock: RawSpinLock,
    pub(crate) free: Tree,
    pub(crate) busy: Tree,
    pub(crate) lazy: Tree,
    /// `vmap_purge_lock`: one purge at a time.
    pub(crate) purge_lock: RawSpinLock,
    pub(crate) init: AtomicU32,
    pub(crate) start: AtomicUsize,
    pub(crate) end: AtomicUsize,
    /// The `vmap_area` cache's descriptor address.
    pub(crate) cache: AtomicUsize,
    /// `vmap_lazy_nr`: pages of lazily freed areas (guard pages included).
    pub(crate) lazy_nr: AtomicUsize,
    /// `lazy_max_pages()` override from boot (0: Linux's rule).
    pub(crate) lazy_max_override: usize,
    /// `nr_vmalloc_pages` (VmallocUsed).
    pub(crate) nr_pages: AtomicUsize,
    /// Page-table pages the platform asked for (PageTables).
    pub(crate) nr_pagetables: AtomicUsize,
    /// Live kernel stacks (KernelStack).
    pub(crate) nr_stacks: AtomicUsize,
    /// The per-CPU stack cache (a per-CPU pointer, 0 until the first stack).
    pub(crate) stack_cache: AtomicUsize,
    /// Purges done.
    pub(crate) purges: AtomicU64,
    /// Whether freed small areas are recycled (`recycle.rs`).
    pub(crate) recycle: bool,
    /// The per-CPU recycle slots (0 until the first use).
    pub(crate) recycle_table: AtomicUsize,
    /// Areas sitting in recycle slots.
    pub(crate) nr_recycled: AtomicUsize,
}

impl VmallocState {
    const_fn_unless_loom! {
    /// Empty state; `lazy_max` 0 uses Linux's `lazy_max_pages()`.
    pub(crate) fn new(lazy_max: usize, recycle: bool) -> Self {
        Self {
            lock: RawSpinLock::new(),
            free: Tree::new(),
            busy: Tree::new(),
            lazy: Tree::new(),
            purge_lock: RawSpinLock::new(),
            init: AtomicU32::new(INIT_NONE),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            cache: AtomicUsize::new(0),
            lazy_nr: AtomicUsize::new(0),
            lazy_max_override: lazy_max,
            nr_pages: AtomicUsize::new(0),
            nr_pagetables: AtomicUsize::new(0),
            nr_stacks: AtomicUsize::new(0),
            stack_cache: AtomicUsize::new(0),
            purges: AtomicU64::new(0),
            recycle,
            recycle_table: AtomicUsize::new(0),
            nr_recycled: AtomicUsize::new(0),
        }
    }
    }
}

/// A snapshot of the vmalloc counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmallocStats {
    /// Bytes of the vmalloc range (`VMALLOC_TOTAL`).
    pub total_bytes: usize,
    /// Pages backing vmalloc areas (`VmallocUsed`).
    pub used_pages: usize,
    /// Busy areas (vmalloc, vmap, vm_map_ram, stacks), recycled ones excluded.
    pub busy_areas: usize,
    /// Freed areas kept mapped in the per-CPU recycle slots.
    pub recycled: usize,
    /// Free ranges in the free tree.
    pub free_areas: usize,
    /// Lazily freed areas waiting for a purge.
    pub lazy_areas: usize,
    /// Pages of the lazy areas (`vmap_lazy_nr`).
    pub lazy_pages: usize,
    /// The purge threshold (`lazy_max_pages()`).
    pub lazy_max_pages: usize,
    /// Purges done.
    pub purges: u64,
    /// Largest free range, bytes.
    pub largest_free: usize,
    /// Live kernel stacks.
    pub stacks: usize,
    /// Page-table pages allocated for the platform.
    pub pagetables: usize,
}
