//! The reference model of the public allocation API: every block a sequence of operations
//! holds (page blocks, slab objects of a few caches, kmalloc, vmalloc and per-CPU blocks),
//! with its address range and content stamp, and an interpreter that applies one
//! [`Op`] to a machine and checks what the machine answered against the model.
//!
//! A [`World`] belongs to one thread; several worlds can share a machine (each then owns
//! its caches). What the scanner needs from a world is its [`Summary`].

use std::collections::BTreeMap;

use kmem::kmalloc::{kmalloc_size_roundup, KmallocErrorKind, KmallocType, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE};
use kmem::{Cache, Gfp, PageRef, PercpuPtr, SlabFlags, VirtAddr, ZoneType, PAGE_SIZE, ZERO_SIZE_PTR};
use kmem_hosted::{in_irq, HostedPlatform, Machine};

pub use super::ops::{Op, CACHE_SIZES, PERCPU_ALIGNS, PERCPU_SIZES, SLOTS};
use super::stamp;

/// The pattern the test caches' constructor writes (and users restore before freeing, as
/// Linux's constructor contract asks).
pub const CTOR_BYTE: u8 = 0xC7;

fn ctor(obj: &mut [u8]) {
    obj.fill(CTOR_BYTE);
}

/// GFP flags of the page operations (index `Op::Pages::gfp % 6`).
fn page_gfp(i: u8) -> Gfp {
    [
        Gfp::KERNEL,
        Gfp::KERNEL | Gfp::DMA,
        Gfp::KERNEL | Gfp::DMA32,
        Gfp::HIGHUSER_MOVABLE,
        Gfp::ATOMIC | Gfp::COMP,
        Gfp::KERNEL | Gfp::ZERO,
    ][i as usize % 6]
        | Gfp::NOWARN
}

/// GFP flags of the kmalloc operations (index `Op::Kmalloc::gfp % 5`).
fn kmalloc_gfp(i: u8) -> Gfp {
    [Gfp::KERNEL, Gfp::KERNEL | Gfp::ZERO, Gfp::KERNEL | Gfp::DMA, Gfp::KERNEL | Gfp::RECLAIMABLE, Gfp::ATOMIC]
        [i as usize % 5]
        | Gfp::NOWARN
}

/// What a live block is.
#[derive(Clone, Copy, Debug)]
pub enum Kind<'m> {
    /// `alloc_pages` of this order.
    Pages(PageRef<'m>, u32),
    /// An object of the cache in this slot.
    Slab(usize),
    /// kmalloc (of this type; `len` is the request, the range its `ksize`).
    Kmalloc(KmallocType),
    /// vmalloc.
    Vmalloc,
    /// `__alloc_percpu`: `len` bytes in every CPU's unit.
    Percpu(PercpuPtr),
}

/// A live block of the model.
#[derive(Clone, Copy, Debug)]
pub struct Block<'m> {
    pub kind: Kind<'m>,
    pub addr: usize,
    /// Bytes stamped (the request).
    pub len: usize,
    /// Bytes of address range the block occupies (at least `len`).
    pub span: usize,
    pub tag: u64,
}

struct SlotCache<'m> {
    cache: Cache<'m, HostedPlatform>,
    size: usize,
    ctor: bool,
}

/// What the invariant scanner needs from one world.
#[derive(Debug, Default)]
pub struct Summary {
    /// Every live address range: (start, end, tag).
    pub ranges: Vec<(usize, usize, u64)>,
    /// Pages of live `alloc_pages` blocks.
    pub pages: usize,
    /// Pages of live large kmalloc blocks.
    pub large_kmalloc_pages: usize,
    /// Live vmalloc areas and their pages.
    pub vmalloc_areas: usize,
    pub vmalloc_pages: usize,
    /// Live per-CPU allocations.
    pub percpu: usize,
    /// Per test cache: its name, slabinfo's active objects, and the model's live objects.
    pub cache_objects: Vec<(String, usize, usize)>,
    /// Live kmalloc slab objects per cache name.
    pub kmalloc_objects: BTreeMap<String, usize>,
}

/// One thread's model: its live blocks and its caches.
pub struct World<'m> {
    pub m: &'m Machine,
    /// Distinguishes the caches of worlds sharing a machine.
    pub id: usize,
    caches: [Option<SlotCache<'m>>; SLOTS],
    pub live: Vec<Block<'m>>,
    ranges: BTreeMap<usize, (usize, u64)>,
    next_tag: u64,
}

