//! Boot: from a firmware memory map to a running page allocator, memblock-style.
//!
//! 1. The usable ranges go into memblock; the caller's early hook may reserve ranges and make
//!    early allocations (never freed).
//! 2. kmem carves its own metadata from RAM, top-down below the direct-map limit: the machine
//!    state, the section table, one [`Node`] per node, and a page-descriptor array per present
//!    128 MiB section. Sections without RAM get no descriptors.
//! 3. Zone spans and present counts are computed from the map. Every descriptor starts
//!    `PG_reserved` with refcount 1 (`PG_nomem` where there is no RAM), written once all
//!    metadata is carved; with [`BootConfig::deferred_init`] most chunks of free RAM are left
//!    for later (`boot/deferred.rs`).
//! 4. Every free (usable, unreserved) range is released to its zone's buddy lists in maximal
//!    aligned blocks, deferred chunks excepted; the zone's managed count grows by what was
//!    released.
//! 5. min_free_kbytes, watermarks, lowmem reserves and zonelists are computed as Linux does
//!    (`mm/watermark.rs` tests them against a real 6.18 zoneinfo).
//!
//! Free ranges are released to the list tails (`FPI_TO_TAIL`), so fresh lists are in address
//! order; every pageblock starts Movable, as in Linux. Zones come from the map and the
//! [`ZoneLayout`] (x86-64: DMA below 16 MiB, DMA32 below 4 GiB, Normal; x86-32: DMA, Normal
//! below 896 MiB, HighMem). A 4 GiB machine boots in about 50 ms (release build) with
//! 32 MiB of descriptors (0.78% of RAM); [`BootConfig::deferred_init`] defers most of that
//! (`boot/deferred.rs`).
//!
//! What to boot and why booting failed ([`BootConfig`], [`BootError`]) are in `boot/config.rs`.

mod config;
mod deferred;
mod hotplug;
mod memblock;
mod memory_map;
mod null_frames;
pub(crate) mod pagesets;
mod sparse;

pub use config::{BootConfig, BootError};
pub(crate) use deferred::DeferredState;
pub use hotplug::HotplugError;
pub use memblock::{Memblock, MemblockError, Range, MEMBLOCK_REGIONS};
pub use memory_map::{MemRegion, RegionKind, ZoneLayout};
pub use sparse::flat_run;

use core::ptr::NonNull;

use crate::addr::{Order, Pfn, PhysAddr, PAGEBLOCK_NR_PAGES, PAGE_SHIFT, PAGE_SIZE};
use crate::machine::{Kmem, MachineState, NR_CPUS};
use crate::mm::buddy;
use crate::mm::memmap::{Memmap, Section, MAX_ORDER_NR_PAGES, PAGES_PER_SECTION};
use crate::mm::node::Node;
use crate::mm::page::{pg, Page, MAX_NUMNODES, MAX_SECTIONS};
use crate::mm::zone_type::{Migratetype, ZoneType, MAX_NR_ZONES, MIGRATE_TYPES};
use crate::percpu::PercpuState;
use crate::platform::{CpuId, Platform};
use crate::slab::{CacheError, KmemCache};
use crate::sync::{AtomicUsize, Ordering};

/// Bytes per memory section (128 MiB): NUMA node boundaries must be multiples of it.
pub const PAGES_PER_SECTION_BYTES: u64 = (PAGES_PER_SECTION as u64) << PAGE_SHIFT;
/// Bytes of one section's page descriptors: a slot of the vmemmap
/// ([`Platform::vmemmap_section`]).
pub const MEMMAP_BYTES_PER_SECTION: usize = PAGES_PER_SECTION * Page::SIZE;

/// Default distance to the local node and to a remote node (ACPI SLIT's `LOCAL_DISTANCE` and
/// `REMOTE_DISTANCE`).
pub const LOCAL_DISTANCE: u8 = 10;
/// See [`LOCAL_DISTANCE`].
pub const REMOTE_DISTANCE: u8 = 20;

