//! Slab debugging (`slub_debug=FZPU`): caches with any debug flag never use the per-CPU
//! fast paths; every allocation and free takes the node's list lock and runs the checks
//! (`alloc_debug_processing`, `free_debug_processing`), as Linux's debug caches do.
//!
//! kmem checks a little more than Linux without `F`: red zones are checked on every free
//! and poison on every allocation whenever `Z` or `P` is on, and every debug cache detects
//! double frees (`on_freelist`); `F` adds the slab-level checks (`check_slab`) on every
//! operation.

mod check;
pub(crate) mod report;
pub(crate) mod track;

use super::alloc::Req;
use super::cache::KmemCache;
use super::flags::SlabFlags;
use super::object::fill;
use super::slab_page::{slab_addr, Slab};
use super::word::{SlabWord, OFF_NONE};
use super::SlabAllocError;
use crate::machine::Kmem;
use crate::platform::{Platform, ReportKind};
use report::{POISON_INUSE, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE};
use track::Which;

pub use report::{POISON_END, POISON_FREE, SLUB_RED_ACTIVE as RED_ACTIVE, SLUB_RED_INACTIVE as RED_INACTIVE};
pub use track::{CallerDepot, DEPOT_SLOTS};

/// The check results of [`Kmem::validate_slab_cache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidateReport {
    /// Slabs looked at.
    pub slabs: usize,
    /// Objects looked at.
    pub objects: usize,
    /// Reports made while validating.
    pub errors: u64,
}

impl<P: Platform> Kmem<P> {
    /// `setup_slab_debug()`: a poisoned cache's new slab is all `POISON_INUSE` first.
    pub(crate) fn setup_slab_debug(&self, s: &KmemCache, slab: Slab<'_>, order: u32) {
        if s.layout.flags.contains(SlabFlags::POISON) {
            // SAFETY: a new slab, reachable only by its creator.
            unsafe { fill(slab_addr(self, slab), POISON_INUSE, crate::PAGE_SIZE << order) };
        }
    }

    /// `setup_object_debug()`: a new object is a free one: red zones inactive, poisoned, no
    /// tracks.
    pub(crate) fn setup_object_debug(&self, s: &KmemCache, obj: usize) {
        if s.layout.flags.intersects(SlabFlags::STORE_USER | SlabFlags::RED_ZONE | SlabFlags::OBJECT_POISON) {
            self.init_object(s, obj, SLUB_RED_INACTIVE);
            if s.layout.flags.contains(SlabFlags::STORE_USER) {
                self.init_tracking(s, obj);
            }
        }
    }

    /// `trace()` (`SLAB_TRACE`).
    fn trace(&self, s: &KmemCache, slab: Slab<'_>, obj: usize, alloc: bool) {
        if !s.layout.flags.contains(SlabFlags::TRACE) {
            return;
        }
        let w = slab.word();
        let fp = if w.freelist == OFF_NONE { 0 } else { s.obj_base(self, slab) + w.freelist as usize };
        self.report(ReportKind::Info, &|f| {
            writeln!(
                f,
                "TRACE {} {} 0x{obj:016x} inuse={} fp=0x{fp:016x}",
                s.name(),
                if alloc { "alloc" } else { "free" },
                w.inuse
            )?;
            if !alloc {
                report::print_section(f, "Object ", obj, s.layout.object_size as usize)?;
            }
            Ok(())
        });
    }

    /// The checks before handing out free object `obj` (`alloc_consistency_checks`).
    fn alloc_checks(&self, s: &KmemCache, slab: Slab<'_>, obj: usize) -> bool {
        let f = s.layout.flags;
        if f.contains(SlabFlags::CONSISTENCY_CHECKS) && !self.check_slab(s, slab) {
            return false;
        }
        if f.intersects(SlabFlags::CONSISTENCY_CHECKS | SlabFlags::POISON | SlabFlags::RED_ZONE) {
            return self.check_object(s, slab, obj, SLUB_RED_INACTIVE, false);
        }
        true
    }

