//! Target `gfp`: kmem's GFP text parser ([`Gfp::parse`]) and the trace replay's lenient
//! `gfp_flags=` reader ([`kmem_trace::gfp_text::parse_gfp`]).
//!
//! Properties: no panic; an error names a byte offset inside the text, on a character
//! boundary; whatever parses prints back ([`Display`](std::fmt::Display), both forms) to text
//! that parses to the same flags; the lenient reader agrees with the strict parser on text
//! the strict one accepts and counts at least one unknown token on text it refuses. The
//! input's first four bytes, read as flags, must also print and parse back.

use kmem::Gfp;
use kmem_trace::gfp_text::parse_gfp;

/// Words that make mutations reach the parser's interesting paths.
pub const DICT: &[&[u8]] = &[
    b"GFP_KERNEL",
    b"GFP_ATOMIC",
    b"GFP_NOWAIT",
    b"__GFP_ZERO",
    b"__GFP_COMP",
    b"__GFP_DMA",
    b"__GFP_WAIT",
    b"__GFP_SKIP_ZERO",
    b"none",
    b"|",
    b" | ",
    b"0x",
    b"0X",
    b"0xffffffff",
    b"4294967296",
    b"\t",
];

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    if data.len() >= 4 {
        let bits = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        roundtrip(Gfp::from_bits(bits));
    }
    let text = String::from_utf8_lossy(data);
    match Gfp::parse(&text) {
        Ok(g) => {
            roundtrip(g);
            assert_eq!(parse_gfp(&text), (g, 0), "parse_gfp disagrees with Gfp::parse on {text:?}");
        }
        Err(e) => {
            assert!(e.position <= text.len(), "error position {} past the end of {text:?}", e.position);
            assert!(text.is_char_boundary(e.position), "error position {} inside a character of {text:?}", e.position);
            assert!(
                parse_gfp(&text).1 >= 1,
                "parse_gfp found no unknown token in {text:?}, which Gfp::parse refuses ({e})"
            );
        }
    }
}

fn roundtrip(g: Gfp) {
    let shown = g.to_string();
    assert_eq!(Gfp::parse(&shown), Ok(g), "{g:?} prints as {shown:?}, which does not parse back");
    if g != Gfp::empty() {
        assert_eq!(format!("{g:#}"), shown, "the two forms of {g:?} differ");
    }
}
