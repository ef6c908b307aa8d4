//! Freeing: `kmem_cache_free`, the lockless fast path and `__slab_free`, and the checks that
//! turn a bad pointer into a report instead of a corrupt freelist.

use core::ptr::NonNull;

use super::cache::KmemCache;
use super::cpu::{CpuLock, SlubStat};
use super::slab_page::Slab;
use super::word::{SlabWord, OFF_NONE};
use crate::machine::Kmem;
use crate::platform::Platform;

/// What the slow path found out about a pointer given to `kmem_cache_free`.
pub(crate) enum Lookup<'a> {
    /// An object of a slab: the slab, its cache and the object's offset from object 0.
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
    /// object of another cache (freed to its own cache), and an object freed twice in a row;
    /// caches with debugging detect every double free.
    ///
    /// # Safety
    ///
    /// `obj` must be an object allocated from `s` (or an alias of it) that the caller owns and
    /// no longer uses. The checks above catch many mistakes, but an object freed twice while
    /// someone else has reallocated it cannot be told from a legitimate free.
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kmem_cache_free(&self, s: &KmemCache, obj: NonNull<u8>) {
        let addr = obj.as_ptr() as usize;
        if !self.free_fast(s, addr) {
            self.free_slow(s, addr, core::panic::Location::caller());
        }
    }

    /// The lockless fast path: push onto this CPU's freelist if `addr` is an object of the
    /// CPU's active slab. False when the slow path must run.
    #[inline(always)]
    pub(crate) fn free_fast(&self, s: &KmemCache, addr: usize) -> bool {
        let c = s.cpu(self, self.platform().current_cpu().index());
        // SAFETY: `fast_push` only writes the free pointer of `addr` once it knows `addr` is
        // an object of this CPU's active slab, which the caller owns and is freeing.
        c.fast_push(addr, |off| s.is_boundary(off), |obj, next| unsafe { s.set_fp(obj, next) })
    }

    /// Classifies a pointer (`virt_to_slab`, `check_valid_pointer`).
    pub(crate) fn lookup_object(&self, addr: usize) -> Lookup<'_> {
        let Some((slab, cache)) = self.addr_to_slab(addr) else { return Lookup::NotSlab };
        let base = cache.obj_base(self, slab);
        let objects = slab.word().objects;
        let off = addr.wrapping_sub(base);
        if off >= (objects * cache.layout.size) as usize || !cache.is_boundary(off as u32) {
            return Lookup::Invalid(slab, cache);
        }
        Lookup::Object(slab, cache, off as u32, base)
    }

    /// The slow path: find the object's slab and cache, check, free.
    #[cold]
    #[inline(never)]
    pub(crate) fn free_slow(&self, s: &KmemCache, addr: usize, caller: &'static core::panic::Location<'static>) {
        let (slab, cache, off, base) = match self.lookup_object(addr) {
            Lookup::Object(slab, cache, off, base) => (slab, cache, off, base),
            Lookup::Invalid(slab, cache) => {
                self.invalid_object_pointer(cache, Some(slab), addr);
                return;
            }
            Lookup::NotSlab => {
                self.invalid_object_pointer(s, None, addr);
                return;
            }
        };
        if !core::ptr::eq(cache, s) {
            self.wrong_cache(s, cache, caller);
        }
        if cache.debug {
            self.debug_free(cache, slab, addr, caller);
            return;
        }
        // The object may belong to this CPU's active slab (the fast path gave up because the
        // word was locked, or it saw a double free of the head). A slab that becomes active
        // here after this peek is still correct to free into through `__slab_free`: an active
        // slab takes remote frees on its own freelist.
        let c = cache.cpu(self, self.platform().current_cpu().index());
        if c.peek_slab() == slab.pfn.as_usize() {
            let cl = CpuLock::new(self.platform(), |cpu| cache.cpu(self, cpu));
            cl.c.stat(SlubStat::FreeSlowpath);
            if cl.c.active().is_some_and(|a| a.slab == slab.pfn.as_usize()) {
                let (head, tid) = cl.c.lock_word();
                if head == off {
                    cl.c.unlock_word(head, tid);
                    drop(cl);
                    self.double_free(cache, slab, addr);
                    return;
                }
                // SAFETY: an object of the active slab being freed by its owner.
                unsafe { cache.set_fp(addr, head) };
                cl.c.unlock_word(off, tid);
                return;
            }
        }
        self.__slab_free(cache, slab, off, base);
    }

    /// `__slab_free()`: pushes one object onto its slab's freelist, doing the list work the
    /// state change needs (see `slab_page.rs`).
    pub(crate) fn __slab_free(&self, s: &KmemCache, slab: Slab<'_>, off: u32, base: usize) {
        let n = s.node(slab.nid());
        let mut guard = None;
        let (old, new) = loop {
            let old = slab.word();
            if old.freelist == off || old.inuse == 0 {
                drop(guard);
                self.double_free(s, slab, base + off as usize);
                return;
            }
            let new = SlabWord { freelist: off, inuse: old.inuse - 1, ..old };
            // The first free into a full slab and the free that empties a slab move it
            // between lists: decided, and done, under the list lock.
            let list_work = !old.frozen && (old.freelist == OFF_NONE || new.inuse == 0);
            if list_work && guard.is_none() {
                guard = Some(n.list_lock.lock_irqsave(self.platform()));
                continue;
            }
            // SAFETY: the object is being freed by its owner; its free pointer is ours.
            unsafe { s.set_fp(base + off as usize, old.freelist) };
            if slab.cas(old, new) {
                if !list_work {
                    // The lock may have been taken for a state that changed meanwhile (the
                    // slab was frozen by a CPU): no list work after all.
                    drop(guard);
                    return;
                }
                break (old, new);
            }
        };
        let g = guard.expect("list work is done under the list lock");
        let mm = self.memmap();
        let discard = if new.inuse == 0 && n.nr_partial() >= s.min_partial as usize {
            if old.freelist == OFF_NONE {
                n.full.unlink(mm, slab.page);
            } else {
                n.partial.unlink(mm, slab.page);
            }
            true
        } else {
            if old.freelist == OFF_NONE {
                n.full.unlink(mm, slab.page);
                n.partial.push(mm, slab.pfn, slab.page, true);
            }
            false
        };
        drop(g);
        if discard {
            self.discard_slab(s, slab);
        }
    }
}
