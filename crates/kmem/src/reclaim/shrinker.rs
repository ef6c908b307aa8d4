//! Shrinkers (`mm/shrinker.c`): callbacks a cache registers so that reclaim can ask it to give
//! objects back, and `do_shrink_slab`'s arithmetic that decides how many to ask for.
//!
//! The registry is a fixed table of [`MAX_SHRINKERS`] slots in managed memory (pages the
//! first `shrinker_alloc` takes from the page allocator, never freed; no heap), under one
//! spinlock (`shrinker_lock`). A slot holds the callbacks (a
//! `&'static dyn` [`ShrinkerOps`]), `seeks`, `batch`, the flags and the deferred count. The
//! lock is never held while a shrinker runs: a walk takes a slot's in-flight count under the
//! lock and drops the lock before calling, as Linux takes a reference on the shrinker under
//! RCU; [`Shrinker`]'s drop (`shrinker_free`) unlinks the slot under the lock and then waits
//! for the in-flight calls to end, as Linux waits for the last reference.
//!
//! Lock order: the shrinker lock is a leaf: nothing else is taken while it is held.

#![forbid(unsafe_code)]

use core::fmt;

use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{array_of, AtomicU32, AtomicUsize, Ordering, RawSpinLock};

/// Slots in a machine's shrinker table.
pub const MAX_SHRINKERS: usize = 64;
/// `DEFAULT_SEEKS`.
pub const DEFAULT_SEEKS: u32 = 2;
/// `SHRINK_BATCH`: objects per `scan_objects` call when the shrinker gives no `batch`.
pub const SHRINK_BATCH: usize = 128;
/// `SHRINK_STOP`: `scan_objects` cannot make progress in this context (stop asking).
pub const SHRINK_STOP: usize = !0;
/// `SHRINK_EMPTY`: `count_objects` has no objects at all.
pub const SHRINK_EMPTY: usize = !0 - 1;
/// Most `scan_objects` calls one `do_shrink_slab` makes (kmem's bound: Linux relies on
/// `cond_resched` and on the count being honest); what is left is deferred to later passes.
pub const MAX_BATCHES_PER_CALL: usize = 1024;
/// `DEF_PRIORITY`: reclaim starts by scanning `1/2^12` of what shrinkers hold.
pub const DEF_PRIORITY: u32 = 12;

/// What a shrinker needs from the allocation's context. A shrinker that needs the filesystem
/// is never called for an allocation without `__GFP_FS` (`GFP_NOFS`), one that needs I/O
/// never for one without `__GFP_IO` (`GFP_NOIO`). Linux leaves the check to each shrinker
/// (`if (!(sc->gfp_mask & __GFP_FS)) return SHRINK_STOP`); kmem makes it for them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ShrinkerFlags(u32);

impl ShrinkerFlags {
    /// No requirement.
    pub const NONE: ShrinkerFlags = ShrinkerFlags(0);
    /// Calls into the filesystem: needs `__GFP_FS`.
    pub const NEEDS_FS: ShrinkerFlags = ShrinkerFlags(1);
    /// Starts I/O: needs `__GFP_IO`.
    pub const NEEDS_IO: ShrinkerFlags = ShrinkerFlags(2);
    /// `SHRINKER_NUMA_AWARE`: counts and scans per node (`nid` in [`ShrinkControl`]); others
    /// are always called with node 0.
    pub const NUMA_AWARE: ShrinkerFlags = ShrinkerFlags(4);

    /// Both sets.
    pub const fn union(self, o: ShrinkerFlags) -> ShrinkerFlags {
        ShrinkerFlags(self.0 | o.0)
    }
    /// All of `o` set.
    pub const fn contains(self, o: ShrinkerFlags) -> bool {
        self.0 & o.0 == o.0
    }
    /// Whether a shrinker with these flags may run for an allocation with `gfp`.
    pub const fn allowed_for(self, gfp: Gfp) -> bool {
        (!self.contains(Self::NEEDS_FS) || gfp.contains(Gfp::FS))
            && (!self.contains(Self::NEEDS_IO) || gfp.contains(Gfp::IO))
    }
}

impl core::ops::BitOr for ShrinkerFlags {
    type Output = ShrinkerFlags;
    fn bitor(self, o: ShrinkerFlags) -> ShrinkerFlags {
        self.union(o)
    }
}