    /// Allocation from a debug cache (`alloc_single_from_partial` /
    /// `alloc_single_from_new_slab`), one object at a time under the list lock.
    #[cold]
    pub(crate) fn debug_alloc(&self, s: &KmemCache, req: Req) -> Result<usize, SlabAllocError> {
        let mm = self.memmap();
        loop {
            let nid = req.node.unwrap_or_else(|| self.numa_node_id());
            let n = s.node(nid);
            let g = n.list_lock.lock_irqsave(self.platform());
            if let Some(pfn) = n.partial.first() {
                let slab = self.slab_at(pfn.as_usize());
                let Some(w) = self.partial_slab_word(s, n, slab) else { continue };
                let base = s.obj_base(self, slab);
                let obj = base + w.freelist as usize;
                if !self.alloc_checks(s, slab, obj) {
                    self.mark_all_used(s, slab);
                    n.partial.unlink(mm, slab.page);
                    n.full.push(mm, slab.pfn, slab.page, false);
                    continue;
                }
                // SAFETY: `obj` is the first free object of the slab (list lock held).
                let mut next = unsafe { s.get_fp(obj) };
                if !s.valid_next(next, w.objects) {
                    self.freelist_corrupt(s, slab, obj);
                    next = OFF_NONE as u64;
                }
                let new = SlabWord { freelist: next as u32, inuse: w.inuse + 1, ..w };
                slab.set_word(new);
                if new.freelist == OFF_NONE {
                    n.partial.unlink(mm, slab.page);
                    n.full.push(mm, slab.pfn, slab.page, false);
                }
                self.trace(s, slab, obj, true);
                self.set_orig_size(s, obj, req.orig_size);
                self.init_object(s, obj, SLUB_RED_ACTIVE);
                if s.layout.flags.contains(SlabFlags::STORE_USER) {
                    self.set_track(s, obj, Which::Alloc, req.caller);
                }
                return Ok(obj);
            }
            drop(g);
            let slab = self.new_slab_or_report(s, req.gfp, req.node, 0)?;
            let n = s.node(slab.nid());
            let g = n.list_lock.lock_irqsave(self.platform());
            n.partial.push(mm, slab.pfn, slab.page, false);
            drop(g);
        }
    }

    /// Free to a debug cache (`free_to_partial_list` with `free_debug_processing`). A free
    /// that fails a check is reported and not done (`Object at .. not freed`).
    #[cold]
    pub(crate) fn debug_free(
        &self,
        s: &KmemCache,
        slab: Slab<'_>,
        obj: usize,
        caller: &'static core::panic::Location<'static>,
    ) {
        let n = s.node(slab.nid());
        let mm = self.memmap();
        let g = n.list_lock.lock_irqsave(self.platform());
        let base = s.obj_base(self, slab);
        let off = (obj - base) as u32;
        if s.layout.flags.contains(SlabFlags::CONSISTENCY_CHECKS) && !self.check_slab(s, slab) {
            return;
        }
        if self.on_freelist(s, slab, Some(off)) {
            self.double_free(s, slab, obj);
            return;
        }
        if !self.check_object(s, slab, obj, SLUB_RED_ACTIVE, true) {
            return;
        }
        if s.layout.flags.contains(SlabFlags::STORE_USER) {
            self.set_track(s, obj, Which::Free, caller);
        }
        self.trace(s, slab, obj, false);
        self.init_object(s, obj, SLUB_RED_INACTIVE);
        let old = slab.word();
        // SAFETY: the object is being freed by its owner, list lock held.
        unsafe { s.set_fp(obj, old.freelist) };
        let new = SlabWord { freelist: off, inuse: old.inuse - 1, ..old };
        slab.set_word(new);
        if old.freelist == OFF_NONE {
            n.full.unlink(mm, slab.page);
            n.partial.push(mm, slab.pfn, slab.page, true);
        }
        let discard = new.inuse == 0 && n.nr_partial() > s.min_partial as usize;
        if discard {
            n.partial.unlink(mm, slab.page);
        }
        drop(g);
        if discard {
            self.discard_slab(s, slab);
        }
    }

