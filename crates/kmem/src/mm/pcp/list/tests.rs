//! [`PcpList`] against a double-ended queue: every operation, in any order, keeps the same
//! blocks in the same order (the hot stack from its top, then the cold stack from its
//! bottom), the cold end gives the coldest block first (what Linux's `free_pcppages_bulk`
//! takes with `list_last_entry`), and blocks leave with NIL links.

use super::*;
use crate::addr::Order;
use crate::gfp::Gfp;
use crate::testing::std::{boxed::Box, collections::VecDeque, vec::Vec};
use proptest::prelude::*;

/// A test machine's memmap and `n` order-0 frames allocated from it (ours: NIL links; the
/// machine is leaked, and so are the frames).
fn frames(n: usize) -> (&'static Memmap, Vec<u32>) {
    let k = Box::leak(Box::new(crate::testing::machine(16)));
    let frames = (0..n).map(|_| k.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap().pfn().as_usize() as u32).collect();
    (k.memmap(), frames)
}

#[derive(Clone, Debug)]
enum Op {
    PushHead,
    PushTail,
    PopHot,
    PopFirst,
    PopLast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::PushHead),
        2 => Just(Op::PushTail),
        1 => Just(Op::PopHot),
        2 => Just(Op::PopFirst),
        2 => Just(Op::PopLast),
    ]
}

/// The list in order, head first.
fn contents(l: &PcpList, mm: &Memmap) -> Vec<u32> {
    let (mut hot, mut cold) = (Vec::new(), Vec::new());
    l.walk(mm, usize::MAX, |pfn, _, is_cold| {
        if is_cold { &mut cold } else { &mut hot }.push(pfn.as_usize() as u32);
        true
    })
    .expect("a well-formed list");
    hot.extend(cold.iter().rev());
    hot
}

/// A block that left the list: NIL links, and its frame free for reuse.
fn left(pfn: Pfn, page: &Page, spare: &mut Vec<u32>) {
    assert_eq!(page.links(), (NIL, NIL), "a block leaves with NIL links");
    spare.push(pfn.as_usize() as u32);
}

proptest! {
    #[test]
    fn behaves_as_a_deque(ops in proptest::collection::vec(op(), 1..200)) {
        let (mm, mut spare) = frames(200);
        let list = PcpList::new();
        let mut model: VecDeque<u32> = VecDeque::new();
        for op in ops {
            let got = match op {
                Op::PushHead | Op::PushTail => {
                    let f = spare.pop().expect("200 frames for at most 200 pushes");
                    let pfn = Pfn::new(f as usize);
                    let page = mm.pfn_to_page(pfn);
                    if matches!(op, Op::PushHead) {
                        list.push_head(pfn, page);
                        model.push_front(f);
                    } else {
                        list.push_tail(pfn, page);
                        model.push_back(f);
                    }
                    None
                }
                Op::PopHot => {
                    // The fast pop gives the head or nothing (when only the cold stack has
                    // blocks); it never gives another block.
                    let got = list.pop_hot(mm);
                    if got.is_some() {
                        prop_assert_eq!(got.map(|(p, _)| p.as_usize() as u32), model.pop_front());
                    }
                    got
                }
                Op::PopFirst => {
                    let got = list.pop_first(mm);
                    prop_assert_eq!(got.map(|(p, _)| p.as_usize() as u32), model.pop_front());
                    got
                }
                Op::PopLast => {
                    let got = list.pop_last(mm);
                    prop_assert_eq!(got.map(|(p, _)| p.as_usize() as u32), model.pop_back(), "coldest first");
                    got
                }
            };
            if let Some((pfn, page)) = got {
                left(pfn, page, &mut spare);
            }
            prop_assert_eq!(list.is_empty(), model.is_empty());
            prop_assert_eq!(contents(&list, mm), model.iter().copied().collect::<Vec<_>>());
        }
    }
}

#[test]
fn walk_catches_a_prev_link_and_a_cycle() {
    let (mm, f) = frames(3);
    let list = PcpList::new();
    for &f in &f {
        list.push_tail(Pfn::new(f as usize), mm.pfn_to_page(Pfn::new(f as usize)));
    }
    assert_eq!(list.walk(mm, 3, |_, _, _| true), Ok(3));
    let second = Pfn::new(f[1] as usize);
    mm.pfn_to_page(second).set_prev(f[0]);
    assert_eq!(list.walk(mm, 3, |_, _, _| true), Err(second), "a block with a prev link");
    mm.pfn_to_page(second).set_prev(NIL);
    // The cold stack's bottom (the first pushed) linked back to its top: a cycle.
    mm.pfn_to_page(Pfn::new(f[0] as usize)).set_next(f[2]);
    assert!(list.walk(mm, 3, |_, _, _| true).is_err(), "a cycle");
}
