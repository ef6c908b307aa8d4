//! What `kfree`'s fast path tests of a cache, kept beside the id table for the caches with
//! ids below [`FAST_IDS`](super::fast_table::FAST_IDS): the object test (slab offset mask,
//! the exact-division constants, the plain slab's object count) and the double-free test
//! (free-pointer offset, tag).
//!
//! `kfree` knows no cache: it finds the cache id in the object's page descriptor. With a
//! table of descriptor addresses, the id then gave the descriptor's address, whose fields
//! gave the tests' constants: two dependent loads after the page word, on the chain that
//! every free waits for before its object's word can be tested (a loop of 1000 `malloc` then
//! 1000 `free` spends most of its `free` samples on that chain). A record per id, at a fixed
//! place (the id table's block), makes it one: the id indexes the record's fields directly
//! (one array per field, [`FastChecks`]). The fast path no longer touches the descriptor at
//! all; its slow paths look the cache up by id.
//!
//! A record is a copy of fields a cache never changes after creation. It is written when the
//! cache is registered at its id (before the slot names it, with the registry's lock held)
//! and emptied (no objects, so no offset passes the object test) when the id is given back,
//! which happens only after the cache's last slab is gone: a page that names the id as its
//! plain slab's always finds the record of the cache that made the slab. Atomic fields,
//! relaxed: written once by the registry, read racily by fast frees, which reach the slab
//! (and so the cache's creation) through their own synchronisation with the allocation.
//! Plain `core` atomics even under loom: the records are not a protocol to model.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::cache::KmemCache;
use super::fast_table::FAST_IDS;
use super::layout::exact_slot;

/// The fast ids' records (see the module documentation), one array per field, each indexed
/// by the id: a field's load is one instruction with the id as a scaled index, where a
/// 32-byte record per id took the index's scaling and the record's address first (3
/// instructions a free). A record's fields lie in six lines instead of one; the fast ids'
/// records fill those six lines (1 KiB, as the records did).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct FastChecks {
    /// [`KmemCache::div_inv`].
    div_inv: [AtomicU64; FAST_IDS],
    /// [`KmemCache::marker`]: the tag of free objects, and the sheaf marker itself.
    marker: [AtomicU64; FAST_IDS],
    /// [`KmemCache::off_mask`].
    off_mask: [AtomicU32; FAST_IDS],
    /// The free pointer's offset in an object (`layout.offset`).
    fp: [AtomicU32; FAST_IDS],
    /// [`KmemCache::plain_objects`]; 0 for a free id (no offset passes the object test).
    objects: [AtomicU32; FAST_IDS],
    /// [`KmemCache::div_shift`].
    shift: [AtomicU32; FAST_IDS],
}

const _: () = assert!(core::mem::size_of::<FastChecks>() == 32 * FAST_IDS);

impl FastChecks {
    /// Id `id`'s record (`id` below [`FAST_IDS`]).
    #[inline(always)]
    pub(crate) fn at(&self, id: usize) -> FastCheck<'_> {
        debug_assert!(id < FAST_IDS);
        FastCheck { t: self, id }
    }

    /// Id `id`'s record, if `id` is a fast id.
    pub(crate) fn try_at(&self, id: usize) -> Option<FastCheck<'_>> {
        (id < FAST_IDS).then(|| self.at(id))
    }
}

/// One fast id's record: its fields in [`FastChecks`]' arrays.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastCheck<'a> {
    t: &'a FastChecks,
    id: usize,
}