impl<P: Platform> Kmem<P> {
    /// Boots a machine over the RAM described by `config`, using `platform`'s direct map.
    /// `early` runs with memblock before kmem carves its metadata (reserve ranges there, or
    /// make early allocations, which are never freed).
    ///
    /// # Safety
    ///
    /// Every usable range of `config.regions` below the direct-map limit must be RAM, readable
    /// and writable through the platform's direct map, used by nothing else, and must stay
    /// valid for as long as the returned `Kmem` (and anything allocated from it) lives. With
    /// [`BootConfig::ram_zeroed`], that RAM must read as zero at boot (fresh host memory
    /// does): kmem then reads memory it never wrote (deferred chunks' descriptors, per-CPU
    /// areas, absent sections) as zero.
    ///
    /// # Example
    ///
    /// A kernel boots kmem over the RAM its firmware reports, here on `kmem-minimal`'s
    /// one-CPU platform with 16 MiB of static RAM (`kmem-hosted`'s `MachineBuilder` does the
    /// same for a process):
    ///
    /// ```
    /// use kmem::{BootConfig, Gfp, Kmem, MemRegion, Order, PhysAddr, Pfn, ZoneLayout};
    /// use kmem_minimal::{MinimalPlatform, StaticRam};
    ///
    /// static RAM: StaticRam<{ 16 << 20 }> = StaticRam::new();
    /// // The firmware's memory map: RAM, with the legacy hole below 1 MiB.
    /// let map = [
    ///     MemRegion::usable(0, 0x9f000),
    ///     MemRegion::reserved(0x9f000, 0x61000),
    ///     MemRegion::usable(1 << 20, 15 << 20),
    /// ];
    /// let (ram, bytes) = RAM.take().unwrap();
    /// // SAFETY: the static region is ours for ever (taken once); this thread alone uses the
    /// // machine.
    /// let platform = unsafe { MinimalPlatform::new(ram, bytes) };
    /// let config = BootConfig::new(&map, ZoneLayout::X86_64);
    /// // SAFETY: the platform's direct map covers the usable ranges with RAM that nothing
    /// // else uses and that lives as long as the machine (a static).
    /// let m = unsafe {
    ///     Kmem::boot(platform, &config, |memblock| {
    ///         // The early hook: keep 64 KiB at 2 MiB for a device (`memblock_reserve`).
    ///         memblock.reserve(PhysAddr::new(2 << 20), 64 << 10)
    ///     })
    /// }
    /// .unwrap();
    /// assert_eq!(m.boot_info().ram_bytes, 0x9f000 + (15 << 20));
    /// assert!(m.pfn_to_page(Pfn::new(0x200)).unwrap().is_reserved(), "the device's pages");
    /// assert!(m.pfn_to_page(Pfn::new(0x9f)).unwrap().is_reserved(), "the hole");
    /// let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    /// // SAFETY: ours, unused, freed once.
    /// unsafe { m.__free_pages(page, Order::ZERO) };
    /// ```
    pub unsafe fn boot(
        platform: P,
        config: &BootConfig<'_>,
        early: impl FnOnce(&mut Memblock) -> Result<(), MemblockError>,
    ) -> Result<Kmem<P>, BootError> {
        let nr_cpus = platform.nr_cpus();
        if nr_cpus == 0 || nr_cpus > NR_CPUS || config.cpu_to_node.is_some_and(|m| m.len() < nr_cpus) {
            return Err(BootError::BadCpus { nr_cpus });
        }
        let nodes = config.nr_nodes;
        if nodes == 0 || nodes > MAX_NUMNODES {
            return Err(BootError::BadNode { node: nodes });
        }
        if config.distances.is_some_and(|d| d.len() != nodes * nodes) {
            return Err(BootError::BadDistances);
        }
        let dm = platform.direct_map();
        let lowmem_limit = match config.layout.highmem_start {
            Some(h) => h.min(dm.limit),
            None => dm.limit,
        };

        // 1. memblock.
        let mut mb = Memblock::new(lowmem_limit.as_u64());
        let mut max_end = 0u64;
        let mut any = false;
        for r in config.regions.iter().filter(|r| r.kind == RegionKind::Usable) {
            let Some(start) = r.start.align_up(PAGE_SIZE as u64) else { continue };
            let end = r.end().align_down(PAGE_SIZE as u64);
            if start >= end {
                continue;
            }
            if r.node as usize >= nodes {
                return Err(BootError::BadNode { node: r.node as usize });
            }
            if mb.memory().iter().any(|m| m.start < end.as_u64() && start.as_u64() < m.end) {
                return Err(BootError::Overlap { at: start });
            }
            if config.layout.highmem_start.is_none() && end > dm.limit {
                return Err(BootError::DirectMapTooSmall { limit: dm.limit });
            }
            mb.add(start.as_u64(), end.as_u64(), r.node)?;
            max_end = max_end.max(end.as_u64());
            any = true;
        }
        if !any {
            return Err(BootError::NoUsableMemory);
        }
        let max_pfn = (max_end >> PAGE_SHIFT) as usize;
        let table_end = config.hotplug_end.map_or(max_end, |e| e.as_u64().max(max_end));
        let nr_sections = ((table_end >> PAGE_SHIFT) as usize).div_ceil(PAGES_PER_SECTION);
        if (table_end >> PAGE_SHIFT) >= u32::MAX as u64 || nr_sections > MAX_SECTIONS {
            return Err(BootError::TooLarge { end: PhysAddr::new(table_end) });
        }
        early(&mut mb)?;
        // kfree's fast path tells NULL and ZERO_SIZE_PTR from objects by the direct-map range
        // alone (`kmalloc/fast.rs`): a direct map that covers virtual 0..=ZERO_SIZE_PTR (one
        // that starts at 0, as an identity map does) keeps the frame behind them from ever
        // becoming a slab (Linux's x86 reserves page 0 anyway).
        for pa in null_frames::null_frames(&dm).into_iter().flatten() {
            mb.reserve(pa, PAGE_SIZE as u64)?;
        }

        // 2. Carve metadata.
        let before = mb.reserved_bytes();
        let va = |pa: PhysAddr| dm.phys_to_virt(pa).ok_or(BootError::DirectMapTooSmall { limit: dm.limit });
        let state_pa = mb.alloc(core::mem::size_of::<MachineState>() as u64, 64, Some(0))?;
        let table_pa = mb.alloc(Memmap::table_bytes(nr_sections).max(1) as u64, 64, Some(0))?;
        let table = va(table_pa)?.as_mut_ptr::<Section>();
        // SAFETY: the table was just carved from usable RAM below the direct-map limit, so it
        // is mapped, writable and ours alone (boot's contract); it lives as long as the machine,
        // and reads as zero if the platform says RAM does.
        let memmap = unsafe {
            if config.ram_zeroed {
                Memmap::init_zeroed(table, nr_sections)
            } else {
                Memmap::init(table, nr_sections)
            }
        };
        let mut state = MachineState::new(
            memmap,
            config.layout,
            dm,
            nr_cpus,
            config.vmap_lazy_max_pages.unwrap_or(0),
            config.vmalloc_recycle,
        );

        let mut node_ptrs = [None::<NonNull<Node>>; MAX_NUMNODES];
        for (nid, slot) in node_ptrs.iter_mut().enumerate().take(nodes) {
            let pa = mb.alloc(core::mem::size_of::<Node>() as u64, 64, Some(nid as u8))?;
            let p = va(pa)?.as_mut_ptr::<Node>();
            // SAFETY: freshly carved, mapped, aligned, exclusively ours memory of the right size.
            unsafe { p.write(Node::new(nid as u8)) };
            *slot = NonNull::new(p);
        }

        // Section presence and node, from the usable ranges.
        let bytes = MEMMAP_BYTES_PER_SECTION as u64;
        // A flat memmap (`mm/memmap.rs`) when the present sections are one run on one node:
        // their descriptor arrays as one buffer in pfn order (Linux's `sparse_buffer_init`),
        // if memblock has room for it in one piece; else one array per section.
        let flat = sparse::flat_run(nr_sections, |nr| sparse::section_node(&mb, nr))?
            .and_then(|(first, n, node)| Some((first, mb.alloc(n as u64 * bytes, PAGE_SIZE as u64, Some(node)).ok()?)));
        let mut memmap_bytes = 0u64;
        let mut present_sections = 0usize;
        for nr in 0..nr_sections {
            let Some(node) = sparse::section_node(&mb, nr)? else { continue };
            let map_pa = match flat {
                Some((first, base)) => PhysAddr::new(base.as_u64() + (nr - first) as u64 * bytes),
                None => mb.alloc(bytes, PAGE_SIZE as u64, Some(node))?,
            };
            let map = va(map_pa)?;
            // SAFETY: `map` is carved RAM for this section's descriptors alone (the flat buffer
            // holds one array per section of the run, and `flat_run` counted this one), not
            // written or referenced yet.
            let map = unsafe { platform.vmemmap_section(nr, map) }.unwrap_or(map).as_mut_ptr::<Page>();
            // SAFETY: `map` holds room for PAGES_PER_SECTION descriptors in carved memory that
            // lives as long as the machine and is used for nothing else (or their vmemmap
            // address, which the platform keeps so); step 3 below writes them (or defers
            // them) before anything looks a frame up.
            unsafe { state.memmap.set_section_map(nr, map, node) };
            memmap_bytes += bytes;
            present_sections += 1;
        }
        sparse::mark_dense(&mut state.memmap, &platform, dm.limit.as_u64());
        // 3. Zone spans and present counts (descriptors once all metadata is carved, below),
        // straight into the zones (no per-node tables on the stack, which every process that
        // boots the global machine would fault in).
        let mut ram_bytes = 0;
        for m in mb.memory() {
            ram_bytes += m.end - m.start;
            for_each_zone_chunk(&config.layout, m.start, m.end, |s, e, zt| {
                let (sp, ep) = ((s >> PAGE_SHIFT) as usize, (e >> PAGE_SHIFT) as usize);
                if sp >= ep {
                    return;
                }
                let zone = node_ref(&node_ptrs, m.node as usize).zone(zt);
                let (zs, ze) = match zone.spanned_pages() {
                    0 => (sp, ep),
                    _ => (zone.start_pfn().as_usize().min(sp), zone.end_pfn().as_usize().max(ep)),
                };
                zone.set_span(Pfn::new(zs), Pfn::new(ze));
                zone.add_present(ep - sp);
            });
        }
        let deferring: [Option<ZoneType>; MAX_NUMNODES] = core::array::from_fn(|nid| {
            let node = node_ptrs[nid].map(|_| node_ref(&node_ptrs, nid))?;
            deferred::deferring_zone(&core::array::from_fn(|z| node.zones[z].present_pages()))
        });

        for (nid, p) in node_ptrs.iter().enumerate().take(nodes) {
            state.set_node(nid, p.expect("every node was carved"));
        }
        for cpu in 0..nr_cpus {
            let nid = match config.cpu_to_node {
                Some(m) => m[cpu],
                None => (cpu * nodes / nr_cpus) as u8,
            };
            if nid as usize >= nodes {
                return Err(BootError::BadNode { node: nid as usize });
            }
            state.set_cpu_node(cpu, nid);
        }
        state.max_pfn = AtomicUsize::new(max_pfn);
        // The pagesets of CPUs that come up later are written as each does, over RAM that
        // reads as zero (`pagesets.rs`); loom's atomics are not plain memory.
        let lazy = config.ram_zeroed && platform.cpus_come_up_later() && !cfg!(loom);
        for nid in 0..nodes {
            let write_now = |cpu: usize| !lazy || platform.cpu_online(CpuId(cpu as u32));
            pagesets::carve(&mut mb, dm, node_ref(&node_ptrs, nid), nr_cpus, write_now)?;
        }
        // The boot slab cache's descriptor (`kmem_cache`; every other descriptor is its object).
        state.slab.configure(&config.slab, nr_cpus);
        let bc_pa = mb.alloc(KmemCache::alloc_size(nodes) as u64, 64, Some(0))?;
        state.slab.boot_cache_mem = va(bc_pa)?.as_usize();
        // ... and the sheaves' cache's (`kmem_sheaf`), so booting allocates no slab.
        let sc_pa = mb.alloc(KmemCache::alloc_size(nodes) as u64, 64, Some(0))?;
        state.slab.sheaf_cache_mem = va(sc_pa)?.as_usize();
        // The highmem layer's state, when there is RAM above the direct map.
        if config.layout.highmem_start.is_some() && table_end > lowmem_limit.as_u64() {
            let need = crate::highmem::kmap_area_bytes(nr_cpus);
            let (s, e) = platform.kmap_range().ok_or(BootError::NoKmapArea { need })?;
            if e.as_usize().saturating_sub(s.as_usize()) < need || s.page_offset() != 0 {
                return Err(BootError::NoKmapArea { need });
            }
            let size = core::mem::size_of::<crate::highmem::HighmemState>() as u64;
            let p = va(mb.alloc(size, 64, Some(0))?)?.as_mut_ptr::<crate::highmem::HighmemState>();
            // SAFETY: freshly carved, mapped, aligned, exclusively ours memory of the right
            // size, living as long as the machine.
            unsafe { crate::highmem::HighmemState::write_at(p, s.as_usize(), nr_cpus) };
            state.highmem = p as usize;
        }
        let metadata_bytes = mb.reserved_bytes() - before;

        // Per-CPU first chunk: one unit per CPU on its node, reserved before the buddy release.
        // SAFETY: memblock hands out usable RAM below the direct-map limit (this fn's contract).
        state.percpu =
            unsafe { PercpuState::boot(&mut mb, dm, nr_cpus, config.ram_zeroed, |cpu| state.cpu_to_node(cpu) as u8) }?;

        // Descriptors: every chunk boot does not defer.
        let defer = config.deferred_init.filter(|_| config.ram_zeroed);
        let deferred = deferred::init_memmap(&mb, &state.memmap, &config.layout, &deferring, defer);
        deferred::set_counts(&state.deferred, &deferred, &deferring, |nid, zt| node_ref(&node_ptrs, nid).zone(zt));
        let total_deferred: usize = deferred.iter().sum();

        // 4. Release free memory to the buddy lists (deferred chunks excepted).
        let kmem_platform = &platform;
        let mut total_free = 0usize;
        mb.for_each_free(|start, end, nid| {
            for_each_zone_chunk(&config.layout, start, end, |s, e, zt| {
                // Whole pages only (`PFN_UP(start)`, `PFN_DOWN(end)`): a page that is partly
                // reserved holds boot data (the machine state, a caller's reservation) and must
                // never reach the buddy lists.
                let (sp, ep) = (s.div_ceil(PAGE_SIZE as u64) as usize, (e >> PAGE_SHIFT) as usize);
                if sp >= ep {
                    return;
                }
                let zone = node_ref(&node_ptrs, nid as usize).zone(zt);
                for_each_initialised_run(&state.memmap, sp, ep, |s, e| {
                    let n = release_range(kmem_platform, zone, &state.memmap, s, e, config.ram_zeroed);
                    zone.add_managed(n);
                    total_free += n;
                });
            });
        });
        // MemTotal counts deferred frames from the start, as Linux's `memblock_free_all` does.
        state.totalram.store(total_free + total_deferred, Ordering::Relaxed);
        state.grouping_disabled = total_free + total_deferred < PAGEBLOCK_NR_PAGES * MIGRATE_TYPES;
        state.ram_zeroed = config.ram_zeroed;

        // 5. Zonelists (watermarks and lowmem reserves once the machine exists, below).
        let mut populated = [[false; MAX_NR_ZONES]; MAX_NUMNODES];
        for (nid, row) in populated.iter_mut().enumerate().take(nodes) {
            for (z, cell) in row.iter_mut().enumerate() {
                *cell = node_ref(&node_ptrs, nid).zones[z].is_managed();
            }
        }
        for nid in 0..nodes {
            let dist: [u8; MAX_NUMNODES] = core::array::from_fn(|j| match config.distances {
                Some(d) if j < nodes => d[nid * nodes + j],
                _ if j == nid => LOCAL_DISTANCE,
                _ => REMOTE_DISTANCE,
            });
            let mut p = node_ptrs[nid].expect("carved");
            // SAFETY: boot still has exclusive access to the nodes it carved, and no reference
            // to this node is alive across this call.
            let node = unsafe { p.as_mut() };
            node.build_zonelists(&dist[..nodes], nodes, |n, z| populated[n][z]);
        }
        state.set_fast_zone();

        state.boot = crate::machine::BootInfo {
            ram_bytes,
            present_sections,
            memmap_bytes,
            metadata_bytes,
            percpu_bytes: state.percpu.boot_bytes(),
            reserved_bytes: mb.reserved_bytes(),
        };
        let sp = va(state_pa)?.as_mut_ptr::<MachineState>();
        // SAFETY: carved, mapped, aligned, exclusively ours memory of the right size.
        unsafe { sp.write(state) };
        let sp = NonNull::new(sp).expect("direct map address is non-null");
        let kmem = Kmem::from_parts(platform, sp);
        kmem.setup_per_zone_wmarks();
        kmem.meminit_setup(config.init_on_alloc, config.init_on_free);
        kmem.kmem_cache_init().map_err(BootError::Slab)?;
        kmem.setup_fault_attrs(config.failslab, config.fail_page_alloc)
            .map_err(|_| BootError::Slab(CacheError::NoMemory))?;
        kmem.reclaim_init();
        kmem.rcu_init().map_err(|_| BootError::Slab(CacheError::NoMemory))?;
        if let Some(k) = config.kfence {
            // Reported on failure; KFENCE stays off and the machine boots.
            let _ = kmem.kfence_init(k);
        }
        Ok(kmem)
    }
}

