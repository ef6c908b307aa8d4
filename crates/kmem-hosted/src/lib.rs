//! # kmem-hosted: kmem machines inside an ordinary Linux process
//!
//! Physical RAM is a sparse memfd; the direct map is one `mmap` of it, with holes and
//! firmware ranges `PROT_NONE`. Threads are CPUs. The vmalloc range is a reserved
//! `PROT_NONE` region where vmalloc maps RAM pages by memfd offset, so guard pages fault.
//! With `MachineBuilder::vmemmap` (on by default for machines with section holes, several
//! nodes or a hotplug reserve), the page descriptors of every section move (`mremap`) to
//! their slot of a reserved vmemmap range, so the memory map is flat (`kmem`'s
//! `mm/memmap.rs`) whatever the holes, nodes and hot-adds. Several machines can live in one
//! process.
//!
//! ```
//! use kmem::{Gfp, ReportKind, Order};
//! use kmem_hosted::MachineBuilder;
//!
//! let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
//! let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
//! // SAFETY: `p` is ours and unused afterwards.
//! unsafe { m.__free_pages(p, Order::ZERO) };
//! unsafe { m.__free_pages(p, Order::ZERO) }; // double free: reported, state intact
//! assert_eq!(m.report_count(ReportKind::BadPage), 1);
//! assert!(m.reports().last().unwrap().starts_with("BUG: Bad page state"));
//! ```

mod builder;
pub mod console;
mod cpu_owner;
mod cpu_slot;
pub mod cpus;
pub mod kfence;
mod machine;
mod platform;
mod ram;
mod reclaim;
mod vspace;

/// The core crate, re-exported so that a dependency on `kmem-hosted` alone is enough.
pub use kmem;

pub use builder::{BuildError, MachineBuilder, Preset};
pub use console::ReportEcho;
pub use cpus::{in_irq, pin_current_thread, ProcessCpu};
pub use machine::{HotAddError, Machine};
pub use platform::{HostedPlatform, ReportLog};
pub use ram::{Ram, RamError};
pub use vspace::VSpace;
