//! The replay's OOM killer: what lets `kmem replay` keep `__GFP_NOFAIL` (Linux's
//! `mm/oom_kill.c`, with the trace as the only process).
//!
//! Linux's OOM killer frees memory by killing a victim: the OOM reaper unmaps its memory and
//! the allocation retries. kmem has no processes, so its OOM path calls the registered OOM
//! notifiers ([`kmem::reclaim::OomNotifier`]). The replayer registers one: its victim is the
//! trace itself, and what it frees is the trace's **oldest live allocations** (objects and
//! unmovable page blocks in allocation order, then the movable blocks reclaim left), at least the request's size and at least
//! [`OOM_BATCH_PAGES`] pages' worth per call (Linux reaps a whole process, not one page). A
//! freed allocation is marked *killed*: its later traced free is counted as "freed by OOM"
//! ([`OomCounts::victim_frees`]) instead of as an unknown free, and an allocation of its
//! key reuses the slot.
//!
//! Before the OOM killer, reclaim: the trace's movable page blocks (`__GFP_MOVABLE`: user and
//! page-cache pages, what Linux's LRU reclaim would write back or swap out) are given back by
//! a shrinker (`replay-lru`), oldest first. Their later traced frees are counted as freed by
//! reclaim ([`OomCounts::reclaimed_frees`]). When no movable block is left, the same
//! shrinker kills victims as the OOM killer does ([`OomCounts::pressure_kills`]): kmem's
//! reclaim would otherwise find nothing but the empty slabs its own per-CPU caches keep
//! refilling, a page or two per full sweep of the slab caches, so every slab allocation would
//! pay for a sweep and the OOM path (which needs a pass without progress) would never come:
//! Linux thrashes the same way, and user-space OOM killers (`systemd-oomd`) kill on that
//! pressure rather than wait for the kernel's.
//!
//! The live tables ([`Live`]) are shared between the replayer and the notifier behind a
//! lock (`table_lock.rs`). The replayer never holds it across a call into the machine that may allocate (the
//! notifier runs inside such calls, on the replaying thread); the notifier only `try_lock`s,
//! so a call from another thread while the replayer holds the tables frees nothing.
//!
//! # `__GFP_NOFAIL` on one thread (the decision)
//!
//! kmem's `__GFP_NOFAIL` sleeps when reclaim and the OOM path found nothing, until another
//! thread frees memory. The replay is one thread: nobody else frees. So the replayer hands a
//! `__GFP_NOFAIL` request to the machine unchanged only where kmem's OOM path calls the
//! notifiers first ([`oom_path_serves`]: direct reclaim allowed, order at most
//! `PAGE_ALLOC_COSTLY_ORDER`, neither `__GFP_RETRY_MAYFAIL` nor `__GFP_THISNODE`, a zone
//! from `ZONE_NORMAL` up) and while the replay holds something to kill (or, for an order-0
//! request, while a page is free: the OOM path's no-watermark fallback takes it). Once everything the
//! trace holds is freed the machine is back to its booted state plus empty slabs (which the
//! built-in slab shrinker gives back), where a small request takes the no-watermark reserve:
//! a machine that cannot give one order-3 block then could still sleep for ever, and is not
//! one `kmem replay` can boot usefully.
//!
//! Any other `__GFP_NOFAIL` request (atomic, costly, DMA, or with nothing left to kill) would
//! sleep or spin for ever in kmem; the replayer keeps the promise itself: it asks without
//! `__GFP_NOFAIL` (and with `__GFP_NOWARN`), kills a batch of victims after each failure and
//! asks again, and if nothing is left to kill it counts the request as failed
//! ([`OomCounts::nofail_failed`]) and goes on. Both kinds are counted.

use std::collections::VecDeque;
use std::ptr::NonNull;

use kmem::reclaim::{OomNotifier, ShrinkControl, ShrinkerOps, SHRINK_EMPTY, SHRINK_STOP};
use kmem::{Gfp, KmemCache, Order, PageRef, PAGE_SIZE};
use kmem_hosted::Machine;

use crate::op::Kind;
use crate::replay::{kmalloc_bytes, Mem};
use crate::table_lock::{TableGuard, TableLock};

