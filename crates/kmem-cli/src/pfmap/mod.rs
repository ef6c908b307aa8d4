//! Page-frame maps: every page frame of a machine as one cell of a grid, coloured by what
//! the frame holds ([`kmem::FrameState`]), written as a PNG ([`png`]) and an SVG ([`svg`]),
//! with a legend ([`legend`]).
//!
//! Frames run left to right, top to bottom, `width` cells per row, from pfn 0 to `max_pfn`.
//! A machine with more frames than fit the cell budget is downscaled: each cell stands for
//! `frames_per_cell` consecutive frames (a power of two) and takes the colour of the state
//! most of them share (ties: the lower pfn's). Exact frame counts per state are kept apart
//! for the legend, so it never depends on the scale.
//!
//! Both maps carry the same furniture: a pfn / physical-address axis down the right edge and
//! the frame offset within a row along the top ([`axis`]); fills from [`legend::Fills`]
//! (slab caches ranked by frames onto six warm hues, then the same hues hatched); a legend
//! whose footnote says what "other allocation" is ([`legend::OTHER_NOTE`]). The PNG draws
//! its text with a bundled DejaVu Sans Mono subset ([`font`]); the SVG uses `<text>` in the
//! generic `monospace` family and gives every run of cells a hover `<title>` (state, pfn
//! range, owner, zone).

pub mod axis;
pub mod font;
pub mod legend;
pub mod png;
#[cfg(test)]
mod render_tests;
pub mod svg;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use kmem::{FrameState, ZoneType};
use kmem_hosted::Machine;

/// What a cell's colour says: a frame state with the details a map shows (free order, slab
/// cache), and whether the frame is HighMem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// No RAM.
    Hole,
    /// Reserved at boot.
    Reserved,
    /// Free on a buddy list, with the block's order.
    Free(u8),
    /// Free on a per-CPU list.
    Pcp,
    /// A slab of the cache with this id.
    Slab(u32),
    /// A large kmalloc block.
    KmallocLarge,
    /// Backing vmalloc.
    Vmalloc,
    /// A page table.
    PageTable,
    /// A per-CPU chunk.
    Percpu,
    /// Any other allocation.
    Allocated,
    /// A HighMem page with `kmap` users now (mapped in a pkmap slot).
    Kmapped,
}

impl Class {
    /// The class of a frame state.
    pub fn of(s: FrameState) -> Class {
        match s {
            FrameState::Hole => Class::Hole,
            FrameState::Reserved => Class::Reserved,
            FrameState::Free { order } => Class::Free(order),
            FrameState::Pcp { .. } => Class::Pcp,
            FrameState::Slab { cache_id } => Class::Slab(cache_id),
            FrameState::KmallocLarge => Class::KmallocLarge,
            FrameState::Vmalloc => Class::Vmalloc,
            FrameState::PageTable => Class::PageTable,
            FrameState::Percpu => Class::Percpu,
            FrameState::Allocated { .. } => Class::Allocated,
        }
    }
}

/// One cell: its dominant class and whether that class's frames were HighMem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The dominant class.
    pub class: Class,
    /// True if the dominant frames lie in a HighMem zone.
    pub highmem: bool,
}

/// A zone's frame range, for the zone gutter and the legend.
#[derive(Clone, Debug)]
pub struct ZoneSpan {
    /// Node id.
    pub node: usize,
    /// Zone type.
    pub zone: ZoneType,
    /// First and one-past-last frame.
    pub pfns: (usize, usize),
}

/// A machine's frames as a grid of cells, with exact counts.
#[derive(Debug)]
pub struct FrameMap {
    /// Cells per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Frames per cell (1, or a power of two when downscaled).
    pub frames_per_cell: usize,
    /// Frames mapped (`max_pfn`).
    pub frames: usize,
    /// Cells, row by row (`width * height`; cells past the last frame are holes).
    pub cells: Vec<Cell>,
    /// Exact frames per class over the whole machine, and how many of them were HighMem.
    pub counts: HashMap<Class, (u64, u64)>,
    /// Populated zones.
    pub zones: Vec<ZoneSpan>,
    /// Slab cache names by id (merged caches under their first name).
    pub cache_names: HashMap<u32, String>,
}

/// Picks the grid: `width` 512 for up to 256 Ki cells, else 1024; frames per cell the
/// smallest power of two that keeps the grid within `max_cells`.
pub fn geometry(frames: usize, max_cells: usize) -> (usize, usize, usize) {
    let mut fpc = 1;
    while frames.div_ceil(fpc) > max_cells {
        fpc *= 2;
    }
    let cells = frames.div_ceil(fpc).max(1);
    let width = if cells <= 256 << 10 { 512 } else { 1024 };
    (width, cells.div_ceil(width), fpc)
}

