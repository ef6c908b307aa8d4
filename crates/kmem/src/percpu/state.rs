//! [`PercpuState`]: the machine's per-CPU allocator state, the boot of the first chunk, and
//! the chunk list under the percpu lock.
//!
//! The list holds the first chunk's dynamic region and every dynamic chunk, sorted by free
//! space, fullest first, so a first-fit walk allocates from the fullest chunk that fits
//! (Linux sorts chunks into `pcpu_chunk_lists` slots by free size for the same purpose). The
//! reserved region is a separate header over the same units and is never on the list.

use core::cell::UnsafeCell;
use core::fmt;

use super::chunk::{Chunk, ChunkKind, ChunkPtr, ChunkState, MAP_BITS};
use super::{PCPU_MIN_ALLOC_SIZE, PCPU_MIN_UNIT_SIZE, PCPU_UNIT_PAGES, PERCPU_RESERVED_SIZE};
use crate::addr::PAGE_SIZE;
use crate::boot::{Memblock, MemblockError};
use crate::machine::NR_CPUS;
use crate::platform::{DirectMap, Platform};
use crate::sync::{const_fn_unless_loom, AtomicU32, AtomicUsize, Ordering, RawSpinLock, SpinGuard};

/// Granules of the reserved region.
const RESERVED_BITS: usize = PERCPU_RESERVED_SIZE / PCPU_MIN_ALLOC_SIZE;
/// Allocation-failure warnings before they are switched off (`warn_limit` in `pcpu_alloc`).
const WARN_LIMIT: u32 = 10;

/// The per-CPU allocator of one machine (lives in [`crate::machine::MachineState`]).
pub(crate) struct PercpuState {
    /// The percpu lock (`pcpu_lock`): guards `lists` and every chunk's [`ChunkState`].
    lock: RawSpinLock,
    lists: UnsafeCell<Lists>,
    reserved: Option<ChunkPtr>,
    /// Bytes carved from memblock at boot (units and headers).
    boot_bytes: u64,
    /// Pages backing the units of every chunk (`pcpu_nr_pages()`, `Percpu:`).
    pub(super) nr_pages: AtomicUsize,
    /// Allocation-failure warnings left.
    pub(super) warn_limit: AtomicU32,
}

/// The chunk list (guarded by the percpu lock).
struct Lists {
    head: Option<ChunkPtr>,
    /// Dynamic chunks on the list.
    nr_dynamic: usize,
    /// Dynamic chunks on the list with no allocation.
    nr_empty: usize,
}

/// A snapshot of the allocator, taken under the lock, with the maps checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PercpuStats {
    /// Chunks made of page-allocator pages (the first chunk not included).
    pub nr_dynamic_chunks: usize,
    /// Dynamic chunks with no allocation.
    pub nr_empty_chunks: usize,
    /// Live allocations, reserved region included.
    pub nr_alloc: usize,
    /// Bytes allocated per unit in dynamic regions (first chunk's and dynamic chunks').
    pub dyn_used_bytes: usize,
    /// Bytes free per unit in dynamic regions.
    pub dyn_free_bytes: usize,
    /// Bytes allocated per unit in the reserved region.
    pub reserved_used_bytes: usize,
    /// Pages backing all units (`Percpu:`).
    pub nr_pages: usize,
}

impl fmt::Debug for PercpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PercpuState").field("nr_pages", &self.nr_pages.load(Ordering::Relaxed)).finish()
    }
}

impl PercpuState {
    const_fn_unless_loom! {
        /// No per-CPU area yet (before [`PercpuState::boot`]).
        pub(crate) fn empty() -> Self {
            Self {
                lock: RawSpinLock::new(),
                lists: UnsafeCell::new(Lists { head: None, nr_dynamic: 0, nr_empty: 0 }),
                reserved: None,
                boot_bytes: 0,
                nr_pages: AtomicUsize::new(0),
                warn_limit: AtomicU32::new(WARN_LIMIT),
            }
        }
    }