/// Least the notifier frees per call, in pages (`SWAP_CLUSTER_MAX`): small victims one by
/// one would turn every retry of the slow path into another OOM.
pub const OOM_BATCH_PAGES: usize = 32;

/// Pushes to the victim queues between two looks at their length (well below the 65,536
/// entries under which they are never compacted).
const COMPACT_EVERY: u32 = 1024;

/// `PAGE_ALLOC_COSTLY_ORDER`.
const COSTLY_ORDER: u32 = 3;

/// `Obj::cache` values from here up are kmalloc objects (`KMALLOC_BASE + KmallocType`).
pub(crate) const KMALLOC_BASE: u32 = u32::MAX - 3;

/// A live slab object or kmalloc block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Obj {
    pub(crate) addr: NonNull<u8>,
    pub(crate) cache: u32,
    /// kmalloc: bytes requested; slab: kmem's slot size.
    pub(crate) bytes: u32,
    /// Its allocation's number (matches its entry in the victim queue).
    pub(crate) gen: u32,
}

impl Obj {
    /// The memory category and the bytes it occupies.
    pub(crate) fn mem(&self) -> (Mem, u64) {
        if self.cache < KMALLOC_BASE {
            return (Mem::Slab, self.bytes as u64);
        }
        let large = self.bytes as usize > kmem::kmalloc::KMALLOC_MAX_CACHE_SIZE;
        (if large { Mem::KmallocLarge } else { Mem::Kmalloc }, kmalloc_bytes(self.bytes as usize) as u64)
    }
}

/// A live page block.
#[derive(Clone, Copy)]
pub(crate) struct Block<'m> {
    pub(crate) page: PageRef<'m>,
    pub(crate) order: u8,
    /// Allocated with `__GFP_MOVABLE`: the `replay-lru` shrinker may free it.
    pub(crate) movable: bool,
    pub(crate) gen: u32,
}

/// A victim-queue entry: an allocation's slot (bit 31: a page slot) and number.
#[derive(Clone, Copy, Debug)]
struct Victim {
    slot: u32,
    gen: u32,
}

const PAGE_BIT: u32 = 1 << 31;

/// What the OOM killer did, and what became of `__GFP_NOFAIL` requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomCounts {
    /// Calls of the replay's OOM notifier.
    pub notifier_calls: u64,
    /// Notifier calls that freed something (Linux: OOM kills).
    pub kills: u64,
    /// Shrinker calls that killed victims because no movable block was left (reclaim
    /// pressure: see the module docs).
    pub pressure_kills: u64,
    /// Objects (slab and kmalloc) the OOM killer freed.
    pub objects_freed: u64,
    /// Page blocks the OOM killer freed.
    pub blocks_freed: u64,
    /// Bytes it freed (the replay's view: slot sizes, block sizes).
    pub bytes_freed: u64,
    /// Later traced frees of allocations the OOM killer had freed, per [`Kind`].
    pub victim_frees: [u64; Kind::COUNT],
    /// Allocations carrying `__GFP_NOFAIL`, replayed with it.
    pub nofail: u64,
    /// `__GFP_NOFAIL` requests the replayer served itself (see the module docs): atomic,
    /// costly, DMA, or with nothing left to kill.
    pub nofail_by_replayer: u64,
    /// Of those, requests that failed with nothing left to kill.
    pub nofail_failed: u64,
    /// Movable page blocks the `replay-lru` shrinker gave back (reclaim, before any OOM).
    pub reclaimed_blocks: u64,
    /// Their bytes.
    pub reclaimed_bytes: u64,
    /// Later traced frees of blocks reclaim had given back, per [`Kind`].
    pub reclaimed_frees: [u64; Kind::COUNT],
}

impl OomCounts {
    /// Traced frees of killed allocations, all kinds.
    pub fn victim_frees_total(&self) -> u64 {
        self.victim_frees.iter().sum()
    }
}

