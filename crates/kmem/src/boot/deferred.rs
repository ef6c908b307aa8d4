//! Deferred struct-page initialisation (Linux's `CONFIG_DEFERRED_STRUCT_PAGE_INIT`).
//!
//! Writing a descriptor for every frame at boot is most of what booting costs (32 bytes per
//! 4 KiB frame: 1 MiB per 128 MiB section, and the host commits every page of it). With
//! [`BootConfig::deferred_init`](super::BootConfig::deferred_init) set, boot writes only:
//!
//! - every chunk that is not entirely free RAM (it holds kmem's metadata, a caller's
//!   reservation, a hole, or a zone boundary),
//! - every chunk of the lower zones of each node: as in Linux, only the highest zone of a
//!   node defers, so address-constrained allocations (`GFP_DMA`, `GFP_DMA32`) never wait, and
//!   never a HighMem zone (Linux defers only on 64-bit machines, which have none),
//! - the lowest free chunks of each deferring zone until boot has released the requested
//!   bytes of it (at least one chunk: every zone with free RAM is managed from boot, so the
//!   zonelists are the same as without deferral).
//!
//! A chunk is [`MAX_ORDER_NR_PAGES`] frames (4 MiB; its descriptors are 32 KiB), so a deferred
//! chunk is one free block of the largest order: initialising it writes its descriptors and
//! frees that one block, which has no buddy to merge with, and the buddy lists end up exactly
//! as if boot had released it. Every frame of a deferred chunk is free RAM of one zone, so
//! nothing about it needs to be remembered but the chunk's bit in its section
//! ([`Memmap::defer_chunks`]) and a per-zone count.
//!
//! **On demand** (`deferred_grow_zone`): the page allocator's slow path, before it would fail
//! (and before the process's allocator would hot-add a section), calls
//! [`Kmem::deferred_grow`]. It initialises the lowest deferred chunks of the first zone of
//! the allocation's zonelist that has any, one chunk at a time under the deferral lock, until
//! the zone's free pages reach its high watermark plus the request (a bounded number of
//! chunks). [`Kmem::deferred_init_all`] initialises everything (what Linux's `pgdatinit`
//! threads do before user space starts). Nothing else changes: fast paths never look.
//!
//! **Accounting, as Linux during deferred init**: `totalram_pages` (MemTotal) counts deferred
//! frames from boot (memblock adds every free range to it, deferred or not, in
//! `memblock_free_all`); a zone's `present` and `spanned` count them; its `managed` count and
//! its free pages grow as chunks are freed. Watermarks, lowmem reserves and per-CPU list sizes
//! are computed from the memory the zone manages once deferred init is done (Linux computes
//! them in `init_per_zone_wmark_min`, after its deferred init has completed), so they are the
//! same at every stage and equal a fully initialised machine's.
//!
//! **Lookups**: a deferred chunk's descriptor slots read as zero until written (the platform
//! promises zeroed RAM, `BootConfig::ram_zeroed`, without which boot does not defer), which no
//! lookup takes for a slab, a compound page or a free block. Lookups of addresses nobody
//! vouches for ([`Kmem::pfn_to_page`], `virt_to_page`) and the walkers (frame maps,
//! `/proc/pagetypeinfo`, [`Kmem::verify`]) see a deferred frame as not yet valid: the frame
//! maps report it [`FrameState::Reserved`](crate::FrameState::Reserved) (not managed by the
//! buddy allocator yet), the pageblock counts count its pageblocks as they will be.
//!
//! With `ram_zeroed`, boot also skips writing zeroes elsewhere (absent section slots, per-CPU
//! units, which the per-CPU allocator zeroes only below a high-water mark of granules ever
//! used). The global machine of `kmem-alloc` boots this way; `kmem-hosted`'s `MachineBuilder`
//! machines defer only when asked (`deferred_init`), so the golden `/proc` tests keep their
//! numbers.

