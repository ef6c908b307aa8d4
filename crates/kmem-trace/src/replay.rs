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

use std::ptr::NonNull;

use kmem::kmalloc::{KmallocType, KMALLOC_MAX_CACHE_SIZE};
use kmem::{Cache, Gfp, Order, PageRef, SlabFlags, PAGE_SIZE};
use kmem_hosted::{in_irq, pin_current_thread, HostedPlatform, Machine};

use crate::keys::NO_SLOT;
use crate::op::{CacheDef, Kind, Op};

/// `Obj::cache` values from here up are kmalloc objects (`KMALLOC_BASE + KmallocType`).
const KMALLOC_BASE: u32 = u32::MAX - 3;

/// A live slab object or kmalloc block.
#[derive(Clone, Copy, Debug)]
struct Obj {
    addr: NonNull<u8>,
    cache: u32,
    /// Bytes it occupies (kmem's slot size, or the large block's bytes).
    bytes: u32,
}

/// A live page block.
#[derive(Clone, Copy)]
struct Block<'m> {
    page: PageRef<'m>,
    order: u8,
}

enum Slot<'m> {
    Unmade,
    Made(Cache<'m, HostedPlatform>),
    Failed,
}

/// Memory categories the replay tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mem {
    /// Objects of the trace's named caches (kmem slot sizes).
    Slab = 0,
    /// kmalloc up to 8 KiB (kmem size classes).
    Kmalloc = 1,
    /// kmalloc above 8 KiB (page blocks).
    KmallocLarge = 2,
    /// mm_page_alloc blocks.
    Pages = 3,
}

impl Mem {
    /// Every category.
    pub const ALL: [Mem; 4] = [Mem::Slab, Mem::Kmalloc, Mem::KmallocLarge, Mem::Pages];
    /// Its report name.
    pub fn name(self) -> &'static str {
        ["slab", "kmalloc", "kmalloc_large", "pages"][self as usize]
    }
}

/// What the replay did, per [`Kind`] (index `Kind as usize`).
#[derive(Clone, Debug, Default)]
pub struct ReplayCounts {
    /// Operations applied.
    pub ops: u64,
    /// Operations that did what the trace did.
    pub replayed: [u64; Kind::COUNT],
    /// Allocations that failed on the machine.
    pub failures: [u64; Kind::COUNT],
    /// Frees of keys the replay never allocated (allocated before the capture), skipped.
    pub unmatched_frees: [u64; Kind::COUNT],
    /// Allocations of a key that was still live: the old allocation was freed first.
    pub missed_frees: [u64; Kind::COUNT],
    /// `kfree(NULL)`.
    pub null_frees: u64,
    /// `mm_page_free_batched` of a page already freed by its `mm_page_free` (Linux traces
    /// both for each page `free_unref_folios` frees).
    pub batched_after_free: u64,
    /// Frees by another kind than the allocation (`kfree` of a cache object...): freed as
    /// allocated.
    pub cross_kind_frees: u64,
    /// Page frees with another order than the allocation: freed with the allocation's.
    pub order_mismatches: u64,
    /// Caches that could not be created (their allocations count as failures).
    pub cache_create_failures: u64,
    /// Frees of allocations that failed on the machine (nothing to free).
    pub frees_of_failed: u64,
    /// Live bytes per [`Mem`] now.
    pub live_bytes: [u64; 4],
    /// Peak of each.
    pub peak_bytes: [u64; 4],
    /// Peak of their sum.
    pub peak_total_bytes: u64,
}

