//! The demo's later phases: memory pressure (allocate until the watermarks stop requests,
//! count the failures, release), and the vmalloc phase the vmalloc layer fills in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kmem::{Gfp, PageRef, ReportKind};
use kmem_hosted::{in_irq, pin_current_thread, Machine};

use crate::workload::progress_bar;

/// The vmalloc phase: virtually contiguous allocations of mixed sizes on every CPU.
///
/// Does nothing yet: kmem has no vmalloc. The machine and the seed are what it will need.
pub fn vmalloc_phase(_m: &Machine, _seed: u64) {
    // TODO(vmalloc): vmalloc/vzalloc/vfree of mixed sizes (a few pages to a few MiB) on every
    // CPU, keeping some mapped so that /proc/vmallocinfo and the page-frame map (VMALLOC
    // frames) show them; filled in when the vmalloc layer is merged.
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
                            match m.alloc_pages(*gfp | Gfp::NORETRY | Gfp::NOWARN, *order) {
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
                        match in_irq(|| m.alloc_pages(Gfp::ATOMIC | Gfp::NOWARN, 0)) {
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
                        unsafe { m.__free_pages(p, o) };
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