use super::memblock::Memblock;
use super::ZoneLayout;
use crate::addr::{Order, Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::machine::Kmem;
use crate::mm::buddy;
use crate::mm::memmap::{Memmap, CHUNKS_PER_SECTION, MAX_ORDER_NR_PAGES, PAGES_PER_SECTION, PFN_SECTION_SHIFT};
use crate::mm::node::ZoneList;
use crate::mm::page::{pg, Page, MAX_NUMNODES};
use crate::mm::zone::{Wmark, Zone};
use crate::mm::zone_type::{Migratetype, ZoneType, MAX_NR_ZONES};
use crate::platform::Platform;
use crate::sync::{AtomicUsize, Ordering, RawSpinLock};

/// The deferral state of a machine (`pgdat->first_deferred_pfn` and the resize lock).
#[derive(Debug)]
pub(crate) struct DeferredState {
    /// Serialises chunk initialisation (`pgdat_resize_lock`). Nests outside the zone locks.
    lock: RawSpinLock,
    /// All deferred frames (each zone counts its own: [`Zone::deferred_pages`]): the
    /// allocator's hook returns at once when this is 0.
    total: AtomicUsize,
    /// No section below this one has a deferred chunk.
    first_section: AtomicUsize,
}

impl DeferredState {
    pub(crate) fn new() -> Self {
        Self { lock: RawSpinLock::new(), total: AtomicUsize::new(0), first_section: AtomicUsize::new(0) }
    }
}

/// The zone of a node (`present` frames per zone type) whose chunks boot may defer: its
/// highest populated zone, unless that is HighMem.
pub(super) fn deferring_zone(present: &[usize; MAX_NR_ZONES]) -> Option<ZoneType> {
    let zt = ZoneType::ALL.into_iter().rev().find(|z| present[z.index()] != 0)?;
    (zt != ZoneType::HighMem).then_some(zt)
}

/// The whole chunks inside `[sp, ep)` (frame numbers): `(first, end)`, chunk aligned.
fn whole_chunks(sp: usize, ep: usize) -> (usize, usize) {
    let first = sp.next_multiple_of(MAX_ORDER_NR_PAGES);
    let end = ep / MAX_ORDER_NR_PAGES * MAX_ORDER_NR_PAGES;
    (first, end.max(first))
}

/// Boot: decides which chunks to defer (with `defer_bytes`), then writes the descriptors of
/// every other chunk of every present section: reserved, refcount 1, `PG_nomem` where there is
/// no RAM (`memmap_init` + `init_unavailable_range`). Returns the deferred frames of each
/// node, all in its zone `deferring[nid]` ([`deferring_zone`]). Free ranges come from `mb`
/// (`for_each_free`), zones from `layout`.
pub(super) fn init_memmap(
    mb: &Memblock,
    mm: &Memmap,
    layout: &ZoneLayout,
    deferring: &[Option<ZoneType>; MAX_NUMNODES],
    defer_bytes: Option<u64>,
) -> [usize; MAX_NUMNODES] {
    let mut deferred = [0usize; MAX_NUMNODES];
    if let Some(bytes) = defer_bytes {
        let want = (bytes as usize).div_ceil(PAGE_SIZE).max(1);
        // Free frames of each deferring zone that boot releases whatever happens (outside
        // whole free chunks), then the lowest whole chunks until `want` is reached.
        let mut released = [0usize; MAX_NUMNODES];
        let chunks_of = |start: u64, end: u64, nid: u8, f: &mut dyn FnMut(usize, usize)| {
            super::for_each_zone_chunk(layout, start, end, |s, e, zt| {
                if deferring[nid as usize] != Some(zt) {
                    return;
                }
                let (sp, ep) = (s.div_ceil(PAGE_SIZE as u64) as usize, (e >> PAGE_SHIFT) as usize);
                if sp < ep {
                    f(sp, ep);
                }
            });
        };
        mb.for_each_free(|start, end, nid| {
            chunks_of(start, end, nid, &mut |sp, ep| {
                let (first, cend) = whole_chunks(sp, ep);
                released[nid as usize] += (ep - sp) - (cend - first);
            });
        });
        mb.for_each_free(|start, end, nid| {
            chunks_of(start, end, nid, &mut |sp, ep| {
                let (first, cend) = whole_chunks(sp, ep);
                for c in (first..cend).step_by(MAX_ORDER_NR_PAGES) {
                    let r = &mut released[nid as usize];
                    if *r < want {
                        *r += MAX_ORDER_NR_PAGES;
                        continue;
                    }
                    let nr = c >> PFN_SECTION_SHIFT;
                    mm.defer_chunks(nr, 1 << ((c & (PAGES_PER_SECTION - 1)) / MAX_ORDER_NR_PAGES));
                    deferred[nid as usize] += MAX_ORDER_NR_PAGES;
                }
            });
        });
    }
    // The sections with RAM, from memblock (not by scanning the table: a large hotplug range
    // would have boot read, and the host map, every slot of it).
    let mut last = None;
    for m in mb.memory() {
        let (first, end) = (
            (m.start >> PAGE_SHIFT) as usize >> PFN_SECTION_SHIFT,
            ((m.end >> PAGE_SHIFT) as usize).div_ceil(PAGES_PER_SECTION),
        );
        for nr in first..end {
            if last.replace(nr) == Some(nr) {
                continue;
            }
            init_section(mm, mb, layout, nr);
        }
    }
    deferred
}

/// Writes the descriptors of the chunks of present section `nr` that are not deferred.
fn init_section(mm: &Memmap, mb: &Memblock, layout: &ZoneLayout, nr: usize) {
    let Some(sec) = mm.section(nr).filter(|s| s.present()) else { return };
    let node = sec.node() as u8;
    let todo = !mm.deferred_chunks(nr);
    for chunk in (0..CHUNKS_PER_SECTION).filter(|c| todo & (1 << c) != 0) {
        let base = (nr << PFN_SECTION_SHIFT) + chunk * MAX_ORDER_NR_PAGES;
        write_boot_descriptors(mm, mb, layout, node, base, base + MAX_ORDER_NR_PAGES);
    }
}

/// Writes boot descriptors for frames `[start, end)` of one present section: reserved,
/// refcount 1, `PG_nomem` outside `mb`'s memory (boot: nobody reads them yet).
fn write_boot_descriptors(mm: &Memmap, mb: &Memblock, layout: &ZoneLayout, node: u8, start: usize, end: usize) {
    let nr = start >> PFN_SECTION_SHIFT;
    let map = mm.page(Pfn::new(nr << PFN_SECTION_SHIFT)).expect("present section") as *const Page as *mut Page;
    let mut pfn = start;
    while pfn < end {
        // The run of frames from `pfn` that are all RAM or all not.
        let (ram, mut run_end) = match mb
            .memory()
            .iter()
            .map(|m| ((m.start >> PAGE_SHIFT) as usize, (m.end >> PAGE_SHIFT) as usize))
            .find(|&(_, e)| e > pfn)
        {
            Some((s, e)) if s <= pfn => (true, e.min(end)),
            Some((s, _)) => (false, s.min(end)),
            None => (false, end),
        };
        let at = PhysAddr::new((pfn as u64) << PAGE_SHIFT);
        if let Some(b) = layout.next_boundary(at) {
            run_end = run_end.min((b.as_u64() >> PAGE_SHIFT) as usize).max(pfn + 1);
        }
        let zone = layout.zone_of(at) as u8;
        let extra = if ram { 0 } else { pg::NOMEM };
        for p in pfn..run_end {
            // SAFETY: `map` is the section's descriptor array (PAGES_PER_SECTION slots carved
            // for it at boot or in the section itself at hot-add) and `p` lies in the section;
            // boot and hot-add write descriptors before anything looks them up (hot-add under
            // the hotplug lock, before the section is published); `Page` has no drop glue.
            unsafe { map.add(p & (PAGES_PER_SECTION - 1)).write(Page::new_boot(zone, node, nr, extra)) };
        }
        pfn = run_end;
    }
}

/// Hot-add: writes the boot descriptors of a whole section of RAM.
pub(super) fn write_section_descriptors(map: *mut Page, nr: usize, node: u8, layout: &ZoneLayout) {
    let base = nr << PFN_SECTION_SHIFT;
    let mut pfn = base;
    while pfn < base + PAGES_PER_SECTION {
        let at = PhysAddr::new((pfn as u64) << PAGE_SHIFT);
        let run_end = layout
            .next_boundary(at)
            .map_or(base + PAGES_PER_SECTION, |b| ((b.as_u64() >> PAGE_SHIFT) as usize).min(base + PAGES_PER_SECTION));
        let zone = layout.zone_of(at) as u8;
        for p in pfn..run_end {
            // SAFETY: `map` holds PAGES_PER_SECTION descriptor slots (caller) and `p - base` is
            // below that; nobody looks the section up before it is published.
            unsafe { map.add(p - base).write(Page::new_boot(zone, node, nr, 0)) };
        }
        pfn = run_end;
    }
}

impl<P: Platform> Kmem<P> {
    /// Frames whose descriptors are not initialised yet: free RAM the buddy allocator has not
    /// been given (0 without [`BootConfig::deferred_init`](super::BootConfig::deferred_init),
    /// and once everything is initialised).
    pub fn deferred_pages(&self) -> usize {
        self.state().deferred.total.load(Ordering::Relaxed)
    }

    /// The pages `zone` manages once deferred init is done: what watermarks and per-CPU list
    /// sizes are computed from.
    pub(crate) fn zone_managed_eventually(&self, zone: &Zone) -> usize {
        zone.managed_pages() + zone.deferred_pages()
    }

    /// The page allocator's hook, called from its slow path before it gives up: grows the
    /// first zone of `zonelist` (up to `highest`) that has deferred frames
    /// (`_deferred_grow_zone`). True if frames were added. One load when nothing is deferred.
    #[inline]
    pub(crate) fn deferred_grow(&self, zonelist: &ZoneList, highest: ZoneType, order: Order) -> bool {
        if self.state().deferred.total.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.deferred_grow_slow(zonelist, highest, order)
    }

    #[cold]
    #[inline(never)]
    fn deferred_grow_slow(&self, zonelist: &ZoneList, highest: ZoneType, order: Order) -> bool {
        for zr in zonelist.as_slice().iter().filter(|zr| zr.zone_type() <= highest) {
            let Some(node) = self.node(zr.node as usize) else { continue };
            let zone = node.zone(zr.zone_type());
            if zone.deferred_pages() > 0 {
                return self.deferred_grow_zone(zone, order.as_u32());
            }
        }
        false
    }

    /// `deferred_grow_zone()`: initialises deferred chunks of `zone`, lowest first, until its
    /// free pages reach its high watermark plus `2^order` (at most that many chunks' worth
    /// plus one), each chunk's descriptors written and its block freed. True if the zone
    /// has more free pages than when the caller found it short: grown here, or by another
    /// CPU while this one waited for the lock.
    pub fn deferred_grow_zone(&self, zone: &Zone, order: u32) -> bool {
        let d = &self.state().deferred;
        if zone.deferred_pages() == 0 {
            return false;
        }
        let target = zone.wmark(Wmark::High) + (1usize << order.min(Order::MAX.as_u32()));
        let before = zone.free_pages();
        let _g = d.lock.lock_irqsave(self.platform());
        if zone.free_pages() > before && zone.free_pages() >= target {
            return true; // another CPU grew it meanwhile
        }
        let mut grew = false;
        for _ in 0..=target.div_ceil(MAX_ORDER_NR_PAGES) {
            let Some(base) = self.next_deferred_chunk(zone) else { break };
            self.init_deferred_chunk(zone, base);
            grew = true;
            if zone.free_pages() >= target {
                break;
            }
        }
        grew || zone.free_pages() > before
    }

    /// Initialises every deferred chunk now (what Linux's `pgdatinit` threads do before user
    /// space starts). Returns the frames released. The lock is taken per chunk, so allocations
    /// proceed meanwhile.
    pub fn deferred_init_all(&self) -> usize {
        let mut done = 0;
        for zone in self.zones() {
            while zone.deferred_pages() > 0 {
                let _g = self.state().deferred.lock.lock_irqsave(self.platform());
                let Some(base) = self.next_deferred_chunk(zone) else { break };
                self.init_deferred_chunk(zone, base);
                done += MAX_ORDER_NR_PAGES;
            }
        }
        done
    }

    /// The first frame of the lowest deferred chunk of `zone`. Called with the deferral lock.
    fn next_deferred_chunk(&self, zone: &Zone) -> Option<usize> {
        let d = &self.state().deferred;
        let mm = self.memmap();
        let layout = self.layout();
        let mut lowest_any = None;
        let mut found = None;
        for nr in d.first_section.load(Ordering::Relaxed)..mm.nr_sections() {
            let mask = mm.deferred_chunks(nr);
            if mask == 0 {
                continue;
            }
            lowest_any.get_or_insert(nr);
            if mm.section(nr).is_none_or(|s| s.node() != zone.node()) {
                continue;
            }
            let hit = (0..CHUNKS_PER_SECTION).filter(|c| mask & (1 << c) != 0).find(|c| {
                let base = (nr << PFN_SECTION_SHIFT) + c * MAX_ORDER_NR_PAGES;
                layout.zone_of(Pfn::new(base).phys()) == zone.zone_type()
            });
            if let Some(c) = hit {
                found = Some((nr << PFN_SECTION_SHIFT) + c * MAX_ORDER_NR_PAGES);
                break;
            }
        }
        d.first_section.store(lowest_any.unwrap_or(mm.nr_sections()), Ordering::Relaxed);
        found
    }

    /// Writes the descriptors of the deferred chunk at frame `base` (a whole chunk of free RAM
    /// of `zone`), publishes it as initialised, and frees it as one block
    /// (`deferred_init_pages` + `deferred_free_pages`). Called with the deferral lock.
    fn init_deferred_chunk(&self, zone: &Zone, base: usize) {
        let mm = self.memmap();
        let nr = base >> PFN_SECTION_SHIFT;
        let (zt, node) = (zone.zone_type() as u8, zone.node() as u8);
        for pfn in base..base + MAX_ORDER_NR_PAGES {
            mm.page(Pfn::new(pfn)).expect("deferred chunks lie in present sections").init_free(zt, node, nr);
        }
        // Published before the block can be allocated: whoever gets one of its pages may look
        // it up with the checked lookups at once.
        mm.set_chunk_initialised(nr, (base & (PAGES_PER_SECTION - 1)) / MAX_ORDER_NR_PAGES);
        // Deferral needs RAM that reads as zero (`BootConfig::deferred_init`), and nothing
        // has written this chunk's frames: the block reads as zero (`mm/zeroed.rs`).
        mm.pfn_to_page(Pfn::new(base)).set_exclusive(crate::mm::page::pg::ZEROED);
        {
            let g = zone.area.lock(self.platform());
            // FPI_TO_TAIL, as boot's release: the block goes behind the memory in use.
            buddy::free_one_page(&g, zone, mm, Pfn::new(base), Order::MAX, Migratetype::Movable, true);
        }
        zone.add_managed(MAX_ORDER_NR_PAGES);
        zone.sub_deferred(MAX_ORDER_NR_PAGES);
        self.state().deferred.total.fetch_sub(MAX_ORDER_NR_PAGES, Ordering::Relaxed);
    }

    /// If `pfn` lies in a deferred chunk, the zone it will belong to (from the section's node
    /// and the layout: its descriptor is not written yet).
    pub(crate) fn deferred_frame_zone(&self, pfn: Pfn) -> Option<(usize, ZoneType)> {
        let mm = self.memmap();
        let nr = pfn.as_usize() >> PFN_SECTION_SHIFT;
        let chunk = (pfn.as_usize() & (PAGES_PER_SECTION - 1)) / MAX_ORDER_NR_PAGES;
        if mm.deferred_chunks(nr) & (1 << chunk) == 0 {
            return None;
        }
        Some((mm.section(nr)?.node(), self.layout().zone_of(pfn.phys())))
    }

    /// [`Kmem::verify`]'s part: each zone's deferred count is its deferred chunks' frames, and
    /// the total is their sum. `Err((node, zone, counted, counter))`.
    pub(crate) fn verify_deferred(&self) -> Result<(), (usize, ZoneType, usize, usize)> {
        let mm = self.memmap();
        let _g = self.state().deferred.lock.lock_irqsave(self.platform());
        let mut counted = [[0usize; MAX_NR_ZONES]; MAX_NUMNODES];
        for nr in 0..mm.nr_sections() {
            let mask = mm.deferred_chunks(nr);
            for c in (0..CHUNKS_PER_SECTION).filter(|c| mask & (1 << c) != 0) {
                let base = Pfn::new((nr << PFN_SECTION_SHIFT) + c * MAX_ORDER_NR_PAGES);
                let (nid, zt) = self.deferred_frame_zone(base).expect("a deferred chunk");
                counted[nid][zt.index()] += MAX_ORDER_NR_PAGES;
            }
        }
        let mut sum = 0;
        for zone in self.zones() {
            let (counter, counted) = (zone.deferred_pages(), counted[zone.node()][zone.zone_type().index()]);
            if counted != counter {
                return Err((zone.node(), zone.zone_type(), counted, counter));
            }
            sum += counter;
        }
        let total = self.state().deferred.total.load(Ordering::Relaxed);
        if sum != total {
            return Err((0, ZoneType::Normal, sum, total));
        }
        Ok(())
    }
}

/// Boot: records what [`init_memmap`] deferred: each node's deferring zone's count
/// (`zone(nid, zt)`) and the machine's total.
pub(super) fn set_counts<'a>(
    d: &DeferredState,
    deferred: &[usize; MAX_NUMNODES],
    deferring: &[Option<ZoneType>; MAX_NUMNODES],
    zone: impl Fn(usize, ZoneType) -> &'a Zone,
) {
    let mut total = 0;
    for (nid, &n) in deferred.iter().enumerate().filter(|(_, &n)| n != 0) {
        let zt = deferring[nid].expect("only a deferring zone defers");
        zone(nid, zt).add_deferred(n);
        total += n;
    }
    d.total.store(total, Ordering::Relaxed);
}
