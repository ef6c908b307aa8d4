//! A machine's free map: the words of the machine that the free fast paths read before they
//! reach the object (the direct map's base, the dense memmap's limit and base, the slab id
//! table, the kmalloc caches' table), copied where a caller reaches them sooner than through
//! the machine.
//!
//! Through the machine, a process allocator's `free` loads the machine's address (a static
//! of a shared object: its GOT slot first), then the machine's state, and only then these
//! words: three dependent loads on the chain every free waits on before its object's
//! descriptor can be read. `kmem_hosted::ProcessCpu` keeps a copy in the thread's context,
//! whose other words the fast path reads anyway (`%fs`-relative): the words load at once,
//! with no chain before them. The words never change once the machine has booted (the dense
//! limit and base are set before the machine is shared, `Memmap::mark_dense`; the id table
//! is installed by the first `kmem_cache_create`, during boot, and never freed; the kmalloc
//! table is part of the machine's state), so a copy taken after boot stays true for the
//! machine's life. The fast paths that take a map ([`Kmem::kfree_mapped_or_then_with`],
//! [`Kmem::kfree_sized_mapped_or_then_with`]) do what their machine-reading twins do, and
//! read nothing of the machine unless they leave the fast path.
//!
//! A map is made only for a machine whose caches keep their free pointers at the object's
//! start ([`SlabBootConfig::freeptr_at_start`](super::SlabBootConfig::freeptr_at_start), as
//! process allocators boot theirs): the double-free test then loads the object's first word,
//! whose address waits for no cache's or record's offset. (Such a machine gives a cache whose
//! pointer lies after the object an empty fast record: `FastCheck::set`. The kmalloc caches
//! that the sized path finds never have one.) Any other machine's map is [`FreeMap::EMPTY`].

use core::sync::atomic::Ordering;

use super::free_tag::{mark_sheaf_object_sole, AtStart};
use super::registry::{IdTable, SlabState};
use super::slab_page::SlabPa;
use crate::kmalloc::{kmalloc_index, KmallocState, KMALLOC_MAX_CACHE_SIZE};
use crate::machine::Kmem;
use crate::mm::memmap::Memmap;
use crate::platform::{FastPin, Platform};
use crate::slab::fast_table::FastTable;

/// A booted machine's free map ([`Kmem::free_map`]; module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeMap {
    /// The direct map's base (virtual address of physical address 0).
    base: usize,
    /// Bytes below which the memmap's descriptor slots are `dense_base + pfn * 32` (0: none,
    /// so that no address is found).
    dense_limit: usize,
    dense_base: usize,
    /// The slab id table's address (read only when `dense_limit` found a descriptor).
    ids: usize,
    /// The normal kmalloc caches' slots (`KmallocState::caches[Normal]`).
    kmalloc: usize,
}

impl FreeMap {
    /// The map that finds nothing: every free given it takes the caller's `other` way. What
    /// a copy holds before it is filled.
    pub const EMPTY: FreeMap = FreeMap { base: 0, dense_limit: 0, dense_base: 0, ids: 0, kmalloc: 0 };

    /// Whether the map finds the slab objects of its machine's RAM below `bytes` (physical
    /// address): its memmap is dense up to there.
    pub fn covers(&self, bytes: u64) -> bool {
        bytes <= self.dense_limit as u64
    }
}

