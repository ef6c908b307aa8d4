//! The pool's metadata (`struct kfence_metadata` and the freelist): one block from the page
//! allocator, laid out as the [`KfencePool`] header, `nr` [`Meta`] records, the freelist ring
//! (`nr` indices) and the frame of every pool page (`2 * (nr + 1)`). Everything is atomics:
//! a record's writers hold its lock, the freelist's hold the freelist lock, readers
//! (`/sys/kernel/debug/kfence/objects`, the fault handler's neighbour checks) may race and
//! see an approximate state, as Linux's `data_race` reads do.

use core::mem::size_of;

use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering, RawSpinLock};
use crate::PAGE_SIZE;

/// Counter indices (`enum kfence_counter_id`).
pub(crate) const C_ALLOCATED: usize = 0;
pub(crate) const C_ALLOCS: usize = 1;
pub(crate) const C_FREES: usize = 2;
pub(crate) const C_ZOMBIES: usize = 3;
pub(crate) const C_BUGS: usize = 4;
pub(crate) const C_SKIP_INCOMPAT: usize = 5;
pub(crate) const C_SKIP_CAPACITY: usize = 6;
const NR_COUNTERS: usize = 7;

/// Error types (`enum kfence_error_type`), the index into [`KfenceStats::errors`](super::KfenceStats::errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Oob = 0,
    Uaf = 1,
    Corruption = 2,
    Invalid = 3,
    InvalidFree = 4,
}

/// Names of the error types, as in the report titles.
pub const KFENCE_ERROR_NAMES: [&str; 5] =
    ["out-of-bounds", "use-after-free", "memory corruption", "invalid access", "invalid free"];

/// The sampling gate (`kfence_allocation_gate`): takes one opening for the caller, which then
/// serves its allocation from the pool. A pending forced allocation is taken first; else the
/// gate is open once `now` reaches `next_ns`, and the one caller whose compare-exchange moves
/// the deadline `interval_ms` on takes it: one allocation per opening, however many CPUs race
/// (`loom_tests.rs`).
pub(crate) fn take_gate(next_ns: &AtomicU64, forced: &AtomicUsize, now: u64, interval_ms: u64) -> bool {
    if forced.load(Ordering::Acquire) > 0 {
        return forced.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
    }
    let deadline = next_ns.load(Ordering::Relaxed);
    if interval_ms == 0 || now < deadline {
        return false;
    }
    let next = now.saturating_add(interval_ms.saturating_mul(1_000_000));
    next_ns.compare_exchange(deadline, next, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// A pool object's state (`enum kfence_object_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectState {
    /// Never allocated.
    Unused,
    /// Handed out.
    Allocated,
    /// Freed (its page protected).
    Freed,
}

impl ObjectState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ObjectState::Allocated,
            2 => ObjectState::Freed,
            _ => ObjectState::Unused,
        }
    }
}

/// An allocation or free record (`struct kfence_track`): kmem keeps the call site.
#[derive(Debug)]
pub(crate) struct Track {
    pub caller: AtomicUsize,
    pub pid: AtomicU32,
    pub cpu: AtomicU32,
    pub ts_ns: AtomicU64,
}

/// A copy of a [`Track`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TrackSnap {
    pub caller: Option<&'static core::panic::Location<'static>>,
    pub pid: u32,
    pub cpu: u32,
    pub ts_ns: u64,
}

