//! Boot: zone spans from the memory map, metadata carving, configuration errors.

use kmem::{BootError, Gfp, MemRegion, Order, ReportKind, ZoneType};
use kmem_hosted::{BuildError, MachineBuilder};

#[test]
fn default_machine_zones_match_linux_on_the_same_map() {
    // The default map is an x86-64 e820 with page 0 and 640 KiB-1 MiB reserved and a PCI hole
    // at 3-4 GiB. The real 6.18 zoneinfo in fixtures/linux-6.18-proc shows DMA start_pfn 1, spanned 4095,
    // present 3998 and DMA32 start_pfn 4096: the same shape.
    let m = MachineBuilder::new().cpus(2).build().unwrap();
    let n = m.node(0).unwrap();
    let dma = n.zone(ZoneType::Dma);
    assert_eq!((dma.start_pfn().as_usize(), dma.spanned_pages(), dma.present_pages()), (1, 4095, 3998));
    let dma32 = n.zone(ZoneType::Dma32);
    assert_eq!(
        (dma32.start_pfn().as_usize(), dma32.spanned_pages(), dma32.present_pages()),
        (0x1000, 0xbf000, 0xbf000)
    );
    let normal = n.zone(ZoneType::Normal);
    assert_eq!((normal.start_pfn().as_usize(), normal.present_pages()), (0x100000, 0x40000));
    // Metadata is carved top-down from Normal: 32 present sections x 1 MiB of descriptors.
    let b = m.boot_info();
    assert_eq!(b.present_sections, 32);
    assert_eq!(b.memmap_bytes, 32 << 20);
    // The per-CPU first chunk (2 units of 32 KiB, page-rounded headers) is carved below them.
    assert_eq!(b.percpu_bytes % 4096, 0);
    assert_eq!(
        normal.present_pages() - normal.managed_pages(),
        (b.metadata_bytes as usize).div_ceil(4096) + b.percpu_bytes as usize / 4096
    );
    assert_eq!(m.totalram_pages(), dma.managed_pages() + dma32.managed_pages() + normal.managed_pages());
    // min_free_kbytes = int_sqrt(lowmem_kbytes * 16).
    let lowmem_kb = m.totalram_pages() as u64 * 4;
    assert_eq!(m.min_free_kbytes(), kmem::mm::watermark::int_sqrt(lowmem_kb * 16));
    m.verify().unwrap();
}

#[test]
fn holes_have_no_descriptors_and_fault() {
    let m = MachineBuilder::new().cpus(1).build().unwrap();
    // The PCI hole (3-4 GiB) spans whole sections: no struct page there.
    assert!(m.pfn_to_page(kmem::PhysAddr::new(3 << 30).pfn()).is_none());
    assert!(m.pfn_to_page(kmem::PhysAddr::new((4 << 30) + 4096).pfn()).is_some());
    // Page 0 is in a present section but is a hole: it has a reserved descriptor.
    assert!(m.pfn_to_page(kmem::Pfn::new(0)).unwrap().is_reserved());
    // Touching the hole through the direct map faults: run that in a child process.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "boot::touch_the_pci_hole", "--ignored", "--nocapture"])
        .env("KMEM_TOUCH_HOLE", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigsegv()), "child: {:?}", out);
}

fn libc_sigsegv() -> i32 {
    11
}

#[test]
#[ignore = "run in a child process by holes_have_no_descriptors_and_fault"]
fn touch_the_pci_hole() {
    assert_eq!(std::env::var("KMEM_TOUCH_HOLE").as_deref(), Ok("1"), "only meant to run as a child");
    let m = MachineBuilder::new().cpus(1).build().unwrap();
    let va = m.direct_map().base.as_usize() + (3usize << 30);
    // SAFETY: deliberately invalid: the PCI hole is PROT_NONE and this must fault.
    unsafe { std::ptr::read_volatile(va as *const u8) };
    unreachable!("reading the PCI hole did not fault");
}

#[test]
fn bad_configurations_are_errors() {
    let overlap = vec![MemRegion::usable(0, 64 << 20), MemRegion::usable(32 << 20, 64 << 20)];
    assert!(matches!(
        MachineBuilder::new().memory_map(overlap).build(),
        Err(BuildError::Boot(BootError::Overlap { .. }))
    ));
    let split = vec![MemRegion::usable(0, 64 << 20), MemRegion::usable(64 << 20, 64 << 20).on_node(1)];
    assert!(matches!(
        MachineBuilder::new().memory_map(split).build(),
        Err(BuildError::Boot(BootError::SectionSpansNodes { section: 0 }))
    ));
    let none = vec![MemRegion::reserved(0, 64 << 20)];
    assert!(matches!(MachineBuilder::new().memory_map(none).build(), Err(BuildError::Boot(BootError::NoUsableMemory))));
    assert!(matches!(MachineBuilder::new().cpus(0).build(), Err(BuildError::Config(_))));
    assert!(matches!(MachineBuilder::new().ram_mib(256).nodes(4).build(), Err(BuildError::Config(_))));
}

