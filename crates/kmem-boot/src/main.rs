//! kmem-boot: a freestanding x86-64 kernel that boots kmem on a QEMU machine and runs its
//! tests in ring 0. See `kernel.rs` (built for `x86_64-unknown-none` only).
//!
//! On any other target this binary is a stub that says how to build the kernel, so that
//! `cargo build/test/clippy --workspace` keep working on the host.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("kmem-boot is a kernel: build it with `cargo build -p kmem-boot --target x86_64-unknown-none --release` and boot it with scripts/boot.sh");
}
