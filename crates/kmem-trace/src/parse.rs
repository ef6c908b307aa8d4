//! The line parser: one ftrace text line (`trace_pipe`, `trace`, or `trace-cmd report`) to an
//! [`Event`] borrowing from the line. No regex, no allocation.
//!
//! ```text
//!             bash-6842    [000] .....   286.430843: kmalloc: call_site=f+0x10d/0x140 ptr=00000000e5c4c801 ...
//!  <task>-<pid>           [<cpu>] <flags> <timestamp>: <event>: <field>=<value> ...
//! ```
//!
//! - The task name may contain spaces: the CPU column is the first `[digits]` followed by a
//!   space.
//! - The latency flags (`d`, `N`, `h`/`H`/`s`, preempt depth...) are optional (`trace-cmd
//!   report` prints them only with `-l`); `h`, `H` or `s` there mean interrupt context.
//! - Fields are `key=value` tokens; tokens without `=` (the ` [module]` of a `call_site`) are
//!   skipped. Pointers are hex with or without `0x` (`%p` prints hashed values: they identify
//!   an object, they are not addresses).

use core::fmt;

pub use crate::fast_memo::{Front, TailMemo, NO_TAIL};

/// One parsed trace event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The CPU column.
    pub cpu: u32,
    /// The latency flags say hard or soft interrupt context (`h`, `H` or `s`).
    pub irq: bool,
    /// What happened.
    pub kind: EventKind<'a>,
}

/// The kmem events the replay understands, with the fields it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind<'a> {
    /// `kmalloc` (or `kmalloc_node`).
    Kmalloc {
        /// The (hashed) pointer returned.
        ptr: u64,
        /// Bytes requested.
        bytes_req: u32,
        /// Bytes the traced kernel handed out (the size class).
        bytes_alloc: u32,
        /// The `gfp_flags=` text.
        gfp: &'a str,
    },
    /// `kfree`.
    Kfree {
        /// The (hashed) pointer freed; 0 is `kfree(NULL)`.
        ptr: u64,
    },
    /// `kmem_cache_alloc` (or `kmem_cache_alloc_node`).
    CacheAlloc {
        /// The (hashed) pointer returned.
        ptr: u64,
        /// The cache's name (`name=`; empty on kernels that do not trace it).
        name: &'a str,
        /// The cache's object size.
        bytes_req: u32,
        /// The cache's slot size.
        bytes_alloc: u32,
        /// The `gfp_flags=` text.
        gfp: &'a str,
    },
    /// `kmem_cache_free`.
    CacheFree {
        /// The (hashed) pointer freed.
        ptr: u64,
        /// The cache's name (empty if not traced).
        name: &'a str,
    },
    /// `mm_page_alloc`.
    PageAlloc {
        /// The block's first frame; `None` when the traced allocation failed.
        pfn: Option<u64>,
        /// The block's order.
        order: u8,
        /// The `gfp_flags=` text.
        gfp: &'a str,
    },
    /// `mm_page_free`.
    PageFree {
        /// The block's first frame.
        pfn: u64,
        /// The block's order.
        order: u8,
    },
    /// `mm_page_free_batched` (always order 0).
    PageFreeBatched {
        /// The page's frame.
        pfn: u64,
    },
    /// Any other event: skipped and counted by name.
    Other {
        /// The event's name.
        name: &'a str,
    },
}

/// A line that is not an event, or an event with a bad field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The line is not valid UTF-8 where text is needed.
    NotUtf8,
    /// No `[cpu]` column.
    NoCpu,
    /// No `<seconds>.<micros>:` timestamp after the CPU column.
    NoTimestamp,
    /// No `<event>:` after the timestamp.
    NoEvent,
    /// A field the event needs is missing.
    MissingField(&'static str),
    /// A field is not a well-formed number.
    BadNumber(&'static str),
    /// The line is longer than [`crate::input::MAX_LINE`] bytes (it is skipped unread).
    TooLong,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotUtf8 => f.write_str("not UTF-8"),
            ParseError::NoCpu => f.write_str("no [cpu] column"),
            ParseError::NoTimestamp => f.write_str("no timestamp after the CPU column"),
            ParseError::NoEvent => f.write_str("no event name after the timestamp"),
            ParseError::MissingField(k) => write!(f, "missing field {k}="),
            ParseError::BadNumber(k) => write!(f, "malformed number in {k}="),
            ParseError::TooLong => write!(f, "line longer than {} bytes", crate::input::MAX_LINE),
        }
    }
}

impl std::error::Error for ParseError {}

/// What a line is: an event, or a line to ignore (blank, `#` comment, trace-cmd header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// An event.
    Event(Event<'a>),
    /// A blank line, a `#` comment, or a `trace-cmd report` header (`cpus=2`, `version = 6`,
    /// `CPU 1 is empty`).
    Ignored,
    /// `CPU:N [LOST M EVENTS]`: the ring buffer overflowed; M events are missing.
    Lost(u64),
}

