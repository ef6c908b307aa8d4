//! Lines longer than `input::MAX_LINE`: skipped without being buffered and counted as
//! malformed, the lines around them parsed as usual; an input with no line of normal length
//! in `MAX_SKIPPED` bytes (an endless line: `/dev/zero`) is refused in bounded time and
//! memory.

use std::io::{self, BufRead, Read};

use kmem_trace::input::{self, for_each_line, for_each_line_limited, LineLimits, TOO_LONG};
use kmem_trace::{Frontend, Kind};

const EVENTS: &str = "\
 bash-1 [000] ..... 1.0: kmalloc: call_site=f+0x1/0x2 ptr=00000000000000a2 bytes_req=60 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false
 bash-1 [000] ..... 1.3: kfree: call_site=f+0x1/0x2 ptr=00000000000000a2
";

/// Peak resident memory of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Parses every line of `r` with a fresh front end.
fn parse(r: &mut dyn BufRead) -> io::Result<Frontend> {
    let mut fe = Frontend::new();
    for_each_line(r, |no, l| {
        fe.line(no, l);
        true
    })?;
    Ok(fe)
}

#[test]
fn a_300_mb_line_is_one_malformed_line_and_is_never_buffered() {
    const LONG: u64 = 300 << 20;
    let before = peak_rss_kib();
    let zeros = std::fs::File::open("/dev/zero").unwrap();
    let trace = io::Cursor::new(EVENTS).chain(zeros.take(LONG)).chain(io::Cursor::new(format!("\n{EVENTS}")));
    let (mut r, _) = input::from_reader(trace).unwrap();
    let fe = parse(&mut *r).unwrap();
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < 64 << 10, "reading a 300 MB line raised the peak RSS by {grew} KiB");
    let c = &fe.counts;
    assert_eq!(c.lines, 5);
    assert_eq!(c.malformed, 1);
    assert_eq!(c.malformed_first[0].line, 3);
    assert_eq!(c.malformed_first[0].text, "line too long, skipped");
    assert_eq!((c.events[Kind::Kmalloc as usize], c.events[Kind::Kfree as usize]), (2, 2), "the lines around it");
}

#[test]
fn dev_zero_is_not_a_trace() {
    // An endless line, with the real limits: refused after MAX_SKIPPED bytes (4 GiB, under
    // a second or two) in bounded memory.
    let before = peak_rss_kib();
    let (mut r, _) = input::open(std::path::Path::new("/dev/zero")).unwrap();
    let e = parse(&mut *r).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        e.to_string(),
        "not a kmem trace: 4294967296 bytes from line 1 on without a line of at most 65536 bytes"
    );
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < 64 << 10, "peak RSS grew by {grew} KiB");
}

/// The lines `for_each_line_limited` hands over for `text` with `max_line` 8.
fn limited(text: &[u8], max_skipped: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut r = io::Cursor::new(text.to_vec());
    let mut out = Vec::new();
    for_each_line_limited(&mut r, LineLimits { max_line: 8, max_skipped }, |no, l| {
        out.push((no, l.to_vec()));
        true
    })?;
    Ok(out)
}

#[test]
fn the_limit_is_exact_and_over_long_lines_in_a_row_are_capped() {
    let long = TOO_LONG.to_vec();
    // 8 bytes (newline excluded) pass; 9 do not, with or without a newline, at the end too.
    assert_eq!(
        limited(b"12345678\n123456789\nab\n123456789", 100).unwrap(),
        vec![(1, b"12345678\n".to_vec()), (2, long.clone()), (3, b"ab\n".to_vec()), (4, long.clone())]
    );
    assert_eq!(limited(b"12345678", 100).unwrap(), vec![(1, b"12345678".to_vec())]);
    // Over-long lines in a row count towards the cap; a normal line resets it.
    let mut t = Vec::new();
    for _ in 0..5 {
        t.extend_from_slice(&[b'y'; 30]);
        t.push(b'\n');
        t.extend_from_slice(b"ok\n");
    }
    assert_eq!(limited(&t, 40).unwrap().len(), 10);
    let run: Vec<u8> = [[b'y'; 30].as_slice(), b"\n"].concat().repeat(3);
    let e = limited(&run, 40).unwrap_err();
    assert_eq!(e.to_string(), "not a kmem trace: 40 bytes from line 2 on without a line of at most 8 bytes");
}
