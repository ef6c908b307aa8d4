//! The per-CPU allocator on hosted machines: the first chunk, dynamic chunks on demand and
//! back, bad requests, atomic requests, typed handles, per-CPU variables from several threads.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kmem::percpu::{PercpuErrorKind, PCPU_MIN_UNIT_SIZE, PCPU_UNIT_PAGES, PERCPU_RESERVED_SIZE};
use kmem::{Gfp, Order, PercpuPtr, Platform, ReportKind, PAGE_SIZE};
use kmem_hosted::{in_irq, pin_current_thread, Machine, MachineBuilder};
use rand::{rngs::SmallRng, Rng, SeedableRng};

fn machine(cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(256).cpus(cpus).build().unwrap()
}

fn meminfo_percpu_kb(m: &Machine) -> usize {
    let mut s = String::new();
    kmem::proc::meminfo(m, &mut s).unwrap();
    let line = s.lines().find(|l| l.starts_with("Percpu:")).expect("a Percpu: line");
    line["Percpu:".len()..].trim().trim_end_matches(" kB").parse().unwrap()
}

fn warnings(m: &Machine) -> Vec<String> {
    m.reports().texts(ReportKind::Warning)
}

/// Per-CPU areas a fresh machine already has: the per-CPU state (sheaves and statistics) of
/// the slab allocator's two boot caches, `kmem_cache` and `kmem_sheaf`, the slab fast paths'
/// table (`slab/fast_table.rs`), reclaim's event counters, and RCU's per-CPU state.
const SLAB_AREAS: usize = 5;

/// Bytes of the first chunk's dynamic region that those areas take.
fn slab_area() -> usize {
    2 * 128
        + kmem::slab::FAST_TABLE_PERCPU_BYTES
        + kmem::reclaim::EVENTS_PERCPU_BYTES
        + kmem::rcu::RCU_PERCPU_BYTES.next_multiple_of(8)
}

/// CPU `cpu`'s copy of `p`, `len` bytes.
fn area(m: &Machine, p: PercpuPtr, cpu: usize, len: usize) -> &[u8] {
    // SAFETY: the tests only pass live allocations of at least `len` bytes that they own.
    unsafe { std::slice::from_raw_parts(m.per_cpu_ptr(p, cpu), len) }
}

