//! Zone types and migratetypes: the two small enums the whole page allocator indexes by.

#![forbid(unsafe_code)]

use core::fmt;

/// Number of zone slots per node (`MAX_NR_ZONES`). Which of them a machine populates is
/// the architecture's choice (see [`crate::boot::ZoneLayout`]).
pub const MAX_NR_ZONES: usize = 6;

/// A zone type, ordered from the lowest physical addresses up, as Linux's `enum zone_type`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum ZoneType {
    /// Below 16 MiB on x86 (ISA DMA).
    Dma = 0,
    /// Below 4 GiB on x86-64 (32-bit DMA).
    Dma32 = 1,
    /// Directly mapped memory above the DMA zones.
    Normal = 2,
    /// Memory not in the direct map (32-bit machines with more RAM than the kernel can map).
    HighMem = 3,
    /// Movable-only memory (`kernelcore=`); kmem never populates it today.
    Movable = 4,
    /// ZONE_DEVICE; never populated.
    Device = 5,
}

impl ZoneType {
    /// Every zone type in index order.
    pub const ALL: [ZoneType; MAX_NR_ZONES] =
        [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal, ZoneType::HighMem, ZoneType::Movable, ZoneType::Device];

    /// Linux's `zone_names[]` entry.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::HighMem => "HighMem",
            ZoneType::Movable => "Movable",
            ZoneType::Device => "Device",
        }
    }

    /// Slot index in a node's zone array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// `sysctl_lowmem_reserve_ratio` for this zone (0 means no reserve is kept against it).
    pub const fn lowmem_reserve_ratio(self) -> u64 {
        match self {
            ZoneType::Dma | ZoneType::Dma32 => 256,
            ZoneType::Normal => 32,
            ZoneType::HighMem | ZoneType::Movable | ZoneType::Device => 0,
        }
    }
}

impl fmt::Display for ZoneType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of migratetypes kmem keeps free lists for (no CMA).
pub const MIGRATE_TYPES: usize = 5;
/// The first three migratetypes have per-CPU lists and are what allocations ask for.
pub const MIGRATE_PCPTYPES: usize = 3;

/// Page mobility, tracked per pageblock (`enum migratetype`, without CMA).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum Migratetype {
    /// Kernel memory that cannot move (the default for GFP_KERNEL).
    Unmovable = 0,
    /// Pages that can be migrated (`__GFP_MOVABLE`; all of RAM at boot).
    Movable = 1,
    /// Slab pages freeable through shrinkers (`__GFP_RECLAIMABLE`).
    Reclaimable = 2,
    /// The high-order atomic reserve.
    HighAtomic = 3,
    /// Pageblocks being isolated; never allocated from.
    Isolate = 4,
}

impl Migratetype {
    /// Every migratetype in index order.
    pub const ALL: [Migratetype; MIGRATE_TYPES] = [
        Migratetype::Unmovable,
        Migratetype::Movable,
        Migratetype::Reclaimable,
        Migratetype::HighAtomic,
        Migratetype::Isolate,
    ];

    /// Linux's `migratetype_names[]` entry.
    pub const fn name(self) -> &'static str {
        match self {
            Migratetype::Unmovable => "Unmovable",
            Migratetype::Movable => "Movable",
            Migratetype::Reclaimable => "Reclaimable",
            Migratetype::HighAtomic => "HighAtomic",
            Migratetype::Isolate => "Isolate",
        }
    }

    /// Index into per-migratetype arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// From an index; `None` if out of range.
    pub const fn from_index(i: usize) -> Option<Self> {
        if i < MIGRATE_TYPES {
            Some(Self::ALL[i])
        } else {
            None
        }
    }

    /// The one-letter code `show_migration_types` prints in Mem-Info (`U`, `M`, `E`, `H`, `I`).
    pub const fn letter(self) -> char {
        match self {
            Migratetype::Unmovable => 'U',
            Migratetype::Movable => 'M',
            Migratetype::Reclaimable => 'E',
            Migratetype::HighAtomic => 'H',
            Migratetype::Isolate => 'I',
        }
    }

    /// The fallback order when this type's lists are empty (`fallbacks[]`).
    pub const fn fallbacks(self) -> &'static [Migratetype] {
        match self {
            Migratetype::Unmovable => &[Migratetype::Reclaimable, Migratetype::Movable],
            Migratetype::Movable => &[Migratetype::Reclaimable, Migratetype::Unmovable],
            Migratetype::Reclaimable => &[Migratetype::Unmovable, Migratetype::Movable],
            Migratetype::HighAtomic | Migratetype::Isolate => &[],
        }
    }
}

impl fmt::Display for Migratetype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
