//! `/proc/zoneinfo` (`mm/vmstat.c`: `zoneinfo_show_print`).

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::{Order, PAGE_SHIFT};
use crate::machine::Kmem;
use crate::mm::node::Node;
use crate::mm::zone::{Wmark, Zone};
use crate::platform::Platform;

/// The per-node statistics `zoneinfo` lists under a node's first populated zone, in the order
/// of Linux 6.18's `vmstat_text[]` (`enum node_stat_item`). kmem keeps the slab ones
/// (`nr_slab_reclaimable`, `nr_slab_unreclaimable`); the rest print as 0.
pub const NODE_STAT_NAMES: [&str; 51] = [
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_isolated_anon",
    "nr_isolated_file",
    "workingset_nodes",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_anon",
    "workingset_activate_file",
    "workingset_restore_anon",
    "workingset_restore_file",
    "workingset_nodereclaim",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_shmem",
    "nr_shmem_hugepages",
    "nr_shmem_pmdmapped",
    "nr_file_hugepages",
    "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages",
    "nr_vmscan_write",
    "nr_vmscan_immediate_reclaim",
    "nr_dirtied",
    "nr_written",
    "nr_throttled_written",
    "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired",
    "nr_foll_pin_released",
    "nr_kernel_stack",
    "nr_page_table_pages",
    "nr_sec_page_table_pages",
    "nr_iommu_pages",
    "nr_swapcached",
    "pgpromote_success",
    "pgpromote_candidate",
    "pgpromote_candidate_nrl",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgdemote_proactive",
    "nr_hugetlb",
    "nr_balloon_pages",
    "nr_kernel_file_pages",
];

/// The per-zone statistics of a populated zone, in Linux 6.18's order (`enum zone_stat_item`
/// with `CONFIG_ZSMALLOC`, without `CONFIG_UNACCEPTED_MEMORY`). kmem knows the first two; the
/// rest print as 0.
pub const ZONE_STAT_NAMES: [&str; 11] = [
    "nr_free_pages",
    "nr_free_pages_blocks",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_zspages",
    "nr_free_cma",
];

/// `fls()`: position of the most significant set bit, 1-based; 0 for 0.
const fn fls(x: usize) -> u32 {
    usize::BITS - x.leading_zeros()
}

/// `calculate_normal_threshold()`: the per-CPU vmstat drift a zone of `managed` pages allows
/// on a machine of `nr_cpus` CPUs, `min(125, 2 * fls(nr_cpus) * (1 + fls(managed in 128 MiB
/// units)))`.
///
/// ```
/// // The DMA and DMA32 zones of the Linux 6.18 capture (2 CPUs): "vm stats threshold: 4" / 24.
/// assert_eq!(kmem::proc::calculate_normal_threshold(3840, 2), 4);
/// assert_eq!(kmem::proc::calculate_normal_threshold(772_497, 2), 24);
/// assert_eq!(kmem::proc::calculate_normal_threshold(1 << 30, 256), 125);
/// ```
pub const fn calculate_normal_threshold(managed: usize, nr_cpus: usize) -> u32 {
    let mem = managed >> (27 - PAGE_SHIFT);
    let t = 2 * fls(nr_cpus) * (1 + fls(mem));
    if t < 125 {
        t
    } else {
        125
    }
}

/// Writes `/proc/zoneinfo`: every zone type the architecture has
/// ([`ZoneLayout::zone_types`](crate::ZoneLayout::zone_types)), populated or not, node by node.
///
/// What is real: free pages, watermarks (boost 0), spanned/present/managed, the `protection`
/// line (the zone's `lowmem_reserve` against each zone type of the architecture), the
/// `nr_free_pages` and `nr_free_pages_blocks` statistics (free pages in blocks of pageblock
/// order and above), the `numa_*` counters from [`Zone::event_counts`] (`numa_interleave` is 0:
/// kmem has no interleave policy), the vm stats threshold, and `start_pfn`. `cma` is 0 and
/// `node_unreclaimable` 0 (no CMA, no reclaim). The node statistics ([`NODE_STAT_NAMES`])
/// print as 0.
///
/// Pagesets: each CPU's per-CPU page list state (count, high, batch, high_min, high_max).
/// kmem does not auto-tune `high`, so it stays at `high_min`.
///
/// An unpopulated zone stops after its `protection` line, as in Linux.
pub fn zoneinfo<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    for node in (0..k.nr_nodes()).filter_map(|n| k.node(n)) {
        let first_populated = node.zones.iter().position(Zone::is_populated);
        for zt in k.layout().zone_types() {
            let zone = node.zone(zt);
            show_zone(k, node, zone, first_populated == Some(zt.index()), w)?;
        }
    }
    Ok(())
}

