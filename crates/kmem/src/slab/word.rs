//! A slab's freelist-and-counters word, and the free-pointer encoding.
//!
//! Objects are named by their **offset**: bytes from the slab's object 0 (the slab address
//! plus its colour and left red zone). An offset fits 32 bits (a slab is at most 4 MiB), so
//! a slab's freelist head and its counters share one 64-bit word in the head page, changed
//! under the node's `list_lock`.

/// "No object": the end of a freelist, an empty freelist.
pub(crate) const OFF_NONE: u32 = u32::MAX;
/// The free pointer of an object held in a sheaf (not on any slab freelist).
pub(crate) const OFF_SHEAF: u32 = u32::MAX - 1;

/// A slab's freelist and counters (`slab->freelist` + `slab->counters`), in the head
/// page's owner word: `freelist | inuse << 32 | objects << 48`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SlabWord {
    /// Offset of the first free object, or [`OFF_NONE`].
    pub freelist: u32,
    /// Objects not on the slab's own freelist (allocated, or held in sheaves).
    pub inuse: u32,
    /// Objects in the slab.
    pub objects: u32,
}

impl SlabWord {
    #[inline]
    pub(crate) const fn pack(self) -> u64 {
        self.freelist as u64 | (self.inuse as u64) << 32 | ((self.objects & 0x7fff) as u64) << 48
    }
    #[inline]
    pub(crate) const fn unpack(v: u64) -> Self {
        SlabWord { freelist: v as u32, inuse: ((v >> 32) & 0xffff) as u32, objects: ((v >> 48) & 0x7fff) as u32 }
    }
}

/// The per-slot key of `CONFIG_SLAB_FREELIST_HARDENED`. A free pointer is stored as
/// `next_offset ^ key(slot address)`, so a leaked or overwritten word does not reveal or
/// redirect the freelist.
///
/// The low half is Linux's `s->random ^ swab(ptr_addr)`, folded to 32 bits so that every bit
/// of the address counts: `key_lo` (the cache's secret, [`key_lo`] of `s->random`) xor the
/// folded slot address. The high half is the cache's tag (`marker`'s high half: `random`'s,
/// never zero: the cache sets bit 56). So every free object's word, on a freelist or in a
/// sheaf ([`sheaf_marker`]), has the tag in its high half, and the free fast path tells a free
/// object from a live one with one compare, without computing the key (free.rs).
#[inline]
pub(crate) const fn freeptr_key(marker: u64, key_lo: u32, slot: usize) -> u64 {
    let a = (slot as u64).swap_bytes();
    (marker & TAG_MASK) | (key_lo ^ a as u32 ^ (a >> 32) as u32) as u64
}

/// The secret half of the free-pointer key of a cache with `s->random` = `random`: its two
/// halves folded (what `random ^ swab(slot)` folded to 32 bits keeps of `random`).
#[inline]
pub(crate) const fn key_lo(random: u64) -> u32 {
    random as u32 ^ (random >> 32) as u32
}

/// The high half of a free-pointer word: the cache's tag.
pub(crate) const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// The free-pointer word of an object held in a sheaf: the tag and [`OFF_SHEAF`], the same
/// for every object of the cache (a mark, not a pointer: nothing follows it). Caches keep it
/// (`KmemCache::marker`), so the free path loads it instead of building it.
#[inline]
pub(crate) const fn sheaf_marker(random: u64) -> u64 {
    (random & TAG_MASK) | OFF_SHEAF as u64
}

/// Whether free-pointer word `w` carries the tag of a cache whose marker (or `random`) is
/// `tag`: the word of a free object, or (once in 2^32) a live object's data.
#[inline(always)]
pub(crate) const fn tagged(w: u64, tag: u64) -> bool {
    (w ^ tag) & TAG_MASK == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let w = SlabWord { freelist: 0x12_3456, inuse: 511, objects: 32767 };
        assert_eq!(SlabWord::unpack(w.pack()), w);
        let w = SlabWord { freelist: OFF_NONE, inuse: 0, objects: 1 };
        assert_eq!(SlabWord::unpack(w.pack()), w);
    }

    #[test]
    fn freeptr_encoding_depends_on_the_slot() {
        let (r, a, b) = (0x9e37_79b9_7f4a_7c15, 0xffff_8880_0000_1000usize, 0xffff_8880_0000_1040usize);
        let (m, k) = (sheaf_marker(r), key_lo(r));
        let enc = 64u64 ^ freeptr_key(m, k, a);
        assert_eq!(enc ^ freeptr_key(m, k, a), 64);
        assert_ne!(enc ^ freeptr_key(m, k, b), 64, "the same bits decode to garbage at another slot");
        assert!(tagged(enc, m) && tagged(m, r), "free words carry the tag");
        assert!(!tagged(0, r | 1 << 56), "a cleared (live) word never does");
    }

    #[test]
    fn the_key_depends_on_every_address_byte() {
        let r = 0x9e37_79b9_7f4a_7c15;
        let a = 0x0000_7f00_1234_5000usize;
        for byte in 0..8 {
            let b = a ^ (0x80 << (8 * byte));
            let (m, k) = (sheaf_marker(r), key_lo(r));
            assert_ne!(freeptr_key(m, k, a), freeptr_key(m, k, b), "byte {byte} of the slot address");
        }
    }

    #[test]
    fn the_split_key_is_the_folded_linux_key() {
        // `s->random ^ swab(slot)` folded to 32 bits under the tag: what the key was before
        // the cache kept its marker and secret half apart (encoded words did not change).
        let folded = |r: u64, slot: usize| {
            let k = r ^ (slot as u64).swap_bytes();
            (r & TAG_MASK) | ((k ^ (k >> 32)) & !TAG_MASK)
        };
        for (r, slot) in
            [(0x9e37_79b9_7f4a_7c15u64, 0xffff_8880_0000_1040usize), (1 << 56, 8), (u64::MAX, 0x7f00_dead_bee8)]
        {
            assert_eq!(freeptr_key(sheaf_marker(r), key_lo(r), slot), folded(r, slot));
        }
    }
}
