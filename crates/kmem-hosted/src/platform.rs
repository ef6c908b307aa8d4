//! [`HostedPlatform`]: the platform of a machine that runs inside a Linux process.
//!
//! - CPUs: each thread runs on a CPU (`thread number % nr_cpus`, or the one
//!   [`crate::pin_current_thread`] chose). Several threads may share a CPU: disabling
//!   preemption or interrupts takes the CPU for real (see [`crate::cpus`]), so per-CPU data
//!   is exclusively the holder's, as in a kernel.
//! - Preempt count and IRQ state are per thread, as they are per task context in a kernel.
//! - The direct map is the RAM mapping up to the direct-map limit. On a machine with HighMem
//!   (the x86-32 preset) the RAM mapping above the limit is `PROT_NONE`: HighMem pages are
//!   reached only through kmap mappings, which are `mmap`s of the RAM memfd into the kmap
//!   area ([`kmem::Platform::kmap_range`]), the same page-table operations as vmalloc's.
//! - `migrate_disable` holds the CPU without raising the preempt count (a hosted thread is
//!   not time-sliced on its CPU, so holding the CPU is what keeps its `kmap_local` stack its own).
//! - Fault injection's per-task state (`fail-nth`, `make-it-fail`) is a thread-local, for
//!   one machine at a time ([`kmem::Platform::task_fault`]).
//! - Reports go to a [`ReportLog`] the machine owner can read, and to stderr as
//!   [`crate::console`] says.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::console::{Console, ReportEcho};
use kmem::{
    CpuId, DirectMap, IrqState, MapError, PageProt, PageTableAlloc, Pfn, Pinned, Platform, ReportKind, TaskFault,
    TaskId, TlbFlush, VirtAddr,
};

use crate::cpus::{self, Cpus};
use crate::reclaim::HostedReclaim;

thread_local! {
    /// The thread's fault-injection state (`current->fail_nth`, `make_it_fail`) and the
    /// machine (its CPUs' id) it was set for: a thread has one, for one machine at a time;
    /// read through another machine it is the default. Const-initialised, no destructor:
    /// safe to touch from inside the process's allocator.
    static TASK_FAULT: std::cell::Cell<(usize, TaskFault)> = const {
        std::cell::Cell::new((0, TaskFault { fail_nth: 0, make_it_fail: false }))
    };
}

/// The reports a machine has made, kept for the owner to read.
#[derive(Debug, Default)]
pub struct ReportLog {
    entries: Mutex<Vec<(ReportKind, String)>>,
    echo: ReportEcho,
    console: Console,
    /// Never allocate: reports go to stderr through a fixed buffer and are not kept (the
    /// machine is the process's allocator, which a report may be made from inside of).
    no_alloc: bool,
    /// Called after each delivered report ([`crate::MachineBuilder::on_report`]).
    pub(crate) hook: Option<fn(ReportKind)>,
}

impl ReportLog {
    /// A log; with `echo`, every report is also printed to stderr (rate-limited).
    pub fn new(echo: bool) -> Self {
        Self::echoing(if echo { ReportEcho::All } else { ReportEcho::Off })
    }
    /// A log that echoes the reports `echo` selects to stderr (rate-limited).
    pub fn echoing(echo: ReportEcho) -> Self {
        Self { entries: Mutex::new(Vec::new()), echo, console: Console::default(), no_alloc: false, hook: None }
    }
    /// Reports echoed to stderr so far.
    pub fn echoed(&self) -> u64 {
        self.console.echoed()
    }
    /// Reports not echoed because of the rate limit (`printk_ratelimit`: 10 per 5 s); they
    /// are counted and logged all the same.
    pub fn suppressed(&self) -> u64 {
        self.console.suppressed()
    }
    /// A log that keeps nothing and never allocates: each report is written to stderr
    /// through a 4 KiB stack buffer (a longer report in several writes). For the machine
    /// that serves the process's own allocations.
    pub fn stderr_only() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            echo: ReportEcho::All,
            console: Console::default(),
            no_alloc: true,
            hook: None,
        }
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

/// [`HostedPlatform::gate`]'s word: an atomic that clones by value.
#[derive(Debug)]
struct GateToken(AtomicUsize);

impl Clone for GateToken {
    fn clone(&self) -> Self {
        Self(AtomicUsize::new(self.0.load(Ordering::Acquire)))
    }
}

