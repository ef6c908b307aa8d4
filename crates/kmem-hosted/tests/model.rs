//! Property test of the page allocator against a simple model: a set of live blocks.
//!
//! For any sequence of allocations (random orders and GFP flags) and frees, no two live
//! blocks overlap, each block is aligned to its order and in the zone its flags allow, the
//! free lists stay consistent with the counters, and freeing everything restores the
//! boot-time buddyinfo exactly.

use crate::common;

use kmem::{Gfp, Order, PageRef, ZoneType};
use kmem_hosted::MachineBuilder;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc { order: u32, gfp: u8 },
    Free { index: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..=10, 0u8..4).prop_map(|(order, gfp)| Op::Alloc { order, gfp }),
        2 => any::<usize>().prop_map(|index| Op::Free { index }),
    ]
}

fn gfp(i: u8) -> Gfp {
    let g = match i {
        0 => Gfp::KERNEL,
        1 => Gfp::KERNEL | Gfp::DMA,
        2 => Gfp::HIGHUSER_MOVABLE,
        _ => Gfp::ATOMIC | Gfp::COMP,
    };
    g | Gfp::NOWARN
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
        let m = MachineBuilder::new().ram_mib(48).cpus(1).build().unwrap();
        let boot = common::buddyinfo(&m);
        let boot_free = common::free_pages(&m);
        let mut live: Vec<(PageRef<'_>, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { order, gfp: g } => {
                    let Ok(p) = m.alloc_pages(gfp(g), Order::of(order)) else { continue };
                    let (s, e) = (p.pfn().as_usize(), p.pfn().as_usize() + (1 << order));
                    prop_assert_eq!(s % (1 << order), 0, "misaligned block");
                    for (q, o) in &live {
                        let (qs, qe) = (q.pfn().as_usize(), q.pfn().as_usize() + (1 << o));
                        prop_assert!(e <= qs || qe <= s, "overlap {:?}/{} with {:?}/{}", p, order, q, o);
                    }
                    if g == 1 {
                        prop_assert_eq!(m.page_zone(p.page()).zone_type(), ZoneType::Dma);
                    }
                    live.push((p, order));
                }
                Op::Free { index } if !live.is_empty() => {
                    let (p, o) = live.swap_remove(index % live.len());
                    // SAFETY: the model owns exactly the live blocks.
                    unsafe { m.__free_pages(p, Order::of(o)) };
                }
                Op::Free { .. } => {}
            }
            let used: usize = live.iter().map(|(_, o)| 1usize << o).sum();
            prop_assert_eq!(common::free_pages(&m) + used, boot_free);
        }
        prop_assert!(m.verify().is_ok(), "{:?}", m.verify());
        for (p, o) in live.drain(..) {
            // SAFETY: as above.
            unsafe { m.__free_pages(p, Order::of(o)) };
        }
        prop_assert_eq!(common::buddyinfo(&m), boot);
        prop_assert!(m.verify().is_ok());
        prop_assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0);
    }
}
