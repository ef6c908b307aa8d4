//! Freeing: `kmem_cache_free`, the sheaf fast path and its slow path, and the checks that
//! turn a bad pointer into a report instead of a corrupt cache.
//!
//! Before an object reaches a sheaf, three checks that keep memory from being handed out
//! twice run on every free (they are on in every configuration, measured in the README):
//! - the pointer must start an object of a slab (`virt_to_slab` + the slot boundary);
//! - the slab's cache must be the one named (else `Wrong slab cache`, and the object goes
//!   to its own cache);
//! - the object must not be free already. A free object's free-pointer word always carries
//!   the cache's tag in its high half (`word.rs`): the sheaf marker in a sheaf, the encoded
//!   next offset on a slab freelist. An allocated object's word was cleared when it was
//!   handed out, and its user's data carries the tag once in 2^32 (never zeros: the tag is
//!   never zero). The sheaf marker is a double free; any other tagged word is confirmed by
//!   walking the slab's freelist, so a coincidence costs a lock and a walk, never a lost
//!   object. This catches double frees that are not back to back, which glibc's tcache
//!   catches with its key. The test and the claim that follows it are `free_tag.rs`'s.
//!
//! The fast path does the first two checks with one compare: the head page of a *plain*
//! slab (object 0 at its start, its cache's order and object count, aligned to its size:
//! every slab of a non-debug cache without colour that is not an order fallback) carries its
//! cache's id and a plain bit in one word, which equals the cache's `plain_word`. The head
//! is the frame of the object's physical address rounded down to the named cache's slab
//! size (`plain_slab_off`: one descriptor read; `kfree`, which has no cache, reads the word
//! from the object's own page, a tail carrying its head's, and then rounds down by the
//! record its cache id has beside the id table: `plain_slab_of`, `fast_check.rs`); then the
//! offset must start one of the slab's objects (one multiply, a rotate and a compare:
//! `KmemCache::slot_index`, or the record's). Everything else (another cache's object, a
//! debug cache, a coloured or fallback slab, a bad pointer) takes the careful path, which
//! classifies the pointer fully and reports.

use core::ptr::NonNull;

use super::cache::KmemCache;
use super::fast_check::FastCheck;
use super::free_tag::mark_sheaf_object;
use super::object::{claim_word, read_word};
use super::sheaf::SlubStat;
use super::slab_page::{Slab, SlabRef};
use super::word::tagged;
use crate::machine::Kmem;
use crate::platform::{Pinned, Platform};

