//! Free memory known to read as zero (`pg::ZEROED`, `mm/zeroed.rs`): on the hosted platform RAM
//! is a fresh memfd, so a `__GFP_ZERO` allocation of memory nobody has written since boot (or
//! hot-add) skips the clearing and never touches it: its host pages stay unpopulated, which
//! `mincore` shows. Memory that was handed out and written is cleared again, however it was
//! split and merged on the way back.

use crate::common;

use kmem::{Gfp, MemRegion, Order, ZoneLayout};
use kmem_hosted::{Machine, MachineBuilder};

const MIB: u64 = 1 << 20;

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap()
}

/// Pages of the block at `page` (of `order`) that the host has populated (`mincore`).
fn resident(m: &Machine, page: kmem::PageRef<'_>, order: Order) -> usize {
    let addr = m.page_address(page).unwrap().as_usize();
    let n = order.nr_pages();
    let mut vec = vec![0u8; n];
    // SAFETY: `addr` is the page-aligned direct-map address of `n` pages of the machine's RAM
    // mapping; `vec` has a byte per page.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, n * kmem::PAGE_SIZE, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// Every byte of the block is zero.
fn reads_zero(m: &Machine, page: kmem::PageRef<'_>, order: Order) -> bool {
    let addr = m.page_address(page).unwrap().as_usize();
    // SAFETY: the caller's block, `order` pages at its direct-map address.
    let b = unsafe { std::slice::from_raw_parts(addr as *const u8, order.bytes()) };
    b.iter().all(|&x| x == 0)
}

/// Writes a pattern over the whole block.
fn dirty(m: &Machine, page: kmem::PageRef<'_>, order: Order) {
    let addr = m.page_address(page).unwrap().as_usize();
    // SAFETY: the caller's block, `order` pages at its direct-map address.
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0xa5, order.bytes()) };
}

#[test]
fn zeroed_allocations_of_fresh_memory_touch_nothing() {
    let m = machine();
    // Order 0 (the per-CPU lists' refills and the fast path), split blocks, large ones, all
    // kept until the end (a freed block counts as written: the next round would clear it).
    // A few pages boot used and freed again (slabs of the boot caches, sheaves) are cleared.
    let mut all = Vec::new();
    for (order, n) in [(0, 4096), (2, 512), (5, 64), (9, 32), (10, 16)] {
        let order = Order::of(order);
        let got: Vec<_> = (0..n).map(|_| m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, order).unwrap()).collect();
        let written: usize = got.iter().map(|&p| resident(&m, p, order)).sum();
        assert!(written <= 64, "order {order:?}: {written} of {} fresh pages written", n * order.nr_pages());
        all.extend(got.into_iter().map(|p| (p, order)));
    }
    for (p, order) in all {
        assert!(reads_zero(&m, p, order));
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(p, order) };
    }
    common::assert_still_works(&m);
}

#[test]
fn written_memory_is_cleared_again_whatever_the_way_back() {
    let m = machine();
    for pcp in [true, false] {
        m.set_pcp_enabled(pcp);
        // Dirty a good part of the machine in blocks of several orders, free them in an order
        // that merges them with fresh neighbours, and take it all again zeroed, in other sizes.
        for (write, read) in [(0u32, 3u32), (3, 0), (9, 4), (2, 10), (10, 0)] {
            let (wo, ro) = (Order::of(write), Order::of(read));
            let blocks: Vec<_> = (0..(8192 >> write).max(4)).map(|_| m.alloc_pages(Gfp::KERNEL, wo).unwrap()).collect();
            for &p in &blocks {
                dirty(&m, p, wo);
            }
            for p in blocks.into_iter().rev() {
                // SAFETY: ours, freed once.
                unsafe { m.__free_pages(p, wo) };
            }
            m.drain_all_pages();
            let again: Vec<_> =
                (0..(8192 >> read).max(4) * 2).map(|_| m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, ro).unwrap()).collect();
            for &p in &again {
                assert!(reads_zero(&m, p, ro), "pcp {pcp}: order {write} written, order {read} not cleared");
            }
            for p in again {
                // SAFETY: ours, freed once.
                unsafe { m.__free_pages(p, ro) };
            }
        }
    }
    common::assert_still_works(&m);
}

/// A written page merges with the fresh pages around it into a block that does not read as
/// zero: the whole block is cleared when it is handed out zeroed, whatever its size then.
#[test]
fn a_written_page_spoils_the_block_it_merges_into() {
    let m = machine();
    m.set_pcp_enabled(false);
    m.drain_all_pages();
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let pfn = p.pfn().as_usize();
    dirty(&m, p, Order::ZERO);
    // SAFETY: ours, freed once: it merges back with its free (fresh) buddies.
    unsafe { m.__free_pages(p, Order::ZERO) };
    // Take everything, largest blocks first, and look at the block holding the page.
    let mut all = Vec::new();
    let mut found = false;
    for order in (0..=10).rev().map(Order::of) {
        while let Ok(b) = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO | Gfp::NOWARN, order) {
            let start = b.pfn().as_usize();
            if (start..start + order.nr_pages()).contains(&pfn) {
                assert!(reads_zero(&m, b, order), "order {order:?} block holding the written page");
                found = true;
            }
            all.push((b, order));
        }
    }
    assert!(found, "the written page was handed out again");
    for (b, order) in all {
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(b, order) };
    }
}

