//! Memory hot-add: a machine boots small and grows by 128 MiB sections whose page
//! descriptors live in the sections themselves.

use crate::common;

use kmem::{Gfp, MemRegion, Order, PhysAddr, ReportKind, SlabFlags, ZoneLayout};
use kmem_hosted::{HotAddError, MachineBuilder};

const MIB: u64 = 1 << 20;

fn flat() -> ZoneLayout {
    ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None }
}

/// One 128 MiB section at boot, room to hot-add seven more, all ZONE_NORMAL, 2 CPUs.
fn small_growable() -> kmem_hosted::Machine {
    MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat())
        .cpus(2)
        .hotplug_max(1024 * MIB)
        .build()
        .unwrap()
}

fn meminfo_kb(m: &kmem_hosted::Machine, label: &str) -> u64 {
    let mut s = String::new();
    kmem::proc::meminfo(m, &mut s).unwrap();
    let l = s.lines().find(|l| l.starts_with(label)).unwrap().to_owned();
    l[label.len()..].trim().trim_end_matches(" kB").trim().parse().unwrap()
}

#[test]
fn a_small_machine_grows_by_sections() {
    let m = small_growable();
    let boot = m.boot_info();
    assert_eq!(boot.present_sections, 1);
    assert_eq!(boot.memmap_bytes, MIB, "descriptors for the boot section only");
    assert!(m.memmap_is_flat());
    let total0 = meminfo_kb(&m, "MemTotal:");
    let min0 = m.min_free_kbytes();
    // Fill the boot memory.
    let mut blocks = Vec::new();
    while let Ok(p) = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(9)) {
        blocks.push(p);
    }
    assert!(m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(9)).is_err());
    // Add two sections: 256 MiB, less their descriptors (1 MiB each).
    let added = m.hot_add(2).unwrap();
    assert_eq!(added, 2 * (32768 - 256));
    assert!(m.memmap_is_flat(), "a machine with a hotplug reserve has the vmemmap by default");
    assert_eq!(meminfo_kb(&m, "MemTotal:"), total0 + (added as u64) * 4);
    assert!(m.min_free_kbytes() > min0, "watermarks follow the larger machine");
    assert_eq!(m.max_pfn().as_usize(), 3 * 32768);
    // The new memory is allocatable, writable, and belongs to the zone it extends.
    let mut from_new = 0;
    for _ in 0..100 {
        let p = m.alloc_pages(Gfp::KERNEL, Order::of(9)).unwrap();
        from_new += usize::from(p.pfn().as_usize() >= 32768);
        let a = m.page_address(p).unwrap();
        // SAFETY: a fresh 2 MiB block of ours.
        unsafe { a.as_mut_ptr::<u8>().write_bytes(0x77, 2 << 20) };
        blocks.push(p);
    }
    // The boot section only had the blocks its old watermark kept back.
    assert!(from_new >= 80, "{from_new} of 100 blocks from the new sections");
    let z = m.zones().find(|z| z.is_populated()).unwrap();
    assert_eq!(z.end_pfn().as_usize(), 3 * 32768);
    // Slab objects work across the new memory too.
    let c = m.kmem_cache_create("hot", 4000, 0, SlabFlags::NO_MERGE, None).unwrap();
    let objs: Vec<_> = (0..1000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for p in objs {
        // SAFETY: ours.
        unsafe { m.kmem_cache_free(&c, p) };
    }
    drop(c);
    for p in blocks {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::of(9)) };
    }
    m.verify().unwrap();
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    // Only what was reserved at boot can be added.
    assert!(matches!(m.hot_add(8), Err(HotAddError::NoSpace)));
    m.hot_add(5).unwrap();
    assert!(matches!(m.hot_add(1), Err(HotAddError::NoSpace)));
}

