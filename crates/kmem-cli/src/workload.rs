//! The demo workload: every CPU allocates and frees pages of mixed orders and GFP flags,
//! some from interrupt context, keeping a working set so the buddy lists fragment as a real
//! kernel's do.

use std::time::{Duration, Instant};

use kmem::{Gfp, PageRef, PerCpuVar, ReportKind, PAGE_SIZE};
use kmem_hosted::{in_irq, pin_current_thread, Machine};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::opts::MachineOpts;
use crate::views::View;

/// Blocks the workload left allocated (so the views show a used machine).
pub struct Held {
    blocks: Vec<(usize, u32)>,
}

impl Held {
    /// Frees everything the workload held.
    pub fn release(self, m: &Machine) {
        for (pfn, order) in self.blocks {
            let p = m.pfn_to_page(kmem::Pfn::new(pfn)).expect("held block has a descriptor");
            // SAFETY: the workload allocated these blocks and handed them to us.
            unsafe { m.__free_pages(p, order) };
        }
    }
}

/// Counters of one run: per-CPU variables of the machine itself (`DEFINE_PER_CPU` +
/// `this_cpu_inc`), summed over CPUs when read, as kernel statistics are.
struct Stats<'m> {
    allocs: PerCpuVar<'m, u64>,
    frees: PerCpuVar<'m, u64>,
    failures: PerCpuVar<'m, u64>,
    irq_allocs: PerCpuVar<'m, u64>,
}

impl<'m> Stats<'m> {
    fn new(m: &'m Machine) -> Self {
        let var = || m.define_per_cpu(0u64).expect("per-CPU variable");
        Self { allocs: var(), frees: var(), failures: var(), irq_allocs: var() }
    }
}

/// A GFP mix like a kernel's: mostly GFP_KERNEL, user pages, some DMA32/DMA, compound pages.
fn pick(rng: &mut SmallRng) -> (Gfp, u32) {
    let order = [0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 9][rng.gen_range(0..12)];
    let gfp = match rng.gen_range(0..100) {
        0..=54 => Gfp::KERNEL,
        55..=79 => Gfp::HIGHUSER_MOVABLE,
        80..=89 => Gfp::KERNEL | Gfp::COMP,
        90..=94 => Gfp::KERNEL | Gfp::RECLAIMABLE,
        95..=97 => Gfp::KERNEL | Gfp::DMA32,
        _ => Gfp::KERNEL | Gfp::DMA,
    };
    (gfp | Gfp::NOWARN, order)
}

/// Runs the workload for `secs` on every CPU of `m`. Returns what stays allocated.
pub fn run(m: &Machine, secs: f64, seed: u64, progress: bool) -> Held {
    let stats = Stats::new(m);
    let end = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    let cpus = m.nr_cpus();
    let held = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cpus)
            .map(|cpu| {
                let stats = &stats;
                std::thread::Builder::new()
                    .name(format!("kworker/{cpu}"))
                    .spawn_scoped(s, move || cpu_loop(m, cpu, seed, end, stats))
                    .expect("spawn worker")
            })
            .collect();
        if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(250));
                let (a, f) = (m.per_cpu_sum(stats.allocs), m.per_cpu_sum(stats.frees));
                eprint!("\r  {a:>10} allocations, {f:>10} frees");
            }
            eprint!("\r{:60}\r", "");
        }
        handles.into_iter().flat_map(|h| h.join().expect("worker panicked")).collect()
    });
    if progress {
        let a = m.per_cpu_sum(stats.allocs);
        println!(
            "  {a} allocations ({:.1} M/s), {} frees, {} from IRQ context, {} failed (NOWARN)",
            a as f64 / secs.max(1e-9) / 1e6,
            m.per_cpu_sum(stats.frees),
            m.per_cpu_sum(stats.irq_allocs),
            m.per_cpu_sum(stats.failures)
        );
        let per_cpu: Vec<String> = (0..cpus).map(|c| m.per_cpu(stats.allocs, c).to_string()).collect();
        println!("  allocations per CPU (per-CPU variable, this_cpu_inc): {}", per_cpu.join(" / "));
    }
    Held { blocks: held }
}

