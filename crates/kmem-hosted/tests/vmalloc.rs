//! vmalloc, vmap, vm_map_ram, vrealloc, kvmalloc, the lazy purge and the views.

use crate::common;

use std::collections::HashSet;

use kmem::{Gfp, Order, PageProt, ReportKind, PAGE_SIZE};
use kmem_hosted::{in_irq, MachineBuilder};

fn machine(mib: u64) -> kmem_hosted::Machine {
    MachineBuilder::new().ram_mib(mib).cpus(2).build().unwrap()
}

/// Fills `len` bytes at `p` with a pattern of `seed` and checks it back.
fn fill_check(p: *mut u8, len: usize, seed: u8) {
    // SAFETY: the callers pass live allocations of `len` bytes.
    unsafe {
        for i in (0..len).step_by(511) {
            p.add(i).write(seed.wrapping_add((i / 511) as u8));
        }
        for i in (0..len).step_by(511) {
            assert_eq!(p.add(i).read(), seed.wrapping_add((i / 511) as u8), "byte {i}");
        }
    }
}

#[test]
fn vmalloc_is_virtually_contiguous_and_aliases_the_direct_map() {
    let m = machine(128);
    // Warm up: the first vmalloc creates the vmap_area cache and kmalloc caches.
    // SAFETY: ours.
    unsafe { m.vfree(m.vmalloc(38 * PAGE_SIZE).unwrap().as_ptr()) };
    m.vm_unmap_aliases();
    let free0 = common::free_pages(&m);
    let size = 37 * PAGE_SIZE + 5;
    let p = m.vmalloc(size).unwrap();
    assert!(m.is_vmalloc_addr(p.as_ptr()));
    assert_eq!(p.as_ptr() as usize % PAGE_SIZE, 0);
    fill_check(p.as_ptr(), size, 3);
    // Every page is some page of RAM; writes show through its direct-map address.
    let mut pfns = HashSet::new();
    for i in 0..38 {
        // SAFETY: inside the area.
        let va = unsafe { p.as_ptr().add(i * PAGE_SIZE) };
        let page = m.vmalloc_to_page(va).unwrap();
        assert!(pfns.insert(page.pfn()));
        let dm = m.page_address(page).unwrap().as_mut_ptr::<u8>();
        // SAFETY: both addresses map the same live page of our area.
        unsafe {
            va.write(0xa5);
            assert_eq!(dm.read(), 0xa5);
            dm.add(1).write(0x5a);
            assert_eq!(va.add(1).read(), 0x5a);
        }
    }
    // SAFETY: one past the mapped pages: the guard page, not ours.
    assert!(m.vmalloc_to_pfn(unsafe { p.as_ptr().add(38 * PAGE_SIZE) }).is_none());
    let st = m.vmalloc_stats();
    assert_eq!(st.used_pages, 38);
    assert_eq!(st.busy_areas, 1);
    // SAFETY: ours, no longer used.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(m.vmalloc_stats().used_pages, 0);
    m.vm_unmap_aliases();
    assert_eq!(common::free_pages(&m), free0, "every page (and record) went back");
    assert_eq!(m.verify(), Ok(()));
    assert_eq!(m.report_count(ReportKind::Warning) + m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn vzalloc_zeroes_and_vrealloc_keeps_contents() {
    let m = machine(128);
    let p = m.vzalloc(3 * PAGE_SIZE).unwrap();
    // SAFETY: 3 fresh pages.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), 3 * PAGE_SIZE) };
    assert!(s.iter().all(|&b| b == 0));
    s.fill(0x11);
    // In place: shrink then grow back within the pages, zeroing with __GFP_ZERO.
    // SAFETY: p is live.
    let q = unsafe { m.vrealloc(p.as_ptr(), 100, Gfp::KERNEL | Gfp::ZERO) }.unwrap().unwrap();
    assert_eq!(q, p);
    // SAFETY: still the same 3 pages.
    let q = unsafe { m.vrealloc(q.as_ptr(), 3 * PAGE_SIZE, Gfp::KERNEL | Gfp::ZERO) }.unwrap().unwrap();
    assert_eq!(q, p);
    // SAFETY: live, 3 pages.
    let s = unsafe { std::slice::from_raw_parts(q.as_ptr(), 3 * PAGE_SIZE) };
    assert!(s[..100].iter().all(|&b| b == 0x11) && s[100..].iter().all(|&b| b == 0));
    // Grow beyond: a new area with the contents copied.
    // SAFETY: live.
    let r = unsafe { m.vrealloc(q.as_ptr(), 10 * PAGE_SIZE, Gfp::KERNEL) }.unwrap().unwrap();
    assert_ne!(r, q);
    // SAFETY: 10 pages, the first 3 copied.
    let s = unsafe { std::slice::from_raw_parts(r.as_ptr(), 3 * PAGE_SIZE) };
    assert!(s[..100].iter().all(|&b| b == 0x11));
    // SAFETY: live; size 0 frees.
    assert!(unsafe { m.vrealloc(r.as_ptr(), 0, Gfp::KERNEL) }.unwrap().is_none());
    assert_eq!(m.vmalloc_stats().busy_areas, 0);
}

#[test]
fn vmap_and_vm_map_ram_of_scattered_pages() {
    let m = machine(128);
    // Scattered pages: every other page of a run.
    let block = m.alloc_pages(Gfp::KERNEL, Order::of(4)).unwrap();
    // SAFETY: our fresh block.
    unsafe { m.split_page(block, Order::of(4)) };
    let pages: Vec<_> = (0..16).step_by(2).map(|i| m.pfn_to_page(block.pfn().add(i)).unwrap()).collect();
    let v = m.vmap(&pages, PageProt::KERNEL).unwrap();
    let r = m.vm_map_ram(&pages).unwrap();
    for (i, pg) in pages.iter().enumerate() {
        let dm = m.page_address(*pg).unwrap().as_mut_ptr::<u8>();
        // SAFETY: page i of both mappings and its direct-map address: the same live page.
        unsafe {
            v.as_ptr().add(i * PAGE_SIZE + 7).write(i as u8 + 1);
            assert_eq!(dm.add(7).read(), i as u8 + 1);
            assert_eq!(r.as_ptr().add(i * PAGE_SIZE + 7).read(), i as u8 + 1);
        }
        assert_eq!(m.vmalloc_to_pfn(v.as_ptr().wrapping_add(i * PAGE_SIZE)), Some(pg.pfn()));
    }
    let mut info = String::new();
    kmem::proc::vmallocinfo(&m, &mut info).unwrap();
    assert!(info.lines().any(|l| l.ends_with(" vmap")), "{info}");
    assert!(info.lines().any(|l| l.ends_with(" 32768 vm_map_ram")), "{info}");
    // Wrong count: reported, nothing changes.
    // SAFETY: the call is refused.
    unsafe { m.vm_unmap_ram(r.as_ptr(), 3) };
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    // SAFETY: our mappings, no longer used.
    unsafe {
        m.vm_unmap_ram(r.as_ptr(), 8);
        m.vunmap(v.as_ptr());
    }
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    // The pages stay the caller's.
    for (i, pg) in pages.iter().enumerate() {
        assert_eq!(pg.refcount(), 1);
        // SAFETY: our page.
        unsafe { assert_eq!(m.page_address(*pg).unwrap().as_mut_ptr::<u8>().add(7).read(), i as u8 + 1) };
    }
    for i in 0..16 {
        // SAFETY: the split pages are ours.
        unsafe { m.__free_pages(m.pfn_to_page(block.pfn().add(i)).unwrap(), Order::ZERO) };
    }
}

#[test]
fn bad_frees_are_reported_and_harmless() {
    let m = machine(64);
    let p = m.vmalloc(PAGE_SIZE).unwrap();
    let k = m.kmalloc(4096, Gfp::KERNEL).unwrap(); // page-aligned, not vmalloc
                                                   // SAFETY: each call below is refused without touching memory.
    unsafe {
        m.vfree(k.as_ptr()); // not vmalloc
        m.vfree(p.as_ptr().add(8)); // unaligned
        m.vfree(p.as_ptr().add(PAGE_SIZE)); // the guard page: no area starts there
    }
    assert_eq!(m.report_count(ReportKind::Warning), 3);
    let texts = m.reports().texts(ReportKind::Warning);
    assert!(texts[0].contains("Trying to vfree() nonexistent vm area"), "{}", texts[0]);
    assert!(texts[1].contains("Trying to vfree() bad address"), "{}", texts[1]);
    // SAFETY: ours; then a double free, which is refused.
    unsafe {
        m.vfree(p.as_ptr());
        m.vfree(p.as_ptr());
        m.vfree(std::ptr::null());
        m.kfree(k.as_ptr());
    }
    assert_eq!(m.report_count(ReportKind::Warning), 4);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    assert_eq!(m.verify(), Ok(()));
    // Still works.
    let q = m.vmalloc(2 * PAGE_SIZE).unwrap();
    fill_check(q.as_ptr(), 2 * PAGE_SIZE, 9);
    // SAFETY: ours.
    unsafe { m.vfree(q.as_ptr()) };
}

#[test]
fn size_and_alignment_errors() {
    let m = machine(64);
    assert_eq!(m.vmalloc(0).unwrap_err().kind, kmem::VmallocErrorKind::ZeroSize);
    let e = m.vmalloc(1 << 30).unwrap_err();
    assert_eq!(e.kind, kmem::VmallocErrorKind::TooLarge);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 1);
    assert!(m.reports().texts(ReportKind::PageAllocFailure)[0]
        .contains("vmalloc error: size 1073741824, exceeds total pages"));
    assert!(m.__vmalloc(1 << 30, Gfp::KERNEL | Gfp::NOWARN).is_err());
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 1);
    assert_eq!(
        m.__vmalloc_node(PAGE_SIZE, 3 * PAGE_SIZE, Gfp::KERNEL, None).unwrap_err().kind,
        kmem::VmallocErrorKind::BadAlign
    );
    assert_eq!(
        m.__vmalloc_node(PAGE_SIZE, 1 << 62, Gfp::KERNEL, None).unwrap_err().kind,
        kmem::VmallocErrorKind::BadAlign
    );
    let a = m.__vmalloc_node(PAGE_SIZE, 1 << 24, Gfp::KERNEL, None).unwrap();
    assert_eq!(a.as_ptr() as usize % (1 << 24), 0);
    // Out of pages: a clean Err and the failure report.
    let small = MachineBuilder::new().ram_mib(16).cpus(1).build().unwrap();
    let e = small.vmalloc(small.totalram_pages() * PAGE_SIZE).unwrap_err();
    assert_eq!(e.kind, kmem::VmallocErrorKind::NoMemory);
    assert!(small.reports().texts(ReportKind::PageAllocFailure).iter().any(|t| t.contains("failed to allocate pages")));
    assert_eq!(small.vmalloc_stats().used_pages, 0);
    // SAFETY: ours.
    unsafe { m.vfree(a.as_ptr()) };
}