#[test]
fn with_the_vmemmap_hot_added_sections_keep_the_memmap_flat() {
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat())
        .hotplug_max(512 * MIB)
        .vmemmap(true)
        .build()
        .unwrap();
    assert!(m.memmap_is_flat());
    m.hot_add(2).unwrap();
    assert!(m.memmap_is_flat(), "the new sections' descriptors moved to their vmemmap slots");
    // Every section's pages go round the lists through the flat lookup, and frees of
    // descriptors outside the direct map are this machine's.
    let blocks: Vec<_> = (0..160).map(|_| m.alloc_pages(Gfp::KERNEL, Order::of(9)).unwrap()).collect();
    assert!(blocks.iter().any(|p| p.pfn().as_usize() < 32768) && blocks.iter().any(|p| p.pfn().as_usize() >= 65536));
    for p in blocks {
        // SAFETY: a fresh 2 MiB block of ours.
        unsafe { m.page_address(p).unwrap().as_mut_ptr::<u8>().write_bytes(0x5a, 2 << 20) };
        // SAFETY: each block is ours, freed once with its order.
        unsafe { m.__free_pages(p, Order::of(9)) };
    }
    assert_eq!((m.report_count(ReportKind::BadPage), m.report_count(ReportKind::Warning)), (0, 0));
    m.verify().unwrap();
    // Another vmemmap machine's page is still refused.
    let other = MachineBuilder::new().ram_mib(128).cpus(1).vmemmap(true).build().unwrap();
    let p = other.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    // SAFETY: refused (another machine's page) before anything changes.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    // SAFETY: ours, freed once.
    unsafe { other.__free_pages(p, Order::ZERO) };
    other.verify().unwrap();
}

#[test]
fn without_the_vmemmap_a_hot_added_section_ends_the_flat_memmap() {
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat())
        .hotplug_max(512 * MIB)
        .vmemmap(false)
        .build()
        .unwrap();
    assert!(m.memmap_is_flat());
    m.hot_add(1).unwrap();
    assert!(!m.memmap_is_flat(), "the new section keeps its descriptors in itself");
    // Both sections' pages go round the lists through the sparse lookup.
    let blocks: Vec<_> = (0..120).map(|_| m.alloc_pages(Gfp::KERNEL, Order::of(9)).unwrap()).collect();
    assert!(blocks.iter().any(|p| p.pfn().as_usize() < 32768) && blocks.iter().any(|p| p.pfn().as_usize() >= 32768));
    for p in blocks {
        // SAFETY: each block is ours, freed once with its order.
        unsafe { m.__free_pages(p, Order::of(9)) };
    }
    m.verify().unwrap();
}

#[test]
fn hot_add_checks_its_arguments() {
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat())
        .hotplug_max(512 * MIB)
        .build()
        .unwrap();
    use kmem::boot::HotplugError as E;
    // SAFETY: each call is refused before touching memory.
    unsafe {
        assert_eq!(m.hot_add_memory(PhysAddr::new(128 * MIB + 4096), 128 * MIB, 0), Err(E::Unaligned));
        assert_eq!(m.hot_add_memory(PhysAddr::new(0), 128 * MIB, 0), Err(E::AlreadyPresent(0)));
        assert_eq!(m.hot_add_memory(PhysAddr::new(128 * MIB), 128 * MIB, 1), Err(E::NoSuchNode(1)));
        assert_eq!(m.hot_add_memory(PhysAddr::new(1024 * MIB), 128 * MIB, 0), Err(E::BeyondTable(8)));
    }
    // On x86-64's layout, memory above 4 GiB is ZONE_NORMAL, which a 256 MiB machine lacks.
    let x = MachineBuilder::new().ram_mib(256).hotplug_max(5 << 30).build().unwrap();
    // SAFETY: refused before touching memory.
    let r = unsafe { x.hot_add_memory(PhysAddr::new(4 << 30), 128 * MIB, 0) };
    assert_eq!(r, Err(E::ZoneNotPopulated(kmem::ZoneType::Normal)));
}

#[test]
fn concurrent_allocation_while_memory_arrives() {
    let m = small_growable();
    std::thread::scope(|s| {
        let m = &m;
        for t in 0..2u32 {
            s.spawn(move || {
                kmem_hosted::pin_current_thread(t);
                let mut held = Vec::new();
                for i in 0..3000 {
                    match m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of((i % 4) as u32)) {
                        Ok(p) => held.push((p, (i % 4) as u32)),
                        Err(_) => {
                            let _ = m.hot_add(1);
                        }
                    }
                }
                for (p, o) in held {
                    // SAFETY: ours.
                    unsafe { m.__free_pages(p, Order::of(o)) };
                }
            });
        }
    });
    m.verify().unwrap();
    assert_eq!(common::free_pages(&m) as u64 * 4, meminfo_kb(&m, "MemFree:"));
}