impl FastCheck<'_> {
    /// Copies `c`'s constants (the registry's lock held, before the id's slot names `c`).
    /// On a machine whose caches keep their free pointers at the object's start
    /// (`at_start`: [`SlabBootConfig::freeptr_at_start`](super::SlabBootConfig::freeptr_at_start)),
    /// a cache whose free pointer lies elsewhere (after the object: a constructor, RCU) gets
    /// an empty record instead, its objects taking the careful free: so every record of such
    /// a machine has its word at 0, which the free map's paths rely on
    /// (`slab/free_map.rs`: their tag load waits for no record).
    pub(crate) fn set(&self, c: &KmemCache, at_start: bool) {
        if at_start && c.layout.offset != 0 {
            self.clear();
            return;
        }
        let (t, i) = (self.t, self.id);
        t.div_inv[i].store(c.div_inv, Ordering::Relaxed);
        t.marker[i].store(c.marker, Ordering::Relaxed);
        t.off_mask[i].store(c.off_mask, Ordering::Relaxed);
        t.fp[i].store(c.layout.offset, Ordering::Relaxed);
        t.shift[i].store(c.div_shift as u32, Ordering::Relaxed);
        t.objects[i].store(c.plain_objects as u32, Ordering::Relaxed);
    }

    /// Empties the record of an id given back: no object passes its test.
    pub(crate) fn clear(&self) {
        self.t.objects[self.id].store(0, Ordering::Relaxed);
    }

    /// The offset in its slab of an object at physical address `pa` of a plain slab of
    /// the cache (`pa` masked: plain slabs are aligned to their size).
    #[inline(always)]
    pub(crate) fn slab_off(&self, pa: usize) -> usize {
        pa & self.t.off_mask[self.id].load(Ordering::Relaxed) as usize
    }

    /// Whether `off` starts one of a plain slab's objects ([`KmemCache::is_plain_object`]).
    #[inline(always)]
    pub(crate) fn is_plain_object(&self, off: usize) -> bool {
        let (t, i) = (self.t, self.id);
        let (inv, shift) = (t.div_inv[i].load(Ordering::Relaxed), t.shift[i].load(Ordering::Relaxed));
        exact_slot(off as u64, inv, shift as u8) < t.objects[i].load(Ordering::Relaxed) as u64
    }
}

impl super::free_tag::FreeTag for FastCheck<'_> {
    #[inline(always)]
    fn fp_addr(&self, obj: usize) -> usize {
        obj + self.t.fp[self.id].load(Ordering::Relaxed) as usize
    }
    #[inline(always)]
    fn marker(&self) -> u64 {
        self.t.marker[self.id].load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::FastChecks;
    use crate::slab::free_tag::FreeTag;

    #[test]
    fn a_record_tests_as_its_cache_and_an_empty_one_admits_nothing() {
        let m = crate::testing::machine(16);
        let c = m.kmem_cache_create("fast-check-96", 96, 0, crate::slab::SlabFlags::NONE, None).unwrap();
        let t = FastChecks::default();
        let (r, other) = (t.at(5), t.at(6));
        assert!(!r.is_plain_object(0), "an empty record admits no object");
        r.set(&c, false);
        for off in [0usize, 96, 192, 95, 97, 4096] {
            assert_eq!(r.is_plain_object(off), c.is_plain_object(off), "offset {off}");
        }
        assert_eq!((r.fp_addr(1000), r.marker()), (c.fp_addr(1000), c.marker));
        assert_eq!(r.slab_off(0x12345), 0x12345 & c.off_mask as usize);
        assert!(!other.is_plain_object(0), "another id's record is untouched");
        r.clear();
        assert!(!r.is_plain_object(0) && !r.is_plain_object(96));
    }

    #[test]
    fn a_machine_with_free_pointers_at_the_start_records_only_caches_that_keep_them_there() {
        let m = crate::testing::machine(16);
        let mid = m.kmem_cache_create("fast-check-mid", 96, 0, crate::slab::SlabFlags::NONE, None).unwrap();
        let start = m.kmem_cache_create("fast-check-start", 8, 0, crate::slab::SlabFlags::NONE, None).unwrap();
        assert_eq!((mid.fp_addr(0), start.fp_addr(0)), (48, 0), "Linux's placement: the middle, 0 for 8 bytes");
        let t = FastChecks::default();
        let r = t.at(7);
        r.set(&mid, true);
        assert!(!r.is_plain_object(0), "a word past the start: no record, the careful free");
        r.set(&start, true);
        assert!(r.is_plain_object(0) && r.is_plain_object(8) && r.fp_addr(64) == 64);
        r.set(&mid, false);
        assert!(r.is_plain_object(96), "any placement on another machine");
    }
}