macro_rules! ensure {
    ($c:expr, $($f:tt)+) => {
        if !$c {
            return Err(format!($($f)+));
        }
    };
}

impl<'m> World<'m> {
    pub fn new(m: &'m Machine, id: usize) -> Self {
        Self { m, id, caches: [const { None }; SLOTS], live: Vec::new(), ranges: BTreeMap::new(), next_tag: id as u64 }
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 0x1_0000;
        self.next_tag
    }

    /// The ranges a block occupies (one per CPU for a per-CPU block).
    fn spans(&self, b: &Block<'m>) -> Vec<(usize, usize)> {
        match b.kind {
            Kind::Percpu(p) => (0..self.m.nr_cpus())
                // SAFETY: `p` is live and `cpu` a CPU of the machine.
                .map(|cpu| unsafe { self.m.per_cpu_ptr(p, cpu) } as usize)
                .map(|a| (a, a + b.span))
                .collect(),
            _ if b.span == 0 => Vec::new(),
            _ => vec![(b.addr, b.addr + b.span)],
        }
    }

    /// Adds a block: its ranges must overlap no live range; then stamps it.
    fn insert(&mut self, b: Block<'m>) -> Result<(), String> {
        for (s, e) in self.spans(&b) {
            if let Some((&ps, &(pe, ptag))) = self.ranges.range(..e).next_back() {
                ensure!(pe <= s, "{b:?} [{s:#x}, {e:#x}) overlaps live block [{ps:#x}, {pe:#x}) tag {ptag}");
            }
            self.ranges.insert(s, (e, b.tag));
        }
        self.stamp_block(&b);
        self.live.push(b);
        Ok(())
    }

    fn stamp_block(&self, b: &Block<'m>) {
        match b.kind {
            // SAFETY: every CPU's copy of a live per-CPU block is ours.
            Kind::Percpu(p) => (0..self.m.nr_cpus()).for_each(|cpu| unsafe {
                stamp::stamp(self.m.per_cpu_ptr(p, cpu) as usize, b.len, b.tag ^ cpu as u64)
            }),
            // SAFETY: a live block of ours, `len` bytes.
            _ => unsafe { stamp::stamp(b.addr, b.len, b.tag) },
        }
    }

    /// Checks a live block's stamp (below `upto` bytes).
    pub fn check_block(&self, b: &Block<'m>, upto: usize) -> Result<(), String> {
        match b.kind {
            Kind::Percpu(p) => (0..self.m.nr_cpus()).try_for_each(|cpu| {
                // SAFETY: as in `stamp_block`.
                unsafe { stamp::check(self.m.per_cpu_ptr(p, cpu) as usize, b.len, b.tag ^ cpu as u64, upto) }
            }),
            // SAFETY: a live block of ours.
            _ => unsafe { stamp::check(b.addr, b.len, b.tag, upto) },
        }
    }

    /// Checks every live block's stamp.
    pub fn check_all(&self) -> Result<(), String> {
        self.live.iter().try_for_each(|b| self.check_block(b, usize::MAX))
    }