fn node_ref(ptrs: &[Option<NonNull<Node>>; MAX_NUMNODES], nid: usize) -> &Node {
    let p = ptrs[nid].expect("node carved at boot");
    // SAFETY: the node was carved and initialised above and lives as long as the machine.
    unsafe { p.as_ref() }
}

/// Calls `f(start, end)` for the runs of `[start, end)` (frame numbers) whose descriptor
/// chunks are initialised, skipping deferred chunks.
fn for_each_initialised_run(mm: &Memmap, start: usize, end: usize, mut f: impl FnMut(usize, usize)) {
    let mut s = start;
    while s < end {
        let chunk_end = (s / MAX_ORDER_NR_PAGES + 1) * MAX_ORDER_NR_PAGES;
        if !mm.chunk_initialised(Pfn::new(s)) {
            s = chunk_end;
            continue;
        }
        let mut e = chunk_end.min(end);
        while e < end && mm.chunk_initialised(Pfn::new(e)) {
            e = (e + MAX_ORDER_NR_PAGES).min(end);
        }
        f(s, e);
        s = e;
    }
}

/// Calls `f(start, end, zone)` for the pieces of `[start, end)` split at zone boundaries.
fn for_each_zone_chunk(layout: &ZoneLayout, start: u64, end: u64, mut f: impl FnMut(u64, u64, ZoneType)) {
    let mut s = start;
    while s < end {
        let e = layout.next_boundary(PhysAddr::new(s)).map_or(end, |b| b.as_u64().min(end));
        f(s, e, layout.zone_of(PhysAddr::new(s)));
        s = e;
    }
}

