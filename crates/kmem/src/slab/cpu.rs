//! The per-CPU active slab (`struct kmem_cache_cpu`) and its protocol.
//!
//! Each cache has one [`CpuSlab`] per CPU, in a per-CPU allocation (`alloc_percpu`). It
//! names the CPU's active slab (frozen: owned by this CPU) and holds the CPU's private
//! freelist of that slab's objects in `word` (`head | tid << 32`).
//!
//! - The **fast paths** (`kmem_cache_alloc` / `kmem_cache_free` of an object of the active
//!   slab) read `word`, then `base`/`limit`, and publish with one compare-and-exchange of
//!   `word`. They take no lock and do not disable preemption: like SLUB's
//!   `this_cpu_cmpxchg_double`, the tid makes a stale attempt fail, whichever thread or CPU
//!   made it.
//! - The **slow paths** run with interrupts off on the CPU and hold `lock` (the per-CPU
//!   local lock; a real spinlock so another CPU can flush this one, as the pageset lock of
//!   the per-CPU page lists). Before changing the active slab they set the head to
//!   [`OFF_LOCKED`] with a CAS ([`CpuSlab::lock_word`]): from then on no fast path can
//!   succeed, because every fast path CAS expects the value it read before. They store
//!   `base`/`limit`/`slab` with release ordering and publish the new `word` last.
//!
//! Why a fast path never mixes two slabs: it loads `word` (acquire) and then `base`
//! (acquire). If `base` is the new slab's, the store of `base` happened before the load,
//! and the CAS to `OFF_LOCKED` happened before that store, so the fast path's own CAS
//! (expecting the old word) must fail. If `word` was already the new one, `base` is at least
//! as new (release/acquire on `word`), and any newer `base` again implies a newer `word`.

use super::word::{cpu_head, cpu_tid, cpu_word, OFF_LOCKED, OFF_NONE};
use crate::platform::Platform;
use crate::sync::{array_of, const_fn_unless_loom, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock};

/// No active slab.
pub(crate) const NO_SLAB: usize = usize::MAX;

/// Slow-path events counted per CPU (a subset of `CONFIG_SLUB_STATS`), written only under
/// the CPU's [`CpuSlab::lock`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum SlubStat {
    /// `ALLOC_SLOWPATH`: allocations that took the slow path.
    AllocSlowpath,
    /// `FREE_SLOWPATH`: frees that took the slow path.
    FreeSlowpath,
    /// `ALLOC_REFILL`: the CPU freelist was refilled from the active slab's remote frees.
    AllocRefill,
    /// `ALLOC_FROM_PARTIAL`: a slab taken from a node partial list.
    AllocFromPartial,
    /// `ALLOC_SLAB`: a new slab from the page allocator.
    AllocSlab,
    /// `ALLOC_NODE_MISMATCH`: the active slab was on the wrong node.
    AllocNodeMismatch,
    /// `CPUSLAB_FLUSH`: the active slab was flushed (shrink, destroy, validate).
    CpuslabFlush,
    /// `DEACTIVATE_FULL`: a deactivated slab was full.
    DeactivateFull,
    /// `DEACTIVATE_EMPTY`: a deactivated slab was empty.
    DeactivateEmpty,
    /// `DEACTIVATE_TO_TAIL`: a deactivated slab went to the tail of the partial list.
    DeactivateToTail,
    /// `ORDER_FALLBACK`: a new slab had to use the minimum order.
    OrderFallback,
}

