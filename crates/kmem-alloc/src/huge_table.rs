//! The live large blocks, out of band: what [`crate::huge`] trusts to free, size and reuse a
//! block, looked up by the pointer it handed out. Nothing is ever read from the block
//! itself, so a pointer kmem did not hand out (stack, global, interior, freed, or a buffer
//! dressed up as a block) is simply not found.
//!
//! An open-addressing hash table (linear probing, backward-shift deletion, so no
//! tombstones), at most half full, in memory of its own from `mmap`: never from the global
//! allocator, which kmem is. It starts with [`FIRST_SLOTS`] slots (one page) and doubles;
//! a growth that cannot map memory fails the allocation that needed it. The caller
//! serialises every call (`huge`'s lock, which `fork` handlers hold across `fork`).

use core::ffi::c_void;

use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// A live large block: the pointer handed out and the host mapping that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// The pointer handed out (never 0: 0 marks an empty slot).
    pub ptr: usize,
    /// The mapping's start.
    pub base: usize,
    /// The mapping's length in bytes.
    pub len: usize,
}

impl Block {
    /// Bytes usable from `ptr` to the end of the mapping.
    pub fn usable(&self) -> usize {
        self.base + self.len - self.ptr
    }
}

const EMPTY: Block = Block { ptr: 0, base: 0, len: 0 };
const PAGE: usize = 4096;
/// Slots of the first table: the largest power of two that fits one page.
pub(crate) const FIRST_SLOTS: usize = (PAGE / core::mem::size_of::<Block>() + 1).next_power_of_two() / 2;

/// The table. `slots` is a mapping of `cap` blocks (`cap` a power of two), or null.
#[derive(Debug)]
pub(crate) struct Table {
    slots: *mut Block,
    cap: usize,
    n: usize,
}

// SAFETY: the table owns its mapping; the caller serialises all access (see the module docs).
unsafe impl Send for Table {}

fn bytes(cap: usize) -> usize {
    (cap * core::mem::size_of::<Block>()).next_multiple_of(PAGE)
}

impl Table {
    /// An empty table (maps nothing until the first insert).
    pub const fn new() -> Self {
        Self { slots: core::ptr::null_mut(), cap: 0, n: 0 }
    }

    /// Live blocks.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.n
    }

    fn slots(&self) -> &[Block] {
        if self.cap == 0 {
            return &[];
        }
        // SAFETY: `slots` maps `cap` initialised blocks (zero is EMPTY) that only this table
        // reaches.
        unsafe { core::slice::from_raw_parts(self.slots, self.cap) }
    }

    fn slots_mut(&mut self) -> &mut [Block] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: as in `slots`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.slots, self.cap) }
    }

    /// The home slot of `ptr` (Fibonacci hashing of its page number).
    fn home(&self, ptr: usize) -> usize {
        let h = ((ptr / PAGE) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - self.cap.trailing_zeros())) as usize
    }

    fn find(&self, ptr: usize) -> Option<usize> {
        if ptr == 0 || self.cap == 0 {
            return None;
        }
        let s = self.slots();
        let mut i = self.home(ptr);
        loop {
            match s[i].ptr {
                0 => return None,
                p if p == ptr => return Some(i),
                _ => i = (i + 1) & (self.cap - 1),
            }
        }
    }

    /// The live block handed out as `ptr`.
    pub fn get(&self, ptr: usize) -> Option<Block> {
        self.find(ptr).map(|i| self.slots()[i])
    }

    /// Records a new live block (its `ptr` is not in the table). False when the table had to
    /// grow and could not map memory.
    pub fn insert(&mut self, b: Block) -> bool {
        debug_assert!(b.ptr != 0 && self.find(b.ptr).is_none());
        if (self.n + 1) * 2 > self.cap && !self.grow() {
            return false;
        }
        self.place(b);
        self.n += 1;
        true
    }

    fn place(&mut self, b: Block) {
        let mask = self.cap - 1;
        let mut i = self.home(b.ptr);
        let s = self.slots_mut();
        while s[i].ptr != 0 {
            i = (i + 1) & mask;
        }
        s[i] = b;
    }

    /// Removes and returns the live block handed out as `ptr`.
    pub fn remove(&mut self, ptr: usize) -> Option<Block> {
        let mut hole = self.find(ptr)?;
        let mask = self.cap - 1;
        let b = self.slots()[hole];
        // Backward-shift deletion: move up every later entry of the run whose home is not
        // between the hole and it (cyclically), so no lookup ever stops early.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.slots()[j];
            if e.ptr == 0 {
                break;
            }
            let home = self.home(e.ptr);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                let s = self.slots_mut();
                s[hole] = e;
                hole = j;
            }
        }
        self.slots_mut()[hole] = EMPTY;
        self.n -= 1;
        Some(b)
    }

    /// Doubles the table (maps the first one): a new mapping, every block moved, the old
    /// mapping unmapped.
    fn grow(&mut self) -> bool {
        let cap = if self.cap == 0 { FIRST_SLOTS } else { self.cap * 2 };
        // SAFETY: a fresh private anonymous mapping (zeroed: every slot EMPTY); it aliases
        // nothing.
        let Ok(p) = (unsafe {
            mmap_anonymous(core::ptr::null_mut(), bytes(cap), ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
        }) else {
            return false;
        };
        let old = core::mem::replace(self, Self { slots: p.cast(), cap, n: self.n });
        for &b in old.slots().iter().filter(|b| b.ptr != 0) {
            self.place(b);
        }
        if old.cap != 0 {
            // SAFETY: the old table's mapping; nothing refers to it any more.
            let _ = unsafe { munmap(old.slots as *mut c_void, bytes(old.cap)) };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn block(k: usize) -> Block {
        let ptr = 0x7f00_0000_0000 + k * (8 << 20);
        Block { ptr, base: ptr, len: 8 << 20 }
    }

    #[test]
    fn agrees_with_a_map_through_growth_and_removal() {
        let mut t = Table::new();
        let mut model = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..200_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 3000) as usize;
            let b = block(k);
            if x % 5 < 3 {
                if let std::collections::hash_map::Entry::Vacant(e) = model.entry(b.ptr) {
                    assert!(t.insert(b));
                    e.insert(b);
                }
            } else {
                assert_eq!(t.remove(b.ptr), model.remove(&b.ptr), "step {step}");
            }
            if step % 997 == 0 {
                for k in 0..3000 {
                    let p = block(k).ptr;
                    assert_eq!(t.get(p), model.get(&p).copied(), "step {step}, block {k}");
                    assert_eq!(t.get(p + 4096), None, "interior pointers are never found");
                }
            }
            assert_eq!(t.len(), model.len());
        }
        assert!(t.cap <= 8192 && t.n * 2 <= t.cap, "cap {} for {} blocks", t.cap, t.n);
        for p in model.keys() {
            assert!(t.remove(*p).is_some());
        }
        assert_eq!(t.len(), 0);
        assert!(t.slots().iter().all(|b| b.ptr == 0));
        assert_eq!(t.get(0), None);
    }
}
