//! What bad input cannot do: a line longer than the limit (64 KiB) is one malformed line,
//! skipped up to its newline, and the lines around it replay; a stream with no event in its
//! first 16 MiB (`/dev/zero`, a binary file) ends with "not a kmem trace" instead of being
//! read forever.

use std::io::{self, Read};

use kmem_trace::input::{self, NotATrace, MAX_LINE};
use kmem_trace::parse::ParseError;
use kmem_trace::run::{parse_all, parse_trace};
use kmem_trace::{Frontend, Kind};

const ALLOC: &str = " t-1 [000] ..... 1.0: kmalloc: call_site=f ptr=00000000000000a1 bytes_req=8 bytes_alloc=8 \
                     gfp_flags=GFP_KERNEL node=-1 accounted=false\n";
const FREE: &str = " t-1 [000] ..... 1.1: kfree: call_site=f ptr=00000000000000a1\n";

fn parse(bytes: Vec<u8>) -> (io::Result<usize>, Frontend) {
    let (mut r, _) = input::from_reader(io::Cursor::new(bytes)).unwrap();
    let mut fe = Frontend::new();
    let ops = parse_all(&mut *r, &mut fe).map(|ops| ops.len());
    (ops, fe)
}

#[test]
fn an_over_long_line_is_one_malformed_line() {
    for long in [MAX_LINE + 1, 5 * MAX_LINE, 3 << 20] {
        let mut t = ALLOC.as_bytes().to_vec();
        // An event line made too long by its call site.
        t.extend_from_slice(b" t-1 [000] ..... 1.0: kfree: call_site=");
        t.resize(t.len() + long, b'f');
        t.extend_from_slice(b" ptr=00000000000000a1\n");
        t.extend_from_slice(FREE.as_bytes());
        let (ops, fe) = parse(t.clone());
        assert_eq!(ops.unwrap(), 2, "{long}");
        let c = &fe.counts;
        assert_eq!((c.lines, c.malformed), (3, 1));
        assert_eq!((c.events[Kind::Kmalloc as usize], c.events[Kind::Kfree as usize]), (1, 1));
        let m = &c.malformed_first[0];
        assert_eq!((m.line, m.error), (2, ParseError::TooLong));
        assert!(m.text.starts_with(" t-1 [000] ..... 1.0: kfree: call_site=fff") && m.text.len() == 120);
        assert_eq!(m.error.to_string(), "line longer than 65536 bytes");
        // The longest line kept is an event.
        t.truncate(ALLOC.len());
        t.extend_from_slice(b" t-1 [000] ..... 1.0: kfree: call_site=f ptr=00000000000000a1");
        t.resize(ALLOC.len() + MAX_LINE, b' ');
        t.push(b'\n');
        let (ops, fe) = parse(t);
        assert_eq!((ops.unwrap(), fe.counts.malformed), (2, 0));
    }
}

/// `n` zero bytes, produced as they are read.
struct Zeros(u64);

impl Read for Zeros {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = (out.len() as u64).min(self.0) as usize;
        out[..n].fill(0);
        self.0 -= n as u64;
        Ok(n)
    }
}

fn parse_reader(r: impl Read + Send + 'static) -> (io::Result<usize>, Frontend) {
    let (mut r, _) = input::from_reader(r).unwrap();
    let mut fe = Frontend::new();
    let ops = parse_all(&mut *r, &mut fe).map(|ops| ops.len());
    (ops, fe)
}

#[test]
fn no_event_in_the_first_16_mib_is_not_a_trace() {
    // Endless zeros: no newline ever.
    let (r, fe) = parse_reader(Zeros(u64::MAX));
    let e = r.unwrap_err();
    assert!(NotATrace::is(&e) && e.to_string() == "not a kmem trace", "{e}");
    assert_eq!(fe.counts.events, [0; Kind::COUNT]);
    // Endless lines that are not events.
    let (r, fe) = parse_reader(io::repeat(b'\n').take(1000).chain(io::repeat(b'#')));
    assert!(NotATrace::is(&r.unwrap_err()));
    assert_eq!((fe.counts.ignored_lines, fe.counts.malformed), (1000, 0));
    let junk = [&b"junk "[..], &[b'x'; 1018], b"\n"].concat();
    let (r, fe) = parse_reader(io::Cursor::new(junk.repeat(17 << 10)));
    assert!(NotATrace::is(&r.unwrap_err()));
    assert!(fe.counts.malformed >= 15 << 10);
    // Zstd-compressed junk too.
    let z = zstd::stream::encode_all(&vec![b'j'; 20 << 20][..], 1).unwrap();
    assert!(NotATrace::is(&parse_reader(io::Cursor::new(z.clone())).0.unwrap_err()));
    // Also decoded straight into the parser's buffer.
    let t = input::Trace::from_reader(io::Cursor::new(z)).unwrap();
    assert!(NotATrace::is(&parse_trace(t, &mut Frontend::new()).unwrap_err()));
    // Junk shorter than the limit is counted, not an error; so is junk after an event.
    let (r, fe) = parse_reader(Zeros(1 << 20));
    assert_eq!((r.unwrap(), fe.counts.malformed), (0, 1));
    let mut t = ALLOC.as_bytes().to_vec();
    t.extend(std::iter::repeat_n(b'x', 20 << 20));
    let (r, fe) = parse(t);
    assert_eq!((r.unwrap(), fe.counts.malformed, fe.counts.lines), (1, 1, 2));
    // An event after 15 MiB of junk lines is in time.
    let mut t = junk.repeat(15 << 10);
    t.extend_from_slice(FREE.as_bytes());
    let (r, fe) = parse(t);
    assert_eq!((r.unwrap(), fe.counts.malformed), (1, 15 << 10));
}

/// Peak resident memory of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_300_mb_line_is_never_buffered() {
    const LONG: u64 = 300 << 20;
    let before = peak_rss_kib();
    let events = format!("{ALLOC}{FREE}");
    let trace = io::Cursor::new(events.clone()).chain(Zeros(LONG)).chain(io::Cursor::new(format!("\n{events}")));
    let (r, fe) = parse_reader(trace);
    let grew = peak_rss_kib().saturating_sub(before);
    // Other tests in this binary run beside it and hold up to ~60 MiB; a buffered line would add 300.
    assert!(grew < 128 << 10, "reading a 300 MB line raised the peak RSS by {grew} KiB");
    assert_eq!(r.unwrap(), 4);
    let c = &fe.counts;
    assert_eq!((c.lines, c.malformed), (5, 1));
    assert_eq!((c.malformed_first[0].line, c.malformed_first[0].error), (3, ParseError::TooLong));
    assert_eq!((c.events[Kind::Kmalloc as usize], c.events[Kind::Kfree as usize]), (2, 2), "the lines around it");
}