#[test]
fn first_chunk_is_carved_at_boot_on_each_cpus_node() {
    let m = MachineBuilder::new().ram_mib(512).cpus(4).nodes(2).build().unwrap();
    let unit_kb = PCPU_MIN_UNIT_SIZE / 1024;
    assert_eq!(m.pcpu_nr_pages(), 4 * PCPU_UNIT_PAGES);
    assert_eq!(meminfo_percpu_kb(&m), 4 * unit_kb);
    let st = m.pcpu_stats();
    // The slab allocator's boot cache holds one area: its per-CPU state.
    let slab = slab_area();
    assert_eq!((st.nr_dynamic_chunks, st.nr_alloc, st.dyn_used_bytes), (0, SLAB_AREAS, slab));
    assert_eq!(st.dyn_free_bytes, PCPU_MIN_UNIT_SIZE - PERCPU_RESERVED_SIZE - slab);
    // One pointer per chunk: the first chunk's units, then (forced) a dynamic chunk's.
    let first = m.__alloc_percpu(4, 4).unwrap();
    let big = m.__alloc_percpu(PCPU_MIN_UNIT_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(m.pcpu_stats().nr_dynamic_chunks, 1, "32 KiB does not fit the first chunk's 24");
    for p in [first, big] {
        let mut bases = BTreeSet::new();
        for cpu in 0..4 {
            let va = kmem::VirtAddr::new(m.per_cpu_ptr_addr(p, cpu));
            let page = m.virt_to_page(va).unwrap();
            assert_eq!(page.page().node(), m.cpu_to_node(cpu), "CPU {cpu}'s unit is on its node");
            assert!(page.is_reserved() == (p == first), "first chunk: memblock; dynamic: buddy pages");
            bases.insert(va.as_usize() - p.offset());
        }
        assert_eq!(bases.len(), 4, "one unit per CPU");
    }
    // SAFETY: both are ours and unused.
    unsafe {
        m.free_percpu(first);
        m.free_percpu(big);
    }
    m.verify().unwrap();
}

/// Addresses through the raw API, for tests that only compare them.
trait PtrAddr {
    fn per_cpu_ptr_addr(&self, p: PercpuPtr, cpu: usize) -> usize;
}

impl PtrAddr for Machine {
    fn per_cpu_ptr_addr(&self, p: PercpuPtr, cpu: usize) -> usize {
        // SAFETY: callers pass live allocations and CPUs of the machine.
        unsafe { self.per_cpu_ptr(p, cpu) as usize }
    }
}

struct Live {
    ptr: PercpuPtr,
    size: usize,
    align: usize,
    tag: u8,
}

fn stamp(m: &Machine, a: &Live) {
    for cpu in 0..m.nr_cpus() {
        assert!(area(m, a.ptr, cpu, a.size).iter().all(|&b| b == 0), "a new area is zeroed on every CPU");
        // SAFETY: `a` is a live allocation of `a.size` bytes owned by this test.
        let bytes = unsafe { std::slice::from_raw_parts_mut(m.per_cpu_ptr(a.ptr, cpu), a.size) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = a.tag ^ (cpu as u8).wrapping_mul(31) ^ i as u8;
        }
    }
}

fn check(m: &Machine, a: &Live) {
    for cpu in 0..m.nr_cpus() {
        let addr = m.per_cpu_ptr_addr(a.ptr, cpu);
        assert_eq!(addr % a.align, 0, "{:?} on CPU {cpu} misaligned for {}", a.ptr, a.align);
        for (i, &b) in area(m, a.ptr, cpu, a.size).iter().enumerate() {
            assert_eq!(b, a.tag ^ (cpu as u8).wrapping_mul(31) ^ i as u8, "{:?} CPU {cpu} byte {i}", a.ptr);
        }
    }
}

/// No two live areas overlap in any unit (areas of different chunks are in different memory,
/// so comparing addresses on every CPU covers both cases).
fn check_no_overlap(m: &Machine, live: &[Live]) {
    for cpu in 0..m.nr_cpus() {
        let mut spans: Vec<(usize, usize)> =
            live.iter().map(|a| (m.per_cpu_ptr_addr(a.ptr, cpu), a.size.next_multiple_of(4))).collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "CPU {cpu}: {:#x}+{} overlaps {:#x}", w[0].0, w[0].1, w[1].0);
        }
    }
}

fn random_request(rng: &mut SmallRng) -> (usize, usize) {
    let size = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(1..=64),
        60..=89 => rng.gen_range(65..=1024),
        90..=97 => rng.gen_range(1025..=8192),
        _ => rng.gen_range(8193..=PCPU_MIN_UNIT_SIZE),
    };
    let align = 1 << rng.gen_range(0..=12u32).min(if rng.gen_bool(0.8) { 4 } else { 12 });
    (size, align)
}

#[test]
fn random_sizes_and_alignments_force_chunks_and_give_them_back() {
    pin_current_thread(0);
    let m = machine(4);
    let (boot_pages, boot_free) = (m.pcpu_nr_pages(), common::free_pages(&m));
    let boot_kb = meminfo_percpu_kb(&m);
    let mut rng = SmallRng::seed_from_u64(0x9e37_79b9);
    let mut live: Vec<Live> = Vec::new();
    let mut max_chunks = 0;
    for round in 0..1500u32 {
        if !live.is_empty() && rng.gen_bool(0.3) {
            let a = live.swap_remove(rng.gen_range(0..live.len()));
            check(&m, &a);
            // SAFETY: `a` is ours and dropped from `live`.
            unsafe { m.free_percpu(a.ptr) };
            continue;
        }
        let (size, align) = random_request(&mut rng);
        let ptr = m.__alloc_percpu(size, align).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let a = Live { ptr, size, align: align.max(4), tag: round as u8 };
        stamp(&m, &a);
        live.push(a);
        if round % 100 == 99 {
            let st = m.pcpu_stats();
            let want: usize = live.iter().map(|a| a.size.next_multiple_of(4)).sum();
            assert_eq!(st.dyn_used_bytes, want + slab_area(), "the maps hold exactly the live areas");
            assert_eq!(st.nr_alloc, live.len() + SLAB_AREAS);
            assert!(st.nr_empty_chunks <= 1, "at most one empty chunk is kept");
            assert_eq!(st.nr_pages, boot_pages + st.nr_dynamic_chunks * 4 * PCPU_UNIT_PAGES);
            max_chunks = max_chunks.max(st.nr_dynamic_chunks);
            check_no_overlap(&m, &live);
        }
    }
    assert!(max_chunks >= 4, "the workload needs several dynamic chunks, got {max_chunks}");
    assert_eq!(meminfo_percpu_kb(&m), m.pcpu_nr_pages() * 4);
    check_no_overlap(&m, &live);
    for a in live.drain(..) {
        check(&m, &a);
        // SAFETY: ours, and dropped from `live`.
        unsafe { m.free_percpu(a.ptr) };
    }
    let st = m.pcpu_stats();
    assert_eq!((st.nr_alloc, st.dyn_used_bytes), (SLAB_AREAS, slab_area()));
    assert!(st.nr_dynamic_chunks <= 1 && st.nr_empty_chunks == st.nr_dynamic_chunks, "{st:?}");
    assert_eq!(m.pcpu_free_empty_chunks(), st.nr_dynamic_chunks);
    assert_eq!(m.pcpu_nr_pages(), boot_pages, "every dynamic chunk went back");
    assert_eq!(meminfo_percpu_kb(&m), boot_kb);
    assert_eq!(common::free_pages(&m), boot_free, "headers and units are back in the buddy");
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    m.verify().unwrap();
}

