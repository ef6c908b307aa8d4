//! The line parser's fast path: the kmem events as Linux prints them, fields in the order
//! of their `TP_printk` and one space apart, read front to back with no field table.
//!
//! ```text
//!             bash-6842    [000] .....   286.431283: kmem_cache_alloc: call_site=alloc_empty_file+0x3c/0x110 ptr=00000000210b47ef name=filp bytes_req=184 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true
//! ```
//!
//! It accepts a line only when the general rules ([`crate::parse::parse_general`]) give the
//! same event: the fields it reads are then the first tokens after the event name, so each is
//! the first of its name, as the general rules take it; its values go through the same
//! checks. Anything else (a comment, another event, another field order or spacing, a bad
//! value) returns `None`, and the general rules parse the line (the tests compare both
//! paths on every line they have, and on mutations of them).

use crate::fast_memo::{TailMemo, TailVal, KEY, MAX, MIN};
use crate::parse::{Event, EventKind};
use crate::scan::{
    dec_prefix, digits_and_dots, find_byte_in_line, find_newline, find_ws, find_ws_ascii, hex16, is_ws, parse_hex,
    parse_hex_at, skip_spaces, text,
};

/// [`TailMemo`] tags of the tails memoised.
const TAIL_CACHE_ALLOC: u8 = 1;
const TAIL_KMALLOC: u8 = 2;
const TAIL_PAGE_ALLOC: u8 = 3;

/// The event on `line`, if it is one of the kmem events in Linux's own layout.
#[inline(always)]
pub fn event(line: &[u8]) -> Option<Event<'_>> {
    event_in(line, None).map(|(ev, _, _)| ev)
}

