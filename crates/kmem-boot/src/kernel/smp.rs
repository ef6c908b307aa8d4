//! Starting the application processors (Linux: `arch/x86/kernel/smpboot.c`): the trampoline
//! is copied to 0x8000 (reserved from memblock with the rest of the low 64 KiB); for each
//! CPU of the MADT the boot CPU allocates a vmap stack from kmem (`alloc_thread_stack`:
//! guard page included), leaves its top and the CPU number in `AP_BOOT_STACK`/`AP_BOOT_CPU`,
//! sends INIT-SIPI-SIPI and waits (up to a second) for the CPU to mark itself online.

use core::sync::atomic::Ordering;

use kmem::Kmem;

use super::entry::{ap_trampoline_end, ap_trampoline_start, AP_BOOT_CPU, AP_BOOT_STACK, TRAMPOLINE_PHYS};
use super::platform::BootPlatform;
use super::{acpi, apic, arch, idt, percpu, tests};

/// Starts every AP; returns how many came online.
pub fn start_aps(m: &'static Kmem<BootPlatform>, acpi: &acpi::AcpiInfo) -> usize {
    let start = (&raw const ap_trampoline_start) as usize;
    let len = (&raw const ap_trampoline_end) as usize - start;
    // SAFETY: 0x8000.. is in the reserved low 64 KiB, identity mapped, used by nothing else;
    // the trampoline is `len` bytes of the image.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE_PHYS as *mut u8, len) };
    let mut up = 0;
    for cpu in 1..acpi.nr_cpus {
        let stack = match m.alloc_thread_stack(None) {
            Ok(s) => s,
            Err(e) => {
                kprintln!("smpboot: no stack for CPU {cpu}: {e:?}");
                break;
            }
        };
        let (bottom, top) = (stack.base() as usize, stack.top() as usize);
        // The AP runs on it for ever.
        core::mem::forget(stack);
        percpu::cpu(cpu).stack_bottom.store(bottom, Ordering::Relaxed);
        // SAFETY: read by the AP we are about to start, and only then; the previous AP has
        // marked itself online, so it no longer reads them.
        unsafe {
            AP_BOOT_STACK = top as u64;
            AP_BOOT_CPU = cpu as u64;
        }
        apic::init_sipi_sipi(acpi.apic_ids[cpu], (TRAMPOLINE_PHYS >> 12) as u8);
        let deadline = arch::rdtsc() + 1_000_000 * apic::TSC_PER_US.load(Ordering::Relaxed);
        while !percpu::cpu(cpu).online.load(Ordering::Acquire) && arch::rdtsc() < deadline {
            core::hint::spin_loop();
        }
        if percpu::cpu(cpu).online.load(Ordering::Acquire) {
            up += 1;
            kprintln!("smpboot: CPU {cpu} (APIC {}) is up, stack {bottom:#x}-{top:#x}", acpi.apic_ids[cpu]);
        } else {
            kprintln!("smpboot: CPU {cpu} (APIC {}) did not come up", acpi.apic_ids[cpu]);
        }
    }
    up
}

/// An AP, from the trampoline: per-CPU area, IDT, local APIC and timer, online; then the
/// tests' concurrent phases.
pub fn ap_main(cpu: usize) -> ! {
    // SAFETY: once, on this CPU, before anything reads gs:; the boot CPU gave it this number.
    unsafe { percpu::init_this_cpu(cpu, apic::id()) };
    idt::load();
    // SAFETY: once, on this CPU, which the boot CPU numbered `cpu` (< MAX_CPUS).
    unsafe { idt::load_tss(cpu) };
    apic::init_this_cpu();
    apic::start_timer(super::TIMER_COUNT);
    // The concurrent tests' generation, read before this CPU counts as online: a test the
    // boot CPU publishes once it sees this CPU online is one this CPU has not seen, however
    // late it reaches `ap_loop` (read after, a test published in between was missed, and
    // the boot CPU waited for this CPU forever: the stack-overflow configuration, which
    // publishes its test right after start-up, hung that way once in about fifty boots).
    let seen = tests::generation();
    percpu::this_cpu().online.store(true, Ordering::Release);
    if super::AP_LATE.load(Ordering::Relaxed) {
        apic::udelay(100_000);
    }
    arch::sti();
    let m = super::machine_opt().expect("APs start after boot");
    tests::ap_loop(m, cpu, seen)
}
