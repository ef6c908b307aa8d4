//! The replay engine: applies [`Op`]s to a machine, mapping the trace's pointers and pfns to
//! kmem's own allocations.
//!
//! - Caches are created on the first allocation that names them (object size: the trace's
//!   `bytes_alloc`), outside interrupt context, `SLAB_NO_MERGE` unless merging is asked for.
//! - The replaying thread is pinned to `cpu % nr_cpus` when the trace's CPU changes, so each
//!   CPU's active slabs and page lists see the traced CPU's stream; events the trace marks as
//!   interrupt context run under [`in_irq`].
//! - A free of a pointer or pfn the replay does not know (allocated before the capture) is an
//!   *unmatched free* and skipped; an allocation of a key that is still live (its free was
//!   not traced) frees the old allocation first (a *missed free*).
//! - Failed allocations are counted; the machine's own report counting stays exact.
//! - `__GFP_NOFAIL` is kept. The replayer registers an OOM notifier that frees the trace's
//!   oldest live allocations ([`crate::oom`]: the trace is the OOM killer's victim), counts
//!   their later traced frees as freed by OOM, and serves itself the `__GFP_NOFAIL` requests
//!   that kmem could only wait for (nobody else frees on a one-thread replay).

use std::ptr::NonNull;
use std::sync::Arc;

use kmem::kmalloc::{KmallocType, KMALLOC_MAX_CACHE_SIZE};
use kmem::reclaim::{OomNotifier, OomNotifierHandle, Shrinker, ShrinkerFlags, ShrinkerOps};
use kmem::{Cache, Gfp, Order, PageRef, SlabFlags, PAGE_SIZE};
use kmem_hosted::{in_irq, HostedPlatform, Machine};

use crate::keys::NO_SLOT;
use crate::oom::{oom_path_serves, Block, Gone, Obj, Shared, KMALLOC_BASE};
use crate::op::{CacheDef, Kind, Op};

mod counts;
pub use counts::{Mem, ReplayCounts};

enum Slot<'m> {
    Unmade,
    Made(Cache<'m, HostedPlatform>),
    Failed,
}

/// Replays operations against one machine.
pub struct Replayer<'m> {
    m: &'m Machine,
    nr_cpus: u32,
    /// The machine's CPU the thread is pinned to (`u32::MAX`: none yet).
    cpu: u32,
    /// The trace's CPU of the last operation (`u32::MAX`: none yet).
    trace_cpu: u32,
    merge: bool,
    slots: Vec<Slot<'m>>,
    /// Slot size per cache (0 until made).
    sizes: Vec<u32>,
    /// Missed frees per cache (allocations over a live object of the cache).
    missed: Vec<u64>,
    /// Bit `KmallocType as u32` set: that type's kmalloc caches were used.
    kmalloc_used: u32,
    /// What happened so far.
    pub counts: ReplayCounts,
    /// The registered OOM notifier (`None`: the machine's chain was full). Unregistered
    /// before `shared` and the caches go ([`Drop`], [`Replayer::release_all`]).
    oom: Option<OomNotifierHandle<'m, HostedPlatform>>,
    /// The registered `replay-lru` shrinker, dropped with `oom`.
    lru: Option<Shrinker<'m, HostedPlatform>>,
    /// The live allocations, shared with the OOM notifier.
    shared: Arc<Shared<'m>>,
}

impl std::fmt::Debug for Replayer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (objs, pages) = self.live();
        f.debug_struct("Replayer").field("objs", &objs).field("pages", &pages).finish()
    }
}

impl Drop for Replayer<'_> {
    fn drop(&mut self) {
        // First: the notifier refers to `shared` and to the caches' descriptors.
        drop(self.oom.take());
        drop(self.lru.take());
    }
}

