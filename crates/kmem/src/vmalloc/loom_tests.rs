//! Loom model of the recycle slots' protocol (`recycle.rs`): areas (tokens 1..=3) are put,
//! taken and drained by two CPUs at once. Afterwards every token is owned exactly once: in a
//! slot, by a taker, or evicted (really freed) - never lost, never handed out twice.

use loom::sync::atomic::AtomicUsize;
use loom::sync::{Arc, Mutex};

use super::recycle::{slots_drain, slots_put, slots_take};
use crate::sync::Ordering;
use crate::testing::loom::{both, model};
use crate::testing::std;

type Log = Arc<Mutex<std::vec::Vec<usize>>>;

fn check(slots: &[AtomicUsize], owned: &Log, expect: &[usize]) {
    let mut all: std::vec::Vec<usize> = owned.lock().unwrap().clone();
    all.extend(slots.iter().map(|s| s.load(Ordering::Relaxed)).filter(|&p| p != 0));
    all.sort_unstable();
    assert_eq!(all, expect, "every area owned exactly once");
}

#[test]
fn put_and_take_against_drain() {
    model(|| {
        let slots: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(1), AtomicUsize::new(0)]);
        let owned: Log = Arc::new(Mutex::new(std::vec::Vec::new()));
        let (s1, o1) = (slots.clone(), owned.clone());
        let (s2, o2) = (slots.clone(), owned.clone());
        both(
            move || {
                // The owning CPU: frees area 2, then wants an area of area 1's kind.
                slots_put(&s1[..], 2, |p| o1.lock().unwrap().push(p));
                if let Some(p) = slots_take(&s1[..], |p| p == 1, |p| o1.lock().unwrap().push(p)) {
                    o1.lock().unwrap().push(p);
                }
            },
            move || {
                // Another CPU drains (vm_unmap_aliases).
                slots_drain(&s2[..], |p| o2.lock().unwrap().push(p));
            },
        );
        check(&slots[..], &owned, &[1, 2]);
    });
}

#[test]
fn two_putters_with_eviction() {
    model(|| {
        let slots: Arc<[AtomicUsize; 1]> = Arc::new([AtomicUsize::new(1)]);
        let owned: Log = Arc::new(Mutex::new(std::vec::Vec::new()));
        let (s1, o1) = (slots.clone(), owned.clone());
        let (s2, o2) = (slots.clone(), owned.clone());
        both(
            move || slots_put(&s1[..], 2, |p| o1.lock().unwrap().push(p)),
            move || {
                slots_put(&s2[..], 3, |p| o2.lock().unwrap().push(p));
                if let Some(p) = slots_take(&s2[..], |_| false, |p| o2.lock().unwrap().push(p)) {
                    o2.lock().unwrap().push(p);
                }
            },
        );
        check(&slots[..], &owned, &[1, 2, 3]);
    });
}
