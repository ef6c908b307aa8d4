//! Boot-time setup of the per-CPU pagesets (`setup_zone_pageset` / `zone_pcp_init`).
//!
//! Each populated zone gets one [`PerCpuPages`] per CPU, carved from memblock on the zone's
//! node before the buddy lists exist (Linux allocates them with `alloc_percpu`; kmem carves
//! them so the page allocator does not depend on the per-CPU allocator). Batch and high are
//! set once watermarks are known.
//!
//! **Written as each CPU comes up**, on a platform whose CPUs come up later
//! ([`Platform::cpus_come_up_later`](crate::Platform::cpus_come_up_later): a hosted machine
//! with a CPU per thread) over RAM that reads as zero: boot writes the pagesets of the CPUs
//! online then, and [`Kmem::cpu_up_prepare`](crate::Kmem::cpu_up_prepare) each other's as
//! its CPU comes up ([`Pagesets::prepare`]), with the zone's current batch and high
//! (computed again then: `Kmem::zone_pcp_sizes`). A process machine of 256
//! possible CPUs so touches 16 pages fewer at start-up (16 page faults of its first
//! `malloc`: about 5% of what `ls /` pays for kmem). Until then its pageset is zeroed RAM,
//! marked unwritten, which [`Pagesets::get`] does not hand out: the walkers (drains, counts,
//! `/proc/zoneinfo`) pass over it as over a CPU without a pageset. Only the pinned CPU's
//! own fast paths use [`Pagesets::get_unchecked`], and a CPU is prepared before its first
//! section (the platform's promise, as for the slab fast table).

use core::ptr::NonNull;

use crate::boot::{Memblock, MemblockError};
use crate::mm::node::Node;
use crate::mm::pcp::{zone_batchsize, zone_highsize, PerCpuPages, MIN_PERCPU_PAGELIST_HIGH_FRACTION};
use crate::mm::zone::{Wmark, Zone};
use crate::platform::DirectMap;
use crate::sync::{const_fn_unless_loom, AtomicU32, AtomicUsize, Ordering};

/// A zone's pagesets: an array of [`PerCpuPages`], one per CPU, carved at boot (the
/// mechanism under `Zone::pageset`, which stays free of `unsafe`).
#[derive(Debug)]
pub(crate) struct Pagesets {
    base: AtomicUsize,
    /// How many pagesets (CPUs) there are.
    len: AtomicU32,
    /// Every written pageset's CPU is below this: [`Pagesets::get`] looks no further, so that
    /// the walkers do not read (and fault in) the pages of pagesets never written.
    end: AtomicU32,
}

impl Pagesets {
    const_fn_unless_loom! {
        /// No pagesets (a zone without memory, or before boot carves them).
        pub(crate) fn new() -> Self {
            Self { base: AtomicUsize::new(0), len: AtomicU32::new(0), end: AtomicU32::new(0) }
        }
    }

    /// CPU `cpu`'s pageset, if there are pagesets and `cpu`'s is written (its CPU came up,
    /// or boot wrote it: module docs).
    #[inline]
    pub(crate) fn get(&self, cpu: usize) -> Option<&PerCpuPages> {
        if cpu >= self.end.load(Ordering::Acquire) as usize {
            return None;
        }
        self.get_any(cpu).filter(|p| p.is_ready())
    }

    /// CPU `cpu`'s pageset, written or not.
    #[inline]
    fn get_any(&self, cpu: usize) -> Option<&PerCpuPages> {
        // `len` is 0 until `install` published the base before it: one test covers both.
        if cpu >= self.len.load(Ordering::Acquire) as usize {
            return None;
        }
        let base = self.base.load(Ordering::Relaxed) as *const PerCpuPages;
        // SAFETY: a non-zero `len` was stored (release) after `base`, which points to `len`
        // pagesets carved at boot that live as long as the machine, each initialised or
        // zeroed RAM, a valid `PerCpuPages` too (all atomics: contract of `install`), so is
        // not null (said to the compiler, so that the `Option` needs no
        // second test); `cpu` is in range.
        unsafe {
            core::hint::assert_unchecked(!base.is_null());
            Some(&*base.add(cpu))
        }
    }

    /// CPU `cpu`'s pageset, with no test.
    ///
    /// # Safety
    ///
    /// The pagesets are installed, `cpu` is below their count, and its pageset is written
    /// (its CPU came up: a pinned CPU's is).
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked(&self, cpu: usize) -> &PerCpuPages {
        debug_assert!(cpu < self.len.load(Ordering::Acquire) as usize, "pageset {cpu} not installed");
        let base = self.base.load(Ordering::Relaxed) as *const PerCpuPages;
        // SAFETY: the caller's contract: `base` points to installed pagesets (`install`'s
        // contract: they live as long as the machine) and `cpu` is in range.
        let pcp = unsafe { &*base.add(cpu) };
        debug_assert!(pcp.is_ready(), "pageset {cpu} used before its CPU came up");
        pcp
    }

