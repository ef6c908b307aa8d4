//! Loom model of `__GFP_NOFAIL`'s wait and wake-up (`nofail.rs`, `scripts/loom.sh`): the
//! window between "no memory" and sleeping.
//!
//! A zone of one frame, allocated before the model threads start (the machine is full).
//! Thread 0 is a `__GFP_NOFAIL` request: it counts itself in the zone ([`nofail_enter`], the
//! real code), looks for a page in the real buddy lists, and sleeps on a wait queue until the
//! zone has a free page, as the hosted platform's `wait_for_free_memory` does (a condition
//! checked under the queue's lock, a condition variable). Thread 1 frees the page to the
//! buddy lists and, as `free_one_page`'s callers do, asks [`Zone::has_nofail_waiters`] (the
//! real code) whether to wake the queue. In every interleaving the sleeper must end with the
//! page; a lost wake-up leaves it blocked for ever, which loom reports as a deadlock.
//!
//! The negative model frees with the check made before the page reaches the lists: the
//! sleeper can count itself and find nothing after that check, and sleep through the free.

use loom::sync::{Arc, Condvar, Mutex};

use super::nofail::{nofail_enter, nofail_leave};
use crate::addr::{Order, Pfn};
use crate::mm::buddy::{self, Take};
use crate::mm::zone::Zone;
use crate::mm::zone_type::Migratetype;
use crate::sync::Ordering;
use crate::testing::loom::{both, model, ModelZone};

const MT: Migratetype = Migratetype::Movable;

/// The platform's free-memory wait queue (hosted: a mutex and a condition variable).
struct WaitQueue {
    lock: Mutex<()>,
    cv: Condvar,
}

impl WaitQueue {
    /// `wait_for_free_memory(ready)`: sleeps until `ready()`, checked under the queue's lock.
    fn wait(&self, ready: impl Fn() -> bool) {
        let mut g = self.lock.lock().unwrap();
        while !ready() {
            g = self.cv.wait(g).unwrap();
        }
    }
    /// `wake_free_memory_waiters()`.
    fn wake(&self) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

struct World {
    z: ModelZone,
    wq: WaitQueue,
}

impl World {
    /// A full machine: one frame, allocated. Returns it too.
    fn full() -> (Arc<Self>, Pfn) {
        let w = Self { z: ModelZone::new(1), wq: WaitQueue { lock: Mutex::new(()), cv: Condvar::new() } };
        let pfn = w.take().expect("the zone's only frame");
        assert!(w.take().is_none());
        (Arc::new(w), pfn)
    }

    fn zone(&self) -> &Zone {
        &self.z.zone
    }

    /// `get_page_from_freelist` reduced to the buddy lists: an order-0 page, if any.
    fn take(&self) -> Option<Pfn> {
        let g = self.zone().area.lock(&self.z.platform);
        buddy::rmqueue(&g, self.zone(), &self.z.mm, Order::ZERO, MT, Take::default())
    }

    /// `__free_pages` of an order-0 page reaching the buddy lists, then the wake-up;
    /// `broken`: the sleepers are looked for before the page is on the lists.
    fn free(&self, pfn: Pfn, broken: bool) {
        let early = broken && self.zone().has_nofail_waiters();
        {
            let g = self.zone().area.lock(&self.z.platform);
            buddy::free_one_page(&g, self.zone(), &self.z.mm, pfn, Order::ZERO, MT, false);
        }
        if if broken { early } else { self.zone().has_nofail_waiters() } {
            self.wq.wake();
        }
    }

    /// `nofail_wait` for an order-0 request on this zone: returns the page it got.
    fn nofail_alloc(&self) -> Pfn {
        let zones = |f: &mut dyn FnMut(&Zone)| f(self.zone());
        nofail_enter(&zones);
        let got = loop {
            if let Some(pfn) = self.take() {
                break pfn;
            }
            self.wq.wait(|| self.zone().free_pages() >= 1);
        };
        nofail_leave(&zones);
        got
    }
}

fn run(broken: bool) {
    model(move || {
        let (w, pfn) = World::full();
        let (sleeper, freer) = (w.clone(), w.clone());
        both(
            move || assert_eq!(sleeper.nofail_alloc(), pfn, "the NOFAIL request gets the freed page"),
            move || freer.free(pfn, broken),
        );
        assert_eq!(w.zone().free_pages(), 0);
        assert_eq!(w.zone().nofail_waiters.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn nofail_sleeper_is_woken_by_the_free() {
    run(false);
}

#[test]
#[should_panic(expected = "deadlock")]
fn a_free_that_looks_for_sleepers_too_early_is_caught() {
    run(true);
}
