//! What a replay shows: per-cache slab figures (waste, objects per slab against the trace's
//! sizes), and the audit that every live object is where the machine says it is.

use std::collections::HashMap;

use kmem::kmalloc::{KmallocType, KMALLOC_MAX_CACHE_SIZE};
use kmem::proc::slab_info;
use kmem::{Gfp, KmemCache, PAGE_SIZE};

use crate::op::CacheDef;
use crate::replay::Replayer;

/// One trace cache as kmem laid it out (serialized as a `caches` entry of the JSON report).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CacheRow {
    /// The trace's name.
    pub name: String,
    /// The trace's `bytes_req` (object size on the traced kernel).
    pub bytes_req: u32,
    /// The trace's `bytes_alloc` (slot size on the traced kernel; kmem's object size).
    pub bytes_alloc: u32,
    /// kmem's slot size (`objsize` in slabinfo).
    pub objsize: usize,
    /// kmem's objects per slab.
    pub objperslab: usize,
    /// kmem's pages per slab.
    pub pagesperslab: usize,
    /// Objects the replay holds in the cache.
    pub live: u64,
    /// slabinfo's active objects (objects free on CPUs' active slabs count as active).
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Slabs.
    pub num_slabs: usize,
    /// Bytes of slab memory not holding a live object's requested bytes:
    /// slab bytes - live * bytes_req.
    pub waste_bytes: u64,
    /// Internal fragmentation of one object: (objsize - bytes_req) / objsize, in percent.
    #[serde(serialize_with = "crate::json::ser_f3")]
    pub frag_pct: f64,
    /// Bytes at the end of each slab no object fits in.
    pub slab_tail_bytes: usize,
    /// Later allocations with another `bytes_alloc` (the first was kept).
    pub size_mismatches: u64,
    /// Allocations over a live object of this cache (its free was not traced).
    pub missed_frees: u64,
}

/// The rows of every cache the replay made, most waste first.
pub fn cache_rows(rp: &Replayer<'_>, defs: &[CacheDef]) -> Vec<CacheRow> {
    let m = rp.machine();
    let mut rows: Vec<CacheRow> = defs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let c = rp.cache(i)?;
            let info = slab_info(m, c);
            let slab_bytes = (info.num_slabs * info.pagesperslab * PAGE_SIZE) as u64;
            let live = rp.live_in_cache(i);
            Some(CacheRow {
                name: d.name.clone(),
                bytes_req: d.bytes_req,
                bytes_alloc: d.bytes_alloc,
                objsize: info.objsize,
                objperslab: info.objperslab,
                pagesperslab: info.pagesperslab,
                live,
                active_objs: info.active_objs,
                num_objs: info.num_objs,
                num_slabs: info.num_slabs,
                waste_bytes: slab_bytes.saturating_sub(live * d.bytes_req as u64),
                frag_pct: 100.0 * info.objsize.saturating_sub(d.bytes_req as usize) as f64 / info.objsize.max(1) as f64,
                slab_tail_bytes: (info.pagesperslab * PAGE_SIZE).saturating_sub(info.objperslab * info.objsize),
                size_mismatches: d.size_mismatches,
                missed_frees: rp.missed_in_cache(i),
            })
        })
        .collect();
    rows.sort_by(|a, b| b.waste_bytes.cmp(&a.waste_bytes).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// A cache whose in-use objects (after flushing the CPUs' slabs) differ from the replay's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditMismatch {
    /// The kmem cache's name.
    pub cache: String,
    /// Objects the replay holds in it.
    pub expected: u64,
    /// Objects the machine counts in use.
    pub found: u64,
}

/// Whether the machine's counters agree with what the replay holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    /// Live objects the replay holds (slab and kmalloc).
    pub live_objects: u64,
    /// Live page blocks the replay holds.
    pub live_blocks: u64,
    /// Caches checked (every trace cache and every kmalloc cache in use).
    pub caches_checked: usize,
    /// Caches that disagree.
    pub mismatches: Vec<AuditMismatch>,
    /// Pages of large kmalloc blocks the replay holds.
    pub kmalloc_large_pages: u64,
    /// Slab pages (meminfo `Slab:`) not in any cache's slabs: the machine's large kmalloc
    /// pages.
    pub machine_large_pages: u64,
    /// Live page blocks whose head has no reference (freed behind the replay's back).
    pub bad_blocks: u64,
}

impl Audit {
    /// Whether everything agrees.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.kmalloc_large_pages == self.machine_large_pages && self.bad_blocks == 0
    }
}

const KMALLOC_TYPES: [KmallocType; 3] = [KmallocType::Normal, KmallocType::Reclaim, KmallocType::Dma];

