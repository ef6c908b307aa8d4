//! Memory pressure (issue 16): shrinkers called in the allocation's GFP context, the reserves
//! of GFP_ATOMIC / __GFP_MEMALLOC, the slow path's retry rules (NORETRY, RETRY_MAYFAIL,
//! costly orders), OOM notifiers and the `out of memory` report, `__GFP_NOFAIL` sleeping
//! until memory is freed, and kswapd restoring the high watermark. No timing: every check
//! counts (attempts, calls, pages).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kmem::reclaim::{OomNotifier, ShrinkControl, ShrinkerFlags, ShrinkerOps};
use kmem::{Gfp, Order, ReportKind, VirtAddr, ZoneType};
use kmem_hosted::{Machine, MachineBuilder};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(64).cpus(2).quiet_reports().build().unwrap()
}

/// A fake cache whose objects are order-0 pages of the machine: reclaim frees them.
struct FakeCache {
    machine: AtomicUsize,
    pages: Mutex<Vec<usize>>,
    needs_fs: bool,
    counts: AtomicUsize,
    scans: AtomicUsize,
    freed: AtomicUsize,
    /// Calls whose GFP context the shrinker's flags forbid (must stay 0).
    bad_context: AtomicUsize,
    /// Calls whose `gfp_mask` is not the allocation's (must stay 0).
    wrong_gfp: AtomicUsize,
    expect_gfp: Mutex<Option<Gfp>>,
}

impl FakeCache {
    fn new(m: &Machine, needs_fs: bool) -> &'static FakeCache {
        Box::leak(Box::new(FakeCache {
            machine: AtomicUsize::new(m as *const Machine as usize),
            pages: Mutex::new(Vec::new()),
            needs_fs,
            counts: AtomicUsize::new(0),
            scans: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
            bad_context: AtomicUsize::new(0),
            wrong_gfp: AtomicUsize::new(0),
            expect_gfp: Mutex::new(None),
        }))
    }
    fn m(&self) -> &Machine {
        // SAFETY: each test keeps its machine alive while the shrinker is registered (the
        // `Shrinker` handle borrows it), and reclaim only calls registered shrinkers.
        unsafe { &*(self.machine.load(Ordering::Relaxed) as *const Machine) }
    }
    fn check(&self, sc: &ShrinkControl) {
        if self.needs_fs && !sc.gfp_mask.contains(Gfp::FS) {
            self.bad_context.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(g) = *self.expect_gfp.lock().unwrap() {
            if g != sc.gfp_mask {
                self.wrong_gfp.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn push(&self, a: VirtAddr) {
        self.pages.lock().unwrap().push(a.as_usize());
    }
    fn len(&self) -> usize {
        self.pages.lock().unwrap().len()
    }
    fn release_all(&self) {
        let m = self.m();
        for a in self.pages.lock().unwrap().drain(..) {
            // SAFETY: the cache owns the page.
            unsafe { m.free_page(VirtAddr::new(a)) };
        }
    }
}

impl ShrinkerOps for FakeCache {
    fn count_objects(&self, sc: &ShrinkControl) -> usize {
        self.check(sc);
        self.counts.fetch_add(1, Ordering::Relaxed);
        self.len()
    }
    fn scan_objects(&self, sc: &mut ShrinkControl) -> usize {
        self.check(sc);
        self.scans.fetch_add(1, Ordering::Relaxed);
        let mut n = 0;
        while n < sc.nr_to_scan {
            let Some(a) = self.pages.lock().unwrap().pop() else { break };
            // SAFETY: the cache owned the page.
            unsafe { self.m().free_page(VirtAddr::new(a)) };
            n += 1;
        }
        self.freed.fetch_add(n, Ordering::Relaxed);
        n
    }
}

/// Pages the test holds, freed at the end.
struct Kept<'m> {
    m: &'m Machine,
    pages: Vec<VirtAddr>,
}

impl<'m> Kept<'m> {
    fn new(m: &'m Machine) -> Self {
        Kept { m, pages: Vec::new() }
    }
    /// Allocates order-0 pages with `gfp` until one fails; returns how many it got.
    fn fill(&mut self, gfp: Gfp) -> usize {
        let mut n = 0;
        while let Ok(a) = self.m.__get_free_page(gfp | Gfp::NOWARN) {
            self.pages.push(a);
            n += 1;
        }
        n
    }
    fn free(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(a) = self.pages.pop() {
                // SAFETY: the page is ours.
                unsafe { self.m.free_page(a) };
            }
        }
    }
}

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        let n = self.pages.len();
        self.free(n);
    }
}

