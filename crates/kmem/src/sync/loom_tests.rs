//! Loom models of [`RawSpinLock`] (`scripts/loom.sh`).
//!
//! The guarded data is a loom `UnsafeCell` incremented by a separate load and store, so a
//! model fails on a lost update *and* on any access that is not ordered after the previous
//! holder's (loom's causality check): mutual exclusion and acquire/release ordering both.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use super::RawSpinLock;
use crate::testing::loom::{both, model, ModelPlatform};

/// A counter guarded by a lock.
struct Guarded {
    lock: RawSpinLock,
    value: UnsafeCell<usize>,
}

// SAFETY: `value` is meant to be touched only with `lock` held; whether the lock really
// serialises those accesses is what the models check (loom reports any unordered access).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn new() -> Arc<Self> {
        Arc::new(Self { lock: RawSpinLock::new(), value: UnsafeCell::new(0) })
    }
    /// `value += 1` as a load and a separate store. The caller holds `lock` (except in the
    /// negative model).
    fn bump(&self) {
        // SAFETY: loom checks that no other access to `value` is concurrent with this read.
        let v = self.value.with(|p| unsafe { *p });
        // SAFETY: as above, for the write.
        self.value.with_mut(|p| unsafe { *p = v + 1 });
    }
    fn get(&self) -> usize {
        // SAFETY: called after every other thread was joined.
        self.value.with(|p| unsafe { *p })
    }
}

/// `spin_lock_irqsave` (the zone lock's entry): two CPUs, one increment each, no lost update.
#[test]
fn lock_irqsave_excludes() {
    model(|| {
        let g = Guarded::new();
        let cpu = |g: Arc<Guarded>| {
            move || {
                let p = ModelPlatform::model();
                let _l = g.lock.lock_irqsave(&p);
                g.bump();
            }
        };
        both(cpu(g.clone()), cpu(g.clone()));
        assert_eq!(g.get(), 2);
        assert!(!g.lock.is_locked());
    });
}

/// `try_lock_raw` (the pageset lock's entry on the owning CPU) against `lock_raw` (a drainer
/// on another CPU): a failed try gives up as the per-CPU path does (it counts a fallback); a
/// successful one excludes the spinning locker.
#[test]
fn try_lock_raw_and_lock_raw_exclude() {
    model(|| {
        let g = Guarded::new();
        let fallbacks = Arc::new(AtomicUsize::new(0));
        let drainer = {
            let g = g.clone();
            move || {
                g.lock.lock_raw(&ModelPlatform::model());
                g.bump();
                g.lock.unlock();
            }
        };
        let owner = {
            let (g, fallbacks) = (g.clone(), fallbacks.clone());
            move || {
                for _ in 0..2 {
                    if g.lock.try_lock_raw() {
                        g.bump();
                        g.lock.unlock();
                    } else {
                        fallbacks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        };
        both(drainer, owner);
        assert_eq!(g.get(), 3 - fallbacks.load(Ordering::Relaxed));
        assert!(!g.lock.is_locked());
    });
}

/// Two CPUs that each retry `try_lock_raw` until it succeeds (and yield while it fails).
#[test]
fn try_lock_raw_retry_excludes() {
    model(|| {
        let g = Guarded::new();
        let worker = |g: Arc<Guarded>| {
            while !g.lock.try_lock_raw() {
                thread::yield_now();
            }
            g.bump();
            g.lock.unlock();
        };
        let (g1, g2) = (g.clone(), g.clone());
        both(move || worker(g1), move || worker(g2));
        assert_eq!(g.get(), 2);
    });
}

/// The models have teeth: the same increments without the lock are caught.
#[test]
#[should_panic(expected = "Causality violation")]
fn unlocked_increments_are_caught() {
    model(|| {
        let g = Guarded::new();
        let (g1, g2) = (g.clone(), g.clone());
        both(move || g1.bump(), move || g2.bump());
        assert_eq!(g.get(), 2);
    });
}
