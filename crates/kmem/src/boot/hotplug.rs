//! Memory hotplug (`add_memory` + `online_pages`) and the per-zone watermark setup that boot
//! and hot-add share (`init_per_zone_wmark_min`).
//!
//! A hot-added 128 MiB section carries its own page descriptors in its first pages
//! (Linux's `memmap_on_memory`): nothing is allocated elsewhere, so a machine can boot with
//! a few MiB and grow. The rest of the section is freed to the zone the layout puts it in,
//! which must already have memory (zonelists and per-CPU pagesets are built at boot).
//!
//! [`Kmem::hot_add_memory`](crate::Kmem::hot_add_memory) onlines whole sections inside the
//! range [`BootConfig::hotplug_end`](crate::BootConfig::hotplug_end) sized the section table
//! for; each section's descriptors take its first 256 pages (reached at their vmemmap address
//! if the platform gives one: `Platform::vmemmap_section`). `init_per_zone_wmark_min`
//! (min_free_kbytes, watermarks, lowmem reserves, pcp batch and high) then runs again.
//! Serialised by the machine's hotplug lock, a leaf above the zone lock.

use core::fmt;

use super::{deferred, pagesets, release_range, PAGES_PER_SECTION_BYTES};
use crate::addr::{Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::machine::Kmem;
use crate::mm::memmap::{PAGES_PER_SECTION, PFN_SECTION_SHIFT};
use crate::mm::page::Page;
use crate::mm::watermark::{self, ZoneSize};
use crate::mm::zone::Zone;
use crate::mm::zone_type::{ZoneType, MAX_NR_ZONES};
use crate::platform::Platform;
use crate::sync::Ordering;

/// Pages at the start of a hot-added section that hold its page descriptors.
pub const MEMMAP_PAGES_PER_SECTION: usize = PAGES_PER_SECTION * Page::SIZE / PAGE_SIZE;

/// Why memory could not be hot-added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotplugError {
    /// Start or size not a multiple of the 128 MiB section size, or size 0.
    Unaligned,
    /// The node does not exist.
    NoSuchNode(usize),
    /// A section beyond the table sized at boot (`BootConfig::hotplug_end`).
    BeyondTable(usize),
    /// A section that already has memory.
    AlreadyPresent(usize),
    /// The range is not in the direct map.
    NotDirectMapped,
    /// The zone the range belongs to had no memory at boot.
    ZoneNotPopulated(ZoneType),
}

impl fmt::Display for HotplugError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned => write!(f, "range is not made of whole 128 MiB sections"),
            Self::NoSuchNode(n) => write!(f, "no node {n}"),
            Self::BeyondTable(s) => write!(f, "section {s} is beyond the hotplug range set at boot"),
            Self::AlreadyPresent(s) => write!(f, "section {s} already has memory"),
            Self::NotDirectMapped => write!(f, "range is not in the direct map"),
            Self::ZoneNotPopulated(z) => write!(f, "zone {z:?} had no memory at boot"),
        }
    }
}

impl core::error::Error for HotplugError {}

impl<P: Platform> Kmem<P> {
    /// `init_per_zone_wmark_min()`: `min_free_kbytes` from the lowmem pages, then every
    /// zone's watermarks and lowmem reserves, and the per-CPU lists' batch and high.
    pub(crate) fn setup_per_zone_wmarks(&self) {
        // Deferred frames count as managed: Linux computes these once deferred init is done.
        let lowmem_pages: usize = self
            .zones()
            .filter(|z| z.zone_type() != ZoneType::HighMem && z.zone_type() != ZoneType::Movable)
            .map(|z| self.zone_managed_eventually(z))
            .sum();
        let mfk = watermark::min_free_kbytes((lowmem_pages as u64) << (PAGE_SHIFT - 10));
        self.state().min_free_kbytes.store(mfk, Ordering::Relaxed);
        let layout = *self.layout();
        let nr_cpus = self.nr_cpus();
        for nid in 0..self.nr_nodes() {
            let Some(node) = self.node(nid) else { continue };
            let managed: [usize; MAX_NR_ZONES] = core::array::from_fn(|i| self.zone_managed_eventually(&node.zones[i]));
            let reserves = watermark::lowmem_reserves(managed);
            for zt in ZoneType::ALL.into_iter().filter(|&z| layout.has(z) && z != ZoneType::Device) {
                let zone = node.zone(zt);
                zone.set_wmarks(watermark::zone_watermarks(
                    mfk,
                    lowmem_pages,
                    ZoneSize { ztype: zt, managed: self.zone_managed_eventually(zone) },
                ));
                zone.set_lowmem_reserve(reserves[zt.index()]);
            }
            let cpus_of_node = (0..nr_cpus).filter(|&c| self.cpu_to_node(c) == nid).count();
            pagesets::set_high_and_batch(node, nr_cpus, cpus_of_node, |z| self.zone_managed_eventually(z));
        }
    }

