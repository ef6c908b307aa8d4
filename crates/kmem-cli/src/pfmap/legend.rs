//! Colours, fills and the legend of a page-frame map.
//!
//! - free blocks: a ramp from pale yellow-green (order 0) through teal to indigo (order 10), so
//!   large free blocks read as "cold water" and fragmented free memory as light speckle;
//! - per-CPU lists: yellow; reserved: mid grey; holes: near black;
//! - slab caches: warm colours (reds, oranges, magentas, pinks). The caches are ranked by
//!   frames (largest first, then id) and the ranks take [`SLAB_PALETTE`]'s six hues, solid;
//!   when the hues run out the next ranks take them again with a [`Pattern`] (hatched `/`,
//!   hatched `\`, cross-hatched, dotted), so 30 caches get distinguishable fills. Past those,
//!   a hash of the id picks a warm colour ([`slab_colour`]), solid;
//! - kmalloc-large cyan, vmalloc violet, page tables brown, per-CPU chunks white, other
//!   allocations (see [`OTHER_NOTE`]) tan;
//! - HighMem frames: the same fills darkened to 55%, and a zone gutter left of each row.

use std::collections::HashMap;

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
const KMAPPED: Rgb = [0xbf, 0xff, 0x00];

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
        Class::Kmapped => KMAPPED,
    }
}

/// Hues for slab caches by rank: warm, far from each other and from the other states'
/// colours (at least 75 apart in RGB from each other, 85 from any other state's).
pub const SLAB_PALETTE: [Rgb; 6] = [
    [0xe6, 0x19, 0x4b], // crimson
    [0xf5, 0x82, 0x31], // orange
    [0xf0, 0x32, 0xe6], // magenta
    [0xff, 0x8f, 0xd0], // pink
    [0xa0, 0x00, 0x40], // maroon
    [0x8e, 0x2c, 0x86], // plum
];

/// A pattern drawn over a fill's colour, in map coordinates (one unit per cell), so that
/// neighbouring slabs of one cache join into one hatched area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// No pattern.
    Solid,
    /// Diagonal lines rising to the right, every 4 cells.
    Hatch,
    /// Diagonal lines falling to the right, every 4 cells.
    BackHatch,
    /// Both diagonals.
    Cross,
    /// A dot every other cell of every other row.
    Dots,
}

impl Pattern {
    /// The patterns in the order slab ranks take them.
    pub const ALL: [Pattern; 5] = [Pattern::Solid, Pattern::Hatch, Pattern::BackHatch, Pattern::Cross, Pattern::Dots];

    /// True where the pattern's ink goes at `(x, y)`.
    pub fn ink_at(self, x: usize, y: usize) -> bool {
        let rise = (x + y) % 4 == 0;
        let fall = (x + 4 - y % 4) % 4 == 0;
        match self {
            Pattern::Solid => false,
            Pattern::Hatch => rise,
            Pattern::BackHatch => fall,
            Pattern::Cross => rise || fall,
            Pattern::Dots => x % 2 == 0 && y % 2 == 0,
        }
    }

    /// The pattern's name, for SVG ids and the legend.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Solid => "solid",
            Pattern::Hatch => "hatch",
            Pattern::BackHatch => "backhatch",
            Pattern::Cross => "cross",
            Pattern::Dots => "dots",
        }
    }
}

/// What fills a cell: a colour and a pattern over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fill {
    /// The ground colour.
    pub colour: Rgb,
    /// The pattern drawn over it in [`Fill::ink`].
    pub pattern: Pattern,
}

impl Fill {
    /// A plain colour.
    pub fn solid(colour: Rgb) -> Fill {
        Fill { colour, pattern: Pattern::Solid }
    }

    /// The pattern's colour: the ground darkened to 35% when it is light, else lightened
    /// 60% towards white.
    pub fn ink(&self) -> Rgb {
        let [r, g, b] = self.colour.map(u32::from);
        if r * 299 + g * 587 + b * 114 > 110_000 {
            self.colour.map(|v| (v as u32 * 35 / 100) as u8)
        } else {
            self.colour.map(|v| v + ((255 - v) as u32 * 60 / 100) as u8)
        }
    }

    /// The colour of the cell at `(x, y)` of the map.
    pub fn at(&self, x: usize, y: usize) -> Rgb {
        if self.pattern.ink_at(x, y) {
            self.ink()
        } else {
            self.colour
        }
    }

