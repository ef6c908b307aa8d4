//! A chunk header: the address of each CPU's unit (immutable once built) and the allocation
//! state (list links, counters, the allocation and boundary maps), which only the holder of
//! the percpu lock touches.
//!
//! Invariants of [`ChunkState`], kept by [`ChunkState::alloc_area`] and
//! [`ChunkState::free_area`] (and checked by [`ChunkState::check`]):
//! - Bits outside the chunk's region `[start, end)` of the allocation map are never set.
//! - `free_bits` is the number of clear allocation bits in the region.
//! - A live allocation `[off, off + bits)` has its allocation bits set, its boundary bit set at
//!   `off` and at `off + bits`, and no boundary bit inside. So a granule that is allocated and
//!   has its boundary bit set starts a live allocation, which is how a free is validated.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use super::bitmap;
use super::{PCPU_MIN_ALLOC_SIZE, PCPU_MIN_UNIT_SIZE};
use crate::addr::PAGE_SIZE;
use crate::machine::NR_CPUS;

/// Granules per unit: bits in an allocation map.
pub(super) const MAP_BITS: usize = PCPU_MIN_UNIT_SIZE / PCPU_MIN_ALLOC_SIZE;
const MAP_WORDS: usize = MAP_BITS / 64;
/// Order of the page block holding a dynamic chunk's header.
pub(super) const HEADER_ORDER: crate::addr::Order = crate::addr::Order::of(1);

const _: () = assert!(core::mem::size_of::<Chunk>() <= PAGE_SIZE << HEADER_ORDER.as_u32());

/// What a chunk serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ChunkKind {
    /// The first chunk's reserved region (per-CPU variables). Never on the list.
    Reserved,
    /// The first chunk's dynamic region. On the list; never freed.
    First,
    /// A chunk made of page-allocator pages. On the list; freed when empty.
    Dynamic,
}

/// A chunk header.
#[repr(C)]
pub(crate) struct Chunk {
    /// Direct-map address of each CPU's unit (entries `>= nr_cpus` are 0). Immutable.
    units: [usize; NR_CPUS],
    /// What the chunk serves. Immutable.
    pub(super) kind: ChunkKind,
    /// The granules this chunk allocates from: `[start, end)`. Immutable.
    pub(super) start: u32,
    /// See `start`.
    pub(super) end: u32,
    /// Guarded by the percpu lock.
    state: UnsafeCell<ChunkState>,
}

/// The mutable part of a chunk (guarded by the percpu lock).
pub(super) struct ChunkState {
    /// Previous chunk on the list (fuller or as full).
    pub(super) prev: Option<ChunkPtr>,
    /// Next chunk on the list (emptier or as empty).
    pub(super) next: Option<ChunkPtr>,
    /// Clear granules in `[start, end)`.
    pub(super) free_bits: u32,
    /// Live allocations.
    pub(super) nr_alloc: u32,
    alloc_map: [u64; MAP_WORDS],
    /// One bit more than the allocation map: an area may end at `MAP_BITS`.
    bound_map: [u64; MAP_WORDS + 1],
    /// From this granule on, every unit still holds the zeroes it was born with: nothing was
    /// ever allocated there. An allocation needs zeroing only below it (so a first chunk
    /// carved from fresh RAM is never written for CPUs that never use it).
    clean_from: u32,
}

impl ChunkState {
    /// `clean`: the units are zero from `start` on (fresh RAM).
    fn new(start: usize, end: usize, clean: bool) -> Self {
        Self {
            clean_from: if clean { start } else { MAP_BITS } as u32,
            prev: None,
            next: None,
            free_bits: (end - start) as u32,
            nr_alloc: 0,
            alloc_map: [0; MAP_WORDS],
            bound_map: [0; MAP_WORDS + 1],
        }
    }

