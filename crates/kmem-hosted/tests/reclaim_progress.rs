//! Direct reclaim must not crawl (issue 16). On a 16 MiB machine with a slab cache holding
//! 256 empty objects, `kmalloc(512)` until the first failure used to never finish: the
//! kmalloc-512 allocation that needed a new slab ran direct reclaim, whose slab sweep flushed
//! every CPU's sheaves (the allocating CPU's empty main sheaf among them); the new slab then
//! went onto the partial list empty, the next sheaf allocation's reclaim freed it again (one
//! slab page: "progress"), and round it went, inside one `kmalloc`. No timing: a shrinker
//! counts the reclaim passes (`shrink_slab` asks every registered shrinker once a pass) and
//! stops a crawling run by panicking, and the checks count reclaim events.

use std::sync::atomic::{AtomicUsize, Ordering};

use kmem::reclaim::{ShrinkControl, ShrinkerFlags, ShrinkerOps};
use kmem::slab::SlubStat;
use kmem::{Gfp, SlabFlags};
use kmem_hosted::MachineBuilder;

/// Reclaim passes over the whole test beyond which the run counts as crawling.
const MAX_PASSES: usize = 2_000;

/// A shrinker with nothing to free that counts the reclaim passes.
struct PassCounter(AtomicUsize);

impl ShrinkerOps for PassCounter {
    fn count_objects(&self, _: &ShrinkControl) -> usize {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(n <= MAX_PASSES, "direct reclaim crawls: {n} reclaim passes");
        0
    }
    fn scan_objects(&self, _: &mut ShrinkControl) -> usize {
        0
    }
}

#[test]
fn kmalloc_until_failure_does_not_crawl() {
    let m = MachineBuilder::new().ram_mib(16).cpus(2).quiet_reports().build().unwrap();
    let passes: &'static PassCounter = Box::leak(Box::new(PassCounter(AtomicUsize::new(0))));
    let shrinker = m.shrinker_alloc(ShrinkerFlags::NONE, "pass_counter").unwrap();
    shrinker.register(passes);
    // A cache holding 256 empty objects: allocated, then freed (into this CPU's sheaves).
    let c = m.kmem_cache_create("crawl_test", 256, 0, SlabFlags::empty(), None).unwrap();
    let objs: Vec<_> = (0..256).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for o in objs {
        // SAFETY: allocated above from this cache.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    // 16 MiB hold at most 32768 objects of 512 bytes.
    const LIMIT: usize = 32_768;
    let before = m.reclaim_events();
    let mut got = Vec::new();
    let mut last = (0, 0);
    let failed = loop {
        if got.len() == LIMIT {
            break false;
        }
        last = (m.allocstall(), passes.0.load(Ordering::Relaxed));
        match m.kmalloc(512, Gfp::KERNEL | Gfp::NOWARN) {
            Ok(p) => got.push(p),
            Err(_) => break true,
        }
    };
    let after = m.reclaim_events();
    let stalls = after.allocstall_total() - before.allocstall_total();
    let total_passes = passes.0.load(Ordering::Relaxed);
    eprintln!(
        "allocations {} stalls {stalls} passes {total_passes} sweeps {} cpu flushes {} slab pages {} \
         pgsteal_direct {}; the failing one: stalls {} passes {}",
        got.len(),
        after.slab_sweeps - before.slab_sweeps,
        after.slab_cpu_flushes - before.slab_cpu_flushes,
        after.slab_pages_reclaimed - before.slab_pages_reclaimed,
        after.pgsteal_direct - before.pgsteal_direct,
        m.allocstall() - last.0,
        total_passes - last.1,
    );
    assert!(failed, "no failure within {LIMIT} allocations");
    assert!(got.len() > LIMIT / 2, "failed early, after {} allocations", got.len());
    // Every direct reclaim is at most DEF_PRIORITY + 1 passes.
    assert!(total_passes as u64 <= stalls * 13, "{total_passes} passes for {stalls} direct reclaims");
    // Direct reclaim ran a few times near the end, not once an allocation.
    assert!(stalls <= 64, "{stalls} direct reclaims");
    // The CPUs' sheaves were flushed at most once a direct reclaim (the lowest-priority
    // pass, once per slow-path entry), the caches swept at most twice (first pass, last).
    let (sweeps, flushes) = (after.slab_sweeps - before.slab_sweeps, after.slab_cpu_flushes - before.slab_cpu_flushes);
    assert!(flushes <= stalls, "{flushes} CPU sheaf flushes for {stalls} direct reclaims");
    assert!(sweeps <= 2 * stalls, "{sweeps} slab sweeps for {stalls} direct reclaims");
    // The failing allocation gave up after at most MAX_RECLAIM_RETRIES + 1 direct reclaims.
    assert!(m.allocstall() - last.0 <= 17);
    for p in got {
        // SAFETY: allocated above by kmalloc.
        unsafe { m.kfree(p.as_ptr()) };
    }
    m.kmem_cache_destroy(c);
    drop(shrinker);
}

#[test]
fn reclaim_empties_the_barns_before_flushing_any_cpu() {
    let m = MachineBuilder::new().ram_mib(16).cpus(2).quiet_reports().build().unwrap();
    // 4000 objects freed: this CPU's sheaves full, the node's barn full of full sheaves, the
    // rest back in (freed) slabs.
    let c = m.kmem_cache_create("barn_test", 512, 0, SlabFlags::empty(), None).unwrap();
    let objs: Vec<_> = (0..4000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for o in objs {
        // SAFETY: allocated above from this cache.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    let before = m.reclaim_events();
    let cpu_flushes = c.stat(&m, SlubStat::CpuslabFlush);
    // Pages until the first direct reclaim has run.
    let mut pages = Vec::new();
    while m.allocstall() == before.allocstall_total() {
        pages.push(m.__get_free_page(Gfp::KERNEL | Gfp::NOWARN).expect("failed before reclaiming"));
    }
    let after = m.reclaim_events();
    eprintln!(
        "pages {} sweeps {} cpu flushes {} slab pages {} pgsteal_direct {}",
        pages.len(),
        after.slab_sweeps - before.slab_sweeps,
        after.slab_cpu_flushes - before.slab_cpu_flushes,
        after.slab_pages_reclaimed - before.slab_pages_reclaimed,
        after.pgsteal_direct - before.pgsteal_direct
    );
    // The first pass's sweep emptied the barn: a reclaim's worth of pages, no CPU flushed.
    assert!(after.slab_pages_reclaimed - before.slab_pages_reclaimed >= 32);
    assert!(after.pgsteal_direct - before.pgsteal_direct >= 32);
    assert_eq!(after.slab_sweeps - before.slab_sweeps, 1);
    assert_eq!(after.slab_cpu_flushes, before.slab_cpu_flushes);
    assert_eq!(c.stat(&m, SlubStat::CpuslabFlush), cpu_flushes, "a CPU's sheaves were flushed");
    for p in pages {
        // SAFETY: allocated above.
        unsafe { m.free_page(p) };
    }
    m.kmem_cache_destroy(c);
}
