//! vmalloc through the kernel's page tables, guard-page faults, kmap.

use core::sync::atomic::Ordering;

use kmem::{Gfp, Kmem, Order, PAGE_SIZE};

use super::{check, TestResult};
use crate::kernel::entry::{kmem_boot_probe_read, kmem_boot_probe_write};
use crate::kernel::idt::{BOOT_STACK_GUARD, FIXED_FAULTS};
use crate::kernel::platform::BootPlatform;
use crate::kernel::{direct_map_opt, paging};

/// A write to `addr` must fault and be fixed up: returns an error otherwise.
pub fn expect_fault(addr: usize) -> TestResult {
    let before = FIXED_FAULTS.load(Ordering::Relaxed);
    // SAFETY: `addr` is a guard page (the caller's claim, which this checks): unmapped, so the
    // write faults and the exception table resumes the probe.
    let wrote = unsafe { kmem_boot_probe_write(addr as *mut u8, 0xee) };
    check(!wrote, "a guard-page write did not fault")?;
    check(FIXED_FAULTS.load(Ordering::Relaxed) > before, "the fault was not counted")?;
    check(
        crate::kernel::percpu::this_cpu().last_fault_addr.load(Ordering::Relaxed) == addr,
        "the fault reported another address",
    )
}

/// vmalloc of 5 pages and of 2 MiB: every byte written and read back through the new
/// mappings; the page tables name distinct frames; vfree.
pub fn vmalloc_rw(m: &'static Kmem<BootPlatform>) -> TestResult {
    let dm = direct_map_opt().ok_or("no direct map")?;
    for bytes in [5 * PAGE_SIZE, 2 << 20] {
        let v = m.vmalloc(bytes).map_err(|_| "vmalloc failed")?;
        let p = v.as_ptr();
        check(
            (p as usize) >= paging::VMALLOC_START && (p as usize) < paging::VMALLOC_END,
            "outside the vmalloc range",
        )?;
        // SAFETY: `bytes` bytes of a fresh vmalloc area, ours.
        let s = unsafe { core::slice::from_raw_parts_mut(p, bytes) };
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i / PAGE_SIZE) as u8 ^ i as u8;
        }
        let ok = s.iter().enumerate().all(|(i, &b)| b == (i / PAGE_SIZE) as u8 ^ i as u8);
        let f0 = paging::translate(dm, p as usize);
        let f1 = paging::translate(dm, p as usize + PAGE_SIZE);
        // SAFETY: from vmalloc, freed once, unused after.
        unsafe { m.vfree(p) };
        check(ok, "a vmalloc area did not keep its bytes")?;
        check(f0.is_some() && f1.is_some() && f0 != f1, "the page tables do not map the area")?;
    }
    Ok(())
}

/// A write one byte past a vmalloc area hits its guard page: a real page fault, reported
/// and fixed up.
pub fn vmalloc_guard(m: &'static Kmem<BootPlatform>) -> TestResult {
    let v = m.vmalloc(3 * PAGE_SIZE).map_err(|_| "vmalloc failed")?;
    let end = v.as_ptr() as usize + 3 * PAGE_SIZE;
    let r = check(paging::is_guard_page(end), "the page after the area is not a guard page")
        .and_then(|()| expect_fault(end))
        .and_then(|()| {
            let before = FIXED_FAULTS.load(Ordering::Relaxed);
            // SAFETY: the guard page: unmapped, the read faults and is fixed up.
            let read = unsafe { kmem_boot_probe_read((end + 100) as *const u8) };
            check(!read && FIXED_FAULTS.load(Ordering::Relaxed) == before + 1, "a guard-page read did not fault")
        });
    // SAFETY: from vmalloc, freed once.
    unsafe { m.vfree(v.as_ptr()) };
    r
}

/// A write just below the boot CPU's stack hits its guard page.
pub fn stack_guard(_m: &'static Kmem<BootPlatform>) -> TestResult {
    let g = BOOT_STACK_GUARD.load(Ordering::Relaxed);
    check(g != 0, "no boot stack guard")?;
    expect_fault(g + PAGE_SIZE - 1)
}

/// `kmap_local_page` and `kmap` of a lowmem page give its direct-map address (as on
/// Linux x86-64), and the bytes written through them are the page's. With HighMem (the
/// `highmem` boot option): pages of `GFP_HIGHUSER` have no direct-map address; `kmap_local_page`
/// and `kmap` map them in the kmap area through the page tables (the walk finds the page's
/// frame), several at once, and the bytes survive unmapping and mapping again elsewhere.
pub fn kmap(m: &'static Kmem<BootPlatform>) -> TestResult {
    let page = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, Order::ZERO).map_err(|_| "alloc_pages failed")?;
    let addr = m.page_address(page).ok_or("no page address")?;
    let r = (|| {
        let va = m.kmap_local_page(page).map_err(|_| "kmap_local_page failed")?;
        // SAFETY: the page is ours, mapped at `va`.
        unsafe { va.as_mut_ptr::<u8>().write_volatile(0x11) };
        m.kunmap_local(va);
        let va2 = m.kmap(page).map_err(|_| "kmap failed")?;
        // SAFETY: as above.
        unsafe { va2.as_mut_ptr::<u8>().add(1).write_volatile(0x22) };
        m.kunmap(page);
        // SAFETY: the page is ours, direct mapped.
        let (a, b) =
            unsafe { (addr.as_mut_ptr::<u8>().read_volatile(), addr.as_mut_ptr::<u8>().add(1).read_volatile()) };
        check(va == addr && a == 0x11 && b == 0x22, "kmap gave another address or lost the bytes")
    })();
    // SAFETY: ours, order 0, unused.
    unsafe { m.__free_pages(page, Order::ZERO) };
    r?;
    if m.zones().any(|z| z.zone_type() == kmem::ZoneType::HighMem && z.managed_pages() > 0) {
        highmem_kmap(m)?;
    }
    Ok(())
}