/// `struct shrink_control`: what one call is about.
#[derive(Clone, Copy, Debug)]
pub struct ShrinkControl {
    /// The GFP flags of the allocation that reclaims (`GFP_KERNEL` for kswapd).
    pub gfp_mask: Gfp,
    /// The node being reclaimed (0 for shrinkers that are not NUMA aware).
    pub nid: usize,
    /// Objects to scan in this call (set by reclaim before `scan_objects`).
    pub nr_to_scan: usize,
    /// Objects the shrinker scanned; reclaim sets it to `nr_to_scan`, a shrinker that scanned
    /// a different number writes that.
    pub nr_scanned: usize,
}

/// The callbacks of a shrinker (`count_objects` and `scan_objects`). They run with no kmem
/// lock held, in the reclaiming thread (an allocation's direct reclaim, or kswapd); they may
/// free memory to kmem and may allocate (without recursing into reclaim: reclaim runs with
/// `PF_MEMALLOC` set on platforms that track it).
pub trait ShrinkerOps: Sync {
    /// How many objects could be freed; 0 or [`SHRINK_EMPTY`] when there are none.
    fn count_objects(&self, sc: &ShrinkControl) -> usize;
    /// Scans `sc.nr_to_scan` objects and frees what it can: returns how many it freed, or
    /// [`SHRINK_STOP`] if it cannot make progress now.
    fn scan_objects(&self, sc: &mut ShrinkControl) -> usize;
}

/// Why a shrinker could not be set up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShrinkerError {
    /// Every slot of the table is taken (`-ENOMEM`).
    TableFull,
    /// The table could not be allocated (the first `shrinker_alloc` allocates it).
    NoMemory,
}

impl fmt::Display for ShrinkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShrinkerError::TableFull => write!(f, "shrinker table full ({MAX_SHRINKERS} shrinkers)"),
            ShrinkerError::NoMemory => f.write_str("no memory for the shrinker table"),
        }
    }
}

/// Slot states.
const FREE: u32 = 0;
/// Allocated by `shrinker_alloc`, not registered yet.
const ALLOCATED: u32 = 1;
/// Registered: reclaim calls it.
const REGISTERED: u32 = 2;

/// One slot of the table. Every field but `active` and `nr_deferred` is written under the
/// table's lock; the ops word is read under it too.
#[derive(Debug)]
pub(crate) struct ShrinkerSlot {
    state: AtomicU32,
    flags: AtomicU32,
    seeks: AtomicU32,
    batch: AtomicUsize,
    /// `nr_deferred`: work carried over to later passes.
    nr_deferred: AtomicUsize,
    /// Calls in flight (a walk's reference).
    active: AtomicU32,
    name: [AtomicU32; 4],
}

impl ShrinkerSlot {
    fn new() -> Self {
        Self {
            state: AtomicU32::new(FREE),
            flags: AtomicU32::new(0),
            seeks: AtomicU32::new(DEFAULT_SEEKS),
            batch: AtomicUsize::new(0),
            nr_deferred: AtomicUsize::new(0),
            active: AtomicU32::new(0),
            name: array_of!(AtomicU32::new(0); 4),
        }
    }
}

/// The machine's shrinker registry.
pub(crate) struct ShrinkerTable {
    pub(crate) lock: RawSpinLock,
    slots: [ShrinkerSlot; MAX_SHRINKERS],
    /// The callbacks of each slot, written under `lock` by `register` and read under it by the
    /// walk (a plain `Option<&'static dyn>` cannot be an atomic; the lock orders it).
    ops: crate::reclaim::OpsCells<dyn ShrinkerOps, MAX_SHRINKERS>,
}

impl fmt::Debug for ShrinkerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShrinkerTable").finish_non_exhaustive()
    }
}

impl ShrinkerTable {
    pub(crate) fn new() -> Self {
        Self {
            lock: RawSpinLock::new(),
            slots: core::array::from_fn(|_| ShrinkerSlot::new()),
            ops: crate::reclaim::OpsCells::new(),
        }
    }
}

