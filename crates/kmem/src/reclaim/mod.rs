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

#[cfg(all(test, loom))]
mod loom_tests;
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

use crate::addr::{Order, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::zone_type::MAX_NR_ZONES;
use crate::platform::Platform;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering, RawSpinLock, SpinGuard};

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

/// Bytes of each CPU's copy of reclaim's event counters: the per-CPU area every machine
/// allocates at the end of boot (what the per-CPU allocator's statistics show besides the
/// slab allocator's boot areas).
pub const EVENTS_PERCPU_BYTES: usize = core::mem::size_of::<ReclaimEvents>();

/// Reclaim's event counters of one CPU (Linux's per-CPU `vm_event_states`): a per-CPU
/// allocation made at the end of boot, so the machine state (and boot's carving) keeps its
/// size and counting makes no shared write. Zeroed atomics.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct ReclaimEvents {
    pub(crate) allocstall: [AtomicU64; MAX_NR_ZONES],
    pub(crate) pgsteal_kswapd: AtomicU64,
    pub(crate) pgsteal_direct: AtomicU64,
    pub(crate) slabs_scanned: AtomicU64,
    pub(crate) kswapd_low_wmark_hit_quickly: AtomicU64,
    pub(crate) kswapd_high_wmark_hit_quickly: AtomicU64,
    pub(crate) pageoutrun: AtomicU64,
    pub(crate) shrinker_calls: AtomicU64,
    pub(crate) shrinker_skipped: AtomicU64,
    pub(crate) slab_pages_reclaimed: AtomicU64,
    pub(crate) slab_sweeps: AtomicU64,
    pub(crate) slab_cpu_flushes: AtomicU64,
    pub(crate) oom: AtomicU64,
    pub(crate) oom_notifier_freed: AtomicU64,
    pub(crate) nofail_waits: AtomicU64,
    pub(crate) nofail_wakeups: AtomicU64,
}

/// Reclaim's event counters, summed over the CPUs ([`Kmem::reclaim_events`]): the
/// `/proc/vmstat` lines of reclaim and a few of kmem's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// `allocstall_<zone>`: direct reclaims, by the highest zone of the allocation
    /// (indexed by `ZoneType as usize`).
    pub allocstall: [u64; MAX_NR_ZONES],
    /// `pgsteal_kswapd` (and `pgscan_kswapd`: kmem has no LRU, see `proc::vmstat`): pages
    /// kswapd's passes got back.
    pub pgsteal_kswapd: u64,
    /// `pgsteal_direct` (and `pgscan_direct`): pages direct reclaim got back.
    pub pgsteal_direct: u64,
    /// `slabs_scanned`: objects shrinkers were asked to scan.
    pub slabs_scanned: u64,
    /// `kswapd_low_wmark_hit_quickly`: kswapd was woken again before it could sleep.
    pub kswapd_low_wmark_hit_quickly: u64,
    /// `kswapd_high_wmark_hit_quickly`: kswapd found the node below high again when it went
    /// to sleep.
    pub kswapd_high_wmark_hit_quickly: u64,
    /// `pageoutrun`: kswapd balancing passes.
    pub pageoutrun: u64,
    /// Shrinker calls (`count_objects`) made by reclaim.
    pub shrinker_calls: u64,
    /// Shrinkers skipped because the allocation's context forbade them (`GFP_NOFS` and a
    /// shrinker that needs the filesystem, `GFP_NOIO` and one that needs I/O).
    pub shrinker_skipped: u64,
    /// Pages the built-in slab shrinker gave back (empty slabs).
    pub slab_pages_reclaimed: u64,
    /// Sweeps of the built-in slab shrinker (reclaim passes that looked at every cache).
    pub slab_sweeps: u64,
    /// Those of them that flushed every CPU's sheaves (`run_on_cpu` on each CPU, per cache):
    /// the lowest-priority pass, at most once per slow-path entry.
    pub slab_cpu_flushes: u64,
    /// Out-of-memory events (`out_of_memory` calls whose notifiers freed nothing).
    pub oom: u64,
    /// Pages OOM notifiers reported freed.
    pub oom_notifier_freed: u64,
    /// `__GFP_NOFAIL` allocations that had to sleep for memory.
    pub nofail_waits: u64,
    /// Times such a sleeper was woken.
    pub nofail_wakeups: u64,
}