#[test]
fn gfp_kernel_reclaims_from_a_shrinker_instead_of_failing() {
    let m = machine();
    let cache = FakeCache::new(&m, true);
    *cache.expect_gfp.lock().unwrap() = Some(Gfp::KERNEL);
    let s = m.shrinker_alloc(ShrinkerFlags::NEEDS_FS, "fake").unwrap();
    s.register(cache);
    let total = m.totalram_pages();
    // More pages than the machine has: only reclaim from the cache can provide them.
    for i in 0..total + 2000 {
        let a = m.__get_free_page(Gfp::KERNEL).unwrap_or_else(|e| panic!("allocation {i} of {total}: {e:?}"));
        cache.push(a);
    }
    let ev = m.reclaim_events();
    assert!(m.allocstall() > 0, "no direct reclaim");
    assert!(cache.scans.load(Ordering::Relaxed) > 0 && cache.freed.load(Ordering::Relaxed) >= 2000);
    assert!(ev.slabs_scanned >= 2000);
    assert!(ev.pgsteal_direct > 0);
    assert_eq!(cache.bad_context.load(Ordering::Relaxed), 0);
    assert_eq!(cache.wrong_gfp.load(Ordering::Relaxed), 0, "shrinker called with another GFP context");
    assert_eq!(m.report_count(ReportKind::Oom), 0);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0);
    cache.release_all();
    drop(s);
}

#[test]
fn gfp_nofs_never_enters_a_shrinker_that_needs_the_filesystem() {
    let m = machine();
    let fs = FakeCache::new(&m, true);
    let plain = FakeCache::new(&m, false);
    let s1 = m.shrinker_alloc(ShrinkerFlags::NEEDS_FS, "fs").unwrap();
    s1.register(fs);
    let s2 = m.shrinker_alloc(ShrinkerFlags::NONE, "plain").unwrap();
    s2.register(plain);
    // Fill the machine (no pressure yet: both caches are empty), then give 2000 pages to the
    // plain cache, which GFP_NOFS may reclaim, and the rest to the FS cache.
    let mut kept = Kept::new(&m);
    kept.fill(Gfp::KERNEL);
    for a in kept.pages.drain(..2000) {
        plain.push(a);
    }
    for a in kept.pages.drain(..) {
        fs.push(a);
    }
    let skipped = m.reclaim_events().shrinker_skipped;
    let fs_calls = fs.counts.load(Ordering::Relaxed);
    let mut got = 0;
    for _ in 0..32 {
        if let Ok(a) = m.__get_free_page(Gfp::NOFS | Gfp::NOWARN) {
            kept.pages.push(a);
            got += 1;
        }
    }
    assert!(got > 0, "GFP_NOFS got nothing although the plain shrinker held pages");
    assert!(plain.scans.load(Ordering::Relaxed) > 0, "the plain shrinker was not asked");
    assert_eq!(fs.counts.load(Ordering::Relaxed), fs_calls, "a GFP_NOFS reclaim called the FS shrinker");
    assert!(m.reclaim_events().shrinker_skipped > skipped);
    assert_eq!(fs.bad_context.load(Ordering::Relaxed), 0);
    // GFP_KERNEL may use it, once the plain cache is empty.
    for _ in 0..3000 {
        kept.pages.push(m.__get_free_page(Gfp::KERNEL).unwrap());
    }
    assert!(fs.scans.load(Ordering::Relaxed) > 0);
    drop(kept);
    fs.release_all();
    plain.release_all();
    drop((s1, s2));
}

