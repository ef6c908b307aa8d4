//! The README's "On bare metal" example, as written there (keep the two in step).

#[test]
fn readme_bare_metal_example() -> Result<(), Box<dyn std::error::Error>> {
    use kmem::{Gfp, MemRegion};
    use kmem_minimal::{MinimalPlatform, StaticRam};

    static RAM: StaticRam<{ 16 << 20 }> = StaticRam::new();
    const MAP: [MemRegion; 2] = [MemRegion::usable(0, 0x9f000), MemRegion::usable(1 << 20, 15 << 20)];

    let (ram, bytes) = RAM.take().unwrap();
    // SAFETY: the static region is ours for ever; one CPU, one thread.
    let m = kmem_minimal::boot(unsafe { MinimalPlatform::new(ram, bytes) }, &MAP)?;
    let p = m.kmalloc(100, Gfp::KERNEL)?;
    // SAFETY: from kmalloc, freed once.
    unsafe { m.kfree(p.as_ptr()) };
    kmem_minimal::demo(&m)?;
    for kind in kmem::ReportKind::ALL.into_iter().filter(|k| *k != kmem::ReportKind::Info) {
        assert_eq!(m.report_count(kind), 0, "{kind:?}");
    }
    Ok(())
}
