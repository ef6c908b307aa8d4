//! Loom model of KFENCE's sampling gate (`meta::take_gate`): CPUs racing on the careful path
//! once the deadline has passed serve exactly one allocation from the pool per opening, and a
//! forced allocation is served once. A gate that reads the deadline and then stores the next
//! one (no compare-exchange) lets two CPUs through: caught.

use loom::sync::atomic::AtomicUsize as LoomUsize;
use loom::sync::Arc;

use super::meta::take_gate;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use crate::testing::loom::{both, model};

struct Gate {
    next_ns: AtomicU64,
    forced: AtomicUsize,
    taken: LoomUsize,
}

fn gate(next: u64, forced: usize) -> Arc<Gate> {
    Arc::new(Gate { next_ns: AtomicU64::new(next), forced: AtomicUsize::new(forced), taken: LoomUsize::new(0) })
}

fn race(g: &Arc<Gate>, take: fn(&Gate) -> bool) {
    let (a, b) = (g.clone(), g.clone());
    both(
        move || {
            if take(&a) {
                a.taken.fetch_add(1, Ordering::Relaxed);
            }
        },
        move || {
            if take(&b) {
                b.taken.fetch_add(1, Ordering::Relaxed);
            }
        },
    );
}

#[test]
fn one_allocation_per_opening() {
    model(|| {
        let g = gate(100, 0);
        race(&g, |g| take_gate(&g.next_ns, &g.forced, 150, 1));
        assert_eq!(g.taken.load(Ordering::Relaxed), 1, "exactly one CPU takes the opening");
        assert_eq!(g.next_ns.load(Ordering::Relaxed), 1_000_150, "the next deadline is an interval on");
    });
}

#[test]
fn a_forced_allocation_is_served_once() {
    model(|| {
        let g = gate(u64::MAX, 1);
        race(&g, |g| take_gate(&g.next_ns, &g.forced, 150, 1));
        assert_eq!(g.taken.load(Ordering::Relaxed), 1);
        assert_eq!(g.forced.load(Ordering::Relaxed), 0);
    });
}

/// The gate without its compare-exchange.
fn racy_gate(g: &Gate) -> bool {
    let deadline = g.next_ns.load(Ordering::Relaxed);
    if 150 < deadline {
        return false;
    }
    g.next_ns.store(1_000_150, Ordering::Relaxed);
    true
}

#[test]
#[should_panic(expected = "exactly one CPU takes the opening")]
fn a_gate_without_compare_exchange_is_caught() {
    model(|| {
        let g = gate(100, 0);
        race(&g, racy_gate);
        assert_eq!(g.taken.load(Ordering::Relaxed), 1, "exactly one CPU takes the opening");
    });
}
