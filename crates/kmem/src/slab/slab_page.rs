//! Slabs: page blocks owned by a cache (`struct slab` overlaid on the head page), their
//! creation from the page allocator, their lists, and the freeze/unfreeze protocol.
//!
//! A slab's head page carries, besides `PG_slab`:
//! - `private`: the slab page type and the cache id (`slab->slab_cache`);
//! - `data`: the [`SlabWord`] (freelist head offset, inuse, objects), changed under the
//!   node's `list_lock` (`node.rs`);
//! - `lru`: the links of the node list it is on (`partial` iff it has free objects, else
//!   `full`);
//! - flag bits 16..24: its colour, in cache lines.

use super::cache::KmemCache;
use super::layout::{exact_slot, order_objects, CACHE_LINE, MAX_OBJS_PER_PAGE};
use super::object::{read_word, write_word};
use super::word::{freeptr_key, SlabWord, OFF_NONE};
use super::SlabAllocError;
use crate::addr::{Order, Pfn};
use crate::gfp::Gfp;
use crate::machine::{Kmem, MachineState};
use crate::mm::page::Page;
use crate::mm::page_ref::PageRef;
use crate::platform::Platform;
use crate::sync::Ordering;

/// A slab: its head frame and descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slab<'a> {
    pub pfn: Pfn,
    pub page: &'a Page,
}

/// A slab as a free path has it, resolved or not: a free fast path passes what it already
/// has (the head's physical address and descriptor, or an object's frame's) and the slow
/// paths resolve it ([`SlabRef::slab`]). Had the fast path built a [`Slab`], which several
/// slow paths take, the compiler would compute the head's frame number (and, for `kfree`,
/// its descriptor) ahead of the branches, on the fast path too (one instruction a
/// `kmem_cache_free`, six a `kfree`). Each kind is two words, passed in registers.
pub(crate) trait SlabRef<'a>: Copy {
    /// The slab, for an object `off` bytes from the slab's object 0 (what places a frame in
    /// its slab: [`SlabPa`]s are of plain slabs, whose object 0 is at the head).
    fn slab(self, memmap: &crate::mm::memmap::Memmap, off: usize) -> Slab<'a>;
}

impl<'a> SlabRef<'a> for Slab<'a> {
    #[inline(always)]
    fn slab(self, _: &crate::mm::memmap::Memmap, _: usize) -> Slab<'a> {
        self
    }
}

/// A slab by its head frame: the frame's physical address and descriptor (what a free by
/// cache finds).
#[derive(Clone, Copy)]
pub(crate) struct SlabHead<'a> {
    pub pa: usize,
    pub page: &'a Page,
}

impl<'a> SlabRef<'a> for SlabHead<'a> {
    #[inline(always)]
    fn slab(self, _: &crate::mm::memmap::Memmap, _: usize) -> Slab<'a> {
        Slab { pfn: Pfn::new(self.pa >> crate::PAGE_SHIFT), page: self.page }
    }
}

/// What [`Kmem::plain_slab_of`] finds of an address in a plain slab of a fast id: the slab
/// (by the address), the id's [`FastCheck`](super::fast_check::FastCheck) record, the id,
/// the address's offset in the slab (not tested yet: the record's object test does that) and
/// the id's entry in the CPUs' fast tables.
pub(crate) struct PlainObject<'a> {
    pub slab: SlabPa<'a>,
    pub chk: super::fast_check::FastCheck<'a>,
    pub id: usize,
    pub off: usize,
    pub word: usize,
}

/// A plain slab by the physical address of one of its objects alone (what `kfree` finds):
/// the slow paths that need the head's descriptor look it up (`off` bytes before the
/// object), so the fast free keeps one register fewer live than with the object's frame's
/// descriptor at hand (it had to save one more callee-saved register).
#[derive(Clone, Copy)]
pub(crate) struct SlabPa<'a> {
    pub pa: usize,
    pub _memmap: core::marker::PhantomData<&'a Page>,
}