impl SlubStat {
    /// Number of counters.
    pub const COUNT: usize = 11;
    /// Every counter with its Linux name, in order.
    pub const ALL: [(SlubStat, &'static str); Self::COUNT] = [
        (SlubStat::AllocSlowpath, "alloc_slowpath"),
        (SlubStat::FreeSlowpath, "free_slowpath"),
        (SlubStat::AllocRefill, "alloc_refill"),
        (SlubStat::AllocFromPartial, "alloc_from_partial"),
        (SlubStat::AllocSlab, "alloc_slab"),
        (SlubStat::AllocNodeMismatch, "alloc_node_mismatch"),
        (SlubStat::CpuslabFlush, "cpuslab_flush"),
        (SlubStat::DeactivateFull, "deactivate_full"),
        (SlubStat::DeactivateEmpty, "deactivate_empty"),
        (SlubStat::DeactivateToTail, "deactivate_to_tail"),
        (SlubStat::OrderFallback, "order_fallback"),
    ];
}

/// One CPU's state for one cache. 64-byte aligned: the fast paths touch only the first line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CpuSlab {
    /// Freelist head offset (or [`OFF_NONE`]/[`OFF_LOCKED`]) and tid.
    word: AtomicU64,
    /// Address of object 0 of the active slab (0 without one).
    base: AtomicUsize,
    /// Bytes spanned by the active slab's objects, `objects * size` (0 without one).
    limit: AtomicU32,
    /// Node of the active slab.
    node: AtomicU32,
    /// Head frame number of the active slab, or [`NO_SLAB`].
    slab: AtomicUsize,
    /// The local lock: held by this CPU's slow paths and by remote flushes.
    pub(crate) lock: RawSpinLock,
    stats: [AtomicU64; SlubStat::COUNT],
}

/// The active slab as the slow path sees it (under [`CpuSlab::lock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Active {
    pub slab: usize,
    pub base: usize,
    pub limit: u32,
    pub node: u32,
}

impl CpuSlab {
    const_fn_unless_loom! {
        /// No active slab, tid `cpu` (as SLUB's `init_tid`).
        pub(crate) fn new(cpu: u32) -> Self {
            Self {
                word: AtomicU64::new(cpu_word(OFF_NONE, cpu)),
                base: AtomicUsize::new(0),
                limit: AtomicU32::new(0),
                node: AtomicU32::new(u32::MAX),
                slab: AtomicUsize::new(NO_SLAB),
                lock: RawSpinLock::new(),
                stats: array_of![AtomicU64::new(0); SlubStat::COUNT],
            }
        }
    }