#[test]
fn free_page_reporting_reports_each_free_block_once() {
    use kmem::Pfn;
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    let free0 = common::free_pages(&m);
    let mut reported = Vec::new();
    let n = m.report_free_pages(Order::PAGEBLOCK, usize::MAX, &mut |pfn: Pfn, o: Order| {
        reported.push((pfn, o));
        false
    });
    assert_eq!(n, reported.len());
    let pages: usize = reported.iter().map(|(_, o)| o.nr_pages()).sum();
    assert!(pages * 10 > free0 * 9, "almost all free memory is in big blocks at boot: {pages} of {free0}");
    assert!(reported.iter().all(|(p, o)| p.is_aligned(*o) && *o >= Order::PAGEBLOCK));
    assert_eq!(common::free_pages(&m), free0, "reporting gives every block back");
    m.verify().unwrap();
    assert_eq!(m.report_free_pages(Order::PAGEBLOCK, usize::MAX, &mut |_, _| false), 0, "nothing new");
    // Allocate and free a 4 MiB block: it is reported again, and only it.
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(10)).unwrap();
    // SAFETY: ours; the block is written, so it is backed again.
    unsafe { m.page_address(p).unwrap().as_mut_ptr::<u8>().write_bytes(1, 4 << 20) };
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::of(10)) };
    let mut again = Vec::new();
    m.report_free_pages(Order::PAGEBLOCK, usize::MAX, &mut |pfn: Pfn, o: Order| {
        again.push((pfn, o));
        false
    });
    assert_eq!(again, vec![(p.pfn(), Order::new(10).unwrap())]);
    // A budget bounds the work.
    let m2 = MachineBuilder::new().ram_mib(256).build().unwrap();
    assert_eq!(m2.report_free_pages(Order::PAGEBLOCK, 3, &mut |_, _| false), 3);
    m2.verify().unwrap();
}

/// On a CPU-per-thread machine each CPU's per-CPU page lists are written as the CPU comes
/// up, with the zone's batch and high as they are then (`boot/pagesets.rs`): threads taking
/// CPUs while sections arrive (each hot-add recomputes the sizes of the lists written so
/// far) all end with the sizes of the grown zone, whichever came first, and their lists
/// hold only free pages.
#[test]
fn cpus_coming_up_while_memory_arrives_take_the_grown_zone_s_sizes() {
    const THREADS: usize = 12;
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat())
        .thread_cpus(THREADS + 4)
        .hotplug_max(1024 * MIB)
        .build()
        .unwrap();
    let zone = m.zones().max_by_key(|z| z.managed_pages()).unwrap();
    let before = (zone.pageset(0).or_else(|| (0..THREADS + 4).find_map(|c| zone.pageset(c))).unwrap()).high();
    // All alive at once, so that each holds its own CPU (an exited thread's CPU goes to the
    // next).
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        let (m, barrier) = (&m, &barrier);
        s.spawn(move || {
            for _ in 0..6 {
                m.hot_add(1).unwrap();
                std::thread::yield_now();
            }
        });
        for _ in 0..THREADS {
            s.spawn(move || {
                let pages: Vec<_> = (0..64).map(|_| m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
                barrier.wait();
                for p in pages {
                    // SAFETY: ours, freed once.
                    unsafe { m.__free_pages(p, Order::ZERO) };
                }
            });
        }
    });
    let written: Vec<_> = (0..THREADS + 4).filter_map(|c| zone.pageset(c)).collect();
    assert!(written.len() > THREADS, "the threads' CPUs came up: {}", written.len());
    let first = (written[0].batch(), written[0].high_min(), written[0].high_max());
    assert!(first.1 > before, "high grew with the zone: {} -> {}", before, first.1);
    for p in &written {
        assert_eq!((p.batch(), p.high_min(), p.high_max()), first, "every written pageset has the grown zone's sizes");
    }
    m.verify().unwrap();
}