/// A shrinker of a machine (`struct shrinker *` from `shrinker_alloc`): set `seeks` and
/// `batch`, then [`Shrinker::register`] its callbacks. Dropping it is `shrinker_free`:
/// reclaim stops calling it, and the drop waits for calls in flight to end.
///
/// ```
/// use kmem::reclaim::{ShrinkControl, ShrinkerFlags, ShrinkerOps};
/// struct Empty;
/// impl ShrinkerOps for Empty {
///     fn count_objects(&self, _: &ShrinkControl) -> usize { 0 }
///     fn scan_objects(&self, _: &mut ShrinkControl) -> usize { 0 }
/// }
/// static EMPTY: Empty = Empty;
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let s = m.shrinker_alloc(ShrinkerFlags::NEEDS_FS, "empty").unwrap();
/// s.register(&EMPTY);
/// assert_eq!(m.nr_shrinkers(), 1);
/// drop(s);
/// assert_eq!(m.nr_shrinkers(), 0);
/// ```
pub struct Shrinker<'m, P: Platform> {
    kmem: &'m Kmem<P>,
    table: &'m ShrinkerTable,
    slot: usize,
}

impl<P: Platform> fmt::Debug for Shrinker<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shrinker").field("slot", &self.slot).finish()
    }
}

impl<'m, P: Platform> Shrinker<'m, P> {
    fn slot(&self) -> &ShrinkerSlot {
        &self.table.slots[self.slot]
    }
    /// `shrinker->seeks`: the cost of recreating an object ([`DEFAULT_SEEKS`]); 0 asks reclaim
    /// to scan half of the objects at every pass.
    pub fn set_seeks(&self, seeks: u32) -> &Self {
        self.slot().seeks.store(seeks, Ordering::Relaxed);
        self
    }
    /// `shrinker->batch`: objects per `scan_objects` call (0: [`SHRINK_BATCH`]).
    pub fn set_batch(&self, batch: usize) -> &Self {
        self.slot().batch.store(batch, Ordering::Relaxed);
        self
    }
    /// `shrinker_register()`: reclaim calls `ops` from now on. Registering again replaces the
    /// callbacks.
    pub fn register(&self, ops: &'static dyn ShrinkerOps) {
        let t = self.table;
        let g = t.lock.lock_irqsave(self.kmem.platform());
        t.ops.set(&g, self.slot, Some(ops));
        self.slot().state.store(REGISTERED, Ordering::Release);
        drop(g);
    }
    /// Objects deferred to later passes (`nr_deferred`): work a pass could not do (its
    /// context forbade it, or the scan stopped early).
    pub fn nr_deferred(&self) -> usize {
        self.slot().nr_deferred.load(Ordering::Relaxed)
    }
}

impl<P: Platform> Drop for Shrinker<'_, P> {
    fn drop(&mut self) {
        let t = self.table;
        let s = self.slot();
        let g = t.lock.lock_irqsave(self.kmem.platform());
        s.state.store(FREE, Ordering::Release);
        t.ops.set(&g, self.slot, None);
        drop(g);
        // Wait for the walks that took the slot before it was unlinked.
        while s.active.load(Ordering::Acquire) != 0 {
            self.kmem.platform().cpu_relax();
        }
        s.nr_deferred.store(0, Ordering::Relaxed);
    }
}

/// One registered shrinker as a walk sees it: a reference (the slot's in-flight count),
/// dropped when this is, even if the shrinker panics (its `Shrinker` drop would otherwise
/// wait for ever).
pub(crate) struct Taken {
    pub(crate) table: &'static ShrinkerTable,
    pub(crate) slot: usize,
    pub(crate) ops: &'static dyn ShrinkerOps,
    pub(crate) flags: ShrinkerFlags,
    pub(crate) seeks: u32,
    pub(crate) batch: usize,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.table.slots[self.slot].active.fetch_sub(1, Ordering::Release);
    }
}

