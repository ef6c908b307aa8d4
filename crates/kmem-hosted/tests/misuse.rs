//! Misuse of the page allocator: each is detected, reported in Linux's words, counted, and
//! leaves the allocator intact.

use crate::common;

use kmem::{Gfp, Order, PhysAddr, ReportKind, VirtAddr};
use kmem_hosted::{Machine, MachineBuilder};
use std::sync::atomic::{AtomicI32, Ordering};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(64).cpus(1).reserve(PhysAddr::new(8 << 20), 1 << 20).build().unwrap()
}

/// The machine still works: everything can be allocated and freed, lists are consistent and
/// buddyinfo is back to what it was at boot.
fn assert_intact(m: &Machine, boot: &[(usize, kmem::ZoneType, [usize; 11])]) {
    m.verify().unwrap();
    let all: Vec<_> =
        std::iter::from_fn(|| m.alloc_pages(Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NOWARN, Order::ZERO).ok()).collect();
    let mut pfns: Vec<_> = all.iter().map(|p| p.pfn()).collect();
    pfns.sort();
    pfns.dedup();
    assert_eq!(pfns.len(), all.len(), "a page was handed out twice");
    for p in all {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    assert_eq!(common::buddyinfo(m), boot);
    m.verify().unwrap();
}

#[test]
fn double_free_is_reported_once_and_ignored() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    // SAFETY: deliberately wrong: the second free is the misuse under test.
    unsafe {
        m.__free_pages(p, Order::ZERO);
        m.__free_pages(p, Order::ZERO);
    }
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    let t = m.reports().last().unwrap();
    assert!(t.starts_with("BUG: Bad page state in process "), "{t}");
    assert!(t.contains(&format!("  pfn:{:05x}\n", p.pfn().as_usize())), "{t}");
    assert!(t.contains("page dumped because: VM_BUG_ON_PAGE(page_ref_count(page) == 0)"), "{t}");
    assert_intact(&m, &boot);
}

#[test]
fn double_free_of_a_high_order_block_is_caught() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(4)).unwrap();
    // SAFETY: deliberate double free.
    unsafe {
        m.__free_pages(p, Order::of(4));
        m.__free_pages(p, Order::of(4));
    }
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    assert_intact(&m, &boot);
}

#[test]
fn freeing_a_reserved_page_is_refused() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let r = m.pfn_to_page(PhysAddr::new(8 << 20).pfn()).unwrap();
    assert!(r.is_reserved());
    // SAFETY: deliberate misuse.
    unsafe { m.__free_pages(r, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    assert!(m.reports().last().unwrap().contains("page dumped because: PAGE_FLAGS_CHECK_AT_FREE flag(s) set"));
    assert!(m.reports().last().unwrap().contains("flags: 0x1(reserved)"));
    assert!(r.is_reserved() && r.refcount() == 1, "state left as it was");
    assert_intact(&m, &boot);
}

#[test]
fn freeing_an_interior_page_is_refused() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(2)).unwrap();
    let inner = m.pfn_to_page(p.pfn().add(1)).unwrap();
    // SAFETY: deliberate misuse (inner is not the start of an allocation).
    unsafe { m.__free_pages(inner, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    // SAFETY: the real owner frees it properly.
    unsafe { m.__free_pages(p, Order::of(2)) };
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    assert_intact(&m, &boot);
}

#[test]
fn freeing_with_the_wrong_order_is_reported_and_frees_the_real_block() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(3)).unwrap();
    // SAFETY: we own it; the order is deliberately wrong.
    unsafe { m.__free_pages(p, Order::of(1)) };
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    assert!(m.reports().last().unwrap().contains("freed with order 1 but allocated with order 3"));
    assert_intact(&m, &boot);
}

#[test]
fn freeing_a_never_allocated_page_is_refused() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let free = m.pfn_to_page(PhysAddr::new(20 << 20).pfn()).unwrap();
    assert!(free.is_buddy() || free.refcount() == 0);
    // SAFETY: deliberate misuse.
    unsafe { m.__free_pages(free, Order::ZERO) };
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    assert_intact(&m, &boot);
}

#[test]
fn bad_addresses_warn() {
    // (An order above MAX_PAGE_ORDER cannot be passed: `Order` is checked at construction.)
    let m = machine();
    let boot = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    // SAFETY: deliberate misuse; nothing is freed.
    unsafe {
        m.free_pages(VirtAddr::new(0x1000), Order::ZERO);
        m.free_pages(VirtAddr::new(0), Order::ZERO); // NULL: a no-op, as in Linux
    }
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    assert_eq!(p.refcount(), 1);
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert_intact(&m, &boot);
}

#[test]
fn get_and_put_on_free_pages_are_refused() {
    let m = machine();
    let boot = common::buddyinfo(&m);
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
    m.get_page(p);
    // SAFETY: deliberate misuse.
    unsafe { m.put_page(p) };
    assert_eq!(m.report_count(ReportKind::BadPage), 2);
    assert_eq!(p.refcount(), 0);
    assert_intact(&m, &boot);
}

#[test]
fn corrupted_compound_tail_is_reported() {
    let m = machine();
    let p = m.alloc_pages(Gfp::KERNEL | Gfp::COMP, Order::of(2)).unwrap();
    // Someone scribbles on a tail's reference count (a stray write from outside the
    // allocator: safe code cannot change a descriptor). `Page` is `repr(C)`: flags (8 bytes),
    // then the 32-bit refcount.
    let tail = m.pfn_to_page(p.pfn().add(2)).unwrap();
    let refcount = (tail.page() as *const kmem::Page).cast::<u8>().wrapping_add(8).cast::<AtomicI32>();
    // SAFETY: deliberate corruption of a live descriptor, through its atomic field.
    unsafe { (*refcount).store(3, Ordering::Relaxed) };
    assert_eq!(tail.refcount(), 3);
    // SAFETY: ours; the free must notice the corruption.
    unsafe { m.__free_pages(p, Order::of(2)) };
    assert_eq!(m.report_count(ReportKind::BadPage), 1);
    assert!(m.reports().last().unwrap().contains("page dumped because: nonzero _refcount"));
    m.verify().unwrap();
}
