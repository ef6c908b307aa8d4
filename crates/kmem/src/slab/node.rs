//! Objects between slabs and sheaves, under a node's `list_lock`: refilling a sheaf from the
//! node's partial slabs or a new slab, flushing a sheaf's objects back to their slabs, and
//! single objects for caches without sheaves (`kmem_sheaf`) or requests that bypass them
//! (another node's objects, no sheaf to be had).
//!
//! Every change of a slab's freelist and counters happens here, with its node's `list_lock`
//! held (the debug paths in `debug/` follow the same rule), so a slab word needs no
//! compare-and-exchange. The list rule: a slab is on `partial` iff it has free objects, on
//! `full` iff it has none; an empty slab beyond `min_partial` goes back to the page
//! allocator (after the lock is dropped).
//!
//! Objects in sheaves carry the cache's sheaf marker as their free pointer, objects on a slab
//! freelist the encoded offset of the next free object: both carry the cache's tag in their
//! high half, which is what the free path's double-free check looks for (`word.rs`, `free.rs`).

use super::cache::{CacheNode, KmemCache};
use super::sheaf::Sheaf;
use super::slab_page::Slab;
use super::word::{SlabWord, OFF_NONE};
use crate::machine::Kmem;
use crate::mm::pfn_list::PfnList;
use crate::platform::Platform;
use crate::sync::{Ordering, SpinGuard};

/// Objects of a sheaf flushed per list-lock section: other CPUs get the lock between
/// sections.
const FLUSH_CHUNK: usize = 32;

/// Consecutive objects of a sheaf that belong to one slab (`struct detached_freelist`):
/// positions `first..first + len` of the sheaf, each chained to the one before it.
struct FlushRun<'a> {
    slab: Slab<'a>,
    /// Object 0's address.
    base: usize,
    first: usize,
    len: u32,
    /// The last object's offset: the slab's new freelist head.
    head: u32,
}

/// How many objects of a new slab of `objects` go to `sheaf` (its room, at most the slab):
/// what [`Kmem::mark_for_sheaf`] marks before the slab is listed and
/// [`Kmem::fill_from_new_slab`] then pushes.
fn new_slab_take(sheaf: &Sheaf, objects: u32) -> u32 {
    sheaf.capacity().saturating_sub(sheaf.size()).min(objects)
}

impl<P: Platform> Kmem<P> {
    /// Moves free objects of `slab` (list lock held) into `sheaf` until it is full or the
    /// slab has none left; fixes the slab's list. Returns how many moved.
    fn take_from_slab(&self, s: &KmemCache, n: &CacheNode, g: &SpinGuard<'_, P>, slab: Slab<'_>, sheaf: &Sheaf) -> u32 {
        debug_assert!(g.holds(&n.list_lock));
        let Some(w) = self.partial_slab_word(s, n, slab) else { return 0 };
        let base = s.obj_base(self, slab);
        let (mut cur, mut got, start) = (w.freelist, 0, sheaf.size());
        while cur != OFF_NONE && sheaf.size() < sheaf.capacity() {
            let obj = base + cur as usize;
            // SAFETY: `cur` is a validated offset of a free object of `slab` (list lock held).
            let next = unsafe { s.get_fp(obj) };
            // SAFETY: as above; the object moves to the sheaf.
            unsafe { s.set_sheaf_marker(obj) };
            sheaf.push(obj);
            got += 1;
            cur = if s.valid_next(next, w.objects) {
                next as u32
            } else {
                // Linux's `freelist_corrupted`: the rest of the chain is isolated (leaked).
                self.freelist_corrupt(s, slab, obj);
                OFF_NONE
            };
        }
        sheaf.reverse_from(start);
        let inuse = if cur == OFF_NONE { w.objects } else { w.inuse + got };
        slab.set_word(SlabWord { freelist: cur, inuse, ..w });
        if cur == OFF_NONE {
            let mm = self.memmap();
            n.partial.unlink(mm, slab.page);
            n.full.push(mm, slab.pfn, slab.page, false);
        }
        got
    }

