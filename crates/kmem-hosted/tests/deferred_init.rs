//! Deferred struct-page initialisation (`BootConfig::deferred_init`, `kmem/src/boot/deferred.rs`):
//! a machine that boots with only a few MiB of descriptors written ends up, once it has used
//! its memory, exactly where a machine that initialised everything at boot starts, and the
//! views and checks are consistent on the way.

use crate::common;

use std::fmt::{self, Write};
use std::sync::{Arc, Barrier};

use kmem::{FrameState, Gfp, Kmem, Order, Pfn, PhysAddr, ReportKind, VirtAddr, ZoneType};
use kmem_hosted::{HostedPlatform, Machine, MachineBuilder};

use common::{buddyinfo, free_pages};

const MIB: u64 = 1 << 20;

fn builder(mib: u64, cpus: usize) -> MachineBuilder {
    MachineBuilder::new().ram_mib(mib).cpus(cpus)
}

fn pair(b: MachineBuilder, bytes: u64) -> (Machine, Machine) {
    (b.clone().build().unwrap(), b.deferred_init(Some(bytes)).build().unwrap())
}

fn show(m: &Kmem<HostedPlatform>, view: fn(&Kmem<HostedPlatform>, &mut dyn Write) -> fmt::Result) -> String {
    let mut s = String::new();
    view(m, &mut s).unwrap();
    s
}

/// The line of `view` that starts with `label`.
fn line(text: &str, label: &str) -> String {
    text.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} line")).to_owned()
}

fn zone(m: &Machine, zt: ZoneType) -> &kmem::mm::zone::Zone {
    m.node(0).unwrap().zone(zt)
}

/// Takes order-`order` blocks until the allocator fails; returns them.
fn take_all(m: &Machine, order: u32) -> Vec<kmem::PageRef<'_>> {
    let mut v = Vec::new();
    while let Ok(p) = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(order)) {
        v.push(p);
    }
    v
}

#[test]
fn boot_defers_the_highest_zone_and_counts_it_as_linux_does() {
    let (full, lazy) = pair(builder(1024, 2), 4 * MIB);
    lazy.verify().unwrap();
    let (n_full, n_lazy) = (zone(&full, ZoneType::Dma32), zone(&lazy, ZoneType::Dma32));
    // Most of DMA32 (the highest zone of the node) waits; DMA is initialised at boot.
    assert!(lazy.deferred_pages() > 200 << 8, "{} frames deferred", lazy.deferred_pages());
    assert_eq!(n_lazy.deferred_pages(), lazy.deferred_pages());
    assert_eq!(zone(&lazy, ZoneType::Dma).deferred_pages(), 0);
    assert_eq!(zone(&lazy, ZoneType::Dma).managed_pages(), zone(&full, ZoneType::Dma).managed_pages());
    // present and spanned count deferred frames, managed does not; MemTotal does (Linux's
    // memblock_free_all counts them), MemFree does not.
    assert_eq!(n_lazy.present_pages(), n_full.present_pages());
    assert_eq!(n_lazy.spanned_pages(), n_full.spanned_pages());
    assert_eq!(n_lazy.managed_pages() + n_lazy.deferred_pages(), n_full.managed_pages());
    assert!(n_lazy.managed_pages() >= 1024, "at least the 4 MiB asked for");
    assert!(n_lazy.managed_pages() < 2048 + 4096, "little more than asked: {}", n_lazy.managed_pages());
    assert_eq!(lazy.totalram_pages(), full.totalram_pages());
    let (mi_full, mi_lazy) = (show(&full, kmem::proc::meminfo), show(&lazy, kmem::proc::meminfo));
    assert_eq!(line(&mi_lazy, "MemTotal:"), line(&mi_full, "MemTotal:"));
    assert_ne!(line(&mi_lazy, "MemFree:"), line(&mi_full, "MemFree:"));
    // Watermarks and per-CPU list sizes are what the zone will manage (as Linux computes them
    // after its deferred init): the same as the fully initialised machine's from the start.
    let (zi_full, zi_lazy) = (show(&full, kmem::proc::zoneinfo), show(&lazy, kmem::proc::zoneinfo));
    for label in ["        min ", "        low ", "        high ", "              high:", "              batch:"] {
        let pick = |t: &str| t.lines().filter(|l| l.starts_with(label)).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(pick(&zi_lazy), pick(&zi_full), "{label}");
    }
    // The pageblock counts already count the deferred chunks' pageblocks as what they will be.
    let blocks = |t: &str| t.split("Number of blocks type").nth(1).unwrap().to_owned();
    assert_eq!(blocks(&show(&lazy, kmem::proc::pagetypeinfo)), blocks(&show(&full, kmem::proc::pagetypeinfo)));
    let full_ok = lazy.deferred_init_all();
    assert_eq!(full_ok, n_full.managed_pages() - (n_lazy.managed_pages() - full_ok));
    assert_eq!(lazy.deferred_pages(), 0);
    lazy.verify().unwrap();
    assert_eq!(n_lazy.managed_pages(), n_full.managed_pages());
    assert_eq!(buddyinfo(&lazy), buddyinfo(&full), "every chunk freed as one block, as boot frees it");
}

