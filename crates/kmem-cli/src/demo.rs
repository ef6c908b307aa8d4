//! `kmem demo`: boot a machine, run the workload phases on every CPU, show misuse being
//! reported, print the /proc views and write the page-frame map.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use kmem::{Gfp, Order, ReportKind, SlabFlags, PAGE_SIZE};
use kmem_hosted::Machine;

use crate::opts::MachineOpts;
use crate::pfmap::MapFiles;
use crate::phases;
use crate::views::View;
use crate::workload::{self, DemoCaches, CACHES};

/// Options of `kmem demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub machine: MachineOpts,
    /// Seconds of mixed workload.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Workload random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the page-frame map: PATH.png and PATH.svg (a PATH ending in .png or
    /// .svg names one of them and implies the other; a directory gets kmem-pfmap.png and
    /// kmem-pfmap.svg inside it).
    #[arg(long, value_name = "PATH", default_value = crate::pfmap::DEFAULT_MAP)]
    pub map: PathBuf,
    /// Do not draw progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// The /proc views to print, comma-separated (buddyinfo, pagetypeinfo, zoneinfo, meminfo,
    /// slabinfo, vmallocinfo, vmstat, unusable_index, extfrag_index), `all` or `none`.
    #[arg(long, value_name = "LIST", default_value = "buddyinfo,slabinfo", value_parser = crate::views::parse_view_list)]
    pub views: ViewList,
    /// Only show reclaim at work: bursts of allocations into a cache with a shrinker on a
    /// machine with kswapd, free memory over time against the watermarks as a text plot and
    /// a PNG plot (`--plot`), shrinker calls and kswapd wake-ups.
    #[arg(long)]
    pub pressure: bool,
    /// Where `--pressure` writes its PNG plot.
    #[arg(long, value_name = "PATH", default_value = "kmem-pressure.png")]
    pub plot: PathBuf,
}

/// The views `--views` chose, in the order given.
#[derive(Debug, Clone)]
pub struct ViewList(pub Vec<View>);