    /// `alloc_debug_processing()`'s way out of a failed check: `Marking all objects used`.
    /// The slab's free objects are never handed out again. Linux takes the slab off every
    /// list; kmem keeps it on the full list (so that validate and destroy still see it), and
    /// with red zones makes its free objects look allocated, so that validation, which
    /// checks them as allocated objects from now on, does not report each of them. Free
    /// objects are told by their inactive red zones, not by the freelist: the chain may be
    /// what is broken. List lock held.
    fn mark_all_used(&self, s: &KmemCache, slab: Slab<'_>) {
        self.slab_fix(s, "Marking all objects used");
        let w = slab.word();
        slab.set_word(SlabWord { freelist: OFF_NONE, inuse: w.objects, ..w });
        let l = s.layout;
        if !l.flags.contains(SlabFlags::RED_ZONE) {
            return;
        }
        let base = s.obj_base(self, slab);
        for i in 0..w.objects.min(s.objects_for(slab.order())) as usize {
            let obj = base + i * l.size as usize;
            let left = obj - l.red_left_pad as usize..obj;
            let right = obj + l.object_size as usize..obj + l.inuse as usize;
            if left.chain(right).all(|a| report::peek(a) == SLUB_RED_INACTIVE) {
                self.set_orig_size(s, obj, l.object_size);
                self.init_object(s, obj, SLUB_RED_ACTIVE);
            }
        }
    }

    /// `slab_fix()` as a report of its own.
    pub(crate) fn slab_fix(&self, s: &KmemCache, what: &str) {
        self.report(ReportKind::SlabBug, &|w| writeln!(w, "FIX {}: {what}", s.name()));
    }

    /// Validates one slab (`validate_slab`): its counters and freelist, then every object
    /// against its state. List lock held. Returns the objects checked.
    pub(crate) fn validate_slab(&self, s: &KmemCache, slab: Slab<'_>, map: &mut ObjectMap<'_>) -> usize {
        if !self.check_slab(s, slab) || !self.on_freelist(s, slab, None) {
            return 0;
        }
        let w = slab.word();
        let base = s.obj_base(self, slab);
        if s.debug && map.fill(self, s, slab) {
            for i in 0..w.objects as usize {
                let obj = base + i * s.layout.size as usize;
                let val = if map.is_free(i) { SLUB_RED_INACTIVE } else { SLUB_RED_ACTIVE };
                self.check_object(s, slab, obj, val, false);
            }
        }
        w.objects as usize
    }
}

/// A bitmap of a slab's free objects (`object_map`), in a page of its own (32768 bits, the
/// most objects a slab has); `None` if that page could not be allocated (then per-object
/// checks are skipped).
pub(crate) struct ObjectMap<'a> {
    bits: Option<&'a mut [u64]>,
}

impl<'a> ObjectMap<'a> {
    /// A map in `page` (a page-allocator block the caller owns for the map's life), or none.
    pub(crate) fn new(page: Option<&'a mut [u8]>) -> Self {
        let bits = page.map(|p| {
            let (pre, words, _) = {
                // SAFETY: any bit pattern is a valid u64; `align_to_mut` only yields aligned words.
                unsafe { p.align_to_mut::<u64>() }
            };
            debug_assert!(pre.is_empty());
            words
        });
        Self { bits }
    }

    /// Marks the free objects of `slab` (its freelist must be valid: `on_freelist` checked
    /// it, list lock held). False without a map.
    pub(crate) fn fill<P: Platform>(&mut self, k: &Kmem<P>, s: &KmemCache, slab: Slab<'_>) -> bool {
        let Some(bits) = self.bits.as_deref_mut() else { return false };
        let w = slab.word();
        let base = s.obj_base(k, slab);
        let objects = w.objects.min(s.max_objects(slab));
        bits[..(objects as usize).div_ceil(64)].fill(0);
        let (mut fp, mut n) = (w.freelist, 0);
        while fp != OFF_NONE && n < objects && s.valid_next(fp as u64, objects) {
            let i = (fp / s.layout.size) as usize;
            bits[i / 64] |= 1 << (i % 64);
            // SAFETY: a validated free object of the slab (list lock held by the caller).
            fp = unsafe { s.get_fp(base + fp as usize) } as u32;
            n += 1;
        }
        true
    }

    /// Whether object `i` was free at the last [`ObjectMap::fill`].
    pub(crate) fn is_free(&self, i: usize) -> bool {
        self.bits.as_deref().is_some_and(|b| b[i / 64] & (1 << (i % 64)) != 0)
    }
}
