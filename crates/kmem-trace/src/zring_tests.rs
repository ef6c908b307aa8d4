use super::*;
use crate::lines::{items, Chunk, Item, Lines};

/// Every line the line reader hands out over `fill`, a too-long one as `!`, its head and a
/// newline (whether it came whole in a chunk or was skipped past a buffer's end).
fn read_all<F: Fill>(fill: F) -> io::Result<Vec<u8>> {
    read_lines(Lines::from_fill(fill, Box::default()))
}

fn read_lines<F: Fill>(mut lines: Lines<F>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = lines.next_chunk()? {
        match c {
            Chunk::Lines(t) => {
                for item in items(t) {
                    match item {
                        Item::Line(l) => out.extend_from_slice(l),
                        Item::TooLong(head) => out.extend([&b"!"[..], head, b"\n"].concat()),
                    }
                }
            }
            Chunk::TooLong(head) => out.extend([&b"!"[..], head, b"\n"].concat()),
        }
    }
    Ok(out)
}

/// What the streaming decoder and a plain line reader give for the same stream.
fn expected(z: &[u8]) -> Vec<u8> {
    let text = zstd::stream::decode_all(z).unwrap();
    read_lines(Lines::new(&text[..])).unwrap()
}

/// `text` compressed at `level`, with a window of 2^`window_log` bytes (blocks no larger).
fn compress(text: &[u8], level: i32, window_log: u32) -> Vec<u8> {
    let mut e = zstd::stream::Encoder::new(Vec::new(), level).unwrap();
    e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(window_log)).unwrap();
    e.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut e, text).unwrap();
    e.finish().unwrap()
}

/// Lines of 1 to `max` bytes of a small alphabet (repetitive enough for long matches).
fn lines(n: usize, max: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    let mut t = Vec::new();
    for _ in 0..n {
        let len = 1 + next() % max;
        t.extend((0..len).map(|i| b"kmem_cache_alloc ptr=0123 "[(i + next() % 3) % 26]));
        t.push(b'\n');
    }
    t
}

#[test]
fn decodes_what_the_streaming_decoder_does() {
    let excerpt = std::fs::read(crate::input::excerpt_trace(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))).unwrap();
    assert!(read_all(ZstdRing::new(&excerpt[..]).unwrap()).unwrap() == expected(&excerpt));
    // Small windows (1 and 4 KiB, blocks as large): the buffer wraps every few blocks, with
    // lines across each wrap, some of them longer than a window.
    for (window_log, n, max) in [(10, 3000, 300), (12, 1000, 3000), (10, 300, 20_000)] {
        let text = lines(n, max, max as u64);
        let z = compress(&text, 9, window_log);
        let got = read_all(ZstdRing::new(&z[..]).unwrap()).unwrap();
        assert_eq!(got.len(), text.len(), "window 2^{window_log}");
        assert!(got == text, "window 2^{window_log}");
    }
}

#[test]
fn frames_one_after_another_and_skippable_ones() {
    let (a, b) = (lines(500, 200, 1), lines(200, 90_000, 2));
    let mut z = compress(&a, 3, 10);
    // A skippable frame (magic 0x184D2A50, 4-byte size, content), then an empty one.
    z.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    z.extend_from_slice(&[0x5f, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
    z.extend(compress(&b, 1, 17));
    z.extend(compress(b"", 1, 10));
    // The second frame has lines over `MAX_LINE`: handed out as their heads, as plain text's.
    assert!(read_all(ZstdRing::new(&z[..]).unwrap()).unwrap() == expected(&z));
}

#[test]
fn a_cut_or_corrupt_stream_fails() {
    let text = lines(2000, 200, 3);
    let z = compress(&text, 3, 10);
    for cut in [1, 4, 5, 9, z.len() / 2, z.len() - 1] {
        let e = read_all(ZstdRing::new(&z[..cut]).unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
    }
    let mut bad = z.clone();
    bad.extend_from_slice(b"not zstd at all: no frame here");
    assert_eq!(read_all(ZstdRing::new(&bad[..]).unwrap()).unwrap_err().kind(), io::ErrorKind::InvalidData);
    // Corrupt blocks: whatever the streaming decoder makes of them (an error, or bytes:
    // content checksums are not checked).
    for at in [z.len() / 3, z.len() / 2, z.len() - 20] {
        let mut bad = z.clone();
        bad[at..at + 16].fill(0xff);
        let (r, _) = crate::input::from_reader(io::Cursor::new(bad.clone())).unwrap();
        let want = read_lines(Lines::new(r)).ok();
        assert!(read_all(ZstdRing::new(&bad[..]).unwrap()).ok() == want, "corrupt at {at}");
    }
    // Nothing at all is an empty stream.
    assert_eq!(read_all(ZstdRing::new(&b""[..]).unwrap()).unwrap(), b"");
}
