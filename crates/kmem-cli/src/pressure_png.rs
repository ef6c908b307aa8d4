//! The PNG plot of `kmem demo --pressure`: free pages over the run (one sample per step of
//! allocations) against the min, low and high watermarks, with a strip below for the
//! intervals in which the shrinker was called and kswapd was woken. Drawn on the page-frame
//! map's raster and font ([`crate::pfmap::png`]), so the demo needs no chart library.

use std::io::Write;

use crate::pfmap::legend::Rgb;
use crate::pfmap::png::{encode, Canvas};

/// One point of the plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Free pages.
    pub free: usize,
    /// The shrinker was called since the previous point.
    pub shrinker: bool,
    /// kswapd was woken since the previous point.
    pub kswapd: bool,
}

const W: usize = 900;
const PLOT_H: usize = 320;
const LEFT: usize = 70;
const RIGHT: usize = 60;
const TOP: usize = 40;
const STRIP: usize = 14;
const LINE: usize = 16;
const H: usize = TOP + PLOT_H + 12 + 2 * (STRIP + 4) + 3 * LINE + 10;

const TEXT: Rgb = [0xee, 0xee, 0xee];
const DIM: Rgb = [0x70, 0x70, 0x70];
const FREE: Rgb = [0x4f, 0xc3, 0xf7];
const MIN: Rgb = [0xef, 0x53, 0x50];
const LOW: Rgb = [0xff, 0xb7, 0x4d];
const HIGH: Rgb = [0x81, 0xc7, 0x84];
const SHRINK: Rgb = [0xba, 0x68, 0xc8];
const KSWAPD: Rgb = [0xff, 0xee, 0x58];

/// Renders the plot: (width, height, RGB pixels).
pub fn render(points: &[Point], (min, low, high): (usize, usize, usize), title: &str) -> (usize, usize, Vec<u8>) {
    let mut c = Canvas::new(W, H);
    c.text(title, 8, 8, W - 16, TEXT);
    let top_val = points.iter().map(|p| p.free).max().unwrap_or(0).max(high * 2).max(1);
    let plot_w = W - LEFT - RIGHT;
    let y_of = |v: usize| TOP + PLOT_H - 1 - (v.min(top_val) * (PLOT_H - 1)) / top_val;
    let x_of = |i: usize| LEFT + if points.len() > 1 { i * (plot_w - 1) / (points.len() - 1) } else { 0 };
    // Axes and the y scale (pages).
    c.fill(LEFT - 1, TOP, 1, PLOT_H, DIM);
    c.fill(LEFT - 1, TOP + PLOT_H, plot_w + 1, 1, DIM);
    for k in 0..=4 {
        let v = top_val * k / 4;
        let y = y_of(v);
        c.fill(LEFT - 5, y, 4, 1, DIM);
        c.text(&v.to_string(), 4, y.saturating_sub(6), LEFT - 12, DIM);
    }
    // Watermarks: dashed lines, labelled on the right (labels pushed apart when the lines
    // are close, each at least a line of text above the one below).
    let mut label_y = usize::MAX;
    for (v, colour, name) in [(min, MIN, "min"), (low, LOW, "low"), (high, HIGH, "high")] {
        let y = y_of(v);
        for x in (LEFT..LEFT + plot_w).step_by(6) {
            c.fill(x, y, 3, 1, colour);
        }
        label_y = y.saturating_sub(6).min(label_y.saturating_sub(12));
        c.text(name, LEFT + plot_w + 6, label_y, RIGHT - 8, colour);
    }
    // Free pages: a line through the samples, two pixels thick; each column is joined to
    // the previous one by a vertical run, so steep edges stay connected.
    let mut last: Option<usize> = None;
    for (i, w) in points.windows(2).enumerate() {
        let (x0, x1) = (x_of(i), x_of(i + 1));
        let (y0, y1) = (y_of(w[0].free) as f64, y_of(w[1].free) as f64);
        for x in x0..=x1 {
            let t = if x1 > x0 { (x - x0) as f64 / (x1 - x0) as f64 } else { 1.0 };
            let y = (y0 + (y1 - y0) * t).round() as usize;
            let from = last.unwrap_or(y);
            c.fill(x, from.min(y), 2, from.max(y) - from.min(y) + 1, FREE);
            last = Some(y);
        }
    }
    if let [p] = points {
        c.fill(x_of(0), y_of(p.free), 2, 2, FREE);
    }
    // The reclaim strips.
    let strip_y = TOP + PLOT_H + 12;
    for (row, (colour, name, on)) in
        [(SHRINK, "shrinker", (|p: &Point| p.shrinker) as fn(&Point) -> bool), (KSWAPD, "kswapd", |p: &Point| p.kswapd)]
            .into_iter()
            .enumerate()
    {
        let y = strip_y + row * (STRIP + 4);
        c.text(name, 4, y, LEFT - 8, colour);
        for (i, p) in points.iter().enumerate().skip(1) {
            if on(p) {
                let (x0, x1) = (x_of(i - 1), x_of(i));
                c.fill(x0 + 1, y + 2, (x1 - x0).max(1), STRIP - 4, colour);
            }
        }
        c.fill(LEFT, y + STRIP - 1, plot_w, 1, DIM);
    }
    let ly = strip_y + 2 * (STRIP + 4) + 4;
    c.text("x: allocations (one sample per step); y: free pages, all zones", LEFT, ly, plot_w, DIM);
    let mut x = LEFT;
    for (colour, name) in [
        (FREE, "free pages"),
        (MIN, "min"),
        (LOW, "low"),
        (HIGH, "high watermark"),
        (SHRINK, "shrinker called"),
        (KSWAPD, "kswapd woken"),
    ] {
        c.fill(x, ly + LINE + 4, 10, 10, colour);
        c.text(name, x + 14, ly + LINE + 2, 140, TEXT);
        x += 14 + 8 * (name.len() + 2);
    }
    (c.w, c.h, c.px)
}