impl<'a> SlabRef<'a> for SlabPa<'a> {
    #[inline(always)]
    fn slab(self, memmap: &crate::mm::memmap::Memmap, off: usize) -> Slab<'a> {
        let pfn = Pfn::new((self.pa - off) >> crate::PAGE_SHIFT);
        let page = memmap.page(pfn).expect("a plain slab's head has a descriptor");
        // SAFETY: the memmap lives as long as the machine, which outlives `'a` (the caller
        // found the slab through it).
        Slab { pfn, page: unsafe { &*(page as *const Page) } }
    }
}

impl<'a> Slab<'a> {
    /// The freelist and counters.
    #[inline]
    pub(crate) fn word(&self) -> SlabWord {
        SlabWord::unpack(self.page.data_acquire())
    }
    /// Sets the word (node's list lock held, or a slab nobody else can reach).
    pub(crate) fn set_word(&self, w: SlabWord) {
        self.page.set_data(w.pack());
    }
    /// The slab's order (recorded by the page allocator).
    pub(crate) fn order(&self) -> u32 {
        self.page.alloc_order().unwrap_or(0) as u32
    }
    /// The node of the slab's pages.
    pub(crate) fn nid(&self) -> usize {
        self.page.node()
    }
}

impl KmemCache {
    /// Address of `obj`'s free pointer.
    #[inline]
    pub(crate) fn fp_addr(&self, obj: usize) -> usize {
        obj + self.layout.offset as usize
    }
    /// `get_freepointer`: the decoded next offset stored in free object `obj` (garbage if the
    /// object is not free; callers validate or discard it).
    ///
    /// # Safety
    ///
    /// `obj` must be an object address of a slab of this cache that is still a slab page of
    /// the machine (its memory mapped), or was one (the direct map stays mapped).
    #[inline]
    pub(crate) unsafe fn get_fp(&self, obj: usize) -> u64 {
        let a = self.fp_addr(obj);
        // SAFETY: caller's contract; `offset` is word-aligned inside the slot.
        (unsafe { read_word(a) }) ^ freeptr_key(self.marker, self.key_lo, a)
    }
    /// `set_freepointer`: stores `next` (an offset or [`OFF_NONE`]) in `obj`.
    ///
    /// # Safety
    ///
    /// As [`KmemCache::get_fp`], and the caller owns `obj` (it is being freed or is free on a
    /// list the caller may edit).
    #[inline]
    pub(crate) unsafe fn set_fp(&self, obj: usize, next: u32) {
        // SAFETY: caller's contract.
        unsafe { self.fp_writer().set(obj, next) }
    }
    /// The cache's free-pointer encoding, copied out for loops that write many objects' free
    /// pointers: the compiler cannot keep the cache's fields in registers across stores to
    /// objects (they might alias the cache), and reloaded them for every object.
    #[inline(always)]
    pub(crate) fn fp_writer(&self) -> FpWriter {
        let key = (self.marker & super::word::TAG_MASK) | self.key_lo as u64;
        FpWriter { offset: self.layout.offset as usize, marker: self.marker, key }
    }
    /// The free-pointer word of an object in a sheaf ([`sheaf_marker`]).
    #[inline(always)]
    pub(crate) fn sheaf_marker(&self) -> u64 {
        self.marker
    }
    /// Chains objects `from..to` of a slab of `objects` objects whose object 0 is at `base`,
    /// in address order: each one's free pointer names the next, and the last names object
    /// `to` (which the caller has chained already), or nothing past the slab's end. How a new
    /// slab's freelist is built (`init_slab`, `add_new_slab`).
    ///
    /// # Safety
    ///
    /// The objects are free objects of such a slab of this cache that only the caller reaches
    /// (a new slab not yet listed, or listed with its node's list lock held and not taken
    /// from since).
    pub(crate) unsafe fn chain_in_order(&self, base: usize, from: u32, to: u32, objects: u32) {
        let (size, fp) = (self.layout.size, self.fp_writer());
        for i in from..to.min(objects) {
            let next = if i + 1 < objects { (i + 1) * size } else { OFF_NONE };
            // SAFETY: caller's contract: object `i` is a free object only the caller reaches.
            unsafe { fp.set(base + (i * size) as usize, next) };
        }
    }
    /// Marks free object `obj`, taken off its slab's freelist (list lock held), as held in a
    /// sheaf (its free pointer becomes the cache's sheaf marker). A free of an allocated
    /// object claims its word instead (`object::claim_word`), which a racing free cannot
    /// also do.
    ///
    /// # Safety
    ///
    /// As [`KmemCache::set_fp`].
    #[inline(always)]
    pub(crate) unsafe fn set_sheaf_marker(&self, obj: usize) {
        // SAFETY: caller's contract.
        unsafe { write_word(self.fp_addr(obj), self.sheaf_marker()) }
    }
    /// Whether `off` (a decoded free pointer) names an object of a slab with `objects`
    /// objects, or the end of the list (`check_valid_pointer`).
    #[inline]
    pub(crate) fn valid_next(&self, off: u64, objects: u32) -> bool {
        if off == OFF_NONE as u64 {
            return true;
        }
        self.slot_index(off) < objects as u64
    }
    /// The objects a slab of `slab`'s order holds: the bound on every offset kmem follows in
    /// it, whatever its word says (`check_slab`'s `max`).
    #[inline]
    pub(crate) fn max_objects(&self, slab: Slab<'_>) -> u32 {
        self.objects_for(slab.order())
    }
    /// Whether `w`, read from `slab`'s head page, may be followed (`check_slab` and
    /// `check_valid_pointer` of the freelist head): the object count of a slab of its order,
    /// `inuse` within it, and a head that names an object or ends the list. A descriptor
    /// written by someone else (`PageRef::set_private` on a slab page, a stray write) fails
    /// this, and kmem then never dereferences what it says.
    #[inline]
    pub(crate) fn word_ok(&self, slab: Slab<'_>, w: SlabWord) -> bool {
        w.objects == self.max_objects(slab) && w.inuse <= w.objects && self.valid_next(w.freelist as u64, w.objects)
    }
    /// Whether `off`, an offset from the start of a plain slab of this cache, starts one of
    /// its objects.
    #[inline(always)]
    pub(crate) fn is_plain_object(&self, off: usize) -> bool {
        self.slot_index(off as u64) < self.plain_objects as u64
    }
    /// `off / size` if `off` is a multiple of the slot size, else at least 2^32 (more than
    /// any slab's objects): `slot_index(off) < n` is "`off` starts one of the first `n`
    /// objects" ([`exact_slot`]).
    #[inline(always)]
    pub(crate) fn slot_index(&self, off: u64) -> u64 {
        exact_slot(off, self.div_inv, self.div_shift)
    }
    /// Object 0 of a slab: its address, plus its colour and the left red zone.
    #[inline]
    pub(crate) fn obj_base<P: Platform>(&self, k: &Kmem<P>, slab: Slab<'_>) -> usize {
        slab_addr(k, slab) + (slab.page.slab_colour() * CACHE_LINE + self.layout.red_left_pad) as usize
    }
    /// Objects of a slab of `order`.
    pub(crate) fn objects_for(&self, order: u32) -> u32 {
        order_objects(order, self.layout.size).min(MAX_OBJS_PER_PAGE)
    }
}

