//! The kmap protocols on a test machine whose mappings live in software page tables (the
//! tests walk them; HighMem pages are never dereferenced here: `tests/highmem.rs` in
//! kmem-hosted checks the data through real mappings).

use super::{KmapError, KM_MAX_IDX, LAST_PKMAP};
use crate::addr::{Order, VirtAddr, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::platform::ReportKind;
use crate::sync::Ordering;
use crate::testing::{machine_with_highmem, std::vec::Vec, TestPlatform};

fn machine() -> Kmem<TestPlatform> {
    machine_with_highmem(64, 32)
}

fn translate(m: &Kmem<TestPlatform>, va: VirtAddr) -> Option<crate::Pfn> {
    m.platform().pt.as_ref().unwrap().translate(&m.direct_map(), va.as_usize())
}

fn high_page(m: &Kmem<TestPlatform>) -> PageRef<'_> {
    let p = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap();
    assert!(m.page_is_highmem(p), "GFP_HIGHUSER on a machine with HighMem gives a HighMem page");
    p
}

#[test]
fn kmap_is_refcounted_and_found_through_the_hash() {
    let m = machine();
    let p = high_page(&m);
    assert_eq!(m.page_address(p), None);
    let a = m.kmap(p).unwrap();
    let b = m.kmap(p).unwrap();
    assert_eq!(a, b, "a second kmap of the page reuses its slot");
    assert_eq!(translate(&m, a), Some(p.pfn()), "the slot's PTE maps the page");
    assert_eq!(m.page_address(p), Some(a));
    assert_eq!(m.kmap_to_page(a), Some(p));
    let h = m.highmem().unwrap();
    let nr = h.pkmap_nr(a.as_usize()).unwrap();
    assert_eq!(h.pkmap.count[nr].load(Ordering::Relaxed), 3, "pkmap_count: n users + 1");
    assert_eq!(m.kmap_stats().pkmap_in_use, 1);
    m.kunmap(p);
    m.kunmap(p);
    assert_eq!(h.pkmap.count[nr].load(Ordering::Relaxed), 1, "mapped, no users: flushed lazily");
    assert_eq!(m.kmap_stats().pkmap_in_use, 0);
    assert_eq!(m.page_address(p), Some(a), "still mapped until the ring wraps");
    assert_eq!(m.kmap(p).unwrap(), a, "kmapped again before the wrap: same slot, no new PTE");
    assert_eq!(m.kmap_stats().maps, 1);
    m.kunmap(p);
}

#[test]
fn lowmem_pages_need_no_mapping() {
    let m = machine();
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert!(!m.page_is_highmem(p), "GFP_KERNEL never returns HighMem");
    let dm = m.page_address(p).unwrap();
    assert_eq!(m.kmap(p).unwrap(), dm);
    assert_eq!(m.kmap_local_page(p).unwrap(), dm);
    m.kunmap_local(dm);
    m.kunmap(p);
    assert_eq!(m.kmap_local_depth(), 0);
    assert_eq!(m.kmap_stats(), super::KmapStats::default());
}

#[test]
fn the_ring_is_flushed_once_per_wrap() {
    let m = machine();
    let pages: Vec<_> = (0..LAST_PKMAP + 10).map(|_| high_page(&m)).collect();
    for &p in &pages[..LAST_PKMAP - 1] {
        m.kmap(p).unwrap();
        m.kunmap(p);
    }
    assert_eq!(m.kmap_stats().pkmap_flushes, 0, "slots 1..LAST_PKMAP used once: no flush yet");
    let mid = m.page_address(pages[500]).unwrap();
    for &p in &pages[LAST_PKMAP - 1..] {
        m.kmap(p).unwrap();
        m.kunmap(p);
    }
    assert_eq!(m.kmap_stats().pkmap_flushes, 1, "one flush for the whole wrap");
    assert_eq!(m.page_address(pages[500]), None, "an unused slot is unmapped at the wrap");
    assert_eq!(translate(&m, mid), None, "its PTE is cleared");
    let flushes = m.platform().pt.as_ref().unwrap().flushes.lock().unwrap().len();
    assert_eq!(flushes, 1, "one flush_tlb_kernel_range");
}