/// `$alloc` (an allocation on the machine `$m` with `$gfp`: `|$m, $gfp| expr`), keeping
/// `__GFP_NOFAIL`'s promise ([`crate::oom`]); `$order`: the pages the request takes from the
/// page allocator. A macro, not a method taking a closure: a closure called both here and
/// from `alloc_nofail` stays out of line, a call and its register saves per allocation,
/// where written out here the allocation's fast path is inlined into the replay loop.
macro_rules! alloc {
    ($self:ident, $gfp:expr, $order:expr, |$m:ident, $g:ident| $alloc:expr) => {{
        let gfp: Gfp = $gfp;
        if !gfp.contains(Gfp::NOFAIL) {
            let ($m, $g) = ($self.m, gfp);
            ($alloc).ok()
        } else {
            $self.alloc_nofail(gfp, $order, |$m: &'m Machine, $g: Gfp| $alloc)
        }
    }};
}

fn kmalloc_type(gfp: Gfp) -> u32 {
    KmallocType::of(gfp) as u32
}

/// Bytes kmem hands out for `kmalloc(size)`: the size class, or the page block above 8 KiB.
pub fn kmalloc_bytes(size: usize) -> usize {
    if size > KMALLOC_MAX_CACHE_SIZE {
        PAGE_SIZE << kmalloc_large_order(size)
    } else {
        kmem::kmalloc::kmalloc_size(kmem::kmalloc::kmalloc_index(size))
    }
}

fn kmalloc_large_order(size: usize) -> u32 {
    size.div_ceil(PAGE_SIZE).next_power_of_two().trailing_zeros()
}

impl<'m> Replayer<'m> {
    /// A replayer on `m`; `merge`: let the trace's caches merge with compatible ones.
    pub fn new(m: &'m Machine, merge: bool) -> Self {
        let shared = Arc::new(Shared::new(m));
        let nb: &(dyn OomNotifier + '_) = &*shared;
        // SAFETY: the notifier lives in `shared`, which this replayer owns (the only strong
        // reference) and keeps until after the handle is dropped (`Drop` takes the handle
        // first, `release_all` too); kmem calls a notifier only while it is registered, and
        // unregistering waits for a call in flight. So the reference never outlives its
        // target, though its type says `'static`.
        let nb: &'static dyn OomNotifier = unsafe { std::mem::transmute::<&dyn OomNotifier, _>(nb) };
        let oom = m.register_oom_notifier(nb).ok();
        let ops: &(dyn ShrinkerOps + '_) = &*shared;
        // SAFETY: as for the notifier: the shrinker is unregistered (its handle dropped, which
        // waits for a call in flight) before `shared` goes.
        let ops: &'static dyn ShrinkerOps = unsafe { std::mem::transmute::<&dyn ShrinkerOps, _>(ops) };
        let lru = m.shrinker_alloc(ShrinkerFlags::NONE, "replay-lru").ok().inspect(|s| {
            s.set_batch(kmem::reclaim::SWAP_CLUSTER_MAX);
            s.register(ops);
        });
        Self {
            m,
            nr_cpus: m.nr_cpus() as u32,
            cpu: u32::MAX,
            trace_cpu: u32::MAX,
            merge,
            slots: Vec::new(),
            sizes: Vec::new(),
            missed: Vec::new(),
            kmalloc_used: 0,
            counts: ReplayCounts::default(),
            oom,
            lru,
            shared,
        }
    }

    /// The tables and the OOM notifier (tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared<'m> {
        &self.shared
    }

    /// The machine.
    pub fn machine(&self) -> &'m Machine {
        self.m
    }

    /// Live objects (slab and kmalloc) and page blocks.
    pub fn live(&self) -> (usize, usize) {
        let t = self.shared.lock();
        (t.nr_objs, t.nr_pages)
    }

    /// Allocations the OOM killer or reclaim (`replay-lru`) freed whose traced free has not
    /// come yet: (objects, page blocks). With [`Replayer::live`], what the trace holds ([`crate::Frontend::live`]).
    pub fn oom_killed_live(&self) -> (usize, usize) {
        self.shared.lock().killed_live()
    }

    /// Whether the replay's OOM notifier is registered (the machine's chain had room).
    pub fn oom_notifier_registered(&self) -> bool {
        self.oom.is_some()
    }

    /// The kmem cache made for trace cache `i`, if made.
    pub fn cache(&self, i: usize) -> Option<&Cache<'m, HostedPlatform>> {
        match self.slots.get(i) {
            Some(Slot::Made(c)) => Some(c),
            _ => None,
        }
    }

    /// Missed frees of objects of trace cache `i` (allocations over one still live).
    pub fn missed_in_cache(&self, i: usize) -> u64 {
        self.missed.get(i).copied().unwrap_or(0)
    }

    /// Live objects of trace cache `i`.
    pub fn live_in_cache(&self, i: usize) -> u64 {
        self.shared.lock().per_cache.get(i).copied().unwrap_or(0)
    }

    /// Live kmalloc blocks: (requested size, kmalloc type) each.
    pub fn kmalloc_live(&self) -> Vec<(usize, KmallocType)> {
        let t = self.shared.lock();
        t.objs
            .iter()
            .flatten()
            .filter(|o| o.cache >= KMALLOC_BASE)
            .map(|o| {
                let t = match o.cache - KMALLOC_BASE {
                    0 => KmallocType::Normal,
                    1 => KmallocType::Reclaim,
                    _ => KmallocType::Dma,
                };
                (o.bytes as usize, t)
            })
            .collect()
    }

    /// Whether kmalloc of type `t` was used (its caches exist).
    pub fn kmalloc_type_used(&self, t: KmallocType) -> bool {
        self.kmalloc_used & (1 << t as u32) != 0
    }

    /// Live page blocks: (page, order) each.
    pub fn pages_live(&self) -> Vec<(PageRef<'m>, u32)> {
        self.shared.lock().pages.iter().flatten().map(|b| (b.page, b.order as u32)).collect()
    }

    /// Applies one operation; `caches` are the front end's ([`crate::Frontend::caches`]).
    #[inline]
    pub fn apply(&mut self, op: &Op, caches: &[CacheDef]) {
        self.counts.ops += 1;
        // The division only when the trace's CPU changes.
        if op.cpu as u32 != self.trace_cpu {
            self.switch_cpu(op.cpu as u32);
        }
        if op.irq {
            // Caches are made outside interrupt context (`apply_pinned` makes the others).
            if op.kind == Kind::CacheAlloc
                && !matches!(self.slots.get(op.cache as usize), Some(Slot::Made(_) | Slot::Failed))
            {
                self.ensure_cache(op.cache, caches);
            }
            self.apply_in_irq(op, caches);
        } else {
            self.apply_pinned(op, caches);
        }
    }

    /// Applies a run of operations (what the batch driver and the benchmarks call).
    #[inline(never)]
    pub fn apply_all(&mut self, ops: &[Op], caches: &[CacheDef]) {
        for op in ops {
            self.apply(op, caches);
        }
    }

    /// Pins the replaying thread to the machine's CPU for trace CPU `trace_cpu`, if that is
    /// another CPU than the last one's.
    #[cold]
    fn switch_cpu(&mut self, trace_cpu: u32) {
        self.trace_cpu = trace_cpu;
        let cpu = trace_cpu % self.nr_cpus;
        if cpu != self.cpu {
            // With the machine's home for it computed now: on a shared machine the inline
            // fast paths pin only a known home (`try_pin_cpu`), so the first operation on the
            // new CPU would take the full paths.
            self.m.platform().pin_current_thread(cpu);
            self.cpu = cpu;
        }
    }

    #[cold]
    fn ensure_cache(&mut self, i: u32, caches: &[CacheDef]) {
        let i = i as usize;
        if i < self.slots.len() && !matches!(self.slots[i], Slot::Unmade) {
            return;
        }
        while self.slots.len() < caches.len().max(i + 1) {
            self.slots.push(Slot::Unmade);
            self.sizes.push(0);
            self.missed.push(0);
        }
        let Some(def) = caches.get(i) else {
            self.slots[i] = Slot::Failed;
            self.counts.cache_create_failures += 1;
            return;
        };
        let flags = if self.merge { SlabFlags::NONE } else { SlabFlags::NO_MERGE };
        // Not under the tables' lock: creating a cache allocates, and may call the notifier.
        let made = self.m.kmem_cache_create(&def.name, def.bytes_alloc as usize, 0, flags, None);
        let t = &mut *self.shared.lock();
        self.counts.sync(t);
        self.slots[i] = match made {
            Ok(c) => {
                self.sizes[i] = c.size() as u32;
                t.set_desc(i, Some(NonNull::from(&*c)));
                Slot::Made(c)
            }
            Err(_) => {
                self.counts.cache_create_failures += 1;
                Slot::Failed
            }
        };
    }

    #[cold]
    fn alloc_nofail<T, E>(&mut self, gfp: Gfp, order: u32, f: impl Fn(&'m Machine, Gfp) -> Result<T, E>) -> Option<T> {
        self.counts.oom.nofail += 1;
        let something_to_kill = self.shared.lock().has_victims();
        // With nothing to kill, an order-0 request still cannot sleep while a page is free:
        // kmem's OOM path grants it any page (`ALLOC_NO_WATERMARKS`).
        let takes_a_free_page = || order == 0 && self.m.zones().any(|z| z.free_pages() + z.pcp_pages() > 0);
        if self.oom.is_some() && oom_path_serves(gfp, order) && (something_to_kill || takes_a_free_page()) {
            // kmem's OOM path calls the notifier before this could sleep.
            return f(self.m, gfp).ok();
        }
        self.counts.oom.nofail_by_replayer += 1;
        let ask = gfp.without(Gfp::NOFAIL) | Gfp::NOWARN;
        loop {
            if let Ok(x) = f(self.m, ask) {
                return Some(x);
            }
            let t = &mut *self.shared.lock();
            let freed = t.kill(self.m, order);
            self.counts.sync(t);
            if freed == 0 {
                self.counts.oom.nofail_failed += 1;
                return None;
            }
        }
    }

    /// Records an allocation that failed (the notifier may have run meanwhile).
    #[cold]
    fn failed(&mut self, k: usize) {
        self.counts.failures[k] += 1;
        self.counts.sync(&mut self.shared.lock());
    }

    /// Records a new object.
    #[inline(always)]
    fn record_obj(&mut self, slot: u32, o: Obj, k: usize) {
        let t = &mut *self.shared.lock();
        self.counts.sync(t);
        let (mem, bytes) = o.mem();
        self.counts.add(mem, bytes);
        t.put_obj(slot, o);
        self.counts.replayed[k] += 1;
    }

    /// [`Replayer::apply_pinned`] as from an interrupt handler (out of line: the inlined
    /// copy is the common, process-context one).
    #[inline(never)]
    fn apply_in_irq(&mut self, op: &Op, caches: &[CacheDef]) {
        in_irq(|| self.apply_pinned(op, caches));
    }

    /// Inlined into the replay loop: out of line, its prologue and epilogue (the
    /// callee-saved registers of a large function) cost every operation about 17
    /// instructions.
    #[inline(always)]
    fn apply_pinned(&mut self, op: &Op, caches: &[CacheDef]) {
        let k = op.kind as usize;
        match op.kind {
            Kind::Kmalloc => {
                if op.relive {
                    self.forget_obj(op.slot, k);
                }
                let size = op.size as usize;
                let order = if size > KMALLOC_MAX_CACHE_SIZE { kmalloc_large_order(size) } else { 0 };
                match alloc!(self, op.gfp, order, |m, gfp| m.kmalloc(size, gfp)) {
                    Some(addr) => {
                        let t = kmalloc_type(op.gfp);
                        self.kmalloc_used |= 1 << t;
                        self.record_obj(op.slot, Obj { addr, cache: KMALLOC_BASE + t, bytes: op.size, gen: 0 }, k);
                    }
                    None => self.failed(k),
                }
            }
            Kind::CacheAlloc => {
                // The cache first (made on its first allocation), then the missed free.
                let i = op.cache as usize;
                let made = |s: &Slot<'m>| match s {
                    Slot::Made(c) => Some((NonNull::from(&**c), c.order())),
                    _ => None,
                };
                let cache = match self.slots.get(i) {
                    None | Some(Slot::Unmade) => {
                        self.ensure_cache(op.cache, caches);
                        self.slots.get(i).and_then(made)
                    }
                    s => s.and_then(made),
                };
                if op.relive {
                    self.forget_obj(op.slot, k);
                }
                let Some((desc, order)) = cache else {
                    self.counts.failures[k] += 1;
                    return;
                };
                let got = alloc!(self, op.gfp, order, |m, gfp| {
                    // SAFETY: `desc` is the descriptor of `c`, whose handle the replayer owns
                    // and does not drop during the call.
                    m.kmem_cache_alloc(unsafe { desc.as_ref() }, gfp)
                });
                match got {
                    Some(addr) => {
                        let bytes = self.sizes[i];
                        self.record_obj(op.slot, Obj { addr, cache: op.cache, bytes, gen: 0 }, k);
                    }
                    None => self.failed(k),
                }
            }
            Kind::Kfree | Kind::CacheFree => {
                if op.slot == NO_SLOT {
                    if op.key == 0 && op.kind == Kind::Kfree {
                        self.counts.null_frees += 1;
                    } else {
                        self.counts.unmatched_frees[k] += 1;
                    }
                    return;
                }
                let t = &mut *self.shared.lock();
                match t.take_obj(op.slot) {
                    Some(o) => {
                        let was_kmalloc = o.cache >= KMALLOC_BASE;
                        if was_kmalloc != (op.kind == Kind::Kfree) {
                            self.counts.cross_kind_frees += 1;
                        }
                        let (mem, bytes) = o.mem();
                        self.counts.sub(mem, bytes);
                        t.free_obj(self.m, o);
                        self.counts.replayed[k] += 1;
                    }
                    None if t.take_killed_obj(op.slot) => self.counts.oom.victim_frees[k] += 1,
                    None => self.counts.frees_of_failed += 1,
                }
            }
            Kind::PageAlloc => {
                if op.relive {
                    let t = &mut *self.shared.lock();
                    match t.take_block(op.slot) {
                        Some(old) => {
                            self.counts.missed_frees[k] += 1;
                            self.counts.sub(Mem::Pages, (PAGE_SIZE as u64) << old.order);
                            free_block(self.m, old);
                        }
                        None => {
                            t.take_gone_block(op.slot);
                        }
                    }
                }
                // An order above MAX_PAGE_ORDER fails as Linux's allocator fails it.
                let got = match Order::new(op.order as u32) {
                    Some(o) => alloc!(self, op.gfp, op.order as u32, |m, gfp| m.alloc_pages(gfp, o)),
                    None => None,
                };
                match got {
                    Some(page) => {
                        let t = &mut *self.shared.lock();
                        self.counts.sync(t);
                        self.counts.add(Mem::Pages, (PAGE_SIZE as u64) << op.order);
                        let movable = op.gfp.contains(Gfp::MOVABLE);
                        t.put_block(op.slot, Block { page, order: op.order, movable, gen: 0 });
                        self.counts.replayed[k] += 1;
                    }
                    None => self.failed(k),
                }
            }
            Kind::PageFree | Kind::PageFreeBatched => {
                if op.slot == NO_SLOT {
                    if op.kind == Kind::PageFreeBatched {
                        self.counts.batched_after_free += 1;
                    } else {
                        self.counts.unmatched_frees[k] += 1;
                    }
                    return;
                }
                let t = &mut *self.shared.lock();
                match t.take_block(op.slot) {
                    Some(b) => {
                        if b.order != op.order {
                            self.counts.order_mismatches += 1;
                        }
                        self.counts.sub(Mem::Pages, (PAGE_SIZE as u64) << b.order);
                        free_block(self.m, b);
                        self.counts.replayed[k] += 1;
                    }
                    None => match t.take_gone_block(op.slot) {
                        Gone::Killed => self.counts.oom.victim_frees[k] += 1,
                        Gone::Reclaimed => self.counts.oom.reclaimed_frees[k] += 1,
                        Gone::Failed => self.counts.frees_of_failed += 1,
                    },
                }
            }
        }
    }

    /// Frees the object in `slot`, if any (an allocation into a live slot: a missed free).
    #[inline]
    fn forget_obj(&mut self, slot: u32, kind: usize) {
        let t = &mut *self.shared.lock();
        match t.take_obj(slot) {
            Some(old) => {
                self.counts.missed_frees[kind] += 1;
                if old.cache < KMALLOC_BASE {
                    self.missed[old.cache as usize] += 1;
                }
                let (mem, bytes) = old.mem();
                self.counts.sub(mem, bytes);
                t.free_obj(self.m, old);
            }
            None => {
                // An allocation over one the OOM killer freed: the trace never freed it.
                t.take_killed_obj(slot);
            }
        }
    }

    /// Frees everything still live and destroys the caches (the machine is then as booted,
    /// plus the kmalloc caches and whatever the page allocator keeps on its per-CPU lists).
    pub fn release_all(mut self) {
        drop(self.oom.take());
        drop(self.lru.take());
        {
            let t = &mut *self.shared.lock();
            self.counts.sync(t);
            for o in std::mem::take(&mut t.objs).into_iter().flatten() {
                let (mem, bytes) = o.mem();
                self.counts.sub(mem, bytes);
                t.free_obj(self.m, o);
            }
            for b in std::mem::take(&mut t.pages).into_iter().flatten() {
                self.counts.sub(Mem::Pages, (PAGE_SIZE as u64) << b.order);
                free_block(self.m, b);
            }
            (t.nr_objs, t.nr_pages) = (0, 0);
            t.per_cache.iter_mut().for_each(|n| *n = 0);
            t.clear_descs();
        }
        self.slots.clear();
    }
}

fn free_block(m: &Machine, b: Block<'_>) {
    // SAFETY: the block came from `alloc_pages` with this order and was taken out of the
    // tables, so it is freed exactly once.
    unsafe { m.__free_pages(b.page, Order::of(b.order as u32)) };
}
