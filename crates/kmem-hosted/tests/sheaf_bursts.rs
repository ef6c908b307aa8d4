//! Bursts of frees stay off the node lists (issue 13, multi-threaded part).
//!
//! threadtest's pattern: each thread allocates 1000 blocks of 8-1000 bytes, then frees them
//! all, again and again. Each thread holds more objects of a kmalloc bucket than its CPU's
//! two sheaves, so the frees must trade whole sheaves at the node's barn, and the next
//! round's allocations take them back from there. What must not happen in the steady state:
//! objects flushed from sheaves to their slabs (`sheaf_flush`) and sheaves refilled from the
//! slabs (`sheaf_refill`), both under the node's `list_lock`, which every thread shares.
//!
//! The counters are Linux's `CONFIG_SLUB_STATS` items (`SlubStat`), summed over the kmalloc
//! buckets. `KMEM_BURST_PRINT=1` prints them per round (the figures of the report).

use std::ptr::NonNull;

use kmem::slab::SlubStat;
use kmem::{Gfp, Kmem};
use kmem_hosted::{HostedPlatform, MachineBuilder};

const BLOCKS: usize = 1000;
const SIZES: [usize; 10] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1000];
const STATS: [SlubStat; 5] =
    [SlubStat::SheafFlush, SlubStat::SheafRefill, SlubStat::AllocSlab, SlubStat::BarnPutFail, SlubStat::SheafAlloc];

/// The stats of `STATS`, summed over the kmalloc buckets of `SIZES`.
fn stats(m: &Kmem<HostedPlatform>) -> [u64; STATS.len()] {
    let mut caches: Vec<*const kmem::slab::KmemCache> = Vec::new();
    for &sz in &SIZES {
        let c = m.kmalloc_slab(sz, Gfp::KERNEL).expect("a kmalloc bucket");
        if !caches.contains(&(c as *const _)) {
            caches.push(c);
        }
    }
    let mut out = [0; STATS.len()];
    for c in caches {
        // SAFETY: kmalloc caches live as long as the machine.
        let c = unsafe { &*c };
        for (o, &s) in out.iter_mut().zip(&STATS) {
            *o += c.stat(m, s);
        }
    }
    out
}

/// A small xorshift: block sizes from 8 to 1000 bytes, as the benchmark's.
fn sizes(seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..BLOCKS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            8 + (x % 993) as usize
        })
        .collect()
}

/// One thread's rounds of threadtest on its own CPU.
fn rounds(m: &Kmem<HostedPlatform>, seed: u64, n: usize) {
    let sizes = sizes(seed);
    let mut blocks: Vec<NonNull<u8>> = Vec::with_capacity(BLOCKS);
    for _ in 0..n {
        blocks.extend(sizes.iter().map(|&sz| m.kmalloc(sz, Gfp::KERNEL).unwrap()));
        for b in blocks.drain(..) {
            // SAFETY: allocated just above, freed once.
            unsafe { m.kfree(b.as_ptr()) };
        }
    }
}

fn delta(a: [u64; STATS.len()], b: [u64; STATS.len()]) -> [u64; STATS.len()] {
    core::array::from_fn(|i| b[i] - a[i])
}

fn print(label: &str, d: [u64; STATS.len()]) {
    if std::env::var_os("KMEM_BURST_PRINT").is_some() {
        let names = ["sheaf_flush", "sheaf_refill", "alloc_slab", "barn_put_fail", "sheaf_alloc"];
        let cells: Vec<String> = names.iter().zip(d).map(|(n, v)| format!("{n} {v}")).collect();
        eprintln!("{label}: {}", cells.join(", "));
    }
}

/// One thread: after a warm-up round, its bursts of 1000 frees go to the barn in whole
/// sheaves and come back from it; nothing is flushed to or refilled from the slabs.
#[test]
fn one_threads_bursts_cycle_through_the_barn() {
    let m = MachineBuilder::new().ram_mib(128).thread_cpus(4).build().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            rounds(&m, 1, 2);
            let before = stats(&m);
            rounds(&m, 1, 10);
            let d = delta(before, stats(&m));
            print("1 thread, 10 rounds", d);
            assert_eq!(d[0], 0, "no sheaf flushed to the slabs (sheaf_flush)");
            assert_eq!(d[1], 0, "no sheaf refilled from the slabs (sheaf_refill)");
            assert_eq!(d[2], 0, "no new slab (alloc_slab)");
        })
        .join()
        .unwrap();
    });
    m.verify().unwrap();
}