    /// The fill darkened to 55% (HighMem).
    pub fn dimmed(self) -> Fill {
        Fill { colour: self.colour.map(|v| (v as u32 * 55 / 100) as u8), pattern: self.pattern }
    }

    /// What an SVG `fill` attribute says: the colour, or a reference to the pattern's
    /// definition (see [`Fill::svg_id`]).
    pub fn svg_paint(&self) -> String {
        match self.svg_id() {
            Some(id) => format!("url(#{id})"),
            None => hex(self.colour),
        }
    }

    /// The id of the SVG `<pattern>` that draws a patterned fill (`fill-e6194b-hatch`).
    pub fn svg_id(&self) -> Option<String> {
        (self.pattern != Pattern::Solid).then(|| format!("fill-{}-{}", &hex(self.colour)[1..], self.pattern.name()))
    }
}

/// The fills of one map: slab caches ranked by frames take [`SLAB_PALETTE`] and
/// [`Pattern::ALL`] (see the module docs); every other class has its fixed colour.
#[derive(Debug)]
pub struct Fills {
    slab: HashMap<u32, Fill>,
}

impl Fills {
    /// Ranks the map's slab caches.
    pub fn of(map: &FrameMap) -> Fills {
        let slab = slabs_by_size(map).iter().enumerate().map(|(rank, &(id, _))| (id, slab_fill(rank, id))).collect();
        Fills { slab }
    }

    /// The fill of a class.
    pub fn class(&self, c: Class) -> Fill {
        match c {
            Class::Slab(id) => self.slab.get(&id).copied().unwrap_or_else(|| Fill::solid(slab_colour(id))),
            _ => Fill::solid(colour(c)),
        }
    }

    /// A cell's fill: its class's, darkened for HighMem (holes stay as they are).
    pub fn cell(&self, c: super::Cell) -> Fill {
        let f = self.class(c.class);
        if c.highmem && c.class != Class::Hole {
            f.dimmed()
        } else {
            f
        }
    }
}

/// The fill of the slab cache of `rank` (0: the most frames).
pub fn slab_fill(rank: usize, id: u32) -> Fill {
    let n = SLAB_PALETTE.len();
    match Pattern::ALL.get(rank / n) {
        Some(&pattern) => Fill { colour: SLAB_PALETTE[rank % n], pattern },
        None => Fill::solid(slab_colour(id)),
    }
}

