//! Watermark arithmetic, exactly as `mm/page_alloc.c` computes and checks it. Pure functions:
//! the zone code feeds them numbers, tests feed them Linux's own figures.

#![forbid(unsafe_code)]

use crate::addr::{Order, PAGE_SHIFT};
use crate::mm::alloc_flags::AllocFlags;
use crate::mm::zone_type::{ZoneType, MAX_NR_ZONES};

/// `watermark_scale_factor` default (in 1/10000 of a zone).
pub const WATERMARK_SCALE_FACTOR: usize = 10;
/// `SWAP_CLUSTER_MAX`.
const SWAP_CLUSTER_MAX: usize = 32;

/// `int_sqrt()`: floor of the square root.
pub const fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Newton's method from an over-estimate converges monotonically down to the floor.
    let mut r = 1u64 << (64 - x.leading_zeros()).div_ceil(2);
    loop {
        let n = (r + x / r) / 2;
        if n >= r {
            return r;
        }
        r = n;
    }
}

/// `calculate_min_free_kbytes()`: `int_sqrt(lowmem_kbytes * 16)` clamped to [128, 262144].
pub const fn min_free_kbytes(lowmem_kbytes: u64) -> u64 {
    let v = int_sqrt(lowmem_kbytes * 16);
    if v < 128 {
        128
    } else if v > 262_144 {
        262_144
    } else {
        v
    }
}

/// Input of [`zone_watermarks`] for one zone.
#[derive(Clone, Copy, Debug)]
pub struct ZoneSize {
    /// The zone's type.
    pub ztype: ZoneType,
    /// Managed pages.
    pub managed: usize,
}

/// `__setup_per_zone_wmarks()` for one zone: `[min, low, high, promo]` in pages.
/// `lowmem_pages` is the sum of managed pages over all non-highmem zones of the machine.
pub fn zone_watermarks(min_free_kbytes: u64, lowmem_pages: usize, zone: ZoneSize) -> [usize; 4] {
    let pages_min = (min_free_kbytes >> (PAGE_SHIFT - 10)) as usize;
    let mut tmp =
        if lowmem_pages == 0 { 0 } else { (pages_min as u128 * zone.managed as u128 / lowmem_pages as u128) as usize };
    let min = if matches!(zone.ztype, ZoneType::HighMem | ZoneType::Movable) {
        // Highmem zones get a small, capped reserve: it only helps highmem-capable callers.
        (zone.managed / 1024).clamp(SWAP_CLUSTER_MAX, 128)
    } else {
        tmp
    };
    tmp = (tmp >> 2).max(zone.managed * WATERMARK_SCALE_FACTOR / 10000);
    let low = min + tmp;
    let high = low + tmp;
    [min, low, high, high + tmp]
}

/// `setup_per_zone_lowmem_reserve()` for one node: `managed[i]` per zone slot, result
/// `reserve[i][j]` = pages zone `i` keeps back from allocations whose highest zone is `j`.
pub fn lowmem_reserves(managed: [usize; MAX_NR_ZONES]) -> [[usize; MAX_NR_ZONES]; MAX_NR_ZONES] {
    let mut out = [[0; MAX_NR_ZONES]; MAX_NR_ZONES];
    for (i, zt) in ZoneType::ALL.iter().enumerate() {
        let ratio = zt.lowmem_reserve_ratio() as usize;
        let clear = ratio == 0 || managed[i] == 0;
        let mut upper = 0;
        for j in i + 1..MAX_NR_ZONES {
            upper += managed[j];
            out[i][j] = if clear { 0 } else { upper / ratio };
        }
    }
    out
}