/// A cache's free-pointer encoding ([`KmemCache::fp_writer`]).
#[derive(Clone, Copy)]
pub(crate) struct FpWriter {
    offset: usize,
    marker: u64,
    /// [`freeptr_key`] less its slot part: the tag (high half) and `key_lo` (low half), so
    /// that a word costs one XOR with it and one with the folded slot.
    key: u64,
}

impl FpWriter {
    /// [`KmemCache::set_fp`].
    ///
    /// # Safety
    ///
    /// As [`KmemCache::set_fp`], for an object of the cache this came from.
    #[inline(always)]
    pub(crate) unsafe fn set(self, obj: usize, next: u32) {
        let a = obj + self.offset;
        let swab = (a as u64).swap_bytes();
        let key = self.key ^ (swab as u32 ^ (swab >> 32) as u32) as u64;
        debug_assert_eq!(key, freeptr_key(self.marker, self.key as u32, a));
        // SAFETY: caller's contract; `offset` is word-aligned inside the slot.
        unsafe { write_word(a, next as u64 ^ key) }
    }
    /// [`KmemCache::set_sheaf_marker`].
    ///
    /// # Safety
    ///
    /// As [`KmemCache::set_fp`], for an object of the cache this came from.
    #[inline(always)]
    pub(crate) unsafe fn mark_in_sheaf(self, obj: usize) {
        // SAFETY: caller's contract.
        unsafe { write_word(obj + self.offset, self.marker) }
    }
}