/// A growable bit set (killed slots).
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, i: u32) {
        let w = i as usize / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }
    /// Clears bit `i`, returning whether it was set.
    fn take(&mut self, i: u32) -> bool {
        let Some(w) = self.0.get_mut(i as usize / 64) else { return false };
        let was = *w & (1 << (i % 64)) != 0;
        *w &= !(1 << (i % 64));
        was
    }
    fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// What the notifier changed since the replayer last looked.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub(crate) reclaimed_blocks: u64,
    pub(crate) reclaimed_bytes: u64,
    pub(crate) calls: u64,
    pub(crate) kills: u64,
    pub(crate) pressure_kills: u64,
    pub(crate) objects: u64,
    pub(crate) blocks: u64,
    pub(crate) bytes: [u64; 4],
}

/// The replay's live allocations, shared with its OOM notifier.
pub(crate) struct Live<'m> {
    /// Live objects by slot ([`crate::Op::slot`]).
    pub(crate) objs: Vec<Option<Obj>>,
    /// Live page blocks by slot.
    pub(crate) pages: Vec<Option<Block<'m>>>,
    pub(crate) nr_objs: usize,
    pub(crate) nr_pages: usize,
    /// Live objects per trace cache.
    pub(crate) per_cache: Vec<u64>,
    /// The kmem cache of each trace cache (owned by the replayer's handles).
    descs: Vec<Option<NonNull<KmemCache>>>,
    /// Allocations in allocation order; an entry whose slot holds another number is stale.
    victims: VecDeque<Victim>,
    /// Movable page blocks in allocation order (stale entries as in `victims`).
    lru: VecDeque<Victim>,
    /// Pages of the live movable blocks.
    movable_pages: usize,
    /// Page slots reclaim gave back whose traced free has not come yet.
    reclaimed_pages: Bits,
    next_gen: u32,
    killed_objs: Bits,
    killed_pages: Bits,
    any_killed: bool,
    /// Pushes to the victim queues until [`Live::compact`] looks at their length again.
    until_compact: u32,
    /// Set when `delta` holds something.
    pub(crate) dirty: bool,
    pub(crate) delta: Delta,
}

// SAFETY: the raw pointers are kmem allocations and cache descriptors of a machine that is
// `Sync` (kmem's API takes them from any thread); the tables only move between threads
// inside the lock.
unsafe impl Send for Live<'_> {}

impl<'m> Live<'m> {
    fn new() -> Self {
        Self {
            objs: Vec::new(),
            pages: Vec::new(),
            nr_objs: 0,
            nr_pages: 0,
            per_cache: Vec::new(),
            descs: Vec::new(),
            victims: VecDeque::new(),
            lru: VecDeque::new(),
            movable_pages: 0,
            reclaimed_pages: Bits::default(),
            next_gen: 0,
            killed_objs: Bits::default(),
            killed_pages: Bits::default(),
            any_killed: false,
            until_compact: COMPACT_EVERY,
            dirty: false,
            delta: Delta::default(),
        }
    }

    /// Records the kmem cache of trace cache `i`.
    pub(crate) fn set_desc(&mut self, i: usize, desc: Option<NonNull<KmemCache>>) {
        if i >= self.descs.len() {
            self.descs.resize(i + 1, None);
            self.per_cache.resize(i + 1, 0);
        }
        self.descs[i] = desc;
    }

    /// Forgets every cache descriptor (the caches are about to be destroyed).
    pub(crate) fn clear_descs(&mut self) {
        self.descs.clear();
    }

    fn next_gen(&mut self) -> u32 {
        let g = self.next_gen;
        self.next_gen = g.wrapping_add(1);
        g
    }

    /// Stale victim entries are dropped once they are three quarters of the queue (a walk of
    /// the queue per three pushes per live allocation: amortised, a fraction of an entry
    /// check per allocation), looked at every [`COMPACT_EVERY`] pushes (a countdown per push;
    /// compacting a little later changes nothing but the queues' length: stale entries are
    /// skipped wherever they are).
    #[inline(always)]
    fn compact(&mut self) {
        self.until_compact -= 1;
        if self.until_compact != 0 {
            return;
        }
        self.until_compact = COMPACT_EVERY;
        let queued = self.victims.len() + self.lru.len();
        if queued < 1 << 16 || queued < 4 * (self.nr_objs + self.nr_pages) {
            return;
        }
        self.compact_now();
    }

