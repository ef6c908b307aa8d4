//! The misuse catalogue, part 1: frees (docs/MISUSE.md lists every case and its outcome).
//!
//! Double frees (small and large kmalloc, slab, pages, vmalloc, non-adjacent), invalid frees
//! (interior pointer, never allocated, stack, global, wild address; another machine's
//! pointer is in `tests/soundness.rs`), the wrong cache, and `krealloc`/`vrealloc` of a freed
//! block. Each case asserts the exact outcome (report kind and count, key text) and then that
//! kmem keeps working (`common::assert_still_works`: 10,000 blocks stamped, checked, freed;
//! `verify()`).

use crate::common;

use std::ptr::NonNull;

use kmem::kmalloc::KmallocErrorKind;
use kmem::{Gfp, Order, ReportKind, SlabFlags, VirtAddr, PAGE_SIZE};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn machine() -> Machine {
    pin_current_thread(0);
    MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap()
}

/// Every report so far, as (kind, text), and the counts by kind.
fn counts(m: &Machine) -> [u64; 3] {
    [m.report_count(ReportKind::SlabBug), m.report_count(ReportKind::Warning), m.report_count(ReportKind::BadPage)]
}

fn last(m: &Machine) -> String {
    m.reports().last().expect("a report")
}

const SLAB: [u64; 3] = [1, 0, 0];
const WARN: [u64; 3] = [0, 1, 0];
const BAD_PAGE: [u64; 3] = [0, 0, 1];

// ---------------------------------------------------------------------------------------
// Double frees

#[test]
fn double_free_small_kmalloc() {
    let m = machine();
    let p = m.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: the second kfree is the misuse under test.
    unsafe {
        m.kfree(p);
        m.kfree(p);
    }
    assert_eq!(counts(&m), SLAB);
    let t = last(&m);
    assert!(t.contains("BUG kmalloc-32 (Not tainted): Object already free"), "{t}");
    assert!(t.contains(&format!("FIX kmalloc-32: Object at 0x{:016x} not freed", p as usize)), "{t}");
    common::assert_still_works(&m);
}

#[test]
fn double_free_large_kmalloc() {
    let m = machine();
    let p = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: the second kfree is the misuse under test.
    unsafe {
        m.kfree(p);
        m.kfree(p);
    }
    assert_eq!(counts(&m), WARN);
    assert!(last(&m).contains(&format!("kfree: object pointer: 0x{:016x} was not returned by kmalloc", p as usize)));
    common::assert_still_works(&m);
}

#[test]
fn double_free_slab_object() {
    let m = machine();
    let c = m.kmem_cache_create("df_cache", 100, 0, SlabFlags::NO_MERGE, None).unwrap();
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: the second free is the misuse under test.
    unsafe {
        m.kmem_cache_free(&c, p);
        m.kmem_cache_free(&c, p);
    }
    assert_eq!(counts(&m), SLAB);
    assert!(last(&m).contains("BUG df_cache (Not tainted): Object already free"));
    // The object is handed out once, not twice.
    let (a, b) = (m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap(), m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    assert_ne!(a, b);
    // SAFETY: ours, freed once.
    unsafe {
        m.kmem_cache_free(&c, a);
        m.kmem_cache_free(&c, b);
    }
    drop(c);
    common::assert_still_works(&m);
}

#[test]
fn double_free_pages() {
    let m = machine();
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(2)).unwrap();
    // SAFETY: the second free is the misuse under test.
    unsafe {
        m.__free_pages(p, Order::of(2));
        m.__free_pages(p, Order::of(2));
    }
    assert_eq!(counts(&m), BAD_PAGE);
    let t = last(&m);
    assert!(t.starts_with("BUG: Bad page state in process"), "{t}");
    assert!(t.contains("page dumped because: VM_BUG_ON_PAGE(page_ref_count(page) == 0)"), "{t}");
    common::assert_still_works(&m);
}

#[test]
fn double_free_vmalloc_small_and_large() {
    let m = machine();
    // A small area goes to the CPU's recycle slots, a large one to the lazy tree: both are
    // gone from the busy tree, so the second vfree finds nothing.
    for pages in [2, 16] {
        let p = m.vmalloc(pages * PAGE_SIZE).unwrap().as_ptr();
        // SAFETY: the second vfree is the misuse under test.
        unsafe {
            m.vfree(p);
            m.vfree(p);
        }
        assert!(last(&m).contains(&format!("vfree: Trying to vfree() nonexistent vm area ({:#x})", p as usize)));
    }
    assert_eq!(counts(&m), [0, 2, 0]);
    common::assert_still_works(&m);
}

