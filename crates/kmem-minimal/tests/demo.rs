//! The bare-metal example run on the host: boot from a firmware-style memory map over a
//! static RAM region, the demo, and misuse that must reach the console.

use std::sync::Mutex;

use kmem::{BootError, Gfp, MemRegion, Pfn, PhysAddr, Platform, RegionKind, ReportKind, VirtAddr, PAGE_SIZE};
use kmem_minimal::{MinimalPlatform, StaticRam};

/// What the console received. One test in this file has a console.
static CONSOLE: Mutex<String> = Mutex::new(String::new());

fn console(s: &str) {
    CONSOLE.lock().unwrap().push_str(s);
}

/// A firmware map over 32 MiB: the legacy hole below 1 MiB and a reserved range at 20 MiB
/// are not RAM.
const MAP: [MemRegion; 5] = [
    MemRegion::usable(0, 0x9f000),
    MemRegion::reserved(0x9f000, 0x61000),
    MemRegion::usable(1 << 20, 19 << 20),
    MemRegion::reserved(20 << 20, 1 << 20),
    MemRegion::usable(21 << 20, 11 << 20),
];

/// Kernel virtual address space for vmalloc: address space this process reserves and never
/// touches (the platform only records mappings in its software page tables), leaked.
fn vmalloc_space(bytes: usize) -> (VirtAddr, VirtAddr) {
    let mut v = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(bytes + PAGE_SIZE));
    let start = (v.as_mut_ptr() as usize).next_multiple_of(PAGE_SIZE);
    (VirtAddr::new(start), VirtAddr::new(start + bytes))
}

