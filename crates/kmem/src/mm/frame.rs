//! Frame states: what each page frame holds, read from the page descriptors (the data behind
//! page-frame maps such as `kmem demo --map`, and Linux's `page-types` tool).
//!
//! A free or allocated block is described by its first page only: a buddy block's head has
//! the buddy page type and its order, a per-CPU list block's head the PCP type, an allocated
//! block's head its allocation order and owner flags (slab type and cache id, `PG_large_kmalloc`,
//! `PG_vmalloc`, `PG_pgtable`, `PG_percpu`), compound tails the distance to their head. The
//! other pages of a block carry nothing, so a frame's state is found from the block that
//! contains it: [`Kmem::for_each_frame_block`] walks block by block (one descriptor read per
//! block), [`Kmem::frame`] searches the aligned candidates for a single frame.
//!
//! ```
//! use kmem::{FrameState, Gfp};
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
//! let p = m.alloc_pages(Gfp::KERNEL, kmem::Order::of(3)).unwrap();
//! // Every frame of the block, not only its head.
//! assert_eq!(m.frame_state(p.pfn().add(5)), FrameState::Allocated { order: Some(3) });
//! let mut free = 0;
//! m.for_each_frame(|_, f| free += f.state.is_free() as usize);
//! assert_eq!(free, m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum::<usize>());
//! // SAFETY: ours, unused from here on.
//! unsafe { m.__free_pages(p, kmem::Order::of(3)) };
//! ```
//!
//! ## Consistency
//!
//! Descriptors are read without any lock while other CPUs allocate and free, as `/proc` views
//! read counters: the result is a sample, not a snapshot (a block being split or merged may be
//! seen half-way, a frame may be reported in a state it left a moment ago). Every descriptor
//! field is an atomic, so this is never undefined behaviour, and the walk never panics:
//! an order read mid-update is clamped to [`MAX_PAGE_ORDER`] and a block whose head is not
//! aligned to its order is taken one frame at a time.
//!
//! ## Notes
//!
//! - Nothing sets `PG_pgtable` or `PG_vmalloc` yet (no page tables, vmalloc is being built):
//!   frames are classified by those flags so that they appear once their owners set them.
//! - The per-CPU first chunk is memblock memory and shows as [`FrameState::Reserved`]; the
//!   units of dynamic chunks are [`FrameState::Percpu`].

#![forbid(unsafe_code)]

use core::ops::Range;

use crate::addr::{Pfn, MAX_PAGE_ORDER};
use crate::machine::Kmem;
use crate::mm::free_area::buddy_order;
use crate::mm::memmap::{MAX_ORDER_NR_PAGES, PAGES_PER_SECTION, PFN_SECTION_SHIFT};
use crate::mm::page::{pg, Page};
use crate::mm::zone_type::{ZoneType, MAX_NR_ZONES};
use crate::platform::Platform;
use crate::slab::KmemCache;

/// What one page frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameState {
    /// No RAM behind the frame: a section without descriptors, or a hole inside a present
    /// section (`PG_nomem`).
    Hole,
    /// Reserved at boot (firmware ranges, kmem's own metadata, memblock allocations such as
    /// the per-CPU first chunk): never managed by the buddy allocator. Also free RAM whose
    /// descriptors are not initialised yet (deferred struct-page init): not managed *yet*.
    Reserved,
    /// Part of a free buddy block of `order` on a zone's free list.
    Free {
        /// The block's order.
        order: u8,
    },
    /// Part of a free block of `order` on a CPU's per-CPU page list.
    Pcp {
        /// The block's order.
        order: u8,
    },
    /// Part of a slab of the cache with id `cache_id` (see [`KmemCache::id`]).
    Slab {
        /// The id the slab's head page names.
        cache_id: u32,
    },
    /// Part of a kmalloc allocation too large for the slab caches (`PG_large_kmalloc`).
    KmallocLarge,
    /// Backing a vmalloc area (`PG_vmalloc`).
    Vmalloc,
    /// A page-table page (`PG_pgtable`).
    PageTable,
    /// Part of a dynamic per-CPU chunk (`PG_percpu`).
    Percpu,
    /// Allocated from the page allocator for another use (a driver's pages, user pages...).
    Allocated {
        /// Order of the allocation, when the frame's block head was found.
        order: Option<u8>,
    },
}

