//! The ways into the kernel, in assembly (`global_asm!`, stable Rust): the PVH entry of the
//! boot CPU, the real-mode trampoline of the application processors, and the interrupt
//! stubs. Linux: `arch/x86/platform/pvh/head.S`, `arch/x86/realmode/rm/trampoline_64.S`,
//! `arch/x86/entry/entry_64.S`.
//!
//! - **PVH** (`pvh_start`): QEMU's `-kernel` loader finds the Xen ELF note
//!   `XEN_ELFNOTE_PHYS32_ENTRY` and enters there in 32-bit protected mode, paging off, with
//!   `%ebx` pointing at the `hvm_start_info`. The entry zeroes `.bss`, identity-maps the
//!   first 4 GiB with 2 MiB pages (`BOOT_PML4` -> `BOOT_PDPT` -> `BOOT_PD`), enables PAE,
//!   `EFER.LME|NXE` and paging, loads the GDT and jumps to 64-bit `kmain(start_info)`.
//! - **Trampoline** (`ap_trampoline_start..ap_trampoline_end`): position-independent 16-bit
//!   code that the boot CPU copies to [`TRAMPOLINE_PHYS`] (below 1 MiB, where a SIPI vector
//!   can point); it goes real -> protected -> long mode on the same page tables and calls
//!   `ap_main(cpu)` on the stack the boot CPU left in `AP_BOOT_STACK`.
//! - **Interrupts**: one stub per vector pushes a dummy error code where the CPU pushes none,
//!   the vector, and every general register (a [`crate::kernel::idt::TrapFrame`]), then calls
//!   `trap_dispatch(frame)`; the handler may change the saved `rip` (exception fixups).
//! - **Exception table** (`.ex_table`, Linux's `_ASM_EXTABLE`): `kmem_boot_probe_write` and
//!   `kmem_boot_probe_read` touch one byte; a page fault on that instruction resumes at its
//!   fixup, which returns false.

/// Physical address the AP trampoline runs at (SIPI vector 0x08).
pub const TRAMPOLINE_PHYS: usize = 0x8000;

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18                  /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start
    .balign 4

    .section .data.boot, "aw"
    .balign 16
    .global KERNEL_GDT
KERNEL_GDT:
    .quad 0                   /* null */
    .quad 0x00af9a000000ffff  /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff  /* 0x10: data */
    .quad 0x00cf9a000000ffff  /* 0x18: 32-bit code (the AP trampoline) */
    .skip 16 * 8              /* 0x20 + 16 * cpu: each CPU's TSS (idt.rs) */
KERNEL_GDT_END:
    .balign 8
    .word 0, 0, 0
GDT_PTR:
    .word KERNEL_GDT_END - KERNEL_GDT - 1
    .quad KERNEL_GDT
    .global BOOT_START_INFO
BOOT_START_INFO:
    .quad 0
    .global AP_BOOT_STACK
AP_BOOT_STACK:
    .quad 0
    .global AP_BOOT_CPU
AP_BOOT_CPU:
    .quad 0

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global BOOT_PML4
BOOT_PML4:
    .skip 4096
BOOT_PDPT:
    .skip 4096
BOOT_PD:
    .skip 4 * 4096
    .global BOOT_STACK_BOTTOM
BOOT_STACK_BOTTOM:
    .skip 256 * 1024
BOOT_STACK_TOP:

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    mov %ebx, %esi
    /* .bss (page tables and the boot stack among it) */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov %esi, BOOT_START_INFO
    mov $BOOT_STACK_TOP, %esp
    /* PML4[0] -> PDPT, PDPT[0..4] -> PD0..3, PD: 2048 2 MiB pages = 4 GiB */
    mov $BOOT_PDPT, %eax
    or $3, %eax
    mov %eax, BOOT_PML4
    mov $BOOT_PD, %eax
    or $3, %eax
    mov %eax, BOOT_PDPT
    add $0x1000, %eax
    mov %eax, BOOT_PDPT + 8
    add $0x1000, %eax
    mov %eax, BOOT_PDPT + 16
    add $0x1000, %eax
    mov %eax, BOOT_PDPT + 24
    mov $BOOT_PD, %edi
    xor %ecx, %ecx
1:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax            /* present, writable, 2 MiB */
    mov %eax, (%edi,%ecx,8)
    mov %ecx, %edx
    shr $11, %edx
    mov %edx, 4(%edi,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b
    call enter_long_mode_32
    ljmp $0x08, $bsp_long_entry

    /* PAE, CR3 = BOOT_PML4, EFER.LME|NXE, paging + write protect, the GDT. Shared by the
       boot CPU and the trampoline (both run it from the identity map). */
enter_long_mode_32:
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $BOOT_PML4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    lgdt GDT_PTR
    ret

    .code64
bsp_long_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $BOOT_STACK_TOP, %rsp
    mov BOOT_START_INFO, %edi
    call kmain
2:
    cli
    hlt
    jmp 2b

ap_long_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov AP_BOOT_STACK, %rsp
    mov AP_BOOT_CPU, %rdi
    call ap_main
3:
    cli
    hlt
    jmp 3b

    /* The AP trampoline: copied to 0x8000, entered in real mode at 0800:0000 by the SIPI. */
    .section .rodata.trampoline, "a"
    .code16
    .global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl 0x8000 + (ap_tramp_gdt_ptr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $(0x8000 + (ap_tramp32 - ap_trampoline_start))
    .code32
ap_tramp32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $(0x8000 + (ap_tramp_stack - ap_trampoline_start)), %esp
    mov $enter_long_mode_32, %eax
    call *%eax
    ljmp $0x08, $ap_long_entry
    .balign 8
    .word 0, 0, 0
ap_tramp_gdt_ptr:
    .word KERNEL_GDT_END - KERNEL_GDT - 1
    .long KERNEL_GDT
    .balign 16
    .skip 64
ap_tramp_stack:
    .global ap_trampoline_end
ap_trampoline_end:
    .code64

    /* Exception-table routines: one byte at %rdi, true unless the access faulted. */
    .section .text, "ax"
    .global kmem_boot_probe_write
kmem_boot_probe_write:
    mov %esi, %eax
4:  movb %al, (%rdi)
    mov $1, %eax
    ret
5:  xor %eax, %eax
    ret
    .global kmem_boot_probe_read
kmem_boot_probe_read:
6:  movzbl (%rdi), %eax
    mov $1, %eax
    ret
7:  xor %eax, %eax
    ret
    .section .ex_table, "a"
    .quad 4b, 5b
    .quad 6b, 7b

    /* Interrupt stubs and the table of their addresses (vectors 0..=34, 255). */
    .section .text, "ax"
    .macro ISR n
isr_\n:
    .if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushq $0
    .endif
    pushq $\n
    jmp trap_common
    .endm
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,255
    ISR \n
    .endr
trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    cld
    call trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

    .section .rodata, "a"
    .balign 8
    .global TRAP_STUBS
TRAP_STUBS:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,255
    .quad isr_\n
    .endr
    .section .text, "ax"
"#,
    options(att_syntax)
);

const _: () = assert!(super::percpu::MAX_CPUS == 8, "KERNEL_GDT reserves TSS descriptors for 8 CPUs");

/// Vectors with a stub, in `TRAP_STUBS` order.
pub const STUB_VECTORS: [u8; 36] = {
    let mut v = [0u8; 36];
    let mut i = 0;
    while i < 35 {
        v[i] = i as u8;
        i += 1;
    }
    v[35] = 255;
    v
};

unsafe extern "C" {
    /// The GDT: null, code64, data, code32, then a 16-byte TSS descriptor per CPU (the
    /// assembly reserves `16 * 8` bytes: `MAX_CPUS` is 8, asserted below).
    pub static mut KERNEL_GDT: [u64; 4 + 2 * super::percpu::MAX_CPUS];
    /// The PML4 every CPU runs on (physical = virtual: the image is identity mapped).
    pub static mut BOOT_PML4: [u64; 512];
    /// Stack top the next AP starts on (set before its SIPI).
    pub static mut AP_BOOT_STACK: u64;
    /// CPU number the next AP takes.
    pub static mut AP_BOOT_CPU: u64;
    /// Lowest address of the boot CPU's stack (its guard is the page below, unmapped by
    /// [`crate::kernel::paging`]).
    pub static BOOT_STACK_BOTTOM: u8;
    /// Start of the AP trampoline's code (in the image; copied to [`TRAMPOLINE_PHYS`]).
    pub static ap_trampoline_start: u8;
    /// End of the AP trampoline's code.
    pub static ap_trampoline_end: u8;
    /// Stub addresses for [`STUB_VECTORS`].
    pub static TRAP_STUBS: [u64; 36];
    /// Exception table: (faulting instruction, fixup) pairs.
    pub static __ex_table_start: u64;
    /// End of the exception table.
    pub static __ex_table_end: u64;
    /// First byte of the kernel image.
    pub static __kernel_start: u8;
    /// One past the image's last byte (`.bss` included).
    pub static __kernel_end: u8;
}

unsafe extern "C" {
    /// Writes `value` at `addr`; false if that faulted (the page-fault handler took the
    /// exception-table fixup).
    ///
    /// # Safety
    ///
    /// `addr` is either unmapped (the point: a guard page) or memory the caller may write.
    pub fn kmem_boot_probe_write(addr: *mut u8, value: u8) -> bool;
    /// Reads a byte at `addr`; false if that faulted.
    ///
    /// # Safety
    ///
    /// `addr` is either unmapped or memory the caller may read.
    pub fn kmem_boot_probe_read(addr: *const u8) -> bool;
}
