//! The bare-metal path of the platform boundary: a platform that keeps x86-64-style 4-level
//! page tables in pages the core hands it through `PageTableAlloc` (as a kernel's arch layer
//! would, `testing/page_tables.rs`), so the test can walk them. vmalloc maps every page at its
//! address, accounts the table pages, and a purge clears the entries and asks for one merged
//! TLB flush.

use crate::addr::{Pfn, PAGE_SIZE};
use crate::machine::Kmem;
use crate::mm::page::pg;
use crate::testing::page_tables::PageTables;
use crate::testing::{machine_with_page_tables, TestPlatform};

fn pt(k: &Kmem<TestPlatform>) -> &PageTables {
    k.platform().pt.as_ref().expect("booted with page tables")
}

fn translate(k: &Kmem<TestPlatform>, va: usize) -> Option<Pfn> {
    pt(k).translate(&k.direct_map(), va)
}

#[test]
fn vmalloc_builds_real_page_tables() {
    let k = machine_with_page_tables(64);
    let p = k.vmalloc(40 * PAGE_SIZE).unwrap().as_ptr() as usize;
    let q = k.vmalloc(3 * PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(q, p + 41 * PAGE_SIZE, "lowest fit after the first area and its guard page");
    for i in 0..40 {
        let va = p + i * PAGE_SIZE;
        assert_eq!(translate(&k, va), k.vmalloc_to_pfn(va as *const u8));
        assert!(translate(&k, va).is_some());
    }
    assert_eq!(translate(&k, p + 40 * PAGE_SIZE), None, "the guard page is not mapped");
    // Root, PUD, PMD and one PTE table: 4 pages, flagged and counted.
    let st = k.vmalloc_stats();
    assert_eq!(st.pagetables, 4);
    let root = pt(&k).root.lock().unwrap().unwrap();
    assert!(k.memmap().page(root).unwrap().test(pg::PGTABLE));
    // Freed areas keep their entries until the purge, which clears them and flushes once.
    // SAFETY: ours, never accessed (only the software tables map it).
    unsafe {
        k.vfree(p as *const u8);
        k.vfree(q as *const u8);
    }
    assert!(translate(&k, p).is_some());
    k.vm_unmap_aliases();
    assert_eq!(translate(&k, p), None);
    assert_eq!(translate(&k, q), None);
    let f = pt(&k).flushes.lock().unwrap().clone();
    assert_eq!(f, [(p, q + 4 * PAGE_SIZE)], "one flush covering both areas");
    assert_eq!(k.verify(), Ok(()));
}

#[test]
fn page_table_frames_classify() {
    use crate::mm::frame::FrameState;
    let k = machine_with_page_tables(64);
    let p = k.vmalloc(2 * PAGE_SIZE).unwrap().as_ptr();
    let root = pt(&k).root.lock().unwrap().unwrap();
    assert_eq!(k.frame_state(root), FrameState::PageTable);
    let data = k.vmalloc_to_pfn(p).unwrap();
    assert_eq!(k.frame_state(data), FrameState::Vmalloc);
    // SAFETY: ours, never accessed.
    unsafe { k.vfree(p) };
    assert_eq!(k.verify(), Ok(()));
}
