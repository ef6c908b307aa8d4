//! `/proc/vmstat` (`mm/vmstat.c`: `vmstat_start`, `vmstat_show`): one `name value` line per
//! counter, in Linux 6.18's order (`vmstat_text[]`: zone stats, NUMA events, node stats, the
//! writeback thresholds, the memmap counts, then the VM events), for the configuration of the
//! capture kmem is checked against (`fixtures/linux-6.18-proc/vmstat.txt`: x86-64 with
//! `CONFIG_NUMA`, `CONFIG_ZONE_DEVICE`, THP, zswap, balloon, no `CONFIG_HIGHMEM`). The
//! per-zone events (`pgalloc_*`, `allocstall_*`, `pgskip_*`) follow the architecture's zone
//! types, `_high` included when the machine has a HighMem zone.
//!
//! What is real (the rest print as 0: kmem has no page cache, LRU, swap, THP, compaction,
//! migration or processes):
//! - `nr_free_pages`, `nr_free_pages_blocks`, `numa_*`, `pgalloc_*`, `pgfree`: the zones'
//!   counters, as in zoneinfo;
//! - `nr_slab_reclaimable`, `nr_slab_unreclaimable`: the slab pages of every node;
//! - `nr_memmap_boot_pages`: the pages of page descriptors carved at boot;
//! - reclaim (`reclaim/`): `allocstall_*` (direct reclaims, by the allocation's highest zone),
//!   `slabs_scanned` (objects shrinkers were asked to scan), `kswapd_low_wmark_hit_quickly`,
//!   `kswapd_high_wmark_hit_quickly`, `pageoutrun`, and `pgscan_{kswapd,direct}` /
//!   `pgsteal_{kswapd,direct}`. kmem has no LRU lists: every page reclaim gets back comes from
//!   shrinkers and empty slabs, a page it looks at is a page it frees, so pgscan equals pgsteal
//!   (Linux counts LRU pages there; slab pages freed by shrinkers are not in either);
//! - `oom_kill` stays 0: kmem's OOM path has no process to kill (it calls the OOM notifiers
//!   and reports; see `Kmem::reclaim_events`).

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::{Order, PAGE_SIZE};
use crate::machine::Kmem;
use crate::mm::zone::EventCounts;
use crate::mm::zone_type::ZoneType;
use crate::platform::Platform;
use crate::proc::{NODE_STAT_NAMES, ZONE_STAT_NAMES};

/// The lines after the node statistics, in Linux 6.18's order; `pgalloc_*`, `allocstall_*`
/// and `pgskip_*` stand for one line per zone type.
pub const VMSTAT_EVENT_NAMES: [&str; 112] = [
    "nr_dirty_threshold",
    "nr_dirty_background_threshold",
    "nr_memmap_pages",
    "nr_memmap_boot_pages",
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgalloc_*",
    "allocstall_*",
    "pgskip_*",
    "pgfree",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pgfault",
    "pgmajfault",
    "pglazyfreed",
    "pgrefill",
    "pgreuse",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgsteal_khugepaged",
    "pgsteal_proactive",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgscan_khugepaged",
    "pgscan_proactive",
    "pgscan_direct_throttle",
    "pgscan_anon",
    "pgscan_file",
    "pgsteal_anon",
    "pgsteal_file",
    "zone_reclaim_success",
    "zone_reclaim_failed",
    "pginodesteal",
    "slabs_scanned",
    "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly",
    "kswapd_high_wmark_hit_quickly",
    "pageoutrun",
    "pgrotated",
    "drop_pagecache",
    "drop_slab",
    "oom_kill",
    "numa_pte_updates",
    "numa_huge_pte_updates",
    "numa_hint_faults",
    "numa_hint_faults_local",
    "numa_pages_migrated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "thp_migration_success",
    "thp_migration_fail",
    "thp_migration_split",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "compact_stall",
    "compact_fail",
    "compact_success",
    "compact_daemon_wake",
    "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail",
    "unevictable_pgs_culled",
    "unevictable_pgs_scanned",
    "unevictable_pgs_rescued",
    "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked",
    "unevictable_pgs_cleared",
    "unevictable_pgs_stranded",
    "thp_fault_alloc",
    "thp_fault_fallback",
    "thp_fault_fallback_charge",
    "thp_collapse_alloc",
    "thp_collapse_alloc_failed",
    "thp_file_alloc",
    "thp_file_fallback",
    "thp_file_fallback_charge",
    "thp_file_mapped",
    "thp_split_page",
    "thp_split_page_failed",
    "thp_deferred_split_page",
    "thp_underused_split_page",
    "thp_split_pmd",
    "thp_scan_exceed_none_pte",
    "thp_scan_exceed_swap_pte",
    "thp_scan_exceed_share_pte",
    "thp_split_pud",
    "thp_zero_page_alloc",
    "thp_zero_page_alloc_failed",
    "thp_swpout",
    "thp_swpout_fallback",
    "balloon_inflate",
    "balloon_deflate",
    "balloon_migrate",
    "swap_ra",
    "swap_ra_hit",
    "swpin_zero",
    "swpout_zero",
    "ksm_swpin_copy",
    "cow_ksm",
    "zswpin",
    "zswpout",
    "zswpwb",
    "direct_map_level2_splits",
    "direct_map_level3_splits",
    "direct_map_level2_collapses",
    "direct_map_level3_collapses",
    "nr_unstable",
];