#[test]
fn without_deferral_nothing_is_deferred() {
    let m = builder(512, 2).build().unwrap();
    assert_eq!(m.deferred_pages(), 0);
    assert!(m.zones().all(|z| z.deferred_pages() == 0));
    assert_eq!(m.deferred_init_all(), 0);
}

#[test]
fn a_deferred_machine_allocates_all_its_memory() {
    for (mib, nodes) in [(1024u64, 1usize), (1024, 2)] {
        let b = builder(mib, 2).nodes(nodes);
        let (full, lazy) = pair(b, 0);
        lazy.verify().unwrap();
        let before = lazy.deferred_pages();
        assert!(before > 0);
        // Take everything in order-3 blocks, checking the machine at stages on the way.
        let mut got = Vec::new();
        let mut checked = 0;
        while let Ok(p) = lazy.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(3)) {
            got.push(p);
            if got.len() % 4096 == 0 {
                lazy.verify().unwrap();
                checked += 1;
            }
        }
        assert!(checked >= 4, "verified at {checked} stages only");
        assert_eq!(lazy.deferred_pages(), 0, "the allocator initialised every chunk before failing");
        lazy.verify().unwrap();
        let got_full = take_all(&full, 3);
        assert_eq!(got.len(), got_full.len(), "{nodes} node(s): the same memory as the fully initialised machine");
        for p in got {
            // SAFETY: ours, unused.
            unsafe { lazy.__free_pages(p, Order::of(3)) };
        }
        for p in got_full {
            // SAFETY: ours, unused.
            unsafe { full.__free_pages(p, Order::of(3)) };
        }
        lazy.verify().unwrap();
        assert_eq!(buddyinfo(&lazy), buddyinfo(&full));
        assert_eq!(free_pages(&lazy), free_pages(&full));
        for (a, b) in lazy.zones().zip(full.zones()) {
            assert_eq!(a.managed_pages(), b.managed_pages(), "{}", a.name());
        }
        assert_eq!(show(&lazy, kmem::proc::meminfo), show(&full, kmem::proc::meminfo));
        assert_eq!(lazy.report_count(ReportKind::BadPage), 0);
    }
}

#[test]
fn concurrent_allocation_while_chunks_initialise() {
    const THREADS: usize = 4;
    let b = builder(1024, THREADS);
    let (full, lazy) = pair(b, 0);
    let lazy = Arc::new(lazy);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (m, start) = (lazy.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                // Mixed orders, so that threads race through the pcp lists and the buddy lists
                // while others initialise chunks.
                let mut held = Vec::new();
                let mut i = 0u32;
                loop {
                    let order = [0, 3, 1, 9, 0, 2][((i as usize) + t) % 6];
                    i += 1;
                    match m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(order)) {
                        Ok(p) => held.push((p.pfn(), order)),
                        Err(_) if order > 0 => continue,
                        Err(_) => break,
                    }
                }
                let pages: usize = held.iter().map(|(_, o)| 1usize << o).sum();
                for (pfn, order) in held {
                    let p = m.pfn_to_page(pfn).expect("allocated pages have initialised descriptors");
                    // SAFETY: ours, unused.
                    unsafe { m.__free_pages(p, Order::of(order)) };
                }
                pages
            })
        })
        .collect();
    let pages: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(lazy.deferred_pages(), 0);
    lazy.verify().unwrap();
    assert!(pages > 200 << 8, "the threads got {pages} pages");
    assert_eq!(free_pages(&lazy), free_pages(&full), "every page came back");
    assert_eq!(buddyinfo(&lazy), buddyinfo(&full));
    assert_eq!(lazy.report_count(ReportKind::BadPage), 0);
}