/// Checks `--duration`: a finite, non-negative number of seconds (at most a day).
pub fn check_duration(secs: f64) -> Result<f64, String> {
    if secs.is_finite() && (0.0..=86400.0).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("--duration must be between 0 and 86400 seconds, got {secs}"))
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `kmem demo`.
pub fn demo(a: &DemoArgs) -> Result<(), String> {
    if a.pressure {
        return crate::pressure::pressure_demo(&a.machine, &a.plot);
    }
    let secs = check_duration(a.duration)?;
    let t = Instant::now();
    let m = a.machine.build()?;
    let boot_time = t.elapsed();
    // Created now, so that an unwritable path fails before the workload runs.
    let map_files = MapFiles::create(&a.map)?;
    print_boot(&m, boot_time.as_secs_f64());

    println!("\n== workload: {secs:.1} s on {} CPUs (GFP_KERNEL, GFP_HIGHUSER_MOVABLE, __GFP_COMP, GFP_DMA32, GFP_DMA; GFP_ATOMIC from IRQ context)", m.nr_cpus());
    let caches = DemoCaches::new(&m)?;
    println!(
        "  slab caches: {}; kmalloc of 8 B to 64 KiB (GFP_ATOMIC from IRQ context too); page blocks of orders 0-4 and 9",
        CACHES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
    );
    let held = workload::run_with(&m, &caches, secs, a.seed, true, !a.no_progress);
    println!("\n== vmalloc: 1 page to 4 MiB on every CPU (GFP_ATOMIC from IRQ context too), kernel stacks");
    let vheld = phases::vmalloc_phase(&m, a.seed);
    let vs = m.vmalloc_stats();
    println!(
        "  {} calls, {} failed (counted); {} areas and {} kernel stacks kept mapped ({} pages); {} lazy purges; {} freed small areas in the per-CPU recycle slots",
        vheld.calls, vheld.failures, vs.busy_areas - vs.stacks, vs.stacks, vs.used_pages, vs.purges, vs.recycled
    );

    let hheld = crate::highmem_phase::highmem_phase(&m);
    if let Some(h) = &hheld {
        println!("\n== highmem: kmap, kmap_local_page, and kmap_atomic from IRQ context, on every CPU");
        println!(
            "  {} kmaps and {} kmap_local/kmap_atomic mappings, {} pages read back wrong; pkmap slots in use: {} of {} at the peak, {} now; {} flushes (ring wraps), {} waits for a slot, {} page-table changes",
            h.kmaps,
            h.locals,
            h.corrupt,
            h.peak_in_use,
            kmem::LAST_PKMAP,
            h.stats.pkmap_in_use,
            h.stats.pkmap_flushes,
            h.stats.pkmap_waits,
            h.stats.maps
        );
        println!("  {} pages stay kmapped until the end (the page-frame map shows them)", h.kept.len());
    }

    println!(
        "\n== memory pressure: allocate with __GFP_NORETRY|__GFP_NOWARN until the watermarks refuse, then release"
    );
    let p = phases::memory_pressure(&m, !a.no_progress);
    println!(
        "  {} blocks ({} pages, {:.1} MiB) held at the peak; {} requests failed and were counted (NOWARN: {} reports)",
        p.allocs,
        p.pages,
        mib(p.pages * PAGE_SIZE as u64),
        p.failures,
        p.reports
    );
    println!(
        "  GFP_ATOMIC from IRQ context at the peak (may use the reserve below min): {} served, {} failed",
        p.atomic_ok, p.atomic_failed
    );
    for (node, name, free, min, low) in &p.zones {
        println!("  Node {node} {name:<7} free {free:>8} pages at the peak  (min {min}, low {low})");
    }
    println!("  (lowmem_reserve keeps the lower zones for requests that need them; all released)");

    misuse(&m)?;

    for v in &a.views.0 {
        println!("\n== {}", v.path());
        print!("{}", v.render(&m));
    }

    println!("\n== page-frame map");
    let title = format!(
        "{} machine, {:.0} MiB RAM, {} CPUs, {} node(s), after {secs:.1} s of workload (seed {})",
        m.preset(),
        mib(m.boot_info().ram_bytes),
        m.nr_cpus(),
        m.nr_nodes(),
        a.seed
    );
    let unusable = View::UnusableIndex.render(&m);
    let mut extra = vec![String::new(), "Unusable free space index per order (0 = all free memory usable):".to_owned()];
    extra.extend(unusable.lines().map(str::to_owned));
    let (png, svg) = (map_files.png.clone(), map_files.svg.clone());
    let legend = map_files.write(&m, &title, &extra)?;
    println!("  wrote {} and {}", png.display(), svg.display());
    for l in legend {
        println!("{l}");
    }
    println!("  unusable free space index per order (0.000: every free page usable; 1.000: none):");
    print!("  {:<21}", "order");
    for o in 0..=kmem::MAX_PAGE_ORDER {
        print!("{o:>5} ");
    }
    println!();
    for l in unusable.lines() {
        println!("  {l}");
    }

    let reports: u64 = [ReportKind::BadPage, ReportKind::PageAllocFailure, ReportKind::Warning, ReportKind::SlabBug]
        .into_iter()
        .map(|k| m.report_count(k))
        .sum();
    let (vcalls, vfailures) = (vheld.calls, vheld.failures);
    held.release(&m, &caches);
    vheld.release(&m);
    if let Some(h) = hheld {
        h.release(&m);
    }
    m.vm_unmap_aliases();
    drop(caches);
    m.verify().map_err(|e| format!("free lists inconsistent after the demo: {e:?}"))?;

    // The conclusions, last and short.
    println!("\n== summary");
    println!("  {title}");
    println!(
        "  memory pressure: {} blocks ({:.1} MiB) held at the peak, then {} requests refused by the watermarks, none fatal",
        p.allocs,
        mib(p.pages * PAGE_SIZE as u64),
        p.failures
    );
    println!("  vmalloc: {vcalls} calls, {vfailures} failed");
    println!("  misuse: {reports} reports (double free, allocation failure, red zone overrun); kmem kept working");
    println!("  page-frame map: {} and {}", png.display(), svg.display());
    if a.views.0.len() < View::ALL.len() {
        println!("  more /proc views: --views all (or a list: --views zoneinfo,meminfo)");
    }
    println!("  all memory returned; free lists verified");
    Ok(())
}

