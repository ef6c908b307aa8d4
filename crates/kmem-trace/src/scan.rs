//! Byte-level scanning for the line parser's fast path ([`crate::fast`]): whitespace, bytes and
//! column padding found 16 bytes at a time with SSE2 (x86-64's baseline; eight bytes at a time
//! with bit tricks on a `u64` elsewhere and for the tail, exact per byte), 16-digit hex
//! pointers checked and converted in one SSE2 register, shorter hex numbers eight digits at a
//! time (in place in the line: [`parse_hex_at`]), decimal ones through bit tricks, ASCII text
//! checked with the loads that find its end. Each helper gives exactly the answer of its
//! obvious byte-by-byte loop (the tests compare them).

/// Whether `b` is ASCII whitespace (space, tab, newline, form feed, carriage return).
#[inline(always)]
pub fn is_ws(b: u8) -> bool {
    b.is_ascii_whitespace()
}

/// Eight copies of `b`.
const fn splat(b: u8) -> u64 {
    b as u64 * 0x0101_0101_0101_0101
}

const LOW7: u64 = splat(0x7f);
const HIGH: u64 = splat(0x80);

/// The high bit of each byte of `x` that is at most 0x20 (every ASCII whitespace byte is).
/// Exact per byte: no carry crosses a byte (`(b & 0x7f) + 0x5f` is at most 0xde).
#[inline(always)]
fn le_space(x: u64) -> u64 {
    !(((x & LOW7) + splat(0x5f)) | x) & HIGH
}

/// The high bit of each byte of `x` that is zero. Exact per byte.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The eight bytes at `s[i..]`, if there are eight.
#[inline(always)]
fn word(s: &[u8], i: usize) -> Option<u64> {
    s.get(i..i + 8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
}

/// The ASCII whitespace bytes of a 16-byte chunk (exactly [`is_ws`]: space, or 0x09 to 0x0d
/// but 0x0b), as bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ws16(chunk: &[u8; 16]) -> u32 {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline, so the intrinsics are available; the
    // unaligned load reads the 16 bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let space = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x20));
        // 0x09..=0x0d: `b - 9` at most 4 (unsigned), less the vertical tab 0x0b.
        let t = _mm_sub_epi8(v, _mm_set1_epi8(0x09));
        let ctl = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(4)), t);
        let vt = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x0b));
        _mm_movemask_epi8(_mm_or_si128(space, _mm_andnot_si128(vt, ctl))) as u32
    }
}

/// The index of the first newline of `s`, if any: for splitting a block into lines of a
/// hundred to a few hundred bytes, where `memchr`'s dispatch and set-up cost as much as its
/// scan. 32 bytes a step (SSE2, the x86-64 baseline), then a byte loop; not inlined, which
/// would only crowd the parsing loop's registers.
#[inline(never)]
pub fn find_newline(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = s.get(i..i + 32) {
        let (a, b) = chunk.split_at(16);
        let m = eq16(a.try_into().expect("16 bytes"), b'\n') | eq16(b.try_into().expect("16 bytes"), b'\n') << 16;
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 32;
    }
    s[i..].iter().position(|&c| c == b'\n').map(|p| i + p)
}

/// The index of the first whitespace byte of a 16-byte chunk, if any: the bytes up to 0x20
/// (every whitespace byte is one) found with two compares, the first of them checked alone;
/// [`ws16`] only when it is a control byte that is not whitespace.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn first_ws16(chunk: &[u8; 16]) -> Option<u32> {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned load reads the 16 bytes of
    // `chunk`.
    let low = unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x20)), v)) as u32
    };
    if low == 0 {
        return None;
    }
    let j = low.trailing_zeros();
    if is_ws(chunk[j as usize]) {
        return Some(j);
    }
    let m = ws16(chunk);
    (m != 0).then(|| m.trailing_zeros())
}