#[test]
fn deferred_frames_are_not_valid_until_initialised_and_misuse_changes_nothing() {
    let m = builder(512, 1).deferred_init(Some(4 * MIB)).build().unwrap();
    // The highest deferred frame.
    let pfn = (0..m.max_pfn().as_usize())
        .rev()
        .map(Pfn::new)
        .find(|&p| m.frame_state(p) == FrameState::Reserved && m.pfn_to_page(p).is_none())
        .expect("a deferred frame");
    assert!(!m.pfn_valid(pfn));
    let mut runs = Vec::new();
    m.for_each_frame_block(pfn.as_usize()..pfn.as_usize() + 1, |_, n, f| runs.push((n, f.state, f.zone)));
    assert_eq!(runs, [(1, FrameState::Reserved, Some(ZoneType::Dma32))]);
    let addr = m.phys_to_virt(pfn.phys()).unwrap();
    let deferred = m.deferred_pages();
    let warnings = m.report_count(ReportKind::Warning);
    // kfree of a pointer into a deferred chunk: kmem never made it; reported, nothing changes.
    // SAFETY: kfree checks the pointer and reports it (this test's point).
    unsafe { m.kfree(addr.as_mut_ptr::<u8>()) };
    assert_eq!(m.report_count(ReportKind::Warning), warnings + 1, "kfree of a deferred frame is reported");
    assert!(m.virt_to_page(VirtAddr::new(addr.as_usize())).is_none());
    assert_eq!(m.deferred_pages(), deferred);
    m.verify().unwrap();
    m.deferred_init_all();
    m.verify().unwrap();
    assert_eq!(m.frame_state(pfn), FrameState::Free { order: 10 });
    assert!(m.pfn_to_page(pfn).is_some());
    let got = take_all(&m, 0);
    assert!(got.iter().any(|p| p.pfn() == pfn), "the frame is allocatable once initialised");
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn chunks_with_reservations_holes_or_lower_zones_are_initialised_at_boot() {
    // A caller's reservation in the middle of DMA32, and the x86 map's holes below 1 MiB.
    let b = builder(512, 1).reserve(PhysAddr::new(300 << 20), 6 << 20);
    let (full, lazy) = pair(b, 0);
    // The two 4 MiB chunks the reservation touches, [300, 308) MiB, are initialised at boot;
    // so are the chunks of DMA (below 16 MiB) with its holes.
    for pfn in [300 << 8, (306 << 8) - 1, 306 << 8, (308 << 8) - 1, 0, 0x9f, 0x100, 4095].map(Pfn::new) {
        assert_eq!(lazy.frame_state(pfn), full.frame_state(pfn), "pfn {pfn:?}");
        assert!(lazy.pfn_to_page(pfn).is_some(), "pfn {pfn:?} was initialised at boot");
    }
    assert_eq!(lazy.frame_state(Pfn::new(300 << 8)), FrameState::Reserved);
    // Their free neighbours wait.
    for pfn in [(300 << 8) - 1, 308 << 8].map(Pfn::new) {
        assert!(lazy.pfn_to_page(pfn).is_none(), "pfn {pfn:?} is deferred");
        assert_eq!(lazy.frame_state(pfn), FrameState::Reserved);
        assert_ne!(full.frame_state(pfn), FrameState::Reserved);
    }
    lazy.deferred_init_all();
    lazy.verify().unwrap();
    assert_eq!(buddyinfo(&lazy), buddyinfo(&full));
    let mut a = Vec::new();
    let mut b = Vec::new();
    lazy.for_each_frame_block(0..lazy.max_pfn().as_usize(), |p, n, f| a.push((p, n, f)));
    full.for_each_frame_block(0..full.max_pfn().as_usize(), |p, n, f| b.push((p, n, f)));
    assert_eq!(a, b, "the frame maps agree once everything is initialised");
}

#[test]
fn hot_add_after_deferred_boot() {
    let m = builder(256, 1)
        .preset(kmem_hosted::Preset::X86_64)
        .hotplug_max(1 << 30)
        .deferred_init(Some(0))
        .build()
        .unwrap();
    let deferred = m.deferred_pages();
    assert!(deferred > 0);
    let total = m.totalram_pages();
    let added = m.hot_add(1).unwrap();
    assert_eq!(m.totalram_pages(), total + added);
    assert_eq!(m.deferred_pages(), deferred, "a hot-added section is initialised whole");
    m.verify().unwrap();
    let got = take_all(&m, 0);
    assert_eq!(m.deferred_pages(), 0);
    m.verify().unwrap();
    drop(got);
}