    /// `refill_sheaf()` from node `nid`'s partial slabs: fills `sheaf` as far as they allow.
    /// Returns how many objects it got.
    pub(crate) fn refill_from_partial(&self, s: &KmemCache, nid: usize, sheaf: &Sheaf) -> u32 {
        let n = s.node(nid);
        if n.partial.is_empty() {
            return 0;
        }
        let g = n.list_lock.lock_irqsave(self.platform());
        let mut got = 0;
        while sheaf.size() < sheaf.capacity() {
            let Some(pfn) = n.partial.first() else { break };
            got += self.take_from_slab(s, n, &g, self.slab_at(pfn.as_usize()), sheaf);
        }
        drop(g);
        got
    }

    /// Lists a new slab (on no list yet) and takes from it under the same lock: with `sheaf`,
    /// objects into the sheaf (returns `None`); without, one object for the caller, returned
    /// (`alloc_single_from_new_slab`). Either way the slab the caller paid for is never
    /// listed empty, where a shrink (reclaim's sweep, on any CPU) would free it before the
    /// caller got an object: the livelock of issue 16. `unlinked`: what the slab was made
    /// with ([`Kmem::new_slab`]): its first objects, not chained, go to the sheaf or are
    /// chained here.
    pub(crate) fn add_new_slab(
        &self,
        s: &KmemCache,
        slab: Slab<'_>,
        sheaf: Option<&Sheaf>,
        unlinked: u32,
    ) -> Option<usize> {
        let n = s.node(slab.nid());
        // The objects going to the sheaf are marked before the list lock is taken: the slab
        // is still this thread's alone, and a new slab's pages are often untouched, so the
        // marks fault them in (under the lock, the other CPUs of the node spun on it while
        // the kernel cleared pages: 12% of `mtbench grow 4`'s time in `lock_slow`).
        let marked = sheaf.map(|sheaf| self.mark_for_sheaf(s, slab, sheaf, unlinked));
        let g = n.list_lock.lock_irqsave(self.platform());
        n.partial.push(self.memmap(), slab.pfn, slab.page, false);
        let obj = match sheaf {
            Some(sheaf) => {
                self.fill_from_new_slab(s, n, &g, slab, sheaf, unlinked, marked.unwrap_or(0));
                None
            }
            None => {
                self.link_new_slab(s, slab, 0, unlinked);
                // At the head of the list: the new slab's first object.
                self.alloc_single_locked(s, n, &g)
            }
        };
        drop(g);
        obj
    }

    /// Chains objects `from..to` of a new slab (whose objects from `to` on are chained in
    /// address order, objects below `from` taken) onto the front of its freelist: the slab
    /// then has its objects from `from` on free, in address order, as `init_slab` chains them.
    fn link_new_slab(&self, s: &KmemCache, slab: Slab<'_>, from: u32, to: u32) {
        let w = slab.word();
        let to = to.min(w.objects);
        if from >= to {
            return;
        }
        // SAFETY: objects of a new slab not handed out, which only this thread reaches (list
        // lock held once the slab is listed).
        unsafe { s.chain_in_order(s.obj_base(self, slab), from, to, w.objects) };
        slab.set_word(SlabWord { freelist: from * s.layout.size, inuse: from, ..w });
    }

    /// How many objects of a new slab (on no list yet, its first `unlinked` objects not
    /// chained) go to `sheaf` (the pinned CPU's empty main sheaf) in
    /// [`Kmem::fill_from_new_slab`], marked as in a sheaf here, before the slab is listed.
    fn mark_for_sheaf(&self, s: &KmemCache, slab: Slab<'_>, sheaf: &Sheaf, unlinked: u32) -> u32 {
        let k = new_slab_take(sheaf, slab.word().objects).min(unlinked);
        let (base, fp, size) = (s.obj_base(self, slab), s.fp_writer(), s.layout.size as usize);
        for j in 0..k as usize {
            // SAFETY: a free object of a new slab no other thread reaches yet (not listed),
            // not chained (below `unlinked`): it is moving to the sheaf.
            unsafe { fp.mark_in_sheaf(base + j * size) };
        }
        k
    }

