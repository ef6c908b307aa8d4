//! Model-based property tests of the whole public allocation API (issue 12): random
//! sequences of `alloc_pages`/`__free_pages` (orders 0-10, several zones), the slab caches
//! (`kmem_cache_create`/`alloc`/`zalloc`/`free`/`shrink`/`destroy`, some with a
//! constructor), kmalloc (`kmalloc`/`kzalloc`/`krealloc`/`kfree`/`ksize`, sizes 0 to above
//! 4 MiB, some from IRQ context), vmalloc (`vmalloc`/`vzalloc`/`vrealloc`/`vfree`) and
//! per-CPU areas (`__alloc_percpu`/`free_percpu`), checked against a reference model
//! (`hardening/world.rs`) with a content stamp in every live block.
//!
//! - One thread on a 2-CPU machine that migrates between CPUs: the invariant scanner
//!   (`hardening/scan.rs`) runs after every operation.
//! - Three threads, each with its own stream, on one 2-CPU machine with migration: they stop
//!   at a barrier every few operations, and one of them runs the scanner over every
//!   thread's model.
//!
//! Both end by freeing everything and checking that the free pages, the vmalloc areas and
//! the per-CPU allocations are back to the baseline taken after warm-up. Cases are few by
//! default (CI runs debug builds); `PROPTEST_CASES=1000` runs more.

use crate::hardening;

use std::panic::AssertUnwindSafe;
use std::sync::{Barrier, Mutex, PoisonError};

use hardening::ops::{op, Op};
use hardening::scan::{leak_check, scan, warm_up, Baseline};
use hardening::world::{Summary, World};
use kmem::Gfp;
use kmem_hosted::{Machine, MachineBuilder};
use proptest::prelude::*;

/// Cases: `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn machine(migrate_every: u32) -> Machine {
    MachineBuilder::new().ram_mib(48).cpus(2).migrate_every(migrate_every).vmalloc_size(256 << 20).build().unwrap()
}

fn run_single(ops: &[Op]) -> Result<(), String> {
    let m = machine(5);
    warm_up(&m);
    let base = Baseline::take(&m);
    let mut w = World::new(&m, 0);
    for (n, op) in ops.iter().enumerate() {
        w.apply(op).map_err(|e| format!("op {n} {op:?}: {e}"))?;
        let deep = n % 16 == 15;
        scan(&m, &base, &[w.summary()], deep).map_err(|e| format!("after op {n} {op:?}: {e}"))?;
        if deep {
            w.check_all()?;
        }
    }
    w.check_all()?;
    w.free_all()?;
    scan(&m, &base, &[w.summary()], true)?;
    leak_check(&m, &base)
}

/// Operations between two scans of the threaded run.
const SYNC: usize = 12;

