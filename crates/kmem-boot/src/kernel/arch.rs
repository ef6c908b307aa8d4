//! The x86-64 instructions the kernel uses, one safe or unsafe wrapper each (Linux:
//! `arch/x86/include/asm/{io,msr,irqflags,tlbflush,special_insns}.h`).

use core::arch::asm;

/// `outb`.
///
/// # Safety
///
/// Writing `port` has no effect on memory safety (a device register the caller owns).
#[inline]
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: the caller vouches for the port.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

/// `inb`.
///
/// # Safety
///
/// Reading `port` has no effect on memory safety.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller vouches for the port.
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags)) };
    v
}

/// `wrmsr`.
///
/// # Safety
///
/// `msr` exists and the value keeps the kernel's invariants (GS base: a per-CPU area).
#[inline]
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller vouches for the MSR and value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// `IA32_GS_BASE`.
pub const MSR_GS_BASE: u32 = 0xc000_0101;

/// RFLAGS.IF: interrupts enabled.
pub const RFLAGS_IF: u64 = 1 << 9;

/// The RFLAGS register.
#[inline]
pub fn rflags() -> u64 {
    let f: u64;
    // SAFETY: reads a register through the stack; no other effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) f, options(nomem, preserves_flags)) };
    f
}

/// `cli`: a compiler barrier too, so no memory access moves out of the section.
#[inline]
pub fn cli() {
    // SAFETY: disabling interrupts is always memory safe.
    unsafe { asm!("cli", options(nostack)) };
}

/// `sti`.
#[inline]
pub fn sti() {
    // SAFETY: the IDT is loaded before the first `sti` (kmain's order); handlers are sound
    // at any point where interrupts are on.
    unsafe { asm!("sti", options(nostack)) };
}

/// `invlpg`: drops this CPU's translation of the page at `va`.
#[inline]
pub fn invlpg(va: usize) {
    // SAFETY: invalidating a TLB entry never breaks memory safety.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// `rdtsc`.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the time-stamp counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (hi as u64) << 32 | lo as u64
}

/// CR2: the faulting address of the last page fault.
#[inline]
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Stops this CPU for good (interrupts off).
pub fn halt_forever() -> ! {
    loop {
        cli();
        // SAFETY: halts with interrupts off: nothing wakes the CPU but NMI/INIT.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// `isa-debug-exit` (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`): QEMU exits with
/// status `(code << 1) | 1`, so 0 here is 1 there.
pub fn qemu_exit(code: u8) -> ! {
    // SAFETY: the debug-exit port only ends the emulator.
    unsafe { outb(0xf4, code) };
    halt_forever()
}