#[test]
fn gfp_noio_never_enters_a_shrinker_that_needs_io() {
    let m = machine();
    let io = FakeCache::new(&m, false);
    let s = m.shrinker_alloc(ShrinkerFlags::NEEDS_IO, "io").unwrap();
    s.register(io);
    let mut kept = Kept::new(&m);
    kept.fill(Gfp::KERNEL);
    for a in kept.pages.drain(..64) {
        io.push(a);
    }
    let calls = io.counts.load(Ordering::Relaxed);
    assert!(m.__get_free_page(Gfp::NOIO | Gfp::NOWARN).is_err());
    assert_eq!(io.counts.load(Ordering::Relaxed), calls, "GFP_NOIO reclaim called an IO shrinker");
    let a = m.__get_free_page(Gfp::NOFS).unwrap();
    kept.pages.push(a);
    assert!(io.scans.load(Ordering::Relaxed) > 0);
    drop(kept);
    io.release_all();
    drop(s);
}

#[test]
fn atomic_dips_into_the_reserves_where_nowait_fails() {
    let m = machine();
    let mut kept = Kept::new(&m);
    assert!(kept.fill(Gfp::KERNEL) > 1000);
    assert!(m.__get_free_page(Gfp::NOWAIT).is_err(), "GFP_NOWAIT below min");
    let a = m.__get_free_page(Gfp::ATOMIC | Gfp::NOWARN).expect("GFP_ATOMIC from the reserves");
    kept.pages.push(a);
    // Fill what GFP_ATOMIC may take; __GFP_MEMALLOC may take the rest, not __GFP_NOMEMALLOC.
    kept.fill(Gfp::ATOMIC);
    assert!(m.__get_free_page(Gfp::ATOMIC | Gfp::NOWARN).is_err());
    let nomem = Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NOMEMALLOC | Gfp::NOWARN;
    assert!(m.__get_free_page(nomem).is_err(), "__GFP_NOMEMALLOC must not use the reserves");
    let a = m.__get_free_page(Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NOWARN).expect("__GFP_MEMALLOC: every reserve");
    kept.pages.push(a);
    assert!(kept.fill(Gfp::KERNEL | Gfp::MEMALLOC) > 0);
    let free: usize = m.zones().map(|z| z.free_pages()).sum();
    assert_eq!(free, 0, "__GFP_MEMALLOC left reserves");
}

#[test]
fn retry_mayfail_fails_without_oom_and_noretry_makes_one_attempt() {
    let m = machine();
    let mut kept = Kept::new(&m);
    kept.fill(Gfp::KERNEL);
    let oom = m.report_count(ReportKind::Oom);
    let fail = m.report_count(ReportKind::PageAllocFailure);
    // The fill's last, failed, GFP_KERNEL request went through the OOM path (silently).
    let ooms = m.reclaim_events().oom;
    assert_eq!(ooms, 1);

    let stalls = m.allocstall();
    assert!(m.alloc_page(Gfp::KERNEL | Gfp::RETRY_MAYFAIL).is_err());
    assert!(m.allocstall() > stalls);
    assert_eq!(m.report_count(ReportKind::Oom), oom, "RETRY_MAYFAIL reached the OOM path");
    assert_eq!(m.reclaim_events().oom, ooms);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), fail + 1);

    let stalls = m.allocstall();
    assert!(m.alloc_page(Gfp::KERNEL | Gfp::NORETRY | Gfp::NOWARN).is_err());
    assert_eq!(m.allocstall(), stalls + 1, "NORETRY: one light attempt");
    assert_eq!(m.reclaim_events().oom, ooms);

    // A costly order gives up after one reclaim too, without OOM.
    let stalls = m.allocstall();
    assert!(m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::new(4).unwrap()).is_err());
    assert_eq!(m.allocstall(), stalls + 1);
    assert_eq!(m.reclaim_events().oom, ooms);

    // GFP_KERNEL, order 0: the OOM path, with Linux's report.
    assert!(m.alloc_page(Gfp::KERNEL).is_err());
    assert_eq!(m.report_count(ReportKind::Oom), oom + 1);
    let text = m.reports().texts(ReportKind::Oom).pop().unwrap();
    assert!(text.contains(" invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"), "{text}");
    assert!(text.contains("\nMem-Info:\n") && text.contains(" pages RAM\n"), "{text}");
    assert!(text.ends_with("Out of memory and no killable processes...\n"), "{text}");
    // __GFP_NOWARN: the OOM path runs, silently.
    assert!(m.alloc_page(Gfp::KERNEL | Gfp::NOWARN).is_err());
    assert_eq!(m.report_count(ReportKind::Oom), oom + 1);
    assert_eq!(m.reclaim_events().oom, ooms + 2);
}

