//! `/proc/meminfo` (`fs/proc/meminfo.c`: `meminfo_proc_show`; `mm/hugetlb.c`:
//! `hugetlb_report_meminfo`; `arch/x86/mm/pat/set_memory.c`: `arch_report_meminfo`).

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::{PhysAddr, PAGE_SHIFT};
use crate::machine::Kmem;
use crate::mm::zone::{Wmark, Zone};
use crate::mm::zone_type::ZoneType;
use crate::platform::Platform;

const MIB_2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// `sysctl_overcommit_ratio` default: `CommitLimit` is this percentage of RAM plus swap.
const OVERCOMMIT_RATIO: usize = 50;
/// `Hugepagesize`: the PMD page size in kB (x86-64 and x86-32 PAE).
const HPAGE_PMD_KB: u64 = 2048;

/// How the direct map's physical range is mapped: bytes covered by each page size, the three
/// `DirectMap*` lines of `/proc/meminfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectMapSplit {
    /// Bytes mapped with 4 KiB pages.
    pub bytes_4k: u64,
    /// Bytes mapped with 2 MiB pages.
    pub bytes_2m: u64,
    /// Bytes mapped with 1 GiB pages.
    pub bytes_1g: u64,
}

/// How x86's `init_memory_mapping()` would map the direct map `[0, limit)` in one piece:
/// 4 KiB pages up to the first 2 MiB boundary (the ISA range and the head of the first RAM
/// range on x86-64; the first PMD, which x86-32 never maps large), then the largest pages the
/// alignment allows (1 GiB only if `gbpages`), and 4 KiB pages for a tail below 2 MiB
/// (`split_mem_range`).
///
/// This models kmem's own direct map, which covers `[0, limit)` with no gaps (holes in RAM
/// are mapped inaccessible, not left out). It does not model a kernel splitting large pages
/// later (`set_memory_*` on kernel text and data), which is why a real machine shows more
/// 4k pages.
///
/// ```
/// use kmem::proc::{direct_map_split, DirectMapSplit};
/// use kmem::PhysAddr;
/// let s = direct_map_split(PhysAddr::new(5 << 30), true);
/// assert_eq!(s, DirectMapSplit { bytes_4k: 2 << 20, bytes_2m: (1 << 30) - (2 << 20), bytes_1g: 4 << 30 });
/// ```
pub fn direct_map_split(limit: PhysAddr, gbpages: bool) -> DirectMapSplit {
    let end = limit.as_u64();
    let head = end.min(MIB_2);
    let big_end = end & !(MIB_2 - 1);
    let mut s = DirectMapSplit { bytes_4k: head + (end - big_end.max(head)), ..DirectMapSplit::default() };
    if big_end <= MIB_2 {
        return s;
    }
    let (gb_start, gb_end) = (GIB, big_end & !(GIB - 1));
    if gbpages && gb_end > gb_start {
        s.bytes_1g = gb_end - gb_start;
    }
    s.bytes_2m = big_end - MIB_2 - s.bytes_1g;
    s
}

/// `si_mem_available()`: free pages minus the reserves, plus the page cache and reclaimable
/// kernel memory that could be dropped without thrashing (at least half of each, or the low
/// watermarks' worth, is assumed to stay). Never negative.
fn si_mem_available(free: usize, totalreserve: usize, pagecache: usize, reclaimable: usize, wmark_low: usize) -> usize {
    let mut available = free as isize - totalreserve as isize;
    available += (pagecache - (pagecache / 2).min(wmark_low)) as isize;
    available += (reclaimable - (reclaimable / 2).min(wmark_low)) as isize;
    available.max(0) as usize
}

/// `calculate_totalreserve_pages()`: per zone, its largest `lowmem_reserve` against a higher
/// zone plus its high watermark, capped at its managed pages; summed over every zone.
fn totalreserve_pages<P: Platform>(k: &Kmem<P>) -> usize {
    k.zones()
        .map(|z| {
            let max_reserve =
                ZoneType::ALL.iter().filter(|&&j| j >= z.zone_type()).map(|&j| z.lowmem_reserve(j)).max().unwrap_or(0);
            (max_reserve + z.wmark(Wmark::High)).min(z.managed_pages())
        })
        .sum()
}

/// `show_val_kb()`: a 16-column label and a page count in kB, at least 8 wide.
fn val_kb(w: &mut dyn Write, label: &str, pages: usize) -> fmt::Result {
    kb(w, label, (pages as u64) << (PAGE_SHIFT - 10))
}

/// `seq_printf("<label>%8lu kB\n")` for values already in kB.
fn kb(w: &mut dyn Write, label: &str, kb: u64) -> fmt::Result {
    writeln!(w, "{label}{kb:>8} kB")
}

