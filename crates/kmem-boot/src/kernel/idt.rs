//! The IDT, the trap dispatcher and the page-fault handler with its exception table (Linux:
//! `arch/x86/kernel/idt.c`, `arch/x86/mm/fault.c`, `arch/x86/mm/extable.c`).
//!
//! A page fault whose instruction is in `.ex_table` (the probe routines of `entry.rs`) is
//! reported in Linux's words and resumed at the fixup; the report names what the address is
//! (a vmalloc area's guard page, a kernel stack's guard page). Any other fault, or any other
//! exception, prints an Oops and ends the run with a failure status.
//!
//! A double fault runs on its own stack (IST 1 of the CPU's TSS, as Linux's `DOUBLEFAULT_STACK`):
//! a kernel stack that overflows into its guard page makes the page-fault push fault, the CPU
//! raises #DF, and its handler still has a stack to report `BUG: stack guard page was hit`
//! and `kernel stack overflow (double-fault)` before the run ends.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::arch::{cr2, qemu_exit};
use super::entry::{__ex_table_end, __ex_table_start, STUB_VECTORS, TRAP_STUBS};
use kmem::kfence::KfenceFault;

use super::{apic, paging, percpu, serial};

/// Timer interrupt vector (LAPIC timer).
pub const TIMER_VECTOR: u8 = 32;
/// `CALL_FUNCTION_SINGLE_VECTOR`: run a `run_on_cpu` call.
pub const CALL_VECTOR: u8 = 33;
/// Non-maskable interrupts seen that were no TLB shootdown.
pub static STRAY_NMIS: AtomicU64 = AtomicU64::new(0);
/// Spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 255;

/// Saved registers, as `trap_common` pushes them.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

#[repr(C, align(16))]
struct Idt([AtomicU64; 512]);

static IDT: Idt = Idt([const { AtomicU64::new(0) }; 512]);

/// The 64-bit TSS: only IST 1 is used.
#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

const DF_STACK: usize = 16 << 10;

#[repr(C, align(16))]
struct DfStacks([[u8; DF_STACK]; percpu::MAX_CPUS]);

static mut TSS: [Tss; percpu::MAX_CPUS] = [const {
    Tss { reserved0: 0, rsp: [0; 3], reserved1: 0, ist: [0; 7], reserved2: 0, reserved3: 0, iomap_base: 104 }
}; percpu::MAX_CPUS];
static mut DF_STACKS: DfStacks = DfStacks([[0; DF_STACK]; percpu::MAX_CPUS]);

/// Gives CPU `cpu` its TSS (IST 1: its double-fault stack) and loads it (`ltr`).
///
/// # Safety
///
/// Once per CPU, on that CPU, `cpu < MAX_CPUS`.
pub unsafe fn load_tss(cpu: usize) {
    // SAFETY: this CPU's own TSS slot and GDT entries, written once before `ltr` (caller);
    // no other CPU touches them.
    unsafe {
        let top = (&raw mut DF_STACKS.0[cpu]) as u64 + DF_STACK as u64;
        let tss = &raw mut TSS[cpu];
        (*tss).ist[0] = top;
        let base = tss as u64;
        let lo = 103 | (base & 0xff_ffff) << 16 | 0x89 << 40 | (base >> 24 & 0xff) << 56;
        let gdt = (&raw mut super::entry::KERNEL_GDT).cast::<u64>();
        gdt.add(4 + 2 * cpu).write_volatile(lo);
        gdt.add(5 + 2 * cpu).write_volatile(base >> 32);
        core::arch::asm!("ltr {0:x}", in(reg) (0x20 + 16 * cpu) as u16, options(nostack));
    }
}

/// Page faults fixed up through the exception table.
/// Page faults KFENCE handled (reported and resumed).
pub static KFENCE_FAULTS: AtomicUsize = AtomicUsize::new(0);
pub static FIXED_FAULTS: AtomicU64 = AtomicU64::new(0);
/// The boot stack's guard page (set by kmain).
pub static BOOT_STACK_GUARD: AtomicUsize = AtomicUsize::new(0);

/// Fills the IDT (interrupt gates, kernel code segment 0x08).
pub fn init() {
    for (i, &v) in STUB_VECTORS.iter().enumerate() {
        // SAFETY: the stub table of `entry.rs`, in the image.
        let h = unsafe { TRAP_STUBS[i] };
        // The double fault (8) runs on IST 1.
        let ist = if v == 8 { 1u64 } else { 0 };
        let lo = (h & 0xffff) | (0x08 << 16) | (ist << 32) | (0x8e00u64 << 32) | ((h >> 16) & 0xffff) << 48;
        IDT.0[v as usize * 2].store(lo, Relaxed);
        IDT.0[v as usize * 2 + 1].store(h >> 32, Relaxed);
    }
}

/// Loads the IDT on this CPU.
pub fn load() {
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let p = Ptr { limit: 16 * 256 - 1, base: &IDT as *const Idt as u64 };
    // SAFETY: a complete IDT whose present gates point at the stubs; it lives for ever.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &p, options(nostack, readonly)) };
}

