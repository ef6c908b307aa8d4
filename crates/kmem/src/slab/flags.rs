//! `slab_flags_t`: the flags of `kmem_cache_create`.
//!
//! Linux 6.x derives the bit values from an enum whose members depend on the kernel
//! configuration; kmem uses the fixed values those flags had before that change (5.x
//! `include/linux/slab.h`), which are what most tools and older dumps show.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

/// Flags of a slab cache (`slab_flags_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SlabFlags(u32);

impl SlabFlags {
    /// No flags (the same as [`SlabFlags::empty`], Linux's `0`).
    pub const NONE: SlabFlags = SlabFlags(0);
    /// No flags: the idiom [`crate::Gfp::empty`] and `bitflags` types share.
    pub const fn empty() -> SlabFlags {
        SlabFlags(0)
    }
    /// `SLAB_CONSISTENCY_CHECKS` (`slub_debug=F`): full checks on every alloc and free.
    pub const CONSISTENCY_CHECKS: SlabFlags = SlabFlags(0x0000_0100);
    /// `SLAB_RED_ZONE` (`Z`): guard bytes around each object, checked on free and validate.
    pub const RED_ZONE: SlabFlags = SlabFlags(0x0000_0400);
    /// `SLAB_POISON` (`P`): fill free objects with 0x6b…0xa5 and check on alloc.
    pub const POISON: SlabFlags = SlabFlags(0x0000_0800);
    /// `SLAB_KMALLOC`: a kmalloc cache (records the requested size with `STORE_USER`).
    pub const KMALLOC: SlabFlags = SlabFlags(0x0000_1000);
    /// `SLAB_HWCACHE_ALIGN`: align objects to cache lines (halved while the object fits twice).
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(0x0000_2000);
    /// `SLAB_CACHE_DMA`: slab pages from `ZONE_DMA`.
    pub const CACHE_DMA: SlabFlags = SlabFlags(0x0000_4000);
    /// `SLAB_CACHE_DMA32`: slab pages from `ZONE_DMA32`.
    pub const CACHE_DMA32: SlabFlags = SlabFlags(0x0000_8000);
    /// `SLAB_STORE_USER` (`U`): record the last allocating and freeing call site, CPU, pid, time.
    pub const STORE_USER: SlabFlags = SlabFlags(0x0001_0000);
    /// `SLAB_RECLAIM_ACCOUNT`: pages are `__GFP_RECLAIMABLE` and count as `SReclaimable`.
    pub const RECLAIM_ACCOUNT: SlabFlags = SlabFlags(0x0002_0000);
    /// `SLAB_PANIC`: a failed creation panics instead of returning an error.
    pub const PANIC: SlabFlags = SlabFlags(0x0004_0000);
    /// `SLAB_TYPESAFE_BY_RCU`: the cache's slabs go back to the page allocator only after an
    /// RCU grace period (`crate::rcu`), so an RCU reader holding a freed (even reallocated)
    /// object still reads memory of this cache's type. Never merged, never poisoned, the free
    /// pointer outside the object; exempt from `init_on_alloc`/`init_on_free`.
    pub const TYPESAFE_BY_RCU: SlabFlags = SlabFlags(0x0008_0000);
    /// `SLAB_TRACE` (`T`): report every alloc and free of the cache.
    pub const TRACE: SlabFlags = SlabFlags(0x0020_0000);
    /// `SLAB_NOLEAKTRACE`: accepted, no effect (no kmemleak).
    pub const NOLEAKTRACE: SlabFlags = SlabFlags(0x0080_0000);
    /// `SLAB_NO_MERGE`: never merge this cache with another.
    pub const NO_MERGE: SlabFlags = SlabFlags(0x0100_0000);
    /// `SLAB_FAILSLAB` (`A`): accepted, no effect yet (fault injection is a later layer).
    pub const FAILSLAB: SlabFlags = SlabFlags(0x0200_0000);
    /// `SLAB_ACCOUNT`: accepted, no effect (no memory cgroups).
    pub const ACCOUNT: SlabFlags = SlabFlags(0x0400_0000);
    /// `SLAB_NO_USER_FLAGS`: ignore the boot-time `slub_debug=` string for this cache.
    pub const NO_USER_FLAGS: SlabFlags = SlabFlags(0x1000_0000);
    /// kmem extension: cache colouring (SLAB's `colouroff`): successive slabs start their
    /// first object one cache line further in, cycling through the slab's leftover bytes.
    pub const COLOUR: SlabFlags = SlabFlags(0x4000_0000);
    /// `__OBJECT_POISON` (internal): objects are poisoned (`POISON` without a constructor).
    pub(crate) const OBJECT_POISON: SlabFlags = SlabFlags(0x8000_0000);