#[test]
fn kmap_in_use_survives_the_wrap() {
    let m = machine();
    let held = high_page(&m);
    let va = m.kmap(held).unwrap();
    for _ in 0..LAST_PKMAP + 5 {
        let p = high_page(&m);
        m.kmap(p).unwrap();
        m.kunmap(p);
        // SAFETY: ours, unmapped.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    assert_eq!(m.page_address(held), Some(va), "a slot with users is never flushed");
    assert_eq!(translate(&m, va), Some(held.pfn()));
    m.kunmap(held);
}

#[test]
fn kunmap_of_an_unmapped_page_is_reported() {
    let m = machine();
    let p = high_page(&m);
    m.kunmap(p);
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    let va = m.kmap(p).unwrap();
    m.kunmap(p);
    m.kunmap(p);
    assert_eq!(m.report_count(ReportKind::Warning), 2, "the extra kunmap is reported");
    assert_eq!(m.page_address(p), Some(va), "and changes nothing");
    let log = m.platform().log.lock().unwrap();
    assert!(log[0].1.starts_with("kernel BUG at mm/highmem.c: kunmap_high!"), "{}", log[0].1);
}

#[test]
fn kmap_local_nests_to_the_limit_and_reports_overflow() {
    let m = machine();
    let pages: Vec<_> = (0..KM_MAX_IDX + 1).map(|_| high_page(&m)).collect();
    let mut vas = Vec::new();
    for &p in &pages[..KM_MAX_IDX] {
        let va = m.kmap_local_page(p).unwrap();
        assert_eq!(translate(&m, va), Some(p.pfn()));
        vas.push(va);
    }
    assert_eq!(m.kmap_local_depth(), KM_MAX_IDX);
    assert_eq!(m.kmap_local_page(pages[KM_MAX_IDX]), Err(KmapError::StackFull));
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    assert_eq!(m.kmap_local_depth(), KM_MAX_IDX, "the overflow pushed nothing");
    for (va, p) in vas.iter().zip(&pages).rev() {
        assert_eq!(translate(&m, *va), Some(p.pfn()), "the overflow touched no mapping");
        m.kunmap_local(*va);
    }
    assert_eq!(m.kmap_local_depth(), 0);
    assert_eq!(m.report_count(ReportKind::Warning), 1);
}

#[test]
fn kmap_local_reuses_a_slot_that_maps_the_same_page() {
    let m = machine();
    let p = high_page(&m);
    for _ in 0..10 {
        let va = m.kmap_local_page(p).unwrap();
        m.kunmap_local(va);
    }
    assert_eq!(m.kmap_stats().maps, 1, "one PTE change for ten pairs");
    let q = high_page(&m);
    let va = m.kmap_local_page(q).unwrap();
    assert_eq!(translate(&m, va), Some(q.pfn()), "another page: the slot is remapped");
    m.kunmap_local(va);
    assert_eq!(m.kmap_stats().maps, 2);
}

#[test]
fn out_of_order_kunmap_local_is_reported_and_corrupts_nothing() {
    let m = machine();
    let (a, b, c) = (high_page(&m), high_page(&m), high_page(&m));
    let va = m.kmap_local_page(a).unwrap();
    let vb = m.kmap_local_page(b).unwrap();
    m.kunmap_local(va);
    assert_eq!(m.report_count(ReportKind::Warning), 1, "out of order");
    assert_eq!(translate(&m, vb), Some(b.pfn()), "b's mapping is intact");
    assert_eq!(m.kmap_to_page(vb), Some(b));
    let vc = m.kmap_local_page(c).unwrap();
    assert!(vc != va && vc != vb, "a new mapping goes above the released one");
    m.kunmap_local(vc);
    m.kunmap_local(vb);
    assert_eq!(m.kmap_local_depth(), 0, "the released entry popped with b");
    m.kunmap_local(vb);
    assert_eq!(m.report_count(ReportKind::Warning), 2, "unbalanced kunmap_local");
    assert_eq!(m.kmap_local_depth(), 0);
    let log = m.platform().log.lock().unwrap();
    assert!(log[0].1.contains("WARN_ON_ONCE(addr != __fix_to_virt(FIX_KMAP_BEGIN + idx))"), "{}", log[0].1);
}

#[test]
fn kmap_atomic_disables_page_faults_until_unmapped() {
    let m = machine();
    let p = high_page(&m);
    let va = m.kmap_atomic(p).unwrap();
    assert!(m.pagefault_disabled());
    m.kunmap_atomic(va);
    assert!(!m.pagefault_disabled());
    m.kunmap_atomic(va);
    assert_eq!(m.report_count(ReportKind::Warning), 1, "a second kunmap_atomic is reported");
}

#[test]
fn scoped_guards_unmap_in_order() {
    let m = machine();
    let (a, b) = (high_page(&m), high_page(&m));
    m.kmap_local_scope(|s| {
        let mut ga = s.map(a).unwrap();
        let gb = ga.map(b).unwrap();
        assert_eq!(m.kmap_to_page(gb.addr()), Some(b));
        assert_eq!(m.kmap_local_depth(), 2);
        drop(gb);
        assert_eq!(m.kmap_local_depth(), 1);
        let gc = ga.map_atomic(b).unwrap();
        assert!(m.pagefault_disabled());
        drop(gc);
        assert!(!m.pagefault_disabled());
    });
    assert_eq!(m.kmap_local_depth(), 0);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn kmap_to_page_of_other_addresses() {
    let m = machine();
    assert_eq!(m.kmap_to_page(VirtAddr::new(PAGE_SIZE)), None);
    let h = m.highmem().unwrap();
    assert_eq!(m.kmap_to_page(VirtAddr::new(h.pkmap_addr(3))), None, "a free pkmap slot");
    assert_eq!(m.kmap_to_page(VirtAddr::new(h.fixmap_addr(0, 2))), None, "an unused fixmap slot");
}

#[test]
fn kmap_high_get_takes_a_reference_only_on_a_mapped_page() {
    let m = machine();
    let p = high_page(&m);
    assert_eq!(m.kmap_high_get(p), None, "never kmapped: nothing to get, nothing mapped");
    assert_eq!(m.kmap_stats().maps, 0);
    let a = m.kmap(p).unwrap();
    m.kunmap(p);
    // Mapped with no users (count 1): get revives it without a new PTE.
    assert_eq!(m.kmap_high_get(p), Some(a));
    let h = m.highmem().unwrap();
    let nr = h.pkmap_nr(a.as_usize()).unwrap();
    assert_eq!(h.pkmap.count[nr].load(Ordering::Relaxed), 2);
    assert_eq!(m.kmap_stats().pkmap_in_use, 1);
    assert_eq!(m.kmap_stats().maps, 1);
    m.kunmap(p);
    assert_eq!(h.pkmap.count[nr].load(Ordering::Relaxed), 1);
    m.kunmap(p);
    assert_eq!(m.report_count(ReportKind::Warning), 1, "one kunmap too many is reported");
    let low = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.kmap_high_get(low), m.page_address(low));
}

#[test]
fn kmap_local_folio_maps_the_page_holding_the_offset() {
    let m = machine();
    let folio = m.alloc_pages(Gfp::HIGHUSER | Gfp::COMP, Order::of(2)).unwrap();
    assert!(m.page_is_highmem(folio));
    for (off, sub) in [(0, 0), (100, 0), (PAGE_SIZE, 1), (3 * PAGE_SIZE + 4095, 3)] {
        let va = m.kmap_local_folio(folio, off).unwrap();
        assert_eq!(va.as_usize() % PAGE_SIZE, off % PAGE_SIZE);
        assert_eq!(translate(&m, va), Some(folio.pfn().add(sub)), "offset {off:#x}");
        m.kunmap_local(va);
        assert_eq!(m.kmap_local_depth(), 0, "kunmap_local takes any address in the page");
    }
    // A tail page names the same folio.
    let tail = m.pfn_to_page(folio.pfn().add(2)).unwrap();
    let va = m.kmap_local_folio(tail, PAGE_SIZE).unwrap();
    assert_eq!(translate(&m, va), Some(folio.pfn().add(1)));
    m.kunmap_local(va);
    assert_eq!(m.kmap_local_folio(folio, 4 * PAGE_SIZE), Err(KmapError::OutOfFolio));
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    assert_eq!(m.kmap_local_depth(), 0);
}
