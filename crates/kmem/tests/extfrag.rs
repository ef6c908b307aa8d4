//! `unusable_index` and `extfrag_index` on a real hosted machine: golden texts derived by hand
//! from the free block counts of the small machine of `kmem-hosted/tests/proc_views.rs`.

use kmem::{Gfp, Order};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn show(
    m: &Machine,
    view: fn(&kmem::Kmem<kmem_hosted::HostedPlatform>, &mut dyn std::fmt::Write) -> std::fmt::Result,
) -> String {
    let mut s = String::new();
    view(m, &mut s).unwrap();
    s
}

/// x86-64, 256 MiB, 2 CPUs. Free blocks per order after boot (see `golden_buddyinfo` in
/// `proc_views.rs`):
/// - DMA: 2 2 2 2 2 1 1 0 1 1 3 (3998 pages, 18 blocks);
/// - DMA32: 0 1 0 1 0 1 1 1 1 0 59 (60906 pages, 66 blocks).
fn small() -> Machine {
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    let mut b = String::new();
    kmem::proc::buddyinfo(&m, &mut b).unwrap();
    let rows: Vec<Vec<usize>> =
        b.lines().map(|l| l[21..].split_whitespace().map(|n| n.parse().unwrap()).collect()).collect();
    assert_eq!(rows, [vec![2, 2, 2, 2, 2, 1, 1, 0, 1, 1, 3], vec![0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 59]]);
    m
}

#[test]
fn golden_fresh_machine() {
    pin_current_thread(0);
    let m = small();
    // DMA, order 2: the 2 order-0 and 2 order-1 blocks (6 pages) are unusable: 6/3998 = 0.0015.
    // Order 10: all but the 3 order-10 blocks: (3998 - 3072) / 3998 = 0.2316.
    // DMA32, order 7: 2 + 8 + 32 + 64 = 106 of 60906 pages in smaller blocks = 0.0017.
    assert_eq!(
        show(&m, kmem::proc::unusable_index),
        "Node 0, zone      DMA 0.000 0.000 0.001 0.003 0.007 0.015 0.023 0.039 0.039 0.103 0.231 \n\
         Node 0, zone    DMA32 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.001 0.003 0.008 0.008 \n"
    );
    // Every order can be served: -1 everywhere, in the wide format.
    let minus = " -1.000".repeat(11);
    assert_eq!(
        show(&m, kmem::proc::extfrag_index),
        format!("Node 0, zone      DMA{minus} \nNode 0, zone    DMA32{minus} \n")
    );
}

#[test]
fn golden_after_dma_is_used_up() {
    pin_current_thread(0);
    let m = small();
    // Follow the buddy lists block by block: no per-CPU lists.
    m.set_pcp_enabled(false);
    // Take DMA's 3 order-10, 1 order-9 and 1 order-8 blocks: 158 pages in 12 blocks of orders
    // 0..=6 are left (2 2 2 2 2 1 1 0 0 0 0).
    let taken: Vec<_> =
        [10, 10, 10, 9, 8].iter().map(|&o| (m.alloc_pages(Gfp::KERNEL | Gfp::DMA, Order::of(o)).unwrap(), o)).collect();
    // unusable, order 1: the 2 order-0 pages: 2/158 = 0.0126; order 6: all but the order-6
    // block: 94/158 = 0.5949; orders 7..=10: nothing fits, 1.000.
    // extfrag, order 7: 1000 - (1000 + 158000/128) / 12 = 1000 - 2234/12 = 1000 - 186 = 814;
    // order 8: 1000 - (1000 + 617) / 12 = 866; order 9: 1000 - 1308/12 = 891;
    // order 10: 1000 - 1154/12 = 904.
    let unusable = show(&m, kmem::proc::unusable_index);
    assert_eq!(
        unusable.lines().next().unwrap(),
        "Node 0, zone      DMA 0.000 0.012 0.037 0.088 0.189 0.392 0.594 1.000 1.000 1.000 1.000 "
    );
    let extfrag = show(&m, kmem::proc::extfrag_index);
    assert_eq!(
        extfrag.lines().next().unwrap(),
        "Node 0, zone      DMA -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000  0.814  0.866  0.891  0.904 "
    );
    // DMA32 did not change.
    assert!(unusable.lines().nth(1).unwrap().ends_with(" 0.003 0.008 0.008 "));
    for (p, o) in taken {
        // SAFETY: ours, unused from here on.
        unsafe { m.__free_pages(p, Order::of(o)) };
    }
    assert!(show(&m, kmem::proc::extfrag_index).lines().next().unwrap().ends_with(" -1.000 "));
}
