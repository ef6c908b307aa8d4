//! Memory pressure: shrinkers, direct reclaim, kswapd, the OOM path and `__GFP_NOFAIL`'s wait
//! (Linux's `mm/shrinker.c`, `mm/vmscan.c`, `mm/oom_kill.c` and the slow path's retry rules
//! in `mm/page_alloc.c`).
//!
//! kmem has no LRU lists, no page cache and no processes: what reclaim can free is what
//! shrinkers give back and the empty slabs of the slab caches (a built-in shrinker, caches
//! with `SLAB_RECLAIM_ACCOUNT` first). The OOM "killer" calls the registered OOM notifiers
//! and, if they free nothing, reports `Out of memory and no killable processes...`.
//!
//! - [`shrinker`]: the registry and `do_shrink_slab`'s arithmetic.
//! - `vmscan`: `shrink_slab`, direct reclaim (`try_to_free_pages`), kswapd's balancing step.
//! - `oom`: OOM notifiers and the `out of memory` report.
//! - `nofail`: a `__GFP_NOFAIL` allocation that found nothing sleeps until memory is freed.
//!
//! The platform decides how to sleep and wake ([`crate::Platform::wait_for_free_memory`],
//! [`crate::Platform::wake_kswapd`]); the minimal platform spins and has no kswapd (direct
//! reclaim only). Lock order: the shrinker and OOM-notifier table locks are leaves, never
//! held while a callback runs.

pub mod shrinker;

mod nofail;
mod oom;
pub(crate) mod vmscan;

use core::cell::UnsafeCell;
use core::fmt;

pub use oom::{OomNotifier, OomNotifierError, OomNotifierHandle, MAX_OOM_NOTIFIERS};
pub use shrinker::{
    ShrinkControl, Shrinker, ShrinkerError, ShrinkerFlags, ShrinkerOps, DEFAULT_SEEKS, DEF_PRIORITY, MAX_SHRINKERS,
    SHRINK_BATCH, SHRINK_EMPTY, SHRINK_STOP,
};
pub use vmscan::KswapdRun;

use crate::machine::Kmem;
use crate::mm::page::MAX_NUMNODES;
use crate::mm::zone_type::MAX_NR_ZONES;
use crate::platform::Platform;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering, RawSpinLock, SpinGuard};

/// `MAX_RECLAIM_RETRIES`: passes without progress before the slow path (or kswapd) gives up.
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// `SWAP_CLUSTER_MAX`: pages one direct-reclaim call aims to free.
pub const SWAP_CLUSTER_MAX: usize = 32;

/// Callback references of a registry (`&'static` trait objects), one per slot, written and
/// read only under the registry's lock.
pub(crate) struct OpsCells<T: ?Sized + 'static, const N: usize> {
    cells: UnsafeCell<[Option<&'static T>; N]>,
}

// SAFETY: the cells are only accessed under the owning table's lock (`set`/`get` take its
// guard), and the references they hold are `'static` to `Sync` callbacks.
unsafe impl<T: ?Sized + Sync + 'static, const N: usize> Sync for OpsCells<T, N> {}
// SAFETY: as for Sync: the contents are shared references to Sync data.
unsafe impl<T: ?Sized + Sync + 'static, const N: usize> Send for OpsCells<T, N> {}

impl<T: ?Sized + 'static, const N: usize> OpsCells<T, N> {
    pub(crate) fn new() -> Self {
        Self { cells: UnsafeCell::new([None; N]) }
    }
    /// Writes slot `i`; `g` holds the table's lock.
    pub(crate) fn set<P: Platform>(&self, g: &SpinGuard<'_, P>, i: usize, v: Option<&'static T>) {
        let _ = g;
        // SAFETY: the caller holds the table's lock, which every access takes, so no other
        // reference to the array exists meanwhile.
        unsafe { (*self.cells.get())[i] = v };
    }
    /// Reads slot `i`; `g` holds the table's lock.
    pub(crate) fn get<P: Platform>(&self, g: &SpinGuard<'_, P>, i: usize) -> Option<&'static T> {
        let _ = g;
        // SAFETY: as in `set`: the lock excludes writers.
        unsafe { (*self.cells.get())[i] }
    }
}

