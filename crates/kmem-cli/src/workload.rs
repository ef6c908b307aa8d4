//! The demo workload: every CPU allocates and frees pages of mixed orders and GFP flags,
//! some from interrupt context, and objects of kernel-like slab caches (task_struct, dentry,
//! inode, buffer_head, vm_area_struct), keeping a working set so the buddy lists fragment and
//! the caches fill as a real kernel's do.

use std::time::{Duration, Instant};

use std::ptr::NonNull;

use kmem::{Cache, Gfp, PageRef, PerCpuVar, ReportKind, SlabFlags, PAGE_SIZE};
use kmem_hosted::{in_irq, pin_current_thread, HostedPlatform, Machine};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::opts::MachineOpts;
use crate::views::View;

/// The demo's slab caches, shaped like the kernel's (sizes and flags of a 6.x x86-64 kernel).
pub struct DemoCaches<'m> {
    caches: Vec<Cache<'m, HostedPlatform>>,
}

/// (name, object size, flags).
const CACHES: [(&str, usize, SlabFlags); 5] = [
    ("task_struct", 9856, SlabFlags::HWCACHE_ALIGN.union(SlabFlags::ACCOUNT)),
    ("dentry", 192, SlabFlags::RECLAIM_ACCOUNT.union(SlabFlags::HWCACHE_ALIGN)),
    ("inode_cache", 600, SlabFlags::RECLAIM_ACCOUNT.union(SlabFlags::HWCACHE_ALIGN)),
    ("buffer_head", 104, SlabFlags::RECLAIM_ACCOUNT),
    ("vm_area_struct", 176, SlabFlags::HWCACHE_ALIGN.union(SlabFlags::ACCOUNT)),
];

