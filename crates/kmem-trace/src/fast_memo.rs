//! The fast path's memo of line tails: the fields after an allocation's pointer (or pfn) up
//! to its newline, ` name=maple_node bytes_req=256 bytes_alloc=256 gfp_flags=GFP_KERNEL
//! node=-1 accounted=false`, repeat from line to line (a trace has a few hundred distinct
//! ones). A tail seen before is found here by its bytes, and its fields' values and places
//! are taken from the entry: a hash of the first `KEY` bytes chooses a set of two entries,
//! and an entry matches where its whole tail (compared 16 bytes at a time) is there followed
//! by a newline; the newline is looked for only on a miss (3,614 on the 1,034,647-line
//! capture).
//!
//! Exact: what the fast path reads from a tail depends only on the tail's bytes (no scan
//! crosses the newline), so equal bytes give the result they gave when they were stored.
//! The front end keeps its own values beside each entry ([`Front`]), under the entry's
//! version.

/// A tail's fields as the fast path read them: text values as spans (offsets from the
/// tail's start while stored, from the line's start when handed out) and two numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailVal {
    /// Where the last field read ends.
    pub end: u32,
    /// First text value (the cache name), start and end.
    pub t1: (u32, u32),
    /// Second text value (the GFP flags), start and end.
    pub t2: (u32, u32),
    /// First number (`bytes_req`, the page order).
    pub n1: u32,
    /// Second number (`bytes_alloc`).
    pub n2: u32,
}

impl TailVal {
    /// Every offset moved by `by` (wrapping: moving back by the same amount restores it).
    #[inline(always)]
    fn shifted(mut self, by: u32) -> Self {
        self.end = self.end.wrapping_add(by);
        self.t1 = (self.t1.0.wrapping_add(by), self.t1.1.wrapping_add(by));
        self.t2 = (self.t2.0.wrapping_add(by), self.t2.1.wrapping_add(by));
        self
    }
}

/// Entries (direct-mapped, a power of two).
const ENTRIES: usize = 256;
const _: () = assert!(ENTRIES == 256, "a tail's number keeps its entry in 8 bits");
/// The longest tail kept, in bytes; shorter than `MIN` are read field by field.
pub const MAX: usize = 128;
/// The shortest tail kept.
pub const MIN: usize = 16;

/// What the front end ([`crate::op::Frontend`]) resolved a tail's values to (its own
/// encoding), kept beside the tail so that a line with the same tail skips its lookups.
pub type Front = Option<[u32; 4]>;

/// [`TailMemo`]'s tail number for a line whose tail was not read through it.
pub const NO_TAIL: u32 = u32::MAX;

/// Versions of an entry (24 bits, below [`NO_TAIL`]'s): a tail's number is its entry and
/// the entry's version when it was read, so that a number handed out before the entry took
/// another tail finds no front values (lines are parsed a few ahead of the front end).
const VERSIONS: u32 = 0xff_ffff;

#[derive(Clone, Copy)]
struct Entry {
    /// The tail's length (0: empty).
    len: u32,
    /// Which event's tail (the caller's tag).
    kind: u8,
    val: TailVal,
    /// Cleared when the entry takes another tail.
    front: Front,
    /// Counts the tails the entry took (modulo `VERSIONS`).
    ver: u32,
    bytes: [u8; MAX],
}

const EMPTY: Entry = Entry {
    len: 0,
    kind: 0,
    val: TailVal { end: 0, t1: (0, 0), t2: (0, 0), n1: 0, n2: 0 },
    front: None,
    ver: 0,
    bytes: [0; MAX],
};

/// Bytes from a tail's start that choose its set (read past a shorter tail's newline: that
/// only spreads it over more sets).
pub const KEY: usize = 48;
/// Sets of two entries each.
const SETS: usize = ENTRIES / 2;