/// The type of a kmalloc cache, by its name.
fn kmalloc_type_of(name: &str) -> Option<KmallocType> {
    if name.starts_with("dma-kmalloc-") {
        Some(KmallocType::Dma)
    } else if name.starts_with("kmalloc-rcl-") {
        Some(KmallocType::Reclaim)
    } else if name.starts_with("kmalloc-") {
        Some(KmallocType::Normal)
    } else {
        None
    }
}

fn gfp_of(t: KmallocType) -> Gfp {
    match t {
        KmallocType::Normal => Gfp::KERNEL,
        KmallocType::Reclaim => Gfp::KERNEL | Gfp::RECLAIMABLE,
        KmallocType::Dma => Gfp::KERNEL | Gfp::DMA,
    }
}

/// Pages of a cache's slabs: those of the preferred order, and those of the fallback order
/// that allocations under memory pressure took (`new_slab`'s `s->min`): told apart by their
/// object counts.
fn cache_slab_pages(c: &KmemCache, info: &kmem::proc::SlabInfo) -> u64 {
    let l = c.layout();
    let (slabs, objs) = (info.num_slabs as u64, info.num_objs as u64);
    let (big, small) = (l.objects as u64, l.min_objects as u64);
    let fallback = if big > small { (slabs * big).saturating_sub(objs) / (big - small) } else { 0 }.min(slabs);
    ((slabs - fallback) << l.order) + (fallback << l.min_order)
}

/// Checks every object and block the replay holds against the machine: shrinks every cache
/// (so objects free on CPUs' active slabs no longer count as active), then compares each
/// cache's active objects with the objects the replay holds there (merged caches: the sum of
/// their aliases), the large kmalloc pages with the slab pages outside caches, and every
/// block's reference count. Changes nothing the replay holds.
pub fn audit(rp: &Replayer<'_>, defs: &[CacheDef]) -> Audit {
    let m = rp.machine();
    let mut expected: HashMap<*const KmemCache, (String, u64)> = HashMap::new();
    let mut a = Audit::default();
    for i in 0..defs.len() {
        if let Some(c) = rp.cache(i) {
            let e = expected.entry(&**c as *const KmemCache).or_insert_with(|| (c.name().to_owned(), 0));
            e.1 += rp.live_in_cache(i);
            a.live_objects += rp.live_in_cache(i);
        }
    }
    for (size, t) in rp.kmalloc_live() {
        a.live_objects += 1;
        if size > KMALLOC_MAX_CACHE_SIZE {
            a.kmalloc_large_pages += (crate::replay::kmalloc_bytes(size) / PAGE_SIZE) as u64;
        } else if let Some(c) = m.kmalloc_slab(size, gfp_of(t)) {
            expected.entry(c as *const KmemCache).or_insert_with(|| (c.name().to_owned(), 0)).1 += 1;
        }
    }
    // Shrink outside the cache-list lock: every trace cache, every kmalloc cache made.
    for i in 0..defs.len() {
        if let Some(c) = rp.cache(i) {
            m.kmem_cache_shrink(c);
        }
    }
    for t in KMALLOC_TYPES.into_iter().filter(|&t| rp.kmalloc_type_used(t)) {
        for idx in 1..kmem::kmalloc::KMALLOC_NR {
            if let Some(c) = m.kmalloc_slab(kmem::kmalloc::kmalloc_size(idx), gfp_of(t)) {
                m.kmem_cache_shrink(c);
            }
        }
    }
    let mut cache_pages = 0u64;
    m.for_each_cache(|c| {
        let info = slab_info(m, c);
        cache_pages += cache_slab_pages(c, &info);
        let want = expected.remove(&(c as *const KmemCache));
        let (name, want) = want.unwrap_or_else(|| (c.name().to_owned(), 0));
        let kmalloc = kmalloc_type_of(&name).is_some_and(|t| rp.kmalloc_type_used(t));
        if want > 0 || kmalloc || defs.iter().any(|d| d.name == name) {
            a.caches_checked += 1;
            if info.active_objs as u64 != want {
                a.mismatches.push(AuditMismatch { cache: name, expected: want, found: info.active_objs as u64 });
            }
        }
    });
    for (name, want) in expected.into_values() {
        a.mismatches.push(AuditMismatch { cache: name, expected: want, found: 0 });
    }
    let slab: usize = (0..m.nr_nodes())
        .filter_map(|n| m.node(n))
        .map(|n| n.slab_reclaimable_pages() + n.slab_unreclaimable_pages())
        .sum();
    a.machine_large_pages = (slab as u64).saturating_sub(cache_pages);
    for (page, _) in rp.pages_live() {
        a.live_blocks += 1;
        if page.refcount() < 1 {
            a.bad_blocks += 1;
        }
    }
    a
}
