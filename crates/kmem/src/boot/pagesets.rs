//! Boot-time setup of the per-CPU pagesets (`setup_zone_pageset` / `zone_pcp_init`).
//!
//! Each populated zone gets one [`PerCpuPages`] per CPU, carved from memblock on the zone's
//! node before the buddy lists exist (Linux allocates them with `alloc_percpu`; kmem carves
//! them so the page allocator does not depend on the per-CPU allocator). Batch and high are
//! set once watermarks are known.

use core::ptr::NonNull;

use crate::boot::{Memblock, MemblockError};
use crate::mm::node::Node;
use crate::mm::pcp::{zone_batchsize, zone_highsize, PerCpuPages, MIN_PERCPU_PAGELIST_HIGH_FRACTION};
use crate::mm::zone::{Wmark, Zone};
use crate::platform::DirectMap;
use crate::sync::{const_fn_unless_loom, AtomicUsize, Ordering};

/// A zone's pagesets: an array of [`PerCpuPages`], one per CPU, carved at boot (the
/// mechanism under `Zone::pageset`, which stays free of `unsafe`).
#[derive(Debug)]
pub(crate) struct Pagesets {
    base: AtomicUsize,
    len: AtomicUsize,
}

impl Pagesets {
    const_fn_unless_loom! {
        /// No pagesets (a zone without memory, or before boot carves them).
        pub(crate) fn new() -> Self {
            Self { base: AtomicUsize::new(0), len: AtomicUsize::new(0) }
        }
    }

    /// CPU `cpu`'s pageset, if there are pagesets and `cpu` has one.
    #[inline]
    pub(crate) fn get(&self, cpu: usize) -> Option<&PerCpuPages> {
        // `len` is 0 until `install` published the base before it: one test covers both.
        if cpu >= self.len.load(Ordering::Acquire) {
            return None;
        }
        let base = self.base.load(Ordering::Relaxed) as *const PerCpuPages;
        // SAFETY: a non-zero `len` was stored (release) after `base`, which points to `len`
        // initialised pagesets carved at boot that live as long as the machine (contract of
        // `install`), so is not null (said to the compiler, so that the `Option` needs no
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
    /// The pagesets are installed and `cpu` is below their count.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked(&self, cpu: usize) -> &PerCpuPages {
        debug_assert!(cpu < self.len.load(Ordering::Acquire), "pageset {cpu} not installed");
        let base = self.base.load(Ordering::Relaxed) as *const PerCpuPages;
        // SAFETY: the caller's contract: `base` points to installed pagesets (`install`'s
        // contract: they live as long as the machine) and `cpu` is in range.
        unsafe { &*base.add(cpu) }
    }

    /// How many pagesets (0 until installed).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Installs `n` pagesets at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to `n` initialised [`PerCpuPages`] that stay valid, and are used for
    /// nothing else, for the life of the machine.
    pub(crate) unsafe fn install(&self, base: *const PerCpuPages, n: usize) {
        self.base.store(base as usize, Ordering::Relaxed);
        self.len.store(n, Ordering::Release);
    }
}

/// Carves and installs pagesets for every zone of `node` with present pages.
pub(super) fn carve(mb: &mut Memblock, dm: DirectMap, node: &Node, nr_cpus: usize) -> Result<(), MemblockError> {
    for zone in node.zones.iter().filter(|z| z.is_populated()) {
        let bytes = (nr_cpus * core::mem::size_of::<PerCpuPages>()) as u64;
        let pa = mb.alloc(bytes, 64, Some(node.id() as u8))?;
        let Some(va) = dm.phys_to_virt(pa) else { return Err(MemblockError::NoSpace { size: bytes, align: 64 }) };
        let base = NonNull::new(va.as_mut_ptr::<PerCpuPages>()).expect("direct map address is non-null");
        for cpu in 0..nr_cpus {
            // SAFETY: memblock just carved `nr_cpus` pagesets' worth of mapped RAM below the
            // direct-map limit for us alone; 64-byte alignment suits `PerCpuPages`.
            unsafe { base.as_ptr().add(cpu).write(PerCpuPages::new()) };
        }
        // SAFETY: `base` holds `nr_cpus` initialised pagesets in carved memory that lives as
        // long as the machine and is used for nothing else.
        unsafe { zone.pagesets().install(base.as_ptr(), nr_cpus) };
    }
    Ok(())
}

/// `zone_set_pageset_high_and_batch()` for every zone of `node`; `cpus_of_node` CPUs share
/// the node's memory; `managed(zone)` is what the zone manages (deferred frames included).
pub(super) fn set_high_and_batch(node: &Node, nr_cpus: usize, cpus_of_node: usize, managed: impl Fn(&Zone) -> usize) {
    let split = if cpus_of_node == 0 { nr_cpus } else { cpus_of_node };
    for zone in node.zones.iter().filter(|z| z.is_populated()) {
        let managed = managed(zone);
        let batch = zone_batchsize(managed).max(1);
        let low = zone.wmark(Wmark::Low);
        let high_min = zone_highsize(low, managed, batch, split, 0);
        let high_max = zone_highsize(low, managed, batch, split, MIN_PERCPU_PAGELIST_HIGH_FRACTION);
        for cpu in 0..nr_cpus {
            if let Some(pcp) = zone.pageset(cpu) {
                pcp.update(batch, high_min, high_max);
            }
        }
    }
}