    #[cold]
    fn compact_now(&mut self) {
        let (objs, pages) = (&self.objs, &self.pages);
        retain_live(&mut self.victims, objs, pages);
        retain_live(&mut self.lru, objs, pages);
    }

    /// Puts a new object in `slot` (which is empty).
    #[inline(always)]
    pub(crate) fn put_obj(&mut self, slot: u32, mut o: Obj) {
        o.gen = self.next_gen();
        self.victims.push_back(Victim { slot, gen: o.gen });
        let s = slot as usize;
        if s >= self.objs.len() {
            self.objs.resize(s + 1, None);
        }
        if o.cache < KMALLOC_BASE {
            self.per_cache[o.cache as usize] += 1;
        }
        self.objs[s] = Some(o);
        self.nr_objs += 1;
        if self.any_killed {
            self.killed_objs.take(slot);
        }
        self.compact();
    }

    /// Puts a new block in `slot` (which is empty).
    #[inline(always)]
    pub(crate) fn put_block(&mut self, slot: u32, mut b: Block<'m>) {
        b.gen = self.next_gen();
        // Each allocation is in one queue: movable blocks in the LRU, the rest in `victims`.
        if b.movable {
            self.lru.push_back(Victim { slot: slot | PAGE_BIT, gen: b.gen });
            self.movable_pages += 1 << b.order;
        } else {
            self.victims.push_back(Victim { slot: slot | PAGE_BIT, gen: b.gen });
        }
        let s = slot as usize;
        if s >= self.pages.len() {
            self.pages.resize(s + 1, None);
        }
        self.pages[s] = Some(b);
        self.nr_pages += 1;
        if self.any_killed {
            self.killed_pages.take(slot);
        }
        self.compact();
    }

    /// Takes the object in `slot`, if any.
    #[inline]
    pub(crate) fn take_obj(&mut self, slot: u32) -> Option<Obj> {
        let o = self.objs.get_mut(slot as usize)?.take()?;
        self.nr_objs -= 1;
        if o.cache < KMALLOC_BASE {
            self.per_cache[o.cache as usize] -= 1;
        }
        Some(o)
    }