/// Replays operations against one machine.
pub struct Replayer<'m> {
    m: &'m Machine,
    nr_cpus: u32,
    cpu: u32,
    merge: bool,
    slots: Vec<Slot<'m>>,
    /// Slot size per cache (0 until made).
    sizes: Vec<u32>,
    /// Live objects per cache.
    live: Vec<u64>,
    /// Missed frees per cache (allocations over a live object of the cache).
    missed: Vec<u64>,
    /// Live objects by slot ([`Op::slot`]).
    objs: Vec<Option<Obj>>,
    /// Live page blocks by slot.
    pages: Vec<Option<Block<'m>>>,
    nr_objs: usize,
    nr_pages: usize,
    /// Bit `KmallocType as u32` set: that type's kmalloc caches were used.
    kmalloc_used: u32,
    /// What happened so far.
    pub counts: ReplayCounts,
}

impl std::fmt::Debug for Replayer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer").field("objs", &self.nr_objs).field("pages", &self.nr_pages).finish()
    }
}

fn kmalloc_type(gfp: Gfp) -> u32 {
    KmallocType::of(gfp) as u32
}

/// Bytes kmem hands out for `kmalloc(size)`: the size class, or the page block above 8 KiB.
pub fn kmalloc_bytes(size: usize) -> usize {
    if size > KMALLOC_MAX_CACHE_SIZE {
        PAGE_SIZE << size.div_ceil(PAGE_SIZE).next_power_of_two().trailing_zeros()
    } else {
        kmem::kmalloc::kmalloc_size(kmem::kmalloc::kmalloc_index(size))
    }
}

impl<'m> Replayer<'m> {
    /// A replayer on `m`; `merge`: let the trace's caches merge with compatible ones.
    pub fn new(m: &'m Machine, merge: bool) -> Self {
        Self {
            m,
            nr_cpus: m.nr_cpus() as u32,
            cpu: u32::MAX,
            merge,
            slots: Vec::new(),
            sizes: Vec::new(),
            live: Vec::new(),
            missed: Vec::new(),
            objs: Vec::new(),
            pages: Vec::new(),
            nr_objs: 0,
            nr_pages: 0,
            kmalloc_used: 0,
            counts: ReplayCounts::default(),
        }
    }

