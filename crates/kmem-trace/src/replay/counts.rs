//! What a replay counts ([`ReplayCounts`]) and the memory categories it tracks ([`Mem`]).

use crate::oom::{Live, OomCounts};
use crate::op::Kind;

/// Memory categories the replay tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mem {
    /// Objects of the trace's named caches (kmem slot sizes).
    Slab = 0,
    /// kmalloc up to 8 KiB (kmem size classes).
    Kmalloc = 1,
    /// kmalloc above 8 KiB (page blocks).
    KmallocLarge = 2,
    /// mm_page_alloc blocks.
    Pages = 3,
}

impl Mem {
    /// Every category.
    pub const ALL: [Mem; 4] = [Mem::Slab, Mem::Kmalloc, Mem::KmallocLarge, Mem::Pages];
    /// Its report name.
    pub fn name(self) -> &'static str {
        ["slab", "kmalloc", "kmalloc_large", "pages"][self as usize]
    }
}

/// What the replay did, per [`Kind`] (index `Kind as usize`).
#[derive(Clone, Debug, Default)]
pub struct ReplayCounts {
    /// Operations applied.
    pub ops: u64,
    /// Operations that did what the trace did.
    pub replayed: [u64; Kind::COUNT],
    /// Allocations that failed on the machine.
    pub failures: [u64; Kind::COUNT],
    /// Frees of keys the replay never allocated (allocated before the capture), skipped.
    pub unmatched_frees: [u64; Kind::COUNT],
    /// Allocations of a key that was still live: the old allocation was freed first.
    pub missed_frees: [u64; Kind::COUNT],
    /// `kfree(NULL)`.
    pub null_frees: u64,
    /// `mm_page_free_batched` of a page already freed by its `mm_page_free` (Linux traces
    /// both for each page `free_unref_folios` frees).
    pub batched_after_free: u64,
    /// Frees by another kind than the allocation (`kfree` of a cache object...): freed as
    /// allocated.
    pub cross_kind_frees: u64,
    /// Page frees with another order than the allocation: freed with the allocation's.
    pub order_mismatches: u64,
    /// Caches that could not be created (their allocations count as failures).
    pub cache_create_failures: u64,
    /// Frees of allocations that failed on the machine (nothing to free).
    pub frees_of_failed: u64,
    /// Live bytes per [`Mem`] now.
    pub live_bytes: [u64; 4],
    /// Peak of each.
    pub peak_bytes: [u64; 4],
    /// Peak of their sum.
    pub peak_total_bytes: u64,
    /// The OOM killer and `__GFP_NOFAIL` ([`crate::oom`]).
    pub oom: OomCounts,
    /// The sum of `live_bytes`, kept with it (each allocation compares it with the peak).
    live_total: u64,
}

impl ReplayCounts {
    #[inline(always)]
    pub(super) fn add(&mut self, mem: Mem, bytes: u64) {
        self.live_bytes[mem as usize] += bytes;
        self.live_total += bytes;
        self.peak_bytes[mem as usize] = self.peak_bytes[mem as usize].max(self.live_bytes[mem as usize]);
        self.peak_total_bytes = self.peak_total_bytes.max(self.live_total);
    }

    #[inline(always)]
    pub(super) fn sub(&mut self, mem: Mem, bytes: u64) {
        self.live_bytes[mem as usize] -= bytes;
        self.live_total -= bytes;
    }

    /// Takes in what the OOM notifier did since the last look.
    pub(super) fn sync(&mut self, t: &mut Live<'_>) {
        if !t.dirty {
            return;
        }
        let d = std::mem::take(&mut t.delta);
        t.dirty = false;
        let o = &mut self.oom;
        o.notifier_calls += d.calls;
        o.kills += d.kills;
        o.pressure_kills += d.pressure_kills;
        o.objects_freed += d.objects;
        o.blocks_freed += d.blocks;
        o.bytes_freed += d.bytes.iter().sum::<u64>() - d.reclaimed_bytes;
        o.reclaimed_blocks += d.reclaimed_blocks;
        o.reclaimed_bytes += d.reclaimed_bytes;
        for (i, b) in d.bytes.into_iter().enumerate() {
            self.live_bytes[i] -= b;
            self.live_total -= b;
        }
    }
}