/// The direct-map address of a slab (slab pages are never HighMem).
#[inline]
pub(crate) fn slab_addr<P: Platform>(k: &Kmem<P>, slab: Slab<'_>) -> usize {
    k.phys_to_virt(slab.pfn.phys()).expect("slab pages are direct-mapped").as_usize()
}

impl<P: Platform> Kmem<P> {
    /// The compound block holding direct-map address `addr` (its head frame and descriptor:
    /// a slab if the head's word says so), the head's `private` word, and `addr`'s byte
    /// offset from the block's first page (`virt_to_slab` without the type check: the free
    /// fast paths compare the word with the one their cache's plain slabs carry).
    #[inline(always)]
    pub(crate) fn slab_head_off(&self, addr: usize) -> Option<(Slab<'_>, u32, usize)> {
        let st = self.state();
        let pa = st.direct_map.virt_to_phys(crate::addr::VirtAddr::new(addr))?.as_u64() as usize;
        let pfn = Pfn::new(pa >> crate::PAGE_SHIFT);
        let mm = &st.memmap;
        let page = mm.page_below_limit(pfn)?;
        // Branch-free: a tail's `next` link is its distance from the head, a head is 0 away. A
        // test of the tail bit would follow the data: objects of slabs of several pages lie
        // in tail pages or the head at random, and a random-order churn of 8-1000 B blocks
        // mispredicted it on about 0.4 of its frees (cachegrind's branch simulation); 16
        // CPUs of real time: -11% on that churn, for about 10 more instructions a free.
        let tail = page.test(crate::mm::page::pg::TAIL) as usize;
        let back = (page.tail_back() as usize) & tail.wrapping_neg();
        let (hpfn, head) = mm.head_in_section(pfn, page, back)?;
        Some((Slab { pfn: hpfn, page: head }, head.private(), pa - (hpfn.as_usize() << crate::PAGE_SHIFT)))
    }

