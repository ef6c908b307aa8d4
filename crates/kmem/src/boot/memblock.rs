//! memblock: the boot-time allocator that exists before the buddy lists do.
//!
//! It knows two region lists, `memory` (usable RAM, per node) and `reserved` (firmware,
//! the caller's `memblock_reserve`, and everything `memblock_alloc` handed out). Allocation is
//! top-down, as Linux's default. Nothing it hands out is ever freed: when the buddy allocator
//! takes over, reserved ranges stay `PG_reserved` for the life of the machine.
//!
//! Storage is two fixed arrays (`INIT_MEMBLOCK_REGIONS`), so it works with no allocator at all.

use crate::addr::PhysAddr;

/// Capacity of each region list (Linux's `INIT_MEMBLOCK_REGIONS`).
pub const MEMBLOCK_REGIONS: usize = 128;

/// A range in a memblock list.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Node (memory list only).
    pub node: u8,
}

#[derive(Debug)]
struct List {
    r: [Range; MEMBLOCK_REGIONS],
    n: usize,
}

impl List {
    const fn new() -> Self {
        Self { r: [Range { start: 0, end: 0, node: 0 }; MEMBLOCK_REGIONS], n: 0 }
    }
    fn as_slice(&self) -> &[Range] {
        &self.r[..self.n]
    }
    /// Inserts keeping the list sorted; merges with touching neighbours of the same node. In
    /// place: a copy of the list (3 KiB) on the stack cost a process's first `malloc` a page
    /// fault of stack.
    fn insert(&mut self, new: Range) -> Result<(), MemblockError> {
        if new.start >= new.end {
            return Ok(());
        }
        // Every range of the node that touches the new one joins it (in list order: a range
        // may touch only the grown one) and leaves the list.
        let mut merged = new;
        let mut kept = 0;
        for i in 0..self.n {
            let r = self.r[i];
            if r.node == merged.node && r.start <= merged.end && merged.start <= r.end {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
                continue;
            }
            self.r[kept] = r;
            kept += 1;
        }
        self.n = kept;
        if self.n == MEMBLOCK_REGIONS {
            return Err(MemblockError::TooManyRegions);
        }
        // Before the first range that starts after it.
        let at = self.as_slice().iter().position(|r| r.start > merged.start).unwrap_or(self.n);
        self.r.copy_within(at..self.n, at + 1);
        self.r[at] = merged;
        self.n += 1;
        Ok(())
    }
}

/// Why a memblock operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemblockError {
    /// A region list is full.
    TooManyRegions,
    /// No free range of that size and alignment below the limit.
    NoSpace {
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
    },
}

impl core::fmt::Display for MemblockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyRegions => write!(f, "memblock: too many regions (max {MEMBLOCK_REGIONS})"),
            Self::NoSpace { size, align } => {
                write!(f, "memblock_alloc: Failed to allocate {size} bytes align={align:#x}")
            }
        }
    }
}

/// The boot allocator.
#[derive(Debug)]
pub struct Memblock {
    memory: List,
    reserved: List,
    limit: u64,
}

impl Memblock {
    /// Empty lists; allocations stay below `limit` (`memblock.current_limit`, the direct map).
    pub(crate) const fn new(limit: u64) -> Self {
        Self { memory: List::new(), reserved: List::new(), limit }
    }

    /// `memblock_add_node()`.
    pub(crate) fn add(&mut self, start: u64, end: u64, node: u8) -> Result<(), MemblockError> {
        self.memory.insert(Range { start, end, node })
    }

    /// `memblock_reserve()`: the range will never be given to the buddy allocator.
    pub fn reserve(&mut self, start: PhysAddr, size: u64) -> Result<(), MemblockError> {
        let end = start.as_u64().saturating_add(size);
        self.reserved.insert(Range { start: start.as_u64(), end, node: 0 })
    }

    /// `memblock_alloc_try_nid()`: `size` bytes aligned to `align` (a power of two), from `node`
    /// if it has room (else any node), highest address first, below the limit. The memory is
    /// reserved for good; its contents are unspecified.
    pub fn alloc(&mut self, size: u64, align: u64, node: Option<u8>) -> Result<PhysAddr, MemblockError> {
        let found = node.and_then(|n| self.find(size, align, Some(n))).or_else(|| self.find(size, align, None));
        let start = found.ok_or(MemblockError::NoSpace { size, align })?;
        self.reserve(PhysAddr::new(start), size)?;
        Ok(PhysAddr::new(start))
    }