    /// First fit of `bits` granules aligned to `align` granules inside `[start, end)`; marks
    /// the area allocated and returns its first granule (`pcpu_alloc_area`).
    pub(super) fn alloc_area(&mut self, start: usize, end: usize, bits: usize, align: usize) -> Option<usize> {
        if (self.free_bits as usize) < bits {
            return None;
        }
        let off = bitmap::find_clear_area(&self.alloc_map, start, end, bits, align)?;
        bitmap::set_range(&mut self.alloc_map, off, bits);
        bitmap::set(&mut self.bound_map, off);
        bitmap::clear_range(&mut self.bound_map, off + 1, bits - 1);
        bitmap::set(&mut self.bound_map, off + bits);
        self.free_bits -= bits as u32;
        self.nr_alloc += 1;
        Some(off)
    }

    /// For an area of `bits` granules just allocated at `off`: how many of its first granules
    /// may hold old bytes and must be zeroed; the rest is still as born (zero).
    pub(super) fn take_dirty(&mut self, off: usize, bits: usize) -> usize {
        let clean = self.clean_from as usize;
        self.clean_from = clean.max(off + bits) as u32;
        clean.saturating_sub(off).min(bits)
    }

    /// Frees the allocation starting at granule `off` and returns its size in granules; `None`
    /// (and no change) if no live allocation starts there (`pcpu_free_area`, checked).
    pub(super) fn free_area(&mut self, start: usize, end: usize, off: usize) -> Option<usize> {
        if off < start || off >= end || !bitmap::test(&self.alloc_map, off) || !bitmap::test(&self.bound_map, off) {
            return None;
        }
        let bits = bitmap::next_set(&self.bound_map, off + 1, MAP_BITS + 1) - off;
        bitmap::clear_range(&mut self.alloc_map, off, bits);
        self.free_bits += bits as u32;
        self.nr_alloc -= 1;
        Some(bits)
    }

    /// Whether the chunk has no live allocation.
    pub(super) fn is_empty(&self) -> bool {
        self.nr_alloc == 0
    }

    /// Checks the map invariants (module docs); returns the allocated granules.
    pub(super) fn check(&self, start: usize, end: usize) -> usize {
        let mut used = 0;
        let mut starts = 0;
        for bit in 0..MAP_BITS {
            if bitmap::test(&self.alloc_map, bit) {
                assert!((start..end).contains(&bit), "percpu: granule {bit} allocated outside [{start}, {end})");
                used += 1;
                starts += usize::from(bitmap::test(&self.bound_map, bit));
            }
        }
        assert_eq!(used + self.free_bits as usize, end - start, "percpu: free_bits disagrees with the map");
        assert_eq!(starts, self.nr_alloc as usize, "percpu: nr_alloc disagrees with the boundary map");
        used
    }
}

impl Chunk {
    /// Writes a chunk header with an empty map at `at`.
    ///
    /// # Safety
    ///
    /// `at` must be valid for writes of a `Chunk`, aligned, and used by nothing else for as
    /// long as the chunk lives; `units[..nr_cpus]` must be the direct-map addresses of
    /// page-aligned, [`PCPU_MIN_UNIT_SIZE`]-byte ranges of RAM owned by this chunk; with
    /// `clean`, every byte of them from granule `start` on must be zero.
    pub(super) unsafe fn init(
        at: *mut Chunk,
        units: &[usize; NR_CPUS],
        kind: ChunkKind,
        start: usize,
        end: usize,
        clean: bool,
    ) -> ChunkPtr {
        debug_assert!(start < end && end <= MAP_BITS);
        let state = UnsafeCell::new(ChunkState::new(start, end, clean));
        // SAFETY: the caller gives us `at` for a whole Chunk, aligned and exclusively ours.
        unsafe { at.write(Chunk { units: *units, kind, start: start as u32, end: end as u32, state }) };
        ChunkPtr(NonNull::new(at).expect("chunk headers live at non-null addresses"))
    }

    /// Direct-map address of `cpu`'s unit.
    #[inline]
    pub(super) fn unit(&self, cpu: usize) -> usize {
        debug_assert!(cpu < NR_CPUS);
        // SAFETY: callers pass a CPU of the machine (`per_cpu_ptr`'s contract), and a
        // machine has at most NR_CPUS CPUs (checked at boot): in bounds.
        unsafe { *self.units.get_unchecked(cpu) }
    }

