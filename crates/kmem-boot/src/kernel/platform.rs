//! [`BootPlatform`]: kmem's `Platform` on the real (emulated) machine (Linux: what
//! `arch/x86` gives `mm/`).
//!
//! - CPUs: the MADT's, numbered in MADT order; `current_cpu` is one `gs:` load.
//! - `preempt_count` and hard-IRQ nesting in per-CPU memory (`percpu.rs`); interrupts are
//!   the CPU's IF flag, with real `cli`/`sti`; `pin_cpu` is the default
//!   (`local_irq_save` + the CPU number), so the timer's allocations never run inside a
//!   pinned section of the code they interrupted.
//! - The direct map, vmalloc and TLB flushes of `paging.rs`; a flush is `invlpg` here and a
//!   shootdown to every other running CPU, waiting for their acks while answering shootdowns
//!   aimed at itself (two CPUs flushing at once cannot deadlock); a `kmap_local` slot (per
//!   CPU) is flushed on its CPU only. The shootdown is an **NMI**, not a maskable IPI as in
//!   Linux: kmem flushes pkmap slots under its `kmap_lock`, which it takes with
//!   `lock_irqsave` (Linux's `lock_kmap` keeps interrupts on), so another CPU may be spinning
//!   for that lock with interrupts off while the flusher waits for its ack. A maskable IPI
//!   deadlocked there (seen in the `highmem-3g` run); an NMI is taken anyway, and its handler
//!   only reloads CR3 and acks, which is safe at any instruction.
//! - `run_on_cpu`: a call-function IPI (vector 33) to a running CPU, which runs the call in
//!   its interrupt handler (interrupts off: it owns its per-CPU data); for a CPU not started
//!   yet, the caller runs it as that CPU with interrupts off (its data are quiescent).
//! - Reports go to the serial console under its lock.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use kmem::{
    CpuId, DirectMap, IrqState, MapError, PageProt, PageTableAlloc, Pfn, Platform, ReportKind, TaskId, TlbFlush,
    VirtAddr,
};

use super::arch::{cli, rdtsc, rflags, sti, RFLAGS_IF};
use super::{apic, idt, paging, percpu, serial};

/// The platform: see the module documentation.
#[derive(Debug)]
pub struct BootPlatform {
    dm: DirectMap,
    nr_cpus: usize,
    kmap: bool,
}

impl BootPlatform {
    /// A platform of `nr_cpus` CPUs over the direct map `dm` (built by
    /// [`paging::init_direct_map`]); with `kmap`, the kmap area of [`paging::KMAP_START`]
    /// (its tables populated by [`paging::init_kmap_tables`]).
    pub fn new(dm: DirectMap, nr_cpus: usize, kmap: bool) -> Self {
        BootPlatform { dm, nr_cpus, kmap }
    }
}

/// TLB shootdowns sent (flushes that reached other CPUs), for the tests.
pub static SHOOTDOWNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// One remote call at a time, machine-wide.
static CALL_LOCK: AtomicBool = AtomicBool::new(false);

/// The call-function IPI's handler: runs this CPU's pending call (interrupts are off).
pub fn handle_call_ipi() {
    let me = percpu::this_cpu();
    let p = me.call.load(Ordering::Acquire);
    if p != 0 {
        // SAFETY: the caller of `run_on_cpu` stored the address of its `&mut dyn FnMut()`,
        // which lives on its stack until it sees `call` back at 0 (below).
        let f = unsafe { &mut *(p as *mut &mut dyn FnMut()) };
        f();
        me.call.store(0, Ordering::Release);
    }
}

fn tlb_shootdown() {
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    let me = percpu::this_cpu_id() as usize;
    let mut sent = [false; percpu::MAX_CPUS];
    for (cpu, s) in sent.iter_mut().enumerate() {
        let a = percpu::cpu(cpu);
        if cpu != me && a.online.load(Ordering::Acquire) {
            a.tlb_flush_pending.store(true, Ordering::Release);
            apic::send_nmi(a.apic_id.load(Ordering::Relaxed));
            *s = true;
        }
    }
    for (cpu, _) in sent.iter().enumerate().filter(|(_, &s)| s) {
        while percpu::cpu(cpu).tlb_flush_pending.load(Ordering::Acquire) {
            // Answer a shootdown aimed at us meanwhile (our interrupts may be off).
            let mine = &percpu::this_cpu().tlb_flush_pending;
            if mine.load(Ordering::Acquire) {
                paging::flush_all_local();
                mine.store(false, Ordering::Release);
            }
            core::hint::spin_loop();
        }
    }
}

