//! [`HostedPlatform`]: the platform of a machine that runs inside a Linux process.
//!
//! - CPUs: each thread is given a CPU on first use (`thread number % nr_cpus`), or the one
//!   [`pin_current_thread`] chose. Several threads may share a CPU; the per-CPU layer makes
//!   "preemption disabled" real mutual exclusion.
//! - Preemption and IRQ state are per thread, as they are per task/CPU context in a kernel.
//! - The direct map is the RAM mapping up to the direct-map limit; HighMem pages are reached
//!   for zeroing through the same mapping (the `kmap_local` seam).
//! - Reports go to a [`ReportLog`] the machine owner can read, and optionally to stderr.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kmem::{CpuId, DirectMap, IrqState, Pfn, Platform, ReportKind, TaskId, VirtAddr};

static NEXT_THREAD: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static THREAD_NO: u32 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    static PINNED: Cell<Option<u32>> = const { Cell::new(None) };
    static PREEMPT: Cell<u32> = const { Cell::new(0) };
    static IRQS_OFF: Cell<bool> = const { Cell::new(false) };
    static IN_IRQ: Cell<u32> = const { Cell::new(0) };
}

/// Runs the calling thread on `cpu` of every hosted machine (modulo its CPU count) from now on.
pub fn pin_current_thread(cpu: u32) {
    PINNED.with(|p| p.set(Some(cpu)));
}

/// Runs `f` as if from a hardware interrupt handler on the current CPU: `in_interrupt()` is
/// true and interrupts are disabled while it runs.
pub fn in_irq<R>(f: impl FnOnce() -> R) -> R {
    IN_IRQ.with(|c| c.set(c.get() + 1));
    let was = IRQS_OFF.with(|c| c.replace(true));
    let r = f();
    IRQS_OFF.with(|c| c.set(was));
    IN_IRQ.with(|c| c.set(c.get() - 1));
    r
}

/// The reports a machine has made, kept for the owner to read.
#[derive(Debug, Default)]
pub struct ReportLog {
    entries: Mutex<Vec<(ReportKind, String)>>,
    echo: bool,
}

impl ReportLog {
    /// A log; with `echo`, every report is also printed to stderr.
    pub fn new(echo: bool) -> Self {
        Self { entries: Mutex::new(Vec::new()), echo }
    }
    /// All report texts of `kind`, oldest first.
    pub fn texts(&self, kind: ReportKind) -> Vec<String> {
        self.entries
            .lock()
            .expect("report log poisoned")
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| t.clone())
            .collect()
    }
    /// The most recent report text of any kind.
    pub fn last(&self) -> Option<String> {
        self.entries.lock().expect("report log poisoned").last().map(|(_, t)| t.clone())
    }
    /// Removes and returns everything logged so far.
    pub fn take(&self) -> Vec<(ReportKind, String)> {
        std::mem::take(&mut *self.entries.lock().expect("report log poisoned"))
    }
}

/// The platform of a hosted machine.
#[derive(Debug, Clone)]
pub struct HostedPlatform {
    nr_cpus: usize,
    direct_map: DirectMap,
    ram_base: usize,
    ram_len: usize,
    log: Arc<ReportLog>,
}

impl HostedPlatform {
    pub(crate) fn new(
        nr_cpus: usize,
        direct_map: DirectMap,
        ram_base: usize,
        ram_len: usize,
        log: Arc<ReportLog>,
    ) -> Self {
        Self { nr_cpus, direct_map, ram_base, ram_len, log }
    }
    /// The report log.
    pub fn log(&self) -> &ReportLog {
        &self.log
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

// SAFETY: the direct map is the machine's RAM mapping (`Ram`), which the `Machine` keeps alive
// longer than the `Kmem` using this platform, and maps every usable range read-write;
// `current_cpu` is reduced modulo `nr_cpus`, which never changes; `map_temporary` returns an
// address inside the RAM mapping for any frame below its end.
unsafe impl Platform for HostedPlatform {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }
    #[inline]
    fn current_cpu(&self) -> CpuId {
        let n = PINNED.with(Cell::get).unwrap_or_else(|| THREAD_NO.with(|t| *t));
        CpuId(n % self.nr_cpus as u32)
    }
    fn preempt_count(&self) -> u32 {
        PREEMPT.with(Cell::get)
    }
    #[inline]
    fn preempt_disable(&self) {
        PREEMPT.with(|c| c.set(c.get() + 1));
    }
    #[inline]
    fn preempt_enable(&self) {
        PREEMPT.with(|c| c.set(c.get().saturating_sub(1)));
    }
    #[inline]
    fn local_irq_save(&self) -> IrqState {
        IrqState(IRQS_OFF.with(|c| c.replace(true)))
    }
    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        IRQS_OFF.with(|c| c.set(state.0));
    }
    fn irqs_disabled(&self) -> bool {
        IRQS_OFF.with(Cell::get)
    }
    fn in_interrupt(&self) -> bool {
        IN_IRQ.with(Cell::get) > 0
    }
    fn direct_map(&self) -> DirectMap {
        self.direct_map
    }
    fn map_temporary(&self, pfn: Pfn) -> Option<VirtAddr> {
        let off = pfn.phys().as_u64() as usize;
        (off < self.ram_len).then(|| VirtAddr::new(self.ram_base + off))
    }
    fn cpu_relax(&self) {
        std::thread::yield_now();
    }
    fn now_ns(&self) -> u64 {
        epoch().elapsed().as_nanos() as u64
    }
    fn current_task(&self) -> TaskId {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let t = std::thread::current();
        TaskId::new(tid, t.name().unwrap_or("kmem"))
    }
    fn report(&self, kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        let mut s = String::new();
        let _ = body(&mut s);
        if self.log.echo {
            eprint!("{s}");
        }
        self.log.entries.lock().expect("report log poisoned").push((kind, s));
    }
}
