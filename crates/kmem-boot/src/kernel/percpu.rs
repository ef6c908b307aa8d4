//! Per-CPU areas reached through the GS base (Linux: `arch/x86/include/asm/percpu.h`,
//! `this_cpu_read(pcpu_hot.cpu_number)`, `__preempt_count` in per-CPU memory).
//!
//! Each CPU's `IA32_GS_BASE` points at its [`PerCpu`]; the CPU number, the preemption count
//! and the hard-IRQ nesting count are read and changed with one `gs:`-relative instruction
//! each, so no interrupt can split them. Other CPUs read the remaining fields through
//! [`cpu`] (atomics).

use core::arch::asm;
use core::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed},
};

use super::arch::{wrmsr, MSR_GS_BASE};

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 8;

/// One CPU's area. The first fields' offsets are used by `gs:` instructions.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// This area's own address (`gs:[0]`, Linux's `this_cpu_off`).
    self_ptr: AtomicUsize,
    /// CPU number (`gs:[8]`).
    cpu: AtomicU32,
    /// `preempt_count` (`gs:[12]`).
    preempt: AtomicU32,
    /// Hard-IRQ nesting (`gs:[16]`, the `HARDIRQ` bits of Linux's `preempt_count`).
    hardirq: AtomicU32,
    /// Local APIC id.
    pub apic_id: AtomicU32,
    /// Running (started and initialised).
    pub online: AtomicBool,
    /// A TLB shootdown is pending for this CPU (vector 34).
    pub tlb_flush_pending: AtomicBool,
    /// A `run_on_cpu` call for this CPU: address of a `&mut dyn FnMut()` (vector 33), 0 if none.
    pub call: AtomicUsize,
    /// Timer interrupts taken.
    pub ticks: AtomicU64,
    /// Allocations made by the timer handler (and freed there).
    pub irq_allocs: AtomicU64,
    /// Allocations the timer handler saw fail, or saw in the wrong context.
    pub irq_errors: AtomicU64,
    /// A page-table page that lost a populate race, kept for the next one (pfn, 0 if none).
    pub spare_table: AtomicUsize,
    /// Lowest address of this CPU's stack (its guard page is the one below).
    pub stack_bottom: AtomicUsize,
    /// Address of this CPU's last page fault fixed up through the exception table (per CPU:
    /// the APs probe their stack guards at once, and a global slot was overwritten by
    /// another CPU's fault between a probe and its check).
    pub last_fault_addr: AtomicUsize,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            self_ptr: AtomicUsize::new(0),
            cpu: AtomicU32::new(0),
            preempt: AtomicU32::new(0),
            hardirq: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            tlb_flush_pending: AtomicBool::new(false),
            call: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            irq_allocs: AtomicU64::new(0),
            irq_errors: AtomicU64::new(0),
            spare_table: AtomicUsize::new(0),
            stack_bottom: AtomicUsize::new(0),
            last_fault_addr: AtomicUsize::new(0),
        }
    }
}

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, self_ptr) == 0);
    assert!(core::mem::offset_of!(PerCpu, cpu) == 8);
    assert!(core::mem::offset_of!(PerCpu, preempt) == 12);
    assert!(core::mem::offset_of!(PerCpu, hardirq) == 16);
};

static AREAS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// CPU `n`'s area (any CPU may read it).
pub fn cpu(n: usize) -> &'static PerCpu {
    &AREAS[n]
}

/// Points this CPU's GS base at area `n` and names it CPU `n`.
///
/// # Safety
///
/// Called once per CPU, on that CPU, before anything reads `gs:`; `n < MAX_CPUS` and no other
/// CPU uses area `n`.
pub unsafe fn init_this_cpu(n: usize, apic_id: u32) {
    let a = &AREAS[n];
    a.self_ptr.store(a as *const PerCpu as usize, Relaxed);
    a.cpu.store(n as u32, Relaxed);
    a.apic_id.store(apic_id, Relaxed);
    // SAFETY: GS base of this CPU -> its own area, which lives for ever (caller: once, before use).
    unsafe { wrmsr(MSR_GS_BASE, a as *const PerCpu as u64) };
}

/// `smp_processor_id()`: one `gs:` load.
#[inline(always)]
pub fn this_cpu_id() -> u32 {
    let v: u32;
    // SAFETY: GS points at this CPU's area (set before the first caller runs).
    unsafe { asm!("mov {:e}, gs:[8]", out(reg) v, options(nostack, preserves_flags, readonly)) };
    v
}

/// This CPU's area.
#[inline(always)]
pub fn this_cpu() -> &'static PerCpu {
    let p: usize;
    // SAFETY: as `this_cpu_id`.
    unsafe { asm!("mov {}, gs:[0]", out(reg) p, options(nostack, preserves_flags, readonly)) };
    // SAFETY: `self_ptr` is the address of one of the static areas.
    unsafe { &*(p as *const PerCpu) }
}

/// `preempt_count()`.
#[inline(always)]
pub fn preempt_count() -> u32 {
    let v: u32;
    // SAFETY: as `this_cpu_id`.
    unsafe { asm!("mov {:e}, gs:[12]", out(reg) v, options(nostack, preserves_flags, readonly)) };
    v
}

/// `preempt_disable()`: one `inc` of per-CPU memory (an interrupt cannot split it).
#[inline(always)]
pub fn preempt_inc() {
    // SAFETY: as `this_cpu_id`; only this CPU writes its count.
    unsafe { asm!("inc dword ptr gs:[12]", options(nostack)) };
}

/// `preempt_enable()` (no scheduler: nothing to reschedule).
#[inline(always)]
pub fn preempt_dec() {
    // SAFETY: as `preempt_inc`.
    unsafe { asm!("dec dword ptr gs:[12]", options(nostack)) };
}

/// `in_irq()` nesting count.
#[inline(always)]
pub fn hardirq_count() -> u32 {
    let v: u32;
    // SAFETY: as `this_cpu_id`.
    unsafe { asm!("mov {:e}, gs:[16]", out(reg) v, options(nostack, preserves_flags, readonly)) };
    v
}

/// `irq_enter()`.
#[inline(always)]
pub fn irq_enter() {
    // SAFETY: as `preempt_inc`.
    unsafe { asm!("inc dword ptr gs:[16]", options(nostack)) };
}

/// `irq_exit()`.
#[inline(always)]
pub fn irq_exit() {
    // SAFETY: as `preempt_inc`.
    unsafe { asm!("dec dword ptr gs:[16]", options(nostack)) };
}

/// Replaces this CPU's number for a moment (`run_on_cpu` for a CPU that is not running:
/// its per-CPU data are quiescent, and the caller, interrupts off, works on them as it).
/// Returns the previous number.
///
/// # Safety
///
/// Interrupts are off until the number is put back.
pub unsafe fn swap_cpu_id(n: u32) -> u32 {
    let a = this_cpu();
    a.cpu.swap(n, Relaxed)
}

/// Number of CPUs started so far and running.
pub fn online_count() -> usize {
    AREAS.iter().filter(|a| a.online.load(Acquire)).count()
}
