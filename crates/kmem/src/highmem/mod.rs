//! High memory: pages with no permanent kernel address, mapped on demand (Linux's
//! `mm/highmem.c`, `include/linux/highmem*.h`).
//!
//! On a machine whose [`ZoneLayout`](crate::ZoneLayout) has a HighMem zone (the x86-32
//! preset: everything above 896 MiB), the direct map stops at the HighMem boundary. A HighMem
//! frame has no address until it is mapped, and every access kmem makes to one (`__GFP_ZERO`,
//! `clear_highpage`, the copy helpers) goes through one of the two mapping kinds below. Both
//! live in the platform's *kmap area* ([`Platform::kmap_range`]) and are made with the same
//! page-table operations vmalloc uses ([`Platform::map_kernel_pages`],
//! [`Platform::unmap_kernel_pages`], [`Platform::flush_tlb_kernel_range`]), so a bare-metal
//! platform implements them with its PTEs exactly as the hosted one does with `mmap`.
//!
//! The kmap area is `LAST_PKMAP` pages of pkmap slots followed by `KM_MAX_IDX` fixmap slots
//! per CPU ([`kmap_area_bytes`]).
//!
//! - **`kmap`/`kunmap`** (`pkmap.rs`): permanent mappings, any number of users per page, any
//!   CPU. `LAST_PKMAP` (1024) slots under one lock (`kmap_lock`), each with Linux's
//!   `pkmap_count` (0: free and flushed; 1: mapped, no users, needs a flush; n: n-1 users).
//!   A page's slot is found through a hash of 128 chains (`page_address_htable`), so
//!   [`Kmem::page_address`] of a kmapped HighMem page is its pkmap address. A new mapping
//!   takes the next slot of a ring; when the ring wraps, every slot with count 1 is unmapped
//!   and the whole area flushed once (`flush_all_zero_pkmaps`). Unmapping is therefore lazy:
//!   a page kmapped again before the wrap reuses its slot with no page-table change, and
//!   steady-state use makes no system call per map on the hosted platform. When all slots
//!   are busy, `kmap` waits until a `kunmap` frees one (Linux sleeps on `pkmap_map_wait`);
//!   from atomic context it is a `might_sleep` report.
//! - **`kmap_local_page` / `kmap_atomic`** (`local.rs`): short CPU-local mappings in a
//!   per-CPU stack of `KM_MAX_IDX` (16) fixmap slots, strictly nested. The mapping holds the
//!   CPU as Linux's `migrate_disable()` does ([`Platform::migrate_disable`]); `kmap_atomic`
//!   also disables preemption and page faults. Each slot remembers the frame its PTE maps and
//!   keeps it after the unmap, so mapping the same frame again in the same slot costs no
//!   page-table change (the hosted fast path makes no system call). Interrupt handlers on the
//!   same CPU push on top of the task's mappings and pop before returning.
//!   Out-of-order unmapping cannot compile with the scoped guard API ([`KmapScope`]); the raw
//!   API ([`Kmem::kunmap_local`]) detects it, reports it as Linux's `WARN_ON_ONCE` in
//!   `kunmap_local_indexed` does, and leaves the other mappings intact (the released slot is
//!   popped once everything above it is).
//!
//! All metadata (slot counts, the hash, the per-CPU stacks) is one structure carved from
//! lowmem at boot, only on machines with HighMem memory.

mod helpers;
mod local;
#[cfg(all(test, loom))]
mod loom_tests;
mod pkmap;
#[cfg(all(test, not(loom)))]
mod tests;

pub use local::{KmapError, KmapLocal, KmapScope};
use pkmap::Pkmap;

use crate::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::machine::{Kmem, NR_CPUS};
use crate::mm::page_ref::PageRef;
use crate::platform::Platform;
use crate::sync::{array_of, AtomicU32, AtomicU64, Ordering};

/// Slots of the pkmap area (`LAST_PKMAP`, x86-32 without PAE).
pub const LAST_PKMAP: usize = 1024;
/// Depth of each CPU's `kmap_local` stack (`KM_MAX_IDX`, without `CONFIG_DEBUG_KMAP_LOCAL`).
pub const KM_MAX_IDX: usize = 16;
/// `PA_HASH_ORDER`: the page-address hash has `1 << 7` chains.
const PA_HASH_ORDER: u32 = 7;

