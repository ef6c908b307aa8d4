use super::*;
use crate::parse::{parse_general, Line, TailMemo};

/// Lines in Linux's layout (the fast path takes them), one per event and variant.
const LINUX: &[&str] = &[
    "            bash-6842    [000] .....   286.430843: kmalloc: call_site=eventfs_set_attr+0x10d/0x140 ptr=00000000e5c4c801 bytes_req=60 bytes_alloc=64 gfp_flags=GFP_NOFS|__GFP_ZERO node=-1 accounted=false\n",
    "  kworker/u8:3-77 [017] d.h1. 10.5: kmalloc_node: call_site=f+0x1/0x2 ptr=ffff888012345678 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_ATOMIC node=0 accounted=false",
    "            bash-6842    [001] .....   286.432339: kfree: call_site=ida_alloc_range+0x39b/0x400 ptr=0000000000000000\n",
    "x-1 [001] ..s.. 2.0: kfree: call_site=f+0x1/0x2 ptr=(null)",
    "x-1 [001] 2.0: kfree: call_site=f+0x1/0x2 ptr=0xffff888012345678",
    "            bash-6842    [000] .....   286.431283: kmem_cache_alloc: call_site=alloc_empty_file+0x3c/0x110 ptr=00000000210b47ef name=filp bytes_req=184 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true\n",
    "x-1 [003] ...1. 3.25: kmem_cache_alloc_node: call_site=f ptr=0000000000000010 name=kmalloc-64 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_ATOMIC node=0 accounted=false\r\n",
    "            bash-6842    [000] .....   286.431410: kmem_cache_free: call_site=__fput+0x141/0x2a0 ptr=00000000966b9a17 name=lsm_file_cache\n",
    "x-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr=00000000966b9a17",
    "x-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr=1 name=\u{e9}t\u{e9}",
    "x-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr=0000000000000001 \t\r\n",
    "x-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr=0000000000000001 name=filp   \r\n",
    "             cc1-6846    [001] .....   286.431543: mm_page_alloc: page=000000002e380044 pfn=0x11a4b8 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP\n",
    "x-1 [001] ..... 1.0: mm_page_alloc: page=(null) pfn=0xffffffffffffffff order=3 migratetype=0 gfp_flags=GFP_KERNEL",
    "            bash-6842    [000] ...2.   286.433736: mm_page_free: page=000000001dbac17c pfn=0x115320 order=2\n",
    "  <idle>-0     [003]  5.000001: mm_page_free: page=0x1 pfn=0x20 order=1",
    "            bash-6842    [000] ...4.   286.433741: mm_page_free_batched: page=000000001dbac17c pfn=0x115320 order=0\n",
];

/// Lines the fast path leaves to the general rules (which parse or reject them).
const OTHERS: &[&str] = &[
    "",
    "   \n",
    "# tracer: nop",
    "cpus=2",
    "version = 6",
    "CPU 1 is empty",
    "CPU:1 [LOST 123 EVENTS]",
    "t-1 [000] ..... 1.0: mm_page_pcpu_drain: page=0x1 pfn=0x2 order=0 migratetype=1",
    "   kworker/u8:3 [ext4]-77 [017] d.h1. 10.5: kfree: call_site=f+0x1/0x2 [ext4] ptr=00000000000000aa",
    "x-1 [000] ..... 1.0: kmem_cache_alloc_node: call_site=f ptr=10 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_ATOMIC node=0",
    "x-1 [000] ..... 1.0: kfree: ptr=1 call_site=f",
    "x-1 [000] ..... 1.0: kfree: call_site=f  ptr=1",
    "x-1 [000] ..... 1.0: kfree: call_site=f\tptr=1",
    "x-1 [000]\t..... 1.0: kfree: call_site=f ptr=1",
    "x-1 [000] ..... 1.0: kfree: call_site=f ptr=xyz",
    "x-1 [000] ..... 1.0: kfree: call_site=f ptr=11111111111111111",
    "x-1 [000] ..... 1.0: mm_page_free: page=0 pfn=0x1 order=99",
    "garbage",
    "CPU0-12 [000] ..... 1.0: kfree: call_site=f ptr=0000000000000001",
    "cpus=2-7 [000] ..... 1.0: kfree: call_site=f ptr=0000000000000001",
    "\tx-1 [000] ..... 1.0: kfree: call_site=f ptr=0000000000000001",
    "t-1 [000] ..... notatime kfree: ptr=1",
    "t-1 [000] ..... 1.0:",
    "t-1 [99999999999] ..... 1.0: kfree: call_site=f ptr=1",
];