fn cpu_loop(m: &Machine, cpu: usize, seed: u64, end: Instant, stats: &Stats<'_>) -> Vec<(usize, u32)> {
    pin_current_thread(cpu as u32);
    let mut rng = SmallRng::seed_from_u64(seed ^ (cpu as u64) << 32);
    let mut live: Vec<(PageRef<'_>, u32)> = Vec::new();
    let mut n = 0u64;
    while n == 0 || Instant::now() < end {
        for _ in 0..256 {
            n += 1;
            if live.len() < 512 && rng.gen_bool(0.52) {
                let irq = rng.gen_ratio(1, 20);
                let (gfp, order) = if irq { (Gfp::ATOMIC | Gfp::NOWARN, 0) } else { pick(&mut rng) };
                let r = if irq { in_irq(|| m.alloc_pages(gfp, order)) } else { m.alloc_pages(gfp, order) };
                match r {
                    Ok(p) => {
                        if let Some(a) = m.page_address(p) {
                            // SAFETY: the block is ours and in the direct map; touch its first word.
                            unsafe { a.as_mut_ptr::<u64>().write(p.pfn().as_usize() as u64) };
                        }
                        live.push((p, order));
                        m.this_cpu_inc(stats.allocs);
                        if irq {
                            m.this_cpu_inc(stats.irq_allocs);
                        }
                    }
                    Err(_) => m.this_cpu_inc(stats.failures),
                }
            } else if !live.is_empty() {
                let (p, o) = live.swap_remove(rng.gen_range(0..live.len()));
                // SAFETY: ours.
                unsafe { m.__free_pages(p, o) };
                m.this_cpu_inc(stats.frees);
            }
        }
        if end <= Instant::now() {
            break;
        }
    }
    live.into_iter().map(|(p, o)| (p.pfn().as_usize(), o)).collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `kmem demo`.
pub fn demo(opts: &MachineOpts, secs: f64, seed: u64) -> Result<(), String> {
    let t = Instant::now();
    let m = opts.build()?;
    let boot_time = t.elapsed();
    let b = m.boot_info();
    println!(
        "== kmem demo: {} machine, {:.0} MiB RAM, {} CPUs, {} node(s)",
        m.preset(),
        mib(b.ram_bytes),
        m.nr_cpus(),
        m.nr_nodes()
    );
    println!("booted in {:.1} ms; min_free_kbytes = {}", boot_time.as_secs_f64() * 1e3, m.min_free_kbytes());
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
    let absent = m.memmap().nr_sections() - b.present_sections;
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

    println!("\n== workload: {secs:.1} s on {} CPUs (GFP_KERNEL, GFP_HIGHUSER_MOVABLE, __GFP_COMP, GFP_DMA32, GFP_DMA; GFP_ATOMIC from IRQ context)", m.nr_cpus());
    let held = run(&m, secs, seed, true);

    println!("\n== misuse is reported, not fatal");
    let p = m.alloc_pages(Gfp::KERNEL, 0).map_err(|e| e.to_string())?;
    // SAFETY: ours; the second free is the deliberate misuse being demonstrated.
    unsafe {
        m.__free_pages(p, 0);
        m.__free_pages(p, 0);
    }
    print_indented(&m.reports().texts(ReportKind::BadPage).pop().unwrap_or_default());
    let huge: Vec<_> = std::iter::from_fn(|| m.alloc_pages(Gfp::KERNEL | Gfp::DMA | Gfp::NOWARN, 10).ok()).collect();
    let _ = m.alloc_pages(Gfp::KERNEL | Gfp::DMA, 10);
    if let Some(t) = m.reports().texts(ReportKind::PageAllocFailure).pop() {
        print_indented(&t.lines().take(3).collect::<Vec<_>>().join("\n"));
        println!("  ...");
    }
    for h in huge {
        // SAFETY: ours.
        unsafe { m.__free_pages(h, 10) };
    }
    println!(
        "  reports so far: BadPage={} PageAllocFailure={} Warning={}",
        m.report_count(ReportKind::BadPage),
        m.report_count(ReportKind::PageAllocFailure),
        m.report_count(ReportKind::Warning)
    );

    for v in View::ALL {
        println!("\n== /proc/{}", v.name());
        print!("{}", v.render(&m));
    }
    held.release(&m);
    m.verify().map_err(|e| format!("free lists inconsistent after the demo: {e:?}"))?;
    println!("\n== all memory returned; free lists verified");
    Ok(())
}

fn print_indented(s: &str) {
    for l in s.lines() {
        println!("  | {l}");
    }
}
