//! Loom model of the deferred-free list (`defer.rs`, Linux's `llist`): two contexts push
//! nodes (`kfree_nolock` deferring) while a third takes the whole list and walks it (a safe
//! point freeing them). Links live in loom cells, so a walk that reads a link its pusher's
//! write does not happen-before is a data race loom reports. Afterwards every node was taken
//! exactly once. The negative model pushes with a relaxed exchange and must be caught.

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Mutex};

use super::Llist;
use crate::sync::{AtomicUsize, Ordering};
use crate::testing::loom::{both, model};
use crate::testing::std;

/// Nodes 1..=3; `links[i]` is node i's link.
struct Nodes {
    links: [UnsafeCell<usize>; 4],
}

// SAFETY: the cells are accessed as the list's protocol allows; loom checks every access.
unsafe impl Sync for Nodes {}

impl Nodes {
    fn new() -> Self {
        Self { links: core::array::from_fn(|_| UnsafeCell::new(0)) }
    }
    fn set(&self, node: usize, next: usize) {
        // SAFETY: the pusher owns `node` until its exchange publishes it.
        self.links[node].with_mut(|p| unsafe { *p = next });
    }
    fn get(&self, node: usize) -> usize {
        // SAFETY: the taker owns the chain `del_all` returned.
        self.links[node].with(|p| unsafe { *p })
    }
    fn walk(&self, mut cur: usize, seen: &mut std::vec::Vec<usize>) {
        while cur != 0 {
            seen.push(cur);
            cur = self.get(cur);
        }
    }
}

#[test]
fn two_pushers_against_a_taker() {
    model(|| {
        let list = Arc::new(Llist::new());
        let nodes = Arc::new(Nodes::new());
        let seen: Arc<Mutex<std::vec::Vec<usize>>> = Arc::new(Mutex::new(std::vec::Vec::new()));
        let (l1, n1) = (list.clone(), nodes.clone());
        let (l2, n2, s2) = (list.clone(), nodes.clone(), seen.clone());
        both(
            move || {
                l1.add(1, |a, b| n1.set(a, b));
                l1.add(2, |a, b| n1.set(a, b));
            },
            move || {
                l2.add(3, |a, b| n2.set(a, b));
                let mut got = std::vec::Vec::new();
                n2.walk(l2.del_all(), &mut got);
                s2.lock().unwrap().extend(got);
            },
        );
        let mut all = seen.lock().unwrap().clone();
        nodes.walk(list.del_all(), &mut all);
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3], "every node taken exactly once");
    });
}

/// `llist_add` with a relaxed exchange: the taker may follow a link whose write it has not
/// seen. Loom must report the race.
#[test]
#[should_panic]
fn relaxed_push_is_caught() {
    model(|| {
        let head = Arc::new(AtomicUsize::new(0));
        let nodes = Arc::new(Nodes::new());
        let (h1, n1) = (head.clone(), nodes.clone());
        let (h2, n2) = (head.clone(), nodes.clone());
        both(
            move || {
                for node in [1usize, 2] {
                    let first = h1.load(Ordering::Relaxed);
                    n1.set(node, first);
                    h1.store(node, Ordering::Relaxed);
                }
            },
            move || {
                let mut seen = std::vec::Vec::new();
                n2.walk(h2.swap(0, Ordering::Relaxed), &mut seen);
            },
        );
    });
}
