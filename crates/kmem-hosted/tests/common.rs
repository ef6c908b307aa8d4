//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use kmem::{Order, ZoneType};
use kmem_hosted::Machine;

/// buddyinfo numbers of every populated zone: (node, zone, nr_free per order), after draining
/// the per-CPU lists (so that every free page is back in the buddy lists).
pub fn buddyinfo(m: &Machine) -> Vec<(usize, ZoneType, [usize; 11])> {
    m.drain_all_pages();
    m.zones()
        .filter(|z| z.is_populated())
        .map(|z| (z.node(), z.zone_type(), std::array::from_fn(|o| z.nr_free(Order::new(o as u32).unwrap()))))
        .collect()
}

/// Free pages over all zones: buddy lists plus per-CPU lists.
pub fn free_pages(m: &Machine) -> usize {
    m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum()
}