fn show_zone<P: Platform>(k: &Kmem<P>, node: &Node, z: &Zone, node_stats: bool, w: &mut dyn Write) -> fmt::Result {
    write!(w, "Node {}, zone {:>8}", node.id(), z.name())?;
    if node_stats {
        w.write_str("\n  per-node stats")?;
        for name in NODE_STAT_NAMES {
            let v = match name {
                "nr_slab_reclaimable" => node.slab_reclaimable_pages(),
                "nr_slab_unreclaimable" => node.slab_unreclaimable_pages(),
                _ => 0,
            };
            stat(w, name, v as u64)?;
        }
    }
    write!(
        w,
        "\n  pages free     {}\
         \n        boost    {}\
         \n        min      {}\
         \n        low      {}\
         \n        high     {}\
         \n        promo    {}\
         \n        spanned  {}\
         \n        present  {}\
         \n        managed  {}\
         \n        cma      {}",
        z.free_pages(),
        0,
        z.wmark(Wmark::Min),
        z.wmark(Wmark::Low),
        z.wmark(Wmark::High),
        z.wmark(Wmark::Promo),
        z.spanned_pages(),
        z.present_pages(),
        z.managed_pages(),
        0,
    )?;
    w.write_str("\n        protection: (")?;
    for (i, zt) in k.layout().zone_types().enumerate() {
        if i != 0 {
            w.write_str(", ")?;
        }
        write!(w, "{}", z.lowmem_reserve(zt))?;
    }
    w.write_char(')')?;
    if !z.is_populated() {
        return w.write_char('\n');
    }

    let free_blocks: usize =
        Order::all().filter(|&o| o >= Order::PAGEBLOCK).map(|o| z.area.nr_free(o) * o.nr_pages()).sum();
    for (i, name) in ZONE_STAT_NAMES.iter().enumerate() {
        let v = match i {
            0 => z.free_pages(),
            1 => free_blocks,
            _ => 0,
        };
        stat(w, name, v as u64)?;
    }
    let ev = z.event_counts();
    let numa = [
        ("numa_hit", ev.numa_hit),
        ("numa_miss", ev.numa_miss),
        ("numa_foreign", ev.numa_foreign),
        ("numa_interleave", 0),
        ("numa_local", ev.numa_local),
        ("numa_other", ev.numa_other),
    ];
    for (name, v) in numa {
        stat(w, name, v)?;
    }

    w.write_str("\n  pagesets")?;
    let threshold = calculate_normal_threshold(z.managed_pages(), k.nr_cpus());
    // What a pageset written as its CPU comes up starts with.
    let (batch, high_min, high_max) = k.zone_pcp_sizes(z);
    for cpu in 0..k.nr_cpus() {
        write!(w, "\n    cpu: {cpu}")?;
        // A zone without pagesets shows the boot pageset (count 0, high 0, batch 1); a CPU
        // whose pageset is written as it comes up, and has not yet, what it will start with.
        let v = match z.pageset(cpu) {
            Some(p) => [p.count(), p.high(), p.batch(), p.high_min(), p.high_max()],
            None if cpu < z.pagesets().len() => [0, high_min, batch, high_min, high_max],
            None => [0, 0, 1, 0, 0],
        };
        for (label, v) in ["count:   ", "high:    ", "batch:   ", "high_min:", "high_max:"].iter().zip(v) {
            write!(w, "\n              {label} {v}")?;
        }
        write!(w, "\n  vm stats threshold: {threshold}")?;
    }
    write!(w, "\n  node_unreclaimable:  {}\n  start_pfn:           {}\n", 0, z.start_pfn().as_usize())
}

/// One `"\n      %-12s %lu"` statistics line.
fn stat(w: &mut dyn Write, name: &str, v: u64) -> fmt::Result {
    write!(w, "\n      {name:<12} {v}")
}