impl FrameState {
    /// True for free frames (buddy lists or per-CPU lists).
    pub fn is_free(self) -> bool {
        matches!(self, FrameState::Free { .. } | FrameState::Pcp { .. })
    }
}

/// A frame's state and the zone it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// What the frame holds.
    pub state: FrameState,
    /// The frame's zone type (from its descriptor), `None` for frames without one.
    pub zone: Option<ZoneType>,
}

impl Frame {
    const HOLE: Frame = Frame { state: FrameState::Hole, zone: None };

    /// True if the frame lies in a HighMem zone (outside the direct map).
    pub fn is_highmem(&self) -> bool {
        self.zone == Some(ZoneType::HighMem)
    }
}

impl KmemCache {
    /// The cache's id: what the head pages of its slabs name
    /// ([`FrameState::Slab::cache_id`]); unique among live caches, and reused after a cache
    /// is destroyed.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The zone type recorded in a descriptor.
fn zone_of(page: &Page) -> Option<ZoneType> {
    ZoneType::ALL.get(page.zone_index().min(MAX_NR_ZONES - 1)).copied()
}

/// Clamps an order read from a descriptor (possibly mid-update) to the valid range.
fn clamp(order: u32) -> u8 {
    order.min(MAX_PAGE_ORDER as u32) as u8
}

/// What a block head's owner flags say the block is.
fn allocated_kind(page: &Page) -> FrameState {
    let f = page.flags();
    if let Some(id) = page.slab_cache_id() {
        FrameState::Slab { cache_id: id }
    } else if f & pg::LARGE_KMALLOC != 0 {
        FrameState::KmallocLarge
    } else if f & pg::VMALLOC != 0 {
        FrameState::Vmalloc
    } else if f & pg::PGTABLE != 0 {
        FrameState::PageTable
    } else if f & pg::PERCPU != 0 {
        FrameState::Percpu
    } else {
        FrameState::Allocated { order: page.alloc_order().map(|o| clamp(o as u32)) }
    }
}

/// If `page` starts a block, its state and order: free (buddy or pcp) or allocated. Pages
/// that start nothing (block interiors, compound tails) give `None`; reserved frames and
/// holes are single-frame "blocks".
fn block_at(page: &Page) -> Option<(FrameState, u8)> {
    if page.is_buddy() {
        let o = clamp(buddy_order(page));
        return Some((FrameState::Free { order: o }, o));
    }
    if page.is_pcp() {
        let o = clamp(page.private() & 0xff);
        return Some((FrameState::Pcp { order: o }, o));
    }
    let f = page.flags();
    if f & pg::NOMEM != 0 {
        return Some((FrameState::Hole, 0));
    }
    if f & pg::TAIL != 0 {
        return None;
    }
    if let Some(o) = page.alloc_order() {
        return Some((allocated_kind(page), clamp(o as u32)));
    }
    // An owner type on a page with no recorded order (a vmalloc or page-table page the owner
    // marked): one frame of that kind.
    let kind = allocated_kind(page);
    if kind != (FrameState::Allocated { order: None }) {
        return Some((kind, 0));
    }
    if f & pg::RESERVED != 0 {
        return Some((FrameState::Reserved, 0));
    }
    None
}

impl<P: Platform> Kmem<P> {
    /// The state of frame `pfn` and its zone. Frames beyond the memory map or without a
    /// descriptor are holes. Lock-free and racy (see the module docs), never panics.
    pub fn frame(&self, pfn: Pfn) -> Frame {
        let mm = self.memmap();
        if let Some((_, zt)) = self.deferred_frame_zone(pfn) {
            return Frame { state: FrameState::Reserved, zone: Some(zt) };
        }
        let Some(page) = mm.page(pfn) else { return Frame::HOLE };
        let zone = zone_of(page);
        if let Some((state, order)) = block_at(page) {
            // Reserved frames and holes may sit in a larger free block's span only by a race;
            // a block head always describes itself.
            if order == 0 || pfn.as_usize() & ((1 << order) - 1) == 0 {
                return Frame { state, zone };
            }
        }
        if page.flags() & pg::TAIL != 0 {
            let head = pfn.as_usize().wrapping_sub(page.tail_back() as usize);
            if let Some((state, _)) = mm.page(Pfn::new(head)).and_then(block_at) {
                return Frame { state, zone };
            }
        }
        // Inside a block: the head is at the largest aligned boundary whose block covers us.
        for o in 1..=MAX_PAGE_ORDER {
            let head = pfn.as_usize() & !((1usize << o) - 1);
            if let Some((state, order)) = mm.page(Pfn::new(head)).and_then(block_at) {
                if order >= o {
                    return Frame { state, zone };
                }
            }
        }
        Frame { state: FrameState::Allocated { order: None }, zone }
    }

