//! The dense memory map (`kmem`'s `mm/memmap.rs`): `kfree` and `kmem_cache_free` look any
//! direct-map address's descriptor up in one multiply-add, so wild pointers into the direct
//! map where no descriptor of a present section is must still be refused and reported, never
//! fault: a hole of whole sections, the `PROT_NONE` hole a section's descriptors left when
//! they moved to the vmemmap, and an absent section of the hotplug reserve.

use std::ptr::NonNull;

use kmem::{Gfp, MemRegion, PhysAddr, ReportKind, SlabFlags, ZoneLayout};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

const MIB: u64 = 1 << 20;

fn flat_zones() -> ZoneLayout {
    ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None }
}

/// Warnings and slab bugs so far.
fn counts(m: &Machine) -> [u64; 3] {
    [m.report_count(ReportKind::Warning), m.report_count(ReportKind::SlabBug), m.report_count(ReportKind::BadPage)]
}

/// `kfree` and `kmem_cache_free` of `p` each report once (a warning, a slab bug), and kmem
/// keeps working.
fn refused(m: &Machine, p: usize, what: &str) {
    let c = m.kmem_cache_create("dense-wild", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let before = counts(m);
    // SAFETY: deliberate misuse: kmem owns nothing at `p`; each call is refused.
    unsafe {
        m.kfree(p as *const u8);
        m.kmem_cache_free(&c, NonNull::new(p as *mut u8).unwrap());
    }
    let after = counts(m);
    assert_eq!(
        [after[0] - before[0], after[1] - before[1], after[2] - before[2]],
        [1, 1, 0],
        "{what} at {p:#x}: {:#?}",
        m.reports().take()
    );
    let w = m.reports().texts(ReportKind::Warning);
    assert!(w.last().unwrap().contains(&format!("kfree: object pointer: 0x{p:016x} was not returned by kmalloc")));
    assert!(m.reports().last().unwrap().contains(&format!("Invalid object pointer 0x{p:016x}")), "{what}");
    drop(c);
    // Still works: a few objects allocated, written and freed.
    let objs: Vec<_> = (0..100).map(|_| m.kmalloc(64, kmem::Gfp::KERNEL).unwrap()).collect();
    for o in objs {
        // SAFETY: a live 64-byte object of ours.
        unsafe {
            o.as_ptr().write_bytes(0x5a, 64);
            m.kfree(o.as_ptr());
        }
    }
}

fn va(m: &Machine, pa: u64) -> usize {
    m.phys_to_virt(PhysAddr::new(pa)).expect("below the direct-map limit").as_usize()
}

/// Sections 0 and 2 present, section 1 a hole: the vmemmap is on by default, and dense.
fn with_hole() -> Machine {
    pin_current_thread(0);
    MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB), MemRegion::usable(256 * MIB, 128 * MIB)])
        .zone_layout(flat_zones())
        .cpus(2)
        .build()
        .unwrap()
}

#[test]
fn machines_that_are_dense_and_not() {
    let m = with_hole();
    assert!(m.memmap_is_flat() && m.memmap_is_dense(), "a vmemmap reads as zero where no section is");
    // One run of sections from 0: the carved array covers the direct map.
    let m = MachineBuilder::new().ram_mib(128).cpus(1).build().unwrap();
    assert!(m.memmap_is_dense());
    let hot = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat_zones())
        .cpus(1)
        .hotplug_max(512 * MIB)
        .build()
        .unwrap();
    assert!(hot.memmap_is_dense(), "the vmemmap covers the hotplug reserve");
    hot.hot_add(1).unwrap();
    assert!(hot.memmap_is_dense(), "a section at its vmemmap slot keeps it dense");
    // No vmemmap and a hole: not flat, so not dense.
    let sparse = sparse();
    assert!(!sparse.memmap_is_flat() && !sparse.memmap_is_dense());
}

/// kmalloc'd objects freed on a machine by `kfree`'s and the sized free's fast paths: each
/// finds its object (the `other` way is never taken), the objects come back (the next
/// allocations hand the same ones out again) and nothing is reported. Those fast paths look
/// the object's descriptor up by the dense limit boot recorded, or, on a machine boot did
/// not find dense, the checked way: a wrong descriptor from either sends the object to
/// `other`, and the test fails.
fn fast_frees_find_their_objects(m: &Machine) {
    let mut seen = std::collections::HashSet::new();
    let mut others = 0;
    for round in 0..2 {
        let ps: Vec<_> = (0..600).map(|_| m.kmalloc(64, Gfp::KERNEL).unwrap()).collect();
        for p in &ps {
            let p = p.as_ptr() as usize;
            if round == 0 {
                seen.insert(p);
            } else {
                assert!(seen.contains(&p), "freed objects are handed out again");
            }
        }
        // SAFETY: each block is ours, freed once (`other` frees anything the fast path
        // declined) and not used afterwards.
        unsafe {
            for (i, p) in ps.iter().enumerate() {
                let other = |q: *const u8| {
                    others += 1;
                    m.kfree(q)
                };
                if i % 2 == 0 {
                    m.kfree_slab_or(p.as_ptr(), other);
                } else {
                    m.kfree_sized_or(p.as_ptr(), 64, other);
                }
            }
        }
    }
    assert_eq!(others, 0, "every free found its object on the fast path");
    assert_eq!(counts(m), [0; 3], "nothing reported");
}