/// Bytes of kernel virtual address space a platform's [`Platform::kmap_range`] must give a
/// machine of `nr_cpus` CPUs: the pkmap area, then `KM_MAX_IDX` fixmap slots per CPU.
pub const fn kmap_area_bytes(nr_cpus: usize) -> usize {
    (LAST_PKMAP + nr_cpus * KM_MAX_IDX) * PAGE_SIZE
}

/// One CPU's `kmap_local` stack (Linux keeps it in `current->kmap_ctrl`; here a mapping
/// holds its CPU, so the CPU's stack is the holder's).
#[derive(Debug)]
pub(crate) struct LocalStack {
    /// Entries in use (`kmap_ctrl.idx`).
    pub(crate) idx: AtomicU32,
    /// `pagefault_disable()` depth of `kmap_atomic` sections on this CPU.
    pub(crate) pagefault: AtomicU32,
    /// Per slot: the frame + 1 its PTE maps now (0: unmapped). Kept after `kunmap_local`.
    pub(crate) mapped: [AtomicU32; KM_MAX_IDX],
    /// Per entry: the frame + 1 pushed there, or [`RELEASED`] once unmapped out of order.
    pub(crate) live: [AtomicU32; KM_MAX_IDX],
}

/// A stack entry unmapped out of order: popped when everything above it is.
pub(crate) const RELEASED: u32 = u32::MAX;

impl LocalStack {
    fn new() -> Self {
        Self {
            idx: AtomicU32::new(0),
            pagefault: AtomicU32::new(0),
            mapped: array_of![AtomicU32::new(0); KM_MAX_IDX],
            live: array_of![AtomicU32::new(0); KM_MAX_IDX],
        }
    }
}

/// The highmem layer's state, carved at boot (see the module docs). Fields written only
/// under a lock or by the CPU's holder are atomics so that readers (`/proc`, the demo) need
/// no lock.
#[derive(Debug)]
pub(crate) struct HighmemState {
    /// The pkmap slots (`kmap`).
    pub(crate) pkmap: Pkmap<LAST_PKMAP, { 1 << PA_HASH_ORDER }>,
    /// `PKMAP_BASE`.
    pub(crate) pkmap_base: usize,
    /// Virtual address of CPU 0's fixmap slot 0 (`FIX_KMAP_BEGIN`).
    pub(crate) fixmap_base: usize,
    /// One past the last fixmap slot.
    pub(crate) fixmap_end: usize,
    /// Fixmap PTE changes made by `kmap_local` (the rest reused a slot's mapping).
    pub(crate) maps: AtomicU64,
    /// Per-CPU `kmap_local` stacks.
    pub(crate) local: [LocalStack; NR_CPUS],
}

impl HighmemState {
    /// Writes a state for a kmap area at `base` to `p`, out of line: the state is 45 KB, and
    /// a `p.write(Self::new(..))` in boot built it in boot's own stack frame, which every
    /// machine's boot then probed page by page, highmem or not (12 page faults at the start
    /// of every process under `LD_PRELOAD`).
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of a `HighmemState` and aligned for it.
    #[inline(never)]
    pub(crate) unsafe fn write_at(p: *mut Self, base: usize, nr_cpus: usize) {
        // SAFETY: the caller's contract.
        unsafe { p.write(Self::new(base, nr_cpus)) };
    }

    /// A state for a kmap area at `base` (see [`kmap_area_bytes`]).
    pub(crate) fn new(base: usize, nr_cpus: usize) -> Self {
        let fixmap_base = base + LAST_PKMAP * PAGE_SIZE;
        Self {
            pkmap: Pkmap::new(),
            pkmap_base: base,
            fixmap_base,
            fixmap_end: fixmap_base + nr_cpus * KM_MAX_IDX * PAGE_SIZE,
            maps: AtomicU64::new(0),
            local: core::array::from_fn(|_| LocalStack::new()),
        }
    }

    /// `PKMAP_ADDR(nr)`.
    #[inline]
    pub(crate) fn pkmap_addr(&self, nr: usize) -> usize {
        self.pkmap_base + nr * PAGE_SIZE
    }