impl Track {
    pub(crate) fn set(&self, caller: &'static core::panic::Location<'static>, pid: u32, cpu: u32, ts: u64) {
        self.caller.store(caller as *const _ as usize, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Relaxed);
        self.cpu.store(cpu, Ordering::Relaxed);
        self.ts_ns.store(ts, Ordering::Relaxed);
    }
    fn snap(&self) -> TrackSnap {
        let c = self.caller.load(Ordering::Relaxed);
        TrackSnap {
            // SAFETY: `caller` is 0 or the address of a `&'static Location` (`set`).
            caller: (c != 0).then(|| unsafe { &*(c as *const core::panic::Location<'static>) }),
            pid: self.pid.load(Ordering::Relaxed),
            cpu: self.cpu.load(Ordering::Relaxed),
            ts_ns: self.ts_ns.load(Ordering::Relaxed),
        }
    }
}

/// One pool object (`struct kfence_metadata`).
#[derive(Debug)]
pub(crate) struct Meta {
    /// Orders writers of the record.
    pub lock: RawSpinLock,
    /// [`ObjectState`] as a byte.
    pub state: AtomicU8,
    /// Object address (0 before the first allocation).
    pub addr: AtomicUsize,
    /// Requested size.
    pub size: AtomicUsize,
    /// The cache (`&KmemCache` address; 0 once the cache is destroyed).
    pub cache: AtomicUsize,
    /// Guard page mapped back after an out-of-bounds fault (0: none); protected again at free.
    pub unprotected: AtomicUsize,
    pub alloc: Track,
    pub free: Track,
}

impl Meta {
    pub(crate) fn state(&self) -> ObjectState {
        ObjectState::from_u8(self.state.load(Ordering::Acquire))
    }
    pub(crate) fn set_state(&self, s: ObjectState) {
        self.state.store(s as u8, Ordering::Release);
    }
}

/// A consistent copy of a record, for reports and views (taken under its lock, or racy for
/// the views).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snap {
    pub idx: usize,
    pub state: ObjectState,
    pub addr: usize,
    pub size: usize,
    /// The cache's name, copied (the cache may be destroyed after the copy).
    pub cache_name: [u8; 32],
    pub cache_len: usize,
    pub alloc: TrackSnap,
    pub free: TrackSnap,
}

impl Snap {
    pub(crate) fn cache_name(&self) -> &str {
        if self.cache_len == 0 {
            "<destroyed>"
        } else {
            core::str::from_utf8(&self.cache_name[..self.cache_len]).unwrap_or("?")
        }
    }
}

/// The metadata block's header (`kfence_metadata` array's owner, the freelist, the counters).
#[derive(Debug)]
pub(crate) struct KfencePool {
    /// Objects.
    pub nr: usize,
    /// First pool page's address.
    pub start: usize,
    /// Pool bytes (`2 * (nr + 1)` pages).
    pub len: usize,
    /// `kfence_sample_interval`, milliseconds; 0: disabled.
    pub interval_ms: AtomicU64,
    /// When the gate opens next (`now_ns` clock).
    pub next_ns: AtomicU64,
    /// Allocations `kfence_force_next` asked for, not yet served.
    pub forced: AtomicUsize,
    /// The caches' machine words carry `KmemCache::ARMED` for KFENCE.
    pub armed: AtomicBool,
    /// `kfence_freelist_lock`.
    pub freelist_lock: RawSpinLock,
    /// Ring position of the oldest free index.
    pub head: AtomicUsize,
    /// Free indices in the ring.
    pub free: AtomicUsize,
    /// Placement draws (xorshift).
    pub rng: AtomicU64,
    pub counters: [AtomicU64; NR_COUNTERS],
    pub errors: [AtomicU64; 5],
}

impl KfencePool {
    /// Bytes of a metadata block for `nr` objects.
    pub(crate) const fn block_bytes(nr: usize) -> usize {
        size_of::<KfencePool>() + nr * size_of::<Meta>() + nr * size_of::<AtomicU32>() + Self::pages(nr) * 8 + 64
    }
    /// Pool pages for `nr` objects.
    pub(crate) const fn pages(nr: usize) -> usize {
        2 * (nr + 1)
    }
    fn metas_addr(&self) -> usize {
        (self as *const Self as usize + size_of::<KfencePool>()).next_multiple_of(8)
    }
    fn ring_addr(&self) -> usize {
        self.metas_addr() + self.nr * size_of::<Meta>()
    }
    fn frames_addr(&self) -> usize {
        (self.ring_addr() + self.nr * size_of::<AtomicU32>()).next_multiple_of(8)
    }

    /// Writes an empty header and zeroed records into `block` and returns it.
    ///
    /// # Safety
    ///
    /// `block` is a zeroed, writable, 8-aligned block of [`KfencePool::block_bytes`]`(nr)`
    /// bytes that lives, unmoved and otherwise unused, as long as the machine.
    pub(crate) unsafe fn init(block: usize, nr: usize, start: usize, seed: u64) -> &'static KfencePool {
        let p = block as *mut KfencePool;
        // SAFETY: the caller's contract: ours, large enough, aligned. The records, ring and
        // frames after the header are all-atomic types whose zero bytes are valid values.
        unsafe {
            p.write(KfencePool {
                nr,
                start,
                len: Self::pages(nr) * PAGE_SIZE,
                interval_ms: AtomicU64::new(0),
                next_ns: AtomicU64::new(0),
                forced: AtomicUsize::new(0),
                armed: AtomicBool::new(false),
                freelist_lock: RawSpinLock::new(),
                head: AtomicUsize::new(0),
                free: AtomicUsize::new(0),
                rng: AtomicU64::new(seed | 1),
                counters: core::array::from_fn(|_| AtomicU64::new(0)),
                errors: core::array::from_fn(|_| AtomicU64::new(0)),
            });
            &*p
        }
    }

    /// Object `i`'s record.
    pub(crate) fn meta(&self, i: usize) -> &Meta {
        assert!(i < self.nr, "KFENCE object index out of range");
        // SAFETY: `init`'s block holds `nr` records after the header; zero bytes are a valid
        // `Meta` (atomics and an unlocked lock); they live as long as `self`.
        unsafe { &*((self.metas_addr() + i * size_of::<Meta>()) as *const Meta) }
    }

    fn ring(&self, pos: usize) -> &AtomicU32 {
        // SAFETY: `nr` ring slots follow the records inside `init`'s block.
        unsafe { &*((self.ring_addr() + (pos % self.nr) * size_of::<AtomicU32>()) as *const AtomicU32) }
    }

    /// The frame of pool page `page` (recorded at boot).
    pub(crate) fn frame(&self, page: usize) -> &AtomicUsize {
        assert!(page < Self::pages(self.nr), "KFENCE pool page out of range");
        // SAFETY: `pages(nr)` words follow the ring inside `init`'s block.
        unsafe { &*((self.frames_addr() + page * 8) as *const AtomicUsize) }
    }

    /// `is_kfence_address`: `addr` lies in the pool.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start) < self.len
    }