    /// The machine.
    pub fn machine(&self) -> &'m Machine {
        self.m
    }

    /// Live objects (slab and kmalloc) and page blocks.
    pub fn live(&self) -> (usize, usize) {
        (self.nr_objs, self.nr_pages)
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
        self.live.get(i).copied().unwrap_or(0)
    }

    /// Live kmalloc blocks: (requested size, kmalloc type) each.
    pub fn kmalloc_live(&self) -> impl Iterator<Item = (usize, KmallocType)> + '_ {
        self.objs.iter().flatten().filter(|o| o.cache >= KMALLOC_BASE).map(|o| {
            let t = match o.cache - KMALLOC_BASE {
                0 => KmallocType::Normal,
                1 => KmallocType::Reclaim,
                _ => KmallocType::Dma,
            };
            (o.bytes as usize, t)
        })
    }

    /// Whether kmalloc of type `t` was used (its caches exist).
    pub fn kmalloc_type_used(&self, t: KmallocType) -> bool {
        self.kmalloc_used & (1 << t as u32) != 0
    }

    /// Live page blocks: (page, order) each.
    pub fn pages_live(&self) -> impl Iterator<Item = (PageRef<'m>, u32)> + '_ {
        self.pages.iter().flatten().map(|b| (b.page, b.order as u32))
    }

    fn add(&mut self, mem: Mem, bytes: u64) {
        let c = &mut self.counts;
        c.live_bytes[mem as usize] += bytes;
        c.peak_bytes[mem as usize] = c.peak_bytes[mem as usize].max(c.live_bytes[mem as usize]);
        c.peak_total_bytes = c.peak_total_bytes.max(c.live_bytes.iter().sum());
    }

    fn sub(&mut self, mem: Mem, bytes: u64) {
        self.counts.live_bytes[mem as usize] -= bytes;
    }

    /// Applies one operation; `caches` are the front end's ([`crate::Frontend::caches`]).
    #[inline]
    pub fn apply(&mut self, op: &Op, caches: &[CacheDef]) {
        self.counts.ops += 1;
        let cpu = op.cpu as u32 % self.nr_cpus;
        if cpu != self.cpu {
            pin_current_thread(cpu);
            self.cpu = cpu;
        }
        if op.kind == Kind::CacheAlloc {
            self.ensure_cache(op.cache, caches);
        }
        if op.irq {
            in_irq(|| self.apply_pinned(op));
        } else {
            self.apply_pinned(op);
        }
    }

    /// Applies a run of operations (what the batch driver and the benchmarks call).
    #[inline(never)]
    pub fn apply_all(&mut self, ops: &[Op], caches: &[CacheDef]) {
        for op in ops {
            self.apply(op, caches);
        }
    }

    fn ensure_cache(&mut self, i: u32, caches: &[CacheDef]) {
        let i = i as usize;
        if i < self.slots.len() && !matches!(self.slots[i], Slot::Unmade) {
            return;
        }
        while self.slots.len() < caches.len().max(i + 1) {
            self.slots.push(Slot::Unmade);
            self.sizes.push(0);
            self.live.push(0);
            self.missed.push(0);
        }
        let Some(def) = caches.get(i) else {
            self.slots[i] = Slot::Failed;
            self.counts.cache_create_failures += 1;
            return;
        };
        let flags = if self.merge { SlabFlags::NONE } else { SlabFlags::NO_MERGE };
        self.slots[i] = match self.m.kmem_cache_create(&def.name, def.bytes_alloc as usize, 0, flags, None) {
            Ok(c) => {
                self.sizes[i] = c.size() as u32;
                Slot::Made(c)
            }
            Err(_) => {
                self.counts.cache_create_failures += 1;
                Slot::Failed
            }
        };
    }

    fn apply_pinned(&mut self, op: &Op) {
        let k = op.kind as usize;
        match op.kind {
            Kind::Kmalloc => {
                self.forget_obj(op.slot, k);
                match self.m.kmalloc(op.size as usize, op.gfp) {
                    Ok(addr) => {
                        let bytes = kmalloc_bytes(op.size as usize);
                        let large = op.size as usize > KMALLOC_MAX_CACHE_SIZE;
                        self.add(if large { Mem::KmallocLarge } else { Mem::Kmalloc }, bytes as u64);
                        let t = kmalloc_type(op.gfp);
                        self.kmalloc_used |= 1 << t;
                        self.put_obj(op.slot, Obj { addr, cache: KMALLOC_BASE + t, bytes: op.size });
                        self.counts.replayed[k] += 1;
                    }
                    Err(_) => self.counts.failures[k] += 1,
                }
            }
            Kind::CacheAlloc => {
                self.forget_obj(op.slot, k);
                let i = op.cache as usize;
                let Some(Slot::Made(c)) = self.slots.get(i) else {
                    self.counts.failures[k] += 1;
                    return;
                };
                match self.m.kmem_cache_alloc(c, op.gfp) {
                    Ok(addr) => {
                        let bytes = self.sizes[i];
                        self.add(Mem::Slab, bytes as u64);
                        self.live[i] += 1;
                        self.put_obj(op.slot, Obj { addr, cache: op.cache, bytes });
                        self.counts.replayed[k] += 1;
                    }
                    Err(_) => self.counts.failures[k] += 1,
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
                match self.take_obj(op.slot) {
                    Some(o) => {
                        let was_kmalloc = o.cache >= KMALLOC_BASE;
                        if was_kmalloc != (op.kind == Kind::Kfree) {
                            self.counts.cross_kind_frees += 1;
                        }
                        self.free_obj(o);
                        self.counts.replayed[k] += 1;
                    }
                    None => self.counts.frees_of_failed += 1,
                }
            }
            Kind::PageAlloc => {
                if let Some(old) = self.take_block(op.slot) {
                    self.counts.missed_frees[k] += 1;
                    self.free_block(old);
                }
                // An order above MAX_PAGE_ORDER fails as Linux's allocator fails it.
                let got =
                    Order::new(op.order as u32).ok_or(()).and_then(|o| self.m.alloc_pages(op.gfp, o).map_err(drop));
                match got {
                    Ok(page) => {
                        self.add(Mem::Pages, (PAGE_SIZE as u64) << op.order);
                        let s = op.slot as usize;
                        if s >= self.pages.len() {
                            self.pages.resize(s + 1, None);
                        }
                        self.pages[s] = Some(Block { page, order: op.order });
                        self.nr_pages += 1;
                        self.counts.replayed[k] += 1;
                    }
                    Err(_) => self.counts.failures[k] += 1,
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
                match self.take_block(op.slot) {
                    Some(b) => {
                        if b.order != op.order {
                            self.counts.order_mismatches += 1;
                        }
                        self.free_block(b);
                        self.counts.replayed[k] += 1;
                    }
                    None => self.counts.frees_of_failed += 1,
                }
            }
        }
    }

    #[inline]
    fn put_obj(&mut self, slot: u32, o: Obj) {
        let s = slot as usize;
        if s >= self.objs.len() {
            self.objs.resize(s + 1, None);
        }
        self.objs[s] = Some(o);
        self.nr_objs += 1;
    }

    #[inline]
    fn take_obj(&mut self, slot: u32) -> Option<Obj> {
        let o = self.objs.get_mut(slot as usize)?.take();
        self.nr_objs -= o.is_some() as usize;
        o
    }

    #[inline]
    fn take_block(&mut self, slot: u32) -> Option<Block<'m>> {
        let b = self.pages.get_mut(slot as usize)?.take();
        self.nr_pages -= b.is_some() as usize;
        b
    }

    /// Frees the object in `slot`, if any (an allocation into a live slot: a missed free).
    #[inline]
    fn forget_obj(&mut self, slot: u32, kind: usize) {
        if let Some(old) = self.take_obj(slot) {
            self.counts.missed_frees[kind] += 1;
            if old.cache < KMALLOC_BASE {
                self.missed[old.cache as usize] += 1;
            }
            self.free_obj(old);
        }
    }

    fn free_obj(&mut self, o: Obj) {
        if o.cache >= KMALLOC_BASE {
            let large = o.bytes as usize > KMALLOC_MAX_CACHE_SIZE;
            self.sub(if large { Mem::KmallocLarge } else { Mem::Kmalloc }, kmalloc_bytes(o.bytes as usize) as u64);
            // SAFETY: `o.addr` came from this machine's kmalloc and was removed from the map,
            // so it is freed exactly once.
            unsafe { self.m.kfree(o.addr.as_ptr()) };
            return;
        }
        let i = o.cache as usize;
        self.sub(Mem::Slab, o.bytes as u64);
        self.live[i] -= 1;
        if let Slot::Made(c) = &self.slots[i] {
            // SAFETY: `o.addr` came from `kmem_cache_alloc` on this cache and was removed from
            // the map, so it is freed exactly once, to its own cache.
            unsafe { self.m.kmem_cache_free(c, o.addr) };
        }
    }

    fn free_block(&mut self, b: Block<'m>) {
        self.sub(Mem::Pages, (PAGE_SIZE as u64) << b.order);
        // SAFETY: the block came from `alloc_pages` with this order and was removed from the
        // map, so it is freed exactly once.
        unsafe { self.m.__free_pages(b.page, Order::of(b.order as u32)) };
    }

    /// Frees everything still live and destroys the caches (the machine is then as booted,
    /// plus the kmalloc caches and whatever the page allocator keeps on its per-CPU lists).
    pub fn release_all(mut self) {
        for o in std::mem::take(&mut self.objs).into_iter().flatten() {
            self.free_obj(o);
        }
        for b in std::mem::take(&mut self.pages).into_iter().flatten() {
            self.free_block(b);
        }
        (self.nr_objs, self.nr_pages) = (0, 0);
        self.slots.clear();
    }
}