#[test]
fn bad_requests_fail_with_one_warning_each() {
    let m = machine(2);
    let before = m.pcpu_stats();
    let cases = [
        (0, 4, "illegal size (0) or align (4) for percpu allocation"),
        (PCPU_MIN_UNIT_SIZE + 1, 4, "illegal size (32772) or align (4) for percpu allocation"),
        // Alignments below 4 are raised to 4 first (so 0 and 3 are fine, see below); 5 is not.
        (8, 5, "illegal size (8) or align (5) for percpu allocation"),
        (8, 12, "illegal size (8) or align (12) for percpu allocation"),
        (8, 8192, "illegal size (8) or align (8192) for percpu allocation"),
    ];
    for (i, &(size, align, text)) in cases.iter().enumerate() {
        let e = m.__alloc_percpu(size, align).unwrap_err();
        assert_eq!(e.kind, PercpuErrorKind::IllegalRequest);
        assert_eq!(m.report_count(ReportKind::Warning), i as u64 + 1, "exactly one warning for {size}/{align}");
        let w = warnings(&m).pop().unwrap();
        assert!(w.starts_with("WARNING: CPU: ") && w.contains("at mm/percpu.c pcpu_alloc: "), "{w}");
        assert!(w.trim_end().ends_with(text), "{w}");
        assert_eq!(e.to_string(), text);
    }
    for &(size, align, _) in &cases {
        let e = m.__alloc_percpu_gfp(size, align, Gfp::KERNEL | Gfp::NOWARN).unwrap_err();
        assert_eq!(e.kind, PercpuErrorKind::IllegalRequest);
    }
    assert_eq!(m.report_count(ReportKind::Warning), cases.len() as u64, "__GFP_NOWARN: no warning");
    assert_eq!(m.pcpu_stats(), before, "nothing was allocated");
    // The limits themselves are fine, and so is any alignment below 4, power of two or not
    // (pcpu_alloc raises it to PCPU_MIN_ALLOC_SIZE before checking it).
    for (size, align) in [(1, 1), (PCPU_MIN_UNIT_SIZE, PAGE_SIZE), (3, 2), (8, 0), (8, 3)] {
        let p = m.__alloc_percpu(size, align).unwrap();
        assert_eq!(m.per_cpu_ptr_addr(p, 1) % align.max(4), 0);
        // SAFETY: ours and unused.
        unsafe { m.free_percpu(p) };
    }
    assert_eq!(m.report_count(ReportKind::Warning), cases.len() as u64);
}