/// The index of the first whitespace byte of `s` at or after `i`, or `s.len()`.
#[inline(always)]
pub fn find_ws(s: &[u8], mut i: usize) -> usize {
    // Sixteen bytes at a time where SSE2 is sure to be (x86-64), then eight.
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = s.get(i..i + 16) {
        if let Some(j) = first_ws16(chunk.try_into().expect("16 bytes")) {
            return i + j as usize;
        }
        i += 16;
    }
    while let Some(x) = word(s, i) {
        let mut m = le_space(x);
        while m != 0 {
            let j = i + (m.trailing_zeros() / 8) as usize;
            if is_ws(s[j]) {
                return j;
            }
            m &= m - 1;
        }
        i += 8;
    }
    while i < s.len() && !is_ws(s[i]) {
        i += 1;
    }
    i
}

/// [`find_ws`], and whether the bytes before the whitespace (from `i`) are all ASCII (the
/// high bits come with the same 16-byte loads).
#[inline(always)]
pub fn find_ws_ascii(s: &[u8], mut i: usize) -> (usize, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut high = 0;
        while let Some(chunk) = s.get(i..i + 16) {
            let chunk: &[u8; 16] = chunk.try_into().expect("16 bytes");
            let h = high16(chunk);
            if let Some(j) = first_ws16(chunk) {
                return (i + j as usize, high | (h & ((1 << j) - 1)) == 0);
            }
            high |= h;
            i += 16;
        }
        let end = find_ws(s, i);
        (end, high == 0 && s[i..end].is_ascii())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let end = find_ws(s, i);
        (end, s[i..end].is_ascii())
    }
}

/// The bytes of a 16-byte chunk that are not ASCII (high bit set), as bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn high16(chunk: &[u8; 16]) -> u32 {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned load reads the 16 bytes of
    // `chunk`.
    unsafe { _mm_movemask_epi8(_mm_loadu_si128(chunk.as_ptr().cast())) as u32 }
}

/// The bytes of a 16-byte chunk equal to `b`, as bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn eq16(chunk: &[u8; 16], b: u8) -> u32 {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned load reads the 16 bytes of
    // `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))) as u32
    }
}

/// The index of the first `b` in `s` at or after `i`, if it comes before the first newline
/// (the fast path reads lines in place in a block: a search must not run on into the next
/// line).
#[inline]
pub fn find_byte_in_line(s: &[u8], mut i: usize, b: u8) -> Option<usize> {
    // Sixteen bytes at a time where SSE2 is sure to be (x86-64), then eight.
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = s.get(i..i + 16) {
        let chunk = chunk.try_into().expect("16 bytes");
        let m = eq16(chunk, b) | eq16(chunk, b'\n');
        if m != 0 {
            let at = i + m.trailing_zeros() as usize;
            return (s[at] == b).then_some(at);
        }
        i += 16;
    }
    while let Some(x) = word(s, i) {
        let m = zero_bytes(x ^ splat(b)) | zero_bytes(x ^ splat(b'\n'));
        if m != 0 {
            let at = i + (m.trailing_zeros() / 8) as usize;
            return (s[at] == b).then_some(at);
        }
        i += 8;
    }
    let at = i + s.get(i..)?.iter().position(|&c| c == b || c == b'\n')?;
    (s[at] == b).then_some(at)
}

/// The index of the first byte of `s` at or after `i` that is not a space (0x20), or
/// `s.len()`.
#[inline(always)]
pub fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    if s.get(i) != Some(&b' ') {
        return i.min(s.len());
    }
    // Column padding, sixteen bytes at a time where SSE2 is sure to be (x86-64), then eight.
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = s.get(i..i + 16) {
        let m = !eq16(chunk.try_into().expect("16 bytes"), b' ') & 0xffff;
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(x) = word(s, i) {
        let m = !zero_bytes(x ^ splat(b' ')) & HIGH;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// The high bit of each byte of `x` that is an ASCII digit. Exact per byte: bytes of 0x80
/// and above are cleared before the arithmetic (no carry leaves a byte) and masked after.
#[inline(always)]
fn digit_bytes(x: u64) -> u64 {
    let low = x & LOW7;
    (low + splat(0x80 - b'0')) & !(low + splat(0x7f - b'9')) & !x & HIGH
}

/// The decimal number whose digits start at `s[i]` (at most eight digits are read): its value
/// and how many digits it has (0: none).
#[inline(always)]
pub fn dec_prefix(s: &[u8], i: usize) -> (u64, usize) {
    let Some(x) = word(s, i) else {
        let mut n = 0;
        let mut len = 0;
        while let Some(&d @ b'0'..=b'9') = s.get(i + len).filter(|_| len < 8) {
            n = n * 10 + (d - b'0') as u64;
            len += 1;
        }
        return (n, len);
    };
    let len = ((!digit_bytes(x) & HIGH).trailing_zeros() / 8) as usize;
    if len == 0 {
        return (0, 0);
    }
    // The digits' values in the top `len` bytes (byte 0 is the first digit), zeros below;
    // then pairs, quads and octets are joined (each sum fits its lane).
    let v = (x & splat(0x0f)) << (8 * (8 - len));
    let v = (v * 10 + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v * 100 + (v >> 16)) & 0x0000_ffff_0000_ffff;
    let v = (v * 10000 + (v >> 32)) & 0xffff_ffff;
    (v, len)
}

/// The ASCII digits and the dots of a 16-byte chunk, as bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn digits_dots16(chunk: &[u8; 16]) -> (u32, u32) {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned load reads the 16 bytes of
    // `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        // `b - '0'` at most 9 (unsigned, as `min(x, 9) == x`) is a digit.
        let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
        let dot = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8));
        (_mm_movemask_epi8(digit) as u32, _mm_movemask_epi8(dot) as u32)
    }
}