impl FrameMap {
    /// Walks the machine's frames (lock-free, while it runs: a sample) into a grid of at most
    /// `max_cells` cells.
    pub fn build(m: &Machine, max_cells: usize) -> FrameMap {
        let frames = m.max_pfn().as_usize();
        let (width, height, fpc) = geometry(frames, max_cells);
        let mut cells = Vec::with_capacity(width * height);
        let mut counts: HashMap<Class, (u64, u64)> = HashMap::new();
        // The classes of the cell being filled, with frame counts (few per cell).
        let mut acc: Vec<(Cell, usize)> = Vec::new();
        let mut filled = 0;
        // Frames kmapped now are drawn as such, over the state of their block.
        let mut kmapped = std::collections::BTreeSet::new();
        m.for_each_kmapped(|pfn| {
            kmapped.insert(pfn.as_usize());
        });
        let mut add = |cell: Cell, mut pfn: usize, end: usize| {
            let e = counts.entry(cell.class).or_default();
            e.0 += (end - pfn) as u64;
            if cell.highmem {
                e.1 += (end - pfn) as u64;
            }
            while pfn < end {
                let take = (fpc - filled).min(end - pfn);
                match acc.iter_mut().find(|(c, _)| *c == cell) {
                    Some((_, k)) => *k += take,
                    None => acc.push((cell, take)),
                }
                filled += take;
                pfn += take;
                if filled == fpc {
                    cells.push(dominant(&acc));
                    acc.clear();
                    filled = 0;
                }
            }
        };
        m.for_each_frame_block(0..frames, |first, n, f| {
            let cell = Cell { class: Class::of(f.state), highmem: f.is_highmem() };
            let (mut pfn, end) = (first.as_usize(), first.as_usize() + n);
            for &k in kmapped.range(pfn..end) {
                add(cell, pfn, k);
                add(Cell { class: Class::Kmapped, highmem: true }, k, k + 1);
                pfn = k + 1;
            }
            add(cell, pfn, end);
        });
        if filled != 0 {
            cells.push(dominant(&acc));
        }
        cells.resize(width * height, Cell { class: Class::Hole, highmem: false });
        let zones = m
            .zones()
            .filter(|z| z.is_populated())
            .map(|z| ZoneSpan {
                node: z.node(),
                zone: z.zone_type(),
                pfns: (z.start_pfn().as_usize(), z.end_pfn().as_usize()),
            })
            .collect();
        let mut cache_names = HashMap::new();
        m.for_each_cache(|c| {
            cache_names.insert(c.id(), c.name().to_owned());
        });
        FrameMap { width, height, frames_per_cell: fpc, frames, cells, counts, zones, cache_names }
    }

    /// The zone of the frames a row starts with (`None`: a hole or no zone).
    pub fn row_zone(&self, row: usize) -> Option<&ZoneSpan> {
        let first = row * self.width * self.frames_per_cell;
        let last = (first + self.width * self.frames_per_cell).min(self.frames);
        // The zone holding most of the row's frames.
        self.zones
            .iter()
            .map(|z| (z, last.min(z.pfns.1).saturating_sub(first.max(z.pfns.0))))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
            .map(|(z, _)| z)
    }

    /// The name of a slab cache (`cache#ID` if it was destroyed meanwhile).
    pub fn cache_name(&self, id: u32) -> String {
        self.cache_names.get(&id).cloned().unwrap_or_else(|| format!("cache#{id}"))
    }
}

/// Cells of the PNG map at most (1024 x 1024).
pub const PNG_MAX_CELLS: usize = 1 << 20;
/// Cells of the SVG map at most (512 x 512: an SVG has one element per run of cells).
pub const SVG_MAX_CELLS: usize = 256 << 10;
/// Slab caches the PNG legend names (the SVG and the terminal legend name all).
const PNG_LEGEND_CACHES: usize = 12;

/// The two map files, created (so that an unwritable path fails before any work is done)
/// and not yet written.
#[derive(Debug)]
pub struct MapFiles {
    /// Where the PNG goes.
    pub png: PathBuf,
    /// Where the SVG goes.
    pub svg: PathBuf,
    files: (File, File),
}

/// The map's file name without extension when none is given, or inside a directory.
pub const DEFAULT_MAP: &str = "kmem-pfmap";

/// The PNG and SVG paths for `path`: a directory (an existing one, or any path ending in
/// `/`) gets [`DEFAULT_MAP`]`.png` and `.svg` inside it; `x.png` or `x.svg` name one and
/// imply the other; anything else gets both extensions appended (`maps/run1` ->
/// `maps/run1.png`, `maps/run1.svg`).
pub fn map_paths(path: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::ffi::OsStrExt;
    if path.is_dir() || path.as_os_str().as_bytes().ends_with(b"/") {
        let base = path.join(DEFAULT_MAP);
        return (base.with_extension("png"), base.with_extension("svg"));
    }
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => (path.to_owned(), path.with_extension("svg")),
        Some("svg") => (path.with_extension("png"), path.to_owned()),
        _ => {
            let with = |ext: &str| {
                let mut s = OsString::from(path.as_os_str());
                s.push(ext);
                PathBuf::from(s)
            };
            (with(".png"), with(".svg"))
        }
    }
}

