//! The ring-0 test runner: each test returns `Err(why)` on failure; the runner prints
//! `ok`/`FAIL` lines and the Linux-kselftest-style total `N passed, N failed`.
//!
//! Concurrent tests run on every online CPU at once: the boot CPU publishes the test and a
//! generation number, the APs (waiting in [`ap_loop`], interrupts on) run it beside the boot
//! CPU and count themselves done.

mod bench;
mod concurrent;
mod pages;
mod slab;
mod vm;

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use kmem::Kmem;

use super::platform::BootPlatform;
use super::{arch, percpu};

/// A test's verdict.
pub type TestResult = Result<(), &'static str>;

/// Fails with `why` unless `cond`.
pub fn check(cond: bool, why: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(why)
    }
}

/// A test run on every CPU at once: `(machine, cpu, shared word)`.
pub type ConcurrentFn = fn(&'static Kmem<BootPlatform>, usize, usize) -> TestResult;

/// Slab reports the tests provoke on purpose (the red-zone test), for `no_stray_reports`.
pub static PROVOKED_SLAB_BUGS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

static GEN: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static FAILS: AtomicU32 = AtomicU32::new(0);
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static SHARED: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` on every online CPU at once; the number of CPUs on which it failed.
pub fn on_every_cpu(m: &'static Kmem<BootPlatform>, f: ConcurrentFn, shared: usize) -> (usize, u32) {
    let aps = percpu::online_count() - 1;
    DONE.store(0, Ordering::Relaxed);
    FAILS.store(0, Ordering::Relaxed);
    CURRENT.store(f as usize, Ordering::Relaxed);
    SHARED.store(shared, Ordering::Relaxed);
    GEN.fetch_add(1, Ordering::Release);
    if let Err(why) = f(m, 0, shared) {
        kprintln!("    CPU 0: {why}");
        FAILS.fetch_add(1, Ordering::Relaxed);
    }
    while DONE.load(Ordering::Acquire) < aps as u32 {
        core::hint::spin_loop();
    }
    (aps + 1, FAILS.load(Ordering::Acquire))
}

/// The generation of the last concurrent test published; an AP reads it before it marks
/// itself online and hands it to [`ap_loop`].
pub fn generation() -> u32 {
    GEN.load(Ordering::Acquire)
}

/// An AP's life after start-up: run each concurrent test the boot CPU publishes after
/// generation `seen`.
pub fn ap_loop(m: &'static Kmem<BootPlatform>, cpu: usize, mut seen: u32) -> ! {
    loop {
        let g = GEN.load(Ordering::Acquire);
        if g == seen {
            // Interrupts stay on: timer ticks and call-function IPIs (shootdowns are NMIs).
            core::hint::spin_loop();
            continue;
        }
        seen = g;
        // SAFETY: CURRENT holds a `ConcurrentFn` stored before GEN was bumped (Release).
        let f: ConcurrentFn = unsafe { core::mem::transmute::<usize, ConcurrentFn>(CURRENT.load(Ordering::Relaxed)) };
        if let Err(why) = f(m, cpu, SHARED.load(Ordering::Relaxed)) {
            kprintln!("    CPU {cpu}: {why}");
            FAILS.fetch_add(1, Ordering::Relaxed);
        }
        DONE.fetch_add(1, Ordering::Release);
    }
}

type Test = (&'static str, fn(&'static Kmem<BootPlatform>) -> TestResult);

const TESTS: &[Test] = &[
    ("page_alloc: every order", pages::every_order),
    ("page_alloc: every zone", pages::every_zone),
    ("page_alloc: watermarks (ZONE_DMA drained to its min watermark)", pages::watermarks),
    ("page_alloc: every node", pages::every_node),
    ("memmap: one array through the vmemmap", pages::vmemmap),
    ("slab: cache with debug checks (red zone, poison, owner)", slab::debug_cache),
    ("slab: red-zone overwrite detected, cache still works", slab::redzone_misuse),
    ("kmalloc: every size class and large", slab::kmalloc_sizes),
    ("vmalloc: through the page tables", vm::vmalloc_rw),
    ("vmalloc: guard-page write faults, fixed up", vm::vmalloc_guard),
    ("kernel stack: guard-page write faults, fixed up", vm::stack_guard),
    ("kfence: out-of-bounds, use-after-free and double free reported from the fault handler", vm::kfence),
    ("kmap: kmap_local_page and kmap", vm::kmap),
    ("smp: every CPU allocates at once", concurrent::stress),
    ("smp: vmap stacks' guard pages on every CPU", concurrent::ap_stack_guards),
    ("percpu: every CPU's own slot", concurrent::percpu_every_cpu),
    ("highmem: kmap on every CPU at once, past the pkmap ring's wrap", concurrent::kmap_every_cpu),
    ("percpu: drain_all_pages through call-function IPIs", concurrent::drain_all),
    ("irq: allocations in the timer interrupt on every CPU", concurrent::timer_allocs),
    ("fast paths: rdtsc-timed pairs", bench::fast_paths),
    ("reports: nothing reported but what the tests provoked", no_stray_reports),
];

/// After everything (timer interrupts and concurrent phases included): no bad page, no
/// warning, no sleeping-in-atomic report, no allocation failure or OOM, and slab reports
/// only those the red-zone test provoked (with `slub_debug=FZPU` every cache checks).
fn no_stray_reports(m: &'static Kmem<BootPlatform>) -> TestResult {
    use kmem::ReportKind;
    for kind in [
        ReportKind::BadPage,
        ReportKind::Warning,
        ReportKind::SleepInAtomic,
        ReportKind::PageAllocFailure,
        ReportKind::Oom,
    ] {
        if m.report_count(kind) != 0 {
            kprintln!("    {kind:?}: {}", m.report_count(kind));
            return Err("a report no test provoked");
        }
    }
    let slab = m.report_count(ReportKind::SlabBug);
    check(slab == PROVOKED_SLAB_BUGS.load(Ordering::Relaxed), "a slab report no test provoked")?;
    // The KFENCE test provokes three.
    check(m.report_count(ReportKind::Kfence) == 3, "a KFENCE report no test provoked")
}

/// Recurses until the stack runs out (`depth` is never reached).
#[inline(never)]
fn recurse(n: u64, depth: u64) -> u64 {
    let frame = core::hint::black_box([n; 32]);
    if n == depth {
        return frame[1];
    }
    recurse(n + 1, depth).wrapping_add(frame[n as usize % 32])
}

fn overflow_one(_m: &'static Kmem<BootPlatform>, cpu: usize, _shared: usize) -> TestResult {
    if cpu == 1 {
        kprintln!("kmem-boot: CPU 1 overflows its vmap stack on purpose (stack_overflow option)");
        recurse(0, core::hint::black_box(u64::MAX));
    }
    Ok(())
}

/// The `stack_overflow` boot option: CPU 1 recurses off the bottom of its vmap stack. The
/// double fault must be reported (`kernel stack overflow (double-fault)`) and end the run
/// with status 3; `scripts/boot.sh`'s `stack-overflow` configuration expects exactly that.
pub fn stack_overflow(m: &'static Kmem<BootPlatform>) {
    on_every_cpu(m, overflow_one, 0);
    kprintln!("kmem-boot: the stack overflow was not caught");
}

/// Runs every test; (passed, failed).
pub fn run(m: &'static Kmem<BootPlatform>) -> (usize, usize) {
    super::IRQ_ALLOCS_ON.store(true, Ordering::Release);
    let (mut passed, mut failed) = (0, 0);
    kprintln!("kmem-boot: running {} tests on {} CPU(s)", TESTS.len(), percpu::online_count());
    for (i, (name, t)) in TESTS.iter().enumerate() {
        let t0 = arch::rdtsc();
        let r = t(m);
        let ms = (arch::rdtsc() - t0) / (super::apic::TSC_PER_US.load(Ordering::Relaxed) * 1000).max(1);
        match r {
            Ok(()) => {
                passed += 1;
                kprintln!("ok {} - {name} ({ms} ms)", i + 1);
            }
            Err(why) => {
                failed += 1;
                kprintln!("not ok {} - {name}: {why}", i + 1);
            }
        }
    }
    (passed, failed)
}

/// A `fmt::Write` into a byte buffer; what does not fit is dropped (and said so).
struct BufWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    cut: bool,
}

impl core::fmt::Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        self.cut |= n < s.len();
        Ok(())
    }
}

type Render = fn(&Kmem<BootPlatform>, &mut dyn core::fmt::Write) -> core::fmt::Result;

/// Prints `/proc/buddyinfo`, `/proc/slabinfo` and `/proc/meminfo` from the core's renderers.
/// Each is rendered into a vmalloc'd buffer first and printed after, so the renderers run
/// with the console unlocked (a report they trigger cannot deadlock on it).
pub fn print_proc(m: &Kmem<BootPlatform>) {
    const BYTES: usize = 64 << 10;
    let Ok(buf) = m.vmalloc(BYTES) else {
        kprintln!("kmem-boot: no memory to render /proc");
        return;
    };
    let files: [(&str, Render); 3] = [
        ("/proc/buddyinfo", kmem::proc::buddyinfo::<BootPlatform>),
        ("/proc/slabinfo", kmem::proc::slabinfo::<BootPlatform>),
        ("/proc/meminfo", kmem::proc::meminfo::<BootPlatform>),
    ];
    for (name, render) in files {
        // SAFETY: BYTES bytes of a fresh vmalloc area, ours until vfree below.
        let bytes = unsafe { core::slice::from_raw_parts_mut(buf.as_ptr(), BYTES) };
        let mut w = BufWriter { buf: bytes, len: 0, cut: false };
        let _ = render(m, &mut w);
        let text = match core::str::from_utf8(&w.buf[..w.len]) {
            Ok(t) => t,
            Err(e) => core::str::from_utf8(&w.buf[..e.valid_up_to()]).unwrap_or(""),
        };
        kprintln!("--- {name}\n{text}{}", if w.cut { "[cut at 64 KiB]\n" } else { "" });
    }
    // SAFETY: from vmalloc, freed once; `bytes` is gone.
    unsafe { m.vfree(buf.as_ptr()) };
}
