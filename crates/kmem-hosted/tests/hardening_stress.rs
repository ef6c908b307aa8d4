//! Long stress, bounded (issue 12): every allocation API from more threads than the machine
//! has CPUs, with content stamps checked before every free, and nothing leaked at the end.
//!
//! Six worker threads share a 2-CPU machine that moves them between CPUs every few critical
//! sections. Each runs the model's random operations (`hardening/ops.rs`: pages of orders
//! 0-10 in several zones, slab caches with and without a constructor, kmalloc/krealloc of
//! 0 bytes to above 4 MiB, some from IRQ context with `GFP_ATOMIC`, vmalloc/vrealloc, per-CPU
//! areas) on its own model, and hands blocks to the next worker, which checks and frees them
//! (from IRQ context now and then). A seventh thread meanwhile runs `verify()`, the `/proc`
//! views, `drain_all_pages`, `kmem_cache_shrink` of the kmalloc caches, vmalloc purges,
//! empty per-CPU chunk frees, and IRQ-context kmallocs.
//!
//! At the end: no report, the full scanner passes, and the free pages, vmalloc areas and
//! per-CPU allocations are back at the baseline.
//!
//! Bounded: 1,200 operations per worker by default (a few seconds in a debug build);
//! `KMEM_STRESS_SECS=600` runs for ten minutes instead, `KMEM_STRESS_SEED` changes the streams.

use crate::hardening;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hardening::ops::{op, Op};
use hardening::scan::{leak_check, scan, warm_up, Baseline};
use hardening::world::{Block, World};
use kmem::{Gfp, KmemCache};
use kmem_hosted::{in_irq, MachineBuilder};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const WORKERS: usize = 6;
const OPS: usize = 1_200;
/// Live blocks a worker keeps at most (beyond it, it frees).
const MAX_LIVE: usize = 48;

fn env<T: std::str::FromStr>(k: &str) -> Option<T> {
    std::env::var(k).ok().and_then(|s| s.parse().ok())
}

/// Counts finished workers, also when one panics (so the checker thread stops).
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

#[test]
fn every_api_from_more_threads_than_cpus_with_irqs() {
    let m = MachineBuilder::new().ram_mib(512).cpus(2).migrate_every(7).vmalloc_size(1 << 30).build().unwrap();
    warm_up(&m);
    let base = Baseline::take(&m);
    let deadline = env::<f64>("KMEM_STRESS_SECS").map(|s| Instant::now() + Duration::from_secs_f64(s));
    let seed = env::<u64>("KMEM_STRESS_SEED").unwrap_or(0);
    // The kmalloc caches are never destroyed: the checker may shrink them at any time.
    let mut kmalloc_caches = Vec::new();
    m.for_each_cache(|c| {
        if c.name().contains("kmalloc-") {
            kmalloc_caches.push(c as *const KmemCache as usize);
        }
    });
    let done = AtomicUsize::new(0);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..WORKERS).map(|_| mpsc::channel::<Block<'_>>()).unzip();
    let (ops_run, leftovers) = std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (t, rx) in rxs.into_iter().enumerate() {
            let (m, done, next) = (&m, &done, txs[(t + 1) % WORKERS].clone());
            workers.push(s.spawn(move || {
                let _done = Done(done);
                let mut seed32 = [0u8; 32];
                seed32[..8].copy_from_slice(&(seed ^ t as u64).to_le_bytes());
                // Only the strategy is used (no test cases, nothing to persist).
                let config = Config { failure_persistence: None, ..Config::default() };
                let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed32));
                let strategy = op();
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(31) ^ t as u64);
                let mut w = World::new(m, t + 1);
                let mut n = 0;
                while deadline.map_or(n < OPS, |d| Instant::now() < d) {
                    for b in rx.try_iter() {
                        let r = if rng.gen_bool(0.3) && !matches!(b.kind, hardening::world::Kind::Percpu(_)) {
                            in_irq(|| w.free_foreign(&b))
                        } else {
                            w.free_foreign(&b)
                        };
                        r.unwrap_or_else(|e| panic!("worker {t}: freeing a block handed over: {e}"));
                    }
                    let op = if w.live.len() >= MAX_LIVE {
                        Op::Free { pick: rng.gen(), irq: rng.gen_bool(0.2) }
                    } else {
                        strategy.new_tree(&mut runner).unwrap().current()
                    };
                    w.apply(&op).unwrap_or_else(|e| panic!("worker {t}, op {n} {op:?}: {e}"));
                    if n % 8 == 7 {
                        if let Some(b) = w.give_away(rng.gen()).unwrap_or_else(|e| panic!("worker {t}: {e}")) {
                            next.send(b).unwrap();
                        }
                    }
                    if n % 64 == 63 {
                        w.check_all().unwrap_or_else(|e| panic!("worker {t}: {e}"));
                    }
                    n += 1;
                }
                w.check_all().and_then(|()| w.free_all()).unwrap_or_else(|e| panic!("worker {t} at the end: {e}"));
                (n, rx)
            }));
        }
        drop(txs);
        let (m, done, caches) = (&m, &done, &kmalloc_caches);
        s.spawn(move || {
            let mut round = 0u64;
            while done.load(Ordering::Acquire) < WORKERS {
                m.verify().unwrap_or_else(|e| panic!("verify on the running machine: {e:?}"));
                let mut text = String::new();
                kmem::proc::meminfo(m, &mut text).unwrap();
                kmem::proc::slabinfo(m, &mut text).unwrap();
                kmem::proc::buddyinfo(m, &mut text).unwrap();
                kmem::proc::vmallocinfo(m, &mut text).unwrap();
                match round % 4 {
                    0 => m.drain_all_pages(),
                    1 => {
                        for &c in caches {
                            // SAFETY: kmalloc caches live as long as the machine.
                            m.kmem_cache_shrink(unsafe { &*(c as *const KmemCache) });
                        }
                    }
                    2 => m.vm_unmap_aliases(),
                    _ => {
                        m.pcpu_free_empty_chunks();
                    }
                }
                let p = in_irq(|| m.kmalloc(64 + round as usize % 512, Gfp::ATOMIC | Gfp::NOWARN));
                if let Ok(p) = p {
                    // SAFETY: ours.
                    in_irq(|| unsafe { m.kfree(p.as_ptr()) });
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let results: Vec<_> = workers.into_iter().map(|h| h.join().unwrap()).collect();
        let ops: usize = results.iter().map(|(n, _)| n).sum();
        (ops, results.into_iter().map(|(_, rx)| rx).collect::<Vec<_>>())
    });
    // Blocks handed to a worker after it finished are still in its channel.
    let w = World::new(&m, 0);
    for rx in leftovers {
        for b in rx.try_iter() {
            w.free_foreign(&b).unwrap();
        }
    }
    eprintln!("{ops_run} operations on {WORKERS} workers");
    assert!(ops_run >= WORKERS, "every worker ran");
    scan(&m, &base, &[], true).unwrap();
    leak_check(&m, &base).unwrap();
}