    /// How many pagesets (0 until installed).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// Sets the batch and high of every written pageset (those written later compute
    /// theirs as they are: [`Pagesets::prepare`]).
    pub(crate) fn update_written(&self, batch: usize, high_min: usize, high_max: usize) {
        for cpu in 0..self.end.load(Ordering::SeqCst) as usize {
            if let Some(pcp) = self.get(cpu) {
                pcp.update(batch, high_min, high_max);
            }
        }
    }

    /// Writes CPU `cpu`'s pageset if boot left it unwritten (the CPU comes up), with the
    /// zone's batch and high as `sizes` computes them now. Idempotent. A racing hot-add
    /// (which changes the sizes' inputs, then [`Pagesets::update_written`]) either finds it
    /// written and updates it, or changed the inputs before the loop below computes them
    /// last.
    pub(crate) fn prepare(&self, cpu: usize, sizes: impl Fn() -> (usize, usize, usize)) {
        let Some(pcp) = self.get_any(cpu) else { return };
        if pcp.is_ready() || !pcp.write_once() {
            return;
        }
        self.end.fetch_max(cpu as u32 + 1, Ordering::SeqCst);
        let mut p = sizes();
        loop {
            pcp.update(p.0, p.1, p.2);
            let now = sizes();
            if now == p {
                return;
            }
            p = now;
        }
    }

    /// Installs `n` pagesets at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to `n` [`PerCpuPages`], each initialised or zeroed RAM (unwritten,
    /// for [`Pagesets::prepare`]), that stay valid, and are used for nothing else, for the
    /// life of the machine; those from `written_end` on are unwritten.
    pub(crate) unsafe fn install(&self, base: *const PerCpuPages, n: usize, written_end: usize) {
        debug_assert!(written_end <= n && n <= u32::MAX as usize);
        self.base.store(base as usize, Ordering::Relaxed);
        self.end.store(written_end as u32, Ordering::Relaxed);
        self.len.store(n as u32, Ordering::Release);
    }
}

/// Carves and installs pagesets for every zone of `node` with present pages, writing those
/// of the CPUs for which `write_now` holds (the others stay zeroed RAM until their CPU comes
/// up: module docs).
pub(super) fn carve(
    mb: &mut Memblock,
    dm: DirectMap,
    node: &Node,
    nr_cpus: usize,
    write_now: impl Fn(usize) -> bool,
) -> Result<(), MemblockError> {
    for zone in node.zones.iter().filter(|z| z.is_populated()) {
        let bytes = (nr_cpus * core::mem::size_of::<PerCpuPages>()) as u64;
        let pa = mb.alloc(bytes, 64, Some(node.id() as u8))?;
        let Some(va) = dm.phys_to_virt(pa) else { return Err(MemblockError::NoSpace { size: bytes, align: 64 }) };
        let base = NonNull::new(va.as_mut_ptr::<PerCpuPages>()).expect("direct map address is non-null");
        let mut end = 0;
        for cpu in (0..nr_cpus).filter(|&c| write_now(c)) {
            // SAFETY: memblock just carved `nr_cpus` pagesets' worth of mapped RAM below the
            // direct-map limit for us alone; 64-byte alignment suits `PerCpuPages`.
            unsafe { base.as_ptr().add(cpu).write(PerCpuPages::new()) };
            end = cpu + 1;
        }
        // SAFETY: `base` holds `nr_cpus` pagesets in carved memory that lives as long as the
        // machine and is used for nothing else: initialised (all below `end`, the others
        // never read before they are written), or (the caller's `write_now` said no) zeroed
        // RAM.
        unsafe { zone.pagesets().install(base.as_ptr(), nr_cpus, end) };
    }
    Ok(())
}

/// `zone_set_pageset_high_and_batch()`'s sizes for `zone`: its batch, `high_min` and
/// `high_max`, for a zone managing `managed` pages (deferred frames included) on a node
/// whose memory `cpus_of_node` of the `nr_cpus` CPUs share.
pub(crate) fn pcp_sizes(zone: &Zone, managed: usize, nr_cpus: usize, cpus_of_node: usize) -> (usize, usize, usize) {
    let split = if cpus_of_node == 0 { nr_cpus } else { cpus_of_node };
    let batch = zone_batchsize(managed).max(1);
    let low = zone.wmark(Wmark::Low);
    let high_min = zone_highsize(low, managed, batch, split, 0);
    let high_max = zone_highsize(low, managed, batch, split, MIN_PERCPU_PAGELIST_HIGH_FRACTION);
    (batch, high_min, high_max)
}

/// `zone_set_pageset_high_and_batch()` for every zone of `node`: [`pcp_sizes`] for every
/// written pageset.
pub(super) fn set_high_and_batch(node: &Node, nr_cpus: usize, cpus_of_node: usize, managed: impl Fn(&Zone) -> usize) {
    for zone in node.zones.iter().filter(|z| z.is_populated()) {
        let (batch, high_min, high_max) = pcp_sizes(zone, managed(zone), nr_cpus, cpus_of_node);
        zone.pagesets().update_written(batch, high_min, high_max);
    }
}
