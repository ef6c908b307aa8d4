//! Unit tests of the memory map: flat and dense detection, the lookups, the pageblock array.

use super::*;
use crate::testing::std::{vec, vec::Vec};

/// A table of `n` sections and `arrays` descriptor arrays (one section's each), in one
/// buffer each; they live as long as the test (leaked).
fn table(n: usize, arrays: usize) -> (Memmap, *const Page) {
    let words = Memmap::table_bytes(n).div_ceil(8);
    let table: &'static mut [u64] = Vec::leak(vec![0u64; words]);
    let pages: &'static mut [Page] =
        Vec::leak((0..arrays * PAGES_PER_SECTION).map(|_| Page::new_boot(0, 0, 0, 0)).collect());
    // SAFETY: the leaked table holds `table_bytes(n)` zeroed bytes, 8-aligned, used for
    // nothing else and living for ever.
    let mm = unsafe { Memmap::init_zeroed(table.as_mut_ptr().cast::<Section>(), n) };
    (mm, pages.as_ptr())
}

#[test]
fn sections_in_one_array_make_a_flat_memmap() {
    let (mm, pages) = table(4, 2);
    assert!(!mm.is_flat(), "nothing present yet");
    // SAFETY: each map is a section's worth of leaked descriptors, used for nothing else.
    unsafe {
        mm.set_section_map(1, pages, 0);
        assert!(mm.is_flat(), "the first present section sets the base");
        mm.set_section_map(2, pages.add(PAGES_PER_SECTION), 0);
    }
    assert!(mm.is_flat(), "the next array in pfn order keeps it");
    for pfn in [PAGES_PER_SECTION, PAGES_PER_SECTION + 7, 3 * PAGES_PER_SECTION - 1] {
        let pfn = Pfn::new(pfn);
        assert!(core::ptr::eq(mm.pfn_to_page(pfn), mm.page(pfn).unwrap()));
    }
    assert!(mm.page(Pfn::new(0)).is_none() && mm.page(Pfn::new(3 * PAGES_PER_SECTION)).is_none());
}

#[test]
fn dense_is_marked_by_boot_kept_by_a_matching_section_and_lost_with_flat() {
    let (mut mm, pages) = table(4, 3);
    let limit = ((3 * PAGES_PER_SECTION) << crate::addr::PAGE_SHIFT) as u64;
    let pa = |pfn: Pfn| pfn.as_usize() << crate::addr::PAGE_SHIFT;
    // SAFETY: each map is a section's worth of leaked descriptors, used for nothing else;
    // the leaked arrays cover every frame of sections 0..3, which the dense lookups below
    // stay in (the limit marked dense).
    unsafe {
        mm.mark_dense(limit);
        assert!(!mm.is_dense(), "nothing present: nothing to mark");
        assert!(mm.dense_page(0).is_none(), "nor a dense limit");
        mm.set_section_map(0, pages, 0);
        assert!(mm.is_flat() && !mm.is_dense(), "flat, not known dense");
        assert_eq!(mm.flat_base(), Some(pages as usize));
        mm.mark_dense(limit);
        assert!(mm.is_dense());
        assert_eq!(mm.flat_base(), Some(pages as usize), "the dense word is the base");
        let far = Pfn::new(2 * PAGES_PER_SECTION + 3);
        assert!(core::ptr::eq(mm.page_below_limit(far).unwrap(), pages.add(far.as_usize())));
        assert!(core::ptr::eq(mm.dense_page(pa(far)).unwrap(), pages.add(far.as_usize())));
        assert!(mm.dense_page(limit as usize).is_none(), "the limit bounds the dense lookup");
        assert!(mm.page(far).is_none(), "the checked lookup refuses an absent section");
        mm.set_section_map(1, pages.add(PAGES_PER_SECTION), 0);
        assert!(mm.is_dense(), "a section at its slot keeps it");
        let pfn = Pfn::new(PAGES_PER_SECTION + 9);
        assert!(core::ptr::eq(mm.pfn_to_page(pfn), mm.page(pfn).unwrap()));
        mm.set_section_map(3, pages, 0);
    }
    assert!(!mm.is_flat() && !mm.is_dense(), "a section elsewhere ends both");
    assert!(mm.page_below_limit(Pfn::new(2 * PAGES_PER_SECTION)).is_none(), "checked again");
    // What boot marked stays: the slots below its limit are still the descriptors or zeros.
    let pfn = Pfn::new(PAGES_PER_SECTION + 9);
    // SAFETY: as above (section 1's array is the leaked one after section 0's).
    assert!(core::ptr::eq(mm.dense_page(pa(pfn)).unwrap(), unsafe { pages.add(pfn.as_usize()) }));
}

#[test]
fn a_section_elsewhere_clears_flat_for_good() {
    let (mm, pages) = table(4, 3);
    // SAFETY: as above; section 1's array is not the one after section 0's.
    unsafe {
        mm.set_section_map(0, pages, 0);
        mm.set_section_map(1, pages.add(2 * PAGES_PER_SECTION), 0);
        assert!(!mm.is_flat(), "section 1's word differs");
        mm.set_section_map(2, pages.add(2 * PAGES_PER_SECTION), 0);
    }
    // Section 2's word would match section 0's, but the base stays cleared.
    assert!(!mm.is_flat());
    for pfn in [5, PAGES_PER_SECTION + 5, 2 * PAGES_PER_SECTION + 5] {
        let pfn = Pfn::new(pfn);
        assert!(core::ptr::eq(mm.pfn_to_page(pfn), mm.page(pfn).unwrap()), "sparse lookup for {pfn:?}");
    }
    assert!(core::ptr::eq(mm.pfn_to_page(Pfn::new(PAGES_PER_SECTION)), pages.wrapping_add(2 * PAGES_PER_SECTION)));
}

#[test]
fn the_flat_view_and_the_vouched_pageblock_lookup_agree_with_the_checked_ones() {
    let (mm, pages) = table(4, 2);
    // SAFETY: each map is a section's worth of leaked descriptors, used for nothing else.
    unsafe {
        mm.set_section_map(1, pages, 0);
        mm.set_section_map(2, pages.add(PAGES_PER_SECTION), 0);
    }
    let flat = mm.flat().expect("one array in pfn order: flat");
    // A pageblock of each present section, the first and last of the array among them.
    let blocks =
        [PAGES_PER_SECTION, 2 * PAGES_PER_SECTION - 1, 2 * PAGES_PER_SECTION + 5 * 512, 3 * PAGES_PER_SECTION - 1];
    for (i, &pfn) in blocks.iter().enumerate() {
        let pfn = Pfn::new(pfn);
        assert!(core::ptr::eq(flat.pfn_to_page(pfn), mm.page(pfn).unwrap()));
        let mt = [Migratetype::Unmovable, Migratetype::Reclaimable, Migratetype::HighAtomic, Migratetype::Isolate][i];
        mm.set_pageblock_migratetype(pfn, mt);
        assert_eq!(mm.pageblock_migratetype(pfn), mt);
        assert_eq!(mm.pageblock_migratetype_vouched(pfn), mt, "pfn {pfn:?}");
        // Its neighbours in the array (the next pageblock, maybe the next section's) kept theirs.
        let next = Pfn::new(pfn.as_usize() + 512);
        if mm.page(next).is_some() && !blocks.contains(&next.as_usize()) {
            assert_eq!(mm.pageblock_migratetype_vouched(next), Migratetype::Movable);
        }
    }
    // SAFETY: as above; section 3's array is not the one after section 2's.
    unsafe { mm.set_section_map(3, pages, 0) };
    assert!(mm.flat().is_none(), "not flat any more: no view");
}
