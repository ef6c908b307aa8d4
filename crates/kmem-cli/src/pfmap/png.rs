//! The PNG page-frame map: a title, the map (one pixel per cell) with a zone gutter on the
//! left, and a legend strip of coloured boxes with labels in the built-in bitmap font.

use std::io::Write;

use super::font;
use super::legend::{self, Entry, Rgb};
use super::FrameMap;

const MARGIN: usize = 6;
const GUTTER: usize = 6;
const GAP: usize = 2;
const LINE: usize = font::HEIGHT + 4;
const COL_W: usize = 172;
const BOX: usize = 9;
const BACKGROUND: Rgb = [0x24, 0x24, 0x24];
const TEXT: Rgb = [0xee, 0xee, 0xee];

/// An RGB raster.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        let mut px = Vec::with_capacity(w * h * 3);
        for _ in 0..w * h {
            px.extend_from_slice(&BACKGROUND);
        }
        Self { w, h, px }
    }
    fn set(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }
    /// Draws `text`, cut to `max_w` pixels.
    fn text(&mut self, text: &str, x: usize, y: usize, max_w: usize) {
        let fit: String = text.chars().take(max_w / (font::WIDTH + 1)).collect();
        font::draw(&fit, x, y, |px, py| self.set(px, py, TEXT));
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
    let w = (2 * MARGIN + GUTTER + GAP + map.width).max(2 * MARGIN + 3 * COL_W);
    let cols = ((w - 2 * MARGIN) / COL_W).max(1);
    let top = MARGIN + 2 * LINE + 2;
    let h = top + map.height + MARGIN + n.div_ceil(cols) * LINE + MARGIN;
    (w, h, cols, top)
}

/// Renders the PNG's pixels: (width, height, RGB bytes).
pub fn render(map: &FrameMap, title: &str, entries: &[Entry]) -> (usize, usize, Vec<u8>) {
    let (w, h, cols, top) = layout(map, entries.len());
    let mut c = Canvas::new(w, h);
    c.text(title, MARGIN, MARGIN, w - 2 * MARGIN);
    c.text(&legend::scale_note(map), MARGIN, MARGIN + LINE, w - 2 * MARGIN);
    let x0 = MARGIN + GUTTER + GAP;
    for row in 0..map.height {
        if let Some(z) = map.row_zone(row) {
            c.fill(MARGIN, top + row, GUTTER, 1, legend::zone_colour(z.zone, z.node));
        }
        for col in 0..map.width {
            c.set(x0 + col, top + row, legend::cell_colour(map.cells[row * map.width + col]));
        }
    }
    let ly = top + map.height + MARGIN;
    for (i, e) in entries.iter().enumerate() {
        let (x, y) = (MARGIN + (i % cols) * COL_W, ly + (i / cols) * LINE);
        // A light frame around each box keeps dark colours (holes, deep free blocks) visible.
        c.fill(x, y, BOX, BOX, [0x60, 0x60, 0x60]);
        c.fill(x + 1, y + 1, BOX - 2, BOX - 2, e.colour);
        let label = format!("{} {}", legend::short_label(&e.label), short_size(e.frames));
        c.text(&label, x + BOX + 4, y + 1, COL_W - BOX - 8);
    }
    (w, h, c.px)
}

/// Writes the PNG to `out`.
pub fn write(out: impl Write, map: &FrameMap, title: &str, entries: &[Entry]) -> Result<(), String> {
    let (w, h, px) = render(map, title, entries);
    let mut enc = png::Encoder::new(out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let mut wr = enc.write_header().map_err(|e| e.to_string())?;
    wr.write_image_data(&px).map_err(|e| e.to_string())?;
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