fn print_boot(m: &Machine, boot_secs: f64) {
    let b = m.boot_info();
    println!(
        "== kmem demo: {} machine, {:.0} MiB RAM, {} CPUs, {} node(s)",
        m.preset(),
        mib(b.ram_bytes),
        m.nr_cpus(),
        m.nr_nodes()
    );
    println!("booted in {:.1} ms; min_free_kbytes = {}", boot_secs * 1e3, m.min_free_kbytes());
    for z in m.zones().filter(|z| z.is_populated()) {
        println!(
            "  Node {} {:<7} pfn {:#9x}-{:#9x}  present {:>8}  managed {:>8} pages",
            z.node(),
            z.name(),
            z.start_pfn().as_usize(),
            z.end_pfn().as_usize(),
            z.present_pages(),
            z.managed_pages()
        );
    }
    let frames = b.ram_bytes / PAGE_SIZE as u64;
    let absent = m.nr_sections() - b.present_sections;
    println!("\n== page descriptors (struct page)");
    println!(
        "  {} bytes per {}-byte frame = {:.2}% of RAM: {:.1} MiB for {} frames in {} present 128 MiB sections",
        kmem::Page::SIZE,
        PAGE_SIZE,
        100.0 * kmem::Page::SIZE as f64 / PAGE_SIZE as f64,
        mib(b.memmap_bytes),
        frames,
        b.present_sections
    );
    println!("  {absent} section(s) without RAM (holes) have no descriptors; Linux's 64-byte struct page would need {:.1} MiB", mib(b.memmap_bytes * 2));
    println!(
        "  all kmem metadata carved at boot: {:.1} MiB ({:.2}% of RAM), reserved in total: {:.1} MiB",
        mib(b.metadata_bytes),
        100.0 * b.metadata_bytes as f64 / b.ram_bytes as f64,
        mib(b.reserved_bytes)
    );
}

/// Misuse is reported, not fatal: a double free, an allocation failure report, a slab
/// red-zone overrun.
fn misuse(m: &Machine) -> Result<(), String> {
    println!("\n== misuse is reported, not fatal");
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).map_err(|e| e.to_string())?;
    // SAFETY: ours; the second free is the deliberate misuse being demonstrated.
    unsafe {
        m.__free_pages(p, Order::ZERO);
        m.__free_pages(p, Order::ZERO);
    }
    print_indented(&m.reports().texts(ReportKind::BadPage).pop().unwrap_or_default());
    let huge: Vec<_> =
        std::iter::from_fn(|| m.alloc_pages(Gfp::KERNEL | Gfp::DMA | Gfp::NOWARN, Order::of(10)).ok()).collect();
    let _ = m.alloc_pages(Gfp::KERNEL | Gfp::DMA, Order::of(10));
    if let Some(t) = m.reports().texts(ReportKind::PageAllocFailure).pop() {
        print_indented(&t.lines().take(3).collect::<Vec<_>>().join("\n"));
        println!("  ...");
    }
    for h in huge {
        // SAFETY: ours.
        unsafe { m.__free_pages(h, Order::of(10)) };
    }
    slab_misuse(m)?;
    println!(
        "  reports so far: BadPage={} PageAllocFailure={} Warning={} SlabBug={}",
        m.report_count(ReportKind::BadPage),
        m.report_count(ReportKind::PageAllocFailure),
        m.report_count(ReportKind::Warning),
        m.report_count(ReportKind::SlabBug)
    );
    Ok(())
}

/// A red-zoned, poisoned, tracked cache (`slub_debug=FZPU` for one cache) catching a write
/// one byte past an object: Linux's report, then the repair.
fn slab_misuse(m: &Machine) -> Result<(), String> {
    let flags = SlabFlags::CONSISTENCY_CHECKS | SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER;
    let c = m.kmem_cache_create("demo_debug", 60, 0, flags, None).map_err(|e| e.to_string())?;
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).map_err(|e| e.to_string())?;
    // SAFETY: the deliberate overrun being demonstrated: one byte past the 60-byte object,
    // into its right red zone, which is slab memory of this cache (the object's slot).
    unsafe { p.as_ptr().add(60).write(0x00) };
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&c, p) };
    let text = m.reports().texts(ReportKind::SlabBug).pop().unwrap_or_default();
    let keep: Vec<&str> =
        text.lines().filter(|l| !l.starts_with("Object   ") && !l.starts_with("Padding  ") && !l.is_empty()).collect();
    print_indented(&keep.join("\n"));
    // The object was not freed (its red zone was wrong), so destroy finds it: the cache is
    // reported as leaking and kept, as Linux does (it stays in /proc/slabinfo below).
    drop(c);
    if let Some(t) = m.reports().texts(ReportKind::SlabBug).pop() {
        print_indented(t.lines().nth(1).unwrap_or_default());
    }
    Ok(())
}

fn print_indented(s: &str) {
    for l in s.lines() {
        println!("  | {l}");
    }
}