impl<'m> DemoCaches<'m> {
    /// Creates the caches.
    pub fn new(m: &'m Machine) -> Result<Self, String> {
        let caches = CACHES
            .iter()
            .map(|&(name, size, flags)| {
                m.kmem_cache_create(name, size, 0, flags, None).map_err(|e| format!("{name}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { caches })
    }
}

/// Blocks and objects the workload left allocated (so the views show a used machine).
pub struct Held {
    blocks: Vec<(usize, u32)>,
    objs: Vec<(usize, usize)>,
}

impl Held {
    /// Frees everything the workload held.
    pub fn release(self, m: &Machine, caches: &DemoCaches<'_>) {
        for (pfn, order) in self.blocks {
            let p = m.pfn_to_page(kmem::Pfn::new(pfn)).expect("held block has a descriptor");
            // SAFETY: the workload allocated these blocks and handed them to us.
            unsafe { m.__free_pages(p, order) };
        }
        for (ci, addr) in self.objs {
            let p = NonNull::new(addr as *mut u8).expect("objects are never null");
            free_obj(m, caches, ci, p);
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
    objs: PerCpuVar<'m, u64>,
}

impl<'m> Stats<'m> {
    fn new(m: &'m Machine) -> Self {
        let var = || m.define_per_cpu(0u64).expect("per-CPU variable");
        Self { allocs: var(), frees: var(), failures: var(), irq_allocs: var(), objs: var() }
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
pub fn run(m: &Machine, caches: &DemoCaches<'_>, secs: f64, seed: u64, progress: bool) -> Held {
    let stats = Stats::new(m);
    let end = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    let cpus = m.nr_cpus();
    let held = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cpus)
            .map(|cpu| {
                let stats = &stats;
                std::thread::Builder::new()
                    .name(format!("kworker/{cpu}"))
                    .spawn_scoped(s, move || cpu_loop(m, caches, cpu, seed, end, stats))
                    .expect("spawn worker")
            })
            .collect();
        if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(250));
                let (a, f) = (m.per_cpu_sum(stats.allocs) + m.per_cpu_sum(stats.objs), m.per_cpu_sum(stats.frees));
                eprint!("\r  {a:>10} allocations, {f:>10} frees");
            }
            eprint!("\r{:60}\r", "");
        }
        let (mut blocks, mut objs) = (Vec::new(), Vec::new());
        for h in handles {
            let (b, o) = h.join().expect("worker panicked");
            blocks.extend(b);
            objs.extend(o);
        }
        (blocks, objs)
    });
    if progress {
        let a = m.per_cpu_sum(stats.allocs) + m.per_cpu_sum(stats.objs);
        println!(
            "  {a} allocations ({} page blocks, {} slab objects; {:.1} M/s), {} frees, {} from IRQ context, {} failed (NOWARN)",
            m.per_cpu_sum(stats.allocs),
            m.per_cpu_sum(stats.objs),
            a as f64 / secs.max(1e-9) / 1e6,
            m.per_cpu_sum(stats.frees),
            m.per_cpu_sum(stats.irq_allocs),
            m.per_cpu_sum(stats.failures)
        );
        let per_cpu: Vec<String> = (0..cpus).map(|c| m.per_cpu(stats.allocs, c).to_string()).collect();
        println!("  allocations per CPU (per-CPU variable, this_cpu_inc): {}", per_cpu.join(" / "));
    }
    Held { blocks: held.0, objs: held.1 }
}

/// What one CPU left allocated: page blocks (pfn, order) and objects (cache, address).
type Leftovers = (Vec<(usize, u32)>, Vec<(usize, usize)>);

fn cpu_loop(m: &Machine, caches: &DemoCaches<'_>, cpu: usize, seed: u64, end: Instant, stats: &Stats<'_>) -> Leftovers {
    pin_current_thread(cpu as u32);
    let mut rng = SmallRng::seed_from_u64(seed ^ (cpu as u64) << 32);
    let mut live: Vec<(PageRef<'_>, u32)> = Vec::new();
    let mut objs: Vec<(usize, NonNull<u8>)> = Vec::new();
    let mut n = 0u64;
    while n == 0 || Instant::now() < end {
        for _ in 0..256 {
            n += 1;
            if rng.gen_bool(0.6) {
                slab_step(m, caches, &mut rng, &mut objs, stats);
                continue;
            }
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
    let blocks = live.into_iter().map(|(p, o)| (p.pfn().as_usize(), o)).collect();
    (blocks, objs.into_iter().map(|(ci, p)| (ci, p.as_ptr() as usize)).collect())
}

/// Index in a CPU's object list meaning "a kmalloc allocation" rather than a named cache.
const KMALLOC: usize = usize::MAX;

/// kmalloc sizes as a kernel's mix: mostly small, some page-sized and larger.
fn kmalloc_size(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(8..=256),
        60..=89 => rng.gen_range(257..=2048),
        90..=97 => rng.gen_range(2049..=8192),
        _ => rng.gen_range(8193..=64 << 10),
    }
}

/// One slab operation: kmalloc of a kernel-like size, or an object of a cache picked by
/// kernel-like weights (dentries and buffer heads are the busiest), sometimes with
/// GFP_ATOMIC from interrupt context; or a free of a random live one.
fn slab_step(
    m: &Machine,
    caches: &DemoCaches<'_>,
    rng: &mut SmallRng,
    objs: &mut Vec<(usize, NonNull<u8>)>,
    stats: &Stats<'_>,
) {
    if objs.len() < 3000 && rng.gen_bool(0.51) && rng.gen_bool(0.4) {
        let irq = rng.gen_ratio(1, 20);
        let size = if irq { rng.gen_range(8..=512) } else { kmalloc_size(rng) };
        let r = if irq {
            in_irq(|| m.kmalloc(size, Gfp::ATOMIC | Gfp::NOWARN))
        } else {
            m.kmalloc(size, Gfp::KERNEL | Gfp::NOWARN)
        };
        match r {
            Ok(p) => {
                // SAFETY: a fresh allocation of at least 8 bytes; touch its first word.
                unsafe { p.as_ptr().cast::<u64>().write(size as u64) };
                objs.push((KMALLOC, p));
                m.this_cpu_inc(stats.objs);
            }
            Err(_) => m.this_cpu_inc(stats.failures),
        }
    } else if objs.len() < 3000 && rng.gen_bool(0.51) {
        let ci = [0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4][rng.gen_range(0..11)];
        let c = &caches.caches[ci];
        let irq = rng.gen_ratio(1, 20);
        let r = if irq {
            in_irq(|| m.kmem_cache_alloc(c, Gfp::ATOMIC | Gfp::NOWARN))
        } else {
            m.kmem_cache_alloc(c, Gfp::KERNEL | Gfp::NOWARN)
        };
        match r {
            Ok(p) => {
                // SAFETY: a fresh object of at least 104 bytes; touch its first word.
                unsafe { p.as_ptr().cast::<u64>().write(ci as u64) };
                objs.push((ci, p));
                m.this_cpu_inc(stats.objs);
                if irq {
                    m.this_cpu_inc(stats.irq_allocs);
                }
            }
            Err(_) => m.this_cpu_inc(stats.failures),
        }
    } else if !objs.is_empty() {
        let (ci, p) = objs.swap_remove(rng.gen_range(0..objs.len()));
        free_obj(m, caches, ci, p);
        m.this_cpu_inc(stats.frees);
    }
}

fn free_obj(m: &Machine, caches: &DemoCaches<'_>, ci: usize, p: NonNull<u8>) {
    if ci == KMALLOC {
        // SAFETY: ours, from kmalloc.
        unsafe { m.kfree(p.as_ptr()) };
    } else {
        // SAFETY: ours, allocated from this cache.
        unsafe { m.kmem_cache_free(&caches.caches[ci], p) };
    }
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
    let caches = DemoCaches::new(&m)?;
    println!(
        "  slab caches: {}; kmalloc of 8 B to 64 KiB (GFP_ATOMIC from IRQ context too)",
        CACHES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
    );
    let held = run(&m, &caches, secs, seed, true);

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
    slab_misuse(&m)?;
    println!(
        "  reports so far: BadPage={} PageAllocFailure={} Warning={} SlabBug={}",
        m.report_count(ReportKind::BadPage),
        m.report_count(ReportKind::PageAllocFailure),
        m.report_count(ReportKind::Warning),
        m.report_count(ReportKind::SlabBug)
    );

    for v in View::ALL {
        println!("\n== /proc/{}", v.name());
        print!("{}", v.render(&m));
    }
    held.release(&m, &caches);
    drop(caches);
    m.verify().map_err(|e| format!("free lists inconsistent after the demo: {e:?}"))?;
    println!("\n== all memory returned; free lists verified");
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