/// The first byte at or after `i` that is neither a digit nor a dot, and how many dots come
/// before it, counted up to 2 (all a timestamp needs to know; x86-64's baseline has no
/// `popcnt`, and a software count of each word cost more than the rest of the scan).
#[inline(always)]
pub fn digits_and_dots(s: &[u8], mut i: usize) -> (usize, u32) {
    // Up to 2 of the flagged bytes of a mask (a high bit per byte).
    let upto2 = |m: u64| (m != 0) as u32 + (m & m.wrapping_sub(1) != 0) as u32;
    // A timestamp (`286.430843:`, up to 15 bytes) in one 16-byte load where SSE2 is sure to
    // be (x86-64); longer runs go on a word at a time.
    #[cfg(target_arch = "x86_64")]
    if let Some(chunk) = s.get(i..i + 16) {
        let (digit, dot) = digits_dots16(chunk.try_into().expect("16 bytes"));
        let other = !(digit | dot) & 0xffff;
        if other != 0 {
            let dots = (dot & ((other & other.wrapping_neg()) - 1)) as u64;
            return (i + other.trailing_zeros() as usize, upto2(dots));
        }
    }
    let mut dots = 0;
    while let Some(x) = word(s, i) {
        let dot = zero_bytes(x ^ splat(b'.'));
        let other = !(digit_bytes(x) | dot) & HIGH;
        if other != 0 {
            let below = other & other.wrapping_neg();
            return (i + (below.trailing_zeros() / 8) as usize, (dots + upto2(dot & (below - 1))).min(2));
        }
        dots = (dots + upto2(dot)).min(2);
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        match b {
            b'.' => dots = (dots + 1).min(2),
            b'0'..=b'9' => {}
            _ => break,
        }
        i += 1;
    }
    (i, dots)
}

/// Hex digit values; 0xff for bytes that are not hex digits.
static HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The value of eight hex digits (the first one most significant), if they all are.
#[inline(always)]
pub fn hex8(x: u64) -> Option<u64> {
    // Per byte, exact while every byte is below 0x80 (no carry leaves a byte): at least
    // `lo` sets the high bit of `b + 0x80 - lo`; at most `hi` leaves that of `b + 0x7f - hi`
    // clear.
    let within = |x: u64, lo: u8, hi: u8| (x + splat(0x80 - lo)) & !(x + splat(0x7f - hi)) & HIGH;
    if x & HIGH != 0 {
        return None;
    }
    let lower = x | splat(0x20);
    if within(x, b'0', b'9') | within(lower, b'a', b'f') != HIGH {
        return None;
    }
    // Digits are 0x3_, letters 0x4_ or 0x6_ (bit 6 set): the low nibble, plus 9 for letters.
    let v = (x & splat(0x0f)) + ((x >> 6) & splat(1)) * 9;
    // Byte 0 holds the most significant digit: join pairs, then pairs of pairs...
    let v = ((v & 0x000f_000f_000f_000f) << 4) | ((v >> 8) & 0x000f_000f_000f_000f);
    let v = ((v & 0x0000_00ff_0000_00ff) << 8) | ((v >> 16) & 0x0000_00ff_0000_00ff);
    Some(((v & 0xffff) << 16) | ((v >> 32) & 0xffff))
}