    /// [`Kmem::take_from_slab`] of a slab nobody took from yet (just listed by
    /// [`Kmem::add_new_slab`]): its free objects are `unlinked..` in address order and the
    /// objects before `unlinked` are not chained, so the objects going to `sheaf` are found by
    /// address instead of by following and decoding the chain, and the slab's freelist
    /// starts after them. Object 0 ends on top of the sheaf, as `take_from_slab` leaves it.
    /// The first `marked` objects were marked as in a sheaf before the slab was listed
    /// ([`Kmem::mark_for_sheaf`]); any others going to the sheaf are marked here.
    #[allow(clippy::too_many_arguments)]
    fn fill_from_new_slab(
        &self,
        s: &KmemCache,
        n: &CacheNode,
        g: &SpinGuard<'_, P>,
        slab: Slab<'_>,
        sheaf: &Sheaf,
        unlinked: u32,
        marked: u32,
    ) {
        let w = slab.word();
        let size = s.layout.size;
        let unlinked = unlinked.min(w.objects);
        let fresh_head = if unlinked < w.objects { unlinked * size } else { OFF_NONE };
        if w.inuse != unlinked || w.freelist != fresh_head || !s.word_ok(slab, w) {
            // Cannot happen: the slab was this thread's alone until listed. Chain what is not
            // and take the ordinary way.
            debug_assert!(false, "a new slab changed before it was listed");
            self.link_new_slab(s, slab, 0, unlinked);
            self.take_from_slab(s, n, g, slab, sheaf);
            return;
        }
        let k = new_slab_take(sheaf, w.objects);
        // Objects the sheaf has no room for go back on the chain.
        self.link_new_slab(s, slab, k, unlinked);
        let (base, fp) = (s.obj_base(self, slab), s.fp_writer());
        let pushed = sheaf.push_many(k, |j| {
            let i = k - 1 - j;
            let obj = base + (i * size) as usize;
            if i >= marked {
                // SAFETY: a free object of a slab no other CPU has taken from (list lock
                // held); it moves to the sheaf.
                unsafe { fp.mark_in_sheaf(obj) };
            }
            obj
        });
        debug_assert_eq!(pushed, k, "the sheaf had room for k objects");
        let freelist = if k < w.objects { k * size } else { OFF_NONE };
        slab.set_word(SlabWord { freelist, inuse: k, ..w });
        if freelist == OFF_NONE {
            let mm = self.memmap();
            n.partial.unlink(mm, slab.page);
            n.full.push(mm, slab.pfn, slab.page, false);
        }
    }

    /// One object from node `nid`'s partial slabs (`alloc_single_from_partial`), for a
    /// request that does not go through sheaves.
    pub(crate) fn alloc_single(&self, s: &KmemCache, nid: usize) -> Option<usize> {
        let n = s.node(nid);
        if n.partial.is_empty() {
            return None;
        }
        let g = n.list_lock.lock_irqsave(self.platform());
        let obj = self.alloc_single_locked(s, n, &g);
        drop(g);
        obj
    }

    /// [`Kmem::alloc_single`] with the node's `list_lock` held (`g`).
    pub(super) fn alloc_single_locked(&self, s: &KmemCache, n: &CacheNode, g: &SpinGuard<'_, P>) -> Option<usize> {
        debug_assert!(g.holds(&n.list_lock));
        let (slab, w) = loop {
            let slab = self.slab_at(n.partial.first()?.as_usize());
            if let Some(w) = self.partial_slab_word(s, n, slab) {
                break (slab, w);
            }
        };
        let obj = s.obj_base(self, slab) + w.freelist as usize;
        // SAFETY: the slab's first free object (list lock held).
        let mut next = unsafe { s.get_fp(obj) };
        if !s.valid_next(next, w.objects) {
            self.freelist_corrupt(s, slab, obj);
            next = OFF_NONE as u64;
        }
        let new = SlabWord { freelist: next as u32, inuse: w.inuse + 1, ..w };
        slab.set_word(if new.freelist == OFF_NONE { SlabWord { inuse: w.objects, ..new } } else { new });
        if new.freelist == OFF_NONE {
            let mm = self.memmap();
            n.partial.unlink(mm, slab.page);
            n.full.push(mm, slab.pfn, slab.page, false);
        }
        Some(obj)
    }