/// Parses one line (without or with its trailing newline).
///
/// Most lines take the fast path (`fast.rs`), which reads the fields in the order
/// Linux prints them; any line it does not accept (other events, other orders or spacing,
/// comments, malformed lines) is parsed here by the general rules, which define the result:
/// the fast path returns only what they would.
#[inline(always)]
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, ParseError> {
    match crate::fast::event(line) {
        Some(ev) => Ok(Line::Event(ev)),
        None => parse_general(line),
    }
}

/// Parses the first line of `text` (a chunk of whole lines, non-empty) into `out`: the line
/// ([`crate::input::items`]' first) and [`parse_line`] of it (a line longer than
/// [`crate::input::MAX_LINE`]: its first [`crate::input::TOO_LONG_HEAD`] bytes and
/// [`ParseError::TooLong`]); returns the line's length with its newline, and the `memo` entry
/// of its tail ([`NO_TAIL`]: none; see [`crate::op::Frontend::parsed_in`]). The fast path reads
/// the line in `text` itself, and the newline is looked for only past the fields it read;
/// the result is written in place (it is large, and copies of it cost as much as the search).
#[inline(always)]
pub fn parse_next<'a>(
    text: &'a [u8],
    out: &mut (&'a [u8], Result<Line<'a>, ParseError>),
    memo: &mut TailMemo,
) -> (usize, u32) {
    use crate::input::{MAX_LINE, TOO_LONG_HEAD};
    if let Some((ev, read, tail)) = crate::fast::event_in(text, Some(memo)) {
        let len = match tail {
            Some(_) => read + 1,
            None => crate::scan::find_newline(&text[read..]).map_or(text.len(), |nl| read + nl + 1),
        };
        if len - (text[len - 1] == b'\n') as usize <= MAX_LINE {
            out.0 = &text[..len];
            out.1 = Ok(Line::Event(ev));
            return (len, tail.unwrap_or(NO_TAIL));
        }
    }
    let len = crate::scan::find_newline(text).map_or(text.len(), |nl| nl + 1);
    let line = &text[..len];
    *out = if len - (line.last() == Some(&b'\n')) as usize > MAX_LINE {
        (&line[..TOO_LONG_HEAD], Err(ParseError::TooLong))
    } else {
        (line, parse_general(line))
    };
    (len, NO_TAIL)
}

/// [`parse_line`] by the general rules only.
pub fn parse_general(line: &[u8]) -> Result<Line<'_>, ParseError> {
    let line = trim_end(line);
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let body = &line[start..];
    if body.is_empty() || body[0] == b'#' || is_header(body) {
        return Ok(Line::Ignored);
    }
    if let Some(n) = lost_events(body) {
        return Ok(Line::Lost(n));
    }
    let (cpu, rest) = cpu_column(line).ok_or(ParseError::NoCpu)?;
    let mut tok = Tokens(rest);
    let mut t = tok.next().ok_or(ParseError::NoTimestamp)?;
    let mut irq = false;
    if !is_timestamp(t) {
        irq = t.iter().any(|&b| matches!(b, b'h' | b'H' | b's'));
        t = tok.next().ok_or(ParseError::NoTimestamp)?;
        if !is_timestamp(t) {
            return Err(ParseError::NoTimestamp);
        }
    }
    let name = tok.next().and_then(|e| e.strip_suffix(b":")).filter(|e| !e.is_empty()).ok_or(ParseError::NoEvent)?;
    let f = Fields::split(tok.0);
    let kind = match name {
        b"kmalloc" | b"kmalloc_node" => EventKind::Kmalloc {
            ptr: f.hex("ptr")?,
            bytes_req: f.dec("bytes_req")?,
            bytes_alloc: f.dec("bytes_alloc")?,
            gfp: f.text("gfp_flags")?,
        },
        b"kfree" => EventKind::Kfree { ptr: f.hex("ptr")? },
        b"kmem_cache_alloc" | b"kmem_cache_alloc_node" => EventKind::CacheAlloc {
            ptr: f.hex("ptr")?,
            name: f.opt_text("name")?.unwrap_or(""),
            bytes_req: f.dec("bytes_req")?,
            bytes_alloc: f.dec("bytes_alloc")?,
            gfp: f.text("gfp_flags")?,
        },
        b"kmem_cache_free" => EventKind::CacheFree { ptr: f.hex("ptr")?, name: f.opt_text("name")?.unwrap_or("") },
        b"mm_page_alloc" => {
            let pfn = f.hex("pfn")?;
            let failed = pfn == u64::MAX || f.get("page").is_some_and(|p| p == b"(null)");
            EventKind::PageAlloc { pfn: (!failed).then_some(pfn), order: f.order()?, gfp: f.text("gfp_flags")? }
        }
        b"mm_page_free" => EventKind::PageFree { pfn: f.hex("pfn")?, order: f.order()? },
        b"mm_page_free_batched" => EventKind::PageFreeBatched { pfn: f.hex("pfn")? },
        other => EventKind::Other { name: core::str::from_utf8(other).map_err(|_| ParseError::NotUtf8)? },
    };
    Ok(Line::Event(Event { cpu, irq, kind }))
}

