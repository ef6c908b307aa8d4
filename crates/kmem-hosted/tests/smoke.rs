use kmem::{Gfp, ReportKind};
use kmem_hosted::MachineBuilder;

#[test]
fn boots_default_machine_and_allocates() {
    let t = std::time::Instant::now();
    let m = MachineBuilder::new().build().unwrap();
    eprintln!("boot {:?} {:?}", t.elapsed(), m.boot_info());
    for z in m.zones().filter(|z| z.is_populated()) {
        eprintln!(
            "{} {:?} spanned {} present {} managed {} free {} wm {:?}",
            z.name(),
            z.start_pfn(),
            z.spanned_pages(),
            z.present_pages(),
            z.managed_pages(),
            z.free_pages(),
            [z.wmark(kmem::mm::zone::Wmark::Min), z.wmark(kmem::mm::zone::Wmark::Low)]
        );
    }
    let p = m.alloc_pages(Gfp::KERNEL | Gfp::ZERO, 3).unwrap();
    // SAFETY: the block is ours and unused from here on.
    unsafe { m.__free_pages(p, 3) };
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn boot_never_frees_a_partly_reserved_page() {
    use kmem::mm::page::pg;
    use kmem::{PhysAddr, VirtAddr};
    // A reservation that starts and ends inside one page, and the machine state itself
    // (carved top-down at 64-byte alignment, so the free bytes above it are less than a page).
    let odd = PhysAddr::new(0x20_0100);
    let m = MachineBuilder::new().ram_mib(256).cpus(2).reserve(odd.as_u64(), 0x100).build().unwrap();
    let state = m.virt_to_phys(VirtAddr::from_ptr(m.state())).unwrap();
    for pa in [odd, state] {
        let page = m.memmap().page(pa.pfn()).unwrap();
        assert!(page.test(pg::RESERVED), "{pa} holds boot data but is not PG_reserved");
        assert!(!page.test(pg::BUDDY), "{pa} holds boot data but is on a buddy free list");
    }
    // Zeroed movable order-0 allocations take single free pages first: none of them may be
    // the machine state's page, and the machine keeps working.
    let pages: Vec<_> = (0..16).map(|_| m.alloc_pages(Gfp::KERNEL | Gfp::MOVABLE | Gfp::ZERO, 0).unwrap()).collect();
    assert!(pages.iter().all(|p| p.pfn() != state.pfn()));
    for p in pages {
        // SAFETY: each page is ours and unused from here on.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}