/// Frees `[start, end)` (frame numbers) into `zone` in maximal aligned blocks
/// (`memblock_free_pages` / `__free_pages_core`), each marked [`pg::ZEROED`] if the range
/// reads as zero (`zeroed`: never written, on RAM the platform promises reads as zero).
/// Returns pages released.
pub(super) fn release_range<P: Platform>(
    platform: &P,
    zone: &crate::mm::zone::Zone,
    mm: &Memmap,
    start: usize,
    end: usize,
    zeroed: bool,
) -> usize {
    let g = zone.area.lock(platform);
    let mut pfn = start;
    while pfn < end {
        let align = if pfn == 0 { Order::MAX.as_u32() } else { pfn.trailing_zeros().min(Order::MAX.as_u32()) };
        let fit = usize::BITS - 1 - (end - pfn).leading_zeros();
        let order = Order::new(align.min(fit)).expect("clamped to MAX");
        for p in pfn..pfn + order.nr_pages() {
            let page = mm.page(Pfn::new(p)).expect("usable RAM has descriptors");
            // The caller owns the range (boot, or a section being hot-added): plain stores.
            page.clear_exclusive(pg::RESERVED);
            page.set_refcount(0);
        }
        if zeroed {
            mm.pfn_to_page(Pfn::new(pfn)).set_exclusive(pg::ZEROED);
        }
        // FPI_TO_TAIL, as `__free_pages_core`: boot leaves the lists in address order.
        buddy::free_one_page(&g, zone, mm, Pfn::new(pfn), order, Migratetype::Movable, true);
        pfn += order.nr_pages();
    }
    end - start
}
