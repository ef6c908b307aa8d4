//! Slab caches under concurrency, contents checked: objects freed on another CPU go back to
//! their slab, many threads over many caches, caches created and destroyed from many threads.
//! (The single-threaded slab tests are in `slab.rs`.)

use crate::common;

use std::ptr::NonNull;
use std::sync::Mutex;

use common::{check, free, slabinfo_line, stamp};
use kmem::{Cache, Gfp, ReportKind, SlabFlags};
use kmem_hosted::{pin_current_thread, HostedPlatform, Machine, MachineBuilder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap()
}

#[test]
fn objects_freed_on_another_cpu_go_back_to_their_slab() {
    let m = machine();
    let c = m.kmem_cache_create("xcpu", 128, 0, SlabFlags::NO_MERGE, None).unwrap();
    for round in 0..20u8 {
        let objs: Vec<usize> = std::thread::scope(|s| {
            s.spawn(|| {
                pin_current_thread(0);
                (0..500)
                    .map(|i| {
                        let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
                        stamp(p, 128, round.wrapping_add(i as u8));
                        p.as_ptr() as usize
                    })
                    .collect()
            })
            .join()
            .unwrap()
        });
        std::thread::scope(|s| {
            s.spawn(|| {
                pin_current_thread(1);
                for (i, &a) in objs.iter().enumerate() {
                    let p = NonNull::new(a as *mut u8).unwrap();
                    check(p, 128, round.wrapping_add(i as u8));
                    free(&m, &c, p);
                }
            });
        });
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    assert_eq!(m.validate_slab_cache(&c).errors, 0);
    assert_eq!(m.kmem_cache_shrink(&c), 0, "every remote free reached its slab");
}

/// Threads sharing and migrating between CPUs allocate from several caches, hand objects to
/// each other, and check every object's contents before freeing it.
#[test]
fn many_threads_many_caches_contents_checked() {
    let m = MachineBuilder::new().ram_mib(256).cpus(3).migrate_every(7).build().unwrap();
    let sizes = [16usize, 64, 192, 700, 3000];
    let caches: Vec<Cache<'_, HostedPlatform>> = sizes
        .iter()
        .map(|&sz| m.kmem_cache_create(&format!("stress-{sz}"), sz, 0, SlabFlags::NO_MERGE, None).unwrap())
        .collect();
    let shared: Mutex<Vec<(usize, usize, u8)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let (m, caches, shared) = (&m, &caches, &shared);
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                let mut mine: Vec<(usize, usize, u8)> = Vec::new();
                for step in 0..6000u32 {
                    match rng.gen_range(0..10) {
                        0..=4 => {
                            let ci = rng.gen_range(0..caches.len());
                            let p = m.kmem_cache_alloc(&caches[ci], Gfp::KERNEL).unwrap();
                            let tag = (step as u8) ^ (t as u8);
                            stamp(p, sizes[ci].min(64), tag);
                            mine.push((ci, p.as_ptr() as usize, tag));
                        }
                        5..=7 if !mine.is_empty() => {
                            let (ci, a, tag) = mine.swap_remove(rng.gen_range(0..mine.len()));
                            let p = NonNull::new(a as *mut u8).unwrap();
                            check(p, sizes[ci].min(64), tag);
                            free(m, &caches[ci], p);
                        }
                        8 if !mine.is_empty() => {
                            let x = mine.swap_remove(rng.gen_range(0..mine.len()));
                            shared.lock().unwrap().push(x);
                        }
                        _ => {
                            let x = shared.lock().unwrap().pop();
                            if let Some((ci, a, tag)) = x {
                                let p = NonNull::new(a as *mut u8).unwrap();
                                check(p, sizes[ci].min(64), tag);
                                free(m, &caches[ci], p);
                            }
                        }
                    }
                }
                for (ci, a, tag) in mine {
                    let p = NonNull::new(a as *mut u8).unwrap();
                    check(p, sizes[ci].min(64), tag);
                    free(m, &caches[ci], p);
                }
            });
        }
    });
    for (ci, a, tag) in shared.into_inner().unwrap() {
        let p = NonNull::new(a as *mut u8).unwrap();
        check(p, sizes[ci].min(64), tag);
        free(&m, &caches[ci], p);
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    for c in &caches {
        assert_eq!(m.validate_slab_cache(c).errors, 0);
        assert_eq!(m.kmem_cache_shrink(c), 0, "{}: every object came back", c.name());
    }
}

#[test]
fn caches_come_and_go_from_many_threads() {
    let m = MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            s.spawn(move || {
                for i in 0..50 {
                    let name = format!("churn-{t}-{i}");
                    let c = m.kmem_cache_create(&name, 24 + 8 * (i % 40), 0, SlabFlags::NO_MERGE, None).unwrap();
                    let objs: Vec<_> = (0..30).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
                    assert!(slabinfo_line(m, &name).is_some());
                    for p in objs {
                        free(m, &c, p);
                    }
                    m.kmem_cache_destroy(c);
                }
            });
        }
    });
    let warns = m.report_count(ReportKind::Warning) + m.report_count(ReportKind::SlabBug);
    assert_eq!(warns, 0, "{:?}", m.reports().take());
    let mut s = String::new();
    kmem::proc::slabinfo(&m, &mut s).unwrap();
    assert!(!s.contains("churn-"), "every cache was destroyed:\n{s}");
}