    /// `metadata_to_pageaddr`: object `i`'s page.
    pub(crate) fn page_addr(&self, i: usize) -> usize {
        self.start + (2 * i + 2) * PAGE_SIZE
    }

    /// `addr_to_metadata`: the object whose page (or right guard page) holds `addr`.
    pub(crate) fn index_of(&self, addr: usize) -> Option<usize> {
        let off = addr.checked_sub(self.start)?;
        let i = (off / (2 * PAGE_SIZE)).checked_sub(1)?;
        (i < self.nr).then_some(i)
    }

    /// Puts `i` at the freelist's tail (the caller holds the freelist lock).
    pub(crate) fn push_free_locked(&self, i: usize) {
        let (h, n) = (self.head.load(Ordering::Relaxed), self.free.load(Ordering::Relaxed));
        debug_assert!(n < self.nr);
        self.ring(h + n).store(i as u32, Ordering::Relaxed);
        self.free.store(n + 1, Ordering::Relaxed);
    }

    /// Takes the freelist's head (the oldest freed object), if any (the caller holds the
    /// freelist lock).
    pub(crate) fn pop_free_locked(&self) -> Option<usize> {
        let n = self.free.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let h = self.head.load(Ordering::Relaxed);
        let i = self.ring(h).load(Ordering::Relaxed) as usize;
        self.head.store((h + 1) % self.nr, Ordering::Relaxed);
        self.free.store(n - 1, Ordering::Relaxed);
        Some(i)
    }