/// Writes the plot as PNG to `out`.
pub fn write(out: impl Write, points: &[Point], wmarks: (usize, usize, usize), title: &str) -> Result<(), String> {
    let (w, h, px) = render(points, wmarks, title);
    encode(out, w, h, &px)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(raster: &[u8], x: usize, y: usize) -> Rgb {
        let i = (y * W + x) * 3;
        [raster[i], raster[i + 1], raster[i + 2]]
    }

    #[test]
    fn draws_the_series_the_watermarks_and_the_strips() {
        let pts: Vec<Point> = (0..50)
            .map(|i| Point { free: if i < 25 { 1000 - 30 * i } else { 400 }, shrinker: i == 10, kswapd: i > 30 })
            .collect();
        let (w, h, raster) = render(&pts, (100, 200, 300), "test");
        assert_eq!((w, h, raster.len()), (W, H, W * H * 3));
        let count =
            |c: Rgb| (0..H).flat_map(|y| (0..W).map(move |x| (x, y))).filter(|&(x, y)| px(&raster, x, y) == c).count();
        for c in [FREE, MIN, LOW, HIGH, SHRINK, KSWAPD] {
            assert!(count(c) > 10, "{c:?} drawn");
        }
        // The first sample is the top of the scale: its pixel is on the line.
        let top = pts.iter().map(|p| p.free).max().unwrap().max(600);
        let y = TOP + PLOT_H - 1 - 1000 * (PLOT_H - 1) / top;
        assert_eq!(px(&raster, LEFT, y), FREE);
    }

    #[test]
    fn encodes_a_png() {
        let mut out = Vec::new();
        write(&mut out, &[Point { free: 5, shrinker: false, kswapd: true }], (1, 2, 3), "one").unwrap();
        assert_eq!(&out[1..4], b"PNG");
    }
}
