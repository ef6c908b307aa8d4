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
//! place (the id table's block), makes it one: the id gives the record's address by
//! arithmetic. The fast path no longer touches the descriptor at all; its slow paths look the
//! cache up by id.
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
use super::layout::exact_slot;

/// One fast id's record (see the module documentation).
#[repr(C, align(32))]
#[derive(Debug, Default)]
pub(crate) struct FastCheck {
    /// [`KmemCache::div_inv`].
    div_inv: AtomicU64,
    /// [`KmemCache::marker`]: the tag of free objects, and the sheaf marker itself.
    marker: AtomicU64,
    /// [`KmemCache::off_mask`].
    off_mask: AtomicU32,
    /// The free pointer's offset in an object (`layout.offset`).
    fp: AtomicU32,
    /// [`KmemCache::plain_objects`]; 0 for a free id (no offset passes the object test).
    objects: AtomicU32,
    /// [`KmemCache::div_shift`].
    shift: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<FastCheck>() == 32);

impl FastCheck {
    /// Copies `c`'s constants (the registry's lock held, before the id's slot names `c`).
    pub(crate) fn set(&self, c: &KmemCache) {
        self.div_inv.store(c.div_inv, Ordering::Relaxed);
        self.marker.store(c.marker, Ordering::Relaxed);
        self.off_mask.store(c.off_mask, Ordering::Relaxed);
        self.fp.store(c.layout.offset, Ordering::Relaxed);
        self.shift.store(c.div_shift as u32, Ordering::Relaxed);
        self.objects.store(c.plain_objects as u32, Ordering::Relaxed);
    }

    /// Empties the record of an id given back: no object passes its test.
    pub(crate) fn clear(&self) {
        self.objects.store(0, Ordering::Relaxed);
    }

    /// The offset in its slab of an object at physical address `pa` of a plain slab of
    /// the cache (`pa` masked: plain slabs are aligned to their size).
    #[inline(always)]
    pub(crate) fn slab_off(&self, pa: usize) -> usize {
        pa & self.off_mask.load(Ordering::Relaxed) as usize
    }

    /// Whether `off` starts one of a plain slab's objects ([`KmemCache::is_plain_object`]).
    #[inline(always)]
    pub(crate) fn is_plain_object(&self, off: usize) -> bool {
        let (inv, shift) = (self.div_inv.load(Ordering::Relaxed), self.shift.load(Ordering::Relaxed));
        exact_slot(off as u64, inv, shift as u8) < self.objects.load(Ordering::Relaxed) as u64
    }
}

impl super::free::FreeTag for FastCheck {
    #[inline(always)]
    fn fp_addr(&self, obj: usize) -> usize {
        obj + self.fp.load(Ordering::Relaxed) as usize
    }
    #[inline(always)]
    fn marker(&self) -> u64 {
        self.marker.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::FastCheck;
    use crate::slab::free::FreeTag;

    #[test]
    fn a_record_tests_as_its_cache_and_an_empty_one_admits_nothing() {
        let m = crate::testing::machine(16);
        let c = m.kmem_cache_create("fast-check-96", 96, 0, crate::slab::SlabFlags::NONE, None).unwrap();
        let r = FastCheck::default();
        assert!(!r.is_plain_object(0), "an empty record admits no object");
        r.set(&c);
        for off in [0usize, 96, 192, 95, 97, 4096] {
            assert_eq!(r.is_plain_object(off), c.is_plain_object(off), "offset {off}");
        }
        assert_eq!((r.fp_addr(1000), r.marker()), (c.fp_addr(1000), c.marker));
        assert_eq!(r.slab_off(0x12345), 0x12345 & c.off_mask as usize);
        r.clear();
        assert!(!r.is_plain_object(0) && !r.is_plain_object(96));
    }
}