#[test]
fn atomic_requests_never_create_chunks() {
    pin_current_thread(0);
    let m = machine(2);
    let boot_pages = m.pcpu_nr_pages();
    let mut got = Vec::new();
    let err = loop {
        match m.__alloc_percpu_gfp(1000, 8, Gfp::ATOMIC) {
            Ok(p) => got.push(p),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind, PercpuErrorKind::AtomicNoSpace);
    assert_eq!(
        got.len(),
        (PCPU_MIN_UNIT_SIZE - PERCPU_RESERVED_SIZE - slab_area()) / 1000,
        "the first chunk's room, no more"
    );
    assert_eq!((m.pcpu_nr_pages(), m.pcpu_stats().nr_dynamic_chunks), (boot_pages, 0));
    let w = warnings(&m);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0], "percpu: allocation failed, size=1000 align=8 atomic=1, atomic alloc failed, no space left\n");
    // GFP_NOWAIT and interrupt context are non-blocking too.
    let e = m.__alloc_percpu_gfp(1000, 8, Gfp::NOWAIT).unwrap_err();
    assert_eq!(e.kind, PercpuErrorKind::AtomicNoSpace);
    let e = in_irq(|| m.__alloc_percpu_gfp(1000, 8, Gfp::ATOMIC | Gfp::NOWARN)).unwrap_err();
    assert_eq!(e.kind, PercpuErrorKind::AtomicNoSpace);
    assert_eq!(m.pcpu_stats().nr_dynamic_chunks, 0);
    assert_eq!(m.report_count(ReportKind::Warning), 1, "NOWAIT and NOWARN: not reported");

    // A blocking request creates a chunk; atomic requests may then use it, also from an IRQ.
    let k = m.__alloc_percpu(1000, 8).unwrap();
    assert_eq!(m.pcpu_stats().nr_dynamic_chunks, 1);
    assert_eq!(m.pcpu_nr_pages(), boot_pages + 2 * PCPU_UNIT_PAGES);
    let a = in_irq(|| m.__alloc_percpu_gfp(64, 8, Gfp::ATOMIC)).unwrap();
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 0);
    got.extend([k, a]);
    for p in got {
        // SAFETY: ours and unused.
        unsafe { m.free_percpu(p) };
    }
    m.pcpu_free_empty_chunks();
    assert_eq!(m.pcpu_nr_pages(), boot_pages);
}

#[test]
fn failure_warnings_stop_after_ten() {
    let m = machine(1);
    let fill: Vec<_> =
        std::iter::from_fn(|| m.__alloc_percpu_gfp(4096, 4096, Gfp::ATOMIC | Gfp::NOWARN).ok()).collect();
    assert!(!fill.is_empty());
    for _ in 0..12 {
        assert!(m.__alloc_percpu_gfp(4096, 4096, Gfp::ATOMIC).is_err());
    }
    let w = warnings(&m);
    assert_eq!(w.len(), 10, "Linux's warn_limit");
    assert!(w[..9].iter().all(|t| !t.contains("limit reached")));
    assert!(w[9].ends_with("percpu: limit reached, disable warning\n"), "{}", w[9]);
}

#[test]
fn free_percpu_checks_the_pointer() {
    let m = machine(2);
    // SAFETY: NULL is always accepted and ignored.
    unsafe { m.free_percpu(PercpuPtr::NULL) };
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    let p = m.__alloc_percpu(16, 8).unwrap();
    let q = m.__alloc_percpu(16, 8).unwrap();
    // SAFETY: p is ours; the second free is the misuse under test, which kmem
    // detects without touching anything.
    unsafe {
        m.free_percpu(p);
        m.free_percpu(p);
    }
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    assert!(warnings(&m)[0].contains("at mm/percpu.c free_percpu: invalid percpu pointer"), "{:?}", warnings(&m));
    let st = m.pcpu_stats();
    assert_eq!((st.nr_alloc, st.dyn_used_bytes), (1 + SLAB_AREAS, 16 + slab_area()), "the double free changed nothing");
    // SAFETY: q is ours.
    unsafe { m.free_percpu(q) };
    assert_eq!(m.pcpu_stats().nr_alloc, SLAB_AREAS);
}

#[test]
fn typed_box_drops_every_cpus_value_once_and_frees() {
    struct Tracked {
        cpu: usize,
        drops: Arc<Mutex<Vec<usize>>>,
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops.lock().unwrap().push(self.cpu);
        }
    }
    let m = machine(4);
    let drops = Arc::new(Mutex::new(Vec::new()));
    let b = m.alloc_percpu_with(|cpu| Tracked { cpu, drops: drops.clone() }).unwrap();
    assert_eq!(m.pcpu_stats().nr_alloc, 1 + SLAB_AREAS);
    assert_eq!(b.iter().map(|t| t.cpu).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(b.per_cpu(2).cpu, 2);
    drop(b);
    let mut d = drops.lock().unwrap().clone();
    d.sort_unstable();
    assert_eq!(d, [0, 1, 2, 3], "T's Drop ran exactly once per CPU");
    assert_eq!(m.pcpu_stats().nr_alloc, SLAB_AREAS, "and the area was freed");

    // A panicking initialiser: the values already built are dropped, the area is freed.
    drops.lock().unwrap().clear();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.alloc_percpu_with(|cpu| {
            assert!(cpu < 2, "init fails on CPU 2");
            Tracked { cpu, drops: drops.clone() }
        })
    }));
    assert!(r.is_err());
    assert_eq!(*drops.lock().unwrap(), [0, 1]);
    assert_eq!(m.pcpu_stats().nr_alloc, SLAB_AREAS);
}

