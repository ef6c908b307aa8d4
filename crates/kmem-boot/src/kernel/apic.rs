//! The local APIC (xAPIC, MMIO at `0xfee00000` through the identity map): enable, timer,
//! EOI, IPIs and INIT-SIPI-SIPI (Linux: `arch/x86/kernel/apic/apic.c`, `smpboot.c`'s
//! `wakeup_secondary_cpu_via_init`), and TSC calibration against the PIT.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::arch::{inb, outb, rdtsc};
use super::idt::{SPURIOUS_VECTOR, TIMER_VECTOR};

const BASE: usize = 0xfee0_0000;
const ID: usize = 0x20;
const TPR: usize = 0x80;
const EOI: usize = 0xb0;
const SVR: usize = 0xf0;
const ICR_LO: usize = 0x300;
const ICR_HI: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const TIMER_INIT: usize = 0x380;
const TIMER_DIV: usize = 0x3e0;

/// TSC ticks per microsecond (calibrated once by the boot CPU).
pub static TSC_PER_US: AtomicU64 = AtomicU64::new(1000);

fn read(reg: usize) -> u32 {
    // SAFETY: a local APIC register (identity mapped MMIO page).
    unsafe { ((BASE + reg) as *const u32).read_volatile() }
}

fn write(reg: usize, v: u32) {
    // SAFETY: as `read`.
    unsafe { ((BASE + reg) as *mut u32).write_volatile(v) };
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Masks the legacy PICs and enables this CPU's local APIC (spurious vector 255).
pub fn init_this_cpu() {
    // SAFETY: the 8259 data ports: masking every line.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
    write(TPR, 0);
    write(SVR, 0x100 | SPURIOUS_VECTOR as u32);
}

/// Starts this CPU's periodic timer: `count` APIC-timer ticks (bus clock / 16) a period.
pub fn start_timer(count: u32) {
    write(TIMER_DIV, 0x3);
    write(LVT_TIMER, TIMER_VECTOR as u32 | (1 << 17));
    write(TIMER_INIT, count);
}

/// End of interrupt.
pub fn eoi() {
    write(EOI, 0);
}

fn wait_icr() {
    while read(ICR_LO) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

/// A fixed IPI of `vector` to the CPU with APIC id `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    wait_icr();
    write(ICR_HI, apic_id << 24);
    write(ICR_LO, vector as u32 | (1 << 14));
    wait_icr();
}

/// A non-maskable interrupt to the CPU with APIC id `apic_id` (delivered even while it
/// runs with interrupts off).
pub fn send_nmi(apic_id: u32) {
    wait_icr();
    write(ICR_HI, apic_id << 24);
    write(ICR_LO, 0x400 | (1 << 14));
    wait_icr();
}

/// INIT, then two SIPIs with the trampoline's page `vector_page` (physical >> 12).
pub fn init_sipi_sipi(apic_id: u32, vector_page: u8) {
    wait_icr();
    write(ICR_HI, apic_id << 24);
    write(ICR_LO, 0x4500);
    wait_icr();
    udelay(10_000);
    for _ in 0..2 {
        write(ICR_HI, apic_id << 24);
        write(ICR_LO, 0x4600 | vector_page as u32);
        wait_icr();
        udelay(200);
    }
}

/// Busy-waits `us` microseconds on the TSC.
pub fn udelay(us: u64) {
    let end = rdtsc() + us * TSC_PER_US.load(Relaxed);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Measures the TSC against PIT channel 2 (10 ms one-shot), as Linux's `pit_calibrate_tsc`.
pub fn calibrate_tsc() {
    const LATCH: u16 = 11932; // 1193182 Hz / 100
                              // SAFETY: PIT channel 2 and its gate (port 0x61): nothing else uses them.
    unsafe {
        outb(0x61, (inb(0x61) & !0x02) | 0x01);
        outb(0x43, 0xb0);
        outb(0x42, LATCH as u8);
        outb(0x42, (LATCH >> 8) as u8);
        let t0 = rdtsc();
        while inb(0x61) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let per_us = (rdtsc() - t0) / 10_000;
        TSC_PER_US.store(per_us.max(1), Relaxed);
    }
}
