//! Content stamps: a pattern derived from a block's tag, written into every live block and
//! checked before it is freed (and at the scanner's full checks). Two live blocks that
//! overlap, or an allocator that writes its metadata into a live block, break a stamp.
//!
//! Small blocks are stamped in full; larger ones in their first 64 and last 16 bytes and at a
//! stride below a page, so that every page of a 4 MiB block is touched (about 1,100 bytes
//! per block at most: the suite stays fast in debug builds).

/// The byte a stamp puts at offset `i` of a block with tag `tag`.
pub fn byte(tag: u64, i: usize) -> u8 {
    let h = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    (h as u8) ^ (h >> 56) as u8 ^ (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ (i >> 16) as u8
}

/// The offsets a stamp of a `len`-byte block covers.
pub fn positions(len: usize) -> impl Iterator<Item = usize> {
    let small = len <= 256;
    let head = if small { len } else { 64 };
    let tail = if small { len } else { len - 16 };
    let step = (len / 1024).clamp(61, 4093);
    (0..head).chain((head..tail).step_by(step)).chain(tail..len)
}

/// Writes the stamp of `tag` into `[addr, addr + len)`.
///
/// # Safety
///
/// The range is a live block the caller owns.
pub unsafe fn stamp(addr: usize, len: usize, tag: u64) {
    for i in positions(len) {
        // SAFETY: `i < len`, inside the caller's block.
        unsafe { ((addr + i) as *mut u8).write(byte(tag, i)) };
    }
}

/// Checks the stamp of `tag` over the offsets below `upto` of a `len`-byte block stamped at
/// `addr` (`upto >= len`: all of it). Says where it first differs.
///
/// # Safety
///
/// `[addr, addr + min(len, upto))` is a live block the caller owns.
pub unsafe fn check(addr: usize, len: usize, tag: u64, upto: usize) -> Result<(), String> {
    for i in positions(len).take_while(|&i| i < upto) {
        // SAFETY: `i < len` and `i < upto`, inside the caller's block.
        let v = unsafe { ((addr + i) as *const u8).read() };
        if v != byte(tag, i) {
            return Err(format!(
                "block {addr:#x} (len {len}, tag {tag}) corrupted at offset {i}: {v:#04x}, stamped {:#04x}",
                byte(tag, i)
            ));
        }
    }
    Ok(())
}

/// Checks that the stamp offsets of a `len`-byte block all hold `v` (zeroed memory, a
/// constructor's pattern).
///
/// # Safety
///
/// `[addr, addr + len)` is a live block the caller owns.
pub unsafe fn check_fill(addr: usize, len: usize, v: u8, what: &str) -> Result<(), String> {
    for i in positions(len) {
        // SAFETY: `i < len`, inside the caller's block.
        let got = unsafe { ((addr + i) as *const u8).read() };
        if got != v {
            return Err(format!("{what} block {addr:#x} (len {len}): offset {i} is {got:#04x}, expected {v:#04x}"));
        }
    }
    Ok(())
}