#[test]
fn larger_than_the_area_is_vm_struct_failure() {
    let m = MachineBuilder::new().ram_mib(256).cpus(1).vmalloc_size(16 << 20).build().unwrap();
    let e = m.vmalloc(32 << 20).unwrap_err();
    assert_eq!(e.kind, kmem::VmallocErrorKind::NoSpace);
    assert!(m.reports().texts(ReportKind::PageAllocFailure)[0]
        .contains("vmalloc error: size 33554432, vm_struct allocation failed"));
    // Filling the area then freeing: the purge on failure makes room again.
    let mut v = Vec::new();
    while let Ok(p) = m.__vmalloc(PAGE_SIZE, Gfp::KERNEL | Gfp::NOWARN) {
        v.push(p);
    }
    assert_eq!(v.len(), (16 << 20) / (2 * PAGE_SIZE));
    for p in v.drain(..) {
        // SAFETY: ours.
        unsafe { m.vfree(p.as_ptr()) };
    }
    assert!(m.vmalloc_stats().lazy_areas > 0);
    let p = m.vmalloc(8 << 20).unwrap();
    assert!(m.vmalloc_stats().purges >= 1);
    // SAFETY: ours.
    unsafe { m.vfree(p.as_ptr()) };
}

#[test]
fn kvmalloc_falls_back_to_vmalloc() {
    let m = machine(256);
    // Fragment nothing; just ask more than kmalloc's largest (4 MiB) so kmalloc must fail.
    let p = m.kvmalloc(6 << 20, Gfp::KERNEL).unwrap();
    assert!(m.is_vmalloc_addr(p.as_ptr()));
    fill_check(p.as_ptr(), 6 << 20, 1);
    let q = m.kvmalloc(64 << 10, Gfp::KERNEL).unwrap();
    assert!(!m.is_vmalloc_addr(q.as_ptr()));
    // Non-blocking: no fallback.
    assert!(m.kvmalloc(6 << 20, Gfp::ATOMIC | Gfp::NOWARN).is_err());
    // SAFETY: ours.
    unsafe {
        m.kvfree(p.as_ptr());
        m.kvfree(q.as_ptr());
    }
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}