struct Notifier {
    pages: Mutex<Vec<usize>>,
    machine: AtomicUsize,
    calls: AtomicUsize,
}

impl OomNotifier for Notifier {
    fn notify(&self, _gfp: Gfp, _order: u32) -> usize {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the test keeps the machine alive while the notifier is registered.
        let m = unsafe { &*(self.machine.load(Ordering::Relaxed) as *const Machine) };
        let mut n = 0;
        for a in self.pages.lock().unwrap().drain(..) {
            // SAFETY: the notifier owns the pages.
            unsafe { m.free_page(VirtAddr::new(a)) };
            n += 1;
        }
        n
    }
}

#[test]
fn oom_notifiers_are_asked_before_the_oom_report() {
    let m = machine();
    let nb: &'static Notifier = Box::leak(Box::new(Notifier {
        pages: Mutex::new(Vec::new()),
        machine: AtomicUsize::new(&m as *const Machine as usize),
        calls: AtomicUsize::new(0),
    }));
    // Registered before the pressure, as a kernel registers at init.
    let h = m.register_oom_notifier(nb).unwrap();
    let mut kept = Kept::new(&m);
    kept.fill(Gfp::KERNEL | Gfp::RETRY_MAYFAIL);
    assert_eq!(nb.calls.load(Ordering::Relaxed), 0, "RETRY_MAYFAIL reached the OOM path");
    nb.pages.lock().unwrap().extend(kept.pages.drain(..256).map(|a| a.as_usize()));
    let a = m.__get_free_page(Gfp::KERNEL).expect("the notifier freed memory");
    kept.pages.push(a);
    assert_eq!(nb.calls.load(Ordering::Relaxed), 1);
    assert_eq!(m.report_count(ReportKind::Oom), 0);
    assert_eq!(m.reclaim_events().oom_notifier_freed, 256);
    m.unregister_oom_notifier(h);
    kept.fill(Gfp::KERNEL);
    assert!(m.__get_free_page(Gfp::KERNEL).is_err());
    assert_eq!(nb.calls.load(Ordering::Relaxed), 1, "an unregistered notifier was called");
    assert_eq!(m.report_count(ReportKind::Oom), 1);
}

/// Exhausts the machine completely (reserves included).
fn exhaust(kept: &mut Kept<'_>) {
    kept.fill(Gfp::KERNEL);
    kept.fill(Gfp::KERNEL | Gfp::MEMALLOC);
    kept.m.drain_all_pages();
    kept.fill(Gfp::KERNEL | Gfp::MEMALLOC);
}

#[test]
fn nofail_sleeps_until_another_thread_frees_memory() {
    let m = machine();
    let mut kept = Kept::new(&m);
    exhaust(&mut kept);
    assert!(m.__get_free_page(Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NOWARN).is_err());
    std::thread::scope(|sc| {
        let t = sc.spawn(|| m.__get_free_page(Gfp::KERNEL | Gfp::NOFAIL).unwrap());
        // Wait (by counting, not timing) until the allocation sleeps, then free one page.
        while m.reclaim_events().nofail_waits == 0 {
            std::thread::yield_now();
        }
        kept.free(1);
        let a = t.join().unwrap();
        kept.pages.push(a);
    });
    assert_eq!(m.reclaim_events().nofail_waits, 1);
    // The allocation went through the OOM path first (reported: no __GFP_NOWARN).
    assert_eq!(m.report_count(ReportKind::Oom), 1);
    for z in m.zones() {
        if let Some(p) = z.pageset(0) {
            assert_eq!(p.high(), p.high_min(), "per-CPU high not restored after the sleep");
        }
    }
}

