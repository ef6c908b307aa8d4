//! # kmem: the Linux kernel's memory allocators as a `no_std` Rust library
//!
//! kmem rebuilds Linux's memory-allocation subsystem for kernels, hypervisors and unikernels,
//! and for ordinary processes through `kmem-hosted`. This crate is the core: freestanding
//! (`no_std`, no `alloc`), with all of its metadata carved from the memory it manages.
//!
//! Today it has the zoned buddy page allocator (sparse page descriptors, NUMA nodes, zones
//! with watermarks and lowmem reserves, migratetypes, GFP flags with Linux's values and
//! meaning), per-CPU page lists, memory hotplug, the per-CPU area with `alloc_percpu` and
//! per-CPU variables with `this_cpu_*` operations, the SLUB slab allocator ([`slab`]), the
//! kmalloc family ([`kmalloc`]), vmalloc over the platform's page tables ([`vmalloc`]),
//! Linux-format reports for misuse and failures, the `/proc` views ([`proc`]), Linux's
//! fault injection (`failslab`, `fail_page_alloc`, fail-nth: [`fault`]), RCU with
//! `kfree_rcu` and `SLAB_TYPESAFE_BY_RCU` ([`rcu`]), `init_on_alloc`/`init_on_free`
//! ([`mm::meminit`]), and KFENCE, the sampling memory-safety detector ([`kfence`]).
//!
//! ```
//! use kmem::Gfp;
//! // A process-hosted machine with 64 MiB of RAM and 2 CPUs.
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
//! let page = m.alloc(Gfp::KERNEL, kmem::Order::ZERO).unwrap();
//! assert!(page.addr().is_some());
//! ```
//!
//! Owning handles shaped like Rust-for-Linux's `kernel::alloc` ([`KBox`], [`KVec`],
//! [`VBox`], [`KVBox`], …, in [`alloc`]) and typed slab caches with constructors
//! ([`TypedCache`], [`Kmem::typed_cache_with_ctor`]) free on drop, so code built on them
//! needs no `unsafe`; the raw Linux calls stay for code ported from C.
//!
//! ## The crates
//!
//! - **kmem** (this crate): the allocators, for any [`Platform`].
//! - [**kmem-hosted**](../kmem_hosted/index.html): the platform for a Linux process (memfd
//!   RAM, threads as CPUs) and `MachineBuilder`; re-exports this crate.
//! - [**kmem-alloc**](../kmem_alloc/index.html): kmem as a process's `#[global_allocator]`,
//!   C-shaped `malloc`/`free`, and `allocator_api2` allocators over a machine.
//! - [**kmem-malloc**](../kmem_malloc/index.html): `libkmem_malloc.so` for `LD_PRELOAD`.
//! - [**kmem-trace**](../kmem_trace/index.html): replays ftrace captures of a real kernel's
//!   kmem events.
//! - **kmem-cli**: the `kmem` command (`demo`, `proc`, `replay`).
//! - [**kmem-bench**](../kmem_bench/index.html) and [**kmem-fuzz**](../kmem_fuzz/index.html):
//!   benchmarks against peers, and fuzzing.
//!
//! (The links work in `cargo doc --workspace` output, where the crates sit side by side.)
//!
//! ## Notes and missing features
//! - The per-CPU allocator ([`percpu`]) backs dynamic chunks with page-allocator blocks
//!   (Linux's percpu-km), not vmalloc.
//! - No reclaim (shrinkers, kswapd, OOM killer), no compaction, no high-order atomic
//!   reserve, no CMA.
//! - HighMem ([`highmem`]) has `kmap`, `kmap_local_page` and `kmap_atomic` over real
//!   temporary mappings in the platform's kmap area; `kmap_high_get` and `kmap_local_folio`
//!   are missing.
//! - A machine spans at most 2^32 page frames (16 TiB): free lists link pages by 32-bit pfn.

#![no_std]
#![warn(missing_docs)]

pub mod addr;
pub mod alloc;
pub mod boot;
mod cpuhp;
pub mod fault;
pub mod gfp;
pub mod highmem;
pub mod kfence;
pub mod kmalloc;
pub mod machine;
pub mod mm;
pub mod percpu;
pub mod platform;
pub mod proc;
pub mod rcu;
pub mod reclaim;
pub mod report;
pub mod slab;
pub mod sync;
pub mod vmalloc;

#[cfg(test)]
mod testing;

pub use crate::alloc::{KBox, KVBox, KVVec, KVec, VBox, VVec};
pub use addr::{Order, Pfn, PhysAddr, VirtAddr, MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE};
pub use boot::{BootConfig, BootError, MemRegion, Memblock, RegionKind, ZoneLayout};
pub use fault::{FaultAttr, TaskFault};
pub use gfp::Gfp;
pub use highmem::{KmapError, KmapLocal, KmapScope, KmapStats, KM_MAX_IDX, LAST_PKMAP};
pub use kmalloc::{KmallocError, ZERO_SIZE_PTR};
pub use machine::{BootInfo, Kmem, NR_CPUS};
pub use mm::frame::{Frame, FrameState};
pub use mm::page::{Page, MAX_NUMNODES};
pub use mm::page_ref::{AllocError, AllocErrorKind, PageRef};
pub use mm::pages::Pages;
pub use mm::zone_type::{Migratetype, ZoneType};
pub use percpu::{IrqGuard, PcpuInt, PerCpuBox, PerCpuVar, PercpuError, PercpuPtr, PreemptGuard};
pub use platform::{
    CpuId, DirectMap, FastPin, IrqState, MapError, PageProt, PageTableAlloc, Pinned, Platform, ReportKind, TaskId,
    TlbFlush,
};
pub use rcu::{RcuCallback, RcuCookie, RcuHead, RcuReadGuard, RcuStats};
pub use slab::{
    Cache, CacheError, FreeMap, KmemCache, KmemCacheArgs, NolockError, SlabAllocError, SlabBox, SlabFlags, TypedCache,
};
pub use vmalloc::{KernelStack, VmallocError, VmallocErrorKind, VmallocStats, THREAD_SIZE};