/// [`event`] of the first line of `text` (lines, each ending at a newline), read in `text`
/// itself: no scan crosses the first newline, so the line need not be split off first. With
/// the event, where its last field read ends (the rest of the line, up to its newline, is
/// not read: the caller looks for the newline from there), or where the newline is when it
/// was found already (then with the [`TailMemo`] entry of the line's tail). With `memo`, the
/// fields after an allocation's pointer or pfn are looked up there by their bytes and stored
/// when read: the event is the same.
#[inline(always)]
pub fn event_in<'a>(text: &'a [u8], mut memo: Option<&mut TailMemo>) -> Option<(Event<'a>, usize, Option<u32>)> {
    let s = text;
    let start = skip_spaces(s, 0);
    let body = &s[start..];
    // Other leading whitespace, comments, trace-cmd headers (`cpus=2`, `version = 6`,
    // `CPU 1 is empty`) and `CPU:N [LOST M EVENTS]` (or whatever starts like them).
    match *body.first()? {
        b if is_ws(b) => return None,
        b'#' => return None,
        b'c' | b'v' | b'C'
            if body.starts_with(b"cpus=") || body.starts_with(b"version =") || body.starts_with(b"CPU") =>
        {
            return None
        }
        _ => {}
    }
    // The CPU column: the first `[` (of this line), digits, `] `.
    let open = find_byte_in_line(s, start, b'[')?;
    let mut f = Fields { s, i: open + 1, nl: None, tail: 0 };
    let cpu = match s.get(open + 1..open + 6) {
        // Linux's `[%03d] `, the usual case, in a few byte compares.
        Some(&[a @ b'0'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9', b']', b' ']) => {
            f.i = open + 6;
            (a - b'0') as u32 * 100 + (b - b'0') as u32 * 10 + (c - b'0') as u32
        }
        _ => {
            let cpu = f.digits()?;
            f.lit(b"] ")?;
            cpu
        }
    };
    // Latency flags (optional), timestamp, event name.
    f.i = skip_spaces(s, f.i);
    let mut irq = false;
    if !f.timestamp() {
        irq = f.flags_irq()?;
        f.i = skip_spaces(s, f.i);
        if !f.timestamp() {
            return None;
        }
    }
    f.lit(b" ")?;
    let kind = if f.lit(b"kmem_cache_").is_some() {
        if f.lit(b"alloc:").is_some() || f.lit(b"alloc_node:").is_some() {
            f.call_site()?;
            let ptr = f.ptr()?;
            let v = f.tail(memo.as_deref_mut(), TAIL_CACHE_ALLOC, |f| {
                Some(TailVal {
                    t1: f.text_span(b" name=")?,
                    n1: f.dec(b" bytes_req=")?,
                    n2: f.dec(b" bytes_alloc=")?,
                    t2: f.text_span(b" gfp_flags=")?,
                    end: 0,
                })
            })?;
            EventKind::CacheAlloc { ptr, name: f.str_at(v.t1), bytes_req: v.n1, bytes_alloc: v.n2, gfp: f.str_at(v.t2) }
        } else {
            f.lit(b"free:")?;
            f.call_site()?;
            let ptr = f.ptr()?;
            // Kernels before 6.1 print no name.
            let name = if f.at_end() { "" } else { f.text(b" name=")? };
            EventKind::CacheFree { ptr, name }
        }
    } else if f.lit(b"mm_page_").is_some() {
        if f.lit(b"alloc:").is_some() {
            let null = f.page()?;
            let pfn = f.pfn()?;
            let v = f.tail(memo.as_deref_mut(), TAIL_PAGE_ALLOC, |f| {
                let n1 = f.order()? as u32;
                f.word(b" migratetype=")?;
                Some(TailVal { n1, t2: f.text_span(b" gfp_flags=")?, ..TailVal::default() })
            })?;
            let gfp = f.str_at(v.t2);
            EventKind::PageAlloc { pfn: (pfn != u64::MAX && !null).then_some(pfn), order: v.n1 as u8, gfp }
        } else if f.lit(b"free:").is_some() {
            f.page()?;
            EventKind::PageFree { pfn: f.pfn()?, order: f.order()? }
        } else {
            f.lit(b"free_batched:")?;
            f.page()?;
            EventKind::PageFreeBatched { pfn: f.pfn()? }
        }
    } else if f.lit(b"kfree:").is_some() {
        f.call_site()?;
        EventKind::Kfree { ptr: f.ptr()? }
    } else if f.lit(b"kmalloc:").is_some() || f.lit(b"kmalloc_node:").is_some() {
        f.call_site()?;
        let ptr = f.ptr()?;
        let v = f.tail(memo, TAIL_KMALLOC, |f| {
            Some(TailVal {
                n1: f.dec(b" bytes_req=")?,
                n2: f.dec(b" bytes_alloc=")?,
                t2: f.text_span(b" gfp_flags=")?,
                ..TailVal::default()
            })
        })?;
        EventKind::Kmalloc { ptr, bytes_req: v.n1, bytes_alloc: v.n2, gfp: f.str_at(v.t2) }
    } else {
        return None;
    };
    Some((Event { cpu, irq, kind }, f.nl.unwrap_or(f.i), f.nl.map(|_| f.tail)))
}

/// A line read front to back: each method reads one thing at `i` and moves past it, or
/// returns `None` (and the line goes to the general rules).
struct Fields<'a> {
    s: &'a [u8],
    i: usize,
    /// The line's newline, once found (with the tail read through the memo).
    nl: Option<usize>,
    /// The [`TailMemo`] entry of the line's tail, when `nl` is known.
    tail: u32,
}

