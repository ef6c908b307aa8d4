//! What to boot and why booting failed: [`BootConfig`] (the memory map, nodes, CPUs and boot
//! options) and [`BootError`].

use super::{MemRegion, MemblockError, ZoneLayout};
use crate::addr::PhysAddr;
use crate::machine::NR_CPUS;
use crate::slab::{CacheError, SlabBootConfig};

#[cfg(doc)]
use crate::{machine::Kmem, platform::Platform};

/// What to boot.
#[derive(Clone, Copy, Debug)]
pub struct BootConfig<'a> {
    /// The firmware memory map. Usable ranges are trimmed inward to page boundaries.
    pub regions: &'a [MemRegion],
    /// Zone boundaries of the architecture.
    pub layout: ZoneLayout,
    /// Number of NUMA nodes (each region names its node).
    pub nr_nodes: usize,
    /// Node of each CPU; `None` splits the CPUs into equal contiguous blocks per node.
    pub cpu_to_node: Option<&'a [u8]>,
    /// `nr_nodes * nr_nodes` distances, row-major; `None` uses 10 locally and 20 remotely.
    pub distances: Option<&'a [u8]>,
    /// Slab boot parameters (`slub_debug=`, `slab_nomerge`, slab orders).
    pub slab: SlabBootConfig<'a>,
    /// End of the physical range memory may be hot-added to later ([`Kmem::hot_add_memory`]):
    /// the section table is sized to cover it. `None`: the end of the memory map.
    pub hotplug_end: Option<PhysAddr>,
    /// `lazy_max_pages()` override: lazily freed vmalloc pages that trigger a purge. `None`:
    /// Linux's `fls(nr_cpus) * 32 MiB / PAGE_SIZE`.
    pub vmap_lazy_max_pages: Option<usize>,
    /// Recycle freed small vmalloc areas per CPU (`vmalloc/recycle.rs`); default true.
    pub vmalloc_recycle: bool,
    /// Deferred struct-page initialisation (`CONFIG_DEFERRED_STRUCT_PAGE_INIT`, see
    /// `boot/deferred.rs`): `Some(bytes)` writes at boot the descriptors of only the first
    /// `bytes` of free RAM (rounded up to 4 MiB chunks, at least one) of each node's highest
    /// zone, besides every chunk that holds anything but free RAM; the page allocator
    /// initialises the rest on demand, 4 MiB at a time. Only with [`BootConfig::ram_zeroed`]
    /// (ignored without it). `None` (the default): every descriptor at boot.
    pub deferred_init: Option<u64>,
    /// The platform promises that all RAM reads as zero at boot, and hot-added RAM when it is
    /// added (fresh host memory does; see [`Kmem::boot`]). Boot then skips writing zeroes:
    /// the section table's absent sections, the per-CPU first chunk's units (zeroed only
    /// where something is allocated), so a machine of many possible CPUs touches none of
    /// their memory until they use it. And the free memory is marked as reading zero
    /// (`mm/zeroed.rs`): a `__GFP_ZERO` allocation of a block nobody has written since skips
    /// the clearing, and never touches the block. Default false.
    pub ram_zeroed: bool,
    /// The `failslab=<interval>,<probability>,<space>,<times>` boot option (`crate::fault`);
    /// a string that does not parse is reported and ignored, as Linux does.
    pub failslab: Option<&'a str>,
    /// The `fail_page_alloc=<interval>,<probability>,<space>,<times>` boot option.
    pub fail_page_alloc: Option<&'a str>,
    /// The `init_on_alloc=1` boot option: pages and slab objects zeroed on allocation
    /// (`crate::mm::meminit`). Default false.
    pub init_on_alloc: bool,
    /// The `init_on_free=1` boot option: pages and slab objects zeroed on free. Default false.
    pub init_on_free: bool,
    /// KFENCE (`kfence.sample_interval=`, `CONFIG_KFENCE_NUM_OBJECTS`; `crate::kfence`):
    /// `None` (the default) builds no pool. A pool that cannot be built is reported and
    /// left off; the machine boots anyway.
    pub kfence: Option<crate::kfence::KfenceConfig>,
}

impl<'a> BootConfig<'a> {
    /// One node, the given map and layout.
    pub fn new(regions: &'a [MemRegion], layout: ZoneLayout) -> Self {
        Self {
            regions,
            layout,
            nr_nodes: 1,
            cpu_to_node: None,
            distances: None,
            slab: SlabBootConfig::default(),
            hotplug_end: None,
            vmap_lazy_max_pages: None,
            vmalloc_recycle: true,
            deferred_init: None,
            ram_zeroed: false,
            failslab: None,
            fail_page_alloc: None,
            init_on_alloc: false,
            init_on_free: false,
            kfence: None,
        }
    }
}

/// Why boot failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// No usable RAM in the memory map.
    NoUsableMemory,
    /// Two usable regions overlap.
    Overlap {
        /// Start of the second region.
        at: PhysAddr,
    },
    /// RAM above what 32-bit frame links can address (16 TiB).
    TooLarge {
        /// End of the highest usable region.
        end: PhysAddr,
    },
    /// A region names a node `>= nr_nodes`, or `nr_nodes` is 0 or above the maximum.
    BadNode {
        /// The node id.
        node: usize,
    },
    /// A 128 MiB section has RAM of two nodes.
    SectionSpansNodes {
        /// Section number.
        section: usize,
    },
    /// The platform reports 0 CPUs or more than [`NR_CPUS`], or `cpu_to_node` is too short.
    BadCpus {
        /// CPU count.
        nr_cpus: usize,
    },
    /// A distance table of the wrong size.
    BadDistances,
    /// The memory map has memory the architecture's layout puts in HighMem, but the direct
    /// map ends below that, or the direct map does not cover the lowmem ranges.
    DirectMapTooSmall {
        /// The direct map's limit.
        limit: PhysAddr,
    },
    /// The memory map has HighMem, but the platform gives no kmap area
    /// ([`Platform::kmap_range`]) of at least `need` bytes.
    NoKmapArea {
        /// Bytes the kmap area needs.
        need: usize,
    },
    /// memblock failed (too many regions, or no room for kmem's metadata).
    Memblock(MemblockError),
    /// The slab allocator could not create its boot cache.
    Slab(CacheError),
}

impl From<MemblockError> for BootError {
    fn from(e: MemblockError) -> Self {
        BootError::Memblock(e)
    }
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoUsableMemory => write!(f, "memory map has no usable RAM"),
            Self::Overlap { at } => write!(f, "usable memory regions overlap at {at}"),
            Self::TooLarge { end } => write!(f, "RAM ends at {end}, above the 16 TiB kmem supports"),
            Self::BadNode { node } => write!(f, "invalid NUMA node {node}"),
            Self::SectionSpansNodes { section } => write!(f, "memory section {section} spans two nodes"),
            Self::BadCpus { nr_cpus } => write!(f, "invalid CPU count {nr_cpus} (1..={NR_CPUS})"),
            Self::BadDistances => write!(f, "node distance table has the wrong size"),
            Self::DirectMapTooSmall { limit } => write!(f, "direct map ends at {limit}, below lowmem"),
            Self::NoKmapArea { need } => write!(f, "HighMem needs a kmap area of {need} bytes"),
            Self::Memblock(e) => write!(f, "{e}"),
            Self::Slab(e) => write!(f, "slab init: {e}"),
        }
    }
}

impl core::error::Error for BootError {}