/// `pgalloc_dma` and friends: the zone type's suffix in `vmstat_text[]` (`TEXTS_FOR_ZONES`).
const fn zone_suffix(zt: ZoneType) -> &'static str {
    match zt {
        ZoneType::Dma => "dma",
        ZoneType::Dma32 => "dma32",
        ZoneType::Normal => "normal",
        ZoneType::HighMem => "high",
        ZoneType::Movable => "movable",
        ZoneType::Device => "device",
    }
}

/// Writes `/proc/vmstat` (see the module docs for what is real).
///
/// ```
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut s = String::new();
/// kmem::proc::vmstat(&m, &mut s).unwrap();
/// assert!(s.starts_with("nr_free_pages "));
/// assert!(s.contains("\nallocstall_normal 0\n"));
/// ```
pub fn vmstat<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    let line = |w: &mut dyn Write, name: &str, v: u64| writeln!(w, "{name} {v}");
    let mut ev = EventCounts::default();
    let mut per_zone = [EventCounts::default(); crate::mm::zone_type::MAX_NR_ZONES];
    for z in k.zones() {
        let e = z.event_counts();
        per_zone[z.zone_type().index()].pgalloc += e.pgalloc;
        ev.pgalloc += e.pgalloc;
        ev.pgfree += e.pgfree;
        ev.numa_hit += e.numa_hit;
        ev.numa_miss += e.numa_miss;
        ev.numa_foreign += e.numa_foreign;
        ev.numa_local += e.numa_local;
        ev.numa_other += e.numa_other;
    }
    let free: usize = k.zones().map(|z| z.free_pages()).sum();
    let free_blocks: usize = k
        .zones()
        .map(|z| {
            Order::all().filter(|&o| o >= Order::PAGEBLOCK).map(|o| z.area.nr_free(o) * o.nr_pages()).sum::<usize>()
        })
        .sum();
    for (i, name) in ZONE_STAT_NAMES.iter().enumerate() {
        let v = match i {
            0 => free,
            1 => free_blocks,
            _ => 0,
        };
        line(w, name, v as u64)?;
    }
    for (name, v) in [
        ("numa_hit", ev.numa_hit),
        ("numa_miss", ev.numa_miss),
        ("numa_foreign", ev.numa_foreign),
        ("numa_interleave", 0),
        ("numa_local", ev.numa_local),
        ("numa_other", ev.numa_other),
    ] {
        line(w, name, v)?;
    }
    let nodes = || (0..k.nr_nodes()).filter_map(|n| k.node(n));
    for name in NODE_STAT_NAMES {
        let v = match name {
            "nr_slab_reclaimable" => nodes().map(|n| n.slab_reclaimable_pages()).sum(),
            "nr_slab_unreclaimable" => nodes().map(|n| n.slab_unreclaimable_pages()).sum(),
            _ => 0,
        };
        line(w, name, v as u64)?;
    }
    let r = k.reclaim_events();
    for name in VMSTAT_EVENT_NAMES {
        if let Some(prefix) = name.strip_suffix('*') {
            for zt in k.layout().zone_types() {
                let v = match prefix {
                    "pgalloc_" => per_zone[zt.index()].pgalloc,
                    "allocstall_" => r.allocstall[zt as usize],
                    _ => 0,
                };
                writeln!(w, "{prefix}{} {v}", zone_suffix(zt))?;
            }
            continue;
        }
        let v = match name {
            "nr_memmap_boot_pages" => k.boot_info().memmap_bytes / PAGE_SIZE as u64,
            "pgfree" => ev.pgfree,
            "pgsteal_kswapd" => r.pgsteal_kswapd,
            "pgsteal_direct" => r.pgsteal_direct,
            "pgscan_kswapd" => r.pgsteal_kswapd,
            "pgscan_direct" => r.pgsteal_direct,
            "slabs_scanned" => r.slabs_scanned,
            "kswapd_low_wmark_hit_quickly" => r.kswapd_low_wmark_hit_quickly,
            "kswapd_high_wmark_hit_quickly" => r.kswapd_high_wmark_hit_quickly,
            "pageoutrun" => r.pageoutrun,
            _ => 0,
        };
        line(w, name, v)?;
    }
    Ok(())
}
