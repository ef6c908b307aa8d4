//! `/sys/kernel/debug/extfrag/unusable_index` and `extfrag_index` (`mm/vmstat.c`:
//! `fill_contig_page_info`, `unusable_free_index`, `__fragmentation_index`,
//! `unusable_show_print`, `extfrag_show_print`): Mel Gorman's measures of external
//! fragmentation, per zone and order.
//!
//! - The **unusable free space index** of order `k` is the share of free memory that cannot
//!   serve an allocation of order `k` (it lies in blocks smaller than `2^k` pages):
//!   `(free_pages - suitable_blocks * 2^k) / free_pages`, 0 (none) to 1 (all), and 1 when
//!   nothing is free.
//! - The **fragmentation index** of order `k` says, for an allocation that would fail, whether
//!   it fails for lack of memory (towards 0) or because free memory is fragmented (towards 1):
//!   `1 - (1 + free_pages / 2^k) / free_blocks`. It is -1 when the allocation would succeed
//!   (a free block of order `k` or more exists) and 0 when nothing is free.
//!
//! Both are computed in thousandths with Linux's integer arithmetic and printed as
//! `index / 1000 "." index % 1000` with C's truncating division, so the text matches the
//! kernel's byte for byte (including its rare negative thousandths when a zone has very few
//! free blocks). Only free blocks on the buddy lists count (`free_area[k].nr_free`): pages on
//! per-CPU lists do not, as in Linux. Counters are read without the zone lock.

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::{Order, MAX_PAGE_ORDER, NR_PAGE_ORDERS};
use crate::machine::Kmem;
use crate::mm::zone::Zone;
use crate::platform::Platform;

/// Free memory of a zone as an allocation of one order sees it (`struct contig_page_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContigPageInfo {
    /// Free pages in all blocks.
    pub free_pages: u64,
    /// Free blocks of every order.
    pub free_blocks_total: u64,
    /// Free blocks of the requested order that the free blocks of that order or larger make.
    pub free_blocks_suitable: u64,
}

/// `fill_contig_page_info()` over the free block counts per order (`nr_free[k]`: blocks of
/// order `k`), for allocations of `suitable_order`.
pub fn fill_contig_page_info(nr_free: &[usize; NR_PAGE_ORDERS], suitable_order: u32) -> ContigPageInfo {
    let mut info = ContigPageInfo::default();
    for (order, &blocks) in nr_free.iter().enumerate() {
        let (order, blocks) = (order as u32, blocks as u64);
        info.free_blocks_total += blocks;
        info.free_pages += blocks << order;
        if order >= suitable_order {
            info.free_blocks_suitable += blocks << (order - suitable_order);
        }
    }
    info
}

/// `unusable_free_index()`: thousandths of free memory unusable for an allocation of `order`.
pub fn unusable_free_index(order: u32, info: &ContigPageInfo) -> i32 {
    // No free memory is interpreted as all free memory being unusable.
    if info.free_pages == 0 {
        return 1000;
    }
    let unusable = info.free_pages.saturating_sub(info.free_blocks_suitable << order);
    (unusable * 1000 / info.free_pages) as i32
}

/// `__fragmentation_index()`: thousandths; -1000 if an allocation of `order` would succeed,
/// 0 if nothing is free or the order is out of range.
pub fn fragmentation_index(order: u32, info: &ContigPageInfo) -> i32 {
    if order > MAX_PAGE_ORDER as u32 || info.free_blocks_total == 0 {
        return 0;
    }
    // The index only makes sense when a request would fail.
    if info.free_blocks_suitable != 0 {
        return -1000;
    }
    let requested = 1u64 << order;
    1000 - ((1000 + info.free_pages * 1000 / requested) / info.free_blocks_total) as i32
}

/// The free block counts per order of a zone (`free_area[k].nr_free`).
pub fn zone_nr_free(z: &Zone) -> [usize; NR_PAGE_ORDERS] {
    let mut nr = [0; NR_PAGE_ORDERS];
    for o in Order::all() {
        nr[o.index()] = z.area.nr_free(o);
    }
    nr
}

/// Writes one index value as Linux prints it (`"%d.%03d "`, or `"%2d.%03d "` with `wide`).
fn write_index(w: &mut dyn Write, index: i32, wide: bool) -> fmt::Result {
    if wide {
        write!(w, "{:2}.{:03} ", index / 1000, index % 1000)
    } else {
        write!(w, "{}.{:03} ", index / 1000, index % 1000)
    }
}