impl<P: Platform> Kmem<P> {
    /// The machine's [`FreeMap`], for a caller that keeps a copy where its free fast path
    /// reaches it sooner than the machine. [`FreeMap::EMPTY`] on a machine whose memmap boot
    /// did not mark dense (sparse memory models), or whose caches keep their free pointers
    /// elsewhere than at the object's start (module documentation). Installs the slab id table if no cache
    /// exists yet, as the first `kmem_cache_create` does (a page of `GFP_KERNEL`: it may
    /// sleep; [`FreeMap::EMPTY`] if there is no page for it).
    ///
    /// ```
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).slab_freeptr_at_start(true).build().unwrap();
    /// let map = m.free_map();
    /// assert!(map.covers(64 << 20));
    /// let k: &kmem::Kmem<_> = &m;
    /// let p = m.kmalloc(64, kmem::Gfp::KERNEL).unwrap();
    /// let mut other = 0;
    /// // SAFETY: a live kmalloc block, freed once; the map is this machine's. No fast pin:
    /// // the careful path frees it.
    /// unsafe { kmem::Kmem::kfree_mapped_or_then_with(|| k, &map, p.as_ptr(), || None, |p| { other += 1; m.kfree(p) }, || {}) };
    /// assert_eq!(other, 0, "found through the map");
    /// ```
    pub fn free_map(&self) -> FreeMap {
        let st = self.state();
        let dense_limit = st.memmap.dense_limit();
        if dense_limit == 0 || !st.slab.freeptr_at_start || self.ensure_id_table(crate::Gfp::KERNEL).is_err() {
            return FreeMap::EMPTY;
        }
        let ids = st.slab.ids.load(Ordering::Acquire);
        FreeMap {
            base: st.direct_map.base.as_usize(),
            dense_limit,
            dense_base: st.memmap.dense_base(),
            ids,
            kmalloc: st.kmalloc.normal_slots_addr(),
        }
    }

    /// [`Kmem::kfree_slab_or_then_with`] that finds the object's slab and its id's record
    /// through `map` rather than the machine, which `kmem` gives only when the free leaves
    /// the fast path: a caller whose machine is itself a load (a static's) then makes none
    /// on the fast path, and keeps no register for it. A block the map does not find as a
    /// plain slab's object (one above the map's dense limit, or with [`FreeMap::EMPTY`] any
    /// block) goes to `other`, which must then free it whatever it is
    /// (`Kmem::kfree_slab_or_then`, or `kfree`).
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`]; `map` is the [`Kmem::free_map`] of the machine `kmem` returns
    /// (always the same one), and `pin` pins one of its CPUs.
    #[inline(always)]
    pub unsafe fn kfree_mapped_or_then_with<'a>(
        kmem: impl Fn() -> &'a Self + Copy,
        map: &FreeMap,
        p: *const u8,
        pin: impl FnOnce() -> Option<FastPin>,
        other: impl FnOnce(*const u8),
        slow: impl FnOnce(),
    ) where
        P: 'a,
    {
        let (addr, pa) = Self::mapped_at(kmem, map, p);
        // NULL and ZERO_SIZE_PTR fail here or at the word, as in `plain_slab_of`.
        if pa < map.dense_limit {
            // SAFETY: below the dense limit of the machine's memmap (caller's contract), which
            // lives as long as the machine.
            let page = unsafe { Memmap::dense_slot_at(map.dense_base, pa) };
            if let Some(id) = SlabState::fast_id_of_plain_word(page.slab_word_any()) {
                // SAFETY: a plain slab's word: the machine's table is installed (a map with a
                // dense limit has its address), and lives as long as the machine.
                let chk = unsafe { IdTable::at(map.ids) }.checks.at(id);
                let off = chk.slab_off(pa);
                if chk.is_plain_object(off) {
                    let slab = SlabPa { pa, _memmap: core::marker::PhantomData };
                    let pin = || pin().map(|f| (f.pinned, f.area));
                    // SAFETY: an id entry's word (`id` is below FAST_IDS).
                    let push = || unsafe { Self::free_fast_word(kmem, FastTable::id_word(id), addr, pin) };
                    // Every record of a mapped machine has its word at the start.
                    let pushed = mark_sheaf_object_sole(&AtStart(&chk), addr, P::sole_thread()).then(push);
                    if pushed != Some(Some(true)) {
                        Self::mapped_cold(kmem, id, slab, addr, off, pushed, slow);
                    }
                    return;
                }
            }
        }
        other(p)
    }

    /// [`Kmem::kfree_sized_or_then_with`] that finds the size's cache and the object's slab
    /// through `map`, as [`Kmem::kfree_mapped_or_then_with`] does; a block not found as an
    /// object of the size's cache goes to `other`, which must free it whatever it is.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree_mapped_or_then_with`].
    #[inline(always)]
    pub unsafe fn kfree_sized_mapped_or_then_with<'a>(
        kmem: impl Fn() -> &'a Self + Copy,
        map: &FreeMap,
        p: *const u8,
        size: usize,
        pin: impl FnOnce() -> Option<FastPin>,
        other: impl FnOnce(*const u8),
        slow: impl FnOnce(),
    ) where
        P: 'a,
    {
        let (addr, pa) = Self::mapped_at(kmem, map, p);
        // `pa` is tested, not the head's address, as in `plain_slab_off`; and first, so that
        // the empty map (no dense limit) reads no slot.
        if size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE && pa < map.dense_limit {
            let index = kmalloc_index(size);
            // SAFETY: a map with a dense limit has the machine's kmalloc slots, which live
            // as long as the machine; `index` is a class's.
            let slot = unsafe { KmallocState::normal_slot_at(map.kmalloc, index) };
            if let Some(c) = KmallocState::fast_cache_of(slot.load(Ordering::Acquire)) {
                let head_pa = pa & c.head_mask as isize as usize;
                // SAFETY: a slab is at least a page, so `head_mask` has the low PAGE_SHIFT
                // bits clear (telling the compiler lets it index the memmap with one shift).
                unsafe { core::hint::assert_unchecked(head_pa & (crate::PAGE_SIZE - 1) == 0) };
                // SAFETY: the head's address is at most `pa`, below the dense limit of the
                // machine's memmap (caller's contract).
                let head = unsafe { Memmap::dense_slot_at(map.dense_base, head_pa) };
                let off = pa - head_pa;
                if head.private() == c.plain_word && c.is_plain_object(off) {
                    debug_assert!(c.nr_nodes <= 1, "a fast free of a cache of several nodes");
                    let pin = || pin().map(|f| (f.pinned, f.area));
                    // SAFETY: a class entry's word (`index` is a class's).
                    let push = || unsafe { Self::free_fast_word(kmem, FastTable::class_word(index), addr, pin) };
                    // A kmalloc cache (no constructor, not RCU) of a mapped machine.
                    let pushed = mark_sheaf_object_sole(&AtStart(c), addr, P::sole_thread()).then(push);
                    if pushed != Some(Some(true)) {
                        let slab = SlabPa { pa, _memmap: core::marker::PhantomData };
                        Self::mapped_cold(kmem, c.id as usize, slab, addr, off, pushed, slow);
                    }
                    return;
                }
            }
        }
        other(p)
    }

    /// The mapped frees' start: `p`'s address and its offset from the direct map's base (its
    /// physical address if it is in the direct map), and in debug builds the test that `map`
    /// is `kmem`'s.
    #[inline(always)]
    fn mapped_at<'a>(kmem: impl Fn() -> &'a Self, map: &FreeMap, p: *const u8) -> (usize, usize)
    where
        P: 'a,
    {
        debug_assert!(*map == FreeMap::EMPTY || *map == kmem().free_map(), "another machine's free map");
        let addr = p as usize;
        (addr, addr.wrapping_sub(map.base))
    }

    /// The mapped frees' way off the fast path, where the machine is found: the object
    /// looked free (`pushed` `None`) or did not go onto the sheaf (`Kmem::free_id_cold`). Out
    /// of line, so that `kmem`'s load is made here, not hoisted onto the fast path.
    #[cold]
    #[inline(never)]
    fn mapped_cold<'a>(
        kmem: impl Fn() -> &'a Self,
        id: usize,
        slab: SlabPa<'a>,
        obj: usize,
        off: usize,
        pushed: Option<Option<bool>>,
        slow: impl FnOnce(),
    ) where
        P: 'a,
    {
        kmem().free_id_cold(id, slab, obj, off, pushed, slow)
    }
}