/// The machine of `with_hole` without a vmemmap: its memmap is neither flat nor dense.
fn sparse() -> Machine {
    MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB), MemRegion::usable(256 * MIB, 128 * MIB)])
        .zone_layout(flat_zones())
        .cpus(1)
        .vmemmap(false)
        .build()
        .unwrap()
}

#[test]
fn fast_frees_work_on_dense_and_sparse_machines() {
    let dense = with_hole();
    assert!(dense.memmap_is_dense());
    fast_frees_find_their_objects(&dense);
    let sparse = sparse();
    assert!(!sparse.memmap_is_dense());
    fast_frees_find_their_objects(&sparse);
}

#[test]
fn wild_free_in_a_section_hole_is_reported() {
    let m = with_hole();
    for pa in [128 * MIB, 128 * MIB + 4096 + 64, 256 * MIB - 64] {
        refused(&m, va(&m, pa), "section hole");
    }
}

/// The direct-map ranges the host mapped `PROT_NONE` (`---p` in /proc/self/maps) inside
/// `[lo, hi)`: where a section's descriptors were before they moved to the vmemmap.
fn prot_none_ranges(lo: usize, hi: usize) -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| {
            let (range, rest) = l.split_once(' ')?;
            let (s, e) = range.split_once('-')?;
            let (s, e) = (usize::from_str_radix(s, 16).ok()?, usize::from_str_radix(e, 16).ok()?);
            (rest.starts_with("---") && s >= lo && e <= hi).then_some((s, e))
        })
        .collect()
}

#[test]
fn wild_free_in_a_moved_descriptor_hole_is_reported() {
    let m = with_hole();
    let dm = m.direct_map();
    let lo = dm.base.as_usize();
    let holes = prot_none_ranges(lo, lo + dm.limit.as_u64() as usize);
    assert!(!holes.is_empty(), "the descriptors moved out of the direct map");
    for (s, e) in holes.into_iter().take(2) {
        refused(&m, s, "moved descriptors");
        refused(&m, e - 64, "moved descriptors");
    }
}

#[test]
fn wild_free_in_an_absent_hotplug_section_is_reported() {
    pin_current_thread(0);
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat_zones())
        .cpus(2)
        .hotplug_max(512 * MIB)
        .build()
        .unwrap();
    let limit = m.direct_map().limit.as_u64();
    assert!(limit >= 512 * MIB, "the direct map reaches the hotplug reserve");
    for pa in [128 * MIB, 300 * MIB + 8, limit - 64] {
        refused(&m, va(&m, pa), "absent hotplug section");
    }
    m.hot_add(1).unwrap();
    refused(&m, va(&m, limit - 64), "absent hotplug section after a hot-add");
}

/// Anonymous RAM (what the process allocator boots): the reservation is opened only where
/// RAM is usable, so the section hole and the hotplug reserve stay `PROT_NONE` and a wild
/// free there is refused; each section's descriptors are written in their vmemmap slot,
/// made writable in place; and a hot-added section is opened and serves allocations, its
/// pages readable and writable.
#[test]
fn anonymous_ram_opens_only_usable_ranges_and_hot_adds() {
    pin_current_thread(0);
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB), MemRegion::usable(256 * MIB, 128 * MIB)])
        .zone_layout(flat_zones())
        .cpus(2)
        .anonymous_ram(true)
        .hotplug_max(640 * MIB)
        .build()
        .unwrap();
    assert!(m.ram_is_anonymous());
    let (base, len) = m.ram_range();
    let covered = |none: &[(usize, usize)], s: u64, e: u64| {
        none.iter().any(|&(a, b)| a <= base + s as usize && base + e as usize <= b)
    };
    let none = prot_none_ranges(base, base + len);
    assert!(covered(&none, 128 * MIB, 256 * MIB), "the section hole is open: {none:x?}");
    assert!(covered(&none, 384 * MIB, 640 * MIB), "the hotplug reserve is open: {none:x?}");
    let open = |none: &[(usize, usize)], s: u64, e: u64| {
        !none.iter().any(|&(a, b)| a < base + e as usize && base + (s as usize) < b)
    };
    assert!(open(&none, 0, 128 * MIB) && open(&none, 256 * MIB, 384 * MIB), "usable RAM is closed: {none:x?}");
    for pa in [128 * MIB + 64, 384 * MIB + 64] {
        refused(&m, va(&m, pa), "closed anonymous RAM");
    }

    let gained = m.hot_add(1).unwrap();
    assert!(gained > 0);
    let none = prot_none_ranges(base, base + len);
    assert!(open(&none, 384 * MIB, 512 * MIB), "the hot-added section is closed: {none:x?}");
    assert!(covered(&none, 512 * MIB, 640 * MIB), "beyond the hot-added section: {none:x?}");
    // Every block the machine has, written at both ends; some come from the new section.
    let order = kmem::Order::new(10).unwrap();
    let mut blocks = Vec::new();
    while let Ok(a) = m.__get_free_pages(Gfp::KERNEL | Gfp::NOWARN, order) {
        let p = a.as_usize() as *mut u8;
        // SAFETY: a 4 MiB block of ours.
        unsafe {
            p.write(1);
            p.add((4 * MIB - 1) as usize).write(2);
        }
        blocks.push(a);
    }
    assert!(blocks.iter().any(|a| a.as_usize() >= base + 384 * MIB as usize), "no block from the hot-added section");
    for a in blocks {
        // SAFETY: allocated above with this order, freed once.
        unsafe { m.free_pages(a, order) };
    }
    assert_eq!(counts(&m), [2, 2, 0], "only the two refused frees reported: {:#?}", m.reports().take());
}