    /// The debug flags (`SLAB_DEBUG_FLAGS`): a cache with any of them takes the slow,
    /// checked paths for every object.
    pub const DEBUG_FLAGS: SlabFlags =
        SlabFlags(Self::RED_ZONE.0 | Self::POISON.0 | Self::STORE_USER.0 | Self::TRACE.0 | Self::CONSISTENCY_CHECKS.0);
    /// `SLAB_NEVER_MERGE`.
    pub const NEVER_MERGE: SlabFlags = SlabFlags(
        Self::RED_ZONE.0
            | Self::POISON.0
            | Self::STORE_USER.0
            | Self::TRACE.0
            | Self::TYPESAFE_BY_RCU.0
            | Self::NOLEAKTRACE.0
            | Self::FAILSLAB.0
            | Self::NO_MERGE.0
            | Self::CONSISTENCY_CHECKS.0
            | Self::COLOUR.0,
    );
    /// `SLAB_MERGE_SAME`: caches merge only if they agree on these.
    pub const MERGE_SAME: SlabFlags =
        SlabFlags(Self::RECLAIM_ACCOUNT.0 | Self::CACHE_DMA.0 | Self::CACHE_DMA32.0 | Self::ACCOUNT.0);
    /// Every flag `kmem_cache_create` accepts (`SLAB_FLAGS_PERMITTED`).
    pub const PERMITTED: SlabFlags = SlabFlags(
        Self::DEBUG_FLAGS.0
            | Self::KMALLOC.0
            | Self::HWCACHE_ALIGN.0
            | Self::CACHE_DMA.0
            | Self::CACHE_DMA32.0
            | Self::RECLAIM_ACCOUNT.0
            | Self::PANIC.0
            | Self::TYPESAFE_BY_RCU.0
            | Self::NOLEAKTRACE.0
            | Self::NO_MERGE.0
            | Self::FAILSLAB.0
            | Self::ACCOUNT.0
            | Self::NO_USER_FLAGS.0
            | Self::COLOUR.0,
    );

    /// Names for printing, in bit order.
    const NAMES: [(SlabFlags, &'static str); 20] = [
        (Self::CONSISTENCY_CHECKS, "SLAB_CONSISTENCY_CHECKS"),
        (Self::RED_ZONE, "SLAB_RED_ZONE"),
        (Self::POISON, "SLAB_POISON"),
        (Self::KMALLOC, "SLAB_KMALLOC"),
        (Self::HWCACHE_ALIGN, "SLAB_HWCACHE_ALIGN"),
        (Self::CACHE_DMA, "SLAB_CACHE_DMA"),
        (Self::CACHE_DMA32, "SLAB_CACHE_DMA32"),
        (Self::STORE_USER, "SLAB_STORE_USER"),
        (Self::RECLAIM_ACCOUNT, "SLAB_RECLAIM_ACCOUNT"),
        (Self::PANIC, "SLAB_PANIC"),
        (Self::TYPESAFE_BY_RCU, "SLAB_TYPESAFE_BY_RCU"),
        (Self::TRACE, "SLAB_TRACE"),
        (Self::NOLEAKTRACE, "SLAB_NOLEAKTRACE"),
        (Self::NO_MERGE, "SLAB_NO_MERGE"),
        (Self::FAILSLAB, "SLAB_FAILSLAB"),
        (Self::ACCOUNT, "SLAB_ACCOUNT"),
        (Self::NO_USER_FLAGS, "SLAB_NO_USER_FLAGS"),
        (Self::COLOUR, "SLAB_COLOUR"),
        (Self::OBJECT_POISON, "__OBJECT_POISON"),
        (Self::NONE, ""),
    ];

    /// From raw bits.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }
    /// Raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// All of `o` set.
    pub const fn contains(self, o: SlabFlags) -> bool {
        self.0 & o.0 == o.0
    }
    /// Any of `o` set.
    pub const fn intersects(self, o: SlabFlags) -> bool {
        self.0 & o.0 != 0
    }
    /// `self` with `o` cleared.
    pub const fn without(self, o: SlabFlags) -> Self {
        Self(self.0 & !o.0)
    }
    /// `self | o`.
    pub const fn union(self, o: SlabFlags) -> Self {
        Self(self.0 | o.0)
    }
    /// `self & o`.
    pub const fn intersection(self, o: SlabFlags) -> Self {
        Self(self.0 & o.0)
    }
    /// No flags set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for SlabFlags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        self.union(o)
    }
}

impl BitOrAssign for SlabFlags {
    fn bitor_assign(&mut self, o: Self) {
        *self = self.union(o);
    }
}

impl fmt::Debug for SlabFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}(", self.0)?;
        let mut first = true;
        for (flag, name) in Self::NAMES.iter().filter(|(fl, _)| !fl.is_empty()) {
            if self.contains(*flag) {
                if !first {
                    f.write_str("|")?;
                }
                first = false;
                f.write_str(name)?;
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::std::format;

    #[test]
    fn debug_flags_never_merge_and_print_by_name() {
        assert!(SlabFlags::NEVER_MERGE.contains(SlabFlags::DEBUG_FLAGS));
        assert!(!SlabFlags::NEVER_MERGE.intersects(SlabFlags::MERGE_SAME));
        assert!(!SlabFlags::PERMITTED.intersects(SlabFlags::OBJECT_POISON));
        assert!(SlabFlags::NEVER_MERGE.contains(SlabFlags::TYPESAFE_BY_RCU));
        let f = SlabFlags::RED_ZONE | SlabFlags::POISON;
        assert_eq!(format!("{f:?}"), "0xc00(SLAB_RED_ZONE|SLAB_POISON)");
    }
}
