//! `gfp_flags=` text to [`Gfp`]: ftrace prints `show_gfp_flags()`, names joined by `|`
//! (`GFP_KERNEL|__GFP_ZERO`), leftover bits in hex, or `none`. kmem's bit values are Linux's,
//! so every name [`Gfp::parse`] knows maps to the same bits.

use kmem::Gfp;

use crate::keys::TextMemo;

/// Parses a `gfp_flags=` value token by token. Unknown names are skipped (their bits are not
/// known) and counted in the second value.
pub fn parse_gfp(text: &str) -> (Gfp, u32) {
    let mut gfp = Gfp::empty();
    let mut unknown = 0;
    for token in text.split('|') {
        match Gfp::parse(token) {
            Ok(g) => gfp |= g,
            Err(_) => unknown += 1,
        }
    }
    (gfp, unknown)
}

/// A memo of the `gfp_flags=` texts seen: a trace has a few dozen distinct ones, so each is
/// parsed once and looked up after that (no allocation once seen).
#[derive(Debug, Default)]
pub struct GfpTable {
    seen: TextMemo<(Gfp, u32)>,
}

impl GfpTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// The flags of `text` and how many of its tokens were unknown.
    #[inline]
    pub fn get(&mut self, text: &str) -> (Gfp, u32) {
        self.seen.get(text.as_bytes(), || parse_gfp(text))
    }
    /// Distinct texts seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }
    /// Whether no text was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_composites_hex_none() {
        assert_eq!(parse_gfp("GFP_KERNEL"), (Gfp::KERNEL, 0));
        assert_eq!(parse_gfp("GFP_KERNEL|__GFP_ZERO|__GFP_COMP"), (Gfp::KERNEL | Gfp::ZERO | Gfp::COMP, 0));
        assert_eq!(parse_gfp("GFP_NOFS"), (Gfp::NOFS, 0));
        assert_eq!(parse_gfp("GFP_ATOMIC"), (Gfp::ATOMIC, 0));
        assert_eq!(parse_gfp("GFP_HIGHUSER_MOVABLE"), (Gfp::HIGHUSER_MOVABLE, 0));
        assert_eq!(parse_gfp("GFP_NOWAIT|__GFP_ACCOUNT"), (Gfp::NOWAIT | Gfp::ACCOUNT, 0));
        assert_eq!(parse_gfp("0xcc0"), (Gfp::KERNEL, 0));
        assert_eq!(parse_gfp("GFP_KERNEL|0x100"), (Gfp::KERNEL | Gfp::ZERO, 0));
        assert_eq!(parse_gfp("none"), (Gfp::empty(), 0));
        // Linux's values, not just kmem's names.
        assert_eq!(parse_gfp("GFP_KERNEL").0.bits(), 0xcc0);
        assert_eq!(parse_gfp("GFP_ATOMIC").0.bits(), 0x820);
    }

    #[test]
    fn unknown_tokens_are_counted_not_fatal() {
        assert_eq!(parse_gfp("GFP_KERNEL|__GFP_BOGUS"), (Gfp::KERNEL, 1));
        assert_eq!(parse_gfp(""), (Gfp::empty(), 1));
        assert_eq!(parse_gfp("||"), (Gfp::empty(), 3));
        assert_eq!(parse_gfp("0xzz"), (Gfp::empty(), 1));
    }

    #[test]
    fn table_memoises() {
        let mut t = GfpTable::new();
        assert_eq!(t.get("GFP_NOFS|__GFP_ZERO"), (Gfp::NOFS | Gfp::ZERO, 0));
        assert_eq!(t.get("GFP_NOFS|__GFP_ZERO"), (Gfp::NOFS | Gfp::ZERO, 0));
        assert_eq!(t.len(), 1);
    }
}
