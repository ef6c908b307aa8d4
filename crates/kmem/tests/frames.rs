//! Frame states (`Kmem::frame`, `for_each_frame_block`) on real hosted machines: every kind of
//! owner is recognised on every frame of its block, free blocks report their order, the walk
//! agrees with single-frame lookups and with buddyinfo, HighMem is marked, and a walk racing
//! allocations neither panics nor loses frames.

use kmem::{FrameState, Gfp, Order, Pfn, SlabFlags, ZoneType};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder, Preset};

fn small() -> Machine {
    MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap()
}

fn states(m: &Machine, first: Pfn, n: usize) -> Vec<FrameState> {
    (0..n).map(|i| m.frame_state(first.add(i))).collect()
}

/// Every frame below max_pfn, through the walk.
fn walk(m: &Machine) -> Vec<kmem::Frame> {
    let mut v = Vec::new();
    m.for_each_frame(|pfn, f| {
        assert_eq!(pfn.as_usize(), v.len(), "frames come in order, each once");
        v.push(f);
    });
    assert_eq!(v.len(), m.max_pfn().as_usize());
    v
}

#[test]
fn fresh_machine_free_reserved_and_holes() {
    pin_current_thread(0);
    let m = small();
    let frames = walk(&m);
    // Page 0 and the legacy hole [0x9f000, 1 MiB) are not usable RAM in the firmware map:
    // descriptors marked PG_nomem, shown as holes.
    assert_eq!(frames[0].state, FrameState::Hole);
    assert_eq!(frames[0xa0].state, FrameState::Hole);
    assert!(frames[0x100].state.is_free());
    // Free frames per order add up to buddyinfo (nothing is on per-CPU lists yet).
    for z in m.zones().filter(|z| z.is_populated()) {
        for o in kmem::Order::all() {
            let n = frames
                .iter()
                .enumerate()
                .filter(|(pfn, f)| z.spans(Pfn::new(*pfn)) && f.state == FrameState::Free { order: o.as_u32() as u8 })
                .count();
            assert_eq!(n, z.nr_free(o) << o.as_u32(), "zone {} order {}", z.name(), o.as_u32());
        }
    }
    let free = frames.iter().filter(|f| f.state.is_free()).count();
    assert_eq!(free, m.zones().map(|z| z.free_pages()).sum::<usize>());
    // The top of RAM holds boot metadata (page descriptors etc.): reserved.
    assert_eq!(frames[frames.len() - 1].state, FrameState::Reserved);
    assert_eq!(frames[1].zone, Some(ZoneType::Dma));
    assert_eq!(frames[0x5000].zone, Some(ZoneType::Dma32));
    assert!(frames.iter().all(|f| !f.is_highmem()));
    // Beyond the memory map: holes, not a panic.
    assert_eq!(m.frame_state(Pfn::new(1 << 40)), FrameState::Hole);
}

#[test]
fn owners_are_recognised_on_every_frame() {
    pin_current_thread(0);
    let m = small();
    // An order-3 block (not compound): head and the 7 frames that carry nothing.
    let b3 = m.alloc_pages(Gfp::KERNEL, Order::of(3)).unwrap();
    assert_eq!(states(&m, b3.pfn(), 8), vec![FrameState::Allocated { order: Some(3) }; 8]);
    // A compound order-2 block: the tails name their head.
    let c2 = m.alloc_pages(Gfp::KERNEL | Gfp::COMP, Order::of(2)).unwrap();
    assert_eq!(states(&m, c2.pfn(), 4), vec![FrameState::Allocated { order: Some(2) }; 4]);
    // A slab of a named cache.
    let cache = m.kmem_cache_create("frame_test", 700, 0, SlabFlags::NO_MERGE, None).unwrap();
    let obj = m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap();
    let slab_page = m.compound_head(m.virt_to_page(kmem::VirtAddr::from_ptr(obj.as_ptr())).unwrap());
    let id = cache.id();
    let slab_frames = 1usize << cache.order();
    assert!(slab_frames > 1, "a 700-byte cache uses multi-page slabs");
    assert_eq!(states(&m, slab_page.pfn(), slab_frames), vec![FrameState::Slab { cache_id: id }; slab_frames]);
    // A large kmalloc (64 KiB: an order-4 compound block).
    let big = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap();
    let big_pfn = m.virt_to_page(kmem::VirtAddr::from_ptr(big.as_ptr())).unwrap().pfn();
    assert_eq!(states(&m, big_pfn, 16), vec![FrameState::KmallocLarge; 16]);
    // Order-0 allocations refill the per-CPU list: the rest of the batch is there.
    let p0 = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.frame_state(p0.pfn()), FrameState::Allocated { order: Some(0) });
    let frames = walk(&m);
    assert!(frames.iter().any(|f| f.state == FrameState::Pcp { order: 0 }), "the pcp batch shows");
    // The walk and the single-frame lookups agree everywhere.
    for (pfn, f) in frames.iter().enumerate() {
        assert_eq!(m.frame(Pfn::new(pfn)), *f, "pfn {pfn:#x}");
    }

    // Freed, each block is free again (on the buddy lists or a per-CPU list).
    // SAFETY: the blocks and objects are ours and unused from here on.
    unsafe {
        m.__free_pages(b3, Order::of(3));
        m.__free_pages(c2, Order::of(2));
        m.__free_pages(p0, Order::ZERO);
        m.kfree(big.as_ptr());
        m.kmem_cache_free(&cache, obj);
    }
    for pfn in [b3.pfn(), c2.pfn(), p0.pfn(), big_pfn] {
        assert!(m.frame_state(pfn).is_free(), "{pfn:?}: {:?}", m.frame_state(pfn));
    }
    drop(cache);
    m.drain_all_pages();
    let frames = walk(&m);
    assert!(!frames.iter().any(|f| matches!(f.state, FrameState::Pcp { .. })), "drained");
    assert!(matches!(m.frame_state(b3.pfn()), FrameState::Free { order } if order >= 3));
}

