//! Loom models of the sheaf trades (`scripts/loom.sh`): two CPUs exchange sheaves through
//! one node's barn while each uses its own sheaves, and another CPU flushes one of them by
//! running as it.
//!
//! They run the real [`Sheaf`], [`CpuSheaves`], [`Barn`] (its spinlock and lists) and the
//! real trades of the slow paths ([`trade_for_empty`] when a free finds its main sheaf full,
//! [`trade_for_full`] when an allocation finds it empty, [`park`] when a CPU goes offline and
//! [`take_main`] when a CPU without sheaves first uses the cache). CPU ownership (what
//! `Platform::pin_cpu` and `run_on_cpu` give; the hosted implementations have models of
//! their own in kmem-hosted) is modelled by a lock per CPU. Objects are numbers 1..=N; after
//! every thread is joined each must be in exactly one place: a CPU's hands, a sheaf (a CPU's
//! or the barn's), or flushed to its slab. Sheaves must be in exactly one place too.

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;

use super::*;
use crate::sync::RawSpinLock;
use crate::testing::loom::{both, model_bounded, ModelPlatform};
use crate::testing::std::{vec, vec::Vec};

/// Preemption bound (the search finishes in seconds; `LOOM_MAX_PREEMPTIONS` overrides).
const PREEMPTIONS: usize = 3;

struct World {
    p: ModelPlatform,
    barn: Barn,
    cpus: [CpuSheaves; 2],
    own: [RawSpinLock; 2],
    /// The sheaves' storage (addresses are what the structures hold).
    sheaves: Vec<OwnedSheaf>,
    /// Objects in someone's hands (bit n: object n).
    held: AtomicU64,
    /// Objects flushed to their slabs.
    flushed: AtomicU64,
}

impl World {
    /// CPU 0's main sheaf holds `full0`; CPU 1's main sheaf is empty; the barn has the given
    /// full and empty sheaves. Sheaves hold `cap` objects.
    fn new(cap: u32, main0: &[usize], barn_full: &[&[usize]], barn_empty: usize) -> Arc<Self> {
        let mut sheaves = Vec::new();
        let mut make = |objs: &[usize]| {
            let s = OwnedSheaf::new(cap);
            for &o in objs {
                assert!(s.push(o));
            }
            let a = s.addr();
            sheaves.push(s);
            a
        };
        let m0 = make(main0);
        let m1 = make(&[]);
        let fulls: Vec<usize> = barn_full.iter().map(|o| make(o)).collect();
        let empties: Vec<usize> = (0..barn_empty).map(|_| make(&[])).collect();
        let w = World {
            p: ModelPlatform::model(),
            barn: Barn::new(),
            cpus: [CpuSheaves::new(), CpuSheaves::new()],
            own: [RawSpinLock::new(), RawSpinLock::new()],
            sheaves,
            held: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        };
        w.cpus[0].set_main(m0);
        w.cpus[1].set_main(m1);
        {
            let g = w.barn.lock().lock_irqsave(&w.p);
            for f in fulls {
                assert!(w.barn.put_locked(&g, f, true));
            }
            for e in empties {
                assert!(w.barn.put_locked(&g, e, false));
            }
            drop(g);
        }
        Arc::new(w)
    }

    fn pin(&self, cpu: usize) -> &CpuSheaves {
        self.own[cpu].lock_raw(&self.p);
        &self.cpus[cpu]
    }
    fn unpin(&self, cpu: usize) {
        self.own[cpu].unlock();
    }

    /// A free of `obj` on `cpu`: the main sheaf, else a trade at the barn, else a flush of
    /// the main sheaf to the slabs.
    fn free(&self, cpu: usize, obj: usize) {
        let pcs = self.pin(cpu);
        let pushed = pcs.main().is_some_and(|m| m.push(obj)) || {
            if !trade_for_empty(pcs, &self.barn, &self.p) {
                self.flush_main(pcs);
            }
            pcs.main().is_some_and(|m| m.push(obj))
        };
        if !pushed {
            // No empty sheaf anywhere: straight to the slab (`free_single`).
            self.flushed.fetch_or(1 << obj, Ordering::Relaxed);
        }
        self.unpin(cpu);
    }

    /// An allocation on `cpu`: the main sheaf, else a full sheaf traded at the barn.
    fn alloc(&self, cpu: usize) -> Option<usize> {
        let pcs = self.pin(cpu);
        let mut obj = pcs.main().and_then(Sheaf::pop);
        if obj.is_none() {
            let (got, retired) = trade_for_full(pcs, &self.barn, &self.p);
            assert_eq!(retired, 0, "the barn has room for the empty sheaf in these models");
            if got {
                obj = pcs.main().and_then(Sheaf::pop);
            }
        }
        self.unpin(cpu);
        if let Some(o) = obj {
            assert_eq!(self.held.fetch_or(1 << o, Ordering::Relaxed) & 1 << o, 0, "object {o} handed out twice");
        }
        obj
    }

    /// `slub_cpu_dead` of `cpu` (run as it): its main and spare sheaves go to the barn, objects
    /// and all (the barn has room in these models).
    fn offline(&self, cpu: usize) {
        let pcs = self.pin(cpu);
        let (main, spare) = (pcs.set_main(0), pcs.set_spare(0));
        for sh in [main, spare] {
            if sh != 0 {
                assert!(park(&self.barn, &self.p, sh), "the barn has room in these models");
            }
        }
        self.unpin(cpu);
    }