    /// The unit addresses.
    pub(super) fn units(&self) -> &[usize; NR_CPUS] {
        &self.units
    }

    /// The mutable state. Only the holder of the percpu lock may dereference it.
    pub(super) fn state_cell(&self) -> *mut ChunkState {
        self.state.get()
    }
}

/// A pointer to a live chunk header.
///
/// # Invariants
///
/// The header was written by [`Chunk::init`] and stays initialised and in place until
/// [`super::state::PercpuState`] destroys the chunk, which it does only after unlinking it
/// from the list, with no live allocation, so no other `ChunkPtr` to it is in use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ChunkPtr(NonNull<Chunk>);

impl ChunkPtr {
    /// The header.
    #[inline]
    pub(super) fn chunk<'a>(self) -> &'a Chunk {
        // SAFETY: by the type invariant the header is initialised and outlives every use of
        // this pointer; it is only shared (mutation goes through the UnsafeCell under the lock).
        unsafe { self.0.as_ref() }
    }

    /// The header's address.
    #[inline]
    pub(super) fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_first_fit_aligned_and_freed_by_their_start() {
        let mut s = ChunkState::new(16, MAP_BITS, false);
        assert_eq!(s.alloc_area(16, MAP_BITS, 3, 1), Some(16));
        assert_eq!(s.alloc_area(16, MAP_BITS, 2, 4), Some(20), "19 is not 4-aligned");
        assert_eq!(s.alloc_area(16, MAP_BITS, 1, 1), Some(19), "first fit fills the gap");
        assert_eq!(s.check(16, MAP_BITS), 6);
        assert_eq!(s.nr_alloc, 3);
        // Not a start, not allocated, outside the region: refused, nothing changes.
        assert_eq!(s.free_area(16, MAP_BITS, 17), None);
        assert_eq!(s.free_area(16, MAP_BITS, 30), None);
        assert_eq!(s.free_area(16, MAP_BITS, 0), None);
        assert_eq!(s.free_area(16, MAP_BITS, 16), Some(3));
        assert_eq!(s.free_area(16, MAP_BITS, 16), None, "double free");
        assert_eq!(s.check(16, MAP_BITS), 3);
        // The freed hole is reused by something that fits, and its boundaries follow.
        assert_eq!(s.alloc_area(16, MAP_BITS, 2, 2), Some(16));
        assert_eq!(s.free_area(16, MAP_BITS, 20), Some(2));
        assert_eq!(s.free_area(16, MAP_BITS, 16), Some(2));
        assert_eq!(s.free_area(16, MAP_BITS, 19), Some(1));
        assert!(s.is_empty());
        assert_eq!(s.check(16, MAP_BITS), 0);
    }

    #[test]
    fn a_full_region_and_the_last_granule() {
        let mut s = ChunkState::new(0, 8, false);
        assert_eq!(s.alloc_area(0, 8, 9, 1), None);
        assert_eq!(s.alloc_area(0, 8, 8, 8), Some(0));
        assert_eq!(s.alloc_area(0, 8, 1, 1), None);
        assert_eq!(s.free_area(0, 8, 0), Some(8));
        let mut t = ChunkState::new(0, MAP_BITS, false);
        assert_eq!(t.alloc_area(0, MAP_BITS, MAP_BITS, 1024), Some(0), "a whole unit");
        assert_eq!(t.free_area(0, MAP_BITS, 0), Some(MAP_BITS), "ends on the extra boundary bit");
        assert_eq!(t.alloc_area(0, MAP_BITS, 1, 1), Some(0));
        assert_eq!(t.alloc_area(0, MAP_BITS, MAP_BITS - 1, 1), Some(1));
        assert_eq!(t.free_area(0, MAP_BITS, 1), Some(MAP_BITS - 1));
        assert_eq!(t.free_area(0, MAP_BITS, 0), Some(1));
    }
}
