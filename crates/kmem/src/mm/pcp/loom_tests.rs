//! Loom models of the per-CPU page list protocol (`scripts/loom.sh`).
//!
//! They run the real [`PerCpuPages`] methods (`rmqueue_pinned` with its refill,
//! `free_pinned` with its bulk free at `high`, `drain`, and the order-0 fast paths'
//! `pop_order0` and `push_order0` + `free_high` over the flat memmap view), the real [`ZoneBuddy`] (buddy
//! allocator, zone lock), page descriptors, memory map and lists, over a zone of four frames.
//! Thread 0 is CPU 0 using its own pageset with the CPU pinned, as `Kmem::rmqueue_pcplist`
//! and `free_unref_page` do; thread 1 is another CPU draining CPU 0's pageset by running as
//! CPU 0 (`run_on_cpu`). CPU ownership (what `pin_cpu` and `run_on_cpu` give, whose hosted
//! implementations have models of their own in kmem-hosted) is modelled by a lock: the pcp
//! protocol must need nothing more.
//!
//! After both finish, every frame must be in exactly one place (the buddy lists, CPU 0's
//! lists, or CPU 0's hands), every list well formed with the right page type, and the counters
//! (`pcp.count`, the zone's free pages) equal to what the lists hold.

use loom::sync::Arc;

use super::*;
use crate::sync::AtomicUsize;
use crate::testing::loom::{both, model_bounded, Frames, ModelPlatform, ModelZone};

/// Preemption bound of these models (unless `LOOM_MAX_PREEMPTIONS` is set): every
/// interleaving with up to 3 preemptions takes seconds; without a bound the search does not
/// finish. Each protocol break tried on them fails within this bound; `LOOM_MAX_PREEMPTIONS=5`
/// searches deeper (about half a minute).
const PREEMPTIONS: usize = 3;

/// Frames in the model zone.
const NR: usize = 4;
const MT: Migratetype = Migratetype::Movable;

struct Cpu0 {
    z: ModelZone,
    pcp: PerCpuPages,
    /// CPU 0 itself: held while pinned, or by a thread running as it.
    cpu: crate::sync::RawSpinLock,
}

impl Cpu0 {
    fn new(batch: usize, high: usize) -> Arc<Self> {
        let pcp = PerCpuPages::new();
        pcp.update(batch, high, high);
        Arc::new(Self { z: ModelZone::new(NR), pcp, cpu: crate::sync::RawSpinLock::new() })
    }

    fn buddy(&self) -> ZoneBuddy<'_, ModelPlatform> {
        ZoneBuddy { platform: &self.z.platform, mm: &self.z.mm, zone: &self.z.zone, take: Take::default() }
    }

    /// An order-0 allocation on CPU 0: `rmqueue_pcplist`, CPU pinned.
    fn alloc(&self) -> Option<Pfn> {
        self.cpu.lock_raw(&self.z.platform);
        let got = self.pcp.rmqueue_pinned(&self.z.mm, &self.buddy(), Order::ZERO, MT, false);
        self.cpu.unlock();
        got.map(|(pfn, _)| pfn)
    }

    /// An order-0 free on CPU 0: `free_unref_page`, CPU pinned.
    fn free(&self, pfn: Pfn) {
        let page = self.z.mm.page(pfn).unwrap();
        self.cpu.lock_raw(&self.z.platform);
        self.pcp.free_pinned(&self.z.mm, &self.buddy(), pfn, page, Order::ZERO, MT);
        self.cpu.unlock();
    }

    /// An order-0 allocation on CPU 0 through the fast path's pop (`rmqueue_pcp_fast`): the
    /// hot end of the list through the memmap's flat view; `None` on an empty list, which
    /// the full path refills.
    fn alloc_fast(&self) -> Option<Pfn> {
        let mm = &self.z.mm;
        let flat = mm.flat().expect("the model's memmap is one section: flat");
        self.cpu.lock_raw(&self.z.platform);
        let got = self.pcp.pop_order0(flat, MT);
        self.cpu.unlock();
        got.map(|(pfn, _)| pfn)
    }

    /// An order-0 free on CPU 0 through the fast path's push (`free_pcp_fast`), with its
    /// out-of-line return of a batch at `high`.
    fn free_fast(&self, pfn: Pfn) {
        let mm = &self.z.mm;
        let page = mm.page(pfn).unwrap();
        self.cpu.lock_raw(&self.z.platform);
        if self.pcp.push_order0(pfn, page, MT) {
            self.pcp.free_high(mm, &self.buddy());
        }
        self.cpu.unlock();
    }

    /// `drain_all_pages` reaching CPU 0: another CPU runs as it and drains its lists.
    fn drain(&self) {
        self.cpu.lock_raw(&self.z.platform);
        self.pcp.drain(&self.z.mm, &self.buddy());
        self.cpu.unlock();
    }

    /// The conservation check, after every thread has been joined. `held`: what CPU 0 still
    /// holds.
    fn check(&self, held: &[Pfn]) {
        let mut frames = Frames::default();
        self.z.collect_free(&mut frames);
        let mm = &self.z.mm;
        let listed = self.pcp.check(mm).expect("pcp lists are well formed, their pages typed PCP");
        assert_eq!(listed, self.pcp.count(), "pcp count against its lists");
        for list in &self.pcp.lists {
            let _ = list.walk(mm, usize::MAX, |pfn, _, _| {
                frames.add(pfn, Order::ZERO, "CPU 0's lists");
                true
            });
        }
        for &pfn in held {
            let page = mm.page(pfn).unwrap();
            assert!(!page.is_buddy() && !page.is_pcp(), "held frame {} still typed free", pfn.as_usize());
            frames.add(pfn, Order::ZERO, "CPU 0's hands");
        }
        assert_eq!(frames, Frames::first(self.z.nr()), "every frame in exactly one place");
        assert!(!self.cpu.is_locked());
    }
}