    /// Builds the first chunk (`pcpu_embed_first_chunk`): one [`PCPU_MIN_UNIT_SIZE`] unit per
    /// CPU from memblock on that CPU's node, and the two headers (reserved and dynamic region)
    /// in page-rounded memblock memory, so that boot's reserved-page accounting stays exact.
    ///
    /// # Safety
    ///
    /// Every range `mb` allocates must be RAM, mapped read-write at `dm`, used by nothing else,
    /// and valid for as long as the machine lives (the contract of [`crate::Kmem::boot`]);
    /// with `zeroed`, it must read as zero (the units are then never written for a CPU until
    /// something is stored there).
    pub(crate) unsafe fn boot(
        mb: &mut Memblock,
        dm: DirectMap,
        nr_cpus: usize,
        zeroed: bool,
        cpu_to_node: impl Fn(usize) -> u8,
    ) -> Result<PercpuState, MemblockError> {
        let va = |pa: crate::addr::PhysAddr| {
            dm.phys_to_virt(pa).expect("memblock allocates below the direct-map limit").as_usize()
        };
        // One memblock allocation per run of CPUs on the same node (Linux's embedding allocates
        // a group's units together too): a machine with many possible CPUs carves its first
        // chunk in one step, not one list insertion per CPU. A run that does not fit in one
        // piece falls back to a unit at a time.
        let mut units = [0usize; NR_CPUS];
        let mut cpu = 0;
        while cpu < nr_cpus {
            let node = cpu_to_node(cpu);
            let run = (cpu..nr_cpus).take_while(|&c| cpu_to_node(c) == node).count();
            match mb.alloc((run * PCPU_MIN_UNIT_SIZE) as u64, PAGE_SIZE as u64, Some(node)) {
                Ok(pa) => {
                    let base = va(pa);
                    for (i, unit) in units[cpu..cpu + run].iter_mut().enumerate() {
                        *unit = base + i * PCPU_MIN_UNIT_SIZE;
                    }
                }
                Err(_) => {
                    for unit in &mut units[cpu..cpu + run] {
                        *unit = va(mb.alloc(PCPU_MIN_UNIT_SIZE as u64, PAGE_SIZE as u64, Some(node))?);
                    }
                }
            }
            cpu += run;
        }
        let header_bytes = (2 * core::mem::size_of::<Chunk>()).next_multiple_of(PAGE_SIZE);
        let at = va(mb.alloc(header_bytes as u64, PAGE_SIZE as u64, Some(cpu_to_node(0)))?) as *mut Chunk;
        // SAFETY: `at` is the start of `header_bytes` (room for two headers) of carved RAM,
        // page-aligned and ours (caller's contract); the units are carved, page-aligned unit-size
        // ranges of RAM used by nothing else.
        let reserved = unsafe { Chunk::init(at, &units, ChunkKind::Reserved, 0, RESERVED_BITS, zeroed) };
        // SAFETY: as above; the second header follows the first, aligned because a Chunk's size
        // is a multiple of its alignment.
        let first = unsafe { Chunk::init(at.add(1), &units, ChunkKind::First, RESERVED_BITS, MAP_BITS, zeroed) };
        Ok(PercpuState {
            lists: UnsafeCell::new(Lists { head: Some(first), nr_dynamic: 0, nr_empty: 0 }),
            reserved: Some(reserved),
            boot_bytes: (nr_cpus * PCPU_MIN_UNIT_SIZE + header_bytes) as u64,
            nr_pages: AtomicUsize::new(nr_cpus * PCPU_UNIT_PAGES),
            ..PercpuState::empty()
        })
    }

    /// Address of the first chunk's header (the dynamic region's, which follows the reserved
    /// region's), 0 before boot: kmem's own boot-time areas live in it, so a pointer to one
    /// needs only its offset.
    pub(crate) fn first_chunk_addr(&self) -> usize {
        self.reserved.map_or(0, |r| (r.chunk() as *const Chunk).wrapping_add(1) as usize)
    }

    /// Bytes carved from memblock at boot.
    pub(crate) fn boot_bytes(&self) -> u64 {
        self.boot_bytes
    }

