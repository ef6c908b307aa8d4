//! Loom models of the owned-CPU protocol (`scripts/loom.sh`): an owner thread runs per-CPU
//! sections with plain loads and stores while a stopper thread stops the CPU and works on the
//! same per-CPU data.
//!
//! The data is a loom `UnsafeCell` bumped by a separate load and store: a model fails on a
//! lost update and on any access not ordered after the previous one (loom's causality
//! check), so the protocol must give mutual exclusion and acquire/release ordering between
//! the owner and the stopper. Both barriers are sequentially consistent fences here.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::*;

/// Runs `f` over every interleaving, or those with at most `bound` preemptions
/// (`LOOM_MAX_PREEMPTIONS` overrides it).
fn model<F: Fn() + Sync + Send + 'static>(bound: Option<usize>, f: F) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = bound;
    }
    b.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let name = std::thread::current().name().unwrap_or("model").to_owned();
    eprintln!("{name}: {} executions explored", runs.load(std::sync::atomic::Ordering::Relaxed));
}

#[derive(Default)]
struct Cpu {
    cpu: OwnedCpu,
    data: UnsafeCell<u64>,
}

// SAFETY: `data` is touched only by the owner inside a section or by a stopper that holds the
// CPU; whether the protocol serialises those accesses is what the models check.
unsafe impl Sync for Cpu {}

impl Cpu {
    fn bump(&self) {
        // SAFETY: loom checks that no other access is concurrent with this read.
        let v = self.data.with(|p| unsafe { *p });
        // SAFETY: as above, for the write.
        self.data.with_mut(|p| unsafe { *p = v + 1 });
    }
    fn data(&self) -> u64 {
        // SAFETY: called after the other threads were joined.
        self.data.with(|p| unsafe { *p })
    }
}

/// The owner runs `sections` outermost sections (each with a nested one inside) bumping the
/// data; a second thread stops the CPU, bumps, and starts it, `stops` times.
fn owner_and_stopper(sections: usize, stops: usize, stop: fn(&OwnedCpu)) {
    let cpu = Arc::new(Cpu::default());
    let c1 = cpu.clone();
    let owner = thread::spawn(move || {
        for _ in 0..sections {
            assert!(c1.cpu.enter(), "outermost");
            c1.bump();
            assert!(!c1.cpu.enter(), "nested");
            c1.bump();
            c1.cpu.exit();
            c1.cpu.exit();
        }
    });
    let c2 = cpu.clone();
    let stopper = thread::spawn(move || {
        for _ in 0..stops {
            stop(&c2.cpu);
            c2.bump();
            c2.cpu.start();
        }
    });
    owner.join().unwrap();
    stopper.join().unwrap();
    assert_eq!(cpu.data(), (2 * sections + stops) as u64, "lost update");
}

#[test]
fn loom_tests_owner_and_stopper_exclude_each_other() {
    model(None, || owner_and_stopper(1, 1, OwnedCpu::stop));
}

/// Two sections: the owner's second entry after a stop (the acquire of `stop = 0`). Bounded
/// to 3 preemptions (every interleaving takes minutes).
#[test]
fn loom_tests_two_sections_against_a_stop() {
    model(Some(3), || owner_and_stopper(2, 1, OwnedCpu::stop));
}

#[test]
fn loom_tests_stop_many_excludes_the_owner() {
    model(None, || owner_and_stopper(1, 1, |c| OwnedCpu::stop_many(core::slice::from_ref(c))));
}

/// A stopper without the heavy barrier: the owner's store of `depth` and the stopper's store
/// of `stop` can both be missed by the other side's load, and both touch the data at once.
#[test]
#[should_panic]
fn loom_tests_stop_without_barrier_is_caught() {
    model(None, || {
        owner_and_stopper(1, 1, |c| {
            c.lock_stopper();
            c.stop.store(1, Ordering::Relaxed);
            c.wait_quiet();
        })
    });
}

