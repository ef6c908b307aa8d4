//! Internal allocation flags (`ALLOC_*` of mm/internal.h) and `gfp_to_alloc_flags()`.

#![forbid(unsafe_code)]

use core::ops::{BitOr, BitOrAssign};

use crate::gfp::Gfp;

/// `ALLOC_*` flags with Linux's values. The low two bits select the watermark.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct AllocFlags(u32);

impl AllocFlags {
    /// Check against the min watermark.
    pub const WMARK_MIN: AllocFlags = AllocFlags(0);
    /// Check against the low watermark.
    pub const WMARK_LOW: AllocFlags = AllocFlags(1);
    /// Check against the high watermark.
    pub const WMARK_HIGH: AllocFlags = AllocFlags(2);
    /// Mask of the watermark index.
    pub const WMARK_MASK: AllocFlags = AllocFlags(3);
    /// Ignore watermarks entirely (`__GFP_MEMALLOC`).
    pub const NO_WATERMARKS: AllocFlags = AllocFlags(0x04);
    /// OOM victim: may dip further into reserves.
    pub const OOM: AllocFlags = AllocFlags(0x08);
    /// Caller cannot sleep (`!__GFP_DIRECT_RECLAIM`).
    pub const NON_BLOCK: AllocFlags = AllocFlags(0x10);
    /// May use half of the min reserve (`__GFP_HIGH`).
    pub const MIN_RESERVE: AllocFlags = AllocFlags(0x20);
    /// Respect cpusets.
    pub const CPUSET: AllocFlags = AllocFlags(0x40);
    /// May use CMA.
    pub const CMA: AllocFlags = AllocFlags(0x80);
    /// Avoid fragmenting fallbacks.
    pub const NOFRAGMENT: AllocFlags = AllocFlags(0x100);
    /// May use the high-order atomic reserve.
    pub const HIGHATOMIC: AllocFlags = AllocFlags(0x200);
    /// Wake kswapd (`__GFP_KSWAPD_RECLAIM`).
    pub const KSWAPD: AllocFlags = AllocFlags(0x800);
    /// Any of the reserve-granting flags.
    pub const RESERVES: AllocFlags = AllocFlags(0x10 | 0x20 | 0x200 | 0x08);

    /// No flags (= `ALLOC_WMARK_MIN`).
    pub const fn empty() -> Self {
        Self(0)
    }
    /// Raw value.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// All of `o` set.
    pub const fn contains(self, o: AllocFlags) -> bool {
        self.0 & o.0 == o.0
    }
    /// Any of `o` set.
    pub const fn intersects(self, o: AllocFlags) -> bool {
        self.0 & o.0 != 0
    }
    /// With `o` too (`|` in const contexts).
    pub const fn union(self, o: AllocFlags) -> Self {
        Self(self.0 | o.0)
    }
    /// Without `o`.
    pub const fn without(self, o: AllocFlags) -> Self {
        Self(self.0 & !o.0)
    }
    /// The watermark index (`alloc_flags & ALLOC_WMARK_MASK`).
    pub const fn wmark_index(self) -> usize {
        (self.0 & 3) as usize
    }
}

impl BitOr for AllocFlags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

impl BitOrAssign for AllocFlags {
    fn bitor_assign(&mut self, o: Self) {
        self.0 |= o.0;
    }
}

// ALLOC_MIN_RESERVE and ALLOC_KSWAPD are bit-identical to the GFP bits, as Linux asserts.
const _: () = assert!(AllocFlags::MIN_RESERVE.0 == Gfp::HIGH.bits());
const _: () = assert!(AllocFlags::KSWAPD.0 == Gfp::KSWAPD_RECLAIM.bits());

/// `gfp_to_alloc_flags()` for the slow path (kmem has no realtime tasks and no CMA).
pub fn gfp_to_alloc_flags(gfp: Gfp, order: u32) -> AllocFlags {
    let mut f = AllocFlags::WMARK_MIN | AllocFlags::CPUSET;
    f |= AllocFlags(gfp.bits() & (Gfp::HIGH.bits() | Gfp::KSWAPD_RECLAIM.bits()));
    if !gfp.contains(Gfp::DIRECT_RECLAIM) {
        if !gfp.contains(Gfp::NOMEMALLOC) {
            f |= AllocFlags::NON_BLOCK;
            // Only high-priority (`__GFP_HIGH`: GFP_ATOMIC) high-order requests may use and
            // grow the highatomic reserve; GFP_NOWAIT may not (as in 6.18).
            if order > 0 && f.contains(AllocFlags::MIN_RESERVE) {
                f |= AllocFlags::HIGHATOMIC;
            }
        }
        if f.contains(AllocFlags::MIN_RESERVE) {
            f = f.without(AllocFlags::CPUSET);
        }
    }
    f
}

/// `__gfp_pfmemalloc_flags()`, without task flags: `__GFP_MEMALLOC` may ignore watermarks
/// unless `__GFP_NOMEMALLOC` forbids it.
pub fn gfp_pfmemalloc_flags(gfp: Gfp) -> AllocFlags {
    if gfp.contains(Gfp::NOMEMALLOC) || !gfp.contains(Gfp::MEMALLOC) {
        AllocFlags::empty()
    } else {
        AllocFlags::NO_WATERMARKS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfp_to_alloc_flags_cases() {
        let k = gfp_to_alloc_flags(Gfp::KERNEL, 0);
        assert_eq!(k, AllocFlags::CPUSET | AllocFlags::KSWAPD);
        let a = gfp_to_alloc_flags(Gfp::ATOMIC, 0);
        assert_eq!(a, AllocFlags::MIN_RESERVE | AllocFlags::KSWAPD | AllocFlags::NON_BLOCK);
        let a3 = gfp_to_alloc_flags(Gfp::ATOMIC, 3);
        assert!(a3.contains(AllocFlags::HIGHATOMIC));
        let n = gfp_to_alloc_flags(Gfp::NOWAIT, 0);
        assert_eq!(n, AllocFlags::CPUSET | AllocFlags::KSWAPD | AllocFlags::NON_BLOCK);
        let n3 = gfp_to_alloc_flags(Gfp::NOWAIT, 3);
        assert_eq!(n3, n, "GFP_NOWAIT never gets ALLOC_HIGHATOMIC");
        assert!(!gfp_to_alloc_flags(Gfp::ATOMIC | Gfp::NOMEMALLOC, 3).contains(AllocFlags::HIGHATOMIC));
        let nm = gfp_to_alloc_flags(Gfp::NOWAIT | Gfp::NOMEMALLOC, 0);
        assert!(!nm.contains(AllocFlags::NON_BLOCK));
        assert_eq!(gfp_pfmemalloc_flags(Gfp::KERNEL | Gfp::MEMALLOC), AllocFlags::NO_WATERMARKS);
        assert_eq!(gfp_pfmemalloc_flags(Gfp::KERNEL | Gfp::MEMALLOC | Gfp::NOMEMALLOC), AllocFlags::empty());
    }
}
