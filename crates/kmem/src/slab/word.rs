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

/// The per-slot key of `CONFIG_SLAB_FREELIST_HARDENED`: `s->random ^ swab(ptr_addr)`. A free
/// pointer is stored as `next_offset ^ key(slot address)`, so a leaked or overwritten word
/// does not reveal or redirect the freelist.
#[inline]
pub(crate) const fn freeptr_key(random: u64, slot: usize) -> u64 {
    random ^ (slot as u64).swap_bytes()
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
        let enc = 64u64 ^ freeptr_key(r, a);
        assert_eq!(enc ^ freeptr_key(r, a), 64);
        assert_ne!(enc ^ freeptr_key(r, b), 64, "the same bits decode to garbage at another slot");
    }
}
