//! The demo workload: every CPU allocates and frees pages of mixed orders and GFP flags,
//! some from interrupt context, and objects of kernel-like slab caches (task_struct, dentry,
//! inode, buffer_head, vm_area_struct), keeping a working set so the buddy lists fragment and
//! the caches fill as a real kernel's do. What a CPU keeps is sized to the machine it runs
//! on: at most [`HELD_SHARE`] of the RAM over all CPUs ([`Budget`]), so that the phases after
//! it (vmalloc, whose `vzalloc` may warn, and the misuse demonstration) find memory above the
//! watermarks on any machine, however small.

use std::time::{Duration, Instant};

use std::ptr::NonNull;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kmem::{Cache, Gfp, Order, PageRef, PerCpuVar, SlabFlags};
use kmem_hosted::{in_irq, pin_current_thread, HostedPlatform, Machine};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The demo's slab caches, shaped like the kernel's (sizes and flags of a 6.x x86-64 kernel).
pub struct DemoCaches<'m> {
    caches: Vec<Cache<'m, HostedPlatform>>,
}

/// (name, object size, flags).
pub const CACHES: [(&str, usize, SlabFlags); 5] = [
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
            unsafe { m.__free_pages(p, Order::of(order)) };
        }
        for (ci, addr) in self.objs {
            let p = NonNull::new(addr as *mut u8).expect("objects are never null");
            free_obj(m, caches, ci, p);
        }
    }
}

/// The share of the machine's managed memory the workload keeps allocated at most, over all
/// CPUs (page blocks and slab objects, by their sizes).
pub const HELD_SHARE: (usize, usize) = (1, 3);

/// What one CPU may keep: bytes held and the most it may hold.
struct Budget {
    held: usize,
    max: usize,
}

impl Budget {
    /// The per-CPU share of [`HELD_SHARE`] of `m`'s managed memory.
    fn for_cpu(m: &Machine) -> Self {
        let managed: usize = m.zones().map(|z| z.managed_pages()).sum::<usize>() * kmem::PAGE_SIZE;
        Self { held: 0, max: managed / HELD_SHARE.1 * HELD_SHARE.0 / m.nr_cpus() }
    }
    /// Whether `bytes` more fit.
    fn fits(&self, bytes: usize) -> bool {
        self.held + bytes <= self.max
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

/// Runs the workload for `secs` on every CPU of `m`. Returns what stays allocated. With
/// `progress`, shows a progress bar on a terminal and prints a summary.
pub fn run(m: &Machine, caches: &DemoCaches<'_>, secs: f64, seed: u64, progress: bool) -> Held {
    run_with(m, caches, secs, seed, progress, progress)
}

/// [`run`], with the summary (`summary`) and the progress bar on stderr (`bar`, drawn only
/// when stderr is a terminal) chosen separately.
pub fn run_with(m: &Machine, caches: &DemoCaches<'_>, secs: f64, seed: u64, summary: bool, bar: bool) -> Held {
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
        if bar {
            let pb = progress_bar((secs * 1000.0) as u64, "workload");
            while Instant::now() < end && !pb.is_hidden() {
                std::thread::sleep(Duration::from_millis(100));
                let (a, f) = (m.per_cpu_sum(stats.allocs) + m.per_cpu_sum(stats.objs), m.per_cpu_sum(stats.frees));
                let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
                pb.set_position(((secs - left).max(0.0) * 1000.0) as u64);
                pb.set_message(format!("{a} allocations, {f} frees"));
            }
            pb.finish_and_clear();
        }
        let (mut blocks, mut objs) = (Vec::new(), Vec::new());
        for h in handles {
            let (b, o) = h.join().expect("worker panicked");
            blocks.extend(b);
            objs.extend(o);
        }
        (blocks, objs)
    });
    if summary {
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
    let mut objs: Vec<(usize, NonNull<u8>, usize)> = Vec::new();
    let mut budget = Budget::for_cpu(m);
    let mut n = 0u64;
    while n == 0 || Instant::now() < end {
        for _ in 0..256 {
            n += 1;
            if rng.gen_bool(0.6) {
                slab_step(m, caches, &mut rng, &mut objs, &mut budget, stats);
                continue;
            }
            if live.len() < 512 && rng.gen_bool(0.52) {
                let irq = rng.gen_ratio(1, 20);
                let (gfp, order) = if irq { (Gfp::ATOMIC | Gfp::NOWARN, 0) } else { pick(&mut rng) };
                if !budget.fits(kmem::PAGE_SIZE << order) {
                    continue;
                }
                let r = if irq {
                    in_irq(|| m.alloc_pages(gfp, Order::of(order)))
                } else {
                    m.alloc_pages(gfp, Order::of(order))
                };
                match r {
                    Ok(p) => {
                        if let Some(a) = m.page_address(p) {
                            // SAFETY: the block is ours and in the direct map; touch its first word.
                            unsafe { a.as_mut_ptr::<u64>().write(p.pfn().as_usize() as u64) };
                        }
                        live.push((p, order));
                        budget.held += kmem::PAGE_SIZE << order;
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
                unsafe { m.__free_pages(p, Order::of(o)) };
                budget.held -= kmem::PAGE_SIZE << o;
                m.this_cpu_inc(stats.frees);
            }
        }
        if end <= Instant::now() {
            break;
        }
    }
    let blocks = live.into_iter().map(|(p, o)| (p.pfn().as_usize(), o)).collect();
    (blocks, objs.into_iter().map(|(ci, p, _)| (ci, p.as_ptr() as usize)).collect())
}

/// A progress bar on stderr for `phase`, `len` steps long (hidden when stderr is not a
/// terminal).
pub fn progress_bar(len: u64, phase: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("  {prefix:>8} [{bar:24}] {elapsed:>3} {wide_msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(phase.to_owned());
    pb
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
    objs: &mut Vec<(usize, NonNull<u8>, usize)>,
    budget: &mut Budget,
    stats: &Stats<'_>,
) {
    if objs.len() < 3000 && rng.gen_bool(0.51) && rng.gen_bool(0.4) {
        let irq = rng.gen_ratio(1, 20);
        let size = if irq { rng.gen_range(8..=512) } else { kmalloc_size(rng) };
        if !budget.fits(size) {
            return;
        }
        let r = if irq {
            in_irq(|| m.kmalloc(size, Gfp::ATOMIC | Gfp::NOWARN))
        } else {
            m.kmalloc(size, Gfp::KERNEL | Gfp::NOWARN)
        };
        match r {
            Ok(p) => {
                // SAFETY: a fresh allocation of at least 8 bytes; touch its first word.
                unsafe { p.as_ptr().cast::<u64>().write(size as u64) };
                objs.push((KMALLOC, p, size));
                budget.held += size;
                m.this_cpu_inc(stats.objs);
            }
            Err(_) => m.this_cpu_inc(stats.failures),
        }
    } else if objs.len() < 3000 && rng.gen_bool(0.51) {
        let ci = [0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4][rng.gen_range(0..11)];
        let c = &caches.caches[ci];
        let size = CACHES[ci].1;
        if !budget.fits(size) {
            return;
        }
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
                objs.push((ci, p, size));
                budget.held += size;
                m.this_cpu_inc(stats.objs);
                if irq {
                    m.this_cpu_inc(stats.irq_allocs);
                }
            }
            Err(_) => m.this_cpu_inc(stats.failures),
        }
    } else if !objs.is_empty() {
        let (ci, p, size) = objs.swap_remove(rng.gen_range(0..objs.len()));
        free_obj(m, caches, ci, p);
        budget.held -= size;
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
