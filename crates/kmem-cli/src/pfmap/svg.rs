//! The SVG page-frame map, written by hand: the title, the map as run-length rectangles (one
//! per run of same-coloured cells in a row) with a zone gutter, and the full legend as text:
//! every state with its colour, exact frame count and size, the slab caches, the zones with
//! their frame ranges, the scale, and any extra lines (the unusable free space index).

use std::fmt::Write as _;

use super::legend::{self, Entry};
use super::FrameMap;

const MARGIN: usize = 8;
const GUTTER: usize = 6;
const GAP: usize = 2;
const LINE: usize = 14;

/// Escapes text for SVG content.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Renders the SVG document.
pub fn render(map: &FrameMap, title: &str, entries: &[Entry], extra: &[String]) -> String {
    let map_w = GUTTER + GAP + map.width;
    let zone_lines = map.zones.len() + 1;
    let legend_lines = entries.len() + 2 + zone_lines + extra.len() + 1;
    let top = MARGIN + 2 * LINE + 4;
    // Wide enough for the map and the longest line of text (11 px monospace: ~6.7 px a char).
    let longest = extra.iter().map(|l| l.len()).chain([title.len() + 21, 90]).max().unwrap_or(0);
    let w = (2 * MARGIN + map_w).max(2 * MARGIN + longest * 7);
    let h = top + map.height + MARGIN + legend_lines * LINE + MARGIN;
    let mut s = String::with_capacity(64 * 1024);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="monospace" font-size="11" xml:space="preserve">"#
    );
    let _ = writeln!(s, r##"<rect width="{w}" height="{h}" fill="#242424"/>"##);
    let _ = writeln!(
        s,
        r##"<g fill="#eeeeee"><text x="{MARGIN}" y="{}">kmem page-frame map: {}</text>"##,
        MARGIN + 10,
        esc(title)
    );
    let _ =
        writeln!(s, r#"<text x="{MARGIN}" y="{}">{}</text></g>"#, MARGIN + 10 + LINE, esc(&legend::scale_note(map)));
    // The map: one rect per run of equal colours in a row.
    let _ = writeln!(s, r#"<g shape-rendering="crispEdges">"#);
    let x0 = MARGIN + GUTTER + GAP;
    for row in 0..map.height {
        let y = top + row;
        if let Some(z) = map.row_zone(row) {
            let _ = writeln!(
                s,
                r#"<rect x="{MARGIN}" y="{y}" width="{GUTTER}" height="1" fill="{}"/>"#,
                legend::hex(legend::zone_colour(z.zone, z.node))
            );
        }
        let cells = &map.cells[row * map.width..(row + 1) * map.width];
        let mut start = 0;
        while start < cells.len() {
            let c = legend::cell_colour(cells[start]);
            let mut end = start + 1;
            while end < cells.len() && legend::cell_colour(cells[end]) == c {
                end += 1;
            }
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{y}" width="{}" height="1" fill="{}"/>"#,
                x0 + start,
                end - start,
                legend::hex(c)
            );
            start = end;
        }
    }
    let _ = writeln!(s, "</g>");
    // The legend.
    let mut y = top + map.height + MARGIN + 10;
    let _ = writeln!(s, r##"<g fill="#eeeeee">"##);
    let _ = writeln!(s, r#"<text x="{MARGIN}" y="{y}">Legend (exact frame counts; 1 frame = 4 KiB):</text>"#);
    y += LINE;
    for e in entries {
        let mib = e.frames as f64 * 4.0 / 1024.0;
        let _ = writeln!(
            s,
            r##"<rect x="{MARGIN}" y="{}" width="10" height="10" fill="{}" stroke="#606060"/><text x="{}" y="{y}">{:<34} {:>9} frames {:>10.1} MiB</text>"##,
            y - 9,
            legend::hex(e.colour),
            MARGIN + 16,
            esc(&e.label),
            e.frames,
            mib
        );
        y += LINE;
    }
    y += LINE;
    let _ = writeln!(s, r#"<text x="{MARGIN}" y="{y}">Zones (gutter colour, frame range):</text>"#);
    y += LINE;
    for z in &map.zones {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y}">Node {} {:<8} pfn {:#x}-{:#x}</text>"#,
            MARGIN + 16,
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
