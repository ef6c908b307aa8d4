//! The PNG page-frame map: a title, the map (one pixel per cell) with a zone gutter on the
//! left, a pfn / physical-address axis on the right and the frame offset within a row on
//! top, and a legend of coloured (for slab caches past the palette: patterned) boxes with
//! labels in columns, then what "other allocation" is. Text is DejaVu Sans Mono ([`font`]).

use std::io::Write;

use super::font;
use super::legend::{self, Entry, Fill, Fills, Rgb};
use super::{axis, FrameMap};

const MARGIN: usize = 6;
const GUTTER: usize = 6;
const GAP: usize = 2;
const LINE: usize = 16;
const COL_W: usize = 234;
const BOX: usize = 11;
/// Width of the pfn axis right of the map: tick, gap, `0x140000 = 5 GiB`.
const AXIS_W: usize = 7 + 136;
const BACKGROUND: Rgb = [0x24, 0x24, 0x24];
const TEXT: Rgb = [0xee, 0xee, 0xee];
const DIM_TEXT: Rgb = [0xaa, 0xaa, 0xaa];

/// An RGB raster (also the `kmem demo --pressure` plot's: `crate::pressure_png`).
pub(crate) struct Canvas {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) px: Vec<u8>,
}

impl Canvas {
    pub(crate) fn new(w: usize, h: usize) -> Self {
        let mut px = Vec::with_capacity(w * h * 3);
        for _ in 0..w * h {
            px.extend_from_slice(&BACKGROUND);
        }
        Self { w, h, px }
    }
    pub(crate) fn set(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    /// Blends `c` over the pixel with `alpha` (0..=1).
    fn blend(&mut self, x: usize, y: usize, c: Rgb, alpha: f32) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            for (k, &v) in c.iter().enumerate() {
                let old = self.px[i + k] as f32;
                self.px[i + k] = (old + (v as f32 - old) * alpha).round() as u8;
            }
        }
    }
    pub(crate) fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }
    /// Draws `text` in `colour` with its top left at `(x, y)`, cut to `max_w` pixels.
    pub(crate) fn text(&mut self, text: &str, x: usize, y: usize, max_w: usize, colour: Rgb) {
        let fit: String = text.chars().take(font::fit(max_w, font::SIZE)).collect();
        font::draw(&fit, x, y, font::SIZE, |px, py, cov| self.blend(px, py, colour, cov));
    }
}

/// `12.3M`, `1.2G`, `512K`: a compact size for legend labels.
fn short_size(frames: u64) -> String {
    let kib = frames * 4;
    if kib >= 1 << 20 {
        format!("{:.1}G", kib as f64 / (1 << 20) as f64)
    } else if kib >= 10 << 10 {
        format!("{:.1}M", kib as f64 / 1024.0)
    } else {
        format!("{kib}K")
    }
}

/// The image's size for `map` and a legend of `n` entries: (width, height, legend columns,
/// map top).
fn layout(map: &FrameMap, n: usize) -> (usize, usize, usize, usize) {
    let w = (MARGIN + GUTTER + GAP + map.width + AXIS_W + MARGIN).max(2 * MARGIN + 3 * COL_W);
    let cols = ((w - 2 * MARGIN) / COL_W).max(1);
    let top = MARGIN + 4 * LINE + 8;
    let notes = note(w).len();
    let h = top + map.height + MARGIN + 4 + n.div_ceil(cols) * LINE + LINE / 2 + notes * LINE + MARGIN;
    (w, h, cols, top)
}

/// Where the map's first cell lies in the image: (x, y).
pub fn map_origin(map: &FrameMap) -> (usize, usize) {
    (MARGIN + GUTTER + GAP, layout(map, 0).3)
}

/// The footnote's lines for an image `w` pixels wide.
fn note(w: usize) -> Vec<String> {
    legend::wrap(legend::OTHER_NOTE, font::fit(w - 2 * MARGIN, font::SIZE))
}

/// Renders the PNG's pixels: (width, height, RGB bytes).
pub fn render(map: &FrameMap, title: &str, entries: &[Entry]) -> (usize, usize, Vec<u8>) {
    let (w, h, cols, top) = layout(map, entries.len());
    let fills = Fills::of(map);
    let mut c = Canvas::new(w, h);
    c.text(title, MARGIN, MARGIN, w - 2 * MARGIN, TEXT);
    c.text(&legend::scale_note(map), MARGIN, MARGIN + LINE, w - 2 * MARGIN, TEXT);
    let (x0, _) = map_origin(map);
    for row in 0..map.height {
        if let Some(z) = map.row_zone(row) {
            c.fill(MARGIN, top + row, GUTTER, 1, legend::zone_colour(z.zone, z.node));
        }
        for col in 0..map.width {
            c.set(x0 + col, top + row, fills.cell(map.cells[row * map.width + col]).at(col, row));
        }
    }
    axes(&mut c, map, x0, top);
    let ly = top + map.height + MARGIN + 4;
    let rows = entries.len().div_ceil(cols);
    for (i, e) in entries.iter().enumerate() {
        // Column by column, so that the free orders and the caches read down.
        let (x, y) = (MARGIN + (i / rows) * COL_W, ly + (i % rows) * LINE);
        // A light frame around each box keeps dark colours (holes, deep free blocks) visible.
        legend_box(&mut c, x, y + 2, e.fill);
        let label = format!("{} {}", legend::short_label(&e.label), short_size(e.frames));
        c.text(&label, x + BOX + 5, y, COL_W - BOX - 9, TEXT);
    }
    let ny = ly + rows * LINE + LINE / 2;
    for (i, l) in note(w).iter().enumerate() {
        c.text(l, MARGIN, ny + i * LINE, w - 2 * MARGIN, DIM_TEXT);
    }
    (w, h, c.px)
}