/// `owner` (which returns how many times it bumped the data) against one stop.
fn owner_against_a_stop(owner: fn(&Cpu) -> u64) {
    let cpu = Arc::new(Cpu::default());
    let c1 = cpu.clone();
    let owner = thread::spawn(move || owner(&c1));
    let c2 = cpu.clone();
    let stopper = thread::spawn(move || {
        c2.cpu.stop();
        c2.bump();
        c2.cpu.start();
    });
    let bumps = owner.join().unwrap();
    stopper.join().unwrap();
    assert_eq!(cpu.data(), bumps + 1, "lost update");
}

/// The allocation fast paths' entry: `try_enter`, and on a stop the full `enter` (which waits),
/// as `try_pin_cpu` and the slow path's `pin_cpu` do; a section `try_enter` entered ends with
/// `exit_outermost` (a store of 0), one `enter` entered with `exit`. A failed `try_enter`
/// must leave the CPU quiet for the stopper, and a successful one exclude it.
#[test]
fn loom_tests_try_enter_against_a_stop() {
    model(None, || {
        owner_against_a_stop(|c| {
            for _ in 0..2 {
                if c.cpu.try_enter() {
                    c.bump();
                    c.cpu.exit_outermost();
                } else {
                    assert!(c.cpu.enter(), "outermost after a failed try");
                    c.bump();
                    c.cpu.exit();
                }
            }
            2
        })
    });
}

/// `try_enter` nested in a careful section while a stopper comes: it declines (whatever
/// `stop` says: it reads the depth with it), leaving the depth alone, and the caller's careful
/// path nests with `enter`; the outer section keeps the stopper out until it ends.
#[test]
fn loom_tests_nested_try_enter_against_a_stop() {
    model(None, || {
        owner_against_a_stop(|c| {
            assert!(c.cpu.enter(), "outermost");
            c.bump();
            assert!(!c.cpu.try_enter(), "a fast entry inside a careful section declines");
            assert!(!c.cpu.enter(), "the careful entry nests");
            c.bump();
            c.cpu.exit();
            c.bump();
            c.cpu.exit();
            3
        })
    });
}

/// A careful section nested in a fast one (a `this_cpu` counter under a fast pin) while a
/// stopper comes: it neither waits for the stopper (which waits for the fast word: that
/// would deadlock) nor lets it in; the fast section, entered or not (then the careful path
/// runs the same, as an outermost section), keeps the stopper out until it ends.
#[test]
fn loom_tests_section_nested_in_a_fast_one_against_a_stop() {
    model(None, || {
        owner_against_a_stop(|c| {
            let fast = c.cpu.try_enter();
            if !fast {
                assert!(c.cpu.enter(), "outermost after a failed try");
            }
            c.bump();
            assert_eq!(c.cpu.enter(), fast, "the outermost careful section, unless in one");
            c.bump();
            c.cpu.exit();
            c.bump();
            if fast {
                c.cpu.exit_outermost();
            } else {
                c.cpu.exit();
            }
            3
        })
    });
}

/// A fast section's word alone keeps a stopper out: a stopper that waited for the depth only
/// (the careful sections' word) would bump the data while the fast section runs.
#[test]
#[should_panic]
fn loom_tests_a_stopper_blind_to_the_fast_word_is_caught() {
    model(None, || {
        let cpu = Arc::new(Cpu::default());
        let c1 = cpu.clone();
        let owner = thread::spawn(move || {
            if c1.cpu.try_enter() {
                c1.bump();
                c1.cpu.exit_outermost();
                1
            } else {
                0
            }
        });
        let c2 = cpu.clone();
        let stopper = thread::spawn(move || {
            c2.cpu.lock_stopper();
            c2.cpu.stop.store(1, Ordering::SeqCst);
            heavy_barrier();
            while c2.cpu.depth.load(Ordering::Acquire) != 0 {
                yield_now();
            }
            c2.bump();
            c2.cpu.start();
        });
        let bumps = owner.join().unwrap();
        stopper.join().unwrap();
        assert_eq!(cpu.data(), bumps + 1, "lost update");
    });
}