/// Refill against drain: CPU 0 allocates twice (the first refills a batch of 2 from the
/// buddy), frees one back to its list and keeps the other, while CPU 1 drains CPU 0's lists.
#[test]
fn refill_and_free_against_drain() {
    model_bounded(PREEMPTIONS, || {
        let c = Cpu0::new(2, 8);
        let held = Arc::new(AtomicUsize::new(usize::MAX));
        let cpu0 = {
            let (c, held) = (c.clone(), held.clone());
            move || {
                let a = c.alloc().expect("the zone has frames");
                let b = c.alloc().expect("the zone has frames");
                assert_ne!(a, b);
                c.free(a);
                held.store(b.as_usize(), Ordering::Relaxed);
            }
        };
        let cpu1 = {
            let c = c.clone();
            move || c.drain()
        };
        both(cpu0, cpu1);
        c.check(&[Pfn::new(held.load(Ordering::Relaxed))]);
    });
}

/// The free path's bulk return at `high` against drain: with batch 1 and high 2, CPU 0's
/// second free finds the lists at `high` and returns a batch to the buddy under both locks,
/// while CPU 1 drains.
#[test]
fn free_at_high_against_drain() {
    model_bounded(PREEMPTIONS, || {
        let c = Cpu0::new(1, 2);
        let cpu0 = {
            let c = c.clone();
            move || {
                let a = c.alloc().expect("the zone has frames");
                let b = c.alloc().expect("the zone has frames");
                c.free(a);
                c.free(b);
            }
        };
        let cpu1 = {
            let c = c.clone();
            move || c.drain()
        };
        both(cpu0, cpu1);
        c.check(&[]);
    });
}

/// The order-0 fast paths' pop and push against drain: CPU 0 refills a batch of 2 through
/// the full path, pops the second block with the fast pop (or, if CPU 1 drained it, through
/// the full path again), and frees both with the fast push, the second reaching `high`
/// (2) and returning a batch to the buddy, while CPU 1 drains.
#[test]
fn fast_pop_and_push_against_drain() {
    model_bounded(PREEMPTIONS, || {
        let c = Cpu0::new(2, 2);
        let cpu0 = {
            let c = c.clone();
            move || {
                let a = c.alloc().expect("the zone has frames");
                let b = c.alloc_fast().or_else(|| c.alloc()).expect("the zone has frames");
                assert_ne!(a, b);
                c.free_fast(a);
                c.free_fast(b);
            }
        };
        let cpu1 = {
            let c = c.clone();
            move || c.drain()
        };
        both(cpu0, cpu1);
        c.check(&[]);
    });
}

/// The models have teeth: a CPU 0 that touches its lists without pinning itself (so while
/// the drainer runs as it) is caught.
#[test]
#[should_panic]
fn lists_touched_without_the_cpu_are_caught() {
    model_bounded(PREEMPTIONS, || {
        let c = Cpu0::new(2, 8);
        let cpu0 = {
            let c = c.clone();
            move || {
                let (a, _) = c.pcp.rmqueue_pinned(&c.z.mm, &c.buddy(), Order::ZERO, MT, false).expect("frames");
                c.pcp.free_pinned(&c.z.mm, &c.buddy(), a, c.z.mm.page(a).unwrap(), Order::ZERO, MT);
            }
        };
        let cpu1 = {
            let c = c.clone();
            move || c.drain()
        };
        both(cpu0, cpu1);
        c.check(&[]);
    });
}

/// A pageset written as its CPU comes up (`boot/pagesets.rs`): CPU 0's owner coming up and a
/// thread borrowing CPU 0 (`run_on_cpu`, which prepares it first) both find it unwritten.
/// Exactly one writes it; the other waits until it is written; each then allocates and frees
/// on it, pinned. A second writer, or a user that did not wait, would leave the lists or the
/// count wrong for `check`.
#[test]
fn an_unwritten_pageset_is_written_once() {
    model_bounded(PREEMPTIONS, || {
        let c = Cpu0::new(1, 4);
        c.pcp.state.store(PCP_UNWRITTEN, Ordering::Relaxed);
        let wrote = Arc::new(AtomicUsize::new(0));
        let up = |c: Arc<Cpu0>, wrote: Arc<AtomicUsize>| {
            move || {
                if c.pcp.write_once() {
                    wrote.fetch_add(1, Ordering::Relaxed);
                }
                assert!(c.pcp.is_ready());
                let p = c.alloc().expect("the zone has frames");
                c.free(p);
            }
        };
        both(up(c.clone(), wrote.clone()), up(c.clone(), wrote.clone()));
        assert_eq!(wrote.load(Ordering::Relaxed), 1, "written exactly once");
        c.check(&[]);
    });
}