impl<P: Platform> Kmem<P> {
    /// `shrinker_alloc(flags, name)`: reserves a shrinker slot.
    pub fn shrinker_alloc(&self, flags: ShrinkerFlags, name: &str) -> Result<Shrinker<'_, P>, ShrinkerError> {
        let t = &self.reclaim_tables_or_alloc().ok_or(ShrinkerError::NoMemory)?.shrinkers;
        let g = t.lock.lock_irqsave(self.platform());
        let Some(i) = t.slots.iter().position(|s| s.state.load(Ordering::Relaxed) == FREE) else {
            return Err(ShrinkerError::TableFull);
        };
        let s = &t.slots[i];
        s.state.store(ALLOCATED, Ordering::Relaxed);
        s.flags.store(flags.0, Ordering::Relaxed);
        s.seeks.store(DEFAULT_SEEKS, Ordering::Relaxed);
        s.batch.store(0, Ordering::Relaxed);
        s.nr_deferred.store(0, Ordering::Relaxed);
        let mut w = [0u8; 16];
        let n = name.len().min(15);
        w[..n].copy_from_slice(&name.as_bytes()[..n]);
        for (k, a) in s.name.iter().enumerate() {
            a.store(u32::from_le_bytes([w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]]), Ordering::Relaxed);
        }
        drop(g);
        Ok(Shrinker { kmem: self, table: t, slot: i })
    }

    /// Registered shrinkers.
    pub fn nr_shrinkers(&self) -> usize {
        let Some(t) = self.reclaim_tables() else { return 0 };
        t.shrinkers.slots.iter().filter(|s| s.state.load(Ordering::Acquire) == REGISTERED).count()
    }

    /// Takes a reference on registered slot `i` (its in-flight count), if it is registered.
    pub(crate) fn shrinker_get(&self, i: usize) -> Option<Taken> {
        let t = &self.reclaim_tables()?.shrinkers;
        let s = &t.slots[i];
        if s.state.load(Ordering::Acquire) != REGISTERED {
            return None;
        }
        let g = t.lock.lock_irqsave(self.platform());
        let ops = if s.state.load(Ordering::Relaxed) == REGISTERED { t.ops.get(&g, i) } else { None };
        if ops.is_some() {
            s.active.fetch_add(1, Ordering::Relaxed);
        }
        drop(g);
        Some(Taken {
            table: t,
            slot: i,
            ops: ops?,
            flags: ShrinkerFlags(s.flags.load(Ordering::Relaxed)),
            seeks: s.seeks.load(Ordering::Relaxed),
            batch: s.batch.load(Ordering::Relaxed),
        })
    }

    /// `do_shrink_slab()`: asks one shrinker for a share of its objects proportional to
    /// `priority` (`freeable >> priority`, times 4 over `seeks`), plus the deferred work, in
    /// batches. Returns the objects freed, or `None` when `count_objects` reported none.
    pub(crate) fn do_shrink_slab(&self, sc: &mut ShrinkControl, t: &Taken, priority: u32) -> Option<usize> {
        let freeable = t.ops.count_objects(sc);
        if freeable == 0 || freeable == SHRINK_EMPTY {
            return None;
        }
        let slot = &t.table.slots[t.slot];
        let nr = slot.nr_deferred.swap(0, Ordering::Relaxed);
        // Saturating: a shrinker's count is not trusted not to be absurd.
        let delta =
            if t.seeks != 0 { (freeable >> priority).saturating_mul(4) / t.seeks as usize } else { freeable / 2 };
        let batch = if t.batch != 0 { t.batch } else { SHRINK_BATCH };
        let mut total_scan = (nr >> priority).saturating_add(delta).min(freeable.saturating_mul(2));
        let (mut freed, mut scanned) = (0usize, 0usize);
        let mut batches = 0;
        while (total_scan >= batch || total_scan >= freeable) && batches < MAX_BATCHES_PER_CALL {
            batches += 1;
            let n = batch.min(total_scan);
            sc.nr_to_scan = n;
            sc.nr_scanned = n;
            let ret = t.ops.scan_objects(sc);
            if ret == SHRINK_STOP {
                break;
            }
            freed = freed.saturating_add(ret);
            self.count_reclaim(|e| &e.slabs_scanned, sc.nr_scanned as u64);
            total_scan = total_scan.saturating_sub(sc.nr_scanned);
            scanned = scanned.saturating_add(sc.nr_scanned);
            if sc.nr_scanned == 0 {
                break;
            }
        }
        let next_deferred = nr.saturating_add(delta).saturating_sub(scanned).min(freeable.saturating_mul(2));
        let _ = slot
            .nr_deferred
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_add(next_deferred)));
        Some(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_rules() {
        assert!(ShrinkerFlags::NEEDS_FS.allowed_for(Gfp::KERNEL));
        assert!(!ShrinkerFlags::NEEDS_FS.allowed_for(Gfp::NOFS));
        assert!(ShrinkerFlags::NEEDS_IO.allowed_for(Gfp::NOFS));
        assert!(!ShrinkerFlags::NEEDS_IO.allowed_for(Gfp::NOIO));
        assert!(!(ShrinkerFlags::NEEDS_FS | ShrinkerFlags::NEEDS_IO).allowed_for(Gfp::NOIO));
        assert!(ShrinkerFlags::NONE.allowed_for(Gfp::NOIO));
    }
}
