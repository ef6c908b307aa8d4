use super::*;

fn find_ws_slow(s: &[u8], i: usize) -> usize {
    s[i..].iter().position(|&b| is_ws(b)).map_or(s.len(), |p| i + p)
}

fn skip_spaces_slow(s: &[u8], i: usize) -> usize {
    s[i.min(s.len())..].iter().position(|&b| b != b' ').map_or(s.len(), |p| i + p)
}

/// A small deterministic generator (xorshift).
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn searches_match_byte_loops() {
    let alphabet =
        [b' ', b' ', b' ', b'=', b'x', b'y', b'\t', b'\r', 0x0c, 0x0b, 0x1f, 0x00, 0x80, 0xff, b'\n', 0x21, 0xa0];
    let mut next = rng(7);
    for round in 0..5000 {
        let len = (next() % 80) as usize;
        let s: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        for i in 0..=len {
            assert_eq!(find_ws(&s, i), find_ws_slow(&s, i), "round {round} find_ws({i}) of {s:?}");
            let end = find_ws_slow(&s, i);
            let want = (end, s[i..end].is_ascii());
            assert_eq!(find_ws_ascii(&s, i), want, "round {round} find_ws_ascii({i}) of {s:?}");
            assert_eq!(skip_spaces(&s, i), skip_spaces_slow(&s, i), "round {round} skip_spaces({i}) of {s:?}");
        }
        assert_eq!(skip_spaces(&s, len + 1), len);
    }
    // Every byte value at every offset of a word.
    for b in 0..=255u8 {
        for at in 0..40 {
            let mut s = [b'x'; 40];
            s[at] = b;
            for from in [0, at / 2, at, 39, 40] {
                let want = s[from..].iter().position(|&c| c == b).map(|p| from + p);
                assert_eq!(find_byte_in_line(&s, from, b), want, "byte {b:#x} at {at} from {from}");
            }
            // A newline before the byte hides it; one after does not.
            for nl in 0..40 {
                let mut s = s;
                if b == b'\n' || b == b'x' || nl == at {
                    continue;
                }
                s[nl] = b'\n';
                let want = (nl > at).then_some(at);
                assert_eq!(find_byte_in_line(&s, 0, b), want, "byte {b:#x} at {at}, newline at {nl}");
            }
        }
        for at in 0..20 {
            let mut s = [b'x'; 20];
            s[at] = b;
            s[(at + 7) % 20] = 0x1f; // a control byte that is not whitespace
            assert_eq!(find_ws(&s, 0), find_ws_slow(&s, 0), "byte {b:#x} at {at}");
            s.fill(b' ');
            s[at] = b;
            assert_eq!(skip_spaces(&s, 0), skip_spaces_slow(&s, 0), "byte {b:#x} at {at}");
        }
    }
}

fn parse_hex_slow(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 16 {
        return None;
    }
    d.iter().try_fold(0u64, |n, &b| Some(n << 4 | (b as char).to_digit(16)? as u64))
}

#[test]
fn numbers() {
    assert_eq!(parse_hex(b"00000000e5c4c801"), Some(0xe5c4c801));
    assert_eq!(parse_hex(b"FFffFFff12345678"), Some(0xffff_ffff_1234_5678));
    assert_eq!(parse_hex(b"0123456789abcdef"), Some(0x0123_4567_89ab_cdef));
    assert_eq!(parse_hex(b"1"), Some(1));
    for bad in [&b""[..], b"11111111111111111", b"xyz", b"12g", b"1 ", b"-1", b"0x1", b"000000000000000g"] {
        assert_eq!(parse_hex(bad), None, "{bad:?}");
    }
    // Every byte value at every position of a 16-digit number.
    for b in 0..=255u8 {
        for at in 0..16 {
            let mut d = *b"0123456789abcdef";
            d[at] = b;
            assert_eq!(parse_hex(&d), parse_hex_slow(&d), "{d:?}");
        }
        assert_eq!(parse_hex(&[b]), (b as char).to_digit(16).map(u64::from), "{b:#x}");
    }
    let mut next = rng(3);
    for _ in 0..10_000 {
        let n = next();
        for d in [format!("{n:016x}"), format!("{n:016X}"), format!("{n:x}")] {
            assert_eq!(parse_hex(d.as_bytes()), Some(n), "{d}");
        }
    }
}