/// Stress for the NOFAIL sleep and wake-up: on a machine with no free page at all, four
/// threads make NOFAIL allocations while a fifth frees pages one at a time. A lost wake-up
/// leaves a sleeper forever (the test hangs). The freer starts once an allocation sleeps
/// (or after 10 s, and the test then fails): a freer that kept ahead of the allocators made
/// the test pass without any sleep, and fail its last check, depending on timing.
#[test]
fn nofail_wakeups_are_not_lost() {
    let m = machine();
    let mut kept = Kept::new(&m);
    exhaust(&mut kept);
    const THREADS: usize = 4;
    const EACH: usize = 40;
    let pool = Mutex::new(kept.pages.split_off(kept.pages.len() - THREADS * EACH));
    let got = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..THREADS {
            sc.spawn(|| {
                for _ in 0..EACH {
                    let a = m.__get_free_page(Gfp::KERNEL | Gfp::NOFAIL | Gfp::NOWARN).unwrap();
                    got.lock().unwrap().push(a);
                }
            });
        }
        sc.spawn(|| {
            let start = std::time::Instant::now();
            while m.reclaim_events().nofail_waits == 0 && start.elapsed() < std::time::Duration::from_secs(10) {
                std::thread::yield_now();
            }
            while let Some(a) = pool.lock().unwrap().pop() {
                // SAFETY: the pool owns the page.
                unsafe { m.free_page(a) };
                std::thread::yield_now();
            }
        });
    });
    let got = got.into_inner().unwrap();
    assert_eq!(got.len(), THREADS * EACH);
    kept.pages.extend(got);
    assert!(m.reclaim_events().nofail_waits > 0);
}

#[test]
fn kswapd_brings_free_memory_back_over_high() {
    let m = MachineBuilder::new().ram_mib(64).cpus(2).quiet_reports().kswapd(true).build().unwrap();
    let cache = FakeCache::new(&m, false);
    let s = m.shrinker_alloc(ShrinkerFlags::NONE, "burst").unwrap();
    s.register(cache);
    let slow = m.events().slowpath.load(Ordering::Relaxed);
    // A burst: allocate until every zone is below its low watermark (the first slow path).
    while m.events().slowpath.load(Ordering::Relaxed) == slow {
        cache.push(m.__get_free_page(Gfp::KERNEL).unwrap());
    }
    m.wait_kswapd_idle();
    assert!(m.events().kswapd_wake.load(Ordering::Relaxed) > 0, "kswapd not woken");
    assert!(m.reclaim_events().pageoutrun > 0);
    assert!(m.reclaim_events().pgsteal_kswapd > 0);
    assert!(m.pgdat_balanced(0, Order::ZERO, ZoneType::Normal), "node not over high after kswapd");
    assert!(m.zones().any(|z| z.is_managed()
        && z.free_pages() > z.wmark(kmem::mm::zone::Wmark::High) + z.lowmem_reserve(ZoneType::Normal)));
    cache.release_all();
    drop(s);
}