fn run_threads(streams: &[Vec<Op>]) -> Result<(), String> {
    let m = machine(3);
    warm_up(&m);
    let base = Baseline::take(&m);
    let rounds = streams.iter().map(Vec::len).max().unwrap_or(0).div_ceil(SYNC);
    let barrier = Barrier::new(streams.len());
    let sums: Mutex<Vec<Summary>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (t, ops) in streams.iter().enumerate() {
            let (m, base, barrier, sums, errors) = (&m, &base, &barrier, &sums, &errors);
            s.spawn(move || {
                let mut w = World::new(m, t + 1);
                let mut failed = false;
                let fail =
                    |e: String| errors.lock().unwrap_or_else(PoisonError::into_inner).push(format!("thread {t}: {e}"));
                for r in 0..rounds {
                    for (n, op) in ops.iter().enumerate().skip(r * SYNC).take(SYNC) {
                        if failed {
                            break;
                        }
                        match std::panic::catch_unwind(AssertUnwindSafe(|| w.apply(op))) {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                fail(format!("op {n} {op:?}: {e}"));
                                failed = true;
                            }
                            Err(_) => {
                                fail(format!("op {n} {op:?} panicked"));
                                failed = true;
                            }
                        }
                    }
                    // A panic below must not leave the other threads at a barrier.
                    let guarded =
                        |f: &mut dyn FnMut() -> Result<(), String>| match std::panic::catch_unwind(AssertUnwindSafe(f))
                        {
                            Ok(r) => r,
                            Err(p) => Err(format!("panicked: {:?}", p.downcast_ref::<String>())),
                        };
                    barrier.wait();
                    let r1 = guarded(&mut || {
                        let sum = w.summary();
                        sums.lock().unwrap_or_else(PoisonError::into_inner).push(sum);
                        Ok(())
                    });
                    if let Err(e) = r1 {
                        fail(format!("summary after round {r}: {e}"));
                    }
                    if barrier.wait().is_leader() {
                        let v = std::mem::take(&mut *sums.lock().unwrap_or_else(PoisonError::into_inner));
                        if let Err(e) = guarded(&mut || scan(m, base, &v, r % 4 == 3)) {
                            fail(format!("scan after round {r}: {e}"));
                        }
                    }
                    barrier.wait();
                }
                if let Err(e) = w.check_all().and_then(|()| w.free_all()) {
                    fail(e);
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    scan(&m, &base, &[], true)?;
    leak_check(&m, &base)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), ..ProptestConfig::default() })]

    #[test]
    fn one_thread_matches_the_model(ops in proptest::collection::vec(op(), 1..160)) {
        if let Err(e) = run_single(&ops) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn three_threads_on_two_cpus_match_the_model(
        streams in proptest::collection::vec(proptest::collection::vec(op(), 1..120), 3)
    ) {
        if let Err(e) = run_threads(&streams) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The checks above can fail: each kind of damage they look for, made on purpose, is found.
#[test]
fn the_scanner_and_the_stamps_catch_what_they_look_for() {
    let m = machine(0);
    warm_up(&m);
    let base = Baseline::take(&m);
    let mut w = World::new(&m, 0);
    w.apply(&Op::Kmalloc { size: 100, gfp: 0, irq: false }).unwrap();
    w.apply(&Op::Pages { order: 1, gfp: 0 }).unwrap();
    scan(&m, &base, &[w.summary()], true).unwrap();

    // A byte of a live block changed under its owner.
    let p = (w.live[0].addr + 5) as *mut u8;
    // SAFETY: inside the live kmalloc block of 100 bytes.
    unsafe { *p ^= 0xff };
    assert!(w.check_all().unwrap_err().contains("corrupted at offset 5"));
    // SAFETY: as above.
    unsafe { *p ^= 0xff };
    w.check_all().unwrap();

    // Two owners of the same range.
    let e = scan(&m, &base, &[w.summary(), w.summary()], false).unwrap_err();
    assert!(e.contains("overlap"), "{e}");

    // Blocks the machine does not count as used.
    let mut s = w.summary();
    s.pages += m.totalram_pages();
    assert!(scan(&m, &base, &[s], false).unwrap_err().contains("used pages"));
    let mut s = w.summary();
    s.vmalloc_areas += 1;
    assert!(scan(&m, &base, &[s], false).unwrap_err().contains("vmalloc"));

    // A page kept behind the model's back is a leak.
    w.free_all().unwrap();
    leak_check(&m, &base).unwrap();
    let page = m.alloc_pages(Gfp::KERNEL, kmem::Order::ZERO).unwrap();
    assert!(leak_check(&m, &base).unwrap_err().contains("not everything came back"));
    // SAFETY: ours.
    unsafe { m.__free_pages(page, kmem::Order::ZERO) };
    leak_check(&m, &base).unwrap();

    // Any report.
    let local = 0u64;
    // SAFETY: deliberate misuse, which kmem reports and ignores.
    unsafe { m.kfree(&local as *const u64 as *const u8) };
    assert!(scan(&m, &base, &[], false).unwrap_err().contains("unexpected Warning report"));
}
