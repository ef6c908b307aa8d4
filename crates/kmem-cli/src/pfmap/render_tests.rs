//! What a reader of the maps relies on: the SVG's hover titles and axes, the legend's
//! explanation of "other allocation", distinguishable fills for more caches than hues, and
//! text in the PNG drawn with the bundled font.

use std::collections::HashMap;

use kmem::ZoneType;

use super::legend::{self, Fill, Fills, Pattern, SLAB_PALETTE};
use super::{png, svg, Cell, Class, FrameMap, ZoneSpan};

/// A 256 MiB map (512 x 128 cells): a slab of `dentry` at pfn 0x1000-0x1003, the other
/// allocation at 0x2000-0x21ff, the rest free order 10; `caches` more slab caches with
/// 100, 99, ... frames each (ids 100...) in row 64.
fn map_with(caches: usize) -> FrameMap {
    let free = Cell { class: Class::Free(10), highmem: false };
    let mut cells = vec![free; 512 * 128];
    let mut counts: HashMap<Class, (u64, u64)> = HashMap::new();
    let mut put = |cells: &mut Vec<Cell>, at: usize, n: usize, class: Class| {
        for c in &mut cells[at..at + n] {
            *c = Cell { class, highmem: false };
        }
        counts.entry(class).or_default().0 += n as u64;
    };
    put(&mut cells, 0x1000, 4, Class::Slab(3));
    put(&mut cells, 0x2000, 0x200, Class::Allocated);
    let mut names = HashMap::from([(3, "dentry".to_owned())]);
    let mut at = 64 * 512;
    for i in 0..caches {
        let id = 100 + i as u32;
        put(&mut cells, at, 100 - i, Class::Slab(id));
        names.insert(id, format!("cache{i}"));
        at += 100 - i;
    }
    let used: u64 = counts.values().map(|c| c.0).sum();
    counts.insert(Class::Free(10), (512 * 128 - used, 0));
    FrameMap {
        width: 512,
        height: 128,
        frames_per_cell: 1,
        frames: 512 * 128,
        cells,
        counts,
        zones: vec![
            ZoneSpan { node: 0, zone: ZoneType::Dma, pfns: (1, 0x1000) },
            ZoneSpan { node: 0, zone: ZoneType::Dma32, pfns: (0x1000, 0x10000) },
        ],
        cache_names: names,
    }
}