fn trim_end(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b' ' | b'\t'] = l {
        l = rest;
    }
    l
}

/// `trace-cmd report`'s header lines.
fn is_header(body: &[u8]) -> bool {
    body.starts_with(b"cpus=")
        || body.starts_with(b"version =")
        || (body.starts_with(b"CPU ") && body.ends_with(b" is empty"))
}

/// `CPU:1 [LOST 123 EVENTS]`.
fn lost_events(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"CPU:")?;
    let at = rest.windows(6).position(|w| w == b"[LOST ")?;
    let n = &rest[at + 6..];
    let end = n.iter().position(|b| !b.is_ascii_digit())?;
    n[end..].starts_with(b" EVENTS]").then(|| parse_dec(&n[..end]))?
}

/// The first `[digits]` followed by a space (or the end): the CPU, and what follows it.
fn cpu_column(line: &[u8]) -> Option<(u32, &[u8])> {
    let mut i = 0;
    while let Some(off) = line[i..].iter().position(|&b| b == b'[') {
        let open = i + off;
        let digits = &line[open + 1..];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 && digits.get(n) == Some(&b']') && matches!(digits.get(n + 1), Some(b' ' | b'\t') | None) {
            let cpu = parse_dec(&digits[..n]).filter(|&c| c <= u32::MAX as u64)? as u32;
            return Some((cpu, &digits[n + 1..]));
        }
        i = open + 1;
    }
    None
}

/// `286.430843:` (digits, one dot, digits, colon).
fn is_timestamp(t: &[u8]) -> bool {
    let Some(t) = t.strip_suffix(b":") else { return false };
    let mut dots = 0;
    !t.is_empty()
        && t.iter().all(|&b| {
            dots += (b == b'.') as u32;
            b.is_ascii_digit() || b == b'.'
        })
        && dots <= 1
        && t[0] != b'.'
}

/// Whitespace-separated tokens.
struct Tokens<'a>(&'a [u8]);

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.0;
        let start = s.iter().position(|b| !b.is_ascii_whitespace())?;
        let len = s[start..].iter().position(|b| b.is_ascii_whitespace()).unwrap_or(s.len() - start);
        self.0 = &s[start + len..];
        Some(&s[start..start + len])
    }
}

/// Fields kept per line (the kmem events have at most 8).
const MAX_FIELDS: usize = 16;

/// The `key=value` part of a line, split once.
#[derive(Clone, Copy)]
struct Fields<'a> {
    kv: [(&'a [u8], &'a [u8]); MAX_FIELDS],
    n: usize,
}

impl<'a> Fields<'a> {
    /// One pass over the bytes: tokens split at ASCII whitespace, each cut at its first `=`
    /// (tokens without one are skipped), at most `MAX_FIELDS` kept.
    fn split(s: &'a [u8]) -> Self {
        let mut f = Fields { kv: [(&[], &[]); MAX_FIELDS], n: 0 };
        let mut i = 0;
        while i < s.len() && f.n < MAX_FIELDS {
            while i < s.len() && s[i].is_ascii_whitespace() {
                i += 1;
            }
            let (start, mut eq) = (i, None);
            while i < s.len() && !s[i].is_ascii_whitespace() {
                if s[i] == b'=' && eq.is_none() {
                    eq = Some(i);
                }
                i += 1;
            }
            if let Some(e) = eq {
                f.kv[f.n] = (&s[start..e], &s[e + 1..i]);
                f.n += 1;
            }
        }
        f
    }
    fn get(&self, key: &str) -> Option<&'a [u8]> {
        let key = key.as_bytes();
        self.kv[..self.n].iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }
    fn hex(&self, key: &'static str) -> Result<u64, ParseError> {
        let v = self.get(key).ok_or(ParseError::MissingField(key))?;
        if v == b"(null)" {
            return Ok(0);
        }
        let digits = v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")).unwrap_or(v);
        parse_hex(digits).ok_or(ParseError::BadNumber(key))
    }
    fn dec(&self, key: &'static str) -> Result<u32, ParseError> {
        let v = self.get(key).ok_or(ParseError::MissingField(key))?;
        parse_dec(v).filter(|&n| n <= u32::MAX as u64).map(|n| n as u32).ok_or(ParseError::BadNumber(key))
    }
    fn order(&self) -> Result<u8, ParseError> {
        let o = self.dec("order")?;
        u8::try_from(o).ok().filter(|&o| o < 64).ok_or(ParseError::BadNumber("order"))
    }
    fn opt_text(&self, key: &'static str) -> Result<Option<&'a str>, ParseError> {
        self.get(key).map(|v| core::str::from_utf8(v).map_err(|_| ParseError::NotUtf8)).transpose()
    }
    fn text(&self, key: &'static str) -> Result<&'a str, ParseError> {
        self.opt_text(key)?.ok_or(ParseError::MissingField(key))
    }
}

fn parse_dec(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    d.iter().try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u64))
}

fn parse_hex(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 16 {
        return None;
    }
    d.iter().try_fold(0u64, |n, &b| Some(n << 4 | (b as char).to_digit(16)? as u64))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