    /// An allocation on `cpu`, whose main sheaf may be missing (the CPU's first use since it
    /// came online): a parked sheaf from the barn, full else empty, then the main sheaf.
    fn alloc_first(&self, cpu: usize) -> Option<usize> {
        let pcs = self.pin(cpu);
        let _ = take_main(pcs, &self.barn, &self.p, true) || take_main(pcs, &self.barn, &self.p, false);
        let obj = pcs.main().and_then(Sheaf::pop);
        self.unpin(cpu);
        if let Some(o) = obj {
            assert_eq!(self.held.fetch_or(1 << o, Ordering::Relaxed) & 1 << o, 0, "object {o} handed out twice");
        }
        obj
    }

    /// `sheaf_flush` of a CPU's main sheaf (its CPU held).
    fn flush_main(&self, pcs: &CpuSheaves) {
        if let Some(m) = pcs.main() {
            for o in m.objects() {
                self.flushed.fetch_or(1 << o, Ordering::Relaxed);
            }
            m.clear();
        }
    }

    /// Every object and every sheaf in exactly one place.
    fn check(&self, objects: usize) {
        let mut seen = self.held.load(Ordering::Relaxed);
        let flushed = self.flushed.load(Ordering::Relaxed);
        assert_eq!(seen & flushed, 0, "an object both held and flushed");
        seen |= flushed;
        let mut sheaves_seen: Vec<usize> = vec![];
        let mut count = |addr: usize, seen: &mut u64| {
            assert!(!sheaves_seen.contains(&addr), "sheaf in two places");
            sheaves_seen.push(addr);
            // SAFETY: one of the model's sheaves.
            let s = unsafe { &*(addr as *const Sheaf) };
            for o in s.objects() {
                assert_eq!(*seen & 1 << o, 0, "object {o} in two places");
                *seen |= 1 << o;
            }
        };
        for pcs in &self.cpus {
            for a in [pcs.main.load(Ordering::Relaxed), pcs.spare.load(Ordering::Relaxed)] {
                if a != 0 {
                    count(a, &mut seen);
                }
            }
        }
        let g = self.barn.lock().lock_irqsave(&self.p);
        for full in [true, false] {
            loop {
                let a = self.barn.take_locked(&g, full);
                if a == 0 {
                    break;
                }
                count(a, &mut seen);
            }
        }
        drop(g);
        assert_eq!(sheaves_seen.len(), self.sheaves.len(), "every sheaf somewhere");
        let all = ((1u64 << objects) - 1) << 1;
        assert_eq!(seen, all, "every object exactly once");
    }
}

/// Producer and consumer: CPU 0 frees two objects into its full main sheaf (trading it for the
/// barn's empty one), CPU 1 allocates twice from its empty main sheaf (trading it for the
/// barn's full ones).
#[test]
fn loom_tests_producer_and_consumer_trade_sheaves() {
    model_bounded(PREEMPTIONS, || {
        let w = World::new(2, &[1, 2], &[&[3]], 1);
        let (a, b) = (w.clone(), w.clone());
        both(
            move || {
                a.free(0, 4);
                a.free(0, 5);
            },
            move || {
                let _ = b.alloc(1);
                let _ = b.alloc(1);
            },
        );
        w.check(5);
    });
}

/// A thread exits: its CPU 0 goes offline and parks its sheaves (one with objects) in the
/// barn, while CPU 1, which has no sheaf yet (its thread just came online), allocates twice
/// and so takes a parked sheaf from the barn.
#[test]
fn loom_tests_offline_parks_sheaves_that_a_new_cpu_takes() {
    model_bounded(PREEMPTIONS, || {
        let w = World::new(2, &[1, 2], &[], 0);
        // CPU 1 starts without sheaves: its (empty) one waits in the barn.
        let m1 = w.cpus[1].set_main(0);
        let g = w.barn.lock().lock_irqsave(&w.p);
        assert!(w.barn.put_locked(&g, m1, false));
        drop(g);
        let (a, b) = (w.clone(), w.clone());
        both(
            move || a.offline(0),
            move || {
                let _ = b.alloc_first(1);
                let _ = b.alloc_first(1);
            },
        );
        w.check(2);
    });
}

/// A flush of CPU 0's sheaves by another CPU running as CPU 0 (shrink, offline), against CPU
/// 0 freeing into them and trading at the barn.
#[test]
fn loom_tests_flush_as_the_cpu_against_its_owner() {
    model_bounded(PREEMPTIONS, || {
        let w = World::new(2, &[1], &[], 1);
        let (a, b) = (w.clone(), w.clone());
        both(
            move || {
                a.free(0, 2);
                a.free(0, 3);
            },
            move || {
                let pcs = b.pin(0);
                b.flush_main(pcs);
                b.unpin(0);
            },
        );
        w.check(3);
    });
}

/// The models have teeth: a flush that does not run as the CPU (no CPU lock) races the
/// owner's pushes and loses or duplicates objects.
#[test]
#[should_panic]
fn loom_tests_flush_without_the_cpu_is_caught() {
    model_bounded(PREEMPTIONS, || {
        let w = World::new(2, &[1], &[], 1);
        let (a, b) = (w.clone(), w.clone());
        both(
            move || {
                a.free(0, 2);
                a.free(0, 3);
            },
            move || b.flush_main(&b.cpus[0]),
        );
        w.check(3);
    });
}
