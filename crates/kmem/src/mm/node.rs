//! A NUMA node (`pg_data_t`): its zones and its zonelists.
//!
//! The fallback zonelist lists this node's zones from the highest type down, then every other
//! node's zones likewise, nearest node first (`build_zonelists` in node order). The
//! no-fallback list, used by `__GFP_THISNODE`, has only this node's zones.

#![forbid(unsafe_code)]

use crate::mm::page::MAX_NUMNODES;
use crate::mm::zone::Zone;
use crate::mm::zone_type::{ZoneType, MAX_NR_ZONES};
use crate::sync::{const_fn_unless_loom, AtomicIsize, Ordering};

/// Capacity of a zonelist.
const MAX_ZONEREFS: usize = MAX_NUMNODES * MAX_NR_ZONES;

/// A reference to a zone: node and zone type.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ZoneRef {
    /// Node id.
    pub node: u8,
    /// Zone type index.
    pub zone: u8,
}

impl ZoneRef {
    /// The zone type.
    pub fn zone_type(self) -> ZoneType {
        ZoneType::ALL[self.zone as usize]
    }
}

/// An ordered list of zones to try.
#[derive(Debug)]
pub struct ZoneList {
    refs: [ZoneRef; MAX_ZONEREFS],
    len: usize,
}

impl ZoneList {
    const fn new() -> Self {
        Self { refs: [ZoneRef { node: 0, zone: 0 }; MAX_ZONEREFS], len: 0 }
    }
    fn push(&mut self, r: ZoneRef) {
        self.refs[self.len] = r;
        self.len += 1;
    }
    /// The first zone (the preferred one), if any.
    #[inline]
    pub fn first(&self) -> Option<ZoneRef> {
        (self.len != 0).then(|| self.refs[0])
    }
    /// The zones, in order.
    #[inline]
    pub fn as_slice(&self) -> &[ZoneRef] {
        &self.refs[..self.len]
    }
}

/// One node.
#[derive(Debug)]
pub struct Node {
    id: u8,
    /// Zone slots, indexed by [`ZoneType::index`]; unpopulated zones are empty.
    pub zones: [Zone; MAX_NR_ZONES],
    fallback: ZoneList,
    nofallback: ZoneList,
    distance: [u8; MAX_NUMNODES],
    /// Pages of reclaimable slabs on this node (`NR_SLAB_RECLAIMABLE_B`, in pages).
    pub(crate) nr_slab_reclaimable: AtomicIsize,
    /// Pages of unreclaimable slabs and large kmalloc blocks (`NR_SLAB_UNRECLAIMABLE_B`).
    pub(crate) nr_slab_unreclaimable: AtomicIsize,
    /// kswapd's state for this node (`reclaim/vmscan.rs`); 4 bytes, in the node's padding.
    pub(crate) kswapd: crate::reclaim::KswapdNode,
}

impl Node {
    const_fn_unless_loom! {
        /// An empty node.
        pub fn new(id: u8) -> Self {
            Self {
                id,
                zones: [
                    Zone::new(ZoneType::Dma, id),
                    Zone::new(ZoneType::Dma32, id),
                    Zone::new(ZoneType::Normal, id),
                    Zone::new(ZoneType::HighMem, id),
                    Zone::new(ZoneType::Movable, id),
                    Zone::new(ZoneType::Device, id),
                ],
                fallback: ZoneList::new(),
                nofallback: ZoneList::new(),
                distance: [0; MAX_NUMNODES],
                nr_slab_reclaimable: AtomicIsize::new(0),
                nr_slab_unreclaimable: AtomicIsize::new(0),
                kswapd: crate::reclaim::KswapdNode::new(),
            }
        }
    }

    /// Node id.
    pub fn id(&self) -> usize {
        self.id as usize
    }
    /// The zone of a type.
    pub fn zone(&self, zt: ZoneType) -> &Zone {
        &self.zones[zt.index()]
    }
    /// The fallback zonelist (`ZONELIST_FALLBACK`).
    pub fn zonelist(&self) -> &ZoneList {
        &self.fallback
    }
    /// This node only (`ZONELIST_NOFALLBACK`).
    pub fn zonelist_thisnode(&self) -> &ZoneList {
        &self.nofallback
    }
    /// `node_distance(self, other)`.
    pub fn distance(&self, other: usize) -> u8 {
        self.distance[other]
    }
    /// Pages of reclaimable slab on this node (zoneinfo's `nr_slab_reclaimable`).
    pub fn slab_reclaimable_pages(&self) -> usize {
        self.nr_slab_reclaimable.load(Ordering::Relaxed).max(0) as usize
    }
    /// Pages of unreclaimable slab on this node (`nr_slab_unreclaimable`).
    pub fn slab_unreclaimable_pages(&self) -> usize {
        self.nr_slab_unreclaimable.load(Ordering::Relaxed).max(0) as usize
    }
    /// Adds `pages` (may be negative) to the node's slab counter of the kind.
    pub(crate) fn mod_slab_pages(&self, reclaimable: bool, pages: isize) {
        let c = if reclaimable { &self.nr_slab_reclaimable } else { &self.nr_slab_unreclaimable };
        c.fetch_add(pages, Ordering::Relaxed);
    }
    /// Present pages over all zones.
    pub fn present_pages(&self) -> usize {
        self.zones.iter().map(Zone::present_pages).sum()
    }

    /// Builds both zonelists. `distance[n]` is the distance to node `n`, `nodes` the node count,
    /// `populated(node, zone)` whether that zone has memory.
    pub(crate) fn build_zonelists(&mut self, distance: &[u8], nodes: usize, populated: impl Fn(usize, usize) -> bool) {
        self.distance[..distance.len()].copy_from_slice(distance);
        let mut order = [0usize; MAX_NUMNODES];
        for (i, slot) in order.iter_mut().enumerate().take(nodes) {
            *slot = i;
        }
        let me = self.id as usize;
        // Local node first, then by distance, ties by node id (find_next_best_node).
        order[..nodes].sort_unstable_by_key(|&n| (n != me, distance[n], n));
        for &n in &order[..nodes] {
            for z in (0..MAX_NR_ZONES).rev() {
                if populated(n, z) {
                    let r = ZoneRef { node: n as u8, zone: z as u8 };
                    self.fallback.push(r);
                    if n == me {
                        self.nofallback.push(r);
                    }
                }
            }
        }
    }
}