    /// The state of frame `pfn` (see [`Kmem::frame`]).
    pub fn frame_state(&self, pfn: Pfn) -> FrameState {
        self.frame(pfn).state
    }

    /// Walks the frames of `pfns` (clamped to the memory map) in runs: `f(first, nr, frame)`
    /// for each run of `nr` frames starting at `first` that share one state (a block, a
    /// reserved frame, a hole, or a whole section without RAM). Runs are contiguous, in
    /// order, and cover the range exactly. One descriptor read per block: a 4 GiB machine
    /// walks in a few milliseconds. Lock-free and racy (see the module docs).
    pub fn for_each_frame_block(&self, pfns: Range<usize>, mut f: impl FnMut(Pfn, usize, Frame)) {
        let mm = self.memmap();
        let end = pfns.end.min(mm.nr_sections() << PFN_SECTION_SHIFT);
        let mut pfn = pfns.start;
        while pfn < end {
            let sec_end = ((pfn >> PFN_SECTION_SHIFT) + 1) << PFN_SECTION_SHIFT;
            let Some(page) = mm.page(Pfn::new(pfn)) else {
                let n = sec_end.min(end) - pfn;
                f(Pfn::new(pfn), n, Frame::HOLE);
                pfn += n;
                continue;
            };
            if let Some((_, zt)) = self.deferred_frame_zone(Pfn::new(pfn)) {
                // A chunk whose descriptors are not written yet: reserved until initialised.
                let n = ((pfn / MAX_ORDER_NR_PAGES + 1) * MAX_ORDER_NR_PAGES).min(end) - pfn;
                f(Pfn::new(pfn), n, Frame { state: FrameState::Reserved, zone: Some(zt) });
                pfn += n;
                continue;
            }
            let zone = zone_of(page);
            let (frame, n) = match block_at(page) {
                Some((state, order)) if pfn & ((1 << order) - 1) == 0 => (Frame { state, zone }, 1usize << order),
                // A tail or interior reached without its head (the range starts inside a
                // block, or a race): one frame, found the slow way.
                _ => (self.frame(Pfn::new(pfn)), 1),
            };
            // Blocks never cross sections (sections are aligned to far more than the largest
            // order), but a racy read must not make the walk overrun the range.
            let n = n.min(end - pfn).min(PAGES_PER_SECTION);
            f(Pfn::new(pfn), n, frame);
            pfn += n;
        }
    }

    /// Walks every frame below [`Kmem::max_pfn`]: `f(pfn, frame)` once per frame, in order
    /// (a free block of order 3 reports `Free { order: 3 }` on each of its 8 frames; the
    /// tails of a compound or high-order block report the head's kind).
    pub fn for_each_frame(&self, mut f: impl FnMut(Pfn, Frame)) {
        self.for_each_frame_block(0..self.max_pfn().as_usize(), |first, n, frame| {
            for i in 0..n {
                f(first.add(i), frame);
            }
        });
    }
}