    /// The batch, `high_min` and `high_max` of `zone`'s pagesets as
    /// [`Kmem::setup_per_zone_wmarks`] sets them now (for a pageset written as its CPU comes
    /// up, and what `/proc/zoneinfo` shows for one not yet written).
    pub(crate) fn zone_pcp_sizes(&self, zone: &Zone) -> (usize, usize, usize) {
        let nr_cpus = self.nr_cpus();
        let cpus_of_node = (0..nr_cpus).filter(|&c| self.cpu_to_node(c) == zone.node()).count();
        pagesets::pcp_sizes(zone, self.zone_managed_eventually(zone), nr_cpus, cpus_of_node)
    }

    /// `add_memory(nid, start, size)` + `online_pages()`: makes `[start, start + size)` (whole
    /// 128 MiB sections inside the range `BootConfig::hotplug_end` reserved) RAM of node `nid`,
    /// its page descriptors in its own first `MEMMAP_PAGES_PER_SECTION` pages, the rest
    /// free in its zone. Watermarks and per-CPU list sizes are recomputed. Returns the pages
    /// added to the buddy allocator. Hot-adds are serialised by the machine's hotplug lock.
    ///
    /// # Safety
    ///
    /// The range must be RAM readable and writable through the direct map, used by nothing
    /// else, for as long as the machine lives (the contract of [`Kmem::boot`] for boot RAM).
    pub unsafe fn hot_add_memory(&self, start: PhysAddr, size: u64, nid: usize) -> Result<usize, HotplugError> {
        let sec = PAGES_PER_SECTION_BYTES;
        if size == 0 || start.as_u64() % sec != 0 || size % sec != 0 {
            return Err(HotplugError::Unaligned);
        }
        if self.node(nid).is_none() {
            return Err(HotplugError::NoSuchNode(nid));
        }
        let first = (start.as_u64() >> (PFN_SECTION_SHIFT + PAGE_SHIFT)) as usize;
        let count = (size / sec) as usize;
        let end = PhysAddr::new(start.as_u64() + size);
        let _g = self.state().hotplug_lock.lock_irqsave(self.platform());
        let mm = self.memmap();
        for nr in first..first + count {
            let s = mm.section(nr).ok_or(HotplugError::BeyondTable(nr))?;
            if s.present() {
                return Err(HotplugError::AlreadyPresent(nr));
            }
            let zt = self.layout().zone_of(PhysAddr::new((nr as u64) * sec));
            let node = self.node(nid).expect("checked above");
            if !node.zone(zt).is_managed() {
                return Err(HotplugError::ZoneNotPopulated(zt));
            }
        }
        if self.phys_to_virt(PhysAddr::new(end.as_u64() - 1)).is_none() {
            return Err(HotplugError::NotDirectMapped);
        }
        let layout = *self.layout();
        let mut added = 0;
        for nr in first..first + count {
            let base = Pfn::new(nr << PFN_SECTION_SHIFT);
            let map = self.phys_to_virt(base.phys()).expect("checked: direct-mapped");
            // SAFETY: the section's first pages are the caller's RAM, given to the machine for
            // its life, not referenced, and carved for the descriptors alone.
            let map = unsafe { self.platform().vmemmap_section(nr, map) }.unwrap_or(map).as_mut_ptr::<Page>();
            deferred::write_section_descriptors(map, nr, nid as u8, &layout);
            // SAFETY: `map` holds the section's descriptors, just initialised in the section's
            // own first pages (or at their vmemmap address, which the platform keeps valid for
            // the machine's life).
            unsafe { mm.set_section_map(nr, map, nid as u8) };
            let node = self.node(nid).expect("checked above");
            let zone = node.zone(layout.zone_of(base.phys()));
            let (zs, ze) = (zone.start_pfn().as_usize(), zone.end_pfn().as_usize());
            let (s, e) = (base.as_usize(), base.as_usize() + PAGES_PER_SECTION);
            zone.set_span(Pfn::new(zs.min(s)), Pfn::new(ze.max(e)));
            zone.add_present(PAGES_PER_SECTION);
            // Hot-added RAM reads as zero where boot RAM did (`BootConfig::ram_zeroed`).
            let zeroed = self.state().ram_zeroed;
            let freed = release_range(self.platform(), zone, mm, s + MEMMAP_PAGES_PER_SECTION, e, zeroed);
            zone.add_managed(freed);
            self.state().totalram.fetch_add(freed, Ordering::Relaxed);
            added += freed;
        }
        self.state().max_pfn.fetch_max(end.pfn().as_usize(), Ordering::Relaxed);
        self.setup_per_zone_wmarks();
        Ok(added)
    }
}