impl ReclaimStats {
    /// `allocstall` summed over zones.
    pub fn allocstall_total(&self) -> u64 {
        self.allocstall.iter().sum()
    }
}

/// kswapd's per-node state (`pgdat->kswapd_order`, `kswapd_highest_zoneidx`, `kswapd_failures`).
/// Four bytes, kept in the node's padding (`Node::kswapd`).
#[derive(Debug, Default)]
pub(crate) struct KswapdNode {
    /// A wake-up not yet taken by kswapd.
    pub(crate) pending: AtomicBool,
    /// Highest order requested since the last run.
    pub(crate) order: AtomicU8,
    /// Highest zone index requested plus one (0: none).
    pub(crate) highest: AtomicU8,
    /// Balancing passes in a row that reclaimed nothing.
    pub(crate) failures: AtomicU8,
}

impl KswapdNode {
    crate::sync::const_fn_unless_loom! {
        /// Asleep, nothing requested.
        pub(crate) fn new() -> Self {
            Self {
                pending: AtomicBool::new(false),
                order: AtomicU8::new(0),
                highest: AtomicU8::new(0),
                failures: AtomicU8::new(0),
            }
        }
    }
}

/// The shrinker and OOM-notifier tables: a few KiB, allocated from the page allocator by the
/// first registration (managed memory, never freed), so that machines without any keep their
/// boot layout.
pub(crate) struct ReclaimTables {
    pub(crate) shrinkers: shrinker::ShrinkerTable,
    pub(crate) oom: oom::OomTable,
}

/// Everything reclaim keeps in the machine state.
pub(crate) struct ReclaimState {
    /// Address of the [`ReclaimTables`], 0 until the first registration.
    tables: AtomicUsize,
    /// The per-CPU [`ReclaimEvents`] (`PercpuPtr` parts; chunk 0 until `reclaim_init`).
    ev_chunk: AtomicUsize,
    ev_off: AtomicU32,
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
        f.debug_struct("ReclaimState").finish_non_exhaustive()
    }
}