    /// Takes the block in `slot`, if any.
    #[inline]
    pub(crate) fn take_block(&mut self, slot: u32) -> Option<Block<'m>> {
        let b = self.pages.get_mut(slot as usize)?.take()?;
        self.nr_pages -= 1;
        if b.movable {
            self.movable_pages -= 1 << b.order;
        }
        Some(b)
    }

    /// Whether the object in `slot` was freed by the OOM killer (clearing the mark: the trace
    /// has now freed it).
    pub(crate) fn take_killed_obj(&mut self, slot: u32) -> bool {
        self.any_killed && self.killed_objs.take(slot)
    }

    /// What became of the page block in `slot` that the replay no longer holds (clearing the
    /// mark: the trace has now freed it, or allocated its key again).
    pub(crate) fn take_gone_block(&mut self, slot: u32) -> Gone {
        if !self.any_killed {
            return Gone::Failed;
        }
        if self.killed_pages.take(slot) {
            Gone::Killed
        } else if self.reclaimed_pages.take(slot) {
            Gone::Reclaimed
        } else {
            Gone::Failed
        }
    }

    /// Pages of live movable blocks: what the `replay-lru` shrinker could free.
    pub(crate) fn movable_pages(&self) -> usize {
        self.movable_pages
    }

    /// LRU reclaim: frees the oldest movable blocks, `nr` pages or more (whole blocks);
    /// returns the pages freed.
    pub(crate) fn reclaim_lru(&mut self, m: &Machine, nr: usize) -> usize {
        let mut freed = 0;
        while freed < nr {
            let Some(v) = self.lru.pop_front() else { break };
            if !is_live(&self.objs, &self.pages, &v) {
                continue;
            }
            let slot = v.slot & !PAGE_BIT;
            let b = self.take_block(slot).expect("a live block");
            // SAFETY: the block came from `alloc_pages` with this order and was taken out of
            // the tables, so it is freed exactly once.
            unsafe { m.__free_pages(b.page, Order::of(b.order as u32)) };
            self.reclaimed_pages.set(slot);
            self.any_killed = true;
            freed += 1 << b.order;
            self.dirty = true;
            self.delta.reclaimed_blocks += 1;
            self.delta.reclaimed_bytes += (PAGE_SIZE as u64) << b.order;
            self.delta.bytes[Mem::Pages as usize] += (PAGE_SIZE as u64) << b.order;
        }
        freed
    }

    /// Allocations freed by the OOM killer or reclaim whose traced free has not come yet:
    /// (objects, page blocks).
    pub(crate) fn killed_live(&self) -> (usize, usize) {
        (self.killed_objs.count(), self.killed_pages.count() + self.reclaimed_pages.count())
    }

    /// Whether the replay holds anything the OOM killer could free.
    pub(crate) fn has_victims(&self) -> bool {
        self.nr_objs + self.nr_pages > 0
    }

    /// Frees an object through the machine.
    #[inline]
    pub(crate) fn free_obj(&self, m: &Machine, o: Obj) {
        if o.cache >= KMALLOC_BASE {
            // SAFETY: `o.addr` came from this machine's kmalloc and was taken out of the
            // tables, so it is freed exactly once.
            unsafe { m.kfree(o.addr.as_ptr()) };
        } else if let Some(Some(desc)) = self.descs.get(o.cache as usize) {
            // SAFETY: the descriptor is that of the cache the object came from, kept alive by
            // the replayer's handle until `clear_descs`; `o.addr` was taken out of the tables,
            // so it is freed exactly once.
            unsafe { m.kmem_cache_free(desc.as_ref(), o.addr) };
        }
    }

    /// The OOM kill: frees the oldest live allocations, at least `order`'s pages and
    /// [`OOM_BATCH_PAGES`]; returns the pages freed (rounded up: any progress counts).
    pub(crate) fn kill(&mut self, m: &Machine, order: u32) -> usize {
        let want = (PAGE_SIZE << order.min(20)).max(OOM_BATCH_PAGES * PAGE_SIZE) as u64;
        self.delta.calls += 1;
        let pages = self.kill_bytes(m, want);
        self.delta.kills += (pages > 0) as u64;
        pages
    }

    /// Allocations the replay holds (objects and page blocks): what the shrinker counts when
    /// no movable block is left (its objects are then allocations, not pages).
    pub(crate) fn live_allocations(&self) -> usize {
        self.nr_objs + self.nr_pages
    }

    /// A kill under reclaim pressure (no movable block left): `nr` pages' worth of the oldest
    /// live allocations; returns the pages freed.
    pub(crate) fn pressure_kill(&mut self, m: &Machine, nr: usize) -> usize {
        let pages = self.kill_bytes(m, (nr.max(1) * PAGE_SIZE) as u64);
        self.delta.pressure_kills += (pages > 0) as u64;
        pages
    }

    /// Frees the oldest live allocations until `want` bytes are freed or none is left;
    /// returns the pages freed (rounded up).
    fn kill_bytes(&mut self, m: &Machine, want: u64) -> usize {
        let mut freed = 0u64;
        self.dirty = true;
        while freed < want {
            // The oldest unmovable allocations, then (none left) the oldest movable blocks.
            let Some(v) = self.victims.pop_front().or_else(|| self.lru.pop_front()) else { break };
            if !is_live(&self.objs, &self.pages, &v) {
                continue;
            }
            let slot = v.slot & !PAGE_BIT;
            if v.slot & PAGE_BIT != 0 {
                let b = self.take_block(slot).expect("a live victim");
                let bytes = (PAGE_SIZE as u64) << b.order;
                // SAFETY: the block came from `alloc_pages` with this order and was taken out
                // of the tables, so it is freed exactly once.
                unsafe { m.__free_pages(b.page, Order::of(b.order as u32)) };
                self.killed_pages.set(slot);
                self.delta.blocks += 1;
                self.delta.bytes[Mem::Pages as usize] += bytes;
                freed += bytes;
            } else {
                let o = self.take_obj(slot).expect("a live victim");
                let (mem, bytes) = o.mem();
                self.free_obj(m, o);
                self.killed_objs.set(slot);
                self.delta.objects += 1;
                self.delta.bytes[mem as usize] += bytes;
                freed += bytes;
            }
            self.any_killed = true;
        }
        (freed as usize).div_ceil(PAGE_SIZE)
    }
}

