//! Trace keys (hashed pointers, pfns) to dense slot numbers, resolved while parsing so the
//! replay engine indexes a vector instead of hashing.
//!
//! An allocation of a key that is not live takes a free slot (the most recently freed one
//! first, for locality); an allocation of a live key keeps its slot (the engine finds it
//! occupied: a missed free). A free of a live key gives its slot back; a free of an unknown
//! key has no slot (an unmatched free).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hasher for the trace's keys: one multiply per lookup instead of
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

/// Live keys and their slots.
#[derive(Debug, Default)]
pub struct SlotMap {
    map: KeyMap<u32>,
    free: Vec<u32>,
    next: u32,
}

impl SlotMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// The slot of an allocation of `key`, and whether `key` was already live.
    pub fn alloc(&mut self, key: u64) -> (u32, bool) {
        if let Some(&s) = self.map.get(&key) {
            return (s, true);
        }
        let s = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.map.insert(key, s);
        (s, false)
    }
    /// The slot of a free of `key` ([`NO_SLOT`] if not live); the slot becomes free.
    pub fn free(&mut self, key: u64) -> u32 {
        match self.map.remove(&key) {
            Some(s) => {
                self.free.push(s);
                s
            }
            None => NO_SLOT,
        }
    }
    /// Keys live now.
    pub fn live(&self) -> usize {
        self.map.len()
    }
    /// Slots ever used (an engine's table size).
    pub fn slots(&self) -> u32 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_live_keys_keep_theirs() {
        let mut m = SlotMap::new();
        assert_eq!(m.alloc(0xa), (0, false));
        assert_eq!(m.alloc(0xb), (1, false));
        assert_eq!(m.alloc(0xa), (0, true));
        assert_eq!(m.free(0xa), 0);
        assert_eq!(m.free(0xa), NO_SLOT);
        assert_eq!(m.alloc(0xc), (0, false));
        assert_eq!((m.live(), m.slots()), (2, 2));
    }
}