    /// The word, for a fast path.
    #[inline]
    pub(crate) fn load_word(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }
    /// The active slab's object base, for a fast path (after [`CpuSlab::load_word`]).
    #[inline]
    pub(crate) fn load_base(&self) -> usize {
        self.base.load(Ordering::Acquire)
    }
    /// The active slab's object span, for a fast path.
    #[inline]
    pub(crate) fn load_limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }
    /// The active slab's node, for a fast path.
    #[inline]
    pub(crate) fn load_node(&self) -> u32 {
        self.node.load(Ordering::Acquire)
    }
    /// The active slab's head frame, read without the lock (a hint).
    #[inline]
    pub(crate) fn peek_slab(&self) -> usize {
        self.slab.load(Ordering::Acquire)
    }
    /// A fast path's publish: succeeds only if nothing changed since `old` was read.
    #[inline]
    pub(crate) fn cas_word(&self, old: u64, head: u32) -> bool {
        let new = cpu_word(head, cpu_tid(old).wrapping_add(1));
        self.word.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The allocation fast path: pops the CPU freelist's head with one CAS. `read_next(obj)`
    /// returns the decoded free pointer stored in `obj` (may be garbage if `obj` was taken
    /// meanwhile: the CAS then fails). `None`: the slow path must run (empty or locked
    /// freelist, wrong node, a free pointer outside the slab).
    #[inline(always)]
    pub(crate) fn fast_pop(&self, node: Option<u32>, read_next: impl Fn(usize) -> u64) -> Option<usize> {
        loop {
            let w = self.load_word();
            let head = cpu_head(w);
            if head >= OFF_LOCKED {
                return None;
            }
            let base = self.load_base();
            let limit = self.load_limit();
            if head >= limit || node.is_some_and(|n| n != self.load_node()) {
                return None;
            }
            // `base` and `limit` may belong to a newer active slab than `w` (or to none, after
            // a flush); reading `base + head` is only safe if they belong to `w`'s slab. The
            // word unchanged after reading them proves it: a slab change locks the word
            // before it stores `base`. (After that, the slab may still go back to the page
            // allocator: its memory stays mapped, and the CAS below fails.)
            if self.load_word() != w {
                continue;
            }
            let obj = base + head as usize;
            let next = read_next(obj);
            if next >= limit as u64 && next != OFF_NONE as u64 {
                return None;
            }
            if self.cas_word(w, next as u32) {
                return Some(obj);
            }
        }
    }

    /// The free fast path: pushes `addr` if it is an object of the active slab
    /// (`is_boundary(offset)`), writing its free pointer with `write_next(addr, head)` before
    /// the CAS. False: the slow path must run (no active slab, another slab, locked freelist,
    /// not an object start, or `addr` is the head already: a double free).
    #[inline(always)]
    pub(crate) fn fast_push(
        &self,
        addr: usize,
        is_boundary: impl Fn(u32) -> bool,
        write_next: impl Fn(usize, u32),
    ) -> bool {
        loop {
            let w = self.load_word();
            let head = cpu_head(w);
            if head == OFF_LOCKED {
                return false;
            }
            let off = addr.wrapping_sub(self.load_base());
            if off >= self.load_limit() as usize {
                return false;
            }
            let off = off as u32;
            if !is_boundary(off) || off == head {
                return false;
            }
            write_next(addr, head);
            if self.cas_word(w, off) {
                return true;
            }
        }
    }

    /// Slow path: stops the fast paths and takes the freelist head (which may be
    /// [`OFF_NONE`]). Returns `(head, tid)`. Caller holds [`CpuSlab::lock`].
    pub(crate) fn lock_word(&self) -> (u32, u32) {
        debug_assert!(self.lock.is_locked());
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            debug_assert_ne!(cpu_head(w), OFF_LOCKED, "CPU freelist locked twice");
            let locked = cpu_word(OFF_LOCKED, cpu_tid(w).wrapping_add(1));
            match self.word.compare_exchange_weak(w, locked, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return (cpu_head(w), cpu_tid(w).wrapping_add(1)),
                Err(now) => w = now,
            }
        }
    }
    /// Slow path: publishes `head` as the freelist and lets the fast paths in again.
    pub(crate) fn unlock_word(&self, head: u32, tid: u32) {
        debug_assert_ne!(head, OFF_LOCKED);
        self.word.store(cpu_word(head, tid.wrapping_add(1)), Ordering::Release);
    }
    /// The active slab (slow path, word locked).
    pub(crate) fn active(&self) -> Option<Active> {
        let slab = self.slab.load(Ordering::Relaxed);
        (slab != NO_SLAB).then(|| Active {
            slab,
            base: self.base.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            node: self.node.load(Ordering::Relaxed),
        })
    }
    /// Installs (or with `None`, removes) the active slab (slow path, word locked).
    pub(crate) fn set_active(&self, a: Option<Active>) {
        let a = a.unwrap_or(Active { slab: NO_SLAB, base: 0, limit: 0, node: u32::MAX });
        self.slab.store(a.slab, Ordering::Release);
        self.node.store(a.node, Ordering::Release);
        self.limit.store(a.limit, Ordering::Release);
        self.base.store(a.base, Ordering::Release);
    }

    /// Counts a slow-path event (caller holds the lock).
    #[inline]
    pub(crate) fn stat(&self, s: SlubStat) {
        let c = &self.stats[s as usize];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    /// A counter's value.
    pub(crate) fn stat_value(&self, s: SlubStat) -> u64 {
        self.stats[s as usize].load(Ordering::Relaxed)
    }
}

/// Pins the current CPU with interrupts off and takes its local lock: the context every
/// slow path runs in. Dropping it releases both.
pub(crate) struct CpuLock<'a, P: Platform> {
    pub(crate) c: &'a CpuSlab,
    platform: &'a P,
    irq: crate::platform::IrqState,
}

impl<'a, P: Platform> CpuLock<'a, P> {
    /// Disables interrupts, reads the CPU, takes `slab_of(cpu)`'s lock.
    #[inline]
    pub(crate) fn new(platform: &'a P, slab_of: impl FnOnce(usize) -> &'a CpuSlab) -> Self {
        let irq = platform.local_irq_save();
        let cpu = platform.current_cpu().index();
        let c = slab_of(cpu);
        c.lock.lock_raw(platform);
        Self { c, platform, irq }
    }
    /// Takes a remote CPU's lock (flush from another CPU): interrupts off here, that CPU's
    /// lock held.
    pub(crate) fn remote(platform: &'a P, c: &'a CpuSlab) -> Self {
        let irq = platform.local_irq_save();
        c.lock.lock_raw(platform);
        Self { c, platform, irq }
    }
}

impl<P: Platform> Drop for CpuLock<'_, P> {
    fn drop(&mut self) {
        self.c.lock.unlock();
        self.platform.local_irq_restore(self.irq);
    }
}