#[test]
fn svg_runs_have_hover_titles_and_the_map_has_axes() {
    let map = map_with(0);
    let s = svg::render(&map, "t", &legend::entries(&map, usize::MAX), &[]);
    // The dentry slab: one run of 4 frames with its state, pfn range, owner and zone.
    let dentry = Fills::of(&map).class(Class::Slab(3)).svg_paint();
    let at = s.find(&format!(r#"width="4" height="1" fill="{dentry}">"#)).expect("the dentry slab is one rect");
    let run = &s[at..at + s[at..].find("</rect>").expect("closed") + 7];
    assert!(
        run.contains("<title>slab: dentry\npfn 0x1000-0x1003 (4 frames, 16 KiB) = phys 0x1000000-0x1003fff\nowner: slab cache dentry\nzone: node 0 DMA32</title></rect>"),
        "{run}"
    );
    // The other allocation: 512 frames = one full row at 0x2000.
    assert!(s.contains("<title>other allocation*\npfn 0x2000-0x21ff (512 frames, 2 MiB) = phys 0x2000000-0x21fffff\nowner: an alloc_pages caller without an owner flag"));
    assert_eq!(s.matches("<title>").count(), s.matches("</title></rect>").count());
    assert!(s.matches("<title>").count() >= 128 + 3, "every row's runs and gutter carry titles");
    // The pfn / physical-address axis on the right (a tick every 32 rows, and max_pfn) and
    // the frame offsets on top.
    for label in ["pfn = address", "0x00000 = 0", "0x04000 = 64 MiB", "0x08000 = 128 MiB", "0x10000 = 256 MiB"] {
        assert!(s.contains(&format!(">{label}</text>")), "axis label {label}");
    }
    for label in ["+0x0", "+0x80", "+0x100", "+0x180"] {
        assert!(s.contains(&format!(">{label}</text>")), "offset label {label}");
    }
    assert!(s.contains(r#"font-family="monospace""#), "a generic font family");
}

#[test]
fn the_legend_explains_other_allocation() {
    let map = map_with(0);
    let entries = legend::entries(&map, usize::MAX);
    let other = entries.iter().find(|e| e.label.starts_with("other allocation")).expect("an entry");
    assert_eq!(other.frames, 0x200);
    assert!(other.label.ends_with('*'), "points at the footnote");
    let note = legend::OTHER_NOTE;
    for what in ["page allocator", "alloc_pages", "slab", "vmalloc", "per-CPU", "page-table", "drivers"] {
        assert!(note.contains(what), "the note names {what}");
    }
    let s = svg::render(&map, "t", &entries, &[]);
    assert!(s.contains(">* other allocation: pages handed out by the page allocator"), "in the SVG's legend");
    let text = legend::text(&entries).iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    assert!(text.contains(note), "in the terminal legend");
}

#[test]
fn caches_past_the_palette_get_distinguishable_fills() {
    let n = SLAB_PALETTE.len();
    let map = map_with(n + 2);
    let fills = Fills::of(&map);
    // Ranked by frames: cache0 (100 frames) first ... dentry (4 frames) last.
    let fill = |i: usize| fills.class(Class::Slab(100 + i as u32));
    let all: Vec<Fill> = (0..n + 2).map(fill).chain([fills.class(Class::Slab(3))]).collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "every cache its own fill");
        }
    }
    assert_eq!(fill(0), Fill::solid(SLAB_PALETTE[0]));
    assert_eq!(fill(n), Fill { colour: SLAB_PALETTE[0], pattern: Pattern::Hatch }, "hues run out: hatched");
    assert_eq!(fill(n + 1).pattern, Pattern::Hatch);
    // In the SVG: two pattern ids, each defined once and painted by the caches' runs and
    // their legend boxes.
    let s = svg::render(&map, "t", &legend::entries(&map, usize::MAX), &[]);
    let ids: Vec<String> = [fill(n), fill(n + 1)].iter().map(|f| f.svg_id().expect("patterned")).collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(s.matches(&format!(r#"<pattern id="{id}""#)).count(), 1, "{id} defined once");
        assert!(s.matches(&format!(r#"fill="url(#{id})""#)).count() >= 2, "{id} used by the run and the legend");
    }
    assert!(!s.contains(&format!("url(#fill-{}-solid)", &legend::hex(SLAB_PALETTE[0])[1..])), "solids are colours");
    // In the PNG: the hatched cache's run shows both its ground and its ink.
    let (w, _, px) = png::render(&map, "t", &legend::entries(&map, 12));
    let (x0, top) = png::map_origin(&map);
    let start = 64 * 512 + (0..n).map(|i| 100 - i).sum::<usize>();
    let row: Vec<[u8; 3]> = (start..start + 100 - n)
        .map(|cell| {
            let i = ((top + cell / 512) * w + x0 + cell % 512) * 3;
            [px[i], px[i + 1], px[i + 2]]
        })
        .collect();
    assert!(row.contains(&SLAB_PALETTE[0]) && row.contains(&fill(n).ink()), "hatched in the PNG");
}

#[test]
fn png_text_is_drawn_with_the_font() {
    let map = map_with(0);
    let entries = legend::entries(&map, 12);
    let (w, h, px) = png::render(&map, "t", &entries);
    let (_, top) = png::map_origin(&map);
    // The legend's area: below the map. Anti-aliased glyphs leave grey levels between the
    // background and the text colour, which a bitmap font never does.
    let (mut lit, mut partial) = (0, 0);
    for y in top + map.height + 4..h {
        for x in 0..w {
            let i = (y * w + x) * 3;
            let p = [px[i], px[i + 1], px[i + 2]];
            if p[0] == p[1] && p[1] == p[2] && p[0] > 0x24 {
                lit += 1;
                if p[0] < 0xe0 && ![0x60, 0x80, 0xaa].contains(&p[0]) {
                    partial += 1;
                }
            }
        }
    }
    assert!(lit > 2000, "the legend's labels are drawn ({lit} grey pixels)");
    assert!(partial > 500, "with anti-aliased edges ({partial} partial pixels)");
}