#[test]
fn atomic_contexts() {
    let m = machine(128);
    // GFP_ATOMIC from interrupt context works without a report.
    let p = in_irq(|| m.__vmalloc(4 * PAGE_SIZE, Gfp::ATOMIC)).unwrap();
    fill_check(p.as_ptr(), 4 * PAGE_SIZE, 2);
    // vfree from interrupt context is fine.
    // SAFETY: ours.
    in_irq(|| unsafe { m.vfree(p.as_ptr()) });
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 0);
    // GFP_KERNEL with preemption disabled: might_sleep report, and it still works.
    let g = m.preempt_disable();
    let p = m.vmalloc(PAGE_SIZE).unwrap();
    drop(g);
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1);
    // SAFETY: ours.
    unsafe { m.vfree(p.as_ptr()) };
}

#[test]
fn views() {
    let m = machine(128);
    let p = m.vmalloc(4 * PAGE_SIZE).unwrap();
    let u = m.vmalloc_user(PAGE_SIZE).unwrap();
    let big = m.vmalloc(600 * PAGE_SIZE).unwrap(); // page array of 4800 bytes: vpages
    let mut s = String::new();
    kmem::proc::vmallocinfo(&m, &mut s).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    let me = file!();
    assert!(
        lines.iter().any(|l| l.contains(" 20480 ") && l.contains(me) && l.ends_with(" pages=4 vmalloc N0=4")),
        "{s}"
    );
    assert!(lines.iter().any(|l| l.contains("  8192 ") && l.ends_with(" pages=1 vmalloc user N0=1")), "{s}");
    assert!(lines.iter().any(|l| l.contains("2461696 ") && l.ends_with(" pages=600 vmalloc vpages N0=600")), "{s}");
    let l = lines[0];
    assert_eq!(&l[0..2], "0x");
    assert_eq!(&l[18..21], "-0x");
    let mut mi = String::new();
    kmem::proc::meminfo(&m, &mut mi).unwrap();
    assert!(mi.contains("VmallocTotal:   33554432 kB\n"), "{mi}");
    // 4 + 1 + 600 pages plus the 2 pages of the vpages array.
    assert!(mi.contains(&format!("VmallocUsed:    {:>8} kB\n", (605 + 2) * 4)), "{mi}");
    // SAFETY: ours.
    unsafe {
        m.vfree(p.as_ptr());
        m.vfree(u.as_ptr());
        m.vfree(big.as_ptr());
    }
    let mut s = String::new();
    kmem::proc::vmallocinfo(&m, &mut s).unwrap();
    // The 4-page area and the 2-page page array of the big one sit in this CPU's recycle
    // slots; the others await their purge.
    assert_eq!(s.lines().filter(|l| l.ends_with(" unpurged vm_area")).count(), 2, "{s}");
    assert_eq!(s.lines().count(), 2, "{s}");
    assert_eq!(m.vmalloc_stats().recycled, 2);
    m.vm_unmap_aliases();
    let mut s = String::new();
    kmem::proc::vmallocinfo(&m, &mut s).unwrap();
    assert_eq!(s, "");
}

