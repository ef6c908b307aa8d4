//! The demo's later phases: vmalloc (mixed sizes on every CPU, some kept mapped), and memory
//! pressure (allocate until the watermarks stop requests, count the failures, release).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kmem::{Gfp, KernelStack, Order, PageRef, ReportKind};
use kmem_hosted::{in_irq, pin_current_thread, HostedPlatform, Machine};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::workload::progress_bar;

/// What the vmalloc phase left mapped (so `/proc/vmallocinfo` and the page-frame map show
/// it) and saw.
pub struct VmallocHeld<'m> {
    areas: Vec<usize>,
    stacks: Vec<KernelStack<'m, HostedPlatform>>,
    /// vmalloc-family calls made.
    pub calls: u64,
    /// Calls that failed (counted; the machine may be small).
    pub failures: u64,
}

impl VmallocHeld<'_> {
    /// Frees what the phase kept.
    pub fn release(self, m: &Machine) {
        for a in self.areas {
            // SAFETY: the phase allocated these areas and handed them to us.
            unsafe { m.vfree(a as *const u8) };
        }
        drop(self.stacks);
    }
}

/// The vmalloc phase: on every CPU, vmalloc/vzalloc/vfree of mixed sizes (one page to 4 MiB,
/// log-uniform, less on a small machine), `GFP_ATOMIC` vmallocs from interrupt context, and kernel stacks; each area
/// is written at both ends. A few areas and stacks per CPU stay mapped until the end.
pub fn vmalloc_phase(m: &Machine, seed: u64) -> VmallocHeld<'_> {
    let cpus = m.nr_cpus();
    // Sized to the machine: each CPU's share of the managed memory bounds its areas (an eighth
    // of it, at most 4 MiB) and what it keeps mapped (a twentieth), so that `vzalloc` (which
    // warns on failure) finds memory on a small machine after the workload.
    let share = m.zones().map(|z| z.managed_pages()).sum::<usize>() * kmem::PAGE_SIZE / cpus;
    let max_size = (share / 8).clamp(kmem::PAGE_SIZE, 4 << 20);
    let keep_max = share / 20;
    let results: Vec<VmallocHeld<'_>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cpus)
            .map(|cpu| {
                s.spawn(move || {
                    pin_current_thread(cpu as u32);
                    let mut rng = SmallRng::seed_from_u64(seed ^ (cpu as u64) << 32);
                    let mut h = VmallocHeld { areas: Vec::new(), stacks: Vec::new(), calls: 0, failures: 0 };
                    let mut kept = 0;
                    for i in 0..200u32 {
                        let size = 1usize << rng.gen_range(12..=21);
                        let size = (size + rng.gen_range(0..size)).min(max_size);
                        let r = match i % 10 {
                            0 => in_irq(|| m.__vmalloc(size.min(64 << 10), Gfp::ATOMIC | Gfp::NOWARN)),
                            1 | 2 => m.vzalloc(size),
                            _ => m.__vmalloc(size, Gfp::KERNEL | Gfp::NOWARN),
                        };
                        h.calls += 1;
                        let Ok(p) = r else {
                            h.failures += 1;
                            continue;
                        };
                        let len = if i % 10 == 0 { size.min(64 << 10) } else { size };
                        // SAFETY: `len` fresh bytes of the area, ours.
                        unsafe {
                            p.as_ptr().write(i as u8);
                            p.as_ptr().add(len - 1).write(i as u8);
                        }
                        if h.areas.len() < 6 && rng.gen_bool(0.05) && kept + len <= keep_max {
                            kept += len;
                            h.areas.push(p.as_ptr() as usize);
                        } else {
                            // SAFETY: ours, no longer used.
                            unsafe { m.vfree(p.as_ptr()) };
                        }
                        if i % 40 == 0 {
                            h.calls += 1;
                            match m.alloc_thread_stack(None) {
                                Ok(st) if h.stacks.len() < 2 => h.stacks.push(st),
                                Ok(_) => {}
                                Err(_) => h.failures += 1,
                            }
                        }
                    }
                    h
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("vmalloc phase thread")).collect()
    });
    let mut held = VmallocHeld { areas: Vec::new(), stacks: Vec::new(), calls: 0, failures: 0 };
    for h in results {
        held.areas.extend(h.areas);
        held.stacks.extend(h.stacks);
        held.calls += h.calls;
        held.failures += h.failures;
    }
    held
}

