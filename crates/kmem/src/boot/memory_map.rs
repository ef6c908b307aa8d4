//! The firmware memory map (e820 / UEFI memory map / device tree `memory` nodes) and the zone
//! boundaries of an architecture.

use crate::addr::PhysAddr;
use crate::mm::zone_type::ZoneType;

/// What a range of the physical address space is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegionKind {
    /// RAM the kernel may use (e820 type 1).
    Usable,
    /// Firmware-reserved: never touched.
    Reserved,
}

/// One entry of the memory map.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemRegion {
    /// First byte.
    pub start: PhysAddr,
    /// Length in bytes.
    pub size: u64,
    /// What it is.
    pub kind: RegionKind,
    /// NUMA node of the range.
    pub node: u8,
}

impl MemRegion {
    /// A usable RAM range on node 0.
    pub const fn usable(start: u64, size: u64) -> Self {
        Self { start: PhysAddr::new(start), size, kind: RegionKind::Usable, node: 0 }
    }
    /// A firmware-reserved range.
    pub const fn reserved(start: u64, size: u64) -> Self {
        Self { start: PhysAddr::new(start), size, kind: RegionKind::Reserved, node: 0 }
    }
    /// The same range on node `node`.
    pub const fn on_node(mut self, node: u8) -> Self {
        self.node = node;
        self
    }
    /// One past the last byte.
    pub const fn end(&self) -> PhysAddr {
        PhysAddr::new(self.start.as_u64() + self.size)
    }
}

/// Physical boundaries of the zones, as an architecture's `zone_sizes_init` sets them.
///
/// `None` means the architecture has no such zone. Pages at or above `highmem_start` are not
/// in the direct map (32-bit machines).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ZoneLayout {
    /// End of ZONE_DMA (x86: 16 MiB).
    pub dma_end: Option<PhysAddr>,
    /// End of ZONE_DMA32 (x86-64: 4 GiB).
    pub dma32_end: Option<PhysAddr>,
    /// Start of ZONE_HIGHMEM (x86-32: 896 MiB, `MAXMEM`).
    pub highmem_start: Option<PhysAddr>,
}

impl ZoneLayout {
    /// x86-64: DMA below 16 MiB, DMA32 below 4 GiB, Normal above; no HighMem.
    pub const X86_64: ZoneLayout = ZoneLayout {
        dma_end: Some(PhysAddr::new(16 << 20)),
        dma32_end: Some(PhysAddr::new(4 << 30)),
        highmem_start: None,
    };
    /// x86-32 (3G/1G split): DMA below 16 MiB, Normal to 896 MiB, HighMem above; no DMA32.
    pub const X86_32: ZoneLayout = ZoneLayout {
        dma_end: Some(PhysAddr::new(16 << 20)),
        dma32_end: None,
        highmem_start: Some(PhysAddr::new(896 << 20)),
    };

    /// The zone of physical address `pa`.
    pub fn zone_of(&self, pa: PhysAddr) -> ZoneType {
        if self.dma_end.is_some_and(|e| pa < e) {
            ZoneType::Dma
        } else if self.dma32_end.is_some_and(|e| pa < e) {
            ZoneType::Dma32
        } else if self.highmem_start.is_some_and(|s| pa >= s) {
            ZoneType::HighMem
        } else {
            ZoneType::Normal
        }
    }

    /// True if the architecture has zones of this type (`CONFIG_ZONE_DMA32`, `CONFIG_HIGHMEM`...).
    /// Movable and Device always exist, as in the kernels whose /proc kmem reproduces.
    pub fn has(&self, zt: ZoneType) -> bool {
        match zt {
            ZoneType::Dma => self.dma_end.is_some(),
            ZoneType::Dma32 => self.dma32_end.is_some(),
            ZoneType::HighMem => self.highmem_start.is_some(),
            ZoneType::Normal | ZoneType::Movable | ZoneType::Device => true,
        }
    }

    /// The zone types this architecture has, lowest first.
    pub fn zone_types(&self) -> impl Iterator<Item = ZoneType> + '_ {
        ZoneType::ALL.into_iter().filter(|&z| self.has(z))
    }

    /// End of the zone boundary containing `pa` (next boundary above it), for splitting ranges.
    pub fn next_boundary(&self, pa: PhysAddr) -> Option<PhysAddr> {
        [self.dma_end, self.dma32_end, self.highmem_start].into_iter().flatten().filter(|&b| b > pa).min()
    }
}
