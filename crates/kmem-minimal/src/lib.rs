//! A minimal, `no_std` platform for kmem: what an OS developer writes to put kmem into a
//! kernel, and the platform the fast-path instruction counts measure a kernel's cost on
//! (`scripts/cost_check.sh`, through `kmem_bench::minimal`).
//!
//! - [`MinimalPlatform`]: one CPU, RAM the caller gives (a [`StaticRam`] in the kernel image,
//!   or a region the firmware map describes), `preempt_disable` a plain counter, optional
//!   software page tables for vmalloc, reports to a console function.
//! - [`boot`]: [`Kmem::boot`] from a firmware memory map (x86-64 zones).
//! - [`demo`]: `alloc_pages`, a slab cache and `kmalloc` (and `vmalloc`) on the booted machine.
//!
//! The crate needs nothing but `core` and kmem; `.ci/run` builds it for
//! `x86_64-unknown-none`. It is a library, not a bootable kernel: entry point, panic handler
//! and loading the page tables into the MMU belong to the kernel that uses it.
//!
//! ```
//! use kmem::{Gfp, MemRegion, Order, ReportKind};
//! use kmem_minimal::{MinimalPlatform, StaticRam};
//!
//! // 16 MiB of the kernel image's .bss, handed to kmem as physical 0..16 MiB.
//! static RAM: StaticRam<{ 16 << 20 }> = StaticRam::new();
//! // What the firmware says about it: the legacy hole below 1 MiB is not RAM.
//! const MAP: [MemRegion; 3] = [
//!     MemRegion::usable(0, 0x9f000),
//!     MemRegion::reserved(0x9f000, 0x61000),
//!     MemRegion::usable(1 << 20, 15 << 20),
//! ];
//!
//! let (ram, bytes) = RAM.take().unwrap();
//! // SAFETY: the static region is ours for ever (taken once); this thread alone uses the
//! // machine.
//! let platform = unsafe { MinimalPlatform::new(ram, bytes) };
//! let m = kmem_minimal::boot(platform, &MAP).unwrap();
//! let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
//! // SAFETY: ours, unused, freed once.
//! unsafe { m.__free_pages(page, Order::ZERO) };
//! let summary = kmem_minimal::demo(&m).unwrap();
//! assert_eq!(summary.kmalloc_ksize, 128);
//! assert_eq!(m.report_count(ReportKind::BadPage), 0);
//! ```

#![no_std]

mod demo;
mod platform;
mod ram;

pub use demo::{demo, DemoError, DemoSummary, Task, DEMO_TASKS};
pub use platform::MinimalPlatform;
pub use ram::StaticRam;

use kmem::{BootConfig, BootError, Kmem, MemRegion, ZoneLayout};

/// Boots a machine on `platform` over the RAM that the firmware memory map `map` calls
/// usable, with x86-64's zones (DMA below 16 MiB, DMA32 below 4 GiB, Normal above). For
/// other layouts, NUMA nodes, memblock reservations or slab boot options, call [`Kmem::boot`]
/// with a [`BootConfig`] of your own: this is all it does.
///
/// Safe, because [`MinimalPlatform::new`]'s contract gives the whole RAM region to the
/// platform, which `boot` consumes: usable ranges above the region fail with
/// [`BootError::DirectMapTooSmall`].
///
/// # Errors
///
/// [`BootError`]: no usable RAM, overlapping regions, usable RAM beyond the platform's RAM
/// region, no room for kmem's metadata.
pub fn boot(platform: MinimalPlatform, map: &[MemRegion]) -> Result<Kmem<MinimalPlatform>, BootError> {
    let cfg = BootConfig::new(map, ZoneLayout::X86_64);
    // SAFETY: every usable range below the direct-map limit lies in the platform's RAM region,
    // which `MinimalPlatform::new`'s contract makes readable, writable and ours for as long as
    // the platform lives; the machine owns the platform, so no second machine shares it.
    unsafe { Kmem::boot(platform, &cfg, |_| Ok(())) }
}