#[test]
fn vmalloc_pages_classify() {
    pin_current_thread(0);
    let m = small();
    // Every frame of a vmalloc area is a vmalloc frame while the area lives. (Page-table
    // frames: the hosted platform maps with mmap and asks for none; the core's unit test
    // `vmalloc::pt_tests::page_table_frames_classify` covers them.)
    let p = m.vmalloc(2 * kmem::PAGE_SIZE).unwrap();
    let pfns: Vec<_> =
        (0..2).map(|i| m.vmalloc_to_pfn(p.as_ptr().wrapping_add(i * kmem::PAGE_SIZE)).unwrap()).collect();
    let frames = walk(&m);
    for &pfn in &pfns {
        assert_eq!(m.frame_state(pfn), FrameState::Vmalloc);
        assert_eq!(frames[pfn.as_usize()].state, FrameState::Vmalloc);
    }
    // SAFETY: ours, unused from here on.
    unsafe { m.vfree(p.as_ptr()) };
    // A small freed area stays mapped with its pages in the CPU's recycle slots until drained.
    m.vm_unmap_aliases();
    for &pfn in &pfns {
        assert_ne!(m.frame_state(pfn), FrameState::Vmalloc, "freed pages lose the kind");
    }
}

#[test]
fn percpu_chunks_show() {
    pin_current_thread(0);
    let m = small();
    // The first chunk's dynamic region is 24 KiB: a second 20 KiB area needs a dynamic chunk.
    let a = m.__alloc_percpu(20 << 10, 8).unwrap();
    let b = m.__alloc_percpu(20 << 10, 8).unwrap();
    let n = walk(&m).iter().filter(|f| f.state == FrameState::Percpu).count();
    // Two order-3 units (one per CPU) and the order-1 header.
    assert_eq!(n, 2 * 8 + 2);
    // SAFETY: ours, unused from here on.
    unsafe {
        m.free_percpu(b);
        m.free_percpu(a);
    }
    m.pcpu_free_empty_chunks();
    assert_eq!(walk(&m).iter().filter(|f| f.state == FrameState::Percpu).count(), 0, "PG_percpu cleared at free");
}

#[test]
fn highmem_is_marked() {
    pin_current_thread(0);
    let m = MachineBuilder::new().ram_mib(1024).cpus(1).preset(Preset::X86_32).build().unwrap();
    let hm = m.zones().find(|z| z.zone_type() == ZoneType::HighMem && z.is_populated()).expect("a HighMem zone");
    let frames = walk(&m);
    for (pfn, f) in frames.iter().enumerate() {
        if f.state != FrameState::Hole {
            assert_eq!(f.is_highmem(), hm.spans(Pfn::new(pfn)), "pfn {pfn:#x}");
        }
    }
    let p = m.alloc_pages(Gfp::HIGHUSER_MOVABLE, Order::ZERO).unwrap();
    let f = m.frame(p.pfn());
    assert!(f.is_highmem());
    assert_eq!(f.state, FrameState::Allocated { order: Some(0) });
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
}

#[test]
fn walking_while_others_allocate_is_safe() {
    let m = MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread(1);
            let mut live = Vec::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i = i.wrapping_add(1);
                let order = [0, 0, 1, 3, 5, 9][(i % 6) as usize];
                if let Ok(p) = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(order)) {
                    live.push((p, order));
                }
                if live.len() > 64 || i % 3 == 0 {
                    if let Some((p, o)) = live.pop() {
                        // SAFETY: ours.
                        unsafe { m.__free_pages(p, Order::of(o)) };
                    }
                }
            }
            for (p, o) in live {
                // SAFETY: ours.
                unsafe { m.__free_pages(p, Order::of(o)) };
            }
        });
        pin_current_thread(0);
        for _ in 0..20 {
            let mut n = 0;
            m.for_each_frame_block(0..m.max_pfn().as_usize(), |first, len, _| {
                assert_eq!(first.as_usize(), n, "runs are contiguous");
                assert!(len > 0);
                n += len;
            });
            assert_eq!(n, m.max_pfn().as_usize());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    m.verify().unwrap();
}