    /// Pushes the object at offset `off` of `slab` onto the slab's freelist (`g` holds the
    /// list lock of its node), fixing its list; an emptied slab beyond `min_partial` is unlinked and
    /// put on `discard`. False (nothing changed) if the slab has no object in use: a double
    /// free the caller reports.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn free_to_slab_locked(
        &self,
        s: &KmemCache,
        n: &CacheNode,
        g: &SpinGuard<'_, P>,
        slab: Slab<'_>,
        off: u32,
        base: usize,
        discard: &PfnList,
    ) -> bool {
        debug_assert!(g.holds(&n.list_lock));
        let w = slab.word();
        if !s.word_ok(slab, w) {
            // Reported; the object is left out (leaked) rather than linked into a slab whose
            // word cannot be trusted. Not a double free.
            self.slab_word_corrupt(s, slab, w);
            return true;
        }
        if w.inuse == 0 || w.freelist == off {
            return false;
        }
        // SAFETY: the object is being freed by its owner; list lock held.
        unsafe { s.set_fp(base + off as usize, w.freelist) };
        self.commit_frees_locked(s, n, slab, w, SlabWord { freelist: off, inuse: w.inuse - 1, ..w }, discard);
        true
    }

    /// Stores `new`, the word of `slab` after frees onto its freelist (its word was `old`;
    /// list lock held), and fixes its lists: a full slab becomes partial, and an emptied slab
    /// beyond `min_partial` is unlinked and put on `discard`.
    fn commit_frees_locked(
        &self,
        s: &KmemCache,
        n: &CacheNode,
        slab: Slab<'_>,
        old: SlabWord,
        new: SlabWord,
        discard: &PfnList,
    ) {
        slab.set_word(new);
        let mm = self.memmap();
        if old.freelist == OFF_NONE {
            n.full.unlink(mm, slab.page);
            n.partial.push(mm, slab.pfn, slab.page, true);
        }
        if new.inuse == 0 && n.nr_partial() > s.min_partial as usize {
            n.partial.unlink(mm, slab.page);
            discard.push(mm, slab.pfn, slab.page, false);
        }
    }

    /// `__slab_free()` of one object that does not go through sheaves.
    pub(crate) fn free_single(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) {
        let n = s.node(slab.nid());
        let discard = PfnList::new();
        let g = n.list_lock.lock_irqsave(self.platform());
        let ok = self.free_to_slab_locked(s, n, &g, slab, off, base, &discard);
        drop(g);
        if !ok {
            self.double_free(s, slab, base + off as usize);
        }
        self.discard_list(s, &discard);
    }

    /// `sheaf_flush()`: every object of `sheaf` back to its slab. Consecutive objects of one
    /// slab form a run (Linux's detached freelist, `build_detached_freelist`): its slab is
    /// looked up once and its objects are chained to one another in sheaf order, work that
    /// needs no lock (they are the sheaf's: nobody else reaches them, and their slabs stay
    /// slabs; the previous run's node lock may still be held while it is done);
    /// under the node's `list_lock` the run's last object is linked to the slab's freelist
    /// and the slab's word and lists are updated once. The lock is held across runs of one
    /// node, and dropped every [`FLUSH_CHUNK`] objects so other CPUs get it. The sheaf ends
    /// empty.
    pub(crate) fn flush_sheaf(&self, s: &KmemCache, sheaf: &Sheaf) {
        let discard = PfnList::new();
        let total = sheaf.size() as usize;
        let fp = s.fp_writer();
        let mut held: Option<(usize, SpinGuard<'_, P>)> = None;
        let (mut i, mut under_lock) = (0, 0);
        while i < total {
            let obj = sheaf.object(i);
            let Some((slab, cache)) = self.addr_to_slab(obj) else {
                i += 1;
                continue;
            };
            debug_assert!(core::ptr::eq(cache, s), "a sheaf holds an object of another cache");
            let base = s.obj_base(self, slab);
            // Sheaf objects are object starts (checked when they were freed): an address is
            // one of this slab's objects if it lies within the slab's objects' bytes.
            let span = s.objects_for(slab.order()) as usize * s.layout.size as usize;
            let first = i;
            // SAFETY: the sheaf's objects being flushed by the sheaf's owner: only it reaches
            // them until the run is linked to its slab below.
            let (len, head) = unsafe { chain_run(fp, sheaf.slots(i + 1, total), base, span, (obj - base) as u32) };
            i += 1 + len;
            let nid = slab.nid();
            if under_lock >= FLUSH_CHUNK || held.as_ref().is_none_or(|(h, _)| *h != nid) {
                drop(held.take());
                held = Some((nid, s.node(nid).list_lock.lock_irqsave(self.platform())));
                under_lock = 0;
            }
            under_lock += i - first;
            let g = &held.as_ref().expect("locked above").1;
            let run = FlushRun { slab, base, first, len: (i - first) as u32, head };
            self.free_run_locked(s, s.node(nid), g, &run, sheaf, &discard);
        }
        drop(held);
        sheaf.clear();
        self.discard_list(s, &discard);
    }

    /// Links run `r` of `sheaf`'s objects, chained already ([`Kmem::flush_sheaf`]), to its
    /// slab's freelist (`g` holds the list lock of the slab's node): the run's first object
    /// names the slab's old head, the last one becomes the head, as if each had been pushed
    /// on the head by [`Kmem::free_to_slab_locked`], with one update of the word and lists. A
    /// slab whose word disagrees (corrupt state) takes the objects one at a time, with that
    /// function's checks and reports.
    fn free_run_locked(
        &self,
        s: &KmemCache,
        n: &CacheNode,
        g: &SpinGuard<'_, P>,
        r: &FlushRun<'_>,
        sheaf: &Sheaf,
        discard: &PfnList,
    ) {
        debug_assert!(g.holds(&n.list_lock));
        let (slab, base) = (r.slab, r.base);
        let w = slab.word();
        let first = sheaf.object(r.first);
        if !s.word_ok(slab, w) || w.inuse < r.len || w.freelist == (first - base) as u32 {
            for i in r.first..r.first + r.len as usize {
                let off = (sheaf.object(i) - base) as u32;
                if !self.free_to_slab_locked(s, n, g, slab, off, base, discard) {
                    // Cannot happen unless state is corrupt: objects enter sheaves only after
                    // the double-free check. Leave the object out rather than corrupt the slab.
                    debug_assert!(false, "sheaf object already free in its slab");
                }
            }
            return;
        }
        // SAFETY: a sheaf object of `slab` being freed by the sheaf's owner; list lock held.
        unsafe { s.set_fp(first, w.freelist) };
        self.commit_frees_locked(s, n, slab, w, SlabWord { freelist: r.head, inuse: w.inuse - r.len, ..w }, discard);
    }

    /// Whether the object at `off` is on `slab`'s freelist (list lock taken here): the
    /// confirmation of a free pointer that decodes like a free object's.
    pub(crate) fn on_slab_freelist(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) -> bool {
        let n = s.node(slab.nid());
        let g = n.list_lock.lock_irqsave(self.platform());
        let found = self.on_slab_freelist_locked(s, slab, off, base);
        drop(g);
        found
    }

    /// [`Kmem::on_slab_freelist`] with the slab's node's `list_lock` held by the caller.
    pub(crate) fn on_slab_freelist_locked(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) -> bool {
        let w = slab.word();
        // A word kmem cannot follow proves nothing (the free path then reports it).
        let ok = s.word_ok(slab, w);
        let (mut cur, mut steps) = (if ok { w.freelist } else { OFF_NONE }, 0);
        let mut found = false;
        while cur != OFF_NONE && steps <= w.objects {
            if cur == off {
                found = true;
                break;
            }
            // SAFETY: a free object of `slab`, list lock held.
            let next = unsafe { s.get_fp(base + cur as usize) };
            if !s.valid_next(next, w.objects) {
                break;
            }
            cur = next as u32;
            steps += 1;
        }
        found
    }
}