impl<'a> Fields<'a> {
    /// The literal `l`.
    #[inline(always)]
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        let n = l.len();
        let at = self.s.get(self.i..self.i + n)?;
        // Whole words where the literal (a constant once inlined) allows: 8 to 16 bytes are
        // two loads that may overlap; a shorter one is one load, masked, when 8 bytes are
        // there.
        let w = |t: &[u8], i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
        let same = if (8..=16).contains(&n) {
            w(at, 0) == w(l, 0) && w(at, n - 8) == w(l, n - 8)
        } else if let Some(x) = self.s.get(self.i..self.i + 8).filter(|_| n < 8) {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(l);
            let mask = u64::MAX >> (8 * (8 - n));
            (w(x, 0) ^ u64::from_le_bytes(padded)) & mask == 0
        } else {
            at == l
        };
        same.then(|| self.i += n)
    }

    /// Whether the token ends here (at whitespace or the line's end).
    #[inline(always)]
    fn token_ends(&self) -> bool {
        self.s.get(self.i).is_none_or(|&b| is_ws(b))
    }

    /// The token here (non-empty, up to whitespace or the line's end).
    #[inline(always)]
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.i = find_ws(self.s, start);
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// The latency-flags token here (non-empty): whether it has `h`, `H` or `s` (interrupt
    /// context). Up to eight bytes are tested in one word.
    #[inline(always)]
    fn flags_irq(&mut self) -> Option<bool> {
        let start = self.i;
        let t = self.token()?;
        if let (Some(x), 1..=8) = (self.s.get(start..start + 8), t.len()) {
            let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
            let mask = u64::MAX >> (8 * (8 - t.len()));
            // All dots (`.....`, the usual case) is no interrupt; `h` and `H` are one test
            // with the case bit set (only 0x48 and 0x68 give 0x68).
            if (x ^ u64::from_le_bytes(*b"........")) & mask == 0 {
                return Some(false);
            }
            return Some(has_byte(x | 0x2020_2020_2020_2020, b'h', mask) || has_byte(x, b's', mask));
        }
        Some(t.iter().any(|&b| matches!(b, b'h' | b'H' | b's')))
    }

    /// The value of the field `key` (with its leading space and `=`) here.
    #[inline(always)]
    fn word(&mut self, key: &[u8]) -> Option<&'a [u8]> {
        self.lit(key)?;
        let start = self.i;
        self.i = find_ws(self.s, start);
        Some(&self.s[start..self.i])
    }

    /// 1 to 8 decimal digits.
    #[inline(always)]
    fn digits(&mut self) -> Option<u32> {
        let (n, len) = dec_prefix(self.s, self.i);
        self.i += len;
        (len > 0 && (len < 8 || !self.s.get(self.i).is_some_and(u8::is_ascii_digit))).then_some(n as u32)
    }

    /// The value of the field `key` as text ([`text`]: checked UTF-8; ASCII, the usual
    /// case, is known from the scan for its end).
    #[inline(always)]
    fn text(&mut self, key: &[u8]) -> Option<&'a str> {
        self.lit(key)?;
        let start = self.i;
        let (end, ascii) = find_ws_ascii(self.s, start);
        self.i = end;
        let v = &self.s[start..end];
        if ascii {
            // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
            return Some(unsafe { core::str::from_utf8_unchecked(v) });
        }
        text(v)
    }

    /// [`Fields::text`] as the value's span in the line.
    #[inline(always)]
    fn text_span(&mut self, key: &[u8]) -> Option<(u32, u32)> {
        let v = self.text(key)?;
        Some(((self.i - v.len()) as u32, self.i as u32))
    }

    /// The text at `span` of the line: a span [`Fields::text_span`] gave for these bytes, or
    /// a [`TailMemo`] entry for the same bytes.
    #[inline(always)]
    fn str_at(&self, span: (u32, u32)) -> &'a str {
        let v = &self.s[span.0 as usize..span.1 as usize];
        // SAFETY: `text` checked these bytes as UTF-8 (here, or in a line whose tail had the
        // same bytes: a memo entry is found only by comparing them all).
        unsafe { core::str::from_utf8_unchecked(v) }
    }

    /// The fields after an allocation's pointer or pfn, read by `read` (its spans the line's,
    /// `end` left 0), or found in `memo` by the bytes up to the newline (kept there after
    /// reading them). Moves past the last field read.
    #[inline(always)]
    fn tail(
        &mut self,
        memo: Option<&mut TailMemo>,
        kind: u8,
        read: impl FnOnce(&mut Self) -> Option<TailVal>,
    ) -> Option<TailVal> {
        let at = self.i;
        let Some(memo) = memo.filter(|_| at + KEY <= self.s.len()) else { return read(self) };
        if let Some((v, i, n)) = memo.find(kind, self.s, at) {
            (self.i, self.nl, self.tail) = (v.end as usize, Some(at + n), i);
            return Some(v);
        }
        let n = match find_newline(&self.s[at..]) {
            Some(n @ MIN..=MAX) => n,
            _ => return read(self),
        };
        let mut v = read(self)?;
        v.end = self.i as u32;
        (self.nl, self.tail) = (Some(at + n), memo.put(kind, self.s, at, n, v));
        Some(v)
    }

    /// `key=` and a byte count (1 to 8 digits; longer ones are left to the general rules).
    #[inline(always)]
    fn dec(&mut self, key: &[u8]) -> Option<u32> {
        self.lit(key)?;
        let n = self.digits()?;
        self.token_ends().then_some(n)
    }

    /// ` order=` and a page order (below 64).
    #[inline(always)]
    fn order(&mut self) -> Option<u8> {
        self.dec(b" order=").filter(|&o| o < 64).map(|o| o as u8)
    }

    /// The timestamp token here (`286.430843:`: digits, at most one dot but not first,
    /// colon); does not move if there is none.
    #[inline(always)]
    fn timestamp(&mut self) -> bool {
        let (s, start) = (self.s, self.i);
        if !s.get(start).is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let (colon, dots) = digits_and_dots(s, start);
        if colon == start || dots > 1 || s[start] == b'.' || s.get(colon) != Some(&b':') {
            return false;
        }
        self.i = colon + 1;
        if !self.token_ends() {
            self.i = start;
            return false;
        }
        true
    }

    /// ` call_site=` and its value (skipped).
    #[inline(always)]
    fn call_site(&mut self) -> Option<()> {
        self.word(b" call_site=").map(drop)
    }

    /// ` ptr=` and its value: 16 hex digits, else anything [`hex`] takes.
    #[inline(always)]
    fn ptr(&mut self) -> Option<u64> {
        self.lit(b" ptr=")?;
        let start = self.i;
        if let Some(d) = self.s.get(start..start + 16) {
            self.i += 16;
            if let Some(p) = hex16(d.try_into().expect("16 bytes")).filter(|_| self.token_ends()) {
                return Some(p);
            }
            self.i = start;
        }
        hex(self.token()?)
    }

    /// ` page=` and whether its value is `(null)`.
    #[inline(always)]
    fn page(&mut self) -> Option<bool> {
        let v = self.word(b" page=")?;
        Some(v == b"(null)")
    }

    /// ` pfn=` and its value.
    #[inline(always)]
    fn pfn(&mut self) -> Option<u64> {
        self.lit(b" pfn=")?;
        let start = self.i;
        self.i = find_ws(self.s, start);
        // Linux prints `pfn=0x%lx`: its digits are read a word at a time.
        match self.s.get(start..start + 2) {
            Some(b"0x") => parse_hex_at(self.s, start + 2, self.i),
            _ => hex(&self.s[start..self.i]),
        }
    }

    /// Whether only whitespace is left on the line (up to its newline, or the end).
    fn at_end(&self) -> bool {
        for &b in &self.s[self.i..] {
            if b == b'\n' || !is_ws(b) {
                return b == b'\n';
            }
        }
        true
    }
}

/// Whether a byte of `x` under `mask` (whole bytes) is `b`.
#[inline(always)]
fn has_byte(x: u64, b: u8, mask: u64) -> bool {
    // A zero byte of `x ^ b`: `(y - 0x01..) & !y & 0x80..` flags the lowest exactly, and
    // higher ones only after a flagged byte (a borrow), so masking keeps the answer exact.
    let y = (x ^ (b as u64 * 0x0101_0101_0101_0101)) & mask | !mask;
    y.wrapping_sub(0x0101_0101_0101_0101) & !y & 0x8080_8080_8080_8080 != 0
}

/// A pointer or pfn: hex with or without `0x`, or `(null)`.
#[inline(always)]
fn hex(v: &[u8]) -> Option<u64> {
    if v == b"(null)" {
        return Some(0);
    }
    parse_hex(v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")).unwrap_or(v))
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
