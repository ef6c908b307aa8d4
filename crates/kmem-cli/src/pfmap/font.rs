//! Text for the PNG map: DejaVu Sans Mono (bundled in `font/` as a 15 KB subset: ASCII,
//! Latin-1 and a few punctuation marks; how it was cut and the licence are in
//! `font/LICENSE`), rasterised with `ab_glyph` into anti-aliased coverage. Characters
//! outside the subset draw as the font's missing-glyph box.
//!
//! A monospace face keeps the layout arithmetic simple: every character advances by
//! [`advance`] pixels, so a column of labels is `chars * advance` wide.

use std::sync::OnceLock;

use ab_glyph::{point, Font as _, FontArc, PxScale, ScaleFont as _};

/// DejaVu Sans Mono 2.37, subset (Bitstream Vera licence, see `font/LICENSE`).
const DEJAVU_SANS_MONO: &[u8] = include_bytes!("font/DejaVuSansMono-Latin1.ttf");

/// Text size of the labels, in pixels (the em height).
pub const SIZE: f32 = 12.0;

fn face() -> &'static FontArc {
    static FACE: OnceLock<FontArc> = OnceLock::new();
    FACE.get_or_init(|| FontArc::try_from_slice(DEJAVU_SANS_MONO).expect("the bundled font parses"))
}

/// How far each character moves the pen at `size` pixels.
pub fn advance(size: f32) -> f32 {
    let f = face().as_scaled(PxScale::from(size));
    f.h_advance(f.glyph_id('0'))
}

/// How many characters fit in `px` pixels at `size`.
pub fn fit(px: usize, size: f32) -> usize {
    (px as f32 / advance(size)).floor() as usize
}

/// Calls `set(x, y, coverage)` (coverage in 0..=1) for every pixel that `text`, drawn at
/// `size` pixels with its top-left corner at `(x0, y0)`, touches. Characters the subset
/// lacks are drawn as its missing-glyph box.
pub fn draw(text: &str, x0: usize, y0: usize, size: f32, mut set: impl FnMut(usize, usize, f32)) {
    let font = face();
    let scaled = font.as_scaled(PxScale::from(size));
    let baseline = y0 as f32 + scaled.ascent();
    let mut pen = x0 as f32;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        let glyph = id.with_scale_and_position(size, point(pen, baseline));
        pen += scaled.h_advance(id);
        let Some(outline) = font.outline_glyph(glyph) else { continue };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, cov| {
            let (x, y) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
            if x >= 0 && y >= 0 && cov > 0.0 {
                set(x as usize, y as usize, cov.min(1.0));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monospace_text_lands_inside_its_box() {
        let adv = advance(SIZE);
        assert!((6.0..9.0).contains(&adv), "12 px DejaVu Sans Mono advances ~7.2 px, got {adv}");
        let scaled = face().as_scaled(PxScale::from(SIZE));
        let h = (scaled.ascent() - scaled.descent()).ceil() as usize;
        let (mut n, mut max_x, mut max_y) = (0, 0, 0);
        draw("kmem 0x1f", 10, 20, SIZE, |x, y, cov| {
            assert!(x >= 10 && y >= 20 && (0.0..=1.0).contains(&cov));
            n += 1;
            max_x = max_x.max(x);
            max_y = max_y.max(y);
        });
        assert!(n > 50, "glyphs are drawn ({n} pixels)");
        assert!(max_x < 10 + (9.0 * adv).ceil() as usize && max_y < 20 + h);
        let mut blank = 0;
        draw("   ", 0, 0, SIZE, |_, _, _| blank += 1);
        assert_eq!(blank, 0, "spaces draw nothing");
        let mut missing = 0;
        draw("\u{4e2d}", 0, 0, SIZE, |_, _, _| missing += 1);
        assert!(missing > 10, "a character outside the subset draws the missing-glyph box");
        let (mut e, mut a) = (0, 0);
        draw("\u{e9}", 0, 0, SIZE, |_, _, _| e += 1);
        draw("e", 0, 0, SIZE, |_, _, _| a += 1);
        assert!(e > a, "Latin-1 is in the subset: e acute has its accent");
        assert_eq!(fit(72, SIZE), (72.0 / adv) as usize);
    }
}
