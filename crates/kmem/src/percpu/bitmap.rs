//! Bit operations over `u64` words: the allocation and boundary maps of a chunk
//! (`lib/bitmap.c`'s `find_next_bit`, `bitmap_set`, `bitmap_clear`, as far as percpu needs them).
//!
//! Pure functions over slices: no `unsafe`, tested on their own.

const WORD: usize = u64::BITS as usize;

/// Whether `bit` is set.
#[inline]
pub(super) fn test(map: &[u64], bit: usize) -> bool {
    map[bit / WORD] & (1 << (bit % WORD)) != 0
}

/// Sets `bit`.
#[inline]
pub(super) fn set(map: &mut [u64], bit: usize) {
    map[bit / WORD] |= 1 << (bit % WORD);
}

/// Calls `f(word index, mask)` for the words covering `[start, start + len)`.
fn for_each_mask(start: usize, len: usize, mut f: impl FnMut(usize, u64)) {
    let end = start + len;
    let mut b = start;
    while b < end {
        let lo = b % WORD;
        let n = (WORD - lo).min(end - b);
        let mask = if n == WORD { !0 } else { ((1u64 << n) - 1) << lo };
        f(b / WORD, mask);
        b += n;
    }
}

/// Sets bits `[start, start + len)` (`bitmap_set`).
pub(super) fn set_range(map: &mut [u64], start: usize, len: usize) {
    for_each_mask(start, len, |w, m| map[w] |= m);
}

/// Clears bits `[start, start + len)` (`bitmap_clear`).
pub(super) fn clear_range(map: &mut [u64], start: usize, len: usize) {
    for_each_mask(start, len, |w, m| map[w] &= !m);
}

/// The first bit in `[from, end)` whose value is `want`, or `end` (`find_next_bit` and
/// `find_next_zero_bit`).
fn next_with(map: &[u64], from: usize, end: usize, want: bool) -> usize {
    if from >= end {
        return end;
    }
    let flip = if want { 0 } else { !0 };
    let mut w = from / WORD;
    let mut word = (map[w] ^ flip) & (!0u64 << (from % WORD));
    loop {
        if word != 0 {
            return (w * WORD + word.trailing_zeros() as usize).min(end);
        }
        w += 1;
        if w * WORD >= end {
            return end;
        }
        word = map[w] ^ flip;
    }
}

/// The first set bit in `[from, end)`, or `end`.
pub(super) fn next_set(map: &[u64], from: usize, end: usize) -> usize {
    next_with(map, from, end, true)
}

/// The first clear bit in `[from, end)`, or `end`.
pub(super) fn next_clear(map: &[u64], from: usize, end: usize) -> usize {
    next_with(map, from, end, false)
}

/// First fit: the lowest `pos` in `[from, end)`, a multiple of `align` (a power of two), with
/// bits `[pos, pos + len)` all clear and `pos + len <= end`.
pub(super) fn find_clear_area(map: &[u64], from: usize, end: usize, len: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two() && len > 0);
    let mut pos = from.next_multiple_of(align);
    while pos + len <= end {
        let busy = next_set(map, pos, pos + len);
        if busy == pos + len {
            return Some(pos);
        }
        // Skip the whole run of set bits, then realign.
        pos = next_clear(map, busy + 1, end).next_multiple_of(align);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_and_search_across_words() {
        let mut m = [0u64; 4];
        set_range(&mut m, 60, 10);
        assert_eq!(m[0], 0xf << 60);
        assert_eq!(m[1], 0x3f);
        assert!(test(&m, 60) && test(&m, 69) && !test(&m, 59) && !test(&m, 70));
        assert_eq!(next_set(&m, 0, 256), 60);
        assert_eq!(next_set(&m, 70, 256), 256);
        assert_eq!(next_set(&m, 0, 40), 40, "end bounds the search");
        assert_eq!(next_clear(&m, 60, 256), 70);
        assert_eq!(next_clear(&m, 0, 256), 0);
        clear_range(&mut m, 62, 4);
        assert_eq!(next_clear(&m, 60, 256), 62);
        assert_eq!(next_set(&m, 62, 256), 66);
        set_range(&mut m, 0, 256);
        assert_eq!(m, [!0; 4]);
        assert_eq!(next_clear(&m, 0, 256), 256);
        clear_range(&mut m, 0, 256);
        assert_eq!(m, [0; 4]);
        set(&mut m, 255);
        assert_eq!(next_set(&m, 128, 256), 255);
    }

    #[test]
    fn first_fit_honours_alignment_and_skips_busy_runs() {
        let mut m = [0u64; 4];
        assert_eq!(find_clear_area(&m, 0, 256, 256, 1), Some(0));
        assert_eq!(find_clear_area(&m, 0, 256, 257, 1), None);
        assert_eq!(find_clear_area(&m, 3, 256, 1, 8), Some(8), "start rounds up to the alignment");
        set_range(&mut m, 0, 5);
        assert_eq!(find_clear_area(&m, 0, 256, 3, 1), Some(5));
        assert_eq!(find_clear_area(&m, 0, 256, 3, 4), Some(8));
        set_range(&mut m, 8, 1);
        assert_eq!(find_clear_area(&m, 0, 256, 3, 4), Some(12));
        assert_eq!(find_clear_area(&m, 0, 256, 64, 64), Some(64));
        set_range(&mut m, 100, 1);
        assert_eq!(find_clear_area(&m, 0, 256, 64, 64), Some(128));
        assert_eq!(find_clear_area(&m, 0, 190, 64, 64), None, "the area must end before `end`");
        // A hole exactly the right size between two busy runs.
        let mut h = [!0u64; 2];
        clear_range(&mut h, 70, 6);
        assert_eq!(find_clear_area(&h, 0, 128, 6, 1), Some(70));
        assert_eq!(find_clear_area(&h, 0, 128, 6, 2), Some(70));
        assert_eq!(find_clear_area(&h, 0, 128, 6, 4), None, "72..78 runs into the busy bits at 76");
        assert_eq!(find_clear_area(&h, 0, 128, 4, 4), Some(72));
    }
}