#[test]
fn node_counts_are_checked_and_every_node_gets_ram() {
    let err = |n: usize| match MachineBuilder::new().ram_mib(8192).nodes(n).regions() {
        Err(BuildError::Config(e)) => e,
        other => panic!("{n} nodes: {other:?}"),
    };
    assert_eq!(err(0), "node count 0 out of range 1..=64");
    assert_eq!(err(65), "node count 65 out of range 1..=64");
    // Used to split forever (the node number wrapped) while growing memory.
    assert_eq!(err(1 << 32), "node count 4294967296 out of range 1..=64");
    // 8 GiB on x86-64 is 64 sections of usable RAM: any count up to 64 gets at least one
    // section per node (60 used to fail: the split gave the first nodes two each).
    for n in [2, 3, 7, 60, 64] {
        let regions = MachineBuilder::new().ram_mib(8192).nodes(n).regions().unwrap();
        let mut per_node = vec![0u64; n];
        for r in regions.iter().filter(|r| r.kind == kmem::RegionKind::Usable) {
            per_node[r.node as usize] += r.size;
        }
        let (lo, hi) = (per_node.iter().min().unwrap(), per_node.iter().max().unwrap());
        assert!(*lo >= 127 << 20, "{n} nodes: {per_node:?}");
        assert!(hi - lo <= 129 << 20, "{n} nodes: even split, give or take a section: {per_node:?}");
    }
    let m = MachineBuilder::new().ram_mib(8192).nodes(60).cpus(2).build().unwrap();
    assert_eq!(m.nr_nodes(), 60);
}

#[test]
fn early_reservations_and_an_unusual_layout() {
    // An arm64-like map: RAM starting at 1 GiB, ZONE_DMA below 4 GiB only (no DMA32).
    let map = vec![MemRegion::usable(1 << 30, 512 << 20)];
    let layout = kmem::ZoneLayout { dma_end: Some(kmem::PhysAddr::new(1 << 32)), dma32_end: None, highmem_start: None };
    let m = MachineBuilder::new().memory_map(map).zone_layout(layout).cpus(1).build().unwrap();
    let dma = m.node(0).unwrap().zone(ZoneType::Dma);
    assert_eq!(dma.start_pfn().as_usize(), (1 << 30) >> 12);
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.page_zone(p.page()).zone_type(), ZoneType::Dma, "the only zone serves GFP_KERNEL");
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
}

#[test]
fn boot_never_frees_a_partly_reserved_page() {
    use kmem::mm::page::pg;
    use kmem::PhysAddr;
    // A reservation that starts and ends inside one page. (The machine state, carved
    // top-down at 64-byte alignment, is the other such page: the core's unit test
    // `machine::tests::the_machine_state_page_stays_reserved` checks it.)
    let odd = PhysAddr::new(0x20_0100);
    let m = MachineBuilder::new().ram_mib(256).cpus(2).reserve(odd, 0x100).build().unwrap();
    let page = m.pfn_to_page(odd.pfn()).unwrap().page();
    assert!(page.test(pg::RESERVED), "{odd} holds boot data but is not PG_reserved");
    assert!(!page.test(pg::BUDDY), "{odd} holds boot data but is on a buddy free list");
    // Zeroed movable order-0 allocations take single free pages first: none of them may be
    // a page holding boot data, and the machine keeps working (a zeroed machine state
    // would not).
    let pages: Vec<_> =
        (0..16).map(|_| m.alloc_pages(Gfp::KERNEL | Gfp::MOVABLE | Gfp::ZERO, Order::ZERO).unwrap()).collect();
    assert!(pages.iter().all(|p| p.pfn() != odd.pfn()));
    for p in pages {
        // SAFETY: each page is ours and unused from here on.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    m.verify().unwrap();
}

#[test]
fn one_node_machines_without_section_holes_get_a_flat_memmap() {
    // Without the vmemmap: contiguous sections on one node are one descriptor buffer in pfn
    // order (mm/memmap.rs); the PCI hole (3-4 GiB, eight absent sections between present
    // ones) and two nodes (each carves its own) keep the sparse lookup.
    let b = || MachineBuilder::new().vmemmap(false);
    let flat = MachineBuilder::new().ram_mib(512).cpus(1).build().unwrap();
    assert!(flat.memmap_is_flat(), "flat without the vmemmap, which is then off by default");
    let holes = b().ram_mib(4096).cpus(1).build().unwrap();
    assert!(!holes.memmap_is_flat());
    let numa = b().ram_mib(512).nodes(2).cpus(2).build().unwrap();
    assert!(!numa.memmap_is_flat());
    // Such machines get the vmemmap by default: every section's descriptors sit at their
    // slot, flat.
    let vm_holes = MachineBuilder::new().ram_mib(4096).cpus(1).build().unwrap();
    assert!(vm_holes.memmap_is_flat());
    let vm_numa = MachineBuilder::new().ram_mib(512).nodes(2).cpus(2).build().unwrap();
    assert!(vm_numa.memmap_is_flat());
    // Each allocates and frees through its own lookup, and its lists stay consistent.
    for m in [&flat, &holes, &numa, &vm_holes, &vm_numa] {
        let blocks: Vec<_> = (0..600).map(|i| m.alloc_pages(Gfp::KERNEL, Order::of(i % 4)).unwrap()).collect();
        for (i, p) in blocks.into_iter().enumerate() {
            // SAFETY: each block is ours, freed once with its order.
            unsafe { m.__free_pages(p, Order::of(i as u32 % 4)) };
        }
        m.drain_all_pages();
        m.verify().unwrap();
    }
    // The hole stays a hole for lookups nobody vouches for.
    assert!(vm_holes.pfn_to_page(kmem::PhysAddr::new(3 << 30).pfn()).is_none());
}