// SAFETY: the direct map maps every E820 RAM byte below its limit read-write at
// PAGE_OFFSET + phys (paging::init_direct_map) and nothing else is told to the core;
// the kmap area is its own PML4 slot (400), disjoint from both;
// `current_cpu` is the per-CPU number set once per CPU below `nr_cpus` (MADT order, at most
// MAX_CPUS); the vmalloc range is its own PML4 slots, disjoint from the direct map; the
// per-CPU exclusion of `pin_cpu` is the default's interrupts-off section on the current CPU,
// and `run_on_cpu` runs calls with the target's interrupts off.
unsafe impl Platform for BootPlatform {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }
    #[inline(always)]
    fn current_cpu(&self) -> CpuId {
        CpuId(percpu::this_cpu_id())
    }
    #[inline(always)]
    fn preempt_count(&self) -> u32 {
        percpu::preempt_count()
    }
    #[inline(always)]
    fn preempt_disable(&self) {
        percpu::preempt_inc();
    }
    #[inline(always)]
    fn preempt_enable(&self) {
        percpu::preempt_dec();
    }
    #[inline(always)]
    fn local_irq_save(&self) -> IrqState {
        let was_off = rflags() & RFLAGS_IF == 0;
        cli();
        IrqState(was_off)
    }
    #[inline(always)]
    fn local_irq_restore(&self, state: IrqState) {
        if !state.0 {
            sti();
        }
    }
    #[inline(always)]
    fn irqs_disabled(&self) -> bool {
        rflags() & RFLAGS_IF == 0
    }
    #[inline(always)]
    fn in_interrupt(&self) -> bool {
        percpu::hardirq_count() != 0
    }
    fn held_cpu(&self) -> Option<CpuId> {
        (self.preempt_count() != 0 || self.irqs_disabled()).then(|| self.current_cpu())
    }
    fn run_on_cpu(&self, cpu: CpuId, f: &mut dyn FnMut()) -> bool {
        if cpu.index() >= self.nr_cpus {
            return false;
        }
        let target = percpu::cpu(cpu.index());
        if cpu == self.current_cpu() || !target.online.load(Ordering::Acquire) {
            let st = self.local_irq_save();
            // SAFETY: interrupts are off until the number is put back.
            let mine = unsafe { percpu::swap_cpu_id(cpu.0) };
            f();
            // SAFETY: as above.
            unsafe { percpu::swap_cpu_id(mine) };
            self.local_irq_restore(st);
            return true;
        }
        while CALL_LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        let mut f = f;
        target.call.store(&mut f as *mut &mut dyn FnMut() as usize, Ordering::Release);
        apic::send_ipi(target.apic_id.load(Ordering::Relaxed), idt::CALL_VECTOR);
        while target.call.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
        }
        CALL_LOCK.store(false, Ordering::Release);
        true
    }
    fn cpu_online(&self, cpu: CpuId) -> bool {
        cpu.index() < self.nr_cpus && percpu::cpu(cpu.index()).online.load(Ordering::Acquire)
    }
    #[inline]
    fn direct_map(&self) -> DirectMap {
        self.dm
    }
    fn now_ns(&self) -> u64 {
        rdtsc() * 1000 / apic::TSC_PER_US.load(Ordering::Relaxed)
    }
    fn current_task(&self) -> TaskId {
        let mut name = *b"swapper/0";
        name[8] = b'0' + (percpu::this_cpu_id() % 10) as u8;
        TaskId::new(0, core::str::from_utf8(&name).unwrap_or("swapper"))
    }
    fn report(&self, _kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        serial::with_console(|u| {
            let _ = body(u);
            let _ = fmt::Write::write_str(u, "\n");
        });
    }
    fn kmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        self.kmap.then(|| (VirtAddr::new(paging::KMAP_START), VirtAddr::new(paging::KMAP_START + paging::KMAP_BYTES)))
    }
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        Some((VirtAddr::new(paging::VMALLOC_START), VirtAddr::new(paging::VMALLOC_END)))
    }
    fn vmemmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        Some((VirtAddr::new(paging::VMEMMAP_START), VirtAddr::new(paging::VMEMMAP_START + paging::VMEMMAP_BYTES)))
    }
    unsafe fn vmemmap_section(&self, nr: usize, map: VirtAddr) -> Option<VirtAddr> {
        let pa = self.dm.virt_to_phys(map)?;
        // SAFETY: the core's contract: `map` is the section's carved descriptor RAM, unused,
        // and the call is made at boot (hot-add: kmem-boot has none) on the boot CPU.
        unsafe { paging::map_vmemmap_section(nr, pa.as_u64()) }.map(VirtAddr::new)
    }
    unsafe fn map_kernel_pages(
        &self,
        va: VirtAddr,
        pfn: Pfn,
        npages: usize,
        prot: PageProt,
        tables: &mut dyn PageTableAlloc,
    ) -> Result<(), MapError> {
        if paging::map(self.dm, va.as_usize(), pfn, npages, prot.write, tables) {
            Ok(())
        } else {
            Err(MapError::NoMemory)
        }
    }
    unsafe fn unmap_kernel_pages(&self, va: VirtAddr, npages: usize) -> TlbFlush {
        paging::unmap(self.dm, va.as_usize(), npages);
        TlbFlush::range(va, npages)
    }
    fn flush_tlb_kernel_range(&self, flush: TlbFlush) {
        if let Some((s, e)) = flush.bounds() {
            paging::flush_local(s.as_usize(), e.as_usize());
            // The kmap_local slots after the pkmap area are per CPU: only their CPU ever
            // translated them, so a local flush is enough (Linux: `flush_tlb_one_kernel` in
            // `kunmap_local`). Everything else is shot down on every other CPU.
            let fixmap = paging::KMAP_START + kmem::LAST_PKMAP * kmem::PAGE_SIZE;
            if !(self.kmap && s.as_usize() >= fixmap && e.as_usize() <= paging::KMAP_START + paging::KMAP_BYTES) {
                tlb_shootdown();
            }
        }
        flush.done();
    }
}