/// What the slow path found out about a pointer given to `kmem_cache_free`.
pub(crate) enum Lookup<'a> {
    /// An object of a slab: the slab, its cache, the object's offset from object 0 and
    /// object 0's address.
    Object(Slab<'a>, &'a KmemCache, u32, usize),
    /// Not an object start (`Invalid object pointer`), in a slab of the given cache.
    Invalid(Slab<'a>, &'a KmemCache),
    /// Not in any slab.
    NotSlab,
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_free(s, obj)`: gives an object back to its cache.
    ///
    /// Detected and reported (counted as [`ReportKind::SlabBug`](crate::ReportKind::SlabBug),
    /// nothing corrupted): a pointer into no slab or not at an object start (not freed), an
    /// object of another cache (freed to its own cache), and an object that is already free
    /// (not freed again), whether freed just before or long ago.
    ///
    /// # Safety
    ///
    /// `obj` must be an object allocated from `s` (or an alias of it) that the caller owns and
    /// no longer uses. The checks above catch many mistakes, but an object freed twice while
    /// someone else has reallocated it cannot be told from a legitimate free.
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kmem_cache_free(&self, s: &KmemCache, obj: NonNull<u8>) {
        // SAFETY: forwarded caller contract.
        unsafe { self.kmem_cache_free_at(s, obj, core::panic::Location::caller()) }
    }

    /// `kmem_cache_free` with an explicit call site.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`].
    #[inline(always)]
    pub(crate) unsafe fn kmem_cache_free_at(
        &self,
        s: &KmemCache,
        obj: NonNull<u8>,
        caller: &'static core::panic::Location<'static>,
    ) {
        let id = self.machine_id();
        // SAFETY: forwarded caller contract; `s` must be this machine's (another machine's
        // cache may carry the same id): tested.
        unsafe { self.kmem_cache_free_if(s, obj, caller, || s.fast_is_of_id(id)) }
    }

    /// [`Kmem::kmem_cache_free`] of a cache known to be this machine's (its owning handle's
    /// [`Cache::free`](super::Cache::free), a typed cache's box).
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`], and `s` is this machine's.
    #[inline(always)]
    pub(crate) unsafe fn kmem_cache_free_own(
        &self,
        s: &KmemCache,
        obj: NonNull<u8>,
        caller: &'static core::panic::Location<'static>,
    ) {
        debug_assert!(s.is_of(self), "a handle's cache is its machine's");
        // SAFETY: forwarded caller contract, with `s` this machine's.
        unsafe { self.kmem_cache_free_if(s, obj, caller, || true) }
    }

    /// [`Kmem::kmem_cache_free_at`] with the test that `s` is this machine's given by the
    /// caller (`ours`).
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`]; `ours` is true only for this machine's caches.
    #[inline(always)]
    unsafe fn kmem_cache_free_if(
        &self,
        s: &KmemCache,
        obj: NonNull<u8>,
        caller: &'static core::panic::Location<'static>,
        ours: impl FnOnce() -> bool,
    ) {
        let addr = obj.as_ptr() as usize;
        let st = self.state();
        if let Some((slab, off)) = self.plain_slab_off(st, s, addr) {
            // A plain slab of `s`, and an object start in it, of this machine's cache.
            if s.is_plain_object(off) && ours() {
                let pin = || self.try_pin_fast_table();
                // SAFETY: the cache's `fast_word` is an entry's (`FastTable::named_word`).
                return unsafe { self.free_checked_fast_then(s, slab, addr, off, s.fast_word as usize, pin, || {}) };
            }
        }
        self.kmem_cache_free_careful(s, addr, caller);
    }

    /// [`Kmem::kmem_cache_free`] of anything but an object of a plain slab of the cache
    /// named: classifies the pointer fully and reports what is wrong with it.
    #[cold]
    #[inline(never)]
    fn kmem_cache_free_careful(&self, s: &KmemCache, addr: usize, caller: &'static core::panic::Location<'static>) {
        if self.is_kfence_address(addr as *const u8) {
            // `kfence_free()`: KFENCE checks the pointer and the object's canary itself.
            if let Some(real) = self.kfence_object_cache(addr).filter(|c| !core::ptr::eq(*c, s)) {
                self.wrong_cache(s, real, caller);
            }
            return self.kfence_free(addr, caller);
        }
        // An object's own cache is this machine's: the machine check costs nothing when it is
        // the cache named.
        match self.lookup_object(addr) {
            Lookup::Object(slab, cache, off, base) => {
                if !core::ptr::eq(cache, s) {
                    if !s.is_of(self) {
                        self.cache_of_other_machine("kmem_cache_free", s);
                        return;
                    }
                    self.wrong_cache(s, cache, caller);
                }
                self.free_object(cache, slab, off, base, caller);
            }
            _ if !s.is_of(self) => {
                self.cache_of_other_machine("kmem_cache_free", s);
            }
            Lookup::Invalid(slab, cache) => self.invalid_object_pointer(cache, Some(slab), addr),
            Lookup::NotSlab => self.invalid_object_pointer(s, None, addr),
        }
    }

    /// Classifies a pointer (`virt_to_slab`, `check_valid_pointer`).
    #[inline(always)]
    pub(crate) fn lookup_object(&self, addr: usize) -> Lookup<'_> {
        let Some((slab, cache, in_slab)) = self.addr_to_slab_off(addr) else { return Lookup::NotSlab };
        // Object 0 sits after the slab's colour and the left red zone.
        let first = (slab.page.slab_colour() * super::layout::CACHE_LINE + cache.layout.red_left_pad) as usize;
        let off = in_slab.wrapping_sub(first);
        // The word's count, bounded by what a slab of the cache's order holds, so that a
        // corrupt word cannot stretch a slab (3 instructions; exact for slabs of the cache's
        // order, the usual case; checking against each slab's own order cost 11).
        let objects = slab.word().objects.min(cache.layout.objects);
        if cache.slot_index(off as u64) >= objects as u64 {
            return Lookup::Invalid(slab, cache);
        }
        Lookup::Object(slab, cache, off as u32, addr - off)
    }

    /// Frees a checked object (at `off` from object 0 at `base` in `slab` of `s`): the
    /// double-free check, then this CPU's main sheaf, else the slow path.
    #[inline(always)]
    pub(crate) fn free_object(
        &self,
        s: &KmemCache,
        slab: Slab<'_>,
        off: u32,
        base: usize,
        caller: &'static core::panic::Location<'static>,
    ) {
        if s.debug {
            return self.debug_free(s, slab, base + off as usize, caller);
        }
        if s.meminit & crate::mm::meminit::INIT_FREE != 0 {
            return self.free_init(s, slab, off, base);
        }
        self.free_checked(s, slab, base + off as usize, off as usize);
    }

    /// [`Kmem::free_checked`] with `init_on_free` (`mm/meminit.rs`): after the double-free
    /// check, the object's bytes are zeroed, then its free pointer is written.
    #[inline(never)]
    fn free_init(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) {
        let obj = base + off as usize;
        if !mark_sheaf_object(s, obj) {
            return self.free_suspect(s, slab, off, base, || {});
        }
        // Claimed: every byte but the marked word (`init_on_free` zeroes the object; the
        // word is the marker, never 0, so a racing free still finds it free).
        let (at, size) = (s.fp_addr(obj) - obj, s.object_size());
        // SAFETY: the object is the caller's (claimed): `object_size` bytes at `obj`; the
        // free-pointer word at `at` (inside them or after them).
        unsafe {
            super::object::fill(obj, 0, at.min(size));
            if at + 8 < size {
                super::object::fill(obj + at + 8, 0, size - at - 8);
            }
        }
        self.free_marked(s, slab, obj, off as usize, || {});
    }

    /// Frees an object of a non-debug cache whose slab and boundary are checked: the
    /// double-free check, then this CPU's main sheaf (an object of another node its slab),
    /// else the slow path (which resolves `slab`). The careful paths' free.
    #[inline(always)]
    pub(crate) fn free_checked<'a>(&'a self, s: &KmemCache, slab: impl SlabRef<'a>, obj: usize, off: usize) {
        if !mark_sheaf_object(s, obj) {
            return self.free_suspect(s, slab, off as u32, obj - off, || {});
        }
        self.free_marked(s, slab, obj, off, || {})
    }

    /// [`Kmem::free_checked`] for the free fast paths, which reach it only for an object that
    /// passed [`KmemCache::is_plain_object`] (its cache has a non-zero `plain_objects`, so
    /// one node: no node-count test) and know the entry of the CPU's fast table that names
    /// the cache's sheaves (`fast_table.rs`: `word`, the cache id's from the slab's page
    /// word or the named cache's `fast_word`, or the kmalloc class's from the size of a
    /// sized free): the sheaves' address does not wait for the cache descriptor and its
    /// table of per-CPU addresses. An empty entry sends the free to the careful pin, which
    /// fills it. `slow()` is called when the free went past this CPU's sheaf (the sheaf was
    /// full, or the object only looked freed), after that slow path, outside every lock and
    /// CPU section the free took: an allocator built on kmem runs its periodic work there
    /// (`kmem-alloc` gives memory back to the host), never on the fast path. `slow` is
    /// called last, so each slow path stays a tail call.
    ///
    /// # Safety
    ///
    /// `word` is an entry's word (below `FAST_CLASSES + FAST_IDS`: `FastTable::class_word`,
    /// `id_word` or `named_word` made it): it indexes the table with no bound test.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn free_checked_fast_then<'a>(
        &'a self,
        s: &KmemCache,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        word: usize,
        pin: impl FnOnce() -> Option<(Pinned, usize)>,
        slow: impl FnOnce(),
    ) {
        debug_assert!(s.nr_nodes <= 1, "a fast free of a cache of several nodes");
        // SAFETY: `word` is an entry's (the caller's contract).
        self.mark_and_push(s, slab, obj, off, slow, || unsafe { Self::free_fast_word(|| self, word, obj, pin) })
    }

    /// [`Kmem::free_checked_fast_then`] for `kfree`, which found the cache's id (below
    /// [`FAST_IDS`](super::fast_table::FAST_IDS)) in the object's page and tested the object
    /// with the id's record (`fast_check.rs`), not with the cache's descriptor: the fast
    /// path never loads it; its slow paths look the cache up by `id`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn free_checked_id_then<'a>(
        &'a self,
        chk: FastCheck<'_>,
        id: usize,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        word: usize,
        pin: impl FnOnce() -> Option<(Pinned, usize)>,
        slow: impl FnOnce(),
    ) {
        if !mark_sheaf_object(&chk, obj) {
            return self.free_id_cold(id, slab, obj, off, None, slow);
        }
        // SAFETY: an id entry's word (`PlainObject::word`: `id_word` of an id below FAST_IDS).
        match unsafe { Self::free_fast_word(|| self, word, obj, pin) } {
            Some(true) => {}
            pushed => self.free_id_cold(id, slab, obj, off, Some(pushed), slow),
        }
    }

    /// [`Kmem::free_checked_id_then`]'s slow paths, with the cache found by its id: the
    /// suspect path (`pushed` `None`: the object looked free) or [`Kmem::free_pushed`]'s.
    #[cold]
    #[inline(never)]
    pub(super) fn free_id_cold<'a>(
        &'a self,
        id: usize,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        pushed: Option<Option<bool>>,
        slow: impl FnOnce(),
    ) {
        // The id names the cache that made the object's slab: it gives its id back only
        // after its last slab is gone.
        let Some(s) = self.slab().cache(id as u32) else {
            debug_assert!(false, "a slab of fast id {id} without its cache");
            return;
        };
        match pushed {
            None => self.free_suspect(s, slab, off as u32, obj - off, slow),
            Some(pushed) => self.free_pushed(s, slab, obj, off, pushed, slow),
        }
    }

    /// The one-node fast frees' common body: the double-free test and the sheaf marker, the
    /// fast push `push` makes, then [`Kmem::free_pushed`].
    #[inline(always)]
    fn mark_and_push<'a>(
        &'a self,
        s: &KmemCache,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        slow: impl FnOnce(),
        push: impl FnOnce() -> Option<bool>,
    ) {
        if !mark_sheaf_object(s, obj) {
            return self.free_suspect(s, slab, off as u32, obj - off, slow);
        }
        let pushed = push();
        self.free_pushed(s, slab, obj, off, pushed, slow)
    }

    /// The end of every free: the object, its free-pointer word already the sheaf marker,
    /// goes onto this CPU's main sheaf, or down the slow path. Sheaves hold only their CPU's
    /// node's objects (Linux's `free_to_pcs` condition).
    /// Every call in it is a tail call (the caller saves no registers for it); caches on
    /// machines with several nodes go out of line first.
    #[inline(always)]
    fn free_marked<'a>(&'a self, s: &KmemCache, slab: impl SlabRef<'a>, obj: usize, off: usize, slow: impl FnOnce()) {
        if s.nr_nodes > 1 {
            return self.free_marked_numa(s, slab, obj, off, slow);
        }
        self.free_marked_local(s, slab, obj, off, slow)
    }

    /// [`Kmem::free_marked`] to this CPU's sheaf. The slow paths' arguments (object 0, the
    /// object's index as `u32`) are computed on their branches only.
    #[inline(always)]
    fn free_marked_local<'a>(
        &'a self,
        s: &KmemCache,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        slow: impl FnOnce(),
    ) {
        let pushed = self.free_fast(s, obj);
        self.free_pushed(s, slab, obj, off, pushed, slow)
    }

    /// The end of a free after its fast push: nothing (`Some(true)`), the slow path (no room),
    /// or the careful pin (`None`: the CPU not to be had without a call, or no fast-table
    /// entry yet). The slow paths' arguments (the object's index as `u32`, object 0) are
    /// computed on their branches only.
    #[inline(always)]
    fn free_pushed<'a>(
        &'a self,
        s: &KmemCache,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        pushed: Option<bool>,
        slow: impl FnOnce(),
    ) {
        match pushed {
            Some(true) => {}
            Some(false) => self.free_slow_at(s, slab, off as u32, obj - off, slow),
            None => self.free_pinning(s, slab, off as u32, obj - off, slow),
        }
    }

    /// [`Kmem::free_marked`] on a machine with several nodes: an object of another node than
    /// the CPU's goes to its slab (`free_slow`).
    #[inline(never)]
    fn free_marked_numa<'a>(
        &'a self,
        s: &KmemCache,
        slab: impl SlabRef<'a>,
        obj: usize,
        off: usize,
        slow: impl FnOnce(),
    ) {
        let resolved = slab.slab(self.memmap(), off);
        if self.remote_node(s, resolved) {
            self.free_slow(s, resolved, off as u32, obj - off);
            return slow();
        }
        self.free_marked_local(s, resolved, obj, off, slow)
    }

    /// [`Kmem::free_fast`] on a CPU pinned the ordinary way (the platform's fast pin could
    /// not have it), else the slow path.
    #[cold]
    #[inline(never)]
    fn free_pinning<'a>(&'a self, s: &KmemCache, slab: impl SlabRef<'a>, off: u32, base: usize, slow: impl FnOnce()) {
        let p = self.platform().pin_cpu();
        let pcs = s.pcs(self, p.cpu.index());
        self.fast_table_fill(s, p.cpu.index(), pcs);
        let ok = pcs.main().is_some_and(|m| m.push(base + off as usize));
        self.platform().unpin_cpu(p);
        if !ok {
            self.free_slow(s, slab.slab(self.memmap(), off as usize), off, base);
            slow();
        }
    }

    /// Whether `slab` lies on another node than the caller's CPU (never on one-node machines).
    #[inline(always)]
    fn remote_node(&self, s: &KmemCache, slab: Slab<'_>) -> bool {
        s.nr_nodes > 1 && slab.nid() != self.numa_node_id()
    }

    /// The fast path (`free_to_pcs`): push onto this CPU's main sheaf if it has room
    /// (`Some(false)`: no room; `None`: the CPU is not to be had without a call). Makes no
    /// call.
    #[inline(always)]
    fn free_fast(&self, s: &KmemCache, obj: usize) -> Option<bool> {
        let p = self.platform().try_pin_cpu()?;
        let ok = s.pcs(self, p.cpu.index()).main().is_some_and(|m| m.push(obj));
        self.platform().unpin_cpu_fast(p);
        Some(ok)
    }

    /// [`Kmem::free_fast`] to the sheaves entry `word` of the pinned CPU's fast table names:
    /// `Some(false)` when its main sheaf has no room or the entry is empty (the empty sheaf
    /// has none: the slow path fills the entry), `None` when the CPU is not to be had
    /// without a call. Makes no call. `pin` is the fast pin
    /// ([`Kmem::try_pin_fast_table`], or the caller's platform's own way to it:
    /// [`crate::FastPin`]), tried here, after every check of the object. `kmem` gives the
    /// machine for the unpin (the mapped frees' callers load it only if the platform's unpin
    /// reads it, which the hosted one does not).
    ///
    /// # Safety
    ///
    /// `word` is an entry's word (below `FAST_CLASSES + FAST_IDS`).
    #[inline(always)]
    pub(super) unsafe fn free_fast_word<'a>(
        kmem: impl Fn() -> &'a Self,
        word: usize,
        obj: usize,
        pin: impl FnOnce() -> Option<(Pinned, usize)>,
    ) -> Option<bool>
    where
        P: 'a,
    {
        let (p, t) = pin()?;
        // SAFETY: the pinned CPU's table, and an entry's word (the caller's contract).
        let ok = unsafe { super::fast_table::FastTable::at(t).sheaf_unchecked(word) }.push(obj);
        kmem().platform().unpin_cpu_fast(p);
        Some(ok)
    }

    /// Whether the object at `off` of `slab` is free (in a sheaf or on its slab's freelist).
    /// Debug caches answer through their freelist walk.
    pub(crate) fn object_is_free(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) -> bool {
        if s.debug {
            let g = s.node(slab.nid()).list_lock.lock_irqsave(self.platform());
            let free = self.on_freelist(s, slab, Some(off));
            drop(g);
            return free;
        }
        let obj = base + off as usize;
        // SAFETY: the free-pointer word of an object of a live slab.
        let w = unsafe { read_word(s.fp_addr(obj)) };
        tagged(w, s.marker) && (w == s.sheaf_marker() || self.on_slab_freelist(s, slab, off, base))
    }

    /// A free of an object whose free pointer carries the cache's tag, as a free object's
    /// does: a double free unless the slab's freelist says otherwise.
    #[cold]
    #[inline(never)]
    fn free_suspect<'a>(&'a self, s: &KmemCache, slab: impl SlabRef<'a>, off: u32, base: usize, slow: impl FnOnce()) {
        let obj = base + off as usize;
        let resolved = slab.slab(self.memmap(), off as usize);
        let fp = s.fp_addr(obj);
        loop {
            // SAFETY: the free-pointer word of an object of a live slab.
            let w = unsafe { read_word(fp) };
            if w == s.sheaf_marker() || (tagged(w, s.marker) && self.on_slab_freelist(s, resolved, off, base)) {
                self.double_free(s, resolved, obj);
                return slow();
            }
            // The user's data only looked like a free pointer (or the word changed since the
            // fast path read it): an ordinary free, unless another free claims it first.
            // SAFETY: as in `free_checked`.
            if unsafe { claim_word(fp, w, s.sheaf_marker()) } {
                break;
            }
        }
        self.free_marked(s, slab, obj, off as usize, slow)
    }

    /// [`Kmem::free_slow`] from a free fast path, which has not resolved the slab.
    #[cold]
    #[inline(never)]
    fn free_slow_at<'a>(&'a self, s: &KmemCache, slab: impl SlabRef<'a>, off: u32, base: usize, slow: impl FnOnce()) {
        self.free_slow(s, slab.slab(self.memmap(), off as usize), off, base);
        slow()
    }

    /// `__pcs_replace_full_main()`: the main sheaf is full (or missing). Swap in an empty
    /// spare, or trade the full sheaf for an empty one at the barn, or flush it to the slabs;
    /// objects of another node, and caches without sheaves, go straight to their slab.
    #[cold]
    #[inline(never)]
    pub(crate) fn free_slow(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) {
        if s.sheaf_capacity == 0 || self.remote_node(s, slab) {
            return self.free_single(s, slab, off, base);
        }
        let obj = base + off as usize;
        let nid = slab.nid();
        loop {
            let p = self.platform().pin_cpu();
            let pcs = s.pcs(self, p.cpu.index());
            pcs.stat(SlubStat::FreeSlowpath);
            // The fast paths come here from an empty entry too (it names the empty sheaf,
            // which has no room): fill it.
            self.fast_table_fill(s, p.cpu.index(), pcs);
            let pushed = match pcs.main() {
                // The CPU's first free into this cache since it came online: an empty sheaf
                // parked in the barn rather than a new one.
                None => {
                    super::sheaf::take_main(pcs, &s.node(nid).barn, self.platform(), false)
                        && pcs.main().is_some_and(|m| m.push(obj))
                }
                Some(m) if m.push(obj) => true,
                Some(m) => {
                    let depth = self.slab().cpu_stash as u32;
                    if pcs.spare().is_some_and(|sp| sp.size() == 0) {
                        pcs.swap();
                    } else if depth > 0 && self.main_to_stash(pcs, depth) {
                        // The full main went to the stash; an empty one (or none: the loop
                        // below gets one) took its place.
                    } else if !self.main_to_barn(s, pcs, nid) {
                        self.flush_sheaf(s, m);
                        pcs.stat(SlubStat::SheafFlush);
                    }
                    pcs.main().is_some_and(|m| m.push(obj))
                }
            };
            let has_main = pcs.main().is_some();
            self.platform().unpin_cpu(p);
            if pushed {
                return;
            }
            if has_main {
                continue;
            }
            // No main sheaf (the CPU's first free into this cache, or the barn took it):
            // frees must not sleep, so only a sheaf that needs no waiting will do.
            match self.alloc_sheaf(s, crate::gfp::Gfp::NOWAIT) {
                Some(sh) => self.install_sheaf(s, sh),
                None => return self.free_single(s, slab, off, base),
            }
        }
    }

    /// Puts the full main sheaf in the CPU's stash (CPU pinned), with a stashed empty sheaf,
    /// if any, as the new main; false if the stash is full of full sheaves.
    fn main_to_stash(&self, pcs: &super::sheaf::CpuSheaves, depth: u32) -> bool {
        let empty = pcs.stash_take(false);
        let full = pcs.set_main(empty);
        if pcs.stash_put(full, depth) {
            return true;
        }
        // No room (and then no empty sheaf was stashed either): as it was.
        pcs.set_main(full);
        debug_assert_eq!(empty, 0, "a stash with an empty sheaf had room");
        false
    }

    /// Trades the full main sheaf for an empty one at the barn (CPU pinned); false if the
    /// barn is full.
    fn main_to_barn(&self, s: &KmemCache, pcs: &super::sheaf::CpuSheaves, nid: usize) -> bool {
        if !super::sheaf::trade_for_empty(pcs, &s.node(nid).barn, self.platform()) {
            pcs.stat(SlubStat::BarnPutFail);
            return false;
        }
        pcs.stat(SlubStat::BarnPut);
        if pcs.main().is_none() {
            pcs.stat(SlubStat::BarnGetFail);
        }
        true
    }
}
