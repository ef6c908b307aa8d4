use super::*;

/// Every item of `r`, read `block` bytes at a time, as (line number, text, too long).
fn items_of(r: impl Read, block: usize) -> io::Result<Vec<(u64, Vec<u8>, bool)>> {
    let mut l = Lines::with_block(r, block);
    let mut out = Vec::new();
    let mut push = |item: Item<'_>| {
        let (text, long) = match item {
            Item::Line(t) => (t.to_vec(), false),
            Item::TooLong(h) => (h.to_vec(), true),
        };
        out.push((out.len() as u64 + 1, text, long));
    };
    while let Some(chunk) = l.next_chunk()? {
        match chunk {
            Chunk::Lines(text) => {
                assert!(text.ends_with(b"\n") || !text.contains(&b'\n'), "whole lines");
                items(text).for_each(&mut push);
            }
            Chunk::TooLong(head) => push(Item::TooLong(head)),
        }
    }
    Ok(out)
}

fn texts(r: impl Read) -> Vec<Vec<u8>> {
    items_of(r, BLOCK).unwrap().into_iter().map(|(_, t, _)| t).collect()
}

#[test]
fn take_lines() {
    let r = TakeLines::new(io::Cursor::new(b"a\nbb\nccc\n".to_vec()), 2);
    assert_eq!(texts(r), [b"a\n".to_vec(), b"bb\n".to_vec()]);
    let r = TakeLines::new(io::Cursor::new(b"a\nbb".to_vec()), 5);
    assert_eq!(texts(r), [b"a\n".to_vec(), b"bb".to_vec()]);
    assert!(texts(TakeLines::new(io::Cursor::new(b"a\n".to_vec()), 0)).is_empty());
}

#[test]
fn plain_and_zstd_by_magic() {
    let text = b"a\nbb\nccc".to_vec();
    let lines = |bytes: Vec<u8>| {
        let (r, c) = from_reader(io::Cursor::new(bytes)).unwrap();
        (texts(r), c)
    };
    let want = vec![b"a\n".to_vec(), b"bb\n".to_vec(), b"ccc".to_vec()];
    assert_eq!(lines(text.clone()), (want.clone(), Compression::None));
    let z = zstd::stream::encode_all(&text[..], 3).unwrap();
    assert_eq!(lines(z), (want, Compression::Zstd));
    assert_eq!(lines(Vec::new()).0.len(), 0);
}

/// A reader that hands out at most `n` bytes per read (lines cut anywhere).
struct Dribble<R>(R, usize);

impl<R: Read> Read for Dribble<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.1);
        self.0.read(&mut out[..n])
    }
}

#[test]
fn lines_across_blocks_and_short_reads() {
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 300)).as_bytes());
    }
    text.extend_from_slice(b"last without newline");
    let want: Vec<Vec<u8>> = text.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    for (block, dribble) in [(BLOCK, usize::MAX), (MAX_LINE + 1, usize::MAX), (BLOCK, 7), (MAX_LINE + 1, 4093)] {
        let got = items_of(Dribble(io::Cursor::new(&text), dribble), block).unwrap();
        assert_eq!(got.len(), want.len(), "block {block}, reads of {dribble}");
        assert!(got.iter().enumerate().all(|(i, (no, _, long))| *no == i as u64 + 1 && !long));
        assert!(got.iter().zip(&want).all(|((_, g, _), w)| g == w), "block {block}, reads of {dribble}");
    }
}

#[test]
fn too_long_lines_are_cut_and_skipped() {
    let long = |n: usize| {
        let mut l: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        l.push(b'\n');
        l
    };
    let mut text = b"first\n".to_vec();
    text.extend(long(MAX_LINE)); // the longest line kept
    text.extend(long(MAX_LINE + 1));
    text.extend(long(3 * BLOCK + 5)); // longer than a block
    text.extend_from_slice(b"after\n");
    text.extend(long(2 * BLOCK)[..2 * BLOCK].iter()); // too long, and no newline at the end
    for block in [BLOCK, MAX_LINE + 1] {
        for dribble in [usize::MAX, 1000] {
            let got = items_of(Dribble(io::Cursor::new(&text), dribble), block).unwrap();
            let summary: Vec<(u64, usize, bool)> = got.iter().map(|(no, t, long)| (*no, t.len(), *long)).collect();
            assert_eq!(
                summary,
                [
                    (1, 6, false),
                    (2, MAX_LINE + 1, false),
                    (3, TOO_LONG_HEAD, true),
                    (4, TOO_LONG_HEAD, true),
                    (5, 6, false),
                    (6, TOO_LONG_HEAD, true)
                ],
                "block {block}, reads of {dribble}"
            );
            assert_eq!(got[3].1, long(TOO_LONG_HEAD)[..TOO_LONG_HEAD]);
            assert_eq!(got[4].1, b"after\n");
        }
    }
}

