//! The highatomic reserve (`MIGRATE_HIGHATOMIC`) under controlled memory pressure: a
//! high-order GFP_ATOMIC request in the slow path reserves its pageblock, nothing else can take
//! the reserve's pages, the reserve stops at about 1% of the zone, and the slow path gives it
//! back before an allocation fails.
//!
//! Every test builds the same state on a 256 MiB machine with the per-CPU lists off: take
//! every page (`__GFP_MEMALLOC`), then give back isolated order-0 pages a little above DMA32's
//! min watermark (below low, so each request takes the slow path, with no free block above
//! order 0) and then the "target" blocks the test wants the allocator to find.

use std::collections::BTreeMap;

use kmem::mm::zone::{Wmark, Zone};
use kmem::{Gfp, Migratetype, Order, PageRef, Pfn, ReportKind, ZoneType};
use kmem_hosted::{Machine, MachineBuilder};

const PAGEBLOCK: usize = 512;

fn o(n: u32) -> Order {
    Order::new(n).unwrap()
}

/// The machine under pressure, and the pages the test still holds, by frame number.
struct Pressure<'a> {
    m: &'a Machine,
    held: BTreeMap<usize, PageRef<'a>>,
    /// Fully held pageblocks of DMA32 not used yet (first frame of each).
    spare: Vec<usize>,
}

fn machine() -> Machine {
    let m = MachineBuilder::new().ram_mib(256).cpus(1).build().unwrap();
    m.set_pcp_enabled(false);
    m
}

fn dma32(m: &Machine) -> &Zone {
    m.node(0).unwrap().zone(ZoneType::Dma32)
}

impl<'a> Pressure<'a> {
    fn new(m: &'a Machine) -> Self {
        let gfp = Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NORETRY | Gfp::NOWARN;
        let held: BTreeMap<usize, PageRef<'a>> =
            std::iter::from_fn(|| m.alloc_pages(gfp, Order::ZERO).ok()).map(|p| (p.pfn().as_usize(), p)).collect();
        let z = dma32(m);
        assert_eq!(z.free_pages(), 0, "__GFP_MEMALLOC took every page");
        let spare = (z.start_pfn().as_usize()..z.end_pfn().as_usize())
            .step_by(PAGEBLOCK)
            .filter(|&b| b % PAGEBLOCK == 0 && (b..b + PAGEBLOCK).all(|p| held.contains_key(&p)))
            .rev()
            .collect();
        let mut s = Pressure { m, held, spare };
        // Isolated order-0 pages (every other frame) up to min + 16: no block above order 0.
        let want = z.wmark(Wmark::Min) + 16;
        assert!(want + 64 < z.wmark(Wmark::Low), "room below low for the targets");
        while z.free_pages() < want {
            let b = s.pageblock();
            for p in (b..b + PAGEBLOCK).step_by(2).take(want - z.free_pages()) {
                s.free(p, 1);
            }
        }
        s
    }

    /// A fully held pageblock of DMA32 (its first frame).
    fn pageblock(&mut self) -> usize {
        self.spare.pop().expect("a fully held pageblock left")
    }

    /// Frees the `n` held pages from frame `first` (they merge into one block when aligned).
    fn free(&mut self, first: usize, n: usize) {
        for p in first..first + n {
            let page = self.held.remove(&p).expect("a held page");
            // SAFETY: the test owns the page and no longer uses it.
            unsafe { self.m.__free_pages(page, Order::ZERO) };
        }
    }

    /// Frees an aligned block of `2^order` pages in a pageblock of its own; returns its frame.
    fn target(&mut self, order: u32) -> usize {
        let b = self.pageblock();
        self.free(b, 1 << order);
        b
    }
}

/// The HighAtomic column of /proc/pagetypeinfo's "Number of blocks" row for DMA32.
fn highatomic_blocks(m: &Machine) -> usize {
    let mut s = String::new();
    kmem::proc::pagetypeinfo(m, &mut s).unwrap();
    let header = s.lines().find(|l| l.starts_with("Number of blocks type")).unwrap();
    let col = header.split_whitespace().skip(4).position(|w| w == "HighAtomic").unwrap();
    let row = s.lines().find(|l| l.starts_with("Node 0, zone    DMA32")).unwrap();
    row.split_whitespace().skip(4).nth(col).unwrap().parse().unwrap()
}

/// show_mem's `reserved_highatomic:` and `free_highatomic:` for DMA32, in kB.
fn show_mem_highatomic(m: &Machine) -> (usize, usize) {
    let mut s = String::new();
    m.show_mem(&mut s).unwrap();
    let line = s.lines().find(|l| l.starts_with("Node 0 DMA32 free:")).unwrap();
    let field = |name: &str| -> usize {
        let w = line.split_whitespace().find_map(|w| w.strip_prefix(name)).unwrap();
        w.strip_suffix("KB").unwrap().parse().unwrap()
    };
    (field("reserved_highatomic:"), field("free_highatomic:"))
}

/// The reserve's counters agree with its pageblocks and its free lists.
fn check_reserve(m: &Machine, blocks: usize, free_pages: usize) {
    let z = dma32(m);
    assert_eq!(highatomic_blocks(m), blocks, "HighAtomic pageblocks in /proc/pagetypeinfo");
    assert_eq!(z.nr_reserved_highatomic(), blocks * PAGEBLOCK);
    assert_eq!(show_mem_highatomic(m), (blocks * PAGEBLOCK * 4, free_pages * 4), "show_mem's kB");
    m.verify().unwrap();
}

fn in_pageblock_of(pfn: Pfn, first: usize) -> bool {
    pfn.as_usize() / PAGEBLOCK == first / PAGEBLOCK
}