    /// `PKMAP_NR(addr)` if `addr` lies in the pkmap area.
    #[inline]
    pub(crate) fn pkmap_nr(&self, addr: usize) -> Option<usize> {
        let nr = addr.wrapping_sub(self.pkmap_base) / PAGE_SIZE;
        (nr < LAST_PKMAP).then_some(nr)
    }

    /// `__fix_to_virt(FIX_KMAP_BEGIN + idx)` of CPU `cpu`'s slot `idx`.
    #[inline]
    pub(crate) fn fixmap_addr(&self, cpu: usize, idx: usize) -> usize {
        self.fixmap_base + (cpu * KM_MAX_IDX + idx) * PAGE_SIZE
    }
}

/// Counters of the highmem layer, for the demo and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmapStats {
    /// pkmap slots with at least one `kmap` user now.
    pub pkmap_in_use: usize,
    /// Whole-area TLB flushes of the pkmap area (one per wrap of the slot ring).
    pub pkmap_flushes: u64,
    /// `kmap` calls that waited for a free slot.
    pub pkmap_waits: u64,
    /// Page-table changes made by `kmap` and `kmap_local` (the rest reused a mapping).
    pub maps: u64,
}

impl<P: Platform> Kmem<P> {
    /// The highmem state, on machines with HighMem memory.
    #[inline]
    pub(crate) fn highmem(&self) -> Option<&HighmemState> {
        let p = self.state().highmem;
        // SAFETY: non-zero only when boot carved and initialised the state, which lives as
        // long as the machine and is only accessed through shared references.
        (p != 0).then(|| unsafe { &*(p as *const HighmemState) })
    }

    /// `PageHighMem()`: the frame lies above the direct map.
    #[inline]
    pub fn page_is_highmem(&self, page: PageRef<'_>) -> bool {
        self.direct_map().phys_to_virt(page.pfn().phys()).is_none()
    }

    /// Counters of the kmap layer (all zero on machines without HighMem).
    pub fn kmap_stats(&self) -> KmapStats {
        let Some(h) = self.highmem() else { return KmapStats::default() };
        KmapStats {
            pkmap_in_use: h.pkmap.in_use.load(Ordering::Relaxed),
            pkmap_flushes: h.pkmap.flushes.load(Ordering::Relaxed),
            pkmap_waits: h.pkmap.waits.load(Ordering::Relaxed),
            maps: h.pkmap.maps.load(Ordering::Relaxed) + h.maps.load(Ordering::Relaxed),
        }
    }

    /// Calls `f` with every frame that has `kmap` users now (its pkmap slot's count is 2 or
    /// more): a lock-free sample, for page-frame maps.
    pub fn for_each_kmapped(&self, mut f: impl FnMut(Pfn)) {
        let Some(h) = self.highmem() else { return };
        for nr in 0..LAST_PKMAP {
            let frame = h.pkmap.page[nr].load(Ordering::Acquire);
            if frame != 0 && h.pkmap.count[nr].load(Ordering::Relaxed) >= 2 {
                f(Pfn::new(frame as usize - 1));
            }
        }
    }

    /// `kmap_to_page()`: the page behind an address from `kmap`, `kmap_local_page`,
    /// `kmap_atomic` or the direct map; `None` for any other address.
    pub fn kmap_to_page(&self, addr: VirtAddr) -> Option<PageRef<'_>> {
        if let Some(p) = self.virt_to_page(addr) {
            return Some(p);
        }
        let h = self.highmem()?;
        let a = addr.as_usize();
        let frame = if let Some(nr) = h.pkmap_nr(a) {
            h.pkmap.page[nr].load(Ordering::Acquire)
        } else if (h.fixmap_base..h.fixmap_end).contains(&a) {
            let slot = (a - h.fixmap_base) / PAGE_SIZE;
            h.local[slot / KM_MAX_IDX].mapped[slot % KM_MAX_IDX].load(Ordering::Relaxed)
        } else {
            0
        };
        (frame != 0 && frame != RELEASED).then(|| self.pfn_to_page(Pfn::new(frame as usize - 1))).flatten()
    }
}
