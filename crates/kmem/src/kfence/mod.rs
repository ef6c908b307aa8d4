//! KFENCE, the sampling memory-safety detector (Linux `mm/kfence/core.c`, `report.c`,
//! `Documentation/dev-tools/kfence.rst`).
//!
//! Every `sample_interval` milliseconds one slab or kmalloc allocation is served from the
//! KFENCE pool instead of its cache. A pool object lives alone on its page, placed against
//! the left or the right guard page at random; the rest of the page is filled with canary
//! bytes, checked when the object is freed. Guard pages are never mapped and a freed object's
//! page is unmapped, so an out-of-bounds access past a guard or a use after free faults; the
//! platform's page-fault handler calls [`Kmem::kfence_handle_page_fault`], which reports in
//! Linux's words (`BUG: KFENCE: out-of-bounds read in ...`), maps the page back and lets the
//! access continue, as Linux does. Bad frees (`invalid free`) and canary damage (`memory
//! corruption`) are found at free time. Each report is counted as
//! [`ReportKind::Kfence`](crate::ReportKind::Kfence), and per error type in
//! [`KfenceStats::errors`].
//!
//! # Where the pool lives
//!
//! Linux carves its pool from the linear map and changes the protection of its PTEs. kmem's
//! platforms give page-table operations only for the vmalloc range (the hosted direct map is
//! one `mmap` of the RAM memfd), so the pool is **a vmalloc area** of `2 * (num_objects + 1)`
//! pages (`kfence_init_pool`, listed in `/proc/vmallocinfo`, never freed), allocated at boot
//! once slab runs. Protection is [`Platform::unmap_kernel_pages`] (with the TLB flush) and
//! unprotection [`Platform::map_kernel_pages`] of the page's own frame, so no new platform
//! hook is needed and any platform whose vmalloc mappings are live (its page tables loaded
//! in the MMU) has KFENCE; `kmem-minimal`'s software-only tables are not, so its machines
//! boot without it. Page 0 and every odd page
//! are guard pages; object `i`'s page is `2 * (i + 1)`, as in Linux. `is_kfence_address` is a
//! range compare against the pool's header (one word of the machine state points to it); `is_vmalloc_addr` says false for
//! the pool, so `kvfree` and friends send its objects to `kfree`. The pool's metadata
//! (per-object state, the allocation and free records, the FIFO freelist, the frame of every
//! pool page) is one block from the page allocator.
//!
//! # The sampling gate and the fast paths
//!
//! Linux opens the gate with a timer and a static key that sends every allocation into
//! `__kfence_alloc` until one takes it. kmem has no timer: the gate is a deadline read on the
//! slab allocator's careful path (`slab_alloc_careful`, where failslab is also tested), which
//! every allocation reaches whose CPU sheaf is empty, every node request and every
//! allocation of a debug cache. The first of those after the deadline takes the gate
//! and the next deadline is `sample_interval` later. The fast paths are unchanged (no load,
//! no branch: `scripts/cost_check.sh` counts the same instructions with KFENCE on). The
//! difference from Linux: a workload that never empties a sheaf is sampled less often.
//! [`Kmem::kfence_force_next`] (a test hook) makes the next allocation of any cache a KFENCE
//! allocation: it marks every cache's machine word armed, as failslab does
//! (`KmemCache::ARMED`), so allocations take the careful path; the word stays armed until the
//! next KFENCE configuration call ([`Kmem::kfence_set_sample_interval`]).
//!
//! # Boot and runtime settings
//!
//! [`KfenceConfig`] in [`crate::boot::BootConfig::kfence`] is `kfence.sample_interval=` and
//! `CONFIG_KFENCE_NUM_OBJECTS`: `None` (the default) builds no pool, like a kernel without
//! `CONFIG_KFENCE` (the pool costs 2 MiB, and sampled objects behave differently under
//! `ksize`); a machine booted with interval 0 has a pool but KFENCE disabled, which
//! [`Kmem::kfence_set_sample_interval`] (the `/sys/module/kfence/parameters/sample_interval`
//! write) turns on or off at run time. Disabling stops new KFENCE allocations; objects
//! already in the pool are still checked when freed, and faults on the pool are still
//! handled (reported while enabled, silently mapped back when disabled, as Linux).
//!
//! # Differences from Linux
//!
//! - Reports name call sites (`file:line:col` of the kmem call, recorded by
//!   `#[track_caller]`) instead of stack traces; a fault's "function" is the faulting
//!   instruction's address, which the platform passes ([`KfenceFault::ip`]).
//! - No `skipped allocations (covered)` heuristic (the counter is always 0), no
//!   `kmem_cache_alloc_bulk` sampling.
//! - `SLAB_TYPESAFE_BY_RCU` caches are not sampled (counted as incompatible): Linux serves
//!   them and defers `kfence_guarded_free` by a grace period, so RCU readers never fault on
//!   the freed object; kmem leaves them out rather than add that deferral.
//! - `kmem_cache_destroy` of a cache with live KFENCE objects makes them zombies
//!   (`zombie allocations`; their page is protected, a later access is a use-after-free
//!   report and a later free an invalid free), and forgets the cache of its freed ones
//!   (`cache=<destroyed>`), as `kfence_shutdown_cache` does.

