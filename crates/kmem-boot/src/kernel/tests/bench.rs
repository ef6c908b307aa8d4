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
    // `scripts/boot.sh` puts these lines beside the hosted instruction counts
    // (crates/kmem-bench/baselines/instructions.tsv, same pair names).
    kprintln!("    pair {name:<12} {:>6} TSC ticks ({} ns, TCG)", best / BATCH, best * 1000 / per_us / BATCH);
    Ok(())
}

/// The pairs of `scripts/cost_check.sh`: `page_order0` (alloc_pages(0) + __free_pages),
/// `slab64` (kmem_cache_alloc + free, 64 B), `kmalloc64`, `vmalloc1` (vmalloc(4096) + vfree),
/// and with HighMem `kmap_local1` (kmap_local_page + kunmap_local) and `kmap1` (kmap + kunmap
/// of a page kmapped once already).
pub fn fast_paths(m: &'static Kmem<BootPlatform>) -> TestResult {
    time("kmalloc64", || {
        let p = m.kmalloc(64, Gfp::KERNEL).map_err(|_| "kmalloc failed")?;
        // SAFETY: from kmalloc, freed once.
        unsafe { m.kfree(p.as_ptr()) };
        Ok(())
    })?;
    time("page_order0", || {
        let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).map_err(|_| "alloc_pages failed")?;
        // SAFETY: ours, order 0.
        unsafe { m.__free_pages(page, Order::ZERO) };
        Ok(())
    })?;
    let cache = m
        .kmem_cache_create("boot_bench", 64, 8, kmem::SlabFlags::NONE, None)
        .map_err(|_| "kmem_cache_create failed")?;
    time("slab64", || {
        let p = m.kmem_cache_alloc(&cache, Gfp::KERNEL).map_err(|_| "kmem_cache_alloc failed")?;
        // SAFETY: from this cache, freed once.
        unsafe { m.kmem_cache_free(&cache, p) };
        Ok(())
    })?;
    time("vmalloc1", || {
        let v = m.vmalloc(kmem::PAGE_SIZE).map_err(|_| "vmalloc failed")?;
        // SAFETY: from vmalloc, freed once.
        unsafe { m.vfree(v.as_ptr()) };
        Ok(())
    })?;
    if !m.zones().any(|z| z.zone_type() == kmem::ZoneType::HighMem && z.managed_pages() > 0) {
        return Ok(());
    }
    let page = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).map_err(|_| "GFP_HIGHUSER allocation failed")?;
    let r = time("kmap_local1", || {
        let va = m.kmap_local_page(page).map_err(|_| "kmap_local_page failed")?;
        m.kunmap_local(va);
        Ok(())
    });
    // As cost_check's kmap1: the page stays kmapped once, so the pair takes a reference.
    let r = r.and_then(|()| {
        m.kmap(page).map_err(|_| "kmap failed")?;
        let r = time("kmap1", || {
            m.kmap(page).map_err(|_| "kmap failed")?;
            m.kunmap(page);
            Ok(())
        });
        m.kunmap(page);
        r
    });
    // SAFETY: ours, order 0, unmapped.
    unsafe { m.__free_pages(page, Order::ZERO) };
    r
}