#[test]
fn double_free_not_back_to_back() {
    // free(a); free(b); free(a): the free fast path does not compare with the last free only.
    let m = machine();
    let a = m.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr();
    let b = m.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: the third kfree is the misuse under test.
    unsafe {
        m.kfree(a);
        m.kfree(b);
        m.kfree(a);
    }
    assert_eq!(counts(&m), SLAB);
    assert!(last(&m).contains(&format!("FIX kmalloc-32: Object at 0x{:016x} not freed", a as usize)));
    // Six allocations: a and b come back once each, never twice.
    let got: Vec<_> = (0..6).map(|_| m.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr()).collect();
    assert_eq!(got.iter().filter(|&&p| p == a).count(), 1);
    assert_eq!(got.iter().filter(|&&p| p == b).count(), 1);
    assert!(got.iter().all(|&p| p as usize % 32 == 0), "every object is on its boundary");
    for p in got {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(p) };
    }
    common::assert_still_works(&m);
}

// ---------------------------------------------------------------------------------------
// Invalid frees

#[test]
fn invalid_free_interior_pointers() {
    let m = machine();
    let small = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    let large = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap().as_ptr();
    let c = m.kmem_cache_create("interior", 128, 0, SlabFlags::NO_MERGE, None).unwrap();
    let obj = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let pages = m.alloc_pages(Gfp::KERNEL, Order::of(2)).unwrap();
    let area = m.vmalloc(4 * PAGE_SIZE).unwrap().as_ptr();
    // SAFETY: deliberate misuse: none of these starts an allocation; nothing is freed.
    unsafe {
        m.kfree(small.add(8));
        m.kmem_cache_free(&c, NonNull::new(obj.as_ptr().add(8)).unwrap());
        m.kfree(large.add(PAGE_SIZE));
        m.__free_pages(m.pfn_to_page(pages.pfn().add(1)).unwrap(), Order::ZERO);
        m.vfree(area.add(PAGE_SIZE));
    }
    let bugs = m.reports().texts(ReportKind::SlabBug);
    assert_eq!(bugs.len(), 2, "{bugs:#?}");
    assert!(bugs[0]
        .contains(&format!("BUG kmalloc-64 (Not tainted): Invalid object pointer 0x{:016x}", small as usize + 8)));
    assert!(
        bugs[1].contains(&format!(
            "BUG interior (Tainted: B): Invalid object pointer 0x{:016x}",
            obj.as_ptr() as usize + 8
        )),
        "{}",
        bugs[1]
    );
    let warnings = m.reports().texts(ReportKind::Warning);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains(&format!(
        "kfree: object pointer: 0x{:016x} was not returned by kmalloc",
        large as usize + PAGE_SIZE
    )));
    assert!(warnings[1].contains("vfree: Trying to vfree() nonexistent vm area"));
    let bad = m.reports().texts(ReportKind::BadPage);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(bad[0].contains("page dumped because: VM_BUG_ON_PAGE(page_ref_count(page) == 0)"));
    // Everything is still allocated and frees normally.
    // SAFETY: ours, freed once.
    unsafe {
        m.kfree(small);
        m.kfree(large);
        m.kmem_cache_free(&c, obj);
        m.__free_pages(pages, Order::of(2));
        m.vfree(area);
    }
    drop(c);
    assert_eq!(counts(&m), [2, 2, 1]);
    common::assert_still_works(&m);
}