#[test]
fn typed_box_this_cpu_disables_preemption() {
    let m = machine(4);
    let mut b = m.alloc_percpu_with(|cpu| AtomicU64::new(cpu as u64 * 100)).unwrap();
    assert_eq!(m.per_cpu_ptr_addr(b.as_percpu_ptr(), 3) % std::mem::align_of::<AtomicU64>(), 0);
    pin_current_thread(3);
    assert_eq!(m.platform().preempt_count(), 0);
    {
        let g = b.this_cpu();
        assert_eq!((g.cpu().index(), m.platform().preempt_count()), (3, 1));
        g.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(m.platform().preempt_count(), 0, "put on drop");
    *b.per_cpu_mut(0).get_mut() += 7;
    let vals: Vec<u64> = b.iter().map(|v| v.load(Ordering::Relaxed)).collect();
    assert_eq!(vals, [7, 100, 200, 301]);
    // Zero-sized and page-aligned types are fine too.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let z = m.alloc_percpu_with(|_| ()).unwrap();
    let p = m.alloc_percpu_with(|cpu| Page([cpu as u8; 4096])).unwrap();
    assert_eq!(m.per_cpu_ptr_addr(p.as_percpu_ptr(), 1) % 4096, 0);
    assert!(p.per_cpu(1).0.iter().all(|&x| x == 1));
    drop((z, p));
}

#[test]
fn threads_pinned_per_cpu_count_exactly() {
    const CPUS: usize = 4;
    const ITERS: u64 = 20_000;
    let m = machine(CPUS);
    let hits = m.define_per_cpu(0u64).unwrap();
    let net = m.define_per_cpu(0i32).unwrap();
    let boxed = m.alloc_percpu_with(|_| AtomicUsize::new(0)).unwrap();
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for cpu in 0..CPUS {
            let (m, boxed) = (&m, &boxed);
            let done = &done;
            s.spawn(move || {
                // Counts this thread as done even if it panics, so the reader always stops.
                struct Done<'a>(&'a AtomicUsize);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, Ordering::Release);
                    }
                }
                let _done = Done(done);
                pin_current_thread(cpu as u32);
                for i in 0..ITERS {
                    m.this_cpu_inc(hits);
                    // +2 then -1: the net count goes up by one per iteration on every CPU.
                    m.this_cpu_add(net, 2u8);
                    let g = m.get_cpu();
                    m.__this_cpu_sub(&g, net, 1i64);
                    drop(g);
                    boxed.this_cpu().fetch_add(1, Ordering::Relaxed);
                    if i % 4096 == 0 {
                        assert_eq!(m.this_cpu_read(hits), i + 1, "only this thread writes CPU {cpu}'s copy");
                    }
                }
            });
        }
        // A remote reader: sums only grow while the counters run.
        s.spawn(|| {
            let mut last = 0;
            while done.load(Ordering::Acquire) < CPUS {
                let now = m.per_cpu_sum(hits);
                assert!(now >= last && now <= CPUS as u64 * ITERS);
                last = now;
            }
        });
    });
    for cpu in 0..CPUS {
        assert_eq!(m.per_cpu(hits, cpu), ITERS, "CPU {cpu}");
        assert_eq!(m.per_cpu(net, cpu), ITERS as i32);
        assert_eq!(boxed.per_cpu(cpu).load(Ordering::Relaxed), ITERS as usize);
    }
    assert_eq!(m.per_cpu_sum(hits), CPUS as u64 * ITERS, "the final sum is exact");
    assert_eq!(m.per_cpu_sum(net), (CPUS as u64 * ITERS) as i32);
}

#[test]
#[should_panic(expected = "per-CPU variable used on another machine")]
fn a_variable_belongs_to_its_machine() {
    let a = machine(2);
    let b = machine(2);
    let v = a.define_per_cpu(1u32).unwrap();
    b.this_cpu_inc(v);
}

