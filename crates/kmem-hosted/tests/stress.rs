//! Several threads (more than the machine has CPUs) allocate and free random orders, hand
//! blocks to each other to free, and check the contents of every block they own.

use crate::common;

use std::sync::mpsc;

use kmem::{Gfp, Order, PageRef};
use kmem_hosted::MachineBuilder;
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// Fills a block with a pattern derived from its frame number.
fn stamp(m: &kmem_hosted::Machine, p: PageRef<'_>, order: u32) {
    let a = m.page_address(p).unwrap().as_mut_ptr::<u64>();
    let words = (4096 << order) / 8;
    for i in (0..words).step_by(61) {
        // SAFETY: the block is ours and mapped.
        unsafe { a.add(i).write(p.pfn().as_usize() as u64 ^ i as u64) };
    }
}

fn check(m: &kmem_hosted::Machine, p: PageRef<'_>, order: u32) {
    let a = m.page_address(p).unwrap().as_mut_ptr::<u64>();
    let words = (4096 << order) / 8;
    for i in (0..words).step_by(61) {
        // SAFETY: the block is ours and mapped.
        let v = unsafe { a.add(i).read() };
        assert_eq!(v, p.pfn().as_usize() as u64 ^ i as u64, "block {p:?} corrupted at word {i}");
    }
}

#[test]
fn threads_allocate_free_and_cross_free() {
    const THREADS: usize = 6;
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    let boot = common::buddyinfo(&m);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<(PageRef<'_>, u32)>()).unzip();
    let leftovers = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (t, rx) in rxs.into_iter().enumerate() {
            let m = &m;
            let next = txs[(t + 1) % THREADS].clone();
            handles.push(s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t as u64);
                let mut mine: Vec<(PageRef<'_>, u32)> = Vec::new();
                for _ in 0..20_000 {
                    while let Ok((p, o)) = rx.try_recv() {
                        check(m, p, o);
                        // SAFETY: ownership was handed to us over the channel.
                        unsafe { m.__free_pages(p, Order::of(o)) };
                    }
                    if mine.len() < 48 && rng.gen_bool(0.55) {
                        let order = [0, 0, 0, 0, 1, 2, 3, 5][rng.gen_range(0..8)];
                        let gfp = if rng.gen_bool(0.2) { Gfp::ATOMIC } else { Gfp::KERNEL };
                        if let Ok(p) = m.alloc_pages(gfp | Gfp::NOWARN, Order::of(order)) {
                            stamp(m, p, order);
                            mine.push((p, order));
                        }
                    } else if !mine.is_empty() {
                        let (p, o) = mine.swap_remove(rng.gen_range(0..mine.len()));
                        check(m, p, o);
                        if rng.gen_bool(0.3) {
                            next.send((p, o)).unwrap();
                        } else {
                            // SAFETY: ours.
                            unsafe { m.__free_pages(p, Order::of(o)) };
                        }
                    }
                }
                for (p, o) in mine {
                    check(m, p, o);
                    // SAFETY: ours.
                    unsafe { m.__free_pages(p, Order::of(o)) };
                }
                rx
            }));
        }
        drop(txs);
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    // Blocks sent to a thread after it finished are still in its channel.
    for rx in leftovers {
        for (p, o) in rx.try_iter() {
            check(&m, p, o);
            // SAFETY: ownership came over the channel.
            unsafe { m.__free_pages(p, Order::of(o)) };
        }
    }
    m.verify().unwrap();
    assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0);
    assert_eq!(common::buddyinfo(&m), boot, "every page came back");
}