/// Endless zero bytes, like `/dev/zero`.
struct Zeros;

impl Read for Zeros {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        out.fill(0);
        Ok(out.len())
    }
}

#[test]
fn a_limit_ends_endless_input() {
    let mut l = Lines::new(Zeros);
    l.set_limit(4 << 20);
    let e = l.next_chunk().unwrap_err();
    assert!(NotATrace::is(&e), "{e}");
    assert_eq!(e.to_string(), "not a kmem trace");
    assert!(l.bytes() >= 4 << 20 && l.bytes() < (4 << 20) + 2 * BLOCK as u64, "{}", l.bytes());
    // Short lines too.
    let mut l = Lines::new(io::repeat(b'\n'));
    l.set_limit(1 << 20);
    let mut n = 0u64;
    let e = loop {
        match l.next_chunk() {
            Ok(Some(Chunk::Lines(t))) => n += items(t).count() as u64,
            Ok(_) => panic!("endless input ended"),
            Err(e) => break e,
        }
    };
    assert!(NotATrace::is(&e) && n >= 1 << 20, "{e} after {n} lines");
    // Without a limit, reading goes on.
    let mut l = Lines::new(io::Read::take(Zeros, 8 << 20));
    assert_eq!(l.next_chunk().unwrap(), Some(Chunk::TooLong(&[0; TOO_LONG_HEAD])));
    assert_eq!(l.next_chunk().unwrap(), None);
}

/// `n` bytes, then an error.
struct Failing(usize);

impl Read for Failing {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = out.len().min(self.0);
        out[..n].fill(b'a');
        self.0 -= n;
        Ok(n)
    }
}

/// The whole lines of `lines`, joined again.
fn joined<F: Fill>(mut lines: Lines<F>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = lines.next_chunk()? {
        let Chunk::Lines(text) = chunk else { panic!("no line is too long") };
        out.extend_from_slice(text);
    }
    Ok(out)
}

#[test]
fn read_ahead_hands_the_stream_out_in_order() {
    let text: Vec<u8> =
        (0..40_000u32).flat_map(|i| format!("line {i} {}\n", "x".repeat((i % 300) as usize)).into_bytes()).collect();
    let mut src = Dribble(io::Cursor::new(&text), 10_007);
    let out = std::thread::scope(|s| joined(Lines::from_fill(read_ahead(s, &mut src), Box::default())));
    assert!(out.unwrap() == text);
    // An error comes after the bytes before it.
    let mut src = io::Read::chain(io::Cursor::new(b"a\n".repeat(500_000)), Failing(0));
    let e = std::thread::scope(|s| {
        let mut lines = Lines::from_fill(read_ahead(s, &mut src), Box::default());
        let mut n = 0;
        loop {
            match lines.next_chunk() {
                Ok(Some(Chunk::Lines(t))) => n += t.len(),
                Ok(_) => panic!("the error is lost"),
                Err(e) => break (n, e.to_string()),
            }
        }
    });
    assert_eq!(e, (1_000_000, "disk on fire".into()));
    // Over-long lines: one inside a block, one longer than a block (skipped across blocks).
    let mut t = b"a\n".to_vec();
    t.resize(t.len() + 3 * MAX_LINE, b'x');
    t.extend_from_slice(b"\nb\n");
    t.resize(t.len() + 5 * BLOCK, b'y');
    t.extend_from_slice(b"\nc");
    let mut src = Dribble(io::Cursor::new(&t), 5000);
    let got = std::thread::scope(|s| {
        let mut lines = Lines::from_fill(read_ahead(s, &mut src), Box::default());
        let mut got = Vec::new();
        let mut push = |item: Item<'_>| {
            got.push(match item {
                Item::Line(t) => String::from_utf8_lossy(t).into_owned(),
                Item::TooLong(h) => format!("long {}", String::from_utf8_lossy(&h[..3])),
            })
        };
        while let Some(c) = lines.next_chunk().unwrap() {
            match c {
                Chunk::Lines(t) => items(t).for_each(&mut push),
                Chunk::TooLong(h) => push(Item::TooLong(h)),
            }
        }
        got
    });
    assert_eq!(got, ["a\n", "long xxx", "b\n", "long yyy", "c"]);
    // Dropping the reading end ends the thread (else the scope would wait forever).
    let mut zeros = Zeros;
    std::thread::scope(|s| drop(read_ahead(s, &mut zeros)));
}