/// Writes `/proc/meminfo`, every line of Linux 6.18's in its order and layout.
///
/// What is real:
/// - `MemTotal`: [`Kmem::totalram_pages`]; `MemFree`: the zones' free pages.
/// - `MemAvailable`: `si_mem_available()` with no page cache and no reclaimable slab yet:
///   free pages minus `totalreserve_pages` (per zone, its largest lowmem reserve plus its high
///   watermark, capped at its managed pages), clamped at 0.
/// - `HighTotal`, `HighFree`, `LowTotal`, `LowFree` (after `Mlocked`, as with
///   `CONFIG_HIGHMEM`): only when the machine's layout has a HighMem zone; HighTotal is the
///   HighMem zones' managed pages, HighFree their free pages.
/// - `CommitLimit`: `vm_commit_limit()` with the default `overcommit_ratio` of 50, no swap and
///   no huge pages: half of `MemTotal`.
/// - `Hugepagesize`: 2048 kB (no hugetlb pages: the `HugePages_*` counts and `Hugetlb` are 0).
/// - `DirectMap*`: the direct map `[0, limit)` split by [`direct_map_split`]. With a HighMem
///   layout (a 32-bit machine, PAE assumed) there is no `DirectMap1G` line, as on x86-32,
///   which has no gigabyte pages.
/// - `Slab`, `SReclaimable` (also `KReclaimable`), `SUnreclaim`: pages of slabs, by whether
///   their cache is `SLAB_RECLAIM_ACCOUNT`; reclaimable slab counts towards `MemAvailable`
///   as in `si_mem_available()`.
/// - `Percpu`: `pcpu_nr_pages()`, the pages backing every per-CPU chunk's units (the first
///   chunk included; headers and maps excluded, as in Linux).
///
/// - `VmallocTotal`: the platform's vmalloc range (0 without one); `VmallocUsed`: pages
///   backing vmalloc areas (`nr_vmalloc_pages`); `VmallocChunk`: always 0, as Linux.
/// - `KernelStack`: `THREAD_SIZE` per live kernel stack; `PageTables`: page-table pages the
///   platform asked for while mapping vmalloc areas.
///
/// Everything else (page cache, LRU lists, swap, zswap, `Committed_AS`, THP, balloon) is 0
/// until the layer that owns it lands.
pub fn meminfo<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    let totalram = k.totalram_pages();
    // Pages on per-CPU lists are free memory too (they are not in the zones' free counters).
    let freeram: usize = k.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
    let wmark_low: usize = k.zones().map(|z| z.wmark(Wmark::Low)).sum();
    let nodes = || (0..k.nr_nodes()).filter_map(|n| k.node(n));
    let sreclaimable: usize = nodes().map(|n| n.slab_reclaimable_pages()).sum();
    let sunreclaim: usize = nodes().map(|n| n.slab_unreclaimable_pages()).sum();
    let available = si_mem_available(freeram, totalreserve_pages(k), 0, sreclaimable, wmark_low);
    let highmem = k.layout().has(ZoneType::HighMem);

    val_kb(w, "MemTotal:       ", totalram)?;
    val_kb(w, "MemFree:        ", freeram)?;
    val_kb(w, "MemAvailable:   ", available)?;
    for label in [
        "Buffers:        ",
        "Cached:         ",
        "SwapCached:     ",
        "Active:         ",
        "Inactive:       ",
        "Active(anon):   ",
        "Inactive(anon): ",
        "Active(file):   ",
        "Inactive(file): ",
        "Unevictable:    ",
        "Mlocked:        ",
    ] {
        val_kb(w, label, 0)?;
    }
    if highmem {
        let high = || k.zones().filter(|z| z.zone_type() == ZoneType::HighMem);
        let totalhigh: usize = high().map(Zone::managed_pages).sum();
        let freehigh: usize = high().map(|z| z.free_pages() + z.pcp_pages()).sum();
        val_kb(w, "HighTotal:      ", totalhigh)?;
        val_kb(w, "HighFree:       ", freehigh)?;
        val_kb(w, "LowTotal:       ", totalram.saturating_sub(totalhigh))?;
        val_kb(w, "LowFree:        ", freeram.saturating_sub(freehigh))?;
    }
    for label in ["SwapTotal:      ", "SwapFree:       ", "Zswap:          "] {
        val_kb(w, label, 0)?;
    }
    kb(w, "Zswapped:       ", 0)?;
    for label in ["Dirty:          ", "Writeback:      ", "AnonPages:      ", "Mapped:         ", "Shmem:          "] {
        val_kb(w, label, 0)?;
    }
    val_kb(w, "KReclaimable:   ", sreclaimable)?;
    val_kb(w, "Slab:           ", sreclaimable + sunreclaim)?;
    val_kb(w, "SReclaimable:   ", sreclaimable)?;
    val_kb(w, "SUnreclaim:     ", sunreclaim)?;
    let vs = k.vmalloc_stats();
    kb(w, "KernelStack:    ", (vs.stacks * (crate::THREAD_SIZE >> 10)) as u64)?;
    val_kb(w, "PageTables:     ", vs.pagetables)?;
    for label in ["SecPageTables:  ", "NFS_Unstable:   ", "Bounce:         ", "WritebackTmp:   "] {
        val_kb(w, label, 0)?;
    }
    val_kb(w, "CommitLimit:    ", totalram * OVERCOMMIT_RATIO / 100)?;
    val_kb(w, "Committed_AS:   ", 0)?;
    kb(w, "VmallocTotal:   ", (vs.total_bytes >> 10) as u64)?;
    val_kb(w, "VmallocUsed:    ", vs.used_pages)?;
    val_kb(w, "VmallocChunk:   ", 0)?;
    val_kb(w, "Percpu:         ", k.pcpu_nr_pages())?;
    for label in [
        "AnonHugePages:  ",
        "ShmemHugePages: ",
        "ShmemPmdMapped: ",
        "FileHugePages:  ",
        "FilePmdMapped:  ",
        "Balloon:        ",
    ] {
        val_kb(w, label, 0)?;
    }
    for label in ["HugePages_Total:   ", "HugePages_Free:    ", "HugePages_Rsvd:    ", "HugePages_Surp:    "] {
        writeln!(w, "{label}{:>5}", 0)?;
    }
    kb(w, "Hugepagesize:   ", HPAGE_PMD_KB)?;
    kb(w, "Hugetlb:        ", 0)?;

    let dm = direct_map_split(k.direct_map().limit, !highmem);
    kb(w, "DirectMap4k:    ", dm.bytes_4k >> 10)?;
    kb(w, "DirectMap2M:    ", dm.bytes_2m >> 10)?;
    if !highmem {
        kb(w, "DirectMap1G:    ", dm.bytes_1g >> 10)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_map_split_by_alignment() {
        let s = |mib: u64, gb| direct_map_split(PhysAddr::new(mib << 20), gb);
        // Below 2 MiB everything is 4k.
        assert_eq!(s(1, true), DirectMapSplit { bytes_4k: 1 << 20, ..Default::default() });
        assert_eq!(s(2, true), DirectMapSplit { bytes_4k: 2 << 20, ..Default::default() });
        // 256 MiB: the first 2 MiB in 4k, the rest in 2M pages.
        assert_eq!(s(256, true), DirectMapSplit { bytes_4k: 2 << 20, bytes_2m: 254 << 20, bytes_1g: 0 });
        // An unaligned end leaves a 4k tail.
        let odd = direct_map_split(PhysAddr::new((64 << 20) + 0x5000), true);
        assert_eq!(odd, DirectMapSplit { bytes_4k: (2 << 20) + 0x5000, bytes_2m: 62 << 20, bytes_1g: 0 });
        // 3 GiB + 4 MiB with gbpages: [1G, 3G) in 1G pages, [2M, 1G) and [3G, 3G+4M) in 2M.
        assert_eq!(
            s(3076, true),
            DirectMapSplit { bytes_4k: 2 << 20, bytes_2m: (1022 << 20) + (4 << 20), bytes_1g: 2 << 30 }
        );
        // Without gbpages (x86-32 PAE) the same range is all 2M pages after the head.
        assert_eq!(s(896, false), DirectMapSplit { bytes_4k: 2 << 20, bytes_2m: 894 << 20, bytes_1g: 0 });
        // The three always add up to the limit.
        for mib in [3, 4, 1023, 1024, 1025, 2048, 4097] {
            let d = s(mib, true);
            assert_eq!(d.bytes_4k + d.bytes_2m + d.bytes_1g, mib << 20, "{mib} MiB");
        }
    }

    #[test]
    fn mem_available_follows_si_mem_available() {
        assert_eq!(si_mem_available(1000, 300, 0, 0, 50), 700);
        // Reserves above free clamp at 0.
        assert_eq!(si_mem_available(100, 300, 0, 0, 50), 0);
        // Half of the page cache counts, or all but the low watermarks' worth if that is less.
        assert_eq!(si_mem_available(1000, 300, 400, 0, 50), 700 + 350);
        assert_eq!(si_mem_available(1000, 300, 40, 0, 50), 700 + 20);
        assert_eq!(si_mem_available(1000, 300, 0, 400, 500), 700 + 200);
    }
}