fn highmem_kmap(m: &'static Kmem<BootPlatform>) -> TestResult {
    let dm = direct_map_opt().ok_or("no direct map")?;
    let in_area = |va: usize| (paging::KMAP_START..paging::KMAP_START + paging::KMAP_BYTES).contains(&va);
    const N: usize = 4;
    let mut pages = [None; N];
    for p in pages.iter_mut() {
        *p = Some(m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).map_err(|_| "GFP_HIGHUSER allocation failed")?);
    }
    let r = (|| {
        for (i, page) in pages.iter().flatten().enumerate() {
            check(m.page_address(*page).is_none(), "a HighMem page has a direct-map address")?;
            let va = m.kmap_local_page(*page).map_err(|_| "kmap_local_page failed")?;
            let ok = in_area(va.as_usize()) && paging::translate(dm, va.as_usize()) == Some(page.pfn());
            // SAFETY: the page is ours, mapped at `va` until kunmap_local.
            unsafe { core::ptr::write_bytes(va.as_mut_ptr::<u8>(), 0x40 + i as u8, PAGE_SIZE) };
            m.kunmap_local(va);
            check(ok, "kmap_local_page did not map the page in the kmap area")?;
        }
        let mut vas = [0usize; N];
        for (i, page) in pages.iter().flatten().enumerate() {
            let va = m.kmap(*page).map_err(|_| "kmap failed")?;
            vas[i] = va.as_usize();
            check(in_area(vas[i]) && paging::translate(dm, vas[i]) == Some(page.pfn()), "kmap did not map the page")?;
        }
        let distinct = (0..N).all(|i| (0..i).all(|j| vas[i] != vas[j]));
        let kept = vas.iter().enumerate().all(|(i, &va)| {
            // SAFETY: each page is ours and kmapped at `va`.
            unsafe { core::slice::from_raw_parts(va as *const u8, PAGE_SIZE) }.iter().all(|&b| b == 0x40 + i as u8)
        });
        for page in pages.iter().flatten() {
            m.kunmap(*page);
        }
        check(distinct && kept, "kmapped HighMem pages share an address or lost their bytes")
    })();
    for page in pages.into_iter().flatten() {
        // SAFETY: ours, order 0, unmapped.
        unsafe { m.__free_pages(page, Order::ZERO) };
    }
    kprintln!("    {N} HighMem pages through kmap_local_page and kmap");
    r
}

/// KFENCE on bare metal (kfence_test's core scenarios): a forced KFENCE `kmalloc` object;
/// an out-of-bounds read into its guard page, a use-after-free read and a double free are
/// real page faults or checks that kmem reports (`ReportKind::Kfence`), after which the
/// access goes on (the handler maps the page back) and kmem keeps working.
pub fn kfence(m: &'static Kmem<BootPlatform>) -> TestResult {
    use crate::kernel::idt::KFENCE_FAULTS;
    use kmem::ReportKind;
    check(m.kfence_stats().enabled, "KFENCE is not enabled")?;
    let reports = m.report_count(ReportKind::Kfence);
    let faults = KFENCE_FAULTS.load(Ordering::Relaxed);
    // The forced allocation is the machine's next sampled one: a timer interrupt on any
    // CPU may take it first (its object is a KFENCE object, used and freed normally), so
    // try a few times.
    let mut p = core::ptr::null_mut();
    for _ in 0..50 {
        check(m.kfence_force_next(), "kfence_force_next")?;
        let q = m.kmalloc(40, Gfp::KERNEL).map_err(|_| "kmalloc failed")?.as_ptr();
        if m.is_kfence_address(q) {
            p = q;
            break;
        }
        // SAFETY: ours, unused.
        unsafe { m.kfree(q) };
    }
    check(!p.is_null(), "no forced allocation came from the KFENCE pool")?;
    let addr = p as usize;
    let page = addr & !(PAGE_SIZE - 1);
    // Left-placed objects start their page: the guard page is below; else the one above.
    let oob = if addr == page { page - 1 } else { page + PAGE_SIZE };
    // SAFETY: a KFENCE guard page: the read faults, KFENCE reports it and maps the page back,
    // and the read is retried (its value does not matter).
    let _ = unsafe { (oob as *const u8).read_volatile() };
    check(KFENCE_FAULTS.load(Ordering::Relaxed) == faults + 1, "the out-of-bounds read did not fault")?;
    check(m.report_count(ReportKind::Kfence) == reports + 1, "the out-of-bounds read was not reported")?;
    // SAFETY: ours, live; freed once (the double free below is the deliberate misuse).
    unsafe { m.kfree(p) };
    // SAFETY: a freed KFENCE object: its page is protected, the read faults and is reported.
    let _ = unsafe { p.read_volatile() };
    check(KFENCE_FAULTS.load(Ordering::Relaxed) == faults + 2, "the use-after-free read did not fault")?;
    check(m.report_count(ReportKind::Kfence) == reports + 2, "the use-after-free read was not reported")?;
    // SAFETY: deliberate double free of a KFENCE object: reported, nothing freed.
    unsafe { m.kfree(p) };
    check(m.report_count(ReportKind::Kfence) == reports + 3, "the double free was not reported")?;
    let q = m.kmalloc(40, Gfp::KERNEL).map_err(|_| "kmalloc after the reports failed")?;
    // SAFETY: ours.
    unsafe { m.kfree(q.as_ptr()) };
    Ok(())
}