#[test]
fn boots_from_a_memory_map_and_runs_the_demo() {
    static RAM: StaticRam<{ 32 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    let (vstart, vend) = vmalloc_space(4 << 20);
    // SAFETY: the static region is ours for ever (taken once); this thread alone uses the
    // machine.
    let platform = unsafe { MinimalPlatform::new(ram, bytes) }.with_vmalloc_range(vstart, vend).with_console(console);
    let m = kmem_minimal::boot(platform, &MAP).expect("boots");

    // The map was honoured: every frame the firmware did not call RAM stays reserved, and
    // the zones manage (almost) all that it did, less kmem's metadata.
    for r in MAP.iter().filter(|r| r.kind == RegionKind::Reserved) {
        let (first, end) = (r.start.pfn(), r.end().pfn());
        for pfn in first.as_usize()..end.as_usize() {
            let page = m.pfn_to_page(Pfn::new(pfn)).expect("inside a present section");
            assert!(page.is_reserved(), "pfn {pfn:#x} of a reserved range is not PG_reserved");
        }
    }
    let usable: u64 = MAP.iter().filter(|r| r.kind == RegionKind::Usable).map(|r| r.size).sum();
    let managed: usize = m.zones().map(|z| z.managed_pages()).sum();
    let usable_pages = (usable / PAGE_SIZE as u64) as usize;
    assert!(managed <= usable_pages && managed > usable_pages * 9 / 10, "{managed} of {usable_pages}");

    let s = kmem_minimal::demo(&m).expect("demo");
    let in_ram = |pfn: Pfn| {
        let pa = pfn.phys();
        MAP.iter().any(|r| r.kind == RegionKind::Usable && r.start <= pa && pa < r.end())
    };
    assert!(in_ram(s.block_pfn), "{:?}", s.block_pfn);
    assert!(in_ram(s.vmalloc_last_pfn.expect("a vmalloc range was given")));
    assert_eq!(s.kmalloc_ksize, 128);
    assert!(s.tasks_per_slab > 1 && s.tasks_per_slab < kmem_minimal::DEMO_TASKS, "{s:?}");
    // Everything went back; per-CPU lists and slab caches keep a few pages.
    assert!(s.free_pages_before - s.free_pages_after < 64, "{s:?}");

    assert_eq!(m.platform().preempt_count(), 0, "every section ended");
    assert!(!m.platform().irqs_disabled());
    for kind in ReportKind::ALL.into_iter().filter(|k| *k != ReportKind::Info) {
        assert_eq!(m.report_count(kind), 0, "{kind:?}");
    }
    let text = CONSOLE.lock().unwrap().clone();
    assert!(!text.contains("BUG") && !text.contains("WARNING"), "{text}");

    // A double free is caught, reported on the console, and the machine keeps working.
    let p = m.kmalloc(32, Gfp::KERNEL).unwrap();
    // SAFETY: from kmalloc, freed once.
    unsafe { m.kfree(p.as_ptr()) };
    // SAFETY: the misuse under test: kmem detects it and does not free again.
    unsafe { m.kfree(p.as_ptr()) };
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    let text = CONSOLE.lock().unwrap().clone();
    assert!(text.contains("Object already free"), "{text}");
    kmem_minimal::demo(&m).expect("demo after the misuse");
}

#[test]
fn runs_without_vmalloc_or_console() {
    static RAM: StaticRam<{ 8 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    // SAFETY: as above.
    let m = kmem_minimal::boot(unsafe { MinimalPlatform::new(ram, bytes) }, &[MemRegion::usable(0, 8 << 20)]).unwrap();
    let s = kmem_minimal::demo(&m).expect("demo");
    assert_eq!(s.vmalloc_last_pfn, None);
    assert!(m.vmalloc(PAGE_SIZE).is_err(), "no vmalloc range, no vmalloc");
}

#[test]
fn usable_ram_beyond_the_region_is_refused() {
    static RAM: StaticRam<{ 1 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    // SAFETY: as above.
    let platform = unsafe { MinimalPlatform::new(ram, bytes) };
    let err = kmem_minimal::boot(platform, &[MemRegion::usable(0, 2 << 20)]).err();
    assert_eq!(err, Some(BootError::DirectMapTooSmall { limit: PhysAddr::new(1 << 20) }));
}

#[test]
#[should_panic(expected = "overlaps the direct map")]
fn a_vmalloc_range_inside_the_direct_map_is_refused() {
    static RAM: StaticRam<{ 1 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    let start = VirtAddr::new(ram.as_ptr() as usize);
    // SAFETY: as above.
    let _ = unsafe { MinimalPlatform::new(ram, bytes) }
        .with_vmalloc_range(start, VirtAddr::new(start.as_usize() + PAGE_SIZE));
}

#[test]
fn nolock_uses_the_cpu_only_when_no_section_holds_it() {
    use kmem::{Gfp, Platform};
    static RAM: StaticRam<{ 8 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    // SAFETY: as above.
    let m = kmem_minimal::boot(unsafe { MinimalPlatform::new(ram, bytes) }, &[MemRegion::usable(0, 8 << 20)]).unwrap();
    let first = m.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(first.as_ptr()) };
    // The CPU is free: kmalloc_nolock may use its sheaves.
    let p = m.platform().try_pin_cpu_nolock().expect("no section open");
    assert!(m.platform().try_pin_cpu_nolock().is_none(), "a second pin on top is refused");
    m.platform().unpin_cpu(p);
    // An interrupt handler inside a section (what an NMI in kmem sees): refused, so the
    // request takes the node lists' trylock route and still succeeds.
    m.platform().preempt_disable();
    assert!(m.platform().try_pin_cpu_nolock().is_none());
    let q = m.kmalloc_nolock(64, Gfp::empty(), None).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree_nolock(q.as_ptr()) };
    m.platform().preempt_enable();
    m.defer_free_barrier();
    assert_eq!(m.deferred_frees(), 0);
    m.verify().unwrap();
}

#[test]
fn the_state_word_keeps_preemption_and_interrupts_apart() {
    static RAM: StaticRam<{ 8 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    // SAFETY: as above.
    let m = kmem_minimal::boot(unsafe { MinimalPlatform::new(ram, bytes) }, &[MemRegion::usable(0, 8 << 20)]).unwrap();
    let p = m.platform();
    assert!(!p.atomic_context() && !p.irqs_disabled() && p.preempt_count() == 0);
    // Interrupts off alone: atomic, preemption count untouched.
    let outer = p.local_irq_save();
    assert!(p.atomic_context() && p.irqs_disabled());
    assert_eq!(p.preempt_count(), 0);
    // A section inside, and a nested save that finds them off already.
    p.preempt_disable();
    assert_eq!(p.preempt_count(), 1);
    let inner = p.local_irq_save();
    p.local_irq_restore(inner);
    assert!(p.irqs_disabled(), "the nested restore keeps them off");
    p.local_irq_restore(outer);
    assert!(!p.irqs_disabled() && p.preempt_count() == 1 && p.atomic_context());
    p.preempt_enable();
    assert!(!p.atomic_context());
    // A sleeping allocation in atomic context is reported and still served.
    let g = p.local_irq_save();
    let o = m.kmalloc(64, Gfp::KERNEL).unwrap();
    p.local_irq_restore(g);
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "might_sleep with interrupts off");
    // SAFETY: ours.
    unsafe { m.kfree(o.as_ptr()) };
    let o = m.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(o.as_ptr()) };
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "nothing reported outside");
}
