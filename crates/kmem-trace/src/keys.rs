//! Trace keys (hashed pointers, pfns) to dense slot numbers, resolved while parsing so the
//! replay engine indexes a vector instead of hashing; and [`TextMemo`], the interning of the
//! trace's few distinct texts (GFP flags, cache names).
//!
//! An allocation of a key that is not live takes a free slot (the most recently freed one
//! first, for locality); an allocation of a live key keeps its slot (the engine finds it
//! occupied: a missed free). A free of a live key gives its slot back; a free of an unknown
//! key has no slot (an unmatched free).
//!
//! The live keys are an open-addressing table with linear probing: one multiply to hash, the
//! key beside its slot (one cache line per lookup, where a `HashMap` reads its control bytes
//! and then its bucket), at most half full, and deletion by shifting the entries that follow
//! back (no tombstones).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hasher for the trace's keys and texts: one multiply per word instead of
/// SipHash's rounds (keys are not attacker-chosen).
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.write_u64(u64::from_le_bytes(tail) ^ bytes.len() as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by trace keys.
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// `Op::slot` of a free that matches no live allocation.
pub const NO_SLOT: u32 = u32::MAX;

/// A table entry: a live key and its slot ([`NO_SLOT`]: the entry is empty).
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    slot: u32,
}

const EMPTY: Entry = Entry { key: 0, slot: NO_SLOT };

/// Entries of a new table (a power of two).
const MIN_ENTRIES: usize = 1 << 12;

/// Live keys and their slots.
#[derive(Debug)]
pub struct SlotMap {
    table: Box<[Entry]>,
    /// `64 - log2(table.len())`: a hash's top bits index the table.
    shift: u32,
    live: usize,
    free: Vec<u32>,
    next: u32,
}

impl Default for SlotMap {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotMap {
    /// An empty map.
    pub fn new() -> Self {
        SlotMap {
            table: vec![EMPTY; MIN_ENTRIES].into_boxed_slice(),
            shift: 64 - MIN_ENTRIES.trailing_zeros(),
            live: 0,
            free: Vec::new(),
            next: 0,
        }
    }

    /// Where `key`'s probe starts (Fibonacci hashing: the top bits of one multiply spread
    /// sequential pfns and hashed pointers alike).
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The entry of `key`, or the empty one where it would go.
    #[inline(always)]
    fn find(&self, key: u64) -> usize {
        let mask = self.table.len() - 1;
        let mut i = self.home(key);
        loop {
            let e = self.table[i];
            if e.slot == NO_SLOT || e.key == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the table entry where `key`'s probe starts into the cache (a hint).
    #[inline(always)]
    pub fn prefetch(&self, key: u64) {
        let entry: *const Entry = &self.table[self.home(key)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch has no architectural effect (it cannot fault, whatever the
        // address); SSE, which has it, is part of the x86-64 baseline.
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(entry.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = entry;
    }

    /// The slot of an allocation of `key`, and whether `key` was already live.
    #[inline]
    pub fn alloc(&mut self, key: u64) -> (u32, bool) {
        let i = self.find(key);
        if self.table[i].slot != NO_SLOT {
            return (self.table[i].slot, true);
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.table[i] = Entry { key, slot };
        self.live += 1;
        if self.live * 2 > self.table.len() {
            self.grow();
        }
        (slot, false)
    }

    /// The slot of a free of `key` ([`NO_SLOT`] if not live); the slot becomes free.
    #[inline]
    pub fn free(&mut self, key: u64) -> u32 {
        let mut hole = self.find(key);
        let slot = self.table[hole].slot;
        if slot == NO_SLOT {
            return NO_SLOT;
        }
        self.live -= 1;
        self.free.push(slot);
        // Move back each following entry that may take the hole (its home is not between
        // the hole and itself), until an empty entry ends the run.
        let mask = self.table.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.table[j];
            if e.slot == NO_SLOT {
                break;
            }
            if (j.wrapping_sub(self.home(e.key)) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.table[hole] = e;
                hole = j;
            }
        }
        self.table[hole] = EMPTY;
        slot
    }

    /// Doubles the table.
    #[cold]
    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.table.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.table, bigger);
        self.shift -= 1;
        for e in old.iter().filter(|e| e.slot != NO_SLOT) {
            let i = self.find(e.key);
            self.table[i] = *e;
        }
    }

    /// Keys live now.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Slots ever used (an engine's table size).
    pub fn slots(&self) -> u32 {
        self.next
    }
}

/// Entries of a [`TextMemo`]'s direct-mapped front (a power of two).
const FRONT: usize = 256;

/// A text's length and its first and last eight bytes (zero-padded when shorter): equal texts
/// have equal summaries, and texts of at most 16 bytes are equal when their summaries are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Summary {
    len: usize,
    head: u64,
    tail: u64,
}

impl Summary {
    #[inline(always)]
    fn of(t: &[u8]) -> Self {
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let (head, tail) = match t.len() {
            n @ 8.. => (word(&t[..8]), word(&t[n - 8..])),
            _ => (t.iter().rev().fold(0, |w, &b| w << 8 | b as u64), 0),
        };
        Summary { len: t.len(), head, tail }
    }

    /// Its entry in the front.
    #[inline(always)]
    fn slot(&self) -> usize {
        let h = (self.head ^ self.tail.rotate_left(29) ^ self.len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - FRONT.trailing_zeros())) as usize
    }
}

/// Whether two texts of the same length, over 16 bytes, with the same first and last eight
/// bytes, are equal: their middles compared eight bytes at a time (the last word may overlap
/// bytes compared already).
#[inline(always)]
fn same_middle(a: &[u8], b: &[u8]) -> bool {
    let word = |t: &[u8], i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
    let n = a.len();
    let mut i = 8;
    while i + 16 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 16) == word(b, n - 16)
}

/// A text in a [`TextMemo`]'s front, with its summary and value.
type FrontEntry<V> = (Summary, Box<[u8]>, V);

/// Texts to values, for the few distinct texts a trace repeats (GFP flags, cache names): a
/// direct-mapped front indexed by a hash of the text's summary (its length and first and last
/// eight bytes: a hit compares the summaries, and the middle bytes of a text over 16 bytes),
/// over a `HashMap` that holds them all.
#[derive(Debug)]
pub struct TextMemo<V> {
    front: Vec<Option<FrontEntry<V>>>,
    all: HashMap<Box<[u8]>, V, BuildHasherDefault<KeyHasher>>,
}

impl<V: Copy> Default for TextMemo<V> {
    fn default() -> Self {
        TextMemo { front: vec![None; FRONT], all: HashMap::default() }
    }
}

impl<V: Copy> TextMemo<V> {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `text`, made by `make` the first time.
    #[inline]
    pub fn get(&mut self, text: &[u8], make: impl FnOnce() -> V) -> V {
        let sum = Summary::of(text);
        let i = sum.slot();
        if let Some((s, t, v)) = &self.front[i] {
            if *s == sum && (sum.len <= 16 || same_middle(t, text)) {
                return *v;
            }
        }
        self.get_slow(i, sum, text, make)
    }

    #[cold]
    fn get_slow(&mut self, i: usize, sum: Summary, text: &[u8], make: impl FnOnce() -> V) -> V {
        let v = match self.all.get(text) {
            Some(&v) => v,
            None => {
                let v = make();
                self.all.insert(text.into(), v);
                v
            }
        };
        self.front[i] = Some((sum, text.into(), v));
        v
    }

    /// The value of `text`, if it was seen.
    pub fn peek(&self, text: &[u8]) -> Option<V> {
        self.all.get(text).copied()
    }

    /// Distinct texts seen.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no text was seen.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
