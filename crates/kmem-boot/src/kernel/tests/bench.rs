//! Fast-path pairs timed with `rdtsc` in the guest. Under TCG these are emulated cycles,
//! not a real CPU's (BENCHMARKS.md): an indication only.

use core::sync::atomic::Ordering;

use kmem::{Gfp, Kmem, Order};

use super::TestResult;
use crate::kernel::apic::TSC_PER_US;
use crate::kernel::arch::rdtsc;
use crate::kernel::platform::BootPlatform;

const PAIRS: u64 = 4000;

/// Times `PAIRS` pairs in batches of `BATCH` and keeps the fastest batch, so that a timer
/// tick inside a batch does not count (interrupts stay on: `GFP_KERNEL` may not run with
/// them off).
fn time(name: &str, mut pair: impl FnMut() -> TestResult) -> TestResult {
    const BATCH: u64 = 100;
    for _ in 0..64 {
        pair()?;
    }
    let mut best = u64::MAX;
    for _ in 0..PAIRS / BATCH {
        let t0 = rdtsc();
        for _ in 0..BATCH {
            pair()?;
        }
        best = best.min(rdtsc() - t0);
    }
    let per_us = TSC_PER_US.load(Ordering::Relaxed).max(1);
    kprintln!("    {name:<28} {:>6} TSC ticks/pair ({} ns/pair, TCG)", best / BATCH, best * 1000 / per_us / BATCH);
    Ok(())
}

/// kmalloc(64)/kfree, alloc_pages(0)/__free_pages, kmem_cache_alloc/free pairs.
pub fn fast_paths(m: &'static Kmem<BootPlatform>) -> TestResult {
    time("kmalloc(64)+kfree", || {
        let p = m.kmalloc(64, Gfp::KERNEL).map_err(|_| "kmalloc failed")?;
        // SAFETY: from kmalloc, freed once.
        unsafe { m.kfree(p.as_ptr()) };
        Ok(())
    })?;
    time("alloc_pages(0)+__free_pages", || {
        let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).map_err(|_| "alloc_pages failed")?;
        // SAFETY: ours, order 0.
        unsafe { m.__free_pages(page, Order::ZERO) };
        Ok(())
    })?;
    let cache = m.kmem_cache_create("boot_bench", 128, 8, kmem::SlabFlags::NONE, None).map_err(|_| "kmem_cache_create failed")?;
    time("kmem_cache_alloc+free(128)", || {
        let p = m.kmem_cache_alloc(&cache, Gfp::KERNEL).map_err(|_| "kmem_cache_alloc failed")?;
        // SAFETY: from this cache, freed once.
        unsafe { m.kmem_cache_free(&cache, p) };
        Ok(())
    })
}
