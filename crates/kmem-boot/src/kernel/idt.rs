//! The IDT, the trap dispatcher and the page-fault handler with its exception table (Linux:
//! `arch/x86/kernel/idt.c`, `arch/x86/mm/fault.c`, `arch/x86/mm/extable.c`).
//!
//! A page fault whose instruction is in `.ex_table` (the probe routines of `entry.rs`) is
//! reported in Linux's words and resumed at the fixup; the report names what the address is
//! (a vmalloc area's guard page, a kernel stack's guard page). Any other fault, or any other
//! exception, prints an Oops and ends the run with a failure status.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::arch::{cr2, qemu_exit};
use super::entry::{__ex_table_end, __ex_table_start, STUB_VECTORS, TRAP_STUBS};
use super::{apic, paging, percpu, serial};

/// Timer interrupt vector (LAPIC timer).
pub const TIMER_VECTOR: u8 = 32;
/// `CALL_FUNCTION_SINGLE_VECTOR`: run a `run_on_cpu` call.
pub const CALL_VECTOR: u8 = 33;
/// TLB shootdown.
pub const TLB_VECTOR: u8 = 34;
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

/// Page faults fixed up through the exception table.
pub static FIXED_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Address of the last fixed-up fault.
pub static LAST_FAULT_ADDR: AtomicUsize = AtomicUsize::new(0);
/// The boot stack's guard page (set by kmain).
pub static BOOT_STACK_GUARD: AtomicUsize = AtomicUsize::new(0);

/// Fills the IDT (interrupt gates, kernel code segment 0x08).
pub fn init() {
    for (i, &v) in STUB_VECTORS.iter().enumerate() {
        // SAFETY: the stub table of `entry.rs`, in the image.
        let h = unsafe { TRAP_STUBS[i] };
        let lo = (h & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((h >> 16) & 0xffff) << 48;
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
            LAST_FAULT_ADDR.store(addr, Relaxed);
            f.rip = to;
        }
        None => {
            serial::emergency(format_args!("Oops: kernel page fault with no fixup; stopping\n"));
            qemu_exit(3);
        }
    }
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
        TLB_VECTOR => {
            paging::flush_all_local();
            percpu::this_cpu().tlb_flush_pending.store(false, core::sync::atomic::Ordering::Release);
            apic::eoi();
        }
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