/// `threads` threads at once, each `n` rounds, after a warm-up run; the stats' change.
fn parallel(threads: u64, n: usize) -> [u64; STATS.len()] {
    let m = MachineBuilder::new().ram_mib(256).thread_cpus(16).build().unwrap();
    // Joined one by one: a scope's end does not wait for the threads' exits (their CPUs'
    // teardown), a join does.
    let run = |n| {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let m = &m;
                    s.spawn(move || rounds(m, 7 + t, n))
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        })
    };
    run(2);
    let before = stats(&m);
    run(n);
    let d = delta(before, stats(&m));
    print(&format!("{threads} threads, {n} rounds each"), d);
    m.verify().unwrap();
    d
}

/// Two, four and eight threads at once (threadtest x2, x4, x8): the barn holds the threads'
/// bursts. Threads exit between the warm-up and the measured run: their CPUs go offline, and
/// each new thread's CPU starts with no sheaves.
#[test]
fn parallel_bursts_stay_off_the_node_lists() {
    for threads in [2, 4, 8] {
        let d = parallel(threads, 10);
        let ops = threads * 10 * BLOCKS as u64;
        // The barn holds eight threads' bursts: nothing is flushed. A thread that starts
        // allocating while the others still hold their blocks may find the barn empty.
        assert_eq!(d[0], 0, "{threads} threads: no sheaf flushed to the slabs: {d:?}");
        assert!(d[1] <= ops / 2000, "{threads} threads: at most one refill per 2000 operations: {d:?}");
    }
}

