//! The invariant scanner: what must hold between any two operations, read through the
//! machine's public API and its `/proc` views.
//!
//! - `Kmem::verify()`: free lists agree with the counters and the page descriptors, per-CPU
//!   lists with their counts, the vmalloc trees tile the range.
//! - No two live blocks overlap (over every world's ranges).
//! - `MemFree <= MemTotal`; each zone's buddyinfo free blocks add up to its zoneinfo
//!   `pages free`, and the zones' free plus per-CPU pages add up to `MemFree`.
//! - Every live block is accounted for: used memory covers the model's page, large kmalloc
//!   and vmalloc pages; `Slab:` covers the large kmalloc blocks; vmalloc's busy areas and
//!   the per-CPU allocator's live allocations are exactly the model's (plus what was live at
//!   the baseline); each cache's slabinfo `active_objs` covers the model's live objects in it.
//! - No report other than informational ones.
//! - Deep scans also run `validate_slab_cache` on every cache and `pcpu_stats` (which checks
//!   the chunk maps).

use std::collections::BTreeMap;

use kmem::{Gfp, Kmem, KmemCache, ReportKind};
use kmem_hosted::{HostedPlatform, Machine};

use super::world::Summary;

/// A `/proc` view as text.
pub fn proc_text(m: &Machine, f: fn(&Kmem<HostedPlatform>, &mut dyn std::fmt::Write) -> std::fmt::Result) -> String {
    let mut s = String::new();
    f(m, &mut s).unwrap();
    s
}