/// Asserts that the fast path returns only what the general rules do on the first line of
/// `text` (up to its first newline), and the same whether it reads that line alone or in
/// `text`, without reading past its newline; returns whether it took the line.
fn agree(text: &[u8]) -> bool {
    let end = text.iter().position(|&b| b == b'\n').map_or(text.len(), |nl| nl + 1);
    let line = &text[..end];
    let fast = event_in(line, None);
    assert_eq!(event_in(text, None), fast, "{:?}", String::from_utf8_lossy(text));
    // With a memo of line tails: the same when the tail is read and stored, and when found.
    // Where it found the newline, it says so.
    let mut memo = TailMemo::default();
    for _ in 0..2 {
        let memoised = event_in(text, Some(&mut memo));
        assert_eq!(memoised.map(|m| m.0), fast.map(|f| f.0), "{:?}", String::from_utf8_lossy(text));
        if let Some((_, nl, Some(_))) = memoised {
            assert_eq!(nl, end - 1, "{:?}", String::from_utf8_lossy(text));
        }
    }
    if let Some((ev, read, at_nl)) = fast {
        assert!(at_nl.is_none(), "without a memo the newline is not looked for");
        assert!(read <= end - (line.last() == Some(&b'\n')) as usize, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(parse_general(line), Ok(Line::Event(ev)), "{:?}", String::from_utf8_lossy(line));
    }
    fast.is_some()
}

/// `line`, ended by a newline if it has none, and `next` after it: a line read in a block.
fn in_block(line: &[u8], next: &str) -> Vec<u8> {
    let mut t = line.to_vec();
    if t.last() != Some(&b'\n') {
        t.push(b'\n');
    }
    t.extend_from_slice(next.as_bytes());
    t
}

#[test]
fn linux_lines_take_the_fast_path() {
    for l in LINUX {
        assert!(agree(l.as_bytes()), "{l:?}");
        for next in LINUX.iter().chain(OTHERS) {
            assert!(agree(&in_block(l.as_bytes(), next)), "{l:?} then {next:?}");
        }
    }
}

#[test]
fn other_lines_take_the_general_rules() {
    for l in OTHERS {
        assert!(!agree(l.as_bytes()), "{l:?}");
        // Not even with a Linux line after it (a `[`, the fields, on the next line).
        for next in LINUX {
            assert!(!agree(&in_block(l.as_bytes(), next)), "{l:?} then {next:?}");
        }
    }
    // The name of a `kmem_cache_free` on the next line is not this one's.
    let l = "x-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr=0000000000000001 \n name=filp\n";
    assert_eq!(event(l.as_bytes()).map(|e| e.kind), Some(EventKind::CacheFree { ptr: 1, name: "" }));
    let mut bad = b"x-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr=1 name=".to_vec();
    bad.push(0xff);
    assert!(!agree(&bad));
}

/// A small deterministic generator (xorshift).
fn rng(seed: u64) -> impl FnMut() -> usize {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    }
}