#[test]
fn invalid_free_never_allocated() {
    let m = machine();
    // A slot of a slab that was never handed out: its free pointer says it is free.
    let p = m.kmalloc(256, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: the neighbour slot, never allocated; the misuse under test.
    unsafe { m.kfree(p.add(256)) };
    assert_eq!(counts(&m), SLAB);
    assert!(last(&m).contains("BUG kmalloc-256 (Not tainted): Object already free"));
    // A free page of the direct map, never allocated: kfree and free_pages refuse it.
    let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let addr = m.page_address(page).unwrap();
    // SAFETY: freed once; from here on the page is free memory, never ours again.
    unsafe { m.__free_pages(page, Order::ZERO) };
    // SAFETY: deliberate misuse.
    unsafe {
        m.kfree(addr.as_mut_ptr::<u8>());
        m.free_pages(addr, Order::ZERO);
    }
    assert_eq!(counts(&m), [1, 1, 1]);
    assert!(m.reports().texts(ReportKind::Warning)[0].contains("was not returned by kmalloc"));
    assert!(m.reports().texts(ReportKind::BadPage)[0].contains("VM_BUG_ON_PAGE(page_ref_count(page) == 0)"));
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    common::assert_still_works(&m);
}

static GLOBAL: [u8; 64] = [0; 64];

#[test]
fn invalid_free_stack_global_and_wild_addresses() {
    let m = machine();
    let c = m.kmem_cache_create("nowhere", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let local = [0u8; 64];
    let wild = 0xdead_0000_1000usize as *mut u8;
    for (name, p) in [("stack", local.as_ptr() as *mut u8), ("global", GLOBAL.as_ptr() as *mut u8), ("wild", wild)] {
        let before = counts(&m);
        // SAFETY: deliberate misuse: kmem owns none of these; each is refused.
        unsafe {
            m.kfree(p);
            m.vfree(p);
            m.kmem_cache_free(&c, NonNull::new(p).unwrap());
        }
        let after = counts(&m);
        assert_eq!(
            [after[0] - before[0], after[1] - before[1], after[2] - before[2]],
            [1, 2, 0],
            "{name}: {:#?}",
            m.reports().take()
        );
        let w = m.reports().texts(ReportKind::Warning);
        assert!(
            w[w.len() - 2]
                .contains(&format!("kfree: object pointer: 0x{:016x} was not returned by kmalloc", p as usize)),
            "{name}"
        );
        // vfree's first check is the alignment (Linux's `WARN_ON(!PAGE_ALIGNED(addr))`).
        let why = if p as usize % PAGE_SIZE == 0 { "nonexistent vm area" } else { "bad address" };
        assert!(w[w.len() - 1].contains(&format!("vfree: Trying to vfree() {why} ({:#x})", p as usize)), "{name}");
        assert!(last(&m).contains(&format!("Invalid object pointer 0x{:016x}", p as usize)), "{name}");
    }
    assert_eq!(local, [0; 64], "the stack buffer is untouched");
    drop(c);
    common::assert_still_works(&m);
}

// ---------------------------------------------------------------------------------------
// Wrong cache, realloc of a freed block

#[test]
fn free_to_the_wrong_cache() {
    let m = machine();
    let a = m.kmem_cache_create("cache_a", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let b = m.kmem_cache_create("cache_b", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let p = m.kmem_cache_alloc(&a, Gfp::KERNEL).unwrap();
    // SAFETY: deliberate misuse: p is cache_a's; kmem frees it to cache_a.
    unsafe { m.kmem_cache_free(&b, p) };
    assert_eq!(counts(&m), SLAB);
    let t = last(&m);
    assert!(t.contains("Wrong slab cache. cache_b but object is from cache_a"), "{t}");
    // It was freed (to its own cache): freeing it again is a double free.
    // SAFETY: deliberate misuse.
    unsafe { m.kmem_cache_free(&a, p) };
    let t = last(&m);
    assert!(t.contains("BUG cache_a (Not tainted): Object already free"), "{t}");
    drop((a, b));
    assert_eq!(counts(&m), [2, 0, 0]);
    common::assert_still_works(&m);
}

#[test]
fn the_handles_free_checks_what_the_machines_does() {
    let m = machine();
    let a = m.kmem_cache_create("handle_a", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let b = m.kmem_cache_create("handle_b", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let p = a.alloc(Gfp::KERNEL).unwrap();
    // SAFETY: deliberate misuse, each refused and reported: the second free of `p`, an
    // interior pointer, and an object of `handle_a` given to `handle_b`'s handle (which frees
    // it to its own cache), then that object again.
    unsafe {
        a.free(p);
        a.free(p);
    }
    assert_eq!(counts(&m), SLAB);
    assert!(last(&m).contains("BUG handle_a (Not tainted): Object already free"), "{}", last(&m));
    let q = a.alloc(Gfp::KERNEL).unwrap();
    assert_eq!(q, p, "handed out once");
    // SAFETY: as above.
    unsafe { a.free(NonNull::new(q.as_ptr().add(8)).unwrap()) };
    assert!(last(&m).contains("Invalid object pointer"), "{}", last(&m));
    // SAFETY: as above.
    unsafe { b.free(q) };
    assert!(last(&m).contains("Wrong slab cache. handle_b but object is from handle_a"), "{}", last(&m));
    // SAFETY: as above.
    unsafe { a.free(q) };
    assert!(last(&m).contains("BUG handle_a (Tainted: B): Object already free"), "{}", last(&m));
    assert_eq!(m.report_count(ReportKind::SlabBug), 4);
    drop((a, b));
    common::assert_still_works(&m);
}

#[test]
fn realloc_of_a_freed_block() {
    let m = machine();
    let small = m.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr();
    let large = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap().as_ptr();
    let area = m.vmalloc(8 * PAGE_SIZE).unwrap().as_ptr();
    // SAFETY: each block is freed, then resized: the misuse under test.
    unsafe {
        m.kfree(small);
        m.kfree(large);
        m.vfree(area);
        assert_eq!(m.krealloc(small, 40, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::InvalidPointer);
        assert_eq!(m.krealloc(large, 100, Gfp::KERNEL).unwrap_err().kind, KmallocErrorKind::InvalidPointer);
        assert_eq!(m.vrealloc(area, PAGE_SIZE, Gfp::KERNEL).unwrap_err().kind, kmem::VmallocErrorKind::NotFound);
    }
    assert_eq!(counts(&m), [1, 2, 0]);
    assert!(m.reports().texts(ReportKind::SlabBug)[0].contains("BUG kmalloc-64 (Not tainted): Object already free"));
    let w = m.reports().texts(ReportKind::Warning);
    assert!(w[0].contains(&format!("krealloc: object pointer: 0x{:016x} was not returned by kmalloc", large as usize)));
    assert!(w[1].contains("vrealloc: Trying to vrealloc() nonexistent vm area"));
    // The freed small object is handed out once by the next allocations, not twice.
    let got: Vec<_> = (0..4).map(|_| m.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr()).collect();
    assert!(got.iter().filter(|&&p| p == small).count() <= 1);
    for p in got {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(p) };
    }
    let _ = VirtAddr::from_ptr(small);
    common::assert_still_works(&m);
}

/// `ksize_checked`, the size an allocator's `realloc` trusts before resizing in place
/// (kmem-alloc's): a freed object gives 0 and the double-free report, where `ksize` (as
/// Linux's) gives its bucket.
#[test]
fn ksize_checked_of_a_freed_block() {
    let m = machine();
    let p = m.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: `p` is measured live, freed, then measured again: the misuse under test.
    unsafe {
        assert_eq!(m.ksize_checked(p), 64);
        m.kfree(p);
        assert_eq!(m.ksize(p), 64, "ksize does not look");
        assert_eq!(m.ksize_checked(p), 0);
        assert_eq!(m.ksize_checked(core::ptr::null()), 0);
    }
    assert_eq!(counts(&m), [1, 0, 0]);
    assert!(m.reports().texts(ReportKind::SlabBug)[0].contains("BUG kmalloc-64 (Not tainted): Object already free"));
    common::assert_still_works(&m);
}

/// A stale free: a block freed, handed to a new owner, then freed again through the old
/// pointer. Not detected (as by any allocator without a quarantine; KFENCE's sampled
/// objects catch some): to kmem the block is allocated, and the free is the new owner's as
/// far as it can tell. The new owner loses the block, which the next allocation hands out.
/// (A double free racing on two CPUs whose claim is delayed past such a reuse is this same
/// case: `racing_frees.rs`.)
#[test]
fn stale_free_after_reuse_is_not_looked_for() {
    let m = machine();
    let p = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: ours, freed once.
    unsafe { m.kfree(p) };
    let q = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(q, p, "the CPU's sheaf hands the block to its new owner");
    // SAFETY: the misuse under test: `p` is stale, `q` (the same block) is live.
    unsafe { m.kfree(p) };
    assert_eq!(counts(&m), [0, 0, 0], "not detected");
    let r = m.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(r, q, "the new owner's block is handed out again");
    // SAFETY: `r` is the block now: freed once.
    unsafe { m.kfree(r) };
    common::assert_still_works(&m);
}
