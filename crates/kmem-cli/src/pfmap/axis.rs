//! The map's axes: a pfn / physical-address axis down the right edge (one tick every few
//! rows, at a power of two of rows so the labels are round numbers) and the frame offset
//! within a row along the top.

use super::FrameMap;

/// What the axes show, for a line above the map.
pub const NOTE: &str = "top axis: frame offset in the row; right axis: pfn = address of the row's start";

/// Columns between two ticks of the top axis.
pub const COL_STEP: usize = 128;

/// The rows that get a tick on the pfn axis, with the pfn each starts at: every `step` rows,
/// `step` the smallest power of two that keeps ticks `min_gap` rows apart; and the map's
/// bottom edge when the grid ends exactly at the last frame (so `max_pfn` is labelled).
pub fn row_ticks(map: &FrameMap, min_gap: usize) -> Vec<(usize, usize)> {
    let step = min_gap.max(1).next_power_of_two();
    let frames_per_row = map.width * map.frames_per_cell;
    let mut v: Vec<(usize, usize)> = (0..map.height).step_by(step).map(|r| (r, r * frames_per_row)).collect();
    if map.height * frames_per_row == map.frames && map.height % step == 0 {
        v.push((map.height, map.frames));
    }
    v
}

/// The columns that get a tick on the top axis, with their frame offset within the row.
pub fn col_ticks(map: &FrameMap) -> Vec<(usize, usize)> {
    (0..map.width).step_by(COL_STEP).map(|c| (c, c * map.frames_per_cell)).collect()
}

/// A pfn axis label: the pfn in hex and the physical address it starts at as a size
/// (`0x40000 = 1 GiB`).
pub fn pfn_label(pfn: usize) -> String {
    format!("{pfn:#07x} = {}", addr(pfn as u64 * 4096))
}

/// A physical address as a size, exact: the largest unit that takes it with at most two
/// decimals (`0`, `512 KiB`, `128 MiB`, `1.25 GiB`, `1088 MiB`), else hex bytes.
pub fn addr(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    for (shift, name) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        let unit = 1u64 << shift;
        if bytes >= unit && (bytes as u128 * 100) % unit as u128 == 0 {
            let v = format!("{:.2}", bytes as f64 / unit as f64);
            return format!("{} {name}", v.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    format!("{bytes:#x}")
}

/// The top axis's label of a frame offset within a row (`+0x80`).
pub fn offset_label(frames: usize) -> String {
    format!("+{frames:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfmap::{Cell, Class};
    use std::collections::HashMap;

    fn map(width: usize, height: usize, fpc: usize, frames: usize) -> FrameMap {
        FrameMap {
            width,
            height,
            frames_per_cell: fpc,
            frames,
            cells: vec![Cell { class: Class::Hole, highmem: false }; width * height],
            counts: HashMap::new(),
            zones: Vec::new(),
            cache_names: HashMap::new(),
        }
    }

    #[test]
    fn ticks_fall_on_round_pfns() {
        // 256 MiB: 512 frames (2 MiB) a row, a tick every 32 rows = 64 MiB, and max_pfn.
        let m = map(512, 128, 1, 65536);
        assert_eq!(row_ticks(&m, 24), vec![(0, 0), (32, 0x4000), (64, 0x8000), (96, 0xc000), (128, 0x10000)]);
        assert_eq!(pfn_label(0x4000), "0x04000 = 64 MiB");
        assert_eq!(pfn_label(0x140000), "0x140000 = 5 GiB");
        // A grid that ends past the last frame does not label its bottom edge.
        let m = map(512, 3, 1, 1500);
        assert_eq!(row_ticks(&m, 2), vec![(0, 0), (2, 1024)]);
        let m = map(1024, 640, 2, 1310720);
        assert_eq!(col_ticks(&m)[1], (128, 256));
        assert_eq!(offset_label(256), "+0x100");
        assert_eq!(addr(0x1800_0000 * 4), "1.5 GiB");
        assert_eq!(addr(0x5000_0000), "1.25 GiB");
        assert_eq!(addr(0x4400_0000), "1088 MiB");
        assert_eq!(addr(4096), "4 KiB");
        assert_eq!(addr(4097), "0x1001");
    }
}