#[test]
fn small_areas_are_recycled_per_cpu() {
    let m = machine(128);
    kmem_hosted::pin_current_thread(0);
    let p = m.vmalloc(3 * PAGE_SIZE).unwrap();
    // SAFETY: 3 pages, ours.
    unsafe { p.as_ptr().write_bytes(0x33, 3 * PAGE_SIZE) };
    let pfn = m.vmalloc_to_pfn(p.as_ptr()).unwrap();
    // SAFETY: ours.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(m.vmalloc_stats().recycled, 1);
    assert_eq!(m.vmalloc_to_pfn(p.as_ptr()), None, "a freed area has no pages");
    assert_eq!(m.vmalloc_stats().used_pages, 3, "cached pages still count as vmalloc's");
    // A second vfree of a cached area is still a double free.
    // SAFETY: refused.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    // The next request of that size gets it back (zeroed for vzalloc), mapping and pages.
    let q = m.vzalloc(3 * PAGE_SIZE - 100).unwrap();
    assert_eq!(q, p);
    assert_eq!(m.vmalloc_to_pfn(q.as_ptr()), Some(pfn));
    // SAFETY: ours.
    assert!(unsafe { std::slice::from_raw_parts(q.as_ptr(), 3 * PAGE_SIZE) }.iter().all(|&b| b == 0));
    // Another size does not match.
    // SAFETY: ours.
    unsafe { m.vfree(q.as_ptr()) };
    let r = m.vmalloc(2 * PAGE_SIZE).unwrap();
    assert_ne!(r, q);
    // More than the slots: the oldest is really freed.
    let many: Vec<_> = (0..6).map(|_| m.vmalloc(PAGE_SIZE).unwrap()).collect();
    for x in &many {
        // SAFETY: ours.
        unsafe { m.vfree(x.as_ptr()) };
    }
    assert_eq!(m.vmalloc_stats().recycled, kmem::vmalloc::recycle::RECYCLE_SLOTS);
    m.vm_unmap_aliases();
    let st = m.vmalloc_stats();
    assert_eq!((st.recycled, st.busy_areas, st.used_pages), (0, 1, 2));
    // SAFETY: ours.
    unsafe { m.vfree(r.as_ptr()) };
    // Off at boot: no recycling.
    let off = MachineBuilder::new().ram_mib(64).cpus(1).vmalloc_recycle(false).build().unwrap();
    let a = off.vmalloc(PAGE_SIZE).unwrap();
    // SAFETY: ours.
    unsafe { off.vfree(a.as_ptr()) };
    let b = off.vmalloc(PAGE_SIZE).unwrap();
    assert_ne!(a, b);
    assert_eq!(off.vmalloc_stats().recycled, 0);
    // SAFETY: ours.
    unsafe { off.vfree(b.as_ptr()) };
}

#[test]
fn anonymous_ram_has_no_vmalloc_range() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).anonymous_ram(true).build().unwrap();
    assert!(m.vmalloc_range().is_none());
    assert_eq!(m.vmalloc(PAGE_SIZE).unwrap_err().kind, kmem::VmallocErrorKind::NoVmallocArea);
    // kvmalloc still serves large requests from kmalloc's page path.
    let p = m.kvmalloc(2 << 20, Gfp::KERNEL).unwrap();
    fill_check(p.as_ptr(), 2 << 20, 4);
    // SAFETY: ours.
    unsafe { m.kvfree(p.as_ptr()) };
    let mut mi = String::new();
    kmem::proc::meminfo(&m, &mut mi).unwrap();
    assert!(mi.contains("VmallocTotal:          0 kB\n"));
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0);
}