#[test]
fn slab_caches_give_back_empty_slabs_reclaimable_first() {
    let m = machine();
    let c = m.kmem_cache_create("reclaimable_test", 512, 0, kmem::SlabFlags::RECLAIM_ACCOUNT, None).unwrap();
    let objs: Vec<_> = (0..4000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    for o in objs {
        // SAFETY: allocated above from this cache.
        unsafe { m.kmem_cache_free(&c, o) };
    }
    let slabs = || c.nodes().map(|(_, n)| n.nr_slabs()).sum::<usize>();
    let before = slabs();
    let mut kept = Kept::new(&m);
    kept.fill(Gfp::KERNEL);
    assert!(slabs() < before, "reclaim left the empty slabs ({before})");
    assert!(m.reclaim_events().slab_pages_reclaimed > 0);
    drop(kept);
    m.kmem_cache_destroy(c);
}

#[test]
fn shrinker_table_and_handles() {
    struct Nop;
    impl ShrinkerOps for Nop {
        fn count_objects(&self, _: &ShrinkControl) -> usize {
            0
        }
        fn scan_objects(&self, _: &mut ShrinkControl) -> usize {
            0
        }
    }
    static NOP: Nop = Nop;
    let m = machine();
    let all: Vec<_> = (0..kmem::reclaim::MAX_SHRINKERS)
        .map(|i| {
            let s = m.shrinker_alloc(ShrinkerFlags::NONE, &format!("s{i}")).unwrap();
            s.register(&NOP);
            s
        })
        .collect();
    assert_eq!(m.nr_shrinkers(), kmem::reclaim::MAX_SHRINKERS);
    assert!(m.shrinker_alloc(ShrinkerFlags::NONE, "one too many").is_err());
    drop(all);
    assert_eq!(m.nr_shrinkers(), 0);
    assert!(m.shrinker_alloc(ShrinkerFlags::NONE, "again").is_ok());
}

/// A shrinker that lies: absurd counts, more freed than asked. Reclaim must neither overflow
/// nor loop forever, and the allocation still fails cleanly.
#[test]
fn a_lying_shrinker_does_not_break_reclaim() {
    struct Liar(AtomicUsize);
    impl ShrinkerOps for Liar {
        fn count_objects(&self, _: &ShrinkControl) -> usize {
            usize::MAX - 2
        }
        fn scan_objects(&self, sc: &mut ShrinkControl) -> usize {
            self.0.fetch_add(1, Ordering::Relaxed);
            sc.nr_scanned = sc.nr_to_scan;
            usize::MAX / 2
        }
    }
    let m = machine();
    let liar: &'static Liar = Box::leak(Box::new(Liar(AtomicUsize::new(0))));
    let s = m.shrinker_alloc(ShrinkerFlags::NONE, "liar").unwrap();
    s.set_seeks(0).set_batch(1 << 40);
    s.register(liar);
    let mut kept = Kept::new(&m);
    kept.fill(Gfp::KERNEL);
    assert!(liar.0.load(Ordering::Relaxed) > 0);
    assert!(m.alloc_page(Gfp::KERNEL | Gfp::NOWARN).is_err());
    drop(kept);
    drop(s);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

/// kswapd against concurrent allocations: two threads allocate into a fake cache and free
/// from it while kswapd reclaims from the same cache. Every page is accounted for at the end.
#[test]
fn kswapd_and_concurrent_allocations() {
    let m = MachineBuilder::new().ram_mib(64).cpus(2).quiet_reports().kswapd(true).build().unwrap();
    let cache = FakeCache::new(&m, false);
    let s = m.shrinker_alloc(ShrinkerFlags::NONE, "shared").unwrap();
    s.register(cache);
    m.drain_all_pages();
    let free0: usize = m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
    std::thread::scope(|sc| {
        for t in 0..2 {
            let (m, cache) = (&m, cache);
            sc.spawn(move || {
                for i in 0..30_000usize {
                    if let Ok(a) = m.__get_free_page(Gfp::KERNEL | Gfp::NOWARN) {
                        cache.push(a);
                    }
                    if (i + t) % 3 == 0 {
                        if let Some(a) = cache.pages.lock().unwrap().pop() {
                            // SAFETY: the cache owned the page.
                            unsafe { m.free_page(VirtAddr::new(a)) };
                        }
                    }
                }
            });
        }
    });
    m.wait_kswapd_idle();
    assert!(m.reclaim_events().pageoutrun > 0, "kswapd never ran");
    cache.release_all();
    m.wait_kswapd_idle();
    m.drain_all_pages();
    let free1: usize = m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
    // Empty slabs the built-in shrinker gave back can only add to the free pages.
    assert!(free1 >= free0, "pages lost: {free0} -> {free1}");
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    drop(s);
}
