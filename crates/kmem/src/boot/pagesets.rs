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
        unsafe { zone.set_pagesets(base.as_ptr(), nr_cpus) };
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