fn fixup(rip: u64) -> Option<u64> {
    let start = &raw const __ex_table_start;
    let end = &raw const __ex_table_end;
    let n = (end as usize - start as usize) / 16;
    (0..n).find_map(|i| {
        // SAFETY: `.ex_table` holds `n` (instruction, fixup) pairs of u64.
        let (insn, fix) = unsafe { (start.add(2 * i).read(), start.add(2 * i + 1).read()) };
        (insn == rip).then_some(fix)
    })
}

fn what_is(addr: usize) -> &'static str {
    let page = addr & !(kmem::PAGE_SIZE - 1);
    if page == BOOT_STACK_GUARD.load(Relaxed) {
        "the boot CPU's kernel stack guard page"
    } else if (0..percpu::MAX_CPUS).any(|c| percpu::cpu(c).stack_bottom.load(Relaxed) == page + kmem::PAGE_SIZE) {
        "a kernel stack's guard page (vmap stack)"
    } else if (paging::VMALLOC_START..paging::VMALLOC_END).contains(&addr) {
        if paging::is_guard_page(addr) {
            "a vmalloc guard page"
        } else {
            "an unmapped vmalloc address"
        }
    } else {
        "an unmapped kernel address"
    }
}

fn page_fault(f: &mut TrapFrame) {
    let addr = cr2() as usize;
    // KFENCE first, as Linux's `page_fault_oops` asks `kfence_handle_page_fault`: a fault on
    // a KFENCE guard page or freed object is reported by kmem (`BUG: KFENCE: ...`), the page
    // is mapped back, and the access is retried and goes on.
    if let Some(m) = super::machine_opt() {
        if m.is_kfence_address(addr as *const u8)
            && m.kfence_handle_page_fault(KfenceFault { addr, is_write: f.error & 2 != 0, ip: f.rip as usize })
        {
            KFENCE_FAULTS.fetch_add(1, Relaxed);
            return;
        }
    }
    let access = if f.error & 2 != 0 { "write" } else { "read" };
    let present = if f.error & 1 != 0 { "permissions violation" } else { "not-present page" };
    let fix = fixup(f.rip);
    serial::with_console(|u| {
        use core::fmt::Write;
        let _ = writeln!(u, "BUG: unable to handle page fault for address: {addr:016x}");
        let _ = writeln!(u, "#PF: supervisor {access} access in kernel mode");
        let _ = writeln!(u, "#PF: error_code({:#06x}) - {present}", f.error);
        let _ =
            writeln!(u, "CPU: {} RIP: 0010:{:#x} RSP: {:#x}: {}", percpu::this_cpu_id(), f.rip, f.rsp, what_is(addr));
        if fix.is_some() {
            let _ = writeln!(u, "fixup: resuming at the exception table's handler");
        }
    });
    match fix {
        Some(to) => {
            FIXED_FAULTS.fetch_add(1, Relaxed);
            percpu::this_cpu().last_fault_addr.store(addr, Relaxed);
            f.rip = to;
        }
        None => {
            serial::emergency(format_args!("Oops: kernel page fault with no fixup; stopping\n"));
            qemu_exit(3);
        }
    }
}

/// #DF, on IST 1: a stack overflow if the faulting address (CR2, from the page fault that
/// could not be delivered) is a stack's guard page. Linux: `handle_stack_overflow`.
fn double_fault(f: &mut TrapFrame) -> ! {
    let addr = cr2() as usize;
    let cpu = percpu::this_cpu_id() as usize;
    let bottom = percpu::this_cpu().stack_bottom.load(Relaxed);
    if bottom != 0 && addr < bottom && addr + kmem::PAGE_SIZE >= bottom {
        serial::emergency(format_args!(
            "BUG: stack guard page was hit at {addr:#x} (stack is {bottom:#x}..)\n\
             Oops: kernel stack overflow (double-fault): 0000 [#1] SMP\nCPU: {cpu} RIP: 0010:{:#x} RSP: {:#x}\n",
            f.rip, f.rsp
        ));
    } else {
        serial::emergency(format_args!("traps: double fault on CPU {cpu}, CR2 {addr:#x}\n{f:x?}\n"));
    }
    qemu_exit(3)
}

/// Called by `trap_common` for every vector.
#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    match f.vector as u8 {
        14 => page_fault(f),
        TIMER_VECTOR => {
            percpu::irq_enter();
            super::timer_interrupt();
            percpu::irq_exit();
            apic::eoi();
        }
        CALL_VECTOR => {
            percpu::irq_enter();
            super::platform::handle_call_ipi();
            percpu::irq_exit();
            apic::eoi();
        }
        // NMI: a TLB shootdown (platform.rs says why it is an NMI). No EOI for an NMI.
        2 => {
            let pending = &percpu::this_cpu().tlb_flush_pending;
            if pending.load(core::sync::atomic::Ordering::Acquire) {
                paging::flush_all_local();
                pending.store(false, core::sync::atomic::Ordering::Release);
            } else {
                STRAY_NMIS.fetch_add(1, Relaxed);
            }
        }
        8 => double_fault(f),
        SPURIOUS_VECTOR => {}
        v => {
            serial::emergency(format_args!(
                "traps: exception {v} error {:#x} at RIP {:#x} RSP {:#x} on CPU {}\n{f:x?}\n",
                f.error,
                f.rip,
                f.rsp,
                percpu::this_cpu_id()
            ));
            qemu_exit(3);
        }
    }
}