    /// The plain slab holding direct-map address `addr`, its cache, and `addr`'s byte offset
    /// in it, if there is one: the fast path of a free that does not name the cache
    /// (`kfree`, C's `free`). The object's own descriptor has the slab's word (a tail
    /// carries its head's: [`Page::slab_word_any`]), which names the cache; plain slabs have
    /// their cache's order and are aligned to their size, so the head is `addr`'s physical
    /// address rounded down to the slab size. No load waits for the head's descriptor.
    ///
    /// On a memmap boot marked dense the direct-map offset's one compare with the dense
    /// limit is both the range test and the descriptor lookup's (`Memmap::dense_page`);
    /// anything else takes the checked way, `frame_below_limit`.
    #[inline(always)]
    pub(crate) fn plain_slab_of(&self, addr: usize) -> Option<PlainObject<'_>> {
        let st = self.state();
        let pa = addr.wrapping_sub(st.direct_map.base.as_usize());
        let page = match st.memmap.dense_page(pa) {
            Some(page) => page,
            None => self.frame_below_limit(st, pa, pa)?,
        };
        let (chk, id) = st.slab.check_of_plain_word(page.slab_word_any())?;
        let off = chk.slab_off(pa);
        // The head, for the slow paths, is `off` bytes before: resolved by them.
        let slab = SlabPa { pa, _memmap: core::marker::PhantomData };
        Some(PlainObject { slab, chk, id, off, word: super::fast_table::FastTable::id_word(id) })
    }

    /// The descriptor of the frame at physical address `pa` by the checked way, if `tested`
    /// (an offset from the direct map's base: `pa` itself, or the object's address when `pa`
    /// is its slab's head) lies in the direct map: the memmap in whatever mode it is. The
    /// free fast paths' lookup above the dense limit, or on a memmap that is not dense.
    /// Inline, not a call: a call on the cold side would make the hot side keep its live
    /// values in callee-saved registers.
    #[inline(always)]
    fn frame_below_limit<'a>(
        &'a self,
        st: &'a MachineState,
        tested: usize,
        pa: usize,
    ) -> Option<&'a crate::mm::page::Page> {
        if tested as u64 >= st.direct_map.limit.as_u64() {
            return None;
        }
        st.memmap.page_below_limit(Pfn::new(pa >> crate::PAGE_SHIFT))
    }

    /// The plain slab of `s` that would hold direct-map address `addr`, and `addr`'s byte
    /// offset in it, if there is one: the free fast paths of a named cache (`kmem_cache_free`,
    /// a free by size). Plain slabs have the cache's order and are aligned to their size, so
    /// the head is the frame of `addr`'s physical address rounded down to the slab size, one
    /// descriptor read without following a tail page to its head; it is `s`'s plain slab if
    /// its word is `s`'s `plain_word` (any other page's, another cache's, a slab of a
    /// fallback order, is not: the caller's careful path then classifies `addr`).
    /// `slab_head_off` costs about a dozen instructions and one dependent load more.
    #[inline(always)]
    /// `st` is the machine's state (`self.state()`), which the callers load once, before
    /// an atomic load (a cache table's slot, a cache's machine word) after which the
    /// compiler would load it again.
    pub(crate) fn plain_slab_off<'a>(
        &'a self,
        st: &'a MachineState,
        s: &KmemCache,
        addr: usize,
    ) -> Option<(SlabHead<'a>, usize)> {
        let pa = addr.wrapping_sub(st.direct_map.base.as_usize());
        let head_pa = pa & s.head_mask as isize as usize;
        // SAFETY: a slab is at least a page, so `head_mask` has the low PAGE_SHIFT bits clear
        // (telling the compiler lets it index the memmap with one shift).
        unsafe { core::hint::assert_unchecked(head_pa & (crate::PAGE_SIZE - 1) == 0) };
        let off = pa - head_pa;
        // `pa` is tested, not the head's address: an `addr` past the direct map must not find
        // a head below its end.
        let head = if pa < st.memmap.dense_limit() {
            // SAFETY: the head's address is at most `pa`, below the dense limit.
            unsafe { st.memmap.dense_slot(head_pa) }
        } else {
            // (Rare: off the straight path, which then needs no jump to the join.)
            crate::sync::cold_path();
            self.frame_below_limit(st, pa, head_pa)?
        };
        (head.private() == s.plain_word).then_some((SlabHead { pa: head_pa, page: head }, off))
    }

    /// The slab holding direct-map address `addr`, the cache it belongs to, and `addr`'s
    /// byte offset from the slab's first page (`virt_to_slab` + `slab->slab_cache`).
    #[inline(always)]
    pub(crate) fn addr_to_slab_off(&self, addr: usize) -> Option<(Slab<'_>, &KmemCache, usize)> {
        let (slab, _, off) = self.slab_head_off(addr)?;
        let cache = self.state().slab.cache(slab.page.slab_cache_id()?)?;
        Some((slab, cache, off))
    }

    /// The slab holding direct-map address `addr` and the cache it belongs to, if any.
    #[inline]
    pub(crate) fn addr_to_slab(&self, addr: usize) -> Option<(Slab<'_>, &KmemCache)> {
        self.addr_to_slab_off(addr).map(|(slab, c, _)| (slab, c))
    }

    /// The slab with head frame `pfn`.
    pub(crate) fn slab_at(&self, pfn: usize) -> Slab<'_> {
        let pfn = Pfn::new(pfn);
        Slab { pfn, page: self.memmap().pfn_to_page(pfn) }
    }

    /// `allocate_slab()`: a new slab from the page allocator, objects initialised and
    /// constructed, every object from the `unlinked`-th on on the slab's freelist (those
    /// before it are for a sheaf: [`Kmem::add_new_slab`]); not on any list yet.
    pub(crate) fn new_slab(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        unlinked: u32,
    ) -> Result<Slab<'_>, SlabAllocError> {
        let flags =
            Gfp::from_bits(gfp.bits() & (Gfp::RECLAIM_MASK.bits() | Gfp::HARDWALL.bits() | Gfp::THISNODE.bits()))
                .union(s.allocflags);
        let l = s.layout;
        let alloc = |order: u32, g: Gfp| match node {
            // slab_pre_alloc_hook has made the might_sleep check for this allocation.
            Some(nid) => self.alloc_pages_fast_checked(g, order, nid, false),
            None => self.alloc_pages_fast_checked(g, order, self.numa_node_id(), false),
        };
        let mut try_gfp = flags.union(Gfp::NOWARN).union(Gfp::NORETRY).without(Gfp::NOFAIL);
        if try_gfp.contains(Gfp::DIRECT_RECLAIM) && l.order > l.min_order {
            try_gfp = try_gfp.union(Gfp::NOMEMALLOC).without(Gfp::RECLAIM);
        }
        let (page, order): (PageRef<'_>, u32) = match alloc(l.order, try_gfp) {
            Ok(p) => (p, l.order),
            // Linux retries at the minimum order with the caller's flags even when that is the
            // same order: the first try dropped __GFP_NOFAIL (and added __GFP_NORETRY), so
            // without the retry a NOFAIL slab allocation could fail.
            Err(_) => match alloc(l.min_order, flags) {
                Ok(p) => {
                    let pin = self.platform().pin_cpu();
                    s.pcs(self, pin.cpu.index()).stat(super::sheaf::SlubStat::OrderFallback);
                    self.platform().unpin_cpu(pin);
                    (p, l.min_order)
                }
                Err(e) => return Err(SlabAllocError::NoMemory(e)),
            },
        };
        Ok(self.init_slab(s, page, order, unlinked))
    }

    /// The second half of `allocate_slab()`: makes the fresh block `page` of `order` a slab
    /// of `s`, objects initialised and constructed, on no list yet. Objects from the
    /// `unlinked`-th on are chained on its freelist in address order; those before it are
    /// counted in use, their free pointers unwritten, for the caller to hand to a sheaf or
    /// link ([`Kmem::add_new_slab`]): a new slab that fills a sheaf skips writing a chain
    /// nobody would follow.
    pub(crate) fn init_slab<'a>(&'a self, s: &KmemCache, page: PageRef<'a>, order: u32, unlinked: u32) -> Slab<'a> {
        let l = s.layout;
        let objects = s.objects_for(order);
        let unlinked = unlinked.min(objects);
        let leftover = ((crate::PAGE_SIZE as u32) << order) - objects * l.size;
        let colour = if s.colours > 1 {
            let c = (s.colour_next.fetch_add(1, Ordering::Relaxed) % s.colours as u32).min(leftover / s.colour_step);
            (c * s.colour_step / CACHE_LINE) as u8
        } else {
            0
        };
        // Plain: object 0 at the slab's start and the cache's object count (free.rs's fast
        // path relies on both).
        let plain = !s.debug
            && s.meminit & crate::mm::meminit::INIT_FREE == 0
            && colour == 0
            && order == l.order
            && l.red_left_pad == 0
            // Aligned to its size, as every buddy block is (`plain_slab_off` relies on it).
            && page.pfn().as_usize() & ((1 << order) - 1) == 0;
        page.page().set_slab(s.id, colour, plain);
        let slab = Slab { pfn: page.pfn(), page: page.page() };
        self.for_each_slab_tail(slab, order, |t| t.set_slab_tail(slab.page.private()));
        let base = s.obj_base(self, slab);
        if s.debug {
            self.setup_slab_debug(s, slab, order);
        }
        if s.debug || s.ctor.is_some() {
            for i in 0..objects {
                let obj = base + (i * l.size) as usize;
                if s.debug {
                    self.setup_object_debug(s, obj);
                }
                if let Some(ctor) = s.ctor {
                    // SAFETY: the object lies in the new slab, which only this thread can reach.
                    ctor(unsafe { super::object::bytes_mut(obj, l.object_size as usize) });
                }
            }
        }
        // SAFETY: a fresh slab of this cache, exclusively ours.
        unsafe { s.chain_in_order(base, unlinked, objects, objects) };
        let freelist = if unlinked < objects { unlinked * l.size } else { OFF_NONE };
        slab.set_word(SlabWord { freelist, inuse: unlinked, objects });
        let n = s.node(slab.nid());
        n.nr_slabs.fetch_add(1, Ordering::Relaxed);
        n.total_objects.fetch_add(objects as usize, Ordering::Relaxed);
        self.mod_slab_pages(s, slab, 1);
        slab
    }

    /// Calls `f` on every tail page of `slab` (of `order`).
    fn for_each_slab_tail(&self, slab: Slab<'_>, order: u32, f: impl Fn(&Page)) {
        let mm = self.memmap();
        for i in 1..1usize << order {
            f(mm.pfn_to_page(slab.pfn.add(i)));
        }
    }

    /// [`Kmem::new_slab`] for an allocation's slow path: a failure is reported as Linux's
    /// `slab_out_of_memory` does, unless `__GFP_NOWARN`.
    pub(crate) fn new_slab_or_report(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        node: Option<usize>,
        unlinked: u32,
    ) -> Result<Slab<'_>, SlabAllocError> {
        self.new_slab(s, gfp, node, unlinked).inspect_err(|_| {
            if !gfp.contains(Gfp::NOWARN) {
                self.report_slab_oom(s, gfp, node);
            }
        })
    }

    /// `discard_slab()`: gives an empty slab, on no list, back to the page allocator.
    pub(crate) fn discard_slab(&self, s: &KmemCache, slab: Slab<'_>) {
        let objects = slab.word().objects;
        let n = s.node(slab.nid());
        n.nr_slabs.fetch_sub(1, Ordering::Relaxed);
        n.total_objects.fetch_sub(objects as usize, Ordering::Relaxed);
        self.mod_slab_pages(s, slab, -1);
        let order = slab.order();
        self.for_each_slab_tail(slab, order, Page::clear_slab_tail);
        slab.page.clear_slab();
        if s.layout.flags.contains(super::SlabFlags::TYPESAFE_BY_RCU) {
            // `rcu_free_slab`: readers may still hold objects of it.
            self.rcu_defer_slab(slab.pfn);
            return;
        }
        // SAFETY: the slab's pages are this cache's, allocated with `order`; nothing refers to
        // the slab any more (it is on no list and no CPU's, and has no live objects).
        unsafe { self.__free_pages(PageRef::new(slab.pfn, slab.page), Order::of(order)) };
    }

    fn mod_slab_pages(&self, s: &KmemCache, slab: Slab<'_>, sign: isize) {
        let pages = Order::new(slab.order()).map_or(1, |o| o.nr_pages()) as isize;
        if let Some(node) = self.node(slab.nid()) {
            node.mod_slab_pages(s.allocflags.contains(Gfp::RECLAIMABLE), sign * pages);
        }
    }
}