mod core_ops;
#[cfg(all(test, loom))]
mod loom_tests;
mod meta;
mod report;

use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{const_fn_unless_loom, AtomicUsize, Ordering};

pub(crate) use meta::KfencePool;
pub use meta::{ObjectState, KFENCE_ERROR_NAMES};

/// `CONFIG_KFENCE_SAMPLE_INTERVAL`: Linux's default interval, milliseconds.
pub const DEFAULT_SAMPLE_INTERVAL_MS: u64 = 100;
/// `CONFIG_KFENCE_NUM_OBJECTS`: Linux's default pool size, objects.
pub const DEFAULT_NUM_OBJECTS: usize = 255;
/// The largest pool kmem builds (objects).
pub const MAX_NUM_OBJECTS: usize = 16383;

/// KFENCE's boot settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KfenceConfig {
    /// `kfence.sample_interval=` in milliseconds; 0 builds the pool but leaves KFENCE
    /// disabled until [`Kmem::kfence_set_sample_interval`].
    pub sample_interval_ms: u64,
    /// `CONFIG_KFENCE_NUM_OBJECTS`: objects in the pool (1 ..= [`MAX_NUM_OBJECTS`]).
    pub num_objects: usize,
}

impl Default for KfenceConfig {
    /// Linux's defaults: 100 ms, 255 objects (a 2 MiB pool).
    fn default() -> Self {
        Self { sample_interval_ms: DEFAULT_SAMPLE_INTERVAL_MS, num_objects: DEFAULT_NUM_OBJECTS }
    }
}

/// Why the pool could not be built (reported as `kfence: failed to allocate pool` and left
/// off; the machine boots anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KfenceInitError {
    /// `num_objects` is 0 or above [`MAX_NUM_OBJECTS`].
    BadNumObjects(usize),
    /// The platform has no vmalloc range (nothing to protect pages with).
    NoVmallocArea,
    /// The pool or its metadata could not be allocated or mapped.
    NoMemory,
}

/// One fault on a kernel address, as the platform's page-fault handler sees it
/// (`kfence_handle_page_fault(addr, is_write, regs)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KfenceFault {
    /// The faulting address.
    pub addr: usize,
    /// A write (else a read).
    pub is_write: bool,
    /// The faulting instruction's address (0 if unknown): the report's "function".
    pub ip: usize,
}

/// `/sys/kernel/debug/kfence/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfenceStats {
    /// `enabled`: a pool exists and the interval is not 0.
    pub enabled: bool,
    /// `sample_interval` in milliseconds.
    pub sample_interval_ms: u64,
    /// Objects in the pool (0: no pool).
    pub num_objects: usize,
    /// `currently allocated`.
    pub allocated: u64,
    /// `total allocations`.
    pub allocs: u64,
    /// `total frees`.
    pub frees: u64,
    /// `zombie allocations`.
    pub zombies: u64,
    /// `total bugs`.
    pub bugs: u64,
    /// `skipped allocations (incompatible)`: the gate was open, the request was not for
    /// KFENCE (above a page, a DMA zone or cache, `__GFP_THISNODE` on a NUMA machine).
    pub skip_incompat: u64,
    /// `skipped allocations (capacity)`: the gate was open, the pool was full.
    pub skip_capacity: u64,
    /// `skipped allocations (covered)`: always 0 in kmem (no coverage heuristic).
    pub skip_covered: u64,
    /// Reports per error type, in [`KFENCE_ERROR_NAMES`] order (out-of-bounds,
    /// use-after-free, memory corruption, invalid access, invalid free).
    pub errors: [u64; 5],
}

/// KFENCE's word in the machine state: the address of the pool's metadata ([`KfencePool`],
/// 0: no pool), which holds the pool's range, the gate and the rest. One word, so that a
/// machine without KFENCE pays 8 bytes of state.
#[derive(Debug)]
pub(crate) struct KfenceCell {
    pub(crate) pool: AtomicUsize,
}

