//! The SVG page-frame map, written by hand: the title, the map as run-length rectangles (one
//! per run of equal cells in a row, each with a hover `<title>`: state, pfn range, owner,
//! zone) with a zone gutter on the left, a pfn / physical-address axis on the right and the
//! frame offset within a row on top, and the full legend as text: every state with its
//! fill, exact frame count and size, the slab caches, the zones with their frame ranges, the
//! scale, what "other allocation" is, and any extra lines (the unusable free space index).
//! Patterned fills (slab caches past the palette) are `<pattern>`s in `<defs>`, one per fill,
//! with ids from [`Fill::svg_id`]. A cell is [`SCALE`] x [`SCALE`] units, so that a viewer at
//! 100% shows runs tall enough to hover. Text uses the generic `monospace` family.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::legend::{self, Entry, Fill, Fills};
use super::{axis, Cell, FrameMap};

const MARGIN: usize = 8;
const GUTTER: usize = 6;
const GAP: usize = 2;
const LINE: usize = 14;
/// Units per cell of the map (the viewer's pixels at 100%).
pub const SCALE: usize = 2;
/// Width of the pfn axis right of the map (tick and label).
const AXIS_W: usize = 140;
/// Characters of the footnote's lines.
const NOTE_CHARS: usize = 100;

/// Escapes text for SVG content.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The `<defs>` for the patterned fills among `fills`: a ground rectangle and one unit square
/// of ink wherever [`legend::Pattern::ink_at`] says, over a 4 x 4 tile in map coordinates (so the
/// SVG's hatching lines up with the PNG's).
fn defs(fills: impl IntoIterator<Item = Fill>) -> String {
    let mut by_id = BTreeMap::new();
    for f in fills {
        if let Some(id) = f.svg_id() {
            by_id.insert(id, f);
        }
    }
    let mut s = String::from("<defs>\n");
    for (id, f) in by_id {
        let _ = write!(
            s,
            r#"<pattern id="{id}" patternUnits="userSpaceOnUse" width="4" height="4"><rect width="4" height="4" fill="{}"/>"#,
            legend::hex(f.colour)
        );
        let ink = legend::hex(f.ink());
        for y in 0..4 {
            for x in 0..4 {
                if f.pattern.ink_at(x, y) {
                    let _ = write!(s, r#"<rect x="{x}" y="{y}" width="1" height="1" fill="{ink}"/>"#);
                }
            }
        }
        s.push_str("</pattern>\n");
    }
    s.push_str("</defs>\n");
    s
}

/// The hover title of the run of `cell` from column `a` to `b` (exclusive) of `row`.
fn title(map: &FrameMap, row: usize, (a, b): (usize, usize), cell: Cell) -> String {
    let first = (row * map.width + a) * map.frames_per_cell;
    let end = ((row * map.width + b) * map.frames_per_cell).min(map.frames);
    if first >= map.frames {
        return format!("past the last frame (max_pfn {:#x})", map.frames);
    }
    let n = end - first;
    let mut t = format!(
        "{}\npfn {first:#x}-{:#x} ({n} frame{}, {}) = phys {:#x}-{:#x}\nowner: {}",
        legend::label(map, cell.class),
        end - 1,
        if n == 1 { "" } else { "s" },
        axis::addr(n as u64 * 4096),
        first as u64 * 4096,
        end as u64 * 4096 - 1,
        legend::owner(map, cell.class)
    );
    if let Some(z) = map.zones.iter().find(|z| (z.pfns.0..z.pfns.1).contains(&first)) {
        let _ = write!(t, "\nzone: node {} {}{}", z.node, z.zone.name(), if cell.highmem { " (HighMem)" } else { "" });
    }
    if map.frames_per_cell > 1 {
        let _ = write!(t, "\n(each cell {} frames, shown as their dominant state)", map.frames_per_cell);
    }
    t
}

/// What one cell of the SVG stands for.
pub fn scale_note(map: &FrameMap) -> String {
    legend::scale_note(map).replacen("1 pixel", &format!("1 cell ({SCALE}x{SCALE} px)"), 1)
}

/// Renders the SVG document.
pub fn render(map: &FrameMap, title_text: &str, entries: &[Entry], extra: &[String]) -> String {
    let fills = Fills::of(map);
    let note = legend::wrap(legend::OTHER_NOTE, NOTE_CHARS);
    let map_w = GUTTER + GAP + map.width * SCALE;
    let zone_lines = map.zones.len() + 1;
    let legend_lines = entries.len() + 2 + zone_lines + extra.len() + 1 + note.len() + 1;
    let top = MARGIN + 4 * LINE + 12;
    // Wide enough for the map and its axis, and the longest line of text (11 px monospace:
    // ~6.7 px a char).
    let longest = extra.iter().map(|l| l.len()).chain([title_text.len() + 21, NOTE_CHARS]).max().unwrap_or(0);
    let w = (2 * MARGIN + map_w + AXIS_W).max(2 * MARGIN + longest * 7);
    let h = top + map.height * SCALE + MARGIN + LINE + legend_lines * LINE + MARGIN;
    let mut s = String::with_capacity(64 * 1024);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="monospace" font-size="11" xml:space="preserve">"#
    );
    let used = map.cells.iter().map(|&c| fills.cell(c)).chain(entries.iter().map(|e| e.fill));
    s.push_str(&defs(used.collect::<std::collections::HashSet<_>>()));
    let _ = writeln!(s, r##"<rect width="{w}" height="{h}" fill="#242424"/>"##);
    let _ = writeln!(
        s,
        r##"<g fill="#eeeeee"><text x="{MARGIN}" y="{}">kmem page-frame map: {}</text>"##,
        MARGIN + 10,
        esc(title_text)
    );
    let _ = writeln!(s, r#"<text x="{MARGIN}" y="{}">{}</text>"#, MARGIN + 10 + LINE, esc(&scale_note(map)));
    let x0 = MARGIN + GUTTER + GAP;
    let xr = x0 + map.width * SCALE;
    s.push_str(&axes(map, x0, xr, top));
    let _ = writeln!(s, "</g>");
    // The zone gutter, then the map: one rect per run of equal cells in a row, in cell
    // units scaled by SCALE (so that the runs are big enough to hover).
    let _ = writeln!(s, r#"<g shape-rendering="crispEdges">"#);
    for row in 0..map.height {
        if let Some(z) = map.row_zone(row) {
            let _ = writeln!(
                s,
                r#"<rect x="{MARGIN}" y="{}" width="{GUTTER}" height="{SCALE}" fill="{}"><title>node {} {}</title></rect>"#,
                top + row * SCALE,
                legend::hex(legend::zone_colour(z.zone, z.node)),
                z.node,
                z.zone.name()
            );
        }
    }
    let _ = writeln!(s, r#"<g transform="translate({x0} {top}) scale({SCALE})">"#);
    for row in 0..map.height {
        let cells = &map.cells[row * map.width..(row + 1) * map.width];
        let mut start = 0;
        while start < cells.len() {
            let c = cells[start];
            let mut end = start + 1;
            while end < cells.len() && cells[end] == c {
                end += 1;
            }
            let _ = writeln!(
                s,
                r#"<rect x="{start}" y="{row}" width="{}" height="1" fill="{}"><title>{}</title></rect>"#,
                end - start,
                fills.cell(c).svg_paint(),
                esc(&title(map, row, (start, end), c))
            );
            start = end;
        }
    }
    let _ = writeln!(s, "</g>\n</g>");
    // The legend.
    let mut y = top + map.height * SCALE + MARGIN + LINE + 10;
    let _ = writeln!(s, r##"<g fill="#eeeeee">"##);
    let _ = writeln!(s, r#"<text x="{MARGIN}" y="{y}">Legend (exact frame counts; 1 frame = 4 KiB):</text>"#);
    y += LINE;
    for e in entries {
        let mib = e.frames as f64 * 4.0 / 1024.0;
        let _ = writeln!(
            s,
            r##"<rect x="{MARGIN}" y="{}" width="12" height="12" fill="{}" stroke="#606060"/><text x="{}" y="{y}">{:<34} {:>9} frames {:>10.1} MiB</text>"##,
            y - 10,
            e.fill.svg_paint(),
            MARGIN + 18,
            esc(&e.label),
            e.frames,
            mib
        );
        y += LINE;
    }
    for l in &note {
        let _ = writeln!(s, r#"<text x="{MARGIN}" y="{y}">{}</text>"#, esc(l));
        y += LINE;
    }
    y += LINE;
    let _ = writeln!(s, r#"<text x="{MARGIN}" y="{y}">Zones (gutter colour, frame range):</text>"#);
    y += LINE;
    for z in &map.zones {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y}">Node {} {:<8} pfn {:#x}-{:#x}</text>"#,
            MARGIN + 18,
            z.node,
            z.zone.name(),
            z.pfns.0,
            z.pfns.1
        );
        y += LINE;
    }
    for l in extra {
        let _ = writeln!(s, r#"<text x="{MARGIN}" y="{y}">{}</text>"#, esc(l));
        y += LINE;
    }
    let _ = writeln!(s, "</g>\n</svg>");
    s
}

/// The axes as SVG: the frame offset within a row along the top (ticks every
/// [`axis::COL_STEP`] columns), the pfn and physical address of the row starts down the
/// right edge (`x0`: the map's left edge, `xr`: its right edge).
fn axes(map: &FrameMap, x0: usize, xr: usize, top: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, r##"<text x="{MARGIN}" y="{}" fill="#aaaaaa">{}</text>"##, top - 12 - LINE, axis::NOTE);
    for (col, off) in axis::col_ticks(map) {
        let x = x0 + col * SCALE;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{}" width="1" height="4" fill="#aaaaaa"/><text x="{x}" y="{}">{}</text>"##,
            top - 4,
            top - 6,
            axis::offset_label(off)
        );
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}">pfn = address</text>"#, xr + 6, top - 12);
    for (row, pfn) in axis::row_ticks(map, (LINE + 4).div_ceil(SCALE)) {
        let y = top + row * SCALE;
        let _ = writeln!(
            s,
            r##"<rect x="{xr}" y="{y}" width="4" height="1" fill="#aaaaaa"/><text x="{}" y="{}">{}</text>"##,
            xr + 6,
            y + 4,
            axis::pfn_label(pfn)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfmap::{Cell, Class};
    use std::collections::HashMap;

    #[test]
    fn runs_become_one_rect_and_the_legend_is_text() {
        let mut cells = vec![Cell { class: Class::Free(10), highmem: false }; 512];
        cells[0] = Cell { class: Class::Slab(3), highmem: false };
        let map = FrameMap {
            width: 512,
            height: 1,
            frames_per_cell: 1,
            frames: 512,
            cells,
            counts: HashMap::from([(Class::Free(10), (511, 0)), (Class::Slab(3), (1, 0))]),
            zones: Vec::new(),
            cache_names: HashMap::from([(3, "dentry".to_owned())]),
        };
        let entries = legend::entries(&map, 8);
        let s = render(&map, "a <test>", &entries, &["Node 0, zone      DMA 0.000".to_owned()]);
        assert!(s.starts_with("<svg xmlns="));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt;test&gt;"));
        let free = legend::hex(legend::colour(Class::Free(10)));
        assert!(s.contains(&format!(r#"width="511" height="1" fill="{free}""#)), "one rect for the run");
        assert!(s.contains("slab: dentry"));
        assert!(s.contains("free, buddy order 10"));
        assert!(s.contains("Node 0, zone      DMA 0.000"));
    }
}
