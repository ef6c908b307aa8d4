//! Colours and the legend of a page-frame map.
//!
//! - free blocks: a ramp from pale yellow-green (order 0) through teal to indigo (order 10), so
//!   large free blocks read as "cold water" and fragmented free memory as light speckle;
//! - per-CPU lists: yellow; reserved: mid grey; holes: near black;
//! - slab caches: warm colours (reds, oranges, magentas, browns), one per cache id, stable
//!   across runs (a hash of the id picks hue and lightness);
//! - kmalloc-large cyan, vmalloc violet, page tables brown, per-CPU chunks white, other
//!   allocations tan;
//! - HighMem frames: the same colours darkened to 55%, and a zone gutter left of each row.

use kmem::ZoneType;

use super::{Class, FrameMap};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Free block colours by order (0..=10).
const FREE_RAMP: [Rgb; 11] = [
    [0xe5, 0xf5, 0xa0],
    [0xc2, 0xe6, 0x99],
    [0x98, 0xd5, 0x94],
    [0x66, 0xc2, 0x8a],
    [0x3a, 0xae, 0x7d],
    [0x1f, 0x9e, 0x89],
    [0x1d, 0x8f, 0xb8],
    [0x2b, 0x79, 0xc9],
    [0x34, 0x61, 0xd0],
    [0x3a, 0x48, 0xc4],
    [0x30, 0x30, 0xa8],
];

const HOLE: Rgb = [0x14, 0x14, 0x14];
const RESERVED: Rgb = [0x80, 0x80, 0x80];
const PCP: Rgb = [0xff, 0xd7, 0x00];
const KMALLOC_LARGE: Rgb = [0x00, 0xe5, 0xff];
const VMALLOC: Rgb = [0x9b, 0x4d, 0xff];
const PAGE_TABLE: Rgb = [0x8b, 0x45, 0x13];
const PERCPU: Rgb = [0xf8, 0xf8, 0xf8];
const ALLOCATED: Rgb = [0xd2, 0xb4, 0x8c];

/// The colour of a class.
pub fn colour(c: Class) -> Rgb {
    match c {
        Class::Hole => HOLE,
        Class::Reserved => RESERVED,
        Class::Free(o) => FREE_RAMP[(o as usize).min(10)],
        Class::Pcp => PCP,
        Class::Slab(id) => slab_colour(id),
        Class::KmallocLarge => KMALLOC_LARGE,
        Class::Vmalloc => VMALLOC,
        Class::PageTable => PAGE_TABLE,
        Class::Percpu => PERCPU,
        Class::Allocated => ALLOCATED,
    }
}

/// A cell's colour: its class's, darkened for HighMem (holes stay as they are).
pub fn cell_colour(c: super::Cell) -> Rgb {
    let rgb = colour(c.class);
    if c.highmem && c.class != Class::Hole {
        rgb.map(|v| (v as u32 * 55 / 100) as u8)
    } else {
        rgb
    }
}

/// The zone gutter's colour: one hue per zone type, lighter on odd-numbered nodes so that
/// neighbouring nodes' zones of one type stay apart.
pub fn zone_colour(z: ZoneType, node: usize) -> Rgb {
    let base = match z {
        ZoneType::Dma => [0xe4, 0x1a, 0x1c],
        ZoneType::Dma32 => [0xff, 0x7f, 0x00],
        ZoneType::Normal => [0x4d, 0xaf, 0x4a],
        ZoneType::HighMem => [0x98, 0x4e, 0xa3],
        ZoneType::Movable | ZoneType::Device => [0xa6, 0x56, 0x28],
    };
    if node % 2 == 1 {
        base.map(|v| v + (255 - v) / 2)
    } else {
        base
    }
}

/// A stable warm colour for a slab cache id: hue in the red-orange-magenta arc (300°..420°,
/// away from the free ramp's greens and blues), lightness in three steps.
pub fn slab_colour(id: u32) -> Rgb {
    // splitmix32-style mix so neighbouring ids get far-apart colours.
    let mut x = id.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995;
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^= x >> 12;
    let hue = (300 + x % 120) % 360;
    let light = [0.42, 0.55, 0.68][((x >> 8) % 3) as usize];
    hsl(hue as f64, 0.85, light)
}

