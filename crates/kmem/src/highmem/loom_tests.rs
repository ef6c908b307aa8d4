//! Loom models of the pkmap slot protocol (`pkmap.rs`, `scripts/loom.sh`) on two slots: the
//! refcounts, the wait for a free slot when every slot has users (a lost wake-up would leave
//! a waiter spinning forever, which loom reports), and the lazy flush. Fake page tables
//! check that a slot is mapped only once its old translation was cleared *and* flushed, and
//! that a slot with users is never unmapped or remapped under them.

use loom::sync::Arc;

use super::pkmap::{Pkmap, SlotOps};
use crate::addr::Pfn;
use crate::platform::{MapError, TlbFlush};
use crate::sync::{AtomicU32, Ordering};
use crate::testing::loom::{both, model_bounded, ModelPlatform};

const SLOTS: usize = 2;

/// Page tables of the two slots: the frame + 1 each maps, and whether a cleared entry may
/// still live in a TLB (cleared, not yet flushed).
struct Ptes {
    pte: [AtomicU32; SLOTS],
    stale: [AtomicU32; SLOTS],
    /// A broken platform that never flushes (the negative model).
    skip_flush: bool,
}

impl Ptes {
    fn new(skip_flush: bool) -> Self {
        Self { pte: [AtomicU32::new(0), AtomicU32::new(0)], stale: [AtomicU32::new(0), AtomicU32::new(0)], skip_flush }
    }
}

impl SlotOps for Ptes {
    fn map(&self, nr: usize, pfn: Pfn) -> Result<(), MapError> {
        assert_eq!(self.pte[nr].load(Ordering::Relaxed), 0, "slot {nr} mapped over a live PTE");
        assert_eq!(self.stale[nr].load(Ordering::Relaxed), 0, "slot {nr} reused before its TLB flush");
        self.pte[nr].store(pfn.as_usize() as u32 + 1, Ordering::Relaxed);
        Ok(())
    }
    fn unmap(&self, nr: usize, n: usize) -> TlbFlush {
        for i in nr..nr + n {
            self.pte[i].store(0, Ordering::Relaxed);
            self.stale[i].store(1, Ordering::Relaxed);
        }
        TlbFlush::range(crate::VirtAddr::new(0x1000 * (nr + 1)), n)
    }
    fn flush(&self, f: TlbFlush) {
        if !self.skip_flush {
            let (s, e) = f.bounds().expect("a flush covers something");
            for i in s.as_usize() / 0x1000 - 1..e.as_usize() / 0x1000 - 1 {
                self.stale[i].store(0, Ordering::Relaxed);
            }
        }
        f.done();
    }
}

type Ring = Pkmap<SLOTS, 2>;

/// kmaps `pfn`, checks the slot maps it, and returns the slot.
fn kmap(ring: &Ring, ptes: &Ptes, pfn: usize) -> usize {
    let p = ModelPlatform::model();
    let nr = ring.kmap_high(&p, ptes, Pfn::new(pfn)).unwrap();
    assert_eq!(ptes.pte[nr].load(Ordering::Relaxed), pfn as u32 + 1, "the slot maps the page");
    nr
}

fn kunmap(ring: &Ring, ptes: &Ptes, pfn: usize, nr: usize) {
    assert_eq!(ptes.pte[nr].load(Ordering::Relaxed), pfn as u32 + 1, "a slot with users stays mapped");
    assert!(ring.kunmap_high(&ModelPlatform::model(), Pfn::new(pfn)));
}

fn quiescent(ring: &Ring) {
    assert_eq!(ring.in_use.load(Ordering::Relaxed), 0);
    for c in &ring.count {
        assert!(c.load(Ordering::Relaxed) <= 1, "no users left");
    }
}

/// Three pages on two slots: one CPU holds two kmaps at once while the other kmaps a third
/// page, so one of them may find every slot busy and wait for the other's kunmap.
#[test]
fn kmap_waits_for_a_free_slot_and_is_woken() {
    model_bounded(2, || {
        let ring = Arc::new(Ring::new());
        let ptes = Arc::new(Ptes::new(false));
        let (r1, p1) = (ring.clone(), ptes.clone());
        let (r2, p2) = (ring.clone(), ptes.clone());
        both(
            move || {
                let a = kmap(&r1, &p1, 10);
                let b = kmap(&r1, &p1, 11);
                assert_ne!(a, b);
                kunmap(&r1, &p1, 10, a);
                kunmap(&r1, &p1, 11, b);
            },
            move || {
                let c = kmap(&r2, &p2, 12);
                kunmap(&r2, &p2, 12, c);
            },
        );
        quiescent(&ring);
    });
}

/// Two CPUs kmap the same page: one slot, refcounted; a second page meanwhile forces the
/// ring to wrap and flush.
#[test]
fn one_page_kmapped_twice_shares_its_slot() {
    model_bounded(2, || {
        let ring = Arc::new(Ring::new());
        let ptes = Arc::new(Ptes::new(false));
        let (r1, p1) = (ring.clone(), ptes.clone());
        let (r2, p2) = (ring.clone(), ptes.clone());
        both(
            move || {
                let a = kmap(&r1, &p1, 20);
                kunmap(&r1, &p1, 20, a);
                let b = kmap(&r1, &p1, 21);
                kunmap(&r1, &p1, 21, b);
            },
            move || {
                let a = kmap(&r2, &p2, 20);
                kunmap(&r2, &p2, 20, a);
            },
        );
        quiescent(&ring);
    });
}

/// The checker catches a platform that skips the TLB flush at the wrap: the unused slot is
/// reused while its old translation may be live.
#[test]
#[should_panic(expected = "reused before its TLB flush")]
fn a_missing_flush_is_caught() {
    model_bounded(2, || {
        let ring = Ring::new();
        let ptes = Ptes::new(true);
        let a = kmap(&ring, &ptes, 30); // slot 1
        kunmap(&ring, &ptes, 30, a);
        let b = kmap(&ring, &ptes, 31); // wraps: slot 1 unmapped (no flush), slot 0 taken
        kunmap(&ring, &ptes, 31, b);
        kmap(&ring, &ptes, 32); // slot 1 again
    });
}