/// What the memory-pressure phase saw.
#[derive(Debug, Default)]
pub struct Pressure {
    /// Pages held at the peak.
    pub pages: u64,
    /// Requests that succeeded.
    pub allocs: u64,
    /// `__GFP_NORETRY | __GFP_NOWARN` requests that failed (counted, not reported).
    pub failures: u64,
    /// `GFP_ATOMIC` order-0 requests from interrupt context at the peak: served from the
    /// reserves below the min watermark.
    pub atomic_ok: u64,
    /// ... and those that failed even so.
    pub atomic_failed: u64,
    /// Per populated zone at the peak: (node, name, free pages, min, low watermark).
    pub zones: Vec<(usize, &'static str, usize, usize, usize)>,
    /// Reports made during the phase (should be 0: NOWARN).
    pub reports: u64,
}

/// Consecutive order-0 failures after which a CPU stops.
const GIVE_UP: u32 = 8;

/// Memory pressure: every CPU allocates blocks of order 3, then smaller ones as requests
/// fail, with `GFP_KERNEL` and `GFP_HIGHUSER_MOVABLE` (so HighMem fills too) plus
/// `__GFP_NORETRY | __GFP_NOWARN`, until order-0 requests fail: the zones are at their
/// watermarks (less the lowmem reserves). Then, at the peak, each CPU makes a few
/// `GFP_ATOMIC` requests from interrupt context, which may dip below the min watermark.
/// Everything is freed before returning. Failures are counted, never fatal.
pub fn memory_pressure(m: &Machine, bar: bool) -> Pressure {
    let reports_before = total_reports(m);
    let (allocs, failures, pages) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let (atomic_ok, atomic_failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    let cpus = m.nr_cpus();
    let mut out = Pressure::default();
    let barrier = std::sync::Barrier::new(cpus + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cpus)
            .map(|cpu| {
                let (allocs, failures, pages, barrier) = (&allocs, &failures, &pages, &barrier);
                let (atomic_ok, atomic_failed) = (&atomic_ok, &atomic_failed);
                s.spawn(move || {
                    pin_current_thread(cpu as u32);
                    let mut held: Vec<(PageRef<'_>, u32)> = Vec::new();
                    // Two lanes, each with its own order and give-up count: GFP_KERNEL
                    // (lowmem only) and GFP_HIGHUSER_MOVABLE (HighMem first).
                    let mut lanes = [(Gfp::KERNEL, 3u32, 0u32), (Gfp::HIGHUSER_MOVABLE, 3, 0)];
                    while lanes.iter().any(|l| l.2 < GIVE_UP) {
                        for (gfp, order, misses) in lanes.iter_mut().filter(|l| l.2 < GIVE_UP) {
                            match m.alloc_pages(*gfp | Gfp::NORETRY | Gfp::NOWARN, Order::of(*order)) {
                                Ok(p) => {
                                    held.push((p, *order));
                                    allocs.fetch_add(1, Ordering::Relaxed);
                                    pages.fetch_add(1 << *order, Ordering::Relaxed);
                                    *misses = 0;
                                }
                                Err(_) => {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                    if *order == 0 {
                                        *misses += 1;
                                    } else {
                                        *order -= 1;
                                    }
                                }
                            }
                        }
                    }
                    // The peak: every CPU is here, nobody frees yet.
                    barrier.wait();
                    for _ in 0..4 {
                        match in_irq(|| m.alloc_pages(Gfp::ATOMIC | Gfp::NOWARN, Order::ZERO)) {
                            Ok(p) => {
                                held.push((p, 0));
                                atomic_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                atomic_failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    barrier.wait();
                    // The main thread has read the zones: release.
                    barrier.wait();
                    for (p, o) in held {
                        // SAFETY: allocated above by this thread, unused.
                        unsafe { m.__free_pages(p, Order::of(o)) };
                    }
                })
            })
            .collect();
        let pb = bar.then(|| progress_bar(m.totalram_pages() as u64, "pressure"));
        let ticker = pb.as_ref().map(|pb| {
            let (pb, pages, done) = (pb.clone(), &pages, &done);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) && !pb.is_hidden() {
                    let p = pages.load(Ordering::Relaxed);
                    pb.set_position(p);
                    pb.set_message(format!("{:.0} MiB held", p as f64 / 256.0));
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        });
        barrier.wait();
        barrier.wait();
        out.zones = m
            .zones()
            .filter(|z| z.is_populated())
            .map(|z| {
                (
                    z.node(),
                    z.name(),
                    z.free_pages(),
                    z.wmark(kmem::mm::zone::Wmark::Min),
                    z.wmark(kmem::mm::zone::Wmark::Low),
                )
            })
            .collect();
        out.pages = pages.load(Ordering::Relaxed) + atomic_ok.load(Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        barrier.wait();
        if let Some(t) = ticker {
            let _ = t.join();
        }
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        for h in handles {
            h.join().expect("pressure worker panicked");
        }
    });
    out.allocs = allocs.into_inner();
    out.failures = failures.into_inner();
    out.atomic_ok = atomic_ok.into_inner();
    out.atomic_failed = atomic_failed.into_inner();
    out.reports = total_reports(m) - reports_before;
    out
}

fn total_reports(m: &Machine) -> u64 {
    [ReportKind::BadPage, ReportKind::PageAllocFailure, ReportKind::Warning, ReportKind::SlabBug]
        .iter()
        .map(|&k| m.report_count(k))
        .sum()
}