/// Reclaim's event counters (the `/proc/vmstat` lines of reclaim), machine-wide.
#[derive(Debug, Default)]
pub struct ReclaimEvents {
    /// `allocstall_<zone>`: direct reclaims, by the highest zone of the allocation.
    pub allocstall: [AtomicU64; MAX_NR_ZONES],
    /// `pgscan_kswapd`: pages kswapd's passes got back (kmem has no LRU: see the module docs
    /// of `proc::vmstat`).
    pub pgscan_kswapd: AtomicU64,
    /// `pgscan_direct`.
    pub pgscan_direct: AtomicU64,
    /// `pgsteal_kswapd`.
    pub pgsteal_kswapd: AtomicU64,
    /// `pgsteal_direct`.
    pub pgsteal_direct: AtomicU64,
    /// `slabs_scanned`: objects shrinkers were asked to scan.
    pub slabs_scanned: AtomicU64,
    /// `kswapd_low_wmark_hit_quickly`: kswapd was woken again before it could sleep.
    pub kswapd_low_wmark_hit_quickly: AtomicU64,
    /// `kswapd_high_wmark_hit_quickly`: kswapd found the node below high again when it went
    /// to sleep.
    pub kswapd_high_wmark_hit_quickly: AtomicU64,
    /// `pageoutrun`: kswapd balancing passes.
    pub pageoutrun: AtomicU64,
    /// Shrinker calls (`count_objects`) made by reclaim.
    pub shrinker_calls: AtomicU64,
    /// Shrinkers skipped because the allocation's context forbade them (`GFP_NOFS` and a
    /// shrinker that needs the filesystem, `GFP_NOIO` and one that needs I/O).
    pub shrinker_skipped: AtomicU64,
    /// Pages the built-in slab shrinker gave back (empty slabs).
    pub slab_pages_reclaimed: AtomicU64,
    /// Out-of-memory events (`out_of_memory` calls that found nothing to free).
    pub oom: AtomicU64,
    /// Pages OOM notifiers reported freed.
    pub oom_notifier_freed: AtomicU64,
    /// `__GFP_NOFAIL` allocations that had to sleep for memory.
    pub nofail_waits: AtomicU64,
    /// Times such a sleeper was woken.
    pub nofail_wakeups: AtomicU64,
}

/// kswapd's per-node state (`pgdat->kswapd_order`, `kswapd_highest_zoneidx`, `kswapd_failures`).
#[derive(Debug, Default)]
pub(crate) struct KswapdNode {
    /// A wake-up not yet taken by kswapd.
    pub(crate) pending: AtomicBool,
    /// Highest order requested since the last run.
    pub(crate) order: AtomicU32,
    /// Highest zone index requested plus one (0: none).
    pub(crate) highest: AtomicU32,
    /// Balancing passes in a row that reclaimed nothing.
    pub(crate) failures: AtomicU32,
}

/// Everything reclaim keeps in the machine state.
pub(crate) struct ReclaimState {
    pub(crate) shrinkers: shrinker::ShrinkerTable,
    pub(crate) oom: oom::OomTable,
    pub(crate) events: ReclaimEvents,
    pub(crate) kswapd: [KswapdNode; MAX_NUMNODES],
    /// `__GFP_NOFAIL` sleepers, and the lock under which the first lowers the per-CPU lists'
    /// `high` (so frees reach the buddy lists, where the sleeper can see them) and the last
    /// restores it.
    pub(crate) nofail_lock: RawSpinLock,
    pub(crate) nofail_sleepers: AtomicU32,
    /// `oom_lock`: one allocation in the OOM path at a time.
    pub(crate) oom_lock: AtomicBool,
}

impl fmt::Debug for ReclaimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReclaimState").field("events", &self.events).finish_non_exhaustive()
    }
}

impl ReclaimState {
    pub(crate) fn new() -> Self {
        Self {
            shrinkers: shrinker::ShrinkerTable::new(),
            oom: oom::OomTable::new(),
            events: ReclaimEvents::default(),
            kswapd: core::array::from_fn(|_| KswapdNode::default()),
            nofail_lock: RawSpinLock::new(),
            nofail_sleepers: AtomicU32::new(0),
            oom_lock: AtomicBool::new(false),
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// Reclaim's state.
    #[inline]
    pub(crate) fn reclaim(&self) -> &ReclaimState {
        &self.state().reclaim
    }

    /// Reclaim's event counters.
    pub fn reclaim_events(&self) -> &ReclaimEvents {
        &self.reclaim().events
    }

    /// `allocstall` summed over zones.
    pub fn allocstall(&self) -> u64 {
        self.reclaim().events.allocstall.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Runs `f` with `PF_MEMALLOC` set for the current task (`memalloc_noreclaim_save`):
    /// allocations inside do not recurse into reclaim and may use the reserves.
    pub(crate) fn with_memalloc<R>(&self, f: impl FnOnce() -> R) -> R {
        let old = self.platform().set_in_reclaim(true);
        let r = f();
        self.platform().set_in_reclaim(old);
        r
    }
}