/// Line tails seen and what the fast path read from them: sets of two entries, the newest
/// first, chosen by a hash of the first `KEY` bytes, so that a tail is found without
/// looking for its newline first.
pub struct TailMemo {
    e: Box<[Entry]>,
    /// The last version given to an entry (modulo `VERSIONS`).
    ver: u32,
}

impl Default for TailMemo {
    fn default() -> Self {
        TailMemo { e: vec![EMPTY; ENTRIES].into_boxed_slice(), ver: 0 }
    }
}

impl core::fmt::Debug for TailMemo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TailMemo({} used)", self.e.iter().filter(|e| e.len > 0).count())
    }
}

#[inline(always)]
fn word(t: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn word16(t: &[u8], i: usize) -> u128 {
    u128::from_le_bytes(t[i..i + 16].try_into().expect("16 bytes"))
}

/// Whether `a` and `b` (of one length, at least 16) are equal, 16 bytes at a time (the last
/// load may overlap bytes compared already).
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = b.len();
    let mut i = 0;
    while i + 16 < n {
        if word16(a, i) != word16(b, i) {
            return false;
        }
        i += 16;
    }
    word16(a, n - 16) == word16(b, n - 16)
}

impl TailMemo {
    /// The first entry of the set of the tail of event `kind` at `s[at..]` (`KEY` bytes
    /// there): a hash of those bytes.
    #[inline(always)]
    fn set(kind: u8, s: &[u8], at: usize) -> usize {
        let mut h = kind as u64;
        for k in 0..KEY / 8 {
            h ^= word(s, at + 8 * k).rotate_left(11 * k as u32);
        }
        2 * (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SETS.trailing_zeros())) as usize
    }

    /// The tail of event `kind` at `s[at..]` (at least `KEY` bytes there), if one stored
    /// is there whole and followed by the newline: its fields (offsets in `s`), its number
    /// and its length.
    #[inline(always)]
    pub fn find(&self, kind: u8, s: &[u8], at: usize) -> Option<(TailVal, u32, usize)> {
        let i = Self::set(kind, s, at);
        for j in [i, i + 1] {
            let e = &self.e[j];
            let n = e.len as usize;
            // A stored tail holds no newline and is at least `MIN` long.
            if n > 0 && e.kind == kind && s.get(at + n) == Some(&b'\n') && same(&e.bytes[..n], &s[at..at + n]) {
                return Some((e.val.shifted(at as u32), j as u32 | e.ver << 8, n));
            }
        }
        None
    }

    /// A new version (never one of the last `VERSIONS` - 1 given).
    fn next_ver(&mut self) -> u32 {
        self.ver = (self.ver + 1) % VERSIONS;
        self.ver
    }

    /// The front end's values of tail number `id` ([`TailMemo::find`]'s or
    /// [`TailMemo::put`]'s), if its entry still holds that tail.
    #[inline(always)]
    pub fn front(&mut self, id: u32) -> Option<&mut Front> {
        let e = self.e.get_mut((id & 0xff) as usize)?;
        (e.ver == id >> 8).then_some(&mut e.front)
    }

    /// Stores what the fast path read from the tail of event `kind` at `s[at..at + n]`
    /// (`n` within `MIN`..=`MAX`, no newline in it; `KEY` bytes at `at`) as the newest
    /// of its set, the older one leaving (`val`'s offsets are in `s`); returns its number.
    #[inline(never)]
    pub fn put(&mut self, kind: u8, s: &[u8], at: usize, n: usize, val: TailVal) -> u32 {
        let i = Self::set(kind, s, at);
        // The newest moves to second place, under a new version: numbers handed out for it
        // find no front values there (they are resolved again, the same).
        self.e[i + 1] = self.e[i];
        self.e[i + 1].ver = self.next_ver();
        let ver = self.next_ver();
        let e = &mut self.e[i];
        e.len = n as u32;
        e.kind = kind;
        e.val = val.shifted((at as u32).wrapping_neg());
        e.front = None;
        e.ver = ver;
        e.bytes[..n].copy_from_slice(&s[at..at + n]);
        i as u32 | ver << 8
    }
}