#[test]
fn the_fullest_chunk_that_fits_wins_and_one_empty_chunk_is_kept() {
    let m = machine(2);
    let boot_pages = m.pcpu_nr_pages();
    let unit_base = |p: PercpuPtr| m.per_cpu_ptr_addr(p, 0) - p.offset();
    let dyn_room = PCPU_MIN_UNIT_SIZE - PERCPU_RESERVED_SIZE - slab_area();
    let first = m.__alloc_percpu(dyn_room, 4).unwrap(); // fills the first chunk exactly
    let x = m.__alloc_percpu(30 << 10, 4).unwrap(); // chunk C1: 2 KiB left
    let y = m.__alloc_percpu(16 << 10, 4).unwrap(); // chunk C2: 16 KiB left
    assert_eq!(m.pcpu_stats().nr_dynamic_chunks, 2);
    assert_ne!(unit_base(x), unit_base(y));
    let z = m.__alloc_percpu(1 << 10, 4).unwrap();
    assert_eq!(unit_base(z), unit_base(x), "1 KiB fits both: the fuller chunk takes it");
    let big = m.__alloc_percpu(4 << 10, 4).unwrap();
    assert_eq!(unit_base(big), unit_base(y), "4 KiB only fits the emptier one");
    // SAFETY: ours and unused (every free below).
    unsafe {
        m.free_percpu(x);
        m.free_percpu(z);
    }
    assert_eq!(m.pcpu_stats().nr_empty_chunks, 1, "C1 is empty and kept");
    // SAFETY: as above.
    unsafe {
        m.free_percpu(y);
        m.free_percpu(big);
    }
    let st = m.pcpu_stats();
    assert_eq!((st.nr_dynamic_chunks, st.nr_empty_chunks), (1, 1), "C2 emptied too: one of them went back");
    assert_eq!(m.pcpu_nr_pages(), boot_pages + 2 * PCPU_UNIT_PAGES);
    // SAFETY: as above.
    unsafe { m.free_percpu(first) };
    assert_eq!(m.pcpu_free_empty_chunks(), 1);
    assert_eq!(m.pcpu_nr_pages(), boot_pages);
}

/// More threads than CPUs, migrating between CPUs, updating per-CPU variables and per-CPU
/// objects while allocating, cross-freeing and checking pages: the per-CPU sums must be exact
/// (a this_cpu op is a load and a store under the CPU's exclusion, so a shared section would
/// lose updates) and every page must come back.
#[test]
fn oversubscribed_migrating_threads_keep_per_cpu_data_exact() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const THREADS: usize = 6;
    const ITERS: u64 = 5_000;
    let m = kmem_hosted::MachineBuilder::new().ram_mib(128).cpus(3).migrate_every(3).build().unwrap();
    let hits = m.define_per_cpu(0u64).unwrap();
    let objs = m.alloc_percpu_with(|_| AtomicU64::new(0)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<kmem::PageRef<'_>>();
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (m, objs, tx, rx) = (&m, &objs, tx.clone(), &rx);
            s.spawn(move || {
                for i in 0..ITERS {
                    m.this_cpu_inc(hits);
                    {
                        let o = objs.this_cpu();
                        let v = o.load(Ordering::Relaxed);
                        o.store(v + 1, Ordering::Relaxed);
                    }
                    if i % 8 == t as u64 % 8 {
                        let p = m.alloc_pages(kmem::Gfp::KERNEL, Order::ZERO).unwrap();
                        // SAFETY: ours, mapped.
                        unsafe { m.page_address(p).unwrap().as_mut_ptr::<u64>().write(p.pfn().as_usize() as u64) };
                        tx.send(p).unwrap();
                    }
                    if let Ok(p) = rx.lock().unwrap().try_recv() {
                        // SAFETY: ownership came over the channel; the page is mapped.
                        let v = unsafe { m.page_address(p).unwrap().as_mut_ptr::<u64>().read() };
                        assert_eq!(v, p.pfn().as_usize() as u64);
                        // SAFETY: ours.
                        unsafe { m.__free_pages(p, Order::ZERO) };
                    }
                }
            });
        }
    });
    drop(tx);
    for p in rx.into_inner().unwrap().try_iter() {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
    let total = THREADS as u64 * ITERS;
    assert_eq!(m.per_cpu_sum(hits), total, "a this_cpu_inc was lost");
    assert_eq!(objs.iter().map(|o| o.load(Ordering::Relaxed)).sum::<u64>(), total, "a per-CPU object update was lost");
    assert!((0..3).all(|c| m.per_cpu(hits, c) > 0), "migration spread the work over every CPU");
    m.verify().unwrap();
}