impl ReclaimState {
    pub(crate) fn new() -> Self {
        Self {
            tables: AtomicUsize::new(0),
            ev_chunk: AtomicUsize::new(0),
            ev_off: AtomicU32::new(0),
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

    /// The shrinker and OOM-notifier tables, once the first registration allocated them.
    #[inline]
    pub(crate) fn reclaim_tables(&self) -> Option<&'static ReclaimTables> {
        let p = self.reclaim().tables.load(Ordering::Acquire);
        // SAFETY: a non-zero address is that of tables written by `reclaim_tables_or_alloc`
        // in pages never freed, which live as long as the machine's RAM (the returned
        // `'static` is the machine's lifetime: callers hold `&self` or a handle borrowing it).
        (p != 0).then(|| unsafe { &*(p as *const ReclaimTables) })
    }

    /// The tables, allocating them (`GFP_KERNEL`) if this is the first registration.
    pub(crate) fn reclaim_tables_or_alloc(&self) -> Option<&'static ReclaimTables> {
        if let Some(t) = self.reclaim_tables() {
            return Some(t);
        }
        let pages = core::mem::size_of::<ReclaimTables>().div_ceil(PAGE_SIZE).next_power_of_two();
        let order = Order::new(pages.trailing_zeros())?;
        let va = self.__get_free_pages(Gfp::KERNEL | Gfp::ZERO, order).ok()?;
        let p = va.as_mut_ptr::<ReclaimTables>();
        // SAFETY: `va` is a fresh direct-map block of `order` pages, page aligned and at
        // least as large as the tables (computed above), ours alone until published.
        unsafe { p.write(ReclaimTables { shrinkers: shrinker::ShrinkerTable::new(), oom: oom::OomTable::new() }) };
        match self.reclaim().tables.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            // SAFETY: another registration published its tables first: the block is ours,
            // never published, and nothing refers to it.
            Err(_) => unsafe { self.free_pages(va, order) },
        }
        self.reclaim_tables()
    }

    /// Allocates the per-CPU event counters (end of boot). Without them (the per-CPU
    /// allocator failed) reclaim works and counts nothing.
    pub(crate) fn reclaim_init(&self) {
        let size = core::mem::size_of::<ReclaimEvents>();
        if let Ok(p) = self.__alloc_percpu_gfp(size, 8, Gfp::KERNEL | Gfp::NOWARN) {
            let (chunk, off) = p.to_raw();
            self.reclaim().ev_off.store(off, Ordering::Relaxed);
            self.reclaim().ev_chunk.store(chunk, Ordering::Release);
        }
    }

    /// CPU `cpu`'s event counters.
    #[inline]
    fn events_of(&self, cpu: usize) -> Option<&ReclaimEvents> {
        let r = self.reclaim();
        let chunk = r.ev_chunk.load(Ordering::Acquire);
        if chunk == 0 {
            return None;
        }
        let p = crate::percpu::PercpuPtr::from_raw(chunk, r.ev_off.load(Ordering::Relaxed));
        // SAFETY: the allocation lives as long as the machine (never freed), `cpu` is below
        // nr_cpus, and each CPU's copy is zeroed memory of the right size and alignment:
        // atomics, shared by reference only.
        Some(unsafe { &*(self.per_cpu_ptr_unchecked(p, cpu) as *const ReclaimEvents) })
    }

    /// Adds `n` to the counter `f` picks, on the current CPU's copy (which CPU does not
    /// matter for a sum: no pinning, an atomic add).
    #[inline]
    pub(crate) fn count_reclaim(&self, f: impl FnOnce(&ReclaimEvents) -> &AtomicU64, n: u64) {
        if let Some(e) = self.events_of(self.platform().current_cpu().index()) {
            f(e).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reclaim's event counters, summed over the CPUs.
    pub fn reclaim_events(&self) -> ReclaimStats {
        let mut t = ReclaimStats::default();
        for cpu in 0..self.nr_cpus() {
            let Some(e) = self.events_of(cpu) else { break };
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            for (i, a) in e.allocstall.iter().enumerate() {
                t.allocstall[i] += g(a);
            }
            t.pgsteal_kswapd += g(&e.pgsteal_kswapd);
            t.pgsteal_direct += g(&e.pgsteal_direct);
            t.slabs_scanned += g(&e.slabs_scanned);
            t.kswapd_low_wmark_hit_quickly += g(&e.kswapd_low_wmark_hit_quickly);
            t.kswapd_high_wmark_hit_quickly += g(&e.kswapd_high_wmark_hit_quickly);
            t.pageoutrun += g(&e.pageoutrun);
            t.shrinker_calls += g(&e.shrinker_calls);
            t.shrinker_skipped += g(&e.shrinker_skipped);
            t.slab_pages_reclaimed += g(&e.slab_pages_reclaimed);
            t.slab_sweeps += g(&e.slab_sweeps);
            t.slab_cpu_flushes += g(&e.slab_cpu_flushes);
            t.oom += g(&e.oom);
            t.oom_notifier_freed += g(&e.oom_notifier_freed);
            t.nofail_waits += g(&e.nofail_waits);
            t.nofail_wakeups += g(&e.nofail_wakeups);
        }
        t
    }

    /// `allocstall` summed over zones.
    pub fn allocstall(&self) -> u64 {
        self.reclaim_events().allocstall_total()
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
