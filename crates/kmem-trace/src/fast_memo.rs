//! The fast path's memo of line tails: the fields after an allocation's pointer (or pfn) up
//! to its newline, ` name=maple_node bytes_req=256 bytes_alloc=256 gfp_flags=GFP_KERNEL
//! node=-1 accounted=false`, repeat from line to line (a trace has a few hundred distinct
//! ones), and reading them field by field was about 250 instructions a `kmem_cache_alloc`.
//! A tail seen before is found here by its bytes and its fields' values and places are
//! taken from the entry: one search for the newline, a hash of three words and a compare of
//! the whole tail (16 bytes at a time) instead.
//!
//! Exact: what the fast path reads from a tail depends only on the tail's bytes (no scan
//! crosses the newline), so equal bytes give the result they gave when they were stored.

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
/// The longest tail kept, in bytes; shorter than [`MIN`] are read field by field.
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
    /// Counts the tails the entry took (modulo [`VERSIONS`]).
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

/// Line tails seen and what the fast path read from them.
pub struct TailMemo {
    e: Box<[Entry]>,
}

impl Default for TailMemo {
    fn default() -> Self {
        TailMemo { e: vec![EMPTY; ENTRIES].into_boxed_slice() }
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
    /// Where a tail goes: a hash of its length and its first, middle and last eight bytes.
    #[inline(always)]
    fn slot(t: &[u8]) -> usize {
        let n = t.len();
        let h = word(t, 0) ^ word(t, n / 2 - 4).rotate_left(21) ^ word(t, n - 8).rotate_left(42) ^ n as u64;
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - ENTRIES.trailing_zeros())) as usize
    }

    /// The fields of tail `t` (its length within [`MIN`]..=[`MAX`]) of event `kind` at
    /// offset `at` of its line, if it was stored, and its number.
    #[inline(always)]
    pub fn get(&self, kind: u8, t: &[u8], at: usize) -> Option<(TailVal, u32)> {
        let i = Self::slot(t);
        let e = &self.e[i];
        (e.len as usize == t.len() && e.kind == kind && same(&e.bytes[..t.len()], t))
            .then(|| (e.val.shifted(at as u32), i as u32 | e.ver << 8))
    }

    /// The front end's values of tail number `id` ([`TailMemo::get`]'s or
    /// [`TailMemo::put`]'s), if its entry still holds that tail.
    #[inline(always)]
    pub fn front(&mut self, id: u32) -> Option<&mut Front> {
        let e = self.e.get_mut((id & 0xff) as usize)?;
        (e.ver == id >> 8).then_some(&mut e.front)
    }

    /// Stores what the fast path read from tail `t` at offset `at` of its line (`val`'s
    /// offsets are the line's); returns its number.
    #[inline(never)]
    pub fn put(&mut self, kind: u8, t: &[u8], at: usize, val: TailVal) -> u32 {
        let i = Self::slot(t);
        let e = &mut self.e[i];
        e.len = t.len() as u32;
        e.kind = kind;
        e.val = val.shifted((at as u32).wrapping_neg());
        e.front = None;
        e.ver = (e.ver + 1) % VERSIONS;
        e.bytes[..t.len()].copy_from_slice(t);
        i as u32 | e.ver << 8
    }
}