#[test]
fn atomic_high_order_request_under_pressure_reserves_its_pageblock() {
    let m = machine();
    let mut s = Pressure::new(&m);
    check_reserve(&m, 0, 0);
    let t = s.target(2);
    let z = dma32(&m);
    assert!(z.free_pages() <= z.wmark(Wmark::Low), "below low: the fast attempt fails");
    let a = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
    assert_eq!(a.pfn().as_usize(), t, "the only order-1+ block");
    assert_eq!(m.pageblock_migratetype(a.pfn()), Migratetype::HighAtomic);
    // The order-1 remainder of the split moved to the reserve's list with its pageblock.
    assert_eq!(z.nr_free_mt(o(1), Migratetype::HighAtomic), 1);
    check_reserve(&m, 1, 2);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0);
    assert_eq!(z.nr_free_highatomic(), 2);
}

#[test]
fn only_high_order_atomic_requests_take_the_reserve() {
    let m = machine();
    let mut s = Pressure::new(&m);
    let t = s.target(2);
    let _first = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
    check_reserve(&m, 1, 2);
    // Neither a sleeping request (even one that ignores watermarks) nor GFP_NOWAIT may take
    // the reserved order-1 block.
    for gfp in [Gfp::KERNEL | Gfp::NORETRY, Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NORETRY, Gfp::NOWAIT] {
        assert!(m.alloc_pages(gfp | Gfp::NOWARN, o(1)).is_err(), "{gfp:?} took the highatomic reserve");
        check_reserve(&m, 1, 2);
    }
    // Order-0 GFP_KERNEL requests still get the ordinary free pages.
    let p = m.alloc_pages(Gfp::KERNEL | Gfp::NORETRY, Order::ZERO).unwrap();
    assert!(!in_pageblock_of(p.pfn(), t));
    check_reserve(&m, 1, 2);
    // A high-order atomic request does take it.
    let a = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
    assert_eq!(a.pfn().as_usize(), t + 2);
    check_reserve(&m, 1, 0);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0);
    // SAFETY: ours, no longer used.
    unsafe { m.__free_pages(a, o(1)) };
    // Freed, its pages go back to the reserve (the pageblock's type).
    check_reserve(&m, 1, 2);
}

#[test]
fn the_reserve_stops_at_one_percent_of_the_zone() {
    let m = machine();
    let mut s = Pressure::new(&m);
    let z = dma32(&m);
    // 1% of DMA32's managed pages, rounded up to whole pageblocks: 2 pageblocks here.
    let cap = (z.managed_pages() / 100).div_ceil(PAGEBLOCK);
    assert_eq!(cap, 2);
    let targets: Vec<usize> = (0..cap + 2).map(|_| s.target(1)).collect();
    let mut got = Vec::new();
    for i in 0..targets.len() {
        let a = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
        assert!(targets.contains(&a.pfn().as_usize()));
        got.push(a);
        check_reserve(&m, (i + 1).min(cap), 0);
    }
    let reserved = got.iter().filter(|a| m.pageblock_migratetype(a.pfn()) == Migratetype::HighAtomic);
    assert_eq!(reserved.count(), cap);
}

#[test]
fn the_slow_path_gives_the_reserve_back_before_failing() {
    let m = machine();
    let mut s = Pressure::new(&m);
    let t = s.target(2);
    let _first = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
    check_reserve(&m, 1, 2);
    // Direct reclaim keeps a zone's last reserved pageblock; before OOM, should_reclaim_retry
    // gives it back (as the failing request's migratetype), and the retry gets its block.
    let p = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, o(1)).unwrap();
    assert_eq!(p.pfn().as_usize(), t + 2);
    assert_eq!(m.pageblock_migratetype(p.pfn()), Migratetype::Unmovable);
    check_reserve(&m, 0, 0);
    assert_eq!(m.report_count(ReportKind::Oom), 0, "released before the OOM path");
}

#[test]
fn a_request_that_fails_anyway_still_finds_the_reserve_given_back() {
    let m = machine();
    let mut s = Pressure::new(&m);
    let t = s.target(2);
    let _first = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
    check_reserve(&m, 1, 2);
    // Order 2: the reserve's free order-1 block cannot serve it; the slow path gives the
    // reserve back, retries, and only then goes on to OOM and fails.
    assert!(m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, o(2)).is_err());
    check_reserve(&m, 0, 0);
    assert_eq!(m.pageblock_migratetype(Pfn::new(t)), Migratetype::Unmovable);
    // The given-back block serves ordinary requests now.
    let p = m.alloc_pages(Gfp::KERNEL | Gfp::NORETRY | Gfp::NOWARN, o(1)).unwrap();
    assert_eq!(p.pfn().as_usize(), t + 2);
}

#[test]
fn a_reserved_block_freed_through_the_per_cpu_lists_returns_to_the_reserve() {
    let m = machine();
    let mut s = Pressure::new(&m);
    let t = s.target(2);
    let a = m.alloc_pages(Gfp::ATOMIC, o(1)).unwrap();
    check_reserve(&m, 1, 2);
    m.set_pcp_enabled(true);
    // SAFETY: ours, no longer used.
    unsafe { m.__free_pages(a, o(1)) };
    // On a per-CPU list (the Movable one, as Linux files HighAtomic pages), not free in the
    // reserve yet; drained, it goes back by its pageblock's type and merges with the rest.
    assert_eq!(dma32(&m).pcp_pages(), 2);
    check_reserve(&m, 1, 2);
    m.drain_all_pages();
    check_reserve(&m, 1, 4);
    assert_eq!(dma32(&m).nr_free_mt(o(2), Migratetype::HighAtomic), 1);
    assert_eq!(m.pageblock_migratetype(Pfn::new(t)), Migratetype::HighAtomic);
}
