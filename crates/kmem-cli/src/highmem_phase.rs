//! The demo's highmem phase (machines with a HighMem zone, `--preset x86-32`): every CPU
//! kmaps HighMem pages (more in all than there are pkmap slots, so the ring wraps), nests
//! `kmap_local_page` mappings, and maps pages with `kmap_atomic` from interrupt context; every
//! page's contents are written through one mapping and checked through another.

use kmem::{Gfp, KmapStats, Order, PageRef, PAGE_SIZE};
use kmem_hosted::{in_irq, pin_current_thread, Machine};

/// What the phase did, and the pages it keeps kmapped (so the page-frame map shows them).
pub struct HighmemSeen<'m> {
    /// Pages left kmapped until [`HighmemSeen::release`].
    pub kept: Vec<PageRef<'m>>,
    /// `kmap` calls.
    pub kmaps: u64,
    /// `kmap_local_page` and `kmap_atomic` mappings (from task and interrupt context).
    pub locals: u64,
    /// Pages whose contents did not read back (should be 0).
    pub corrupt: u64,
    /// Most pkmap slots in use at once (sampled).
    pub peak_in_use: usize,
    /// The layer's counters after the phase.
    pub stats: KmapStats,
}

impl HighmemSeen<'_> {
    /// Unmaps and frees the pages the phase kept.
    pub fn release(self, m: &Machine) {
        for p in self.kept {
            m.kunmap(p);
            // SAFETY: the phase allocated the page and handed it to us; its mapping is gone.
            unsafe { m.__free_pages(p, Order::ZERO) };
        }
    }
}

/// Pages kept kmapped after the phase.
const KEEP: usize = 64;

/// The bytes of a mapped page.
///
/// # Safety
///
/// `va` maps a page of the caller's that nothing else touches meanwhile.
unsafe fn page<'a>(va: kmem::VirtAddr) -> &'a mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(va.as_mut_ptr::<u8>(), PAGE_SIZE) }
}

/// Runs the phase; `None` on a machine without HighMem.
pub fn highmem_phase(m: &Machine) -> Option<HighmemSeen<'_>> {
    let probe = m.alloc_pages(Gfp::HIGHUSER | Gfp::NOWARN, Order::ZERO).ok()?;
    let high = m.page_is_highmem(probe);
    // SAFETY: ours, unmapped.
    unsafe { m.__free_pages(probe, Order::ZERO) };
    if !high {
        return None;
    }
    let cpus = m.nr_cpus();
    // More pages in all than pkmap slots (the ring wraps and flushes); each CPU holds at most
    // its share of the slots at once, so no CPU waits for a slot forever.
    let per_cpu = (kmem::LAST_PKMAP + kmem::LAST_PKMAP / 4).div_ceil(cpus);
    let seen: Vec<(u64, u64, u64, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cpus)
            .map(|cpu| {
                s.spawn(move || {
                    pin_current_thread(cpu as u32);
                    let pages: Vec<PageRef<'_>> = (0..per_cpu)
                        .map_while(|_| m.alloc_pages(Gfp::HIGHUSER | Gfp::NOWARN, Order::ZERO).ok())
                        .collect();
                    let (mut kmaps, mut locals, mut corrupt, mut peak) = (0u64, 0u64, 0u64, 0usize);
                    let tag = |i: usize| (cpu * 31 + i) as u8;
                    // Keep up to the CPU's share of the slots kmapped, writing each page.
                    let mut held = Vec::new();
                    for (i, &p) in pages.iter().enumerate() {
                        if held.len() >= kmem::LAST_PKMAP / cpus {
                            let (q, _) = held.remove(0);
                            m.kunmap(q);
                        }
                        let va = m.kmap(p).expect("kmap");
                        kmaps += 1;
                        // SAFETY: our page, kmapped.
                        unsafe { page(va) }.fill(tag(i));
                        held.push((p, va));
                        peak = peak.max(m.kmap_stats().pkmap_in_use);
                    }
                    // Read back through kmap_local (nested pairs) and kmap_atomic from IRQ context.
                    for (i, pair) in pages.chunks(2).enumerate() {
                        let a = m.kmap_local_page(pair[0]).expect("kmap_local_page");
                        let b = pair.get(1).map(|&q| m.kmap_local_page(q).expect("kmap_local_page"));
                        locals += 1 + b.is_some() as u64;
                        // SAFETY: our pages, mapped.
                        corrupt += unsafe { page(a) }.iter().any(|&x| x != tag(2 * i)) as u64;
                        if let Some(b) = b {
                            // SAFETY: as above.
                            corrupt += unsafe { page(b) }.iter().any(|&x| x != tag(2 * i + 1)) as u64;
                            m.kunmap_local(b);
                        }
                        m.kunmap_local(a);
                        let ok = in_irq(|| {
                            let v = m.kmap_atomic(pair[0]).expect("kmap_atomic");
                            // SAFETY: as above.
                            let ok = unsafe { page(v) }[PAGE_SIZE - 1] == tag(2 * i);
                            m.kunmap_atomic(v);
                            ok
                        });
                        locals += 1;
                        corrupt += !ok as u64;
                    }
                    for (q, _) in held {
                        m.kunmap(q);
                    }
                    for p in pages {
                        // SAFETY: ours, no mapping left.
                        unsafe { m.__free_pages(p, Order::ZERO) };
                    }
                    (kmaps, locals, corrupt, peak)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("highmem phase thread")).collect()
    });
    let kept: Vec<_> = (0..KEEP).map_while(|_| m.alloc_pages(Gfp::HIGHUSER | Gfp::NOWARN, Order::ZERO).ok()).collect();
    for &p in &kept {
        m.kmap(p).expect("kmap");
    }
    Some(HighmemSeen {
        kept,
        kmaps: seen.iter().map(|s| s.0).sum(),
        locals: seen.iter().map(|s| s.1).sum(),
        corrupt: seen.iter().map(|s| s.2).sum(),
        peak_in_use: seen.iter().map(|s| s.3).max().unwrap_or(0),
        stats: m.kmap_stats(),
    })
}