    /// Takes block `i` out of the model after checking its stamp.
    fn take(&mut self, i: usize) -> Result<Block<'m>, String> {
        let b = self.live.swap_remove(i);
        self.check_block(&b, usize::MAX)?;
        for (s, _) in self.spans(&b) {
            self.ranges.remove(&s);
        }
        Ok(b)
    }

    /// Applies one operation and checks the machine's answer.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        let m = self.m;
        match *op {
            Op::Pages { order, gfp } => {
                let g = page_gfp(gfp);
                let Ok(p) = m.alloc_pages(g, kmem::Order::of(order)) else { return Ok(()) };
                let pfn = p.pfn().as_usize();
                ensure!(pfn % (1 << order) == 0, "order-{order} block at pfn {pfn:#x} is misaligned");
                ensure!(p.refcount() == 1, "fresh block {p:?} has refcount {}", p.refcount());
                let zone = m.page_zone(p.page()).zone_type();
                ensure!(!g.contains(Gfp::DMA) || zone == ZoneType::Dma, "GFP_DMA block in {zone:?}");
                ensure!(!g.contains(Gfp::DMA32) || zone <= ZoneType::Dma32, "GFP_DMA32 block in {zone:?}");
                if g.contains(Gfp::COMP) && order > 0 {
                    ensure!(m.compound_order(p) == order, "compound order {} != {order}", m.compound_order(p));
                }
                let addr = m.page_address(p).ok_or("x86-64 pages are direct-mapped")?.as_usize();
                let len = PAGE_SIZE << order;
                if g.contains(Gfp::ZERO) {
                    // SAFETY: the fresh block is ours.
                    unsafe { stamp::check_fill(addr, len, 0, "__GFP_ZERO")? };
                }
                let tag = self.tag();
                self.insert(Block { kind: Kind::Pages(p, order), addr, len, span: len, tag })
            }
            Op::CacheCreate { slot, size, ctor: with_ctor } => {
                let slot = slot as usize % SLOTS;
                if self.caches[slot].is_some() {
                    return Ok(());
                }
                let size = CACHE_SIZES[size as usize % CACHE_SIZES.len()];
                let name = format!("w{}s{slot}_{size}", self.id);
                let c = m
                    .kmem_cache_create(&name, size, 0, SlabFlags::NONE, with_ctor.then_some(ctor as fn(&mut [u8])))
                    .map_err(|e| format!("kmem_cache_create({name}, {size}): {e:?}"))?;
                ensure!(
                    c.object_size() == size && c.size() >= size,
                    "cache {name}: object {} slot {}",
                    c.object_size(),
                    c.size()
                );
                self.caches[slot] = Some(SlotCache { cache: c, size, ctor: with_ctor });
                Ok(())
            }
            Op::CacheAlloc { slot, zero } => {
                let slot = slot as usize % SLOTS;
                let Some(sc) = &self.caches[slot] else { return Ok(()) };
                let zero = zero && !sc.ctor; // __GFP_ZERO with a constructor is a bug (Linux warns)
                let (size, has_ctor) = (sc.size, sc.ctor);
                let g = Gfp::KERNEL | Gfp::NOWARN;
                let r = if zero { m.kmem_cache_zalloc(&sc.cache, g) } else { m.kmem_cache_alloc(&sc.cache, g) };
                let Ok(p) = r else { return Ok(()) };
                let addr = p.as_ptr() as usize;
                ensure!(addr % 8 == 0, "slab object {addr:#x} not word-aligned");
                if has_ctor {
                    // SAFETY: the fresh object is ours.
                    unsafe { stamp::check_fill(addr, size, CTOR_BYTE, "constructed")? };
                }
                if zero {
                    // SAFETY: the fresh object is ours.
                    unsafe { stamp::check_fill(addr, size, 0, "kmem_cache_zalloc")? };
                }
                let tag = self.tag();
                self.insert(Block { kind: Kind::Slab(slot), addr, len: size, span: size, tag })
            }
            Op::CacheShrink { slot } => {
                let slot = slot as usize % SLOTS;
                let Some(sc) = &self.caches[slot] else { return Ok(()) };
                let left = m.kmem_cache_shrink(&sc.cache);
                let mine = self.live.iter().filter(|b| matches!(b.kind, Kind::Slab(s) if s == slot)).count();
                // A constructor's cache is never merged: empty means no slab left.
                ensure!(!(sc.ctor && mine == 0) || left == 0, "shrink of an empty cache left slabs");
                ensure!(mine == 0 || left == 1, "shrink of a cache with {mine} live objects says it has no slab");
                Ok(())
            }
            Op::CacheDestroy { slot } => self.destroy_slot(slot as usize % SLOTS),
            Op::Kmalloc { size, gfp, irq } => {
                let g = if irq { Gfp::ATOMIC | Gfp::NOWARN } else { kmalloc_gfp(gfp) };
                let r = if irq { in_irq(|| m.kmalloc(size, g)) } else { m.kmalloc(size, g) };
                self.kmalloc_result(size, g, r)
            }
            Op::Krealloc { pick, size } => {
                let picks: Vec<usize> =
                    (0..self.live.len()).filter(|&i| matches!(self.live[i].kind, Kind::Kmalloc(_))).collect();
                let g = Gfp::KERNEL | Gfp::NOWARN;
                let Some(&i) = picks.get(pick % picks.len().max(1)) else {
                    // SAFETY: krealloc(NULL) allocates.
                    let r = unsafe { m.krealloc(std::ptr::null_mut(), size, g) };
                    return self.kmalloc_result(size, g, r);
                };
                let old = self.live[i];
                let Kind::Kmalloc(ty) = old.kind else { unreachable!() };
                // The block keeps its kmalloc type, whether it stays or moves.
                let g = g | [Gfp::empty(), Gfp::RECLAIMABLE, Gfp::DMA][ty as usize];
                // SAFETY: a live kmalloc block of ours; on success only the result is used.
                match unsafe { m.krealloc(old.addr as *mut u8, size, g) } {
                    Ok(n) => {
                        let n = n.as_ptr() as usize;
                        // SAFETY: the result holds min(old, new) bytes of the old contents.
                        unsafe { stamp::check(n, old.len, old.tag, size) }
                            .map_err(|e| format!("krealloc lost data: {e}"))?;
                        self.live.swap_remove(i);
                        for (s, _) in self.spans(&old) {
                            self.ranges.remove(&s);
                        }
                        self.kmalloc_block(n, size, g, n == old.addr)
                    }
                    Err(e) => {
                        ensure!(
                            size > KMALLOC_MAX_SIZE
                                || matches!(e.kind, KmallocErrorKind::Slab(_) | KmallocErrorKind::Pages(_)),
                            "krealloc({size}) failed: {e}"
                        );
                        self.check_block(&old, usize::MAX)
                            .map_err(|e| format!("failed krealloc touched the block: {e}"))
                    }
                }
            }
            Op::Vmalloc { size, zero } => {
                // The entry points that warn only with memory to spare (a failure is fine, its
                // report is not).
                let free: usize = m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
                let r = if free * PAGE_SIZE > 2 * size + (8 << 20) {
                    if zero {
                        m.vzalloc(size)
                    } else {
                        m.vmalloc(size)
                    }
                } else {
                    m.__vmalloc(size, Gfp::KERNEL | Gfp::NOWARN | if zero { Gfp::ZERO } else { Gfp::empty() })
                };
                let Ok(p) = r else { return Ok(()) };
                let addr = p.as_ptr() as usize;
                if zero {
                    // SAFETY: the fresh area is ours.
                    unsafe { stamp::check_fill(addr, size, 0, "vzalloc")? };
                }
                self.vmalloc_block(addr, size)
            }
            Op::Vrealloc { pick, size } => {
                let picks: Vec<usize> =
                    (0..self.live.len()).filter(|&i| matches!(self.live[i].kind, Kind::Vmalloc)).collect();
                let g = Gfp::KERNEL | Gfp::NOWARN;
                let Some(&i) = picks.get(pick % picks.len().max(1)) else {
                    // SAFETY: vrealloc(NULL) allocates.
                    return match unsafe { m.vrealloc(std::ptr::null_mut(), size, g) } {
                        Ok(Some(p)) => self.vmalloc_block(p.as_ptr() as usize, size),
                        Ok(None) => Err(format!("vrealloc(NULL, {size}) returned NULL")),
                        Err(_) => Ok(()),
                    };
                };
                let old = self.live[i];
                // SAFETY: a live vmalloc block of ours; on success only the result is used.
                match unsafe { m.vrealloc(old.addr as *mut u8, size, g) } {
                    Ok(r) => {
                        self.live.swap_remove(i);
                        for (s, _) in self.spans(&old) {
                            self.ranges.remove(&s);
                        }
                        match r {
                            None => {
                                ensure!(size == 0, "vrealloc to {size} bytes returned NULL");
                                Ok(())
                            }
                            Some(n) => {
                                let n = n.as_ptr() as usize;
                                // SAFETY: the result holds min(old, new) bytes of the old contents.
                                unsafe { stamp::check(n, old.len, old.tag, size) }
                                    .map_err(|e| format!("vrealloc lost data: {e}"))?;
                                self.vmalloc_block(n, size)
                            }
                        }
                    }
                    Err(_) => self
                        .check_block(&old, usize::MAX)
                        .map_err(|e| format!("failed vrealloc touched the block: {e}")),
                }
            }
            Op::Percpu { size, align } => {
                let (size, align) = (
                    PERCPU_SIZES[size as usize % PERCPU_SIZES.len()],
                    PERCPU_ALIGNS[align as usize % PERCPU_ALIGNS.len()],
                );
                let p = match m.__alloc_percpu_gfp(size, align, Gfp::KERNEL | Gfp::NOWARN) {
                    Ok(p) => p,
                    Err(e) if matches!(e.kind, kmem::percpu::PercpuErrorKind::NewChunk(_)) => return Ok(()),
                    Err(e) => return Err(format!("__alloc_percpu({size}, {align}): {e:?}")),
                };
                for cpu in 0..m.nr_cpus() {
                    // SAFETY: `p` is live.
                    let a = unsafe { m.per_cpu_ptr(p, cpu) } as usize;
                    ensure!(a % align == 0, "per-CPU block {a:#x} of CPU {cpu} not aligned to {align}");
                    // SAFETY: CPU `cpu`'s copy, `size` bytes, ours.
                    unsafe { stamp::check_fill(a, size, 0, "__alloc_percpu")? };
                }
                let tag = self.tag();
                self.insert(Block { kind: Kind::Percpu(p), addr: 0, len: size, span: size, tag })
            }
            Op::Free { pick, irq } => {
                if self.live.is_empty() {
                    return Ok(());
                }
                let b = self.take(pick % self.live.len())?;
                let irq = irq && !matches!(b.kind, Kind::Percpu(_));
                if irq {
                    in_irq(|| self.free_block(&b));
                } else {
                    self.free_block(&b);
                }
                Ok(())
            }
        }
    }

    fn kmalloc_result(
        &mut self,
        size: usize,
        g: Gfp,
        r: Result<std::ptr::NonNull<u8>, kmem::KmallocError>,
    ) -> Result<(), String> {
        match r {
            Ok(p) => {
                ensure!(size <= KMALLOC_MAX_SIZE, "kmalloc({size}) above KMALLOC_MAX_SIZE succeeded");
                let addr = p.as_ptr() as usize;
                if size == 0 {
                    ensure!(addr == ZERO_SIZE_PTR, "kmalloc(0) returned {addr:#x}");
                } else if g.contains(Gfp::ZERO) {
                    // SAFETY: the fresh block is ours.
                    unsafe { stamp::check_fill(addr, size, 0, "kzalloc")? };
                }
                self.kmalloc_block(addr, size, g, false)
            }
            Err(e) if size > KMALLOC_MAX_SIZE => {
                ensure!(e.kind == KmallocErrorKind::TooLarge, "kmalloc({size}): {e}");
                Ok(())
            }
            Err(e) => {
                ensure!(
                    matches!(e.kind, KmallocErrorKind::Slab(_) | KmallocErrorKind::Pages(_)),
                    "kmalloc({size}): {e}"
                );
                Ok(())
            }
        }
    }

    /// Checks and records a kmalloc block of `size` bytes (the request) at `addr`
    /// (`in_place`: a krealloc that kept the block, whose bucket may be larger).
    fn kmalloc_block(&mut self, addr: usize, size: usize, g: Gfp, in_place: bool) -> Result<(), String> {
        let m = self.m;
        let ty = KmallocType::of(g);
        if size == 0 {
            let tag = self.tag();
            return self.insert(Block { kind: Kind::Kmalloc(ty), addr, len: 0, span: 0, tag });
        }
        // SAFETY: a live kmalloc block of ours.
        let ks = unsafe { m.ksize(addr as *const u8) };
        ensure!(ks >= size, "ksize {ks} below the request {size}");
        ensure!(addr % 8 == 0, "kmalloc({size}) = {addr:#x} is not 8-aligned");
        if !in_place {
            // A krealloc that keeps its block keeps its address too, as Linux's
            // `__do_krealloc` does: shrinking a 192-byte bucket's object to 128 bytes leaves it
            // where it is, not 128-aligned. Only a new block has the natural alignment.
            if size.is_power_of_two() {
                ensure!(addr % size.min(PAGE_SIZE) == 0, "kmalloc({size}) = {addr:#x} is not naturally aligned");
            }
            ensure!(ks == kmalloc_size_roundup(size), "kmalloc({size}): ksize {ks}");
        }
        let page = m.virt_to_page(VirtAddr::new(addr)).ok_or("kmalloc block outside the direct map")?;
        if ty == KmallocType::Dma {
            ensure!(m.page_zone(page.page()).zone_type() == ZoneType::Dma, "GFP_DMA kmalloc outside ZONE_DMA");
        }
        let tag = self.tag();
        self.insert(Block { kind: Kind::Kmalloc(ty), addr, len: size, span: ks, tag })
    }

    fn vmalloc_block(&mut self, addr: usize, size: usize) -> Result<(), String> {
        ensure!(addr % PAGE_SIZE == 0 && self.m.is_vmalloc_addr(addr as *const u8), "vmalloc returned {addr:#x}");
        let tag = self.tag();
        self.insert(Block { kind: Kind::Vmalloc, addr, len: size, span: size.next_multiple_of(PAGE_SIZE), tag })
    }

    /// Gives a block (already out of the model) back to the machine.
    fn free_block(&self, b: &Block<'m>) {
        let m = self.m;
        // The block was ours, live, and nothing uses it afterwards.
        match b.kind {
            // SAFETY: see above.
            Kind::Pages(p, order) => unsafe { m.__free_pages(p, kmem::Order::of(order)) },
            Kind::Slab(slot) => {
                let sc = self.caches[slot].as_ref().expect("objects of a live slot's cache");
                if sc.ctor {
                    // Constructed objects go back constructed.
                    // SAFETY: the object's `len` bytes are still ours.
                    unsafe { std::ptr::write_bytes(b.addr as *mut u8, CTOR_BYTE, b.len) };
                }
                let obj = std::ptr::NonNull::new(b.addr as *mut u8).unwrap();
                // SAFETY: see above; an object of this cache.
                unsafe { m.kmem_cache_free(&sc.cache, obj) }
            }
            // SAFETY: see above.
            Kind::Kmalloc(_) => unsafe { m.kfree(b.addr as *const u8) },
            // SAFETY: see above.
            Kind::Vmalloc => unsafe { m.vfree(b.addr as *const u8) },
            // SAFETY: see above.
            Kind::Percpu(p) => unsafe { m.free_percpu(p) },
        }
    }

    /// Frees the live objects of a slot's cache, then destroys it.
    fn destroy_slot(&mut self, slot: usize) -> Result<(), String> {
        if self.caches[slot].is_none() {
            return Ok(());
        }
        while let Some(i) = self.live.iter().position(|b| matches!(b.kind, Kind::Slab(s) if s == slot)) {
            let b = self.take(i)?;
            self.free_block(&b);
        }
        let before = self.m.report_count(kmem::ReportKind::Warning) + self.m.report_count(kmem::ReportKind::SlabBug);
        drop(self.caches[slot].take());
        let after = self.m.report_count(kmem::ReportKind::Warning) + self.m.report_count(kmem::ReportKind::SlabBug);
        ensure!(before == after, "destroying an empty cache reported: {:?}", self.m.reports().last());
        Ok(())
    }

    /// Takes a live block out for another thread to free (`pick` modulo the blocks that can
    /// leave: not objects of this world's own caches).
    pub fn give_away(&mut self, pick: usize) -> Result<Option<Block<'m>>, String> {
        let can: Vec<usize> = (0..self.live.len()).filter(|&i| !matches!(self.live[i].kind, Kind::Slab(_))).collect();
        match can.get(pick % can.len().max(1)) {
            Some(&i) => self.take(i).map(Some),
            None => Ok(None),
        }
    }

    /// Checks and frees a block another world gave away.
    pub fn free_foreign(&self, b: &Block<'m>) -> Result<(), String> {
        self.check_block(b, usize::MAX)?;
        self.free_block(b);
        Ok(())
    }

    /// Frees every block (checking each) and destroys every cache.
    pub fn free_all(&mut self) -> Result<(), String> {
        while !self.live.is_empty() {
            let b = self.take(self.live.len() - 1)?;
            self.free_block(&b);
        }
        (0..SLOTS).try_for_each(|s| self.destroy_slot(s))
    }

    /// The scanner's view of this world.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for b in &self.live {
            for (st, e) in self.spans(b) {
                s.ranges.push((st, e, b.tag));
            }
            match b.kind {
                Kind::Pages(_, order) => s.pages += 1 << order,
                // A large block stays large when krealloc shrinks it in place.
                Kind::Kmalloc(_) if b.span > KMALLOC_MAX_CACHE_SIZE => s.large_kmalloc_pages += b.span / PAGE_SIZE,
                Kind::Kmalloc(ty) if b.len > 0 => {
                    let prefix = ["kmalloc-", "kmalloc-rcl-", "dma-kmalloc-"][ty as usize];
                    let name = format!("{prefix}{}", kmem::kmalloc::kmalloc_name(kmem::kmalloc::kmalloc_index(b.span)));
                    *s.kmalloc_objects.entry(name).or_default() += 1;
                }
                Kind::Kmalloc(_) => {}
                Kind::Vmalloc => {
                    s.vmalloc_areas += 1;
                    s.vmalloc_pages += b.span / PAGE_SIZE;
                }
                Kind::Percpu(_) => s.percpu += 1,
                Kind::Slab(_) => {}
            }
        }
        for (slot, sc) in self.caches.iter().enumerate() {
            if let Some(sc) = sc {
                let n = self.live.iter().filter(|b| matches!(b.kind, Kind::Slab(x) if x == slot)).count();
                let active = kmem::proc::slab_info(self.m, &sc.cache).active_objs;
                s.cache_objects.push((sc.cache.name().to_owned(), active, n));
            }
        }
        s
    }
}