/// The platform of a hosted machine.
#[derive(Debug, Clone)]
pub struct HostedPlatform {
    cpus: Arc<Cpus>,
    /// `cpus.id()`, here so the per-CPU fast paths need not follow the `Arc`.
    machine_id: usize,
    /// The machine's gate token: what a thread's fast gate holds while open on one of its
    /// owned CPUs (`cpus/ctx.rs`), read by every owned fast pin. The machine's id, until
    /// the machine becomes the process machine (`Machine::make_process_machine`): then
    /// `PROCESS_GATE`, which the process allocator's fast paths test without the machine
    /// (`ProcessCpu`). A clone keeps the token it was made with: one made before that (a
    /// thread-exit hook's) no longer matches its threads' `own_gate`, so its fast pins
    /// decline and it pins the careful way.
    gate: GateToken,
    direct_map: DirectMap,
    ram_len: usize,
    log: Arc<ReportLog>,
    maps: MapRanges,
    reclaim: Arc<HostedReclaim>,
}

/// What a hosted machine can map pages into: the RAM memfd, the vmalloc range and the kmap
/// area (each `[start, end)`, reserved `PROT_NONE` address space).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MapRanges {
    pub(crate) fd: Option<std::os::fd::RawFd>,
    pub(crate) vmalloc: Option<(usize, usize)>,
    pub(crate) kmap: Option<(usize, usize)>,
    /// The vmemmap range: one section's descriptors (1 MiB) per section slot from its start.
    pub(crate) vmemmap: Option<(usize, usize)>,
}

impl MapRanges {
    /// Whether `[va, va + len)` lies in the vmalloc range or the kmap area.
    fn holds(&self, va: usize, len: usize) -> bool {
        [self.vmalloc, self.kmap]
            .into_iter()
            .flatten()
            .any(|(s, e)| va >= s && va.checked_add(len).is_some_and(|x| x <= e))
    }
}

impl HostedPlatform {
    pub(crate) fn new(
        cpus: Arc<Cpus>,
        direct_map: DirectMap,
        ram_len: usize,
        log: Arc<ReportLog>,
        maps: MapRanges,
    ) -> Self {
        let gate = GateToken(AtomicUsize::new(cpus.id()));
        Self { machine_id: cpus.id(), gate, cpus, direct_map, ram_len, log, maps, reclaim: Arc::default() }
    }
    /// Makes the machine `m` (this platform's) the process machine, unless another is:
    /// whether it is now (`Machine::make_process_machine`). The gate token becomes
    /// `PROCESS_GATE` in the machine's CPUs and here.
    pub(crate) fn make_process_machine(&self, m: &'static crate::Machine) -> bool {
        if !self.cpus.per_thread() || !cpus::set_process_machine(m, &self.cpus) {
            return false;
        }
        self.gate.0.store(cpus::PROCESS_GATE, Ordering::Release);
        true
    }
    /// The gate token (see the field).
    #[inline(always)]
    fn gate(&self) -> usize {
        self.gate.0.load(Ordering::Acquire)
    }
    /// The wait queue and kswapd control shared with the machine's kswapd threads.
    pub(crate) fn reclaim(&self) -> &Arc<HostedReclaim> {
        &self.reclaim
    }
    /// The report log.
    pub fn log(&self) -> &ReportLog {
        &self.log
    }
    /// `stop_machine()`: takes every CPU for the calling thread (see [`crate::Machine::stop_machine`]).
    pub(crate) fn stop_cpus(&self) {
        self.cpus.stop_all();
    }
    /// Ends [`HostedPlatform::stop_cpus`].
    pub(crate) fn start_cpus(&self) {
        self.cpus.start_all();
    }
    /// [`crate::pin_current_thread`]`(cpu)`, with this machine's home CPU for the thread
    /// computed at once: on a shared-CPU machine its next fast pin (`try_pin_cpu`, the
    /// inline allocation fast paths) then finds it, where after the plain call the first
    /// operation takes the full paths (the home is computed there). What a replay that
    /// follows a trace's CPUs calls at each change.
    pub fn pin_current_thread(&self, cpu: u32) {
        self.cpus.pin_thread(cpu);
    }
    /// The machine's CPUs.
    pub(crate) fn cpus(&self) -> &Arc<Cpus> {
        &self.cpus
    }
    /// Whether each thread gets a CPU of its own (`MachineBuilder::thread_cpus`).
    pub fn cpu_per_thread(&self) -> bool {
        self.cpus.per_thread()
    }
}

