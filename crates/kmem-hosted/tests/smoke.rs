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
    unsafe { m.__free_pages(p, 3) };
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}
