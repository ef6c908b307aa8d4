//! vmalloc under load: many threads with fixed, random-size, aligned and random-alignment
//! requests, each area written and read back; a fragmented range whose 1-page holes small
//! requests fill exactly; thousands of live areas with churn beside them.

use std::collections::BTreeSet;

use kmem::{Gfp, ReportKind, PAGE_SIZE};
use kmem_hosted::MachineBuilder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Writes a tag into the first and last word of every page and checks them back.
fn stamp(p: *mut u8, pages: usize, tag: u64) {
    for i in 0..pages {
        // SAFETY: page i of a live area of `pages` pages.
        unsafe {
            let pg = p.add(i * PAGE_SIZE).cast::<u64>();
            pg.write(tag ^ i as u64);
            pg.add(PAGE_SIZE / 8 - 1).write(!tag);
        }
    }
}

fn check(p: *mut u8, pages: usize, tag: u64) {
    for i in 0..pages {
        // SAFETY: as in `stamp`.
        unsafe {
            let pg = p.add(i * PAGE_SIZE).cast::<u64>();
            assert_eq!(pg.read(), tag ^ i as u64, "page {i} of {p:?}");
            assert_eq!(pg.add(PAGE_SIZE / 8 - 1).read(), !tag);
        }
    }
}

#[test]
fn concurrent_mixed_requests() {
    let m = MachineBuilder::new().ram_mib(512).cpus(2).migrate_every(5).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let m = &m;
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                let mut live: Vec<(*mut u8, usize, u64)> = Vec::new();
                for i in 0..600u64 {
                    let (pages, align) = match (t + i) % 4 {
                        0 => (1, PAGE_SIZE),
                        1 => (rng.gen_range(1..=100), PAGE_SIZE),
                        2 => (rng.gen_range(1..=8), PAGE_SIZE << 4),
                        _ => (rng.gen_range(1..=16), PAGE_SIZE << rng.gen_range(0..=8)),
                    };
                    let gfp = if i % 7 == 0 { Gfp::ATOMIC } else { Gfp::KERNEL };
                    let p = m.__vmalloc_node(pages * PAGE_SIZE, align, gfp, None).unwrap().as_ptr();
                    assert_eq!(p as usize % align, 0);
                    let tag = (t << 32) | i;
                    stamp(p, pages, tag);
                    live.push((p, pages, tag));
                    if live.len() > 12 || rng.gen_bool(0.4) {
                        let (q, n, tg) = live.swap_remove(rng.gen_range(0..live.len()));
                        check(q, n, tg);
                        // SAFETY: ours, no longer used.
                        unsafe { m.vfree(q) };
                    }
                }
                for (q, n, tg) in live {
                    check(q, n, tg);
                    // SAFETY: ours.
                    unsafe { m.vfree(q) };
                }
            });
        }
    });
    assert!(m.vmalloc_stats().recycled > 0);
    assert_eq!(m.verify(), Ok(()));
    m.vm_unmap_aliases();
    let st = m.vmalloc_stats();
    assert_eq!((st.busy_areas, st.used_pages, st.recycled), (0, 0, 0));
    assert!(st.purges > 0, "the lazy threshold was crossed: {st:?}");
    for k in ReportKind::ALL {
        assert_eq!(m.report_count(k), 0, "{k:?}: {:?}", m.reports().last());
    }
}

#[test]
fn fragmented_range_holes_are_filled_exactly() {
    let m = MachineBuilder::new().ram_mib(256).cpus(1).build().unwrap();
    let areas: Vec<*mut u8> = (0..2000).map(|_| m.vmalloc(PAGE_SIZE).unwrap().as_ptr()).collect();
    // Consecutive: each area is its page plus a guard page.
    assert!(areas.windows(2).all(|w| w[1] as usize - w[0] as usize == 2 * PAGE_SIZE));
    let mut holes = BTreeSet::new();
    for (i, &p) in areas.iter().enumerate() {
        if i % 2 == 1 && i + 1 < areas.len() {
            holes.insert(p as usize);
            // SAFETY: ours.
            unsafe { m.vfree(p) };
        }
    }
    m.vm_unmap_aliases();
    let before = m.vmalloc_stats();
    // 999 one-page requests land exactly in the 999 holes, lowest first.
    for want in holes.iter() {
        let p = m.vmalloc(PAGE_SIZE).unwrap();
        assert_eq!(p.as_ptr() as usize, *want);
    }
    let after = m.vmalloc_stats();
    assert_eq!(before.free_areas - after.free_areas, 999, "every hole consumed whole");
    // A 2-page request fits no hole: it goes above everything.
    let big = m.vmalloc(2 * PAGE_SIZE).unwrap();
    assert!(big.as_ptr() as usize > *areas.last().unwrap() as usize);
}

#[test]
fn many_live_areas_with_churn() {
    // Each live area is a host mapping; keep the lazy ones few so the process stays far
    // below vm.max_map_count.
    let m = MachineBuilder::new().ram_mib(512).cpus(2).vmap_lazy_max_pages(2048).build().unwrap();
    let mut live: Vec<(*mut u8, usize, u64)> = Vec::with_capacity(15000);
    let mut rng = SmallRng::seed_from_u64(7);
    for i in 0..15000u64 {
        let pages = rng.gen_range(1..=2);
        let p = m.vmalloc(pages * PAGE_SIZE).unwrap().as_ptr();
        stamp(p, pages, i);
        live.push((p, pages, i));
    }
    assert_eq!(m.vmalloc_stats().busy_areas, 15000);
    // Churn beside them.
    for i in 0..20000u64 {
        let pages = rng.gen_range(1..=16);
        let p = m.vmalloc(pages * PAGE_SIZE).unwrap().as_ptr();
        stamp(p, pages, !i);
        check(p, pages, !i);
        // SAFETY: ours.
        unsafe { m.vfree(p) };
        if i % 1000 == 0 {
            let (q, n, tg) = live[rng.gen_range(0..live.len())];
            check(q, n, tg);
        }
    }
    assert!(m.vmalloc_stats().purges > 5);
    assert_eq!(m.verify(), Ok(()));
    for (p, n, tg) in live {
        check(p, n, tg);
        // SAFETY: ours.
        unsafe { m.vfree(p) };
    }
    m.vm_unmap_aliases();
    let st = m.vmalloc_stats();
    assert_eq!((st.busy_areas, st.lazy_areas, st.free_areas), (0, 0, 1));
}
