//! `kmem demo --pressure`: reclaim at work. A machine with kswapd and a shrinker over a fake
//! cache (its objects are pages of the machine); bursts of `GFP_KERNEL` allocations into the
//! cache push the zones below their watermarks; kswapd and direct reclaim take pages back
//! from the cache. Free memory is sampled every `step` allocations (a count, not a clock) and
//! drawn as a text plot with the watermarks, with the shrinker calls and kswapd wake-ups,
//! and as a PNG plot of the same samples (`--plot`, default `kmem-pressure.png`:
//! [`crate::pressure_png`]).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kmem::mm::zone::Wmark;
use kmem::reclaim::{ShrinkControl, ShrinkerFlags, ShrinkerOps};
use kmem::{Gfp, VirtAddr};
use kmem_hosted::Machine;

use crate::opts::MachineOpts;

/// The fake cache: pages of the machine the shrinker gives back.
struct FakeCache {
    machine: AtomicUsize,
    pages: Mutex<Vec<usize>>,
    scans: AtomicUsize,
}

impl FakeCache {
    fn m(&self) -> &Machine {
        // SAFETY: the demo unregisters the shrinker (drops its handle, which borrows the
        // machine) before the machine goes, and reclaim only calls registered shrinkers.
        unsafe { &*(self.machine.load(Ordering::Relaxed) as *const Machine) }
    }
    /// Frees up to `n` pages of the cache; returns how many.
    fn release(&self, n: usize) -> usize {
        for i in 0..n {
            let Some(a) = self.pages.lock().unwrap_or_else(|e| e.into_inner()).pop() else { return i };
            // SAFETY: the cache owned the page.
            unsafe { self.m().free_page(VirtAddr::new(a)) };
        }
        n
    }
}

impl ShrinkerOps for FakeCache {
    fn count_objects(&self, _: &ShrinkControl) -> usize {
        self.pages.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn scan_objects(&self, sc: &mut ShrinkControl) -> usize {
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.release(sc.nr_to_scan)
    }
}

/// One sample of the plot.
struct Sample {
    free: usize,
    scans: usize,
    wakes: u64,
}

/// `kmem demo --pressure`.
pub fn pressure_demo(opts: &MachineOpts, png: &Path) -> Result<(), String> {
    // Created now, so that an unwritable path fails before the run.
    let png_file = std::fs::File::create(png).map_err(|e| format!("cannot write {}: {e}", png.display()))?;
    let m = opts.builder().kswapd(true).build().map_err(|e| e.to_string())?;
    let cache: &'static FakeCache = Box::leak(Box::new(FakeCache {
        machine: AtomicUsize::new(&m as *const Machine as usize),
        pages: Mutex::new(Vec::new()),
        scans: AtomicUsize::new(0),
    }));
    let shrinker = m.shrinker_alloc(ShrinkerFlags::NEEDS_FS, "demo_cache").map_err(|e| e.to_string())?;
    shrinker.register(cache);
    let total = m.totalram_pages();
    let (min, low, high) = m
        .zones()
        .filter(|z| z.is_managed())
        .fold((0, 0, 0), |(a, b, c), z| (a + z.wmark(Wmark::Min), b + z.wmark(Wmark::Low), c + z.wmark(Wmark::High)));
    println!("== memory pressure: {} MiB, watermarks (all zones) min {min} low {low} high {high} pages", total >> 8);
    println!("  bursts of GFP_KERNEL pages into a cache with a shrinker; kswapd and direct reclaim take them back");
    // About 100 columns: 4 bursts of 1.5x the RAM, a sample every 1/16 of it.
    let step = (total / 16).max(1);
    let mut samples = Vec::new();
    let free = |m: &Machine| m.zones().map(|z| z.free_pages()).sum::<usize>();
    // Four bursts of 1.5x the RAM each, with a partial release between them.
    for burst in 0..4 {
        for i in 0..total * 3 / 2 {
            match m.__get_free_page(Gfp::KERNEL | Gfp::NOWARN) {
                Ok(a) => cache.pages.lock().unwrap_or_else(|e| e.into_inner()).push(a.as_usize()),
                Err(_) => break,
            }
            if i % step == 0 {
                samples.push(Sample {
                    free: free(&m),
                    scans: cache.scans.load(Ordering::Relaxed),
                    wakes: m.events().kswapd_wake.load(Ordering::Relaxed),
                });
            }
        }
        m.wait_kswapd_idle();
        samples.push(Sample {
            free: free(&m),
            scans: cache.scans.load(Ordering::Relaxed),
            wakes: m.events().kswapd_wake.load(Ordering::Relaxed),
        });
        if burst < 3 {
            let n = cache.pages.lock().unwrap_or_else(|e| e.into_inner()).len() / 2;
            cache.release(n);
        }
    }
    plot(&samples, min, low, high);
    let points: Vec<crate::pressure_png::Point> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let prev = if i > 0 { &samples[i - 1] } else { s };
            crate::pressure_png::Point { free: s.free, shrinker: s.scans > prev.scans, kswapd: s.wakes > prev.wakes }
        })
        .collect();
    let title = format!("kmem demo --pressure: {} MiB, {} CPUs, kswapd on", total >> 8, m.nr_cpus());
    crate::pressure_png::write(std::io::BufWriter::new(png_file), &points, (min, low, high), &title)?;
    println!("  PNG plot of the same samples: {}", png.display());
    let r = m.reclaim_events();
    println!(
        "  shrinker calls {}, scans {}; kswapd wake-ups {}, balancing passes {}, pages kswapd got back {}; direct reclaims {}, pages they got back {}; OOM {}",
        r.shrinker_calls,
        cache.scans.load(Ordering::Relaxed),
        m.events().kswapd_wake.load(Ordering::Relaxed),
        r.pageoutrun,
        r.pgsteal_kswapd,
        r.allocstall_total(),
        r.pgsteal_direct,
        r.oom
    );
    let left = cache.pages.lock().unwrap_or_else(|e| e.into_inner()).len();
    cache.release(left);
    drop(shrinker);
    Ok(())
}

/// Free pages per sample as a text plot, 16 rows from 0 to the highest sample or `high`
/// (whichever is more), the watermarks marked on the axis.
fn plot(samples: &[Sample], min: usize, low: usize, high: usize) {
    const ROWS: usize = 16;
    let top = samples.iter().map(|s| s.free).max().unwrap_or(0).max(high * 2).max(1);
    let row_of = |v: usize| (v * (ROWS - 1)).div_ceil(top).min(ROWS - 1);
    println!("  free pages over the run (one column per sample, x: allocations):");
    for r in (0..ROWS).rev() {
        let label = if r == row_of(high) {
            "high"
        } else if r == row_of(low) {
            "low "
        } else if r == row_of(min) {
            "min "
        } else {
            "    "
        };
        let line: String = samples
            .iter()
            .map(|s| {
                if row_of(s.free) == r {
                    '*'
                } else if row_of(s.free) > r {
                    '|'
                } else {
                    ' '
                }
            })
            .collect();
        println!("  {label} {:>7} |{line}", r * top / (ROWS - 1));
    }
    let marks: String = samples
        .windows(2)
        .map(|w| match (w[1].scans > w[0].scans, w[1].wakes > w[0].wakes) {
            (true, true) => 'B',
            (true, false) => 's',
            (false, true) => 'k',
            (false, false) => ' ',
        })
        .collect();
    println!("  reclaim       | {marks}");
    println!("  (s: the shrinker was called, k: kswapd woken, B: both, during the interval)");
}