/// A legend box: a grey frame around the fill, its pattern at the box's own origin.
fn legend_box(c: &mut Canvas, x: usize, y: usize, fill: Fill) {
    c.fill(x, y, BOX, BOX, [0x60, 0x60, 0x60]);
    for dy in 1..BOX - 1 {
        for dx in 1..BOX - 1 {
            c.set(x + dx, y + dy, fill.at(dx, dy));
        }
    }
}

/// The axes: frame offsets along the top (a tick every [`axis::COL_STEP`] columns), the pfn
/// and physical address of the row starts down the right edge.
fn axes(c: &mut Canvas, map: &FrameMap, x0: usize, top: usize) {
    let label_y = top - 4 - LINE;
    c.text(axis::NOTE, MARGIN, label_y - LINE - 4, c.w - 2 * MARGIN, DIM_TEXT);
    for (col, off) in axis::col_ticks(map) {
        c.fill(x0 + col, top - 4, 1, 3, DIM_TEXT);
        c.text(&axis::offset_label(off), x0 + col, label_y, axis::COL_STEP - 4, DIM_TEXT);
    }
    let xr = x0 + map.width;
    c.text("pfn = address", xr + 7, label_y - 4, AXIS_W - 7, DIM_TEXT);
    for (row, pfn) in axis::row_ticks(map, LINE + 4) {
        let y = top + row;
        c.fill(xr, y.min(top + map.height.max(1) - 1), 5, 1, DIM_TEXT);
        c.text(&axis::pfn_label(pfn), xr + 7, y.saturating_sub(LINE / 2 - 1), AXIS_W - 7, DIM_TEXT);
    }
}

/// Writes the PNG to `out`.
pub fn write(out: impl Write, map: &FrameMap, title: &str, entries: &[Entry]) -> Result<(), String> {
    let (w, h, px) = render(map, title, entries);
    encode(out, w, h, &px)
}

/// Encodes an RGB raster of `w` x `h` as PNG into `out`.
pub(crate) fn encode(out: impl Write, w: usize, h: usize, px: &[u8]) -> Result<(), String> {
    let mut enc = png::Encoder::new(out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let mut wr = enc.write_header().map_err(|e| e.to_string())?;
    wr.write_image_data(px).map_err(|e| e.to_string())?;
    wr.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfmap::{Cell, Class};
    use std::collections::HashMap;

    fn tiny() -> FrameMap {
        let mut cells = vec![Cell { class: Class::Free(10), highmem: false }; 512 * 2];
        cells[0] = Cell { class: Class::Reserved, highmem: false };
        FrameMap {
            width: 512,
            height: 2,
            frames_per_cell: 1,
            frames: 1024,
            cells,
            counts: HashMap::from([(Class::Free(10), (1023, 0)), (Class::Reserved, (1, 0))]),
            zones: Vec::new(),
            cache_names: HashMap::new(),
        }
    }

    #[test]
    fn pixels_and_encoding() {
        let map = tiny();
        let entries = legend::entries(&map, 8);
        let (w, h, px) = render(&map, "test", &entries);
        assert_eq!(px.len(), w * h * 3);
        let at = |x: usize, y: usize| -> Rgb {
            let i = (y * w + x) * 3;
            [px[i], px[i + 1], px[i + 2]]
        };
        let (_, _, _, top) = layout(&map, entries.len());
        let x0 = MARGIN + GUTTER + GAP;
        assert_eq!(at(x0, top), legend::colour(Class::Reserved));
        assert_eq!(at(x0 + 1, top), legend::colour(Class::Free(10)));
        let mut buf = Vec::new();
        write(&mut buf, &map, "test", &entries).unwrap();
        assert_eq!(&buf[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(buf[16..20].try_into().unwrap()) as usize, w);
        assert_eq!(u32::from_be_bytes(buf[20..24].try_into().unwrap()) as usize, h);
    }

    #[test]
    fn sizes() {
        assert_eq!(short_size(1), "4K");
        assert_eq!(short_size(2560), "10.0M");
        assert_eq!(short_size(1 << 20), "4.0G");
    }
}