/// A thread's burst waits in the barn after its exit (its CPU parked its sheaves there), and
/// goes back to the slabs on shrink, every object (sheaves of 128 objects are flushed in
/// several list-lock sections), after which every slab goes back to the page allocator.
#[test]
fn shrink_after_a_burst_gives_every_slab_back() {
    let m = MachineBuilder::new().ram_mib(128).thread_cpus(4).build().unwrap();
    let c = m.kmem_cache_create("burst_64", 64, 0, kmem::SlabFlags::NO_MERGE, None).unwrap();
    std::thread::scope(|s| {
        // Joined: the thread's exit (its CPU's teardown) is over before the checks.
        s.spawn(|| {
            let objs: Vec<NonNull<u8>> = (0..3000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
            for o in objs {
                // SAFETY: allocated above from `c`, freed once.
                unsafe { m.kmem_cache_free(&c, o) };
            }
        })
        .join()
        .unwrap();
    });
    // Every object of the cache is free, and every one waits in a sheaf, none on a slab's
    // freelist: the thread's exit parked its sheaves in the barn instead of flushing them.
    let total: usize = c.nodes().map(|(_, n)| n.total_objects()).sum();
    assert!(total >= 3000);
    assert_eq!(c.sheaf_objects(&m), total, "the thread's exit parked its sheaves in the barn");
    assert_eq!(m.kmem_cache_shrink(&c), 0, "no slab left after the shrink");
    assert_eq!(c.sheaf_objects(&m), 0);
    m.verify().unwrap();
}

/// `MachineBuilder::slab_sheaf_bytes` (`SlabBootConfig::sheaf_bytes`) sizes every cache's
/// sheaves: 16 KiB of objects by default (32 for 1 KiB objects), 128 objects for every class
/// up to 1 KiB with the process allocators' 128 KiB; and a burst of 1000 frees of 1 KiB
/// blocks then trades at most 1000 / 128 + 1 sheaves at the barn instead of 1000 / 32.
#[test]
fn sheaf_bytes_sizes_every_cache_s_sheaves() {
    let default = MachineBuilder::new().ram_mib(64).build().unwrap();
    let big = MachineBuilder::new().ram_mib(64).slab_sheaf_bytes(128 << 10).build().unwrap();
    for (m, want_1k, want_64) in [(&default, 32, 128), (&big, 128, 128)] {
        assert_eq!(m.kmalloc_slab(1024, Gfp::KERNEL).unwrap().sheaf_capacity(), want_1k);
        assert_eq!(m.kmalloc_slab(64, Gfp::KERNEL).unwrap().sheaf_capacity(), want_64);
    }
    assert_eq!(big.kmalloc_slab(4096, Gfp::KERNEL).unwrap().sheaf_capacity(), 32, "128 KiB of 4 KiB objects");
    let mut puts = Vec::new();
    for m in [&default, &big] {
        let c = m.kmalloc_slab(1024, Gfp::KERNEL).unwrap();
        let before = c.stat(m, SlubStat::BarnPut);
        let ps: Vec<NonNull<u8>> = (0..BLOCKS).map(|_| m.kmalloc(1024, Gfp::KERNEL).unwrap()).collect();
        for p in ps {
            // SAFETY: ours, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
        puts.push(c.stat(m, SlubStat::BarnPut) - before);
    }
    assert!(puts[1] <= (BLOCKS / 128 + 1) as u64 && puts[0] >= (BLOCKS / 32 - 2) as u64, "barn puts {puts:?}");
}

/// `MachineBuilder::slab_sheaf_max` (`SlabBootConfig::sheaf_max`): a machine's sheaves hold
/// up to that many objects (every `kmem_sheaf` object has that many slots), the small
/// classes get it, the large ones keep what `sheaf_bytes` gives; and with the process
/// allocator's shape (256, a stash of four) a burst of 1000 allocations then 1000 frees of
/// 64 bytes, once warm, stays on the CPU: no trade at the barn, where 128-object sheaves
/// (768 objects on the CPU) trade every round. Every object comes back exactly once.
#[test]
fn sheaf_max_sizes_the_small_classes_sheaves() {
    let build = |max: Option<u32>| {
        let b = MachineBuilder::new().ram_mib(128).cpus(1).slab_sheaf_bytes(128 << 10).slab_cpu_stash(4);
        match max {
            Some(n) => b.slab_sheaf_max(n),
            None => b,
        }
        .build()
        .unwrap()
    };
    let (default, big, clamped) = (build(None), build(Some(256)), build(Some(300)));
    for (m, want_64, want_1k) in [(&default, 128, 128), (&big, 256, 128), (&clamped, 256, 128)] {
        assert_eq!(m.kmalloc_slab(64, Gfp::KERNEL).unwrap().sheaf_capacity(), want_64);
        assert_eq!(m.kmalloc_slab(512, Gfp::KERNEL).unwrap().sheaf_capacity(), want_64);
        assert_eq!(m.kmalloc_slab(1024, Gfp::KERNEL).unwrap().sheaf_capacity(), want_1k);
    }
    // The ceiling (8 KiB of slots a sheaf), and past it.
    for max in [1024, 4096] {
        let m = build(Some(max));
        let c = m.kmalloc_slab(64, Gfp::KERNEL).unwrap();
        assert_eq!(c.sheaf_capacity(), 1024, "sheaf_max {max}");
        let ps: Vec<NonNull<u8>> = (0..3000).map(|_| m.kmalloc(64, Gfp::KERNEL).unwrap()).collect();
        for p in ps {
            // SAFETY: ours, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
        m.kmem_cache_shrink(c);
        assert_eq!(kmem::proc::slab_info(&m, c).active_objs, 0);
        assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
    }
    let mut trades = Vec::new();
    for m in [&default, &big] {
        let c = m.kmalloc_slab(64, Gfp::KERNEL).unwrap();
        let round = || {
            let ps: Vec<NonNull<u8>> = (0..1000).map(|_| m.kmalloc(64, Gfp::KERNEL).unwrap()).collect();
            let distinct: std::collections::HashSet<_> = ps.iter().collect();
            assert_eq!(distinct.len(), 1000, "an object handed out twice");
            for p in ps {
                // SAFETY: ours, freed once.
                unsafe { m.kfree(p.as_ptr()) };
            }
        };
        round();
        round();
        let count = || c.stat(m, SlubStat::BarnGet) + c.stat(m, SlubStat::BarnPut);
        let before = count();
        for _ in 0..10 {
            round();
        }
        trades.push(count() - before);
        m.kmem_cache_shrink(c);
        assert_eq!(m.validate_slab_cache(c).errors, 0);
        assert_eq!(kmem::proc::slab_info(m, c).active_objs, 0);
        assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
    }
    assert!(trades[0] >= 10 && trades[1] == 0, "barn trades in ten rounds: {trades:?}");
}

/// `MachineBuilder::slab_cpu_stash` (`SlabBootConfig::cpu_stash`): a CPU keeps that many
/// sheaves beyond main and spare, so bursts of frees and allocations that fit swap sheaves
/// on the CPU and never trade at the barn once the stash is warm; every object still comes
/// back exactly once, and shrinking (which flushes and frees the stash) leaves nothing.
#[test]
fn a_cpu_stash_keeps_bursts_off_the_barn() {
    let m = MachineBuilder::new().ram_mib(128).cpus(1).slab_sheaf_bytes(128 << 10).slab_cpu_stash(4).build().unwrap();
    let c = m.kmalloc_slab(1024, Gfp::KERNEL).unwrap();
    let round = |n: usize| {
        let ps: Vec<NonNull<u8>> = (0..n).map(|_| m.kmalloc(1000, Gfp::KERNEL).unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ps.iter().collect();
        assert_eq!(distinct.len(), n, "an object handed out twice");
        for p in ps {
            // SAFETY: ours, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
    };
    round(600); // warms the stash: the main sheaf and four stashed ones of 128 hold 640 objects
    let trades = |m: &Kmem<HostedPlatform>| c.stat(m, SlubStat::BarnGet) + c.stat(m, SlubStat::BarnPut);
    let before = trades(&m);
    for _ in 0..20 {
        round(600);
    }
    assert_eq!(trades(&m), before, "bursts within the stash trade nothing at the barn");
    // A burst larger than the stash still works, through the barn.
    round(3000);
    assert!(trades(&m) > before);
    m.kmem_cache_shrink(c);
    assert_eq!(m.validate_slab_cache(c).errors, 0);
    assert_eq!(kmem::proc::slab_info(&m, c).active_objs, 0, "the stash was flushed");
    assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
}

/// Stashes on CPUs that threads own and give back: threads burst-allocate and free through
/// their CPU's stash and exit (the CPU's sheaves, stash included, are parked in the barn or
/// flushed); the next threads take those CPUs and sheaves. No object is ever handed to two
/// owners at once (a sheaf both parked and still stashed would do that), and every object
/// comes back.
#[test]
fn stashes_survive_threads_that_come_and_go() {
    let m = MachineBuilder::new()
        .ram_mib(256)
        .thread_cpus(8)
        .thread_cpus_warm(1)
        .slab_sheaf_bytes(128 << 10)
        .slab_cpu_stash(4)
        .build()
        .unwrap();
    let live = std::sync::Mutex::new(std::collections::HashSet::new());
    for wave in 0..3 {
        std::thread::scope(|sc| {
            for t in 0..6 {
                let (m, live) = (&m, &live);
                sc.spawn(move || {
                    for r in 0..4 {
                        let n = 200 + 150 * ((t + r + wave) % 4);
                        let ps: Vec<NonNull<u8>> =
                            (0..n).map(|i| m.kmalloc(SIZES[i % SIZES.len()], Gfp::KERNEL).unwrap()).collect();
                        {
                            let mut l = live.lock().unwrap();
                            for p in &ps {
                                assert!(l.insert(p.as_ptr() as usize), "{p:?} handed out while live");
                            }
                        }
                        for p in ps {
                            live.lock().unwrap().remove(&(p.as_ptr() as usize));
                            // SAFETY: ours, freed once.
                            unsafe { m.kfree(p.as_ptr()) };
                        }
                    }
                });
            }
        });
    }
    for &sz in &SIZES {
        let c = m.kmalloc_slab(sz, Gfp::KERNEL).unwrap();
        m.kmem_cache_shrink(c);
        assert_eq!(m.validate_slab_cache(c).errors, 0, "{sz}");
        assert_eq!(kmem::proc::slab_info(&m, c).active_objs, 0, "{sz}: every object came back");
    }
    assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0, "{:?}", m.reports().take());
}

/// `MachineBuilder::slab_barn_bytes` (`SlabBootConfig::barn_bytes`): a barn of 16 MiB keeps
/// every full sheaf of a 20,000-object burst of frees, so the next burst of allocations
/// takes them back: no sheaf flushed to the slabs and no new slab, where the default barn
/// (4096 objects) flushes most of them and rebuilds slabs each round. Every object still
/// comes back exactly once, and shrinking empties the barn.
#[test]
fn a_large_barn_keeps_a_burst_of_frees_off_the_slabs() {
    const N: usize = 20_000;
    let run = |barn: u32| {
        let m = MachineBuilder::new()
            .ram_mib(256)
            .cpus(1)
            .slab_sheaf_bytes(128 << 10)
            .slab_cpu_stash(4)
            .slab_barn_bytes(barn)
            .build()
            .unwrap();
        let c = m.kmalloc_slab(64, Gfp::KERNEL).unwrap();
        let round = || {
            let ps: Vec<NonNull<u8>> = (0..N).map(|_| m.kmalloc(64, Gfp::KERNEL).unwrap()).collect();
            let distinct: std::collections::HashSet<_> = ps.iter().collect();
            assert_eq!(distinct.len(), N, "an object handed out twice");
            for p in ps.into_iter().rev() {
                // SAFETY: ours, freed once.
                unsafe { m.kfree(p.as_ptr()) };
            }
        };
        round();
        let work = |m: &Kmem<HostedPlatform>| (c.stat(m, SlubStat::SheafFlush), c.stat(m, SlubStat::AllocSlab));
        let before = work(&m);
        for _ in 0..3 {
            round();
        }
        let after = work(&m);
        m.kmem_cache_shrink(c);
        assert_eq!(m.validate_slab_cache(c).errors, 0);
        assert_eq!(kmem::proc::slab_info(&m, c).active_objs, 0, "shrink flushed the barn");
        assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
        (after.0 - before.0, after.1 - before.1)
    };
    assert_eq!(run(16 << 20), (0, 0), "a 16 MiB barn: no flush, no new slab after the first round");
    let (flushes, slabs) = run(0);
    assert!(flushes > 100 && slabs > 100, "the default barn flushes and rebuilds: {flushes} flushes, {slabs} slabs");
}