/// A `fmt::Write` to stderr that never allocates: the text gathers in a stack buffer, written
/// out whenever it fills and at the end ([`StderrBuf::flush`]). A report longer than the
/// buffer (a slab report's hex dump of a large object) goes out in several writes, whole.
struct StderrBuf {
    buf: [u8; 4096],
    len: usize,
}

impl StderrBuf {
    fn new() -> Self {
        Self { buf: [0; 4096], len: 0 }
    }
    /// Writes out what the buffer holds (all of it, unless stderr fails).
    fn flush(&mut self) {
        let mut out = &self.buf[..self.len];
        while let Ok(n @ 1..) = rustix::io::write(rustix::stdio::stderr(), out) {
            out = &out[n..];
        }
        self.len = 0;
    }
}

/// The thread writing a report to stderr through a [`StderrBuf`] (`cpus::thread_key`), 0
/// when none: a report longer than the buffer goes out in several writes, which another
/// thread's report must not split.
static STDERR_TURN: AtomicUsize = AtomicUsize::new(0);

/// Runs `f`, which writes one report to stderr, while no other thread does. A report made
/// inside this thread's own (a signal handler's) writes at once; a thread that has waited a
/// second for another's writes anyway (a report mixed into another, never a hang). Allocates
/// nothing.
fn with_stderr_turn(f: impl FnOnce()) {
    let me = cpus::thread_key();
    if STDERR_TURN.load(Ordering::Relaxed) == me {
        return f();
    }
    let start = Instant::now();
    let mut tries = 0u32;
    let turn = loop {
        if STDERR_TURN.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            break true;
        }
        tries = tries.wrapping_add(1);
        if tries % 64 != 0 {
            std::hint::spin_loop();
        } else if start.elapsed() > std::time::Duration::from_secs(1) {
            break false;
        } else {
            std::thread::yield_now();
        }
    };
    f();
    if turn {
        STDERR_TURN.store(0, Ordering::Release);
    }
}

impl fmt::Write for StderrBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
        }
        Ok(())
    }
}

