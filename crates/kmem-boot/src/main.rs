//! kmem-boot: a freestanding x86-64 kernel that boots kmem on a QEMU machine and runs its
//! tests in ring 0 (issue 18). `scripts/boot.sh` builds and boots it.
//!
//! - Built for `x86_64-unknown-none` with the stable toolchain: `#![no_std]`, `#![no_main]`,
//!   the target's `panic = abort`, `link.ld` (image at 1 MiB, a PT_NOTE with the Xen
//!   `XEN_ELFNOTE_PHYS32_ENTRY` note), `--no-pie` (`build.rs`).
//! - Booted by `qemu-system-x86_64 -kernel` through the PVH entry; runs under TCG.
//! - The kernel is in `kernel/` (module docs there): `entry.rs` (PVH entry, AP trampoline,
//!   interrupt stubs, exception table), `paging.rs` (the kernel's 4-level page tables:
//!   identity map, direct map, vmalloc), `percpu.rs` (GS-based per-CPU areas),
//!   `platform.rs` (kmem's `Platform`), `idt.rs` (IDT, page faults), `apic.rs` (local APIC,
//!   timer, IPIs), `acpi.rs` (MADT, SRAT), `smp.rs` (INIT-SIPI-SIPI), `tests/` (the ring-0
//!   tests).
//!
//! **Host build.** The crate is a workspace member, so that `cargo clippy --workspace` and
//! the workspace lints cover it; on any target but `x86_64-unknown-none` (`target_os =
//! "none"`) the binary is a stub that says how to build the kernel, so `cargo build/test/clippy
//! --workspace` keep working on the host. The kernel itself is linted with `cargo clippy -p
//! kmem-boot --target x86_64-unknown-none` (`.ci/run`).
//!
//! # Notes and missing features
//!
//! - Page faults are reported in Linux's words on the console and counted by the kernel
//!   (kmem's `ReportKind` has no page-fault kind: a fault is the architecture's report, not
//!   the allocator's). A fault on a KFENCE page is handed to `kfence_handle_page_fault`
//!   first, which reports it and maps the page back (`kernel/idt.rs`).
//! - The identity map of the first 4 GiB stays (the image runs there, at its physical
//!   address, as a PVH kernel starts); Linux moves to `__START_KERNEL_map`. The direct map
//!   uses 2 MiB pages only and maps whole 2 MiB chunks around E820 RAM.
//! - kmap: x86-64 has no HighMem, so `kmap`/`kmap_local_page` return the direct-map address,
//!   as on Linux; with the `highmem` boot option RAM above 4 GiB is HighMem and kmap goes
//!   through the kernel's page tables (the `highmem-3g` configuration of `scripts/boot.sh`).
//! - A real kernel-stack overflow is fatal, as in Linux: the double fault (on its IST stack)
//!   reports it and ends the run; the `stack-overflow` configuration checks exactly that.
//! - No scheduler: one context per CPU (`swapper/N`); `preempt_enable` does not reschedule;
//!   a `__GFP_NOFAIL` wait spins.
//! - A TLB shootdown flushes the whole (non-global) TLB of the other CPUs, not the range.
//! - CPUs: at most 8 (`percpu::MAX_CPUS`), xAPIC only (no x2APIC), no CPU hot-unplug.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel;
#[cfg(any(target_os = "none", test))]
mod numa;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("kmem-boot is a kernel: build it with `cargo build -p kmem-boot --target x86_64-unknown-none --release` and boot it with scripts/boot.sh");
}
