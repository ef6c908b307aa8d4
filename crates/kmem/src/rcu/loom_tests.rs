//! Loom model of grace-period detection (`scripts/loom.sh`), on the real [`GpState`].
//!
//! CPU 1 is a reader: `enter`, load the published pointer, read the object through it,
//! `exit`. The updater (CPU 0, outside any section) unpublishes the object, takes a
//! grace-period snapshot, drives `advance` until the snapshot is done, then frees the object
//! (writes it). The object is a loom `UnsafeCell`: a reader's access that is not ordered
//! before the free is a causality violation, so the model fails if a grace period can end
//! while a reader that may have seen the object is still in its section. The negative model
//! drops the reader's fence and must fail.

use loom::cell::UnsafeCell;
use loom::sync::Arc;

use super::gp::{GpCpu, GpState};
use crate::sync::{AtomicUsize, Ordering};
use crate::testing::loom::{both, model};

const MAGIC: u64 = 0x5afe;

struct World {
    gp: GpState,
    /// CPU 0 (the updater's, never in a section) and CPU 1 (the reader's).
    cpus: [GpCpu; 2],
    /// 1 while the object is published, 0 once unpublished.
    ptr: AtomicUsize,
    obj: UnsafeCell<u64>,
}

// SAFETY: `obj` is read by readers that found it published and written by the updater after
// a grace period: whether those accesses are ordered is what the model checks.
unsafe impl Sync for World {}

fn world() -> Arc<World> {
    Arc::new(World {
        gp: GpState::default(),
        cpus: [GpCpu::default(), GpCpu::default()],
        ptr: AtomicUsize::new(1),
        obj: UnsafeCell::new(MAGIC),
    })
}

fn updater(w: Arc<World>) -> impl FnOnce() {
    move || {
        w.ptr.store(0, Ordering::Relaxed);
        let s = w.gp.snap();
        w.gp.request(s);
        loop {
            w.gp.advance(2, |i| &w.cpus[i]);
            if w.gp.done(s) {
                break;
            }
            loom::thread::yield_now();
        }
        // SAFETY: loom checks this write against every reader's read.
        w.obj.with_mut(|p| unsafe { *p = 0xdead });
    }
}

fn read(w: &World) {
    if w.ptr.load(Ordering::Acquire) != 0 {
        // SAFETY: loom checks this read against the updater's write.
        let v = w.obj.with(|p| unsafe { *p });
        assert_eq!(v, MAGIC, "a reader saw the object freed");
    }
}

/// A reader (one section, nested once) against an updater: the free is always ordered after
/// the reader's accesses, whichever order the section and the grace period take.
#[test]
fn grace_period_waits_for_readers_that_started_before_it() {
    model(|| {
        let w = world();
        let reader = {
            let w = w.clone();
            move || {
                w.cpus[1].enter();
                w.cpus[1].enter();
                w.cpus[1].exit().unwrap();
                read(&w);
                w.cpus[1].exit().unwrap();
                // A second section after the first: must not confuse the snapshot.
                w.cpus[1].enter();
                read(&w);
                w.cpus[1].exit().unwrap();
            }
        };
        both(reader, updater(w.clone()));
        assert_eq!(w.cpus[1].depth(), 0);
    });
}

/// Without the fence after raising the depth, the reader's load of the pointer can be
/// ordered before its store: the grace period misses it and the free races with the read.
#[test]
#[should_panic]
fn a_reader_without_the_fence_is_caught() {
    model(|| {
        let w = world();
        let reader = {
            let w = w.clone();
            move || {
                w.cpus[1].enter_unfenced();
                read(&w);
                w.cpus[1].exit().unwrap();
            }
        };
        both(reader, updater(w.clone()));
    });
}