/// What became of a page block the replay does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Its allocation failed (or it never existed).
    Failed,
    /// The OOM killer freed it.
    Killed,
    /// Reclaim (`replay-lru`) freed it.
    Reclaimed,
}

/// Keeps the live entries of `q`, in order: one pass over its (contiguous) slice, each live
/// entry moved down in place (`VecDeque::retain` swaps, at about twice the instructions an
/// entry on the capture's queues of 400,000).
fn retain_live(q: &mut VecDeque<Victim>, objs: &[Option<Obj>], pages: &[Option<Block<'_>>]) {
    let s = q.make_contiguous();
    let mut kept = 0;
    for i in 0..s.len() {
        let v = s[i];
        if is_live(objs, pages, &v) {
            s[kept] = v;
            kept += 1;
        }
    }
    q.truncate(kept);
}

#[inline(always)]
fn is_live(objs: &[Option<Obj>], pages: &[Option<Block<'_>>], v: &Victim) -> bool {
    let slot = (v.slot & !PAGE_BIT) as usize;
    if v.slot & PAGE_BIT != 0 {
        matches!(pages.get(slot), Some(Some(b)) if b.gen == v.gen)
    } else {
        matches!(objs.get(slot), Some(Some(o)) if o.gen == v.gen)
    }
}

/// The tables and the machine: the registered OOM notifier.
pub(crate) struct Shared<'m> {
    pub(crate) m: &'m Machine,
    live: TableLock<Live<'m>>,
}

impl<'m> Shared<'m> {
    pub(crate) fn new(m: &'m Machine) -> Self {
        Self { m, live: TableLock::new(Live::new()) }
    }

    /// The tables.
    #[inline]
    pub(crate) fn lock(&self) -> TableGuard<'_, Live<'m>> {
        self.live.lock()
    }
}

impl OomNotifier for Shared<'_> {
    fn notify(&self, _gfp: Gfp, order: u32) -> usize {
        // Held by the replayer on another thread: nothing to free from here.
        self.live.try_lock().map_or(0, |mut t| t.kill(self.m, order))
    }
}

impl ShrinkerOps for Shared<'_> {
    fn count_objects(&self, _: &ShrinkControl) -> usize {
        match self.live.try_lock() {
            Some(t) if t.movable_pages() > 0 => t.movable_pages(),
            Some(t) if t.live_allocations() > 0 => t.live_allocations(),
            _ => SHRINK_EMPTY,
        }
    }
    fn scan_objects(&self, sc: &mut ShrinkControl) -> usize {
        match self.live.try_lock() {
            Some(mut t) if t.movable_pages() > 0 => t.reclaim_lru(self.m, sc.nr_to_scan),
            Some(mut t) => t.pressure_kill(self.m, sc.nr_to_scan),
            // The replayer holds the tables (a kswapd thread asking): not now.
            None => SHRINK_STOP,
        }
    }
}

/// Whether kmem's OOM path reaches the notifiers for this request before a `__GFP_NOFAIL`
/// request would sleep: direct reclaim, order at most `PAGE_ALLOC_COSTLY_ORDER`, no
/// `__GFP_RETRY_MAYFAIL` or `__GFP_THISNODE`, and a zone from `ZONE_NORMAL` up.
pub fn oom_path_serves(gfp: Gfp, order: u32) -> bool {
    gfp.contains(Gfp::DIRECT_RECLAIM)
        && order <= COSTLY_ORDER
        && !gfp.intersects(Gfp::RETRY_MAYFAIL.union(Gfp::THISNODE).union(Gfp::DMA).union(Gfp::DMA32))
}

#[cfg(test)]
#[path = "oom_tests.rs"]
mod tests;