fn hsl(h: f64, s: f64, l: f64) -> Rgb {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    [r, g, b].map(|v| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// `#rrggbb`.
pub fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// One legend line.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Box colour.
    pub colour: Rgb,
    /// Label.
    pub label: String,
    /// Exact frames in this state (0 for entries shown for completeness).
    pub frames: u64,
}

/// Frames of a class on the map.
fn count(map: &FrameMap, c: Class) -> u64 {
    map.counts.get(&c).map_or(0, |e| e.0)
}

/// The legend: every state (those with no frames too, so the key reads the same on every
/// map), free orders, slab caches by size (all of them; `max_caches` limits the list, the
/// rest summed in one line), the zones, and the HighMem note.
pub fn entries(map: &FrameMap, max_caches: usize) -> Vec<Entry> {
    let e = |c: Class, label: &str| Entry { colour: colour(c), label: label.to_owned(), frames: count(map, c) };
    let mut v: Vec<Entry> = (0..=10u8).map(|o| e(Class::Free(o), &format!("free, buddy order {o}"))).collect();
    v.push(e(Class::Pcp, "free, per-CPU list"));
    let mut slabs: Vec<(u32, u64)> = map
        .counts
        .iter()
        .filter_map(|(c, n)| match c {
            Class::Slab(id) => Some((*id, n.0)),
            _ => None,
        })
        .collect();
    slabs.sort_by_key(|&(id, n)| (std::cmp::Reverse(n), id));
    for &(id, n) in slabs.iter().take(max_caches) {
        v.push(Entry { colour: slab_colour(id), label: format!("slab: {}", map.cache_name(id)), frames: n });
    }
    if slabs.len() > max_caches {
        let rest: u64 = slabs[max_caches..].iter().map(|s| s.1).sum();
        let label = format!("slab: {} more caches", slabs.len() - max_caches);
        v.push(Entry { colour: slab_colour(slabs[max_caches].0), label, frames: rest });
    }
    v.push(e(Class::KmallocLarge, "kmalloc-large"));
    v.push(e(Class::Vmalloc, "vmalloc"));
    v.push(e(Class::PageTable, "page table"));
    v.push(e(Class::Percpu, "per-CPU chunk"));
    v.push(e(Class::Allocated, "other allocation"));
    v.push(e(Class::Reserved, "reserved"));
    v.push(e(Class::Hole, "hole (no RAM)"));
    let highmem: u64 = map.counts.values().map(|c| c.1).sum();
    if highmem > 0 {
        v.push(Entry { colour: [0x40, 0x40, 0x40], label: "HighMem: colours at 55%".to_owned(), frames: highmem });
    }
    for z in &map.zones {
        v.push(Entry {
            colour: zone_colour(z.zone, z.node),
            label: format!("gutter: node {} {}", z.node, z.zone.name()),
            frames: (z.pfns.1 - z.pfns.0) as u64,
        });
    }
    v
}

/// A label short enough for the PNG legend's columns.
pub fn short_label(label: &str) -> String {
    label
        .replace("free, buddy order ", "free order ")
        .replace("free, per-CPU list", "free, pcp list")
        .replace("gutter: node ", "zone N")
        .replace("HighMem: colours at 55%", "HighMem (dimmed)")
}

/// What one cell stands for.
pub fn scale_note(map: &FrameMap) -> String {
    if map.frames_per_cell == 1 {
        format!("1 pixel = 1 page frame (4 KiB), {} frames per row", map.width)
    } else {
        format!(
            "1 pixel = {} page frames ({} KiB), coloured by their dominant state; {} frames per row",
            map.frames_per_cell,
            map.frames_per_cell * 4,
            map.width * map.frames_per_cell
        )
    }
}

/// The legend as text lines (for the terminal).
pub fn text(entries: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries {
        let mib = e.frames as f64 * 4.0 / 1024.0;
        out.push(format!("  {}  {:<32} {:>9} frames {:>9.1} MiB", hex(e.colour), e.label, e.frames, mib));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_colours_are_stable_warm_and_distinct() {
        assert_eq!(slab_colour(7), slab_colour(7));
        let cs: std::collections::HashSet<Rgb> = (1..40).map(slab_colour).collect();
        assert!(cs.len() >= 36, "neighbouring ids get different colours");
        for id in 1..200 {
            let [r, g, b] = slab_colour(id);
            assert!(r >= g && r as u32 + 8 >= b as u32, "id {id}: warm (red-dominant), got {r},{g},{b}");
        }
    }

    #[test]
    fn hsl_primaries() {
        assert_eq!(hsl(0.0, 1.0, 0.5), [255, 0, 0]);
        assert_eq!(hsl(120.0, 1.0, 0.5), [0, 255, 0]);
        assert_eq!(hsl(240.0, 1.0, 0.5), [0, 0, 255]);
        assert_eq!(hex([1, 2, 255]), "#0102ff");
    }
}