/// `line` with one to three random edits (bytes replaced, inserted or deleted; tokens
/// swapped or repeated).
fn mutate(line: &str, next: &mut impl FnMut() -> usize) -> Vec<u8> {
    let bytes = b" \t\r\n\x0c\x00=:[].0123456789abcdefx()-|_kmnp\xff\xc3\xa9#";
    let mut l = line.as_bytes().to_vec();
    for _ in 0..1 + next() % 3 {
        let at = next() % (l.len() + 1);
        let b = bytes[next() % bytes.len()];
        match next() % 6 {
            0 | 1 if at < l.len() => l[at] = b,
            2 => l.insert(at, b),
            3 if at < l.len() => drop(l.remove(at)),
            4 | 5 => {
                let mut tokens: Vec<Vec<u8>> = l.split(|&b| b == b' ').map(<[u8]>::to_vec).collect();
                let (i, j) = (next() % tokens.len(), next() % tokens.len());
                match next() % 2 {
                    0 => tokens.swap(i, j),
                    _ => tokens.insert(i, tokens[j].clone()),
                }
                l = tokens.join(&b' ');
            }
            _ => {}
        }
    }
    l
}

/// One memo of line tails across Linux lines and their mutations (each in a block, after
/// its original line, so that it is looked up where the original's tail was stored): the
/// events are those read without the memo, and the memo was used.
#[test]
fn a_shared_memo_gives_the_events_read_without_it() {
    let mut next = rng(0x7a11);
    let mut memo = TailMemo::default();
    let mut found = 0;
    for round in 0..100_000 {
        let orig = LINUX[round % LINUX.len()];
        let l = mutate(orig, &mut next);
        for text in [in_block(orig.as_bytes(), ""), in_block(&l, orig)] {
            let alone = event_in(&text, None);
            let memoised = event_in(&text, Some(&mut memo));
            assert_eq!(memoised.map(|m| m.0), alone.map(|a| a.0), "{:?}", String::from_utf8_lossy(&text));
            found += memoised.is_some_and(|m| m.2.is_some()) as u32;
        }
    }
    assert!(found > 20_000, "{found} lines read through the memo");
}

/// Linux lines with one to three random edits (bytes replaced, inserted or deleted; tokens
/// swapped or repeated): wherever the fast path takes one, the general rules agree.
#[test]
fn mutated_lines_agree() {
    let mut next = rng(0x5eed);
    let (mut fast, mut total) = (0, 0);
    for round in 0..200_000 {
        let l = mutate(LINUX[round % LINUX.len()], &mut next);
        // Alone, and read in a block with a line after it.
        fast += agree(&l) as u32;
        agree(&in_block(&l, LINUX[next() % LINUX.len()]));
        total += 1;
    }
    // Both paths were exercised.
    eprintln!("{fast} of {total} on the fast path");
    assert!(fast > total / 10 && fast < total * 9 / 10, "{fast} of {total} on the fast path");
}

/// `parse_next` walking a block of lines (Linux's, others, an over-long one, one without a
/// newline at the end) gives what splitting it and parsing each line gives.
#[test]
fn parse_next_walks_a_block_as_lines() {
    use crate::input::{items, Item, MAX_LINE};
    use crate::parse::{parse_line, parse_next, ParseError};
    let mut text = Vec::new();
    for (i, l) in LINUX.iter().chain(OTHERS).enumerate() {
        text.extend_from_slice(l.as_bytes());
        if !l.ends_with('\n') {
            text.push(b'\n');
        }
        if i == 3 {
            // A kfree the fast path takes, made longer than `MAX_LINE` by its padding.
            text.extend_from_slice(b"x-1 [001] 2.0: kfree: call_site=f ptr=0000000000000001");
            text.resize(text.len() + MAX_LINE, b' ');
            text.push(b'\n');
        }
    }
    text.extend_from_slice(LINUX[0].trim_end().as_bytes());
    let want: Vec<_> = items(&text)
        .map(|item| match item {
            Item::Line(l) => (l, parse_line(l)),
            Item::TooLong(head) => (head, Err(ParseError::TooLong)),
        })
        .collect();
    let mut got = Vec::new();
    let mut memo = crate::parse::TailMemo::default();
    let mut at = 0;
    while at < text.len() {
        let mut out = (&[][..], Err(ParseError::TooLong));
        at += parse_next(&text[at..], &mut out, &mut memo).0;
        got.push(out);
    }
    assert_eq!(got.len(), want.len());
    assert!(got.iter().any(|(_, p)| *p == Err(ParseError::TooLong)));
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{:?}", String::from_utf8_lossy(w.0));
    }
}