fn libc_einval() -> i32 {
    rustix::io::Errno::INVAL.raw_os_error()
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

// SAFETY: the direct map is the machine's RAM mapping (`Ram`), which the `Machine` keeps alive
// longer than the `Kmem` using this platform, and maps every usable range read-write;
// `current_cpu` is reduced modulo the fixed number of CPU slots; the vmalloc range, the
// kmap area and the vmemmap range are the machine's own `VSpace` reservations, disjoint from
// RAM, and live as long as the Kmem (descriptors moved to the vmemmap leave `PROT_NONE`
// holes in the direct map, which the core never reaches).
unsafe impl Platform for HostedPlatform {
    fn nr_cpus(&self) -> usize {
        self.cpus.nr()
    }
    #[inline]
    fn current_cpu(&self) -> CpuId {
        CpuId(cpus::current_owned(self.machine_id).unwrap_or_else(|| self.cpus.current()))
    }
    fn preempt_count(&self) -> u32 {
        cpus::preempt_count()
    }
    #[inline]
    fn preempt_disable(&self) {
        self.cpus.enter(true);
    }
    #[inline]
    fn preempt_disable_cpu(&self) -> CpuId {
        CpuId(self.cpus.enter(true))
    }
    #[inline]
    fn preempt_enable(&self) {
        self.cpus.exit(true);
    }
    #[inline]
    fn local_irq_save(&self) -> IrqState {
        IrqState(self.cpus.irq_save())
    }
    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        self.cpus.irq_restore(state.0);
    }
    #[inline]
    fn pin_cpu(&self) -> Pinned {
        let (cpu, token) = cpus::pin_owned(self.machine_id).unwrap_or_else(|| self.cpus.pin());
        Pinned { cpu: CpuId(cpu), token }
    }
    /// The owned CPU of a thread that has one on this machine and no stopper on it, or on
    /// a shared machine the thread's free home CPU when it holds none (no call, no wait);
    /// `None` otherwise (a borrowed CPU, a first use, a stopper, a held or busy CPU, a
    /// migrating machine: see `cpus::try_pin_fast`).
    #[inline(always)]
    fn try_pin_cpu(&self) -> Option<Pinned> {
        cpus::try_pin_fast(self.gate()).map(|token| {
            // SAFETY: a token `try_pin_fast` just returned.
            Pinned { cpu: CpuId(unsafe { crate::cpu_slot::pinned_cpu(token) }), token }
        })
    }
    #[inline]
    fn unpin_cpu(&self, pinned: Pinned) {
        self.cpus.unpin(pinned.token);
    }
    /// Both CPU models keep the area word on the line a fast pin writes
    /// (`cpu_slot::AREA_OFFSET`).
    const CPU_AREA: bool = true;
    fn set_cpu_area(&self, cpu: CpuId, area: usize) {
        self.cpus.set_area(cpu.0, area);
    }
    #[inline(always)]
    fn try_pin_cpu_area(&self) -> Option<(Pinned, usize)> {
        cpus::try_pin_fast_area(self.gate()).map(|(token, area)| {
            // SAFETY: a token `try_pin_fast_area` just returned.
            (Pinned { cpu: CpuId(unsafe { crate::cpu_slot::pinned_cpu(token) }), token }, area)
        })
    }
    /// glibc's `__libc_single_threaded` (`cpus::single_threaded`).
    #[inline(always)]
    fn sole_thread() -> bool {
        crate::cpus::single_threaded()
    }
    fn try_pin_cpu_nolock(&self) -> Option<Pinned> {
        self.cpus.try_pin_alone().map(|(cpu, token)| Pinned { cpu: CpuId(cpu), token })
    }
    #[inline(always)]
    fn unpin_cpu_fast(&self, pinned: Pinned) {
        self.cpus.unpin_fast(pinned.token);
    }
    fn run_on_cpu(&self, cpu: CpuId, f: &mut dyn FnMut()) -> bool {
        if cpu.index() >= self.cpus.nr() {
            return false;
        }
        self.cpus.run_on(cpu.0, f);
        true
    }
    fn cpu_online(&self, cpu: CpuId) -> bool {
        self.cpus.online(cpu.0)
    }
    /// A CPU-per-thread machine's CPUs come online as threads take them (the builder
    /// installs `Kmem::cpu_up_prepare` for that).
    fn cpus_come_up_later(&self) -> bool {
        self.cpus.per_thread()
    }
    #[inline]
    fn atomic_context(&self) -> bool {
        cpus::atomic_context()
    }
    fn irqs_disabled(&self) -> bool {
        cpus::irqs_off()
    }
    fn in_interrupt(&self) -> bool {
        cpus::in_interrupt()
    }
    fn direct_map(&self) -> DirectMap {
        self.direct_map
    }
    fn kmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        self.maps.kmap.map(|(s, e)| (VirtAddr::new(s), VirtAddr::new(e)))
    }
    #[inline]
    fn migrate_disable(&self) -> CpuId {
        CpuId(self.cpus.enter(false))
    }
    #[inline]
    fn migrate_enable(&self) {
        self.cpus.exit(false);
    }
    #[inline]
    fn held_cpu(&self) -> Option<CpuId> {
        self.cpus.held_cpu().map(CpuId)
    }
    fn cpu_relax(&self) {
        std::thread::yield_now();
    }
    fn wait_for_free_memory(&self, ready: &dyn Fn() -> bool) {
        self.reclaim.wait_for_free_memory(ready);
    }
    fn wake_free_memory_waiters(&self) {
        self.reclaim.wake_free_memory_waiters();
    }
    fn wake_kswapd(&self, nid: usize) -> bool {
        self.reclaim.wake_kswapd(nid)
    }
    fn in_reclaim(&self) -> bool {
        crate::reclaim::in_reclaim()
    }
    fn set_in_reclaim(&self, on: bool) -> bool {
        crate::reclaim::set_in_reclaim(on)
    }
    fn now_ns(&self) -> u64 {
        epoch().elapsed().as_nanos() as u64
    }
    fn current_task(&self) -> TaskId {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        if self.log.no_alloc {
            // std::thread::current() may allocate its handle on first use.
            return TaskId::new(tid, "kmem");
        }
        let t = std::thread::current();
        TaskId::new(tid, t.name().unwrap_or("kmem"))
    }
    // `#[inline]` keeps `TASK_FAULT` reachable from other crates, which gives it the
    // initial-exec TLS model in libkmem_malloc.so's PIE build (an internal thread-local gets
    // local-exec there, which a shared object cannot link).
    #[inline]
    fn task_fault(&self) -> Option<TaskFault> {
        let (owner, state) = TASK_FAULT.get();
        Some(if owner == self.machine_id { state } else { TaskFault::default() })
    }
    #[inline]
    fn set_task_fault(&self, state: TaskFault) -> bool {
        TASK_FAULT.set((self.machine_id, state));
        true
    }
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        self.maps.vmalloc.map(|(s, e)| (VirtAddr::new(s), VirtAddr::new(e)))
    }
    #[inline]
    fn vmemmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        self.maps.vmemmap.map(|(s, e)| (VirtAddr::new(s), VirtAddr::new(e)))
    }
    fn vmemmap_reads_zero(&self) -> bool {
        // The builder reserves the vmemmap readable, private and never written: zeros.
        true
    }
    unsafe fn vmemmap_section(&self, nr: usize, map: VirtAddr) -> Option<VirtAddr> {
        let (s, e) = self.maps.vmemmap?;
        let bytes = kmem::boot::MEMMAP_BYTES_PER_SECTION;
        let va = s.checked_add(nr.checked_mul(bytes)?)?;
        if va.checked_add(bytes)? > e {
            return None;
        }
        if self.maps.fd.is_none() {
            // Anonymous RAM: `map` was never written, so its pages hold nothing to move and
            // the slot's own (private, zero) pages can take the descriptors: the slot becomes
            // writable in place, one `mprotect` where `mremap` and a refill of the hole cost
            // two system calls and two splits of the RAM mapping (18 us of every process's
            // start-up under `LD_PRELOAD`). `map` stays mapped, never written, so it costs the
            // host nothing; the core never reaches it (the contract above).
            // SAFETY: the slot lies in our vmemmap reservation, is made writable once, for
            // this call, and nothing references it.
            unsafe { crate::vspace::commit_zeroes(va, bytes) }.ok()?;
            return Some(VirtAddr::new(va));
        }
        // SAFETY: the core's contract: `map` is carved RAM (in our RAM mapping, read-write),
        // unreferenced; the slot of section `nr` in our vmemmap reservation is mapped once,
        // for this call. On failure the pages stay at `map`, which the core then uses.
        unsafe { crate::vspace::move_pages(map.as_usize(), va, bytes) }.ok()?;
        Some(VirtAddr::new(va))
    }
    unsafe fn map_kernel_pages(
        &self,
        va: VirtAddr,
        pfn: Pfn,
        npages: usize,
        prot: PageProt,
        _tables: &mut dyn PageTableAlloc,
    ) -> Result<(), MapError> {
        let fd = self.maps.fd.ok_or(MapError::Unsupported)?;
        let frames_end = (pfn.as_usize() + npages) * kmem::PAGE_SIZE;
        if !self.maps.holds(va.as_usize(), npages * kmem::PAGE_SIZE) || frames_end > self.ram_len {
            return Err(MapError::Host(libc_einval()));
        }
        // SAFETY: checked inside our VSpaces and RAM; the core's contract says the range is
        // unmapped and unreferenced.
        unsafe { crate::vspace::map(fd, va, pfn, npages, prot) }
    }
    unsafe fn unmap_kernel_pages(&self, va: VirtAddr, npages: usize) -> TlbFlush {
        if self.maps.holds(va.as_usize(), npages * kmem::PAGE_SIZE) {
            // SAFETY: the core's contract: no longer accessed; checked inside our VSpaces.
            unsafe { crate::vspace::unmap(va, npages) }
        } else {
            TlbFlush::none()
        }
    }
    fn report(&self, kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        if self.log.no_alloc {
            with_stderr_turn(|| {
                let mut buf = StderrBuf::new();
                let _ = body(&mut buf);
                buf.flush();
            });
        } else {
            let mut s = String::new();
            let _ = body(&mut s);
            if self.log.echo.shows(kind) {
                match self.log.console.admit() {
                    (true, note) => eprint!("{}{s}", note.unwrap_or_default()),
                    (false, Some(note)) => eprint!("{note}"),
                    (false, None) => {}
                }
            }
            self.log.entries.lock().expect("report log poisoned").push((kind, s));
        }
        if let Some(hook) = self.log.hook {
            hook(kind);
        }
    }
}
