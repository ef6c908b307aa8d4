//! The `/proc` views: `buddyinfo`, `pagetypeinfo`, `zoneinfo`, `meminfo`, `slabinfo`,
//! `vmstat` and `vmallocinfo` (and debugfs's `extfrag/unusable_index`, `extfrag/extfrag_index`,
//! `kfence/stats` and `kfence/objects`), byte for byte in
//! the format of Linux 6.18 (`mm/vmstat.c`, `fs/proc/meminfo.c`, `mm/hugetlb.c`,
//! `arch/x86/mm/pat/set_memory.c`).
//!
//! Each view is one function that writes the whole file to any [`core::fmt::Write`]: a kernel
//! passes its seq_file-like buffer, a test a `String`. The views are formatting only
//! (statistics are counted in the core, formatted at the edge): they allocate nothing, take no
//! lock (but `slabinfo` and `vmallocinfo`, which walk their lists in batches under their locks) and never call back into
//! the allocator, so writing into a sink that itself allocates
//! from the same machine cannot deadlock.
//!
//! ```
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
//! let mut s = String::new();
//! kmem::proc::buddyinfo(&m, &mut s).unwrap();
//! assert!(s.starts_with("Node 0, zone      DMA "));
//! ```
//!
//! ## Consistency
//!
//! Counters are read without the zone lock, as Linux's `/proc/buddyinfo` reads `nr_free`
//! (`data_race()`): a view taken while other CPUs allocate is a sample, not a snapshot, and
//! e.g. a zone's `pages free` may disagree with its free lists by the pages in flight.
//!
//! ## Where kmem differs from the kernel
//!
//! - Statistics kmem does not keep yet (page cache, LRU lists,
//!   swap, hugetlb) print as 0, with the kernel's labels in the kernel's order, so tools that
//!   parse the files keep working. Each view's docs list what is real.
//! - The lines that depend on kernel configuration follow the 6.18 capture kmem is checked
//!   against (x86-64, `CONFIG_NUMA`, `CONFIG_ZSWAP`, `CONFIG_TRANSPARENT_HUGEPAGE`, no CMA, no
//!   `CONFIG_MEMORY_FAILURE`, no `CONFIG_UNACCEPTED_MEMORY`), plus `CONFIG_HIGHMEM` when the
//!   machine's [`ZoneLayout`](crate::ZoneLayout) has a HighMem zone.

#![forbid(unsafe_code)]

mod buddyinfo;
mod extfrag;
mod kfence;
mod meminfo;
mod pagetypeinfo;
mod slabinfo;
mod vmallocinfo;
mod vmstat;
mod zoneinfo;

pub use buddyinfo::buddyinfo;
pub use extfrag::{
    extfrag_index, fill_contig_page_info, fragmentation_index, unusable_free_index, unusable_index, zone_nr_free,
    ContigPageInfo,
};
pub use kfence::{kfence_objects, kfence_stats};
pub use meminfo::{direct_map_split, meminfo, DirectMapSplit};
pub use pagetypeinfo::pagetypeinfo;
pub use slabinfo::{slab_info, slabinfo, SlabInfo};
pub use vmallocinfo::vmallocinfo;
pub use vmstat::{vmstat, VMSTAT_EVENT_NAMES};
pub use zoneinfo::{calculate_normal_threshold, zoneinfo, NODE_STAT_NAMES, ZONE_STAT_NAMES};