fn show<P: Platform>(
    k: &Kmem<P>,
    w: &mut dyn Write,
    wide: bool,
    index: fn(u32, &ContigPageInfo) -> i32,
) -> fmt::Result {
    for z in k.zones().filter(|z| z.is_populated()) {
        write!(w, "Node {}, zone {:>8} ", z.node(), z.name())?;
        let nr = zone_nr_free(z);
        for o in 0..NR_PAGE_ORDERS as u32 {
            write_index(w, index(o, &fill_contig_page_info(&nr, o)), wide)?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// Writes `unusable_index`: one line per populated zone, node by node, lowest zone first.
///
/// ```text
/// Node 0, zone      DMA 0.000 0.000 0.000 0.001 0.005 0.013 0.021 0.037 0.037 0.101 0.230
/// ```
///
/// Each line ends with a space before the newline, as in Linux.
pub fn unusable_index<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    show(k, w, false, unusable_free_index)
}

/// Writes `extfrag_index`: one line per populated zone, node by node, lowest zone first.
///
/// ```text
/// Node 0, zone      DMA -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000
/// ```
pub fn extfrag_index<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    show(k, w, true, fragmentation_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Free block counts: 10 blocks of order 0, 4 of order 1, 1 of order 3 (10 + 8 + 8 = 26 pages,
    /// 15 blocks).
    const NR: [usize; NR_PAGE_ORDERS] = [10, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn contig_info() {
        assert_eq!(
            fill_contig_page_info(&NR, 0),
            ContigPageInfo { free_pages: 26, free_blocks_total: 15, free_blocks_suitable: 26 }
        );
        // Order 1: 4 blocks of order 1, and the order-3 block makes 4 more.
        assert_eq!(fill_contig_page_info(&NR, 1).free_blocks_suitable, 8);
        assert_eq!(fill_contig_page_info(&NR, 3).free_blocks_suitable, 1);
        assert_eq!(fill_contig_page_info(&NR, 4).free_blocks_suitable, 0);
    }

    #[test]
    fn unusable() {
        let idx = |o| unusable_free_index(o, &fill_contig_page_info(&NR, o));
        assert_eq!(idx(0), 0);
        // (26 - 8 * 2) / 26 = 0.3846...
        assert_eq!(idx(1), 384);
        // Order 2: only the order-3 block helps (2 blocks of 4): (26 - 8) / 26 = 0.6923...
        assert_eq!(idx(2), 692);
        assert_eq!(idx(3), 692);
        assert_eq!(idx(4), 1000);
        // Nothing free: all "unusable".
        assert_eq!(unusable_free_index(0, &ContigPageInfo::default()), 1000);
    }

    #[test]
    fn fragmentation() {
        let idx = |o| fragmentation_index(o, &fill_contig_page_info(&NR, o));
        assert_eq!(idx(0), -1000);
        assert_eq!(idx(3), -1000);
        // Order 4: 1000 - (1000 + 26000 / 16) / 15 = 1000 - (1000 + 1625) / 15 = 1000 - 175.
        assert_eq!(idx(4), 825);
        // Order 10: 1000 - (1000 + 26000 / 1024) / 15 = 1000 - 1025 / 15 = 1000 - 68.
        assert_eq!(idx(10), 932);
        assert_eq!(fragmentation_index(2, &ContigPageInfo::default()), 0);
        assert_eq!(fragmentation_index(11, &fill_contig_page_info(&NR, 0)), 0);
        // One free block of order 2, asking for order 3: Linux's formula goes below zero
        // (1000 - (1000 + 500) / 1 = -500) and prints it as "0.-500".
        let one = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(fragmentation_index(3, &fill_contig_page_info(&one, 3)), -500);
    }

    #[test]
    fn printed_like_linux() {
        let fmt = |i, wide| {
            let mut s = crate::testing::std::string::String::new();
            write_index(&mut s, i, wide).unwrap();
            s
        };
        assert_eq!(fmt(384, false), "0.384 ");
        assert_eq!(fmt(1000, false), "1.000 ");
        assert_eq!(fmt(7, false), "0.007 ");
        assert_eq!(fmt(-1000, true), "-1.000 ");
        assert_eq!(fmt(825, true), " 0.825 ");
        assert_eq!(fmt(-500, true), " 0.-500 ");
    }
}