    /// Takes the percpu lock.
    pub(super) fn lock<'a, P: Platform>(&'a self, platform: &'a P) -> Locked<'a, P> {
        let guard = self.lock.lock_irqsave(platform);
        // SAFETY: the lock is held for as long as the returned `Locked` lives, and `lists` is
        // only ever reached through a `Locked`, so this is the only reference to it.
        let lists = unsafe { &mut *self.lists.get() };
        Locked { _guard: guard, lists, reserved: self.reserved }
    }
}

/// The percpu lock, held; every chunk-state access goes through it.
pub(super) struct Locked<'a, P: Platform> {
    _guard: SpinGuard<'a, P>,
    lists: &'a mut Lists,
    reserved: Option<ChunkPtr>,
}

/// What a free did.
pub(super) enum Freed {
    /// `ptr` names no live allocation: nothing changed.
    Invalid,
    /// Freed; the chunk stays.
    Done,
    /// Freed, and the chunk was unlinked to be destroyed (after unlocking).
    Destroy(ChunkPtr),
}

impl<P: Platform> Locked<'_, P> {
    /// The mutable state of a chunk.
    fn st(&mut self, c: ChunkPtr) -> &mut ChunkState {
        // SAFETY: `c` is live (ChunkPtr invariant); the percpu lock is held (we are a
        // `Locked`), and the `&mut self` borrow makes this the only reference into any
        // ChunkState until it ends.
        unsafe { &mut *c.chunk().state_cell() }
    }

    fn iter_next(&mut self, c: ChunkPtr) -> Option<ChunkPtr> {
        self.st(c).next
    }

    /// Links `c` in, keeping the list sorted by free space, fullest first.
    fn insert(&mut self, c: ChunkPtr) {
        let free = self.st(c).free_bits;
        let (mut prev, mut cur) = (None, self.lists.head);
        while let Some(x) = cur {
            if self.st(x).free_bits > free {
                break;
            }
            prev = Some(x);
            cur = self.iter_next(x);
        }
        let s = self.st(c);
        (s.prev, s.next) = (prev, cur);
        match prev {
            Some(p) => self.st(p).next = Some(c),
            None => self.lists.head = Some(c),
        }
        if let Some(n) = cur {
            self.st(n).prev = Some(c);
        }
    }

    fn unlink(&mut self, c: ChunkPtr) {
        let s = self.st(c);
        let (prev, next) = (s.prev.take(), s.next.take());
        match prev {
            Some(p) => self.st(p).next = next,
            None => self.lists.head = next,
        }
        if let Some(n) = next {
            self.st(n).prev = prev;
        }
    }

    /// Keeps the list sorted after `c`'s free space changed.
    fn relocate(&mut self, c: ChunkPtr) {
        self.unlink(c);
        self.insert(c);
    }

    /// Links a freshly created (empty, dynamic) chunk in.
    pub(super) fn add_chunk(&mut self, c: ChunkPtr) {
        debug_assert!(c.chunk().kind == ChunkKind::Dynamic && self.st(c).is_empty());
        self.insert(c);
        self.lists.nr_dynamic += 1;
        self.lists.nr_empty += 1;
    }

    /// First fit in the fullest chunk on the list that has room; returns the chunk and the
    /// first granule.
    pub(super) fn alloc(&mut self, bits: usize, align: usize) -> Option<(ChunkPtr, usize, usize)> {
        let mut cur = self.lists.head;
        while let Some(c) = cur {
            let ch = c.chunk();
            let (start, end) = (ch.start as usize, ch.end as usize);
            let st = self.st(c);
            let was_empty = st.is_empty();
            if let Some(off) = st.alloc_area(start, end, bits, align) {
                let dirty = st.take_dirty(off, bits);
                if was_empty && ch.kind == ChunkKind::Dynamic {
                    self.lists.nr_empty -= 1;
                }
                self.relocate(c);
                return Some((c, off, dirty));
            }
            cur = self.iter_next(c);
        }
        None
    }

    /// First fit in the reserved region.
    pub(super) fn alloc_reserved(&mut self, bits: usize, align: usize) -> Option<(ChunkPtr, usize, usize)> {
        let c = self.reserved?;
        let ch = c.chunk();
        let st = self.st(c);
        let off = st.alloc_area(ch.start as usize, ch.end as usize, bits, align)?;
        Some((c, off, st.take_dirty(off, bits)))
    }

    /// The live chunk whose header is at `addr`, if any (a walk: chunks are few).
    fn find(&mut self, addr: usize) -> Option<ChunkPtr> {
        if let Some(r) = self.reserved.filter(|r| r.addr() == addr) {
            return Some(r);
        }
        let mut cur = self.lists.head;
        while let Some(c) = cur {
            if c.addr() == addr {
                return Some(c);
            }
            cur = self.iter_next(c);
        }
        None
    }

    /// Frees the allocation at byte offset `off` of the chunk at `chunk_addr`. When that leaves
    /// a dynamic chunk empty and another empty one exists, the chunk is unlinked for the caller
    /// to destroy (at most one empty chunk is kept).
    pub(super) fn free(&mut self, chunk_addr: usize, off: usize) -> Freed {
        let Some(c) = self.find(chunk_addr) else { return Freed::Invalid };
        if off % PCPU_MIN_ALLOC_SIZE != 0 {
            return Freed::Invalid;
        }
        let ch = c.chunk();
        let (start, end, kind) = (ch.start as usize, ch.end as usize, ch.kind);
        if self.st(c).free_area(start, end, off / PCPU_MIN_ALLOC_SIZE).is_none() {
            return Freed::Invalid;
        }
        if kind == ChunkKind::Reserved {
            return Freed::Done;
        }
        let empty = self.st(c).is_empty();
        if empty && kind == ChunkKind::Dynamic {
            if self.lists.nr_empty >= 1 {
                self.unlink(c);
                self.lists.nr_dynamic -= 1;
                return Freed::Destroy(c);
            }
            self.lists.nr_empty += 1;
        }
        self.relocate(c);
        Freed::Done
    }

    /// Unlinks one empty dynamic chunk for the caller to destroy.
    pub(super) fn take_empty(&mut self) -> Option<ChunkPtr> {
        let mut cur = self.lists.head;
        while let Some(c) = cur {
            if c.chunk().kind == ChunkKind::Dynamic && self.st(c).is_empty() {
                self.unlink(c);
                self.lists.nr_dynamic -= 1;
                self.lists.nr_empty -= 1;
                return Some(c);
            }
            cur = self.iter_next(c);
        }
        None
    }

    /// Counts, with every chunk's map invariants and the list order checked.
    pub(super) fn stats(&mut self, nr_pages: usize) -> PercpuStats {
        let mut s = PercpuStats { nr_pages, ..PercpuStats::default() };
        if let Some(r) = self.reserved {
            let ch = r.chunk();
            let st = self.st(r);
            s.reserved_used_bytes = st.check(ch.start as usize, ch.end as usize) * PCPU_MIN_ALLOC_SIZE;
            s.nr_alloc += st.nr_alloc as usize;
        }
        let (mut cur, mut last_free) = (self.lists.head, 0);
        while let Some(c) = cur {
            let ch = c.chunk();
            let st = self.st(c);
            let used = st.check(ch.start as usize, ch.end as usize);
            assert!(st.free_bits >= last_free, "percpu: chunk list out of order");
            last_free = st.free_bits;
            s.dyn_used_bytes += used * PCPU_MIN_ALLOC_SIZE;
            s.dyn_free_bytes += st.free_bits as usize * PCPU_MIN_ALLOC_SIZE;
            s.nr_alloc += st.nr_alloc as usize;
            if ch.kind == ChunkKind::Dynamic {
                s.nr_dynamic_chunks += 1;
                s.nr_empty_chunks += usize::from(st.is_empty());
            }
            cur = st.next;
        }
        assert_eq!(
            (s.nr_dynamic_chunks, s.nr_empty_chunks),
            (self.lists.nr_dynamic, self.lists.nr_empty),
            "percpu: chunk counters disagree with the list"
        );
        s
    }
}