/// Chains the objects of `slots` that lie in the slab whose object 0 is at `base` (offsets
/// below `span`), from the first on until one does not: each object's free pointer names the
/// one before it, the first names `head`. Returns how many it chained and the offset of the
/// last (the run's new head). Over the slots as a slice: no bound test an object (the loop
/// is 22 instructions an object in the LD_PRELOAD library, it was 25). Out of line it would
/// keep its values in registers (18), but a call a run costs more where runs are short
/// (random-order frees).
///
/// # Safety
///
/// Every object in `slots` up to the first outside the slab must be a free object of the
/// cache `fp` writes for, owned by the caller.
#[inline(always)]
unsafe fn chain_run(
    fp: super::slab_page::FpWriter,
    slots: &[crate::sync::AtomicUsize],
    base: usize,
    span: usize,
    mut head: u32,
) -> (usize, u32) {
    let mut n = 0;
    for o in slots {
        let o = o.load(Ordering::Relaxed);
        let off = o.wrapping_sub(base);
        if off >= span {
            break;
        }
        // SAFETY: caller's contract.
        unsafe { fp.set(o, head) };
        head = off as u32;
        n += 1;
    }
    (n, head)
}

#[cfg(test)]
mod tests {
    use super::super::word::OFF_NONE;
    use crate::{testing, Gfp, ReportKind, SlabFlags};
    use core::ptr::NonNull;