    fn find(&self, size: u64, align: u64, node: Option<u8>) -> Option<u64> {
        for m in self.memory.as_slice().iter().rev() {
            if node.is_some_and(|n| n != m.node) {
                continue;
            }
            let lo = m.start;
            let mut hi = m.end.min(self.limit);
            while hi >= lo.saturating_add(size) && hi > lo {
                let cand = (hi - size) & !(align - 1);
                if cand < lo {
                    break;
                }
                match self.reserved.as_slice().iter().rev().find(|r| r.start < cand + size && cand < r.end) {
                    Some(r) => hi = r.start,
                    None => return Some(cand),
                }
            }
        }
        None
    }

    /// Usable RAM ranges, sorted.
    pub fn memory(&self) -> &[Range] {
        self.memory.as_slice()
    }
    /// Reserved ranges, sorted and merged.
    pub fn reserved(&self) -> &[Range] {
        self.reserved.as_slice()
    }
    /// Bytes reserved inside usable memory.
    pub fn reserved_bytes(&self) -> u64 {
        let mut total = 0;
        for r in self.reserved() {
            for m in self.memory() {
                let (s, e) = (r.start.max(m.start), r.end.min(m.end));
                total += e.saturating_sub(s);
            }
        }
        total
    }

    /// Calls `f(start, end, node)` for each free (usable, unreserved) range, ascending
    /// (`for_each_free_mem_range`).
    pub fn for_each_free(&self, mut f: impl FnMut(u64, u64, u8)) {
        for m in self.memory() {
            let mut cur = m.start;
            for r in self.reserved() {
                if r.end <= cur || r.start >= m.end {
                    continue;
                }
                if r.start > cur {
                    f(cur, r.start, m.node);
                }
                cur = cur.max(r.end);
            }
            if cur < m.end {
                f(cur, m.end, m.node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An insert merges every range of its node that it touches, also one that lies past
    /// another node's range (a copy that placed the merged range before reaching it dropped
    /// that range), and keeps the list sorted.
    #[test]
    fn insert_merges_past_another_nodes_range() {
        let mut mb = Memblock::new(u64::MAX);
        mb.add(0x0, 0x1000, 0).unwrap();
        mb.add(0x1200, 0x1400, 1).unwrap();
        mb.add(0x1500, 0x2000, 0).unwrap();
        mb.add(0x500, 0x1600, 0).unwrap();
        assert_eq!(
            mb.memory(),
            &[Range { start: 0x0, end: 0x2000, node: 0 }, Range { start: 0x1200, end: 0x1400, node: 1 }]
        );
        let mut full = Memblock::new(u64::MAX);
        for i in 0..MEMBLOCK_REGIONS as u64 {
            full.add(i * 0x2000, i * 0x2000 + 0x1000, 0).unwrap();
        }
        assert_eq!(full.add(u64::MAX - 0x2000, u64::MAX - 0x1000, 0), Err(MemblockError::TooManyRegions));
        assert_eq!(full.memory().len(), MEMBLOCK_REGIONS, "a failed insert changes nothing");
        full.add(0x800, 0x2800, 0).unwrap();
        assert_eq!(full.memory().len(), MEMBLOCK_REGIONS - 1, "a merge frees a slot even in a full list");
    }

    #[test]
    fn alloc_is_top_down_and_skips_reserved() {
        let mut mb = Memblock::new(u64::MAX);
        mb.add(0x1000, 0x10_0000, 0).unwrap();
        mb.reserve(PhysAddr::new(0xf_0000), 0x1_0000).unwrap();
        let a = mb.alloc(0x1000, 0x1000, None).unwrap();
        assert_eq!(a.as_u64(), 0xe_f000);
        let b = mb.alloc(0x2000, 0x2000, None).unwrap();
        assert_eq!(b.as_u64(), 0xe_c000);
        // The reserved list merged what touches.
        assert_eq!(
            mb.reserved(),
            &[Range { start: 0xe_c000, end: 0xe_e000, node: 0 }, Range { start: 0xe_f000, end: 0x10_0000, node: 0 }]
        );
        let mut free = [(0, 0); 4];
        let mut n = 0;
        mb.for_each_free(|s, e, _| {
            free[n] = (s, e);
            n += 1;
        });
        assert_eq!(&free[..n], &[(0x1000, 0xe_c000), (0xe_e000, 0xe_f000)]);
    }

    #[test]
    fn alloc_respects_limit_node_and_reports_no_space() {
        let mut mb = Memblock::new(0x8000);
        mb.add(0x0, 0x10000, 0).unwrap();
        mb.add(0x10000, 0x20000, 1).unwrap();
        assert_eq!(mb.alloc(0x1000, 0x1000, Some(1)).unwrap().as_u64(), 0x7000, "node 1 is above the limit");
        assert_eq!(mb.alloc(0x10000, 0x1000, None), Err(MemblockError::NoSpace { size: 0x10000, align: 0x1000 }));
    }
}