impl MapFiles {
    /// Creates (truncates) both files of `path` (see [`map_paths`]).
    pub fn create(path: &Path) -> Result<MapFiles, String> {
        let (png, svg) = map_paths(path);
        let open =
            |p: &Path| File::create(p).map_err(|e| format!("cannot write the page-frame map {}: {e}", p.display()));
        let files = (open(&png)?, open(&svg)?);
        Ok(MapFiles { png, svg, files })
    }

    /// Walks the machine's frames and writes both maps. `title` heads them; `extra` lines
    /// are appended to the SVG's legend. Returns the legend as text lines (all caches).
    pub fn write(self, m: &Machine, title: &str, extra: &[String]) -> Result<Vec<String>, String> {
        let err = |p: &Path, e: String| format!("cannot write the page-frame map {}: {e}", p.display());
        let map = FrameMap::build(m, PNG_MAX_CELLS);
        let all = legend::entries(&map, usize::MAX);
        png::write(BufWriter::new(self.files.0), &map, title, &legend::entries(&map, PNG_LEGEND_CACHES))
            .map_err(|e| err(&self.png, e))?;
        let png_note = legend::scale_note(&map);
        let small = if map.cells.len() > SVG_MAX_CELLS { FrameMap::build(m, SVG_MAX_CELLS) } else { map };
        let mut out = BufWriter::new(self.files.1);
        out.write_all(svg::render(&small, title, &legend::entries(&small, usize::MAX), extra).as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| err(&self.svg, e.to_string()))?;
        let mut text = vec![format!("  PNG: {png_note}")];
        if small.frames_per_cell != 1 {
            text.push(format!("  SVG: {}", svg::scale_note(&small)));
        }
        text.extend(legend::text(&all));
        Ok(text)
    }
}

/// The class most frames of a cell share; ties go to the first seen (lowest pfn).
fn dominant(acc: &[(Cell, usize)]) -> Cell {
    let mut best = acc[0];
    for &e in &acc[1..] {
        if e.1 > best.1 {
            best = e;
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_downscales_by_powers_of_two() {
        assert_eq!(geometry(65536, 1 << 20), (512, 128, 1));
        // 4 GiB x86-64 with the PCI hole: max_pfn 5 GiB = 1310720 frames.
        assert_eq!(geometry(1310720, 1 << 20), (1024, 640, 2));
        assert_eq!(geometry(1310720, 256 << 10), (512, 320, 8));
        assert_eq!(geometry(0, 1 << 20), (512, 1, 1));
    }

    #[test]
    fn a_downscaled_map_keeps_exact_counts() {
        kmem_hosted::pin_current_thread(0);
        let m = kmem_hosted::MachineBuilder::new().ram_mib(256).cpus(1).build().unwrap();
        let b = m.alloc_pages(kmem::Gfp::KERNEL, kmem::Order::of(9)).unwrap();
        let full = FrameMap::build(&m, PNG_MAX_CELLS);
        let small = FrameMap::build(&m, 16 << 10);
        assert_eq!((full.width, full.height, full.frames_per_cell), (512, 128, 1));
        assert_eq!((small.width, small.height, small.frames_per_cell), (512, 32, 4));
        assert_eq!(full.counts, small.counts, "the legend does not depend on the scale");
        assert_eq!(full.counts.values().map(|c| c.0).sum::<u64>(), 65536);
        assert_eq!(full.counts[&Class::Allocated].0, 512);
        // The order-9 block: 512 frames from a 512-aligned pfn, one full row at full scale,
        // 128 cells at 4 frames per cell.
        let row = b.pfn().as_usize() / 512;
        assert!(full.cells[row * 512..(row + 1) * 512].iter().all(|c| c.class == Class::Allocated));
        let first = b.pfn().as_usize() / 4;
        assert!(small.cells[first..first + 128].iter().all(|c| c.class == Class::Allocated));
        assert_eq!(full.row_zone(0).map(|z| z.zone), Some(ZoneType::Dma));
        assert_eq!(full.row_zone(127).map(|z| z.zone), Some(ZoneType::Dma32));
        assert!(full.cache_names.values().any(|n| n == "kmem_cache"));
        // SAFETY: ours.
        unsafe { m.__free_pages(b, kmem::Order::of(9)) };
    }

    #[test]
    fn dominant_ties_go_to_the_first() {
        let c = |class| Cell { class, highmem: false };
        assert_eq!(dominant(&[(c(Class::Pcp), 2), (c(Class::Free(3)), 2)]).class, Class::Pcp);
        assert_eq!(dominant(&[(c(Class::Pcp), 1), (c(Class::Slab(4)), 3)]).class, Class::Slab(4));
    }
}