/// The map's slab caches with their frames, most frames first (ties: lower id first).
fn slabs_by_size(map: &FrameMap) -> Vec<(u32, u64)> {
    let mut slabs: Vec<(u32, u64)> = map
        .counts
        .iter()
        .filter_map(|(c, n)| match c {
            Class::Slab(id) => Some((*id, n.0)),
            _ => None,
        })
        .collect();
    slabs.sort_by_key(|&(id, n)| (std::cmp::Reverse(n), id));
    slabs
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

/// A stable warm colour for a slab cache id, for caches past the ranked fills: hue in the
/// red-orange-magenta arc (300°..390°, away from the free ramp's greens and blues and the
/// per-CPU lists' yellow), lightness in three steps.
pub fn slab_colour(id: u32) -> Rgb {
    // splitmix32-style mix so neighbouring ids get far-apart colours.
    let mut x = id.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995;
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^= x >> 12;
    let hue = (300 + x % 90) % 360;
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

/// What "other allocation" is, for the legends' footnote.
pub const OTHER_NOTE: &str = "* other allocation: pages handed out by the page allocator (alloc_pages, \
__get_free_pages) with no owner flag kmem knows, so neither slab, kmalloc-large, vmalloc, page-table nor \
per-CPU pages. In Linux: user and page-cache pages, drivers' buffers; here: what the workload took with \
alloc_pages (the demo's page-order phase, a trace's mm_page_alloc events).";

/// One legend line.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Box fill.
    pub fill: Fill,
    /// Label.
    pub label: String,
    /// Exact frames in this state (0 for entries shown for completeness).
    pub frames: u64,
}

/// Frames of a class on the map.
fn count(map: &FrameMap, c: Class) -> u64 {
    map.counts.get(&c).map_or(0, |e| e.0)
}

/// The legend's label of a class (the state; for a slab, its cache).
pub fn label(map: &FrameMap, c: Class) -> String {
    match c {
        Class::Hole => "hole (no RAM)".to_owned(),
        Class::Reserved => "reserved".to_owned(),
        Class::Free(o) => format!("free, buddy order {o}"),
        Class::Pcp => "free, per-CPU list".to_owned(),
        Class::Slab(id) => format!("slab: {}", map.cache_name(id)),
        Class::KmallocLarge => "kmalloc-large".to_owned(),
        Class::Vmalloc => "vmalloc".to_owned(),
        Class::PageTable => "page table".to_owned(),
        Class::Percpu => "per-CPU chunk".to_owned(),
        Class::Allocated => "other allocation*".to_owned(),
        Class::Kmapped => "kmapped (HighMem)".to_owned(),
    }
}

/// Who owns the frames of a class (for the SVG's hover titles).
pub fn owner(map: &FrameMap, c: Class) -> String {
    match c {
        Class::Hole => "none (no RAM behind the frames)".to_owned(),
        Class::Reserved => "boot: firmware, memblock, kmem's metadata, or not yet initialised".to_owned(),
        Class::Free(_) => "the buddy allocator's free lists".to_owned(),
        Class::Pcp => "a CPU's per-CPU page list".to_owned(),
        Class::Slab(id) => format!("slab cache {}", map.cache_name(id)),
        Class::KmallocLarge => "kmalloc (too large for the kmalloc caches)".to_owned(),
        Class::Vmalloc => "a vmalloc area".to_owned(),
        Class::PageTable => "the kernel page tables".to_owned(),
        Class::Percpu => "the per-CPU allocator".to_owned(),
        Class::Allocated => "an alloc_pages caller without an owner flag".to_owned(),
        Class::Kmapped => "a kmap() user: the page is mapped in a pkmap slot".to_owned(),
    }
}

/// The legend: every state (those with no frames too, so the key reads the same on every
/// map), free orders, slab caches by size (all of them; `max_caches` limits the list, the
/// rest summed in one line), the zones, and the HighMem note.
pub fn entries(map: &FrameMap, max_caches: usize) -> Vec<Entry> {
    let fills = Fills::of(map);
    let e = |c: Class| Entry { fill: fills.class(c), label: label(map, c), frames: count(map, c) };
    let mut v: Vec<Entry> = (0..=10u8).map(|o| e(Class::Free(o))).collect();
    v.push(e(Class::Pcp));
    let slabs = slabs_by_size(map);
    for &(id, _) in slabs.iter().take(max_caches) {
        v.push(e(Class::Slab(id)));
    }
    if slabs.len() > max_caches {
        let rest: u64 = slabs[max_caches..].iter().map(|s| s.1).sum();
        let label = format!("slab: {} more caches", slabs.len() - max_caches);
        v.push(Entry { fill: fills.class(Class::Slab(slabs[max_caches].0)), label, frames: rest });
    }
    for c in [Class::KmallocLarge, Class::Vmalloc, Class::PageTable, Class::Percpu, Class::Allocated, Class::Kmapped] {
        v.push(e(c));
    }
    v.push(e(Class::Reserved));
    v.push(e(Class::Hole));
    let highmem: u64 = map.counts.values().map(|c| c.1).sum();
    if highmem > 0 {
        let label = "HighMem: colours at 55%".to_owned();
        v.push(Entry { fill: Fill::solid([0x40, 0x40, 0x40]), label, frames: highmem });
    }
    for z in &map.zones {
        v.push(Entry {
            fill: Fill::solid(zone_colour(z.zone, z.node)),
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

/// `text` broken at spaces into lines of at most `width` characters (a longer word gets a
/// line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("never empty");
        if last.is_empty() {
            last.push_str(word);
        } else if last.len() + 1 + word.len() <= width {
            last.push(' ');
            last.push_str(word);
        } else {
            lines.push(word.to_owned());
        }
    }
    lines
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
        let fill = match e.fill.pattern {
            Pattern::Solid => hex(e.fill.colour),
            p => format!("{} {}", hex(e.fill.colour), p.name()),
        };
        out.push(format!("  {fill:<17}  {:<32} {:>9} frames {:>9.1} MiB", e.label, e.frames, mib));
    }
    out.extend(wrap(OTHER_NOTE, 96).into_iter().map(|l| format!("  {l}")));
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