#[test]
fn long_tokens_find_their_end_and_ascii() {
    // Tokens longer than a 16-byte chunk, with a non-ASCII byte (or none) anywhere in them
    // or just past their end, from every start.
    for len in 0..60 {
        for bad in (0..len + 2).chain([usize::MAX]) {
            let mut s = vec![b'a'; len];
            s.push(if len % 3 == 0 { b'\t' } else { b' ' });
            s.extend_from_slice(b"tail\xc3\xa9 more");
            if bad < s.len() && s[bad] != b' ' && s[bad] != b'\t' {
                s[bad] = 0xc3;
            }
            for i in 0..=len {
                let end = find_ws_slow(&s, i);
                assert_eq!(find_ws(&s, i), end, "{len} {bad} {i}");
                assert_eq!(find_ws_ascii(&s, i), (end, s[i..end].is_ascii()), "{len} {bad} {i}");
            }
        }
    }
}

#[test]
fn newlines_found_like_a_byte_loop() {
    // A newline (or none, or two) at every offset of lines around the 32-byte steps, and
    // CRLF endings.
    for len in 0..100 {
        for at in (0..len).chain([usize::MAX]) {
            let mut s = vec![b'x'; len];
            if at < len {
                s[at] = b'\n';
                if at > 0 {
                    s[at - 1] = b'\r';
                }
                if at + 40 < len {
                    s[at + 40] = b'\n';
                }
            }
            let want = s.iter().position(|&c| c == b'\n');
            assert_eq!(find_newline(&s), want, "{len} {at}");
        }
    }
}

#[test]
fn hex_read_in_place_matches_parse_hex() {
    // Digits right after text that is not hex (which the word reads must not take in), at
    // every offset, of every length up to 17, in lines long and short.
    let mut next = rng(11);
    let alphabet = b"0123456789abcdefABCDEFgx =\n\xff";
    for round in 0..20_000 {
        let len = (next() % 40) as usize;
        let mut s: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        if round % 2 == 0 {
            // Mostly digits, so that most slices parse.
            for b in s.iter_mut() {
                let r = next();
                if r % 8 != 0 {
                    *b = b"0123456789abcdef"[(r >> 3) as usize % 16];
                }
            }
        }
        for start in 0..=len {
            for end in start..=len.min(start + 18) {
                assert_eq!(parse_hex_at(&s, start, end), parse_hex(&s[start..end]), "{start}..{end} of {s:?}");
            }
        }
    }
    let line = b"mm_page_alloc: page=000000001 pfn=0x10a3b5 order=0";
    let at = line.windows(6).position(|w| w == b"pfn=0x").expect("pfn") + 6;
    assert_eq!(parse_hex_at(line, at, at + 6), Some(0x10a3b5));
    assert_eq!(parse_hex_at(line, at, line.len() + 1), None, "a range past the end");
}

#[test]
fn text_is_utf8_checked() {
    assert_eq!(text(b"GFP_KERNEL|__GFP_ZERO"), Some("GFP_KERNEL|__GFP_ZERO"));
    assert_eq!(text("dentry-é".as_bytes()), Some("dentry-é"));
    assert_eq!(text(b"name\xff"), None);
    assert_eq!(text(b""), Some(""));
}

#[test]
fn decimal_prefixes_and_timestamps_match_byte_loops() {
    let alphabet = b"0123456789.:. x\xff\xb0\x30/";
    let mut next = rng(5);
    for round in 0..20_000 {
        let len = (next() % 24) as usize;
        let s: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        for i in 0..=len {
            let digits = s[i..].iter().take(8).take_while(|b| b.is_ascii_digit()).count();
            let value = s[i..i + digits].iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64);
            assert_eq!(dec_prefix(&s, i), (value, digits), "round {round} dec_prefix({i}) of {s:?}");
            let end = s[i..].iter().position(|b| !b.is_ascii_digit() && *b != b'.').map_or(len, |p| i + p);
            let dots = s[i..end].iter().filter(|&&b| b == b'.').count().min(2) as u32;
            assert_eq!(digits_and_dots(&s, i), (end, dots), "round {round} digits_and_dots({i}) of {s:?}");
        }
    }
    assert_eq!(dec_prefix(b"99999999", 0), (99_999_999, 8));
    assert_eq!(dec_prefix(b"123456789", 0), (12_345_678, 8));
    assert_eq!(dec_prefix(b"00000042 ", 0), (42, 8));
    assert_eq!(dec_prefix(b"4096 bytes", 0), (4096, 4));
}