#[test]
fn bulk_and_single_pages_written_then_zeroed() {
    let m = machine();
    // The order-0 fast path's LIFO: the page just freed comes back at once.
    for _ in 0..100 {
        let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
        dirty(&m, p, Order::ZERO);
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(p, Order::ZERO) };
        let z = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, Order::ZERO).unwrap();
        assert_eq!(z.pfn(), p.pfn(), "the per-CPU list hands the page back");
        assert!(reads_zero(&m, z, Order::ZERO));
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(z, Order::ZERO) };
    }
}

/// Free page reporting whose report discards the memory (here `MADV_REMOVE` on the memfd, as
/// kmem-alloc's `MADV_DONTNEED` on its anonymous RAM) marks the block as reading zero: a
/// zeroed allocation of it touches nothing; a report that keeps the memory marks nothing.
#[test]
fn a_reported_block_whose_memory_was_dropped_reads_zero() {
    let m = machine();
    let order = Order::of(9);
    for drop_memory in [false, true] {
        let p = m.alloc_pages(Gfp::KERNEL, order).unwrap();
        dirty(&m, p, order);
        let pfn = p.pfn();
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(p, order) };
        m.drain_all_pages();
        let mut seen = false;
        m.report_free_pages(order, usize::MAX, &mut |at, o| {
            if !(at..at.add(o.nr_pages())).contains(&pfn) {
                return false;
            }
            seen = true;
            if drop_memory {
                let addr = m.phys_to_virt(at.phys()).unwrap();
                // SAFETY: the block is off the free lists while it is reported: nobody uses
                // its bytes; MADV_REMOVE drops them from the memfd (they read back as zero).
                let rc = unsafe { libc::madvise(addr.as_usize() as *mut libc::c_void, o.bytes(), libc::MADV_REMOVE) };
                assert_eq!(rc, 0, "madvise: {}", std::io::Error::last_os_error());
            }
            drop_memory
        });
        assert!(seen, "the freed block was reported");
        // Take everything of that order and larger until the block comes back.
        let mut got = Vec::new();
        let mut found = false;
        for o in (9..=10).rev().map(Order::of) {
            while let Ok(b) = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO | Gfp::NOWARN, o) {
                let start = b.pfn().as_usize();
                if (start..start + o.nr_pages()).contains(&pfn.as_usize()) {
                    found = true;
                    let touched = resident(&m, b, o);
                    if drop_memory {
                        assert_eq!(touched, 0, "a dropped block was cleared again");
                    } else {
                        assert!(touched > 0, "a kept (written) block was not cleared");
                    }
                    assert!(reads_zero(&m, b, o));
                }
                got.push((b, o));
            }
        }
        assert!(found);
        for (b, o) in got {
            // SAFETY: ours, freed once.
            unsafe { m.__free_pages(b, o) };
        }
    }
}

/// `init_on_free` clears a block when it is freed and marks it: a zeroed allocation of it
/// does not clear it again. Seen from outside by a byte the test writes into the free block
/// behind the allocator's back (nothing else writes free memory): it survives the zeroed
/// allocation only if that allocation skipped the clearing.
#[test]
fn init_on_free_marks_what_it_cleared() {
    let m = MachineBuilder::new().ram_mib(128).cpus(2).init_on_free(true).build().unwrap();
    let order = Order::of(4);
    let p = m.alloc_pages(Gfp::KERNEL, order).unwrap();
    dirty(&m, p, order);
    let addr = m.page_address(p).unwrap().as_usize();
    // SAFETY: ours, freed once (init_on_free clears it).
    unsafe { m.__free_pages(p, order) };
    // SAFETY: the block is free and nobody else writes free memory: only the test reads
    // this byte again.
    unsafe {
        assert_eq!(*(addr as *const u8), 0, "init_on_free cleared it");
        *(addr as *mut u8) = 0x77;
    }
    // Take blocks of that order until the same one comes back.
    let mut got = Vec::new();
    loop {
        let z = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, order).unwrap();
        let same = z.pfn() == p.pfn();
        got.push(z);
        if same {
            break;
        }
        assert!(got.len() < 8192, "the freed block never came back");
    }
    // SAFETY: the block is ours again.
    assert_eq!(unsafe { *(addr as *const u8) }, 0x77, "a block init_on_free cleared was cleared again");
    for z in got {
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(z, order) };
    }
}

#[test]
fn hot_added_memory_reads_as_zero_untouched() {
    let flat = ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None };
    let m = MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, 128 * MIB)])
        .zone_layout(flat)
        .cpus(2)
        .hotplug_max(512 * MIB)
        .build()
        .unwrap();
    let mut boot = Vec::new();
    while let Ok(p) = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::of(9)) {
        boot.push(p);
    }
    m.hot_add(1).unwrap();
    let mut from_new = 0;
    for _ in 0..32 {
        let p = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, Order::of(9)).unwrap();
        if p.pfn().as_usize() >= 32768 {
            from_new += 1;
            assert_eq!(resident(&m, p, Order::of(9)), 0, "a hot-added block was written");
        }
        assert!(reads_zero(&m, p, Order::of(9)));
        boot.push(p);
    }
    assert!(from_new >= 16, "{from_new} blocks of 32 from the new section");
    for p in boot {
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(p, Order::of(9)) };
    }
}