/// `__zone_watermark_ok()`: may a request of `order` take pages from a zone with `free_pages`
/// free, against watermark `mark`? `free_highatomic` is the zone's free pages in the
/// highatomic reserve, unusable without a reserve-granting flag
/// (`__zone_watermark_unusable_free`). `has_block(o, highatomic)` says whether a free list of
/// order `o` is non-empty: an ordinary one, or with `highatomic` (the request has
/// `ALLOC_HIGHATOMIC` or `ALLOC_OOM`) also the `HighAtomic` one.
pub fn watermark_ok(
    free_pages: usize,
    order: Order,
    mark: usize,
    lowmem_reserve: usize,
    flags: AllocFlags,
    free_highatomic: usize,
    has_block: impl Fn(Order, bool) -> bool,
) -> bool {
    let mut free = free_pages as isize - (order.nr_pages() as isize - 1);
    let mut min = mark as isize;
    if !flags.intersects(AllocFlags::RESERVES) {
        free -= free_highatomic as isize;
    } else {
        if flags.contains(AllocFlags::MIN_RESERVE) {
            min -= min / 2;
            if flags.contains(AllocFlags::NON_BLOCK) {
                min -= min / 4;
            }
        }
        if flags.contains(AllocFlags::OOM) {
            min -= min / 2;
        }
    }
    if free <= min + lowmem_reserve as isize {
        return false;
    }
    if order == Order::ZERO {
        return true;
    }
    let highatomic = flags.intersects(AllocFlags::HIGHATOMIC.union(AllocFlags::OOM));
    Order::all().filter(|&o| o >= order).any(|o| has_block(o, highatomic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_sqrt_is_floor() {
        for x in [0u64, 1, 2, 3, 4, 15, 16, 17, 99, 100, 101, 1 << 40, u64::MAX / 16] {
            let r = int_sqrt(x);
            assert!(r * r <= x, "{x}");
            assert!((r + 1).checked_mul(r + 1).is_none_or(|s| s > x), "{x}");
        }
    }

    #[test]
    fn min_free_kbytes_matches_linux_table() {
        // The table in mm/page_alloc.c's comment above calculate_min_free_kbytes().
        assert_eq!(min_free_kbytes(16 << 10), 512);
        assert_eq!(min_free_kbytes(64 << 10), 1024);
        assert_eq!(min_free_kbytes(1 << 20), 4096);
        assert_eq!(min_free_kbytes(4 << 20), 8192);
        assert_eq!(min_free_kbytes(16 << 20), 16384);
        assert_eq!(min_free_kbytes(1), 128);
        assert_eq!(min_free_kbytes(u64::MAX / 32), 262_144);
    }

    #[test]
    fn watermarks_match_a_real_linux_6_18_zoneinfo() {
        // fixtures/linux-6.18-proc/zoneinfo.txt: managed DMA 3840, DMA32 772497,
        // Normal 589824; mins 47 / 9553 / 7294 (min_free_kbytes 67584 set by THP).
        let lowmem = 3840 + 772_497 + 589_824;
        let w = |ztype, managed| zone_watermarks(67584, lowmem, ZoneSize { ztype, managed });
        assert_eq!(w(ZoneType::Dma, 3840), [47, 58, 69, 80]);
        assert_eq!(w(ZoneType::Dma32, 772_497), [9553, 11941, 14329, 16717]);
        assert_eq!(w(ZoneType::Normal, 589_824), [7294, 9117, 10940, 12763]);
        assert_eq!(w(ZoneType::Movable, 0), [32, 32, 32, 32]);
    }

    #[test]
    fn lowmem_reserve_matches_a_real_linux_6_18_zoneinfo() {
        let r = lowmem_reserves([3840, 772_497, 589_824, 0, 0, 0]);
        // "protection: (0, 3017, 5321, 5321, 5321)" for DMA, "(0, 0, 2304, 2304, 2304)" for DMA32.
        assert_eq!(r[0][1], 3017);
        assert_eq!(r[0][2], 5321);
        assert_eq!(r[0][5], 5321);
        assert_eq!(r[1][2], 2304);
        assert_eq!(r[2], [0; MAX_NR_ZONES]);
    }

    #[test]
    fn reserve_access_by_alloc_flags() {
        let none = |_, _| false;
        let mark = 1000;
        let ok = |free, flags| watermark_ok(free, Order::ZERO, mark, 0, flags, 0, none);
        // Ordinary: strictly above min.
        assert!(!ok(1000, AllocFlags::empty()));
        assert!(ok(1001, AllocFlags::empty()));
        // __GFP_HIGH: half of min.
        assert!(!ok(500, AllocFlags::MIN_RESERVE));
        assert!(ok(501, AllocFlags::MIN_RESERVE));
        // GFP_ATOMIC (HIGH + non-blocking): a further quarter: 500 - 125 = 375.
        assert!(!ok(375, AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK));
        assert!(ok(376, AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK));
        // GFP_NOWAIT: non-blocking without HIGH gets no reserve.
        assert!(!ok(1000, AllocFlags::NON_BLOCK));
        // lowmem_reserve adds to the mark.
        assert!(!watermark_ok(1100, Order::ZERO, mark, 100, AllocFlags::empty(), 0, none));
        // Higher orders also need a block of that order or above.
        let o3 = Order::new(3).unwrap();
        assert!(!watermark_ok(5000, o3, mark, 0, AllocFlags::empty(), 0, |_, _| false));
        assert!(watermark_ok(5000, o3, mark, 0, AllocFlags::empty(), 0, |o, _| o.as_u32() == 5));
        assert!(!watermark_ok(5000, o3, mark, 0, AllocFlags::empty(), 0, |o, _| o.as_u32() == 2));
    }

    #[test]
    fn highatomic_reserve_is_free_only_to_reserve_entitled_requests() {
        let none = |_, _| false;
        let (mark, o0) = (1000, Order::ZERO);
        // 1100 free, 200 of them in the highatomic reserve: an ordinary request sees 900.
        assert!(!watermark_ok(1100, o0, mark, 0, AllocFlags::empty(), 200, none));
        assert!(watermark_ok(1100, o0, mark, 0, AllocFlags::empty(), 99, none));
        // Any ALLOC_RESERVES flag counts them (GFP_NOWAIT's ALLOC_NON_BLOCK included).
        assert!(watermark_ok(1100, o0, mark, 0, AllocFlags::NON_BLOCK, 200, none));
        assert!(watermark_ok(1100, o0, mark, 0, AllocFlags::HIGHATOMIC, 200, none));
        // The block test looks at the HighAtomic lists only for ALLOC_HIGHATOMIC / ALLOC_OOM.
        let o1 = Order::new(1).unwrap();
        let only_highatomic = |_, highatomic: bool| highatomic;
        let atomic = AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK;
        assert!(!watermark_ok(5000, o1, mark, 0, atomic, 0, only_highatomic));
        assert!(watermark_ok(5000, o1, mark, 0, atomic | AllocFlags::HIGHATOMIC, 0, only_highatomic));
        assert!(watermark_ok(5000, o1, mark, 0, AllocFlags::OOM, 0, only_highatomic));
    }
}