    /// A random bit (`get_random_u32_below(2)`) for the placement.
    pub(crate) fn coin(&self) -> bool {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x & 1 != 0
    }

    /// Counts one event.
    pub(crate) fn count(&self, c: usize, delta: i64) {
        if delta >= 0 {
            self.counters[c].fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.counters[c].fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// A copy of object `i`'s record (racy unless the caller holds its lock). `name` gives
    /// the name of the cache at a descriptor address.
    pub(crate) fn snapshot(&self, i: usize) -> Snap {
        let m = self.meta(i);
        let mut snap = Snap {
            idx: i,
            state: m.state(),
            addr: m.addr.load(Ordering::Relaxed),
            size: m.size.load(Ordering::Relaxed),
            cache_name: [0; 32],
            cache_len: 0,
            alloc: m.alloc.snap(),
            free: m.free.snap(),
        };
        let c = m.cache.load(Ordering::Acquire);
        if c != 0 {
            // SAFETY: a non-zero `cache` is a live cache descriptor: `kfence_shutdown_cache`
            // clears it (under the record's lock) before a cache is freed.
            let name = unsafe { &*(c as *const crate::slab::KmemCache) }.name().as_bytes();
            let n = name.len().min(32);
            snap.cache_name[..n].copy_from_slice(&name[..n]);
            snap.cache_len = n;
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::std::vec;

    fn pool(nr: usize) -> &'static KfencePool {
        let words = KfencePool::block_bytes(nr).div_ceil(8);
        let buf = vec![0u64; words].leak();
        // SAFETY: a zeroed, 8-aligned, leaked (never freed or moved) block of the size asked.
        unsafe { KfencePool::init(buf.as_mut_ptr() as usize, nr, 0x10_0000, 42) }
    }

    #[test]
    fn freelist_is_fifo_so_freed_objects_wait_longest() {
        let p = pool(3);
        for i in 0..3 {
            p.push_free_locked(i);
        }
        assert_eq!(p.pop_free_locked(), Some(0));
        p.push_free_locked(0);
        assert_eq!([p.pop_free_locked(), p.pop_free_locked(), p.pop_free_locked()], [Some(1), Some(2), Some(0)]);
        assert_eq!(p.pop_free_locked(), None, "an empty list says so (capacity skip)");
    }

    #[test]
    fn addresses_map_to_objects_as_in_linux() {
        let p = pool(4);
        let s = p.start;
        assert_eq!(p.index_of(s), None, "page 0 is a guard of no object");
        assert_eq!(p.index_of(s + PAGE_SIZE), None, "nor page 1");
        assert_eq!(p.page_addr(0), s + 2 * PAGE_SIZE);
        assert_eq!(p.index_of(s + 2 * PAGE_SIZE + 5), Some(0));
        assert_eq!(p.index_of(s + 3 * PAGE_SIZE), Some(0), "an object's right guard page");
        assert_eq!(p.index_of(s + 9 * PAGE_SIZE), Some(3));
        assert_eq!(p.index_of(s + 10 * PAGE_SIZE), None, "past the pool");
        assert_eq!(KfencePool::pages(4), 10);
    }

    #[test]
    fn records_start_unused_and_both_placements_are_drawn() {
        let p = pool(2);
        assert_eq!(p.meta(1).state(), ObjectState::Unused);
        let draws: crate::testing::std::vec::Vec<bool> = (0..64).map(|_| p.coin()).collect();
        assert!(draws.contains(&true) && draws.contains(&false));
        assert_eq!(p.snapshot(0).cache_name(), "<destroyed>");
    }
}