/// A `/proc/meminfo` value in kB.
pub fn meminfo_kb(text: &str, label: &str) -> usize {
    let line =
        text.lines().find(|l| l.split(':').next() == Some(label)).unwrap_or_else(|| panic!("no {label} in meminfo"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Every cache of the machine (descriptors; the kmalloc and boot caches are never destroyed,
/// and callers hold the test caches alive while they use these).
fn caches(m: &Machine) -> Vec<usize> {
    let mut v = Vec::new();
    m.for_each_cache(|c| v.push(c as *const KmemCache as usize));
    v
}

fn cache<'a>(addr: usize) -> &'a KmemCache {
    // SAFETY: see `caches`: the descriptor outlives the scan.
    unsafe { &*(addr as *const KmemCache) }
}

/// Gives back everything kmem keeps for later: every cache's empty slabs, the per-CPU page
/// lists, lazily freed and recycled vmalloc areas, empty per-CPU chunks.
/// Freeing one of these can free objects of another (a purged vmalloc area's `vmap_area`,
/// a per-CPU chunk's metadata), so the round repeats until the free page count settles.
pub fn quiesce(m: &Machine) {
    let free = || m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum::<usize>();
    let mut last = usize::MAX;
    while free() != last {
        last = free();
        m.vm_unmap_aliases();
        m.pcpu_free_empty_chunks();
        for c in caches(m) {
            m.kmem_cache_shrink(cache(c));
        }
        m.drain_all_pages();
    }
}

/// What is in use when no world holds anything (after [`quiesce`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub free_pages: usize,
    pub vmalloc_busy: usize,
    pub percpu_allocs: usize,
    pub pagetables: usize,
}

impl Baseline {
    pub fn take(m: &Machine) -> Self {
        quiesce(m);
        let mi = proc_text(m, kmem::proc::meminfo);
        Self {
            free_pages: meminfo_kb(&mi, "MemFree") / 4,
            vmalloc_busy: m.vmalloc_stats().busy_areas,
            percpu_allocs: m.pcpu_stats().nr_alloc,
            pagetables: m.vmalloc_stats().pagetables,
        }
    }
}

/// Creates what first uses create once and keep (the kmalloc caches of each type, the
/// vmalloc layer's caches, the per-CPU allocator's first dynamic state), so the baseline
/// taken afterwards is what every run returns to.
pub fn warm_up(m: &Machine) {
    for g in [Gfp::KERNEL, Gfp::KERNEL | Gfp::DMA, Gfp::KERNEL | Gfp::RECLAIMABLE] {
        let p = m.kmalloc(8, g).unwrap();
        // SAFETY: ours.
        unsafe { m.kfree(p.as_ptr()) };
    }
    // SAFETY: ours, unused afterwards.
    unsafe { m.vfree(m.vmalloc(1).unwrap().as_ptr()) };
    // SAFETY: ours, unused afterwards.
    unsafe { m.free_percpu(m.__alloc_percpu(8, 8).unwrap()) };
}

/// After everything was freed: the baseline again, page-table pages that vmalloc kept for
/// the platform aside (kernels never free those either).
pub fn leak_check(m: &Machine, base: &Baseline) -> Result<(), String> {
    let end = Baseline::take(m);
    let kept = end.pagetables - base.pagetables;
    if (end.free_pages + kept, end.vmalloc_busy, end.percpu_allocs)
        != (base.free_pages, base.vmalloc_busy, base.percpu_allocs)
    {
        return Err(format!("not everything came back: baseline {base:?}, at the end {end:?}"));
    }
    Ok(())
}

/// (free pages, per-CPU pages) per zone from zoneinfo; free pages per zone from buddyinfo.
fn zone_numbers(m: &Machine) -> (BTreeMap<String, (usize, usize)>, BTreeMap<String, usize>) {
    let mut zi = BTreeMap::new();
    let mut cur = String::new();
    for l in proc_text(m, kmem::proc::zoneinfo).lines() {
        if let Some(z) = l.strip_prefix("Node ") {
            cur = z.split_whitespace().collect::<Vec<_>>().join(" ");
        } else if let Some(v) = l.trim_start().strip_prefix("pages free") {
            zi.entry(cur.clone()).or_insert((0, 0)).0 = v.trim().parse().unwrap();
        } else if let Some(v) = l.trim_start().strip_prefix("count:") {
            zi.entry(cur.clone()).or_insert((0, 0)).1 += v.trim().parse::<usize>().unwrap();
        }
    }
    let mut bi = BTreeMap::new();
    for l in proc_text(m, kmem::proc::buddyinfo).lines() {
        // "Node 0, zone    DMA32 n0 n1 ... n10"
        let words: Vec<&str> = l.strip_prefix("Node ").unwrap().split_whitespace().collect();
        let name = format!("{} {} {}", words[0], words[1], words[2]);
        let pages: usize = words[3..].iter().enumerate().map(|(o, n)| n.parse::<usize>().unwrap() << o).sum();
        bi.insert(name, pages);
    }
    (zi, bi)
}

/// Runs every check; `deep` adds the slab validation walks.
pub fn scan(m: &Machine, base: &Baseline, sums: &[Summary], deep: bool) -> Result<(), String> {
    m.verify().map_err(|e| format!("verify: {e:?}"))?;
    for kind in [
        ReportKind::BadPage,
        ReportKind::Warning,
        ReportKind::SlabBug,
        ReportKind::SleepInAtomic,
        ReportKind::PageAllocFailure,
    ] {
        if m.report_count(kind) != 0 {
            return Err(format!("unexpected {kind:?} report: {:?}", m.reports().texts(kind)));
        }
    }

    let mut ranges: Vec<(usize, usize, u64)> = sums.iter().flat_map(|s| s.ranges.iter().copied()).collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(format!("live blocks overlap: {:x?} and {:x?}", w[0], w[1]));
        }
    }

    let mi = proc_text(m, kmem::proc::meminfo);
    let (total, free) = (meminfo_kb(&mi, "MemTotal"), meminfo_kb(&mi, "MemFree"));
    if free > total {
        return Err(format!("MemFree {free} kB > MemTotal {total} kB"));
    }
    let (zi, bi) = zone_numbers(m);
    for (zone, buddy) in &bi {
        let Some(&(zfree, _)) = zi.get(zone) else { return Err(format!("zone {zone} in buddyinfo, not zoneinfo")) };
        if zfree != *buddy {
            return Err(format!("zone {zone}: zoneinfo pages free {zfree} != buddyinfo's {buddy}"));
        }
    }
    let zsum: usize = zi.values().map(|(f, p)| f + p).sum();
    if zsum * 4 != free {
        return Err(format!("zones' free + per-CPU pages {zsum} != MemFree {free} kB"));
    }

    let sum = |f: fn(&Summary) -> usize| sums.iter().map(f).sum::<usize>();
    let (pages, large, vpages) = (sum(|s| s.pages), sum(|s| s.large_kmalloc_pages), sum(|s| s.vmalloc_pages));
    let used = (total - free) / 4;
    let base_used = total / 4 - base.free_pages;
    if used < base_used + pages + large + vpages {
        return Err(format!(
            "used pages {used} < baseline {base_used} + pages {pages} + large kmalloc {large} + vmalloc {vpages}"
        ));
    }
    if meminfo_kb(&mi, "Slab") < large * 4 {
        return Err(format!("Slab: {} kB does not cover {large} large kmalloc pages", meminfo_kb(&mi, "Slab")));
    }
    let vs = m.vmalloc_stats();
    if vs.busy_areas != base.vmalloc_busy + sum(|s| s.vmalloc_areas) || vs.used_pages < vpages {
        return Err(format!("vmalloc: {vs:?} for {} live areas of {vpages} pages", sum(|s| s.vmalloc_areas)));
    }
    if deep {
        // Each test cache that was not merged into another holds one per-CPU allocation.
        let nr_alloc = m.pcpu_stats().nr_alloc;
        let (want, caches) = (base.percpu_allocs + sum(|s| s.percpu), sum(|s| s.cache_objects.len()));
        if nr_alloc < want || nr_alloc > want + caches {
            return Err(format!("per-CPU: {nr_alloc} allocations; the model has {want} and {caches} caches"));
        }
    }
    for s in sums {
        for (name, active, live) in &s.cache_objects {
            if active < live {
                return Err(format!("cache {name}: active_objs {active} < {live} live objects"));
            }
        }
    }
    let mut kmalloc: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sums {
        for (name, n) in &s.kmalloc_objects {
            *kmalloc.entry(name).or_default() += n;
        }
    }
    let all = caches(m);
    for (name, live) in kmalloc {
        let c = all.iter().map(|&c| cache(c)).find(|c| c.name() == name).ok_or_else(|| format!("no cache {name}"))?;
        let active = kmem::proc::slab_info(m, c).active_objs;
        if active < live {
            return Err(format!("{name}: active_objs {active} < {live} live kmalloc objects"));
        }
    }
    if deep {
        for c in all {
            let r = m.validate_slab_cache(cache(c));
            if r.errors != 0 {
                return Err(format!("validate_slab_cache({}): {r:?}: {:?}", cache(c).name(), m.reports().take()));
            }
        }
    }
    Ok(())
}