impl KfenceCell {
    const_fn_unless_loom! {
        /// No pool.
        pub(crate) fn new() -> Self {
            Self { pool: AtomicUsize::new(0) }
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// `is_kfence_address(addr)`: whether `addr` lies in this machine's KFENCE pool (guard
    /// pages included). A range compare.
    #[inline]
    pub fn is_kfence_address(&self, addr: *const u8) -> bool {
        self.kfence_pool().is_some_and(|p| p.contains(addr as usize))
    }

    /// `[__kfence_pool, __kfence_pool + KFENCE_POOL_SIZE)`: the pool's address range (guard
    /// pages included), if there is a pool.
    pub fn kfence_pool_range(&self) -> Option<(crate::VirtAddr, crate::VirtAddr)> {
        self.kfence_pool().map(|p| (crate::VirtAddr::new(p.start), crate::VirtAddr::new(p.start + p.len)))
    }

    /// The pool's metadata, once built.
    #[inline]
    pub(crate) fn kfence_pool(&self) -> Option<&KfencePool> {
        let p = self.state().kfence.pool.load(Ordering::Acquire);
        // SAFETY: `pool` is 0 or the address of a metadata block initialised by
        // `kfence_init` before it was published (Release) and never freed while the machine
        // lives.
        (p != 0).then(|| unsafe { &*(p as *const KfencePool) })
    }

    /// Whether KFENCE hands out objects: a pool exists and the interval is not 0.
    pub fn kfence_enabled(&self) -> bool {
        self.kfence_pool().is_some_and(|p| p.interval_ms.load(Ordering::Relaxed) != 0)
    }

    /// Writes `/sys/module/kfence/parameters/sample_interval`: milliseconds between sampled
    /// allocations, 0 disables KFENCE (objects already out are still checked). Also ends the
    /// armed state [`Kmem::kfence_force_next`] left once nothing forced is pending. Without a
    /// pool (KFENCE off at boot) it changes nothing and returns false.
    pub fn kfence_set_sample_interval(&self, ms: u64) -> bool {
        let Some(k) = self.kfence_pool() else { return false };
        k.interval_ms.store(ms, Ordering::Relaxed);
        k.next_ns.store(self.platform().now_ns().saturating_add(ms.saturating_mul(1_000_000)), Ordering::Relaxed);
        self.kfence_rearm();
        true
    }

    /// The sample interval in milliseconds (0: disabled or no pool).
    pub fn kfence_sample_interval(&self) -> u64 {
        self.kfence_pool().map_or(0, |p| p.interval_ms.load(Ordering::Relaxed))
    }

    /// Test hook (kfence_test's "wait for the next sample"): the next slab or kmalloc
    /// allocation that KFENCE can serve comes from the pool, whatever the interval (even 0,
    /// while a pool exists). Every cache's fast path is sent to the careful path until the
    /// next [`Kmem::kfence_set_sample_interval`]. Returns false without a pool.
    pub fn kfence_force_next(&self) -> bool {
        let Some(k) = self.kfence_pool() else { return false };
        k.forced.fetch_add(1, Ordering::AcqRel);
        self.kfence_rearm();
        true
    }

    /// Arms the caches while forced allocations are pending, disarms them otherwise.
    fn kfence_rearm(&self) {
        let Some(k) = self.kfence_pool() else { return };
        let want = k.forced.load(Ordering::Acquire) > 0;
        if k.armed.swap(want, Ordering::AcqRel) != want {
            self.rekey_caches();
        }
    }

    /// `/sys/kernel/debug/kfence/stats` as numbers.
    pub fn kfence_stats(&self) -> KfenceStats {
        let Some(pool) = self.kfence_pool() else { return KfenceStats::default() };
        let c = |i: usize| pool.counters[i].load(Ordering::Relaxed);
        KfenceStats {
            enabled: self.kfence_enabled(),
            sample_interval_ms: self.kfence_sample_interval(),
            num_objects: pool.nr,
            allocated: c(meta::C_ALLOCATED),
            allocs: c(meta::C_ALLOCS),
            frees: c(meta::C_FREES),
            zombies: c(meta::C_ZOMBIES),
            bugs: c(meta::C_BUGS),
            skip_incompat: c(meta::C_SKIP_INCOMPAT),
            skip_capacity: c(meta::C_SKIP_CAPACITY),
            skip_covered: 0,
            errors: core::array::from_fn(|i| pool.errors[i].load(Ordering::Relaxed)),
        }
    }

    /// Writes `/sys/kernel/debug/kfence/objects`: every object that is or was allocated,
    /// in Linux's layout (`kfence-#N: 0x...-0x..., size=.., cache=..`, then the allocation
    /// and free records), separated by dashed lines.
    pub fn kfence_write_objects(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let Some(pool) = self.kfence_pool() else { return Ok(()) };
        let now = self.platform().now_ns();
        for i in 0..pool.nr {
            let snap = pool.snapshot(i);
            if snap.state == ObjectState::Unused {
                continue;
            }
            report::print_object(w, &snap, now)?;
            w.write_str("---------------------------------\n")?;
        }
        Ok(())
    }
}