    /// A new slab made for a sheaf (`unlinked` objects not chained) that ends up serving one
    /// allocation instead (`add_new_slab` without a sheaf: the main sheaf went while the CPU
    /// was released) chains those objects first: the slab then holds object 0 in use and
    /// objects 1.. on its freelist in address order.
    #[test]
    fn a_new_slab_without_its_sheaf_chains_its_unlinked_objects() {
        let k = testing::machine(64);
        let c = k.kmem_cache_create("unlinked", 8, 0, SlabFlags::NO_MERGE, None).unwrap();
        for unlinked in [0, 1, 64, 100_000] {
            let slab = k.new_slab(&c, Gfp::KERNEL, None, unlinked).unwrap();
            let objects = slab.word().objects;
            let base = c.obj_base(&k, slab);
            let obj = k.add_new_slab(&c, slab, None, unlinked).expect("the slab's first object");
            assert_eq!(obj, base, "unlinked {unlinked}: object 0 first");
            let w = slab.word();
            assert_eq!((w.freelist, w.inuse), (c.layout.size, 1), "unlinked {unlinked}");
            let (mut cur, mut seen) = (w.freelist, 1);
            while cur != OFF_NONE {
                assert_eq!(cur, seen * c.layout.size, "unlinked {unlinked}: address order");
                // SAFETY: a free object of the slab; this thread alone uses the machine.
                cur = unsafe { c.get_fp(base + cur as usize) } as u32;
                seen += 1;
            }
            assert_eq!(seen, objects, "unlinked {unlinked}: every other object on the freelist");
            assert_eq!(k.validate_slab_cache(&c).errors, 0, "unlinked {unlinked}");
            // SAFETY: the object handed out above, freed once.
            unsafe { k.kmem_cache_free(&c, NonNull::new(obj as *mut u8).unwrap()) };
        }
        assert_eq!(k.report_count(ReportKind::SlabBug), 0);
    }
}