/// Exactly 16 hex digits.
#[inline(always)]
pub fn hex16(d: &[u8; 16]) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    return hex16_sse2(d);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let word = |i: usize| u64::from_le_bytes(d[i..i + 8].try_into().expect("8 bytes"));
        Some(hex8(word(0))? << 32 | hex8(word(8))?)
    }
}

/// [`hex16`] in one 16-byte register: each byte checked and turned into its digit's value,
/// then pairs of digits joined into bytes and the bytes packed (x86-64's SSE2 baseline).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hex16_sse2(d: &[u8; 16]) -> Option<u64> {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned load reads the 16 bytes of
    // `d`.
    unsafe {
        let v = _mm_loadu_si128(d.as_ptr().cast());
        // Per byte: `b - '0'` below 10 is a digit; `(b | 0x20) - 'a'` below 6 a letter
        // (wrapping: every other byte lands at 10 and above). Unsigned "below" as
        // `min(x, limit) == x`.
        let digit = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        let letter = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8(b'a' as i8));
        let is_digit = _mm_cmpeq_epi8(_mm_min_epu8(digit, _mm_set1_epi8(9)), digit);
        let is_letter = _mm_cmpeq_epi8(_mm_min_epu8(letter, _mm_set1_epi8(5)), letter);
        if _mm_movemask_epi8(_mm_or_si128(is_digit, is_letter)) != 0xffff {
            return None;
        }
        let nib = _mm_or_si128(
            _mm_and_si128(is_digit, digit),
            _mm_andnot_si128(is_digit, _mm_add_epi8(letter, _mm_set1_epi8(10))),
        );
        // 16-bit lanes hold (first digit, second digit) in (low, high) byte: first << 4 |
        // second, then the lanes packed to bytes, the first digits' byte lowest.
        let pairs = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(nib, _mm_set1_epi16(0x00ff)), 4), _mm_srli_epi16(nib, 8));
        let bytes = _mm_packus_epi16(pairs, pairs);
        Some((_mm_cvtsi128_si64(bytes) as u64).swap_bytes())
    }
}

/// 1 to 16 hex digits (no prefix).
#[inline]
pub fn parse_hex(d: &[u8]) -> Option<u64> {
    if let Ok(d16) = d.try_into() {
        return hex16(d16);
    }
    if d.is_empty() || d.len() > 16 {
        return None;
    }
    let (mut n, mut bad) = (0u64, 0u8);
    for &b in d {
        let v = HEX[b as usize];
        bad |= v;
        n = n << 4 | (v & 0xf) as u64;
    }
    (bad & 0xf0 == 0).then_some(n)
}

/// [`parse_hex`] of `s[start..end]`, reading whole words of `s` where it can: the digits
/// right-aligned in the eight (or sixteen) bytes that end at `end`, the bytes before `start`
/// taken as `0`.
#[inline(always)]
pub fn parse_hex_at(s: &[u8], start: usize, end: usize) -> Option<u64> {
    let len = end.wrapping_sub(start);
    if len == 0 || len > 16 || end < 16 || end > s.len() {
        return parse_hex(s.get(start..end)?);
    }
    // Bytes `0..8 - keep` of a word (the first ones: little-endian) become `0` digits.
    let pad = |x: u64, keep: usize| {
        let m = if keep >= 8 { 0 } else { u64::MAX >> (8 * keep) };
        (x & !m) | (splat(b'0') & m)
    };
    let lo = hex8(pad(word(s, end - 8)?, len))?;
    if len <= 8 {
        return Some(lo);
    }
    Some(hex8(pad(word(s, end - 16)?, len - 8))? << 32 | lo)
}

/// `s` as text: ASCII is checked a word at a time; anything else goes through
/// `core::str::from_utf8`.
#[inline]
pub fn text(s: &[u8]) -> Option<&str> {
    if s.is_ascii() {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return Some(unsafe { core::str::from_utf8_unchecked(s) });
    }
    core::str::from_utf8(s).ok()
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
