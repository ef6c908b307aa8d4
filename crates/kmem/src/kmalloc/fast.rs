//! The call-free fast paths of kmalloc and kfree, for allocators built on kmem (kmem-alloc's
//! `malloc` and `GlobalAlloc`): every call left in them is a tail call, so a caller that
//! inlines them saves no registers. Anything unusual returns to the caller's own slow path
//! ([`Kmem::kmalloc_try_fast`]) or goes to the function it passes ([`Kmem::kfree_slab_or`]).

use core::ptr::NonNull;

use super::index::{kmalloc_index, KmallocType, KMALLOC_MAX_CACHE_SIZE, KMALLOC_NR};
use super::KmallocState;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{FastPin, Pinned, Platform};
use crate::slab::fast_table::FastTable;
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// [`Kmem::kfree`] of an object of a plain slab (the common case, on the fast path),
    /// else `other(p)`, which must free or report anything else (a large block, a debug
    /// cache's object, a bad pointer): `other` may be [`Kmem::kfree_large`] with the caller's
    /// bookkeeping around it. Every call in it is a tail call, so an allocator built on it
    /// (`kmem-alloc`) saves no registers on its free path.
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let small = m.kmalloc(64, Gfp::KERNEL).unwrap();
    /// let large = m.kmalloc(64 << 10, Gfp::KERNEL).unwrap();
    /// let mut others = 0;
    /// for p in [small, large] {
    ///     // SAFETY: both are live kmalloc blocks, not used afterwards.
    ///     unsafe {
    ///         m.kfree_slab_or(p.as_ptr(), |p| {
    ///             others += 1;
    ///             m.kfree(p)
    ///         })
    ///     };
    /// }
    /// assert_eq!(others, 1, "the slab object took the fast path, the large block the other");
    /// ```
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_slab_or(&self, p: *const u8, other: impl FnOnce(*const u8)) {
        // SAFETY: caller's contract.
        unsafe { self.kfree_slab_or_then(p, other, || {}) }
    }

    /// [`Kmem::kfree_slab_or`] that calls `slow()` after a free that went past this CPU's
    /// main sheaf (the sheaf was full, so sheaves went to the node's barn or objects to
    /// their slabs, and perhaps empty slabs to the page allocator; or the object was
    /// another node's, or reported as a double free), outside every lock and CPU section
    /// the free took. An allocator built on kmem runs its periodic work there, which a free
    /// on the fast path never pays for: `kmem-alloc` checks whether to give free memory
    /// back to the host. `slow` is called last, as a tail call of the slow path, so the
    /// fast path still saves no registers.
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let blocks: Vec<_> = (0..1000).map(|_| m.kmalloc(64, Gfp::KERNEL).unwrap()).collect();
    /// let mut slow = 0;
    /// for p in blocks {
    ///     // SAFETY: live kmalloc blocks, not used afterwards.
    ///     unsafe { m.kfree_slab_or_then(p.as_ptr(), |p| m.kfree(p), || slow += 1) };
    /// }
    /// // A sheaf holds at most 128 objects: most frees stayed on the fast path, some did not.
    /// assert!(slow > 0 && slow < 100, "{slow} slow frees");
    /// ```
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_slab_or_then(&self, p: *const u8, other: impl FnOnce(*const u8), slow: impl FnOnce()) {
        // SAFETY: caller's contract; the pin is this machine's own.
        unsafe { self.kfree_slab_or_then_with(p, || self.try_pin_fast_table_pin(), other, slow) }
    }

    /// [`Kmem::kfree_slab_or_then`] on the CPU `pin` pins, after every check of the object
    /// (`None`: the careful pin's way): for a platform that reaches its CPU without the
    /// machine (`kmem_hosted::ProcessCpu`, the process allocator's thread and its CPU), so
    /// that the fast path neither loads the machine's id nor compares it.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_slab_or_then_with(
        &self,
        p: *const u8,
        pin: impl FnOnce() -> Option<FastPin>,
        other: impl FnOnce(*const u8),
        slow: impl FnOnce(),
    ) {
        let addr = p as usize;
        // NULL and ZERO_SIZE_PTR need no test of their own: they are outside the direct map,
        // or in a frame boot reserved (`Kmem::boot`), never in a slab.
        if let Some(o) = self.plain_slab_of(addr) {
            if o.chk.is_plain_object(o.off) {
                let pin = || pin().map(|f| (f.pinned, f.area));
                return self.free_checked_id_then(o.chk, o.id, o.slab, addr, o.off, o.word, pin, slow);
            }
        }
        other(p)
    }

    /// [`Kmem::kfree`] of a block its caller says it asked kmalloc for `size` bytes of
    /// (`GFP_KERNEL`'s caches; C23's `free_sized`, Rust's `dealloc`, which has the
    /// `Layout`), if it is an object of a plain slab of that size's cache; else `other(p)`,
    /// which must free or report anything else (it may be [`Kmem::kfree_slab_or`] or
    /// [`Kmem::kfree`], out of line: it is the rare path). The size names the cache the
    /// block should be in, so the free finds that cache, and its CPU's sheaf, without the
    /// object's slab, and then checks that the object is one of that cache's, as
    /// [`Kmem::kmem_cache_free`] does. The size is only a hint: a block in another cache (a
    /// wrong size, a block `krealloc` kept in place, one of another kmalloc type) goes to
    /// `other`, which frees it just as well, or reports it just the same.
    ///
    /// Faster than `kfree` (measured: a malloc + free pair of 64 bytes, 11.6 ns rather than
    /// 14.1), most likely because the sheaf slot the object goes to no longer waits for the
    /// object's page, its slab head and the cache they name, and the next allocation loads
    /// that slot (docs/architecture/process-allocator.md).
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.kmalloc(100, Gfp::KERNEL).unwrap();
    /// let q = m.kmalloc(100, Gfp::KERNEL).unwrap();
    /// let mut others = 0;
    /// // SAFETY: live kmalloc blocks, not used afterwards; the second one with a wrong size,
    /// // which frees it the long way.
    /// unsafe {
    ///     m.kfree_sized_or(p.as_ptr(), 100, |p| m.kfree(p));
    ///     m.kfree_sized_or(q.as_ptr(), 3000, |p| { others += 1; m.kfree(p) });
    /// }
    /// assert_eq!(others, 1, "the wrong size took the other way");
    /// assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
    /// ```
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_sized_or(&self, p: *const u8, size: usize, other: impl FnOnce(*const u8)) {
        // SAFETY: caller's contract.
        unsafe { self.kfree_sized_or_then(p, size, other, || {}) }
    }

    /// [`Kmem::kfree_sized_or`] that calls `slow()` after a free that went past this CPU's
    /// main sheaf, as [`Kmem::kfree_slab_or_then`] does.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_sized_or_then(
        &self,
        p: *const u8,
        size: usize,
        other: impl FnOnce(*const u8),
        slow: impl FnOnce(),
    ) {
        // SAFETY: caller's contract; the pin is this machine's own.
        unsafe { self.kfree_sized_or_then_with(p, size, || self.try_pin_fast_table_pin(), other, slow) }
    }

    /// [`Kmem::kfree_sized_or_then`] on the CPU `pin` pins, as
    /// [`Kmem::kfree_slab_or_then_with`].
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    pub unsafe fn kfree_sized_or_then_with(
        &self,
        p: *const u8,
        size: usize,
        pin: impl FnOnce() -> Option<FastPin>,
        other: impl FnOnce(*const u8),
        slow: impl FnOnce(),
    ) {
        if size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE {
            // The state once, before the slot's atomic load (which would make the compiler
            // load it again).
            let st = self.state();
            let index = kmalloc_index(size);
            let c = st.kmalloc.caches[KmallocType::Normal as usize][index].load(Ordering::Acquire);
            // A class without its cache names the absent descriptor, whose plain word no
            // page carries: the test below sends the block to `other`.
            if let Some(c) = KmallocState::fast_cache_of(c) {
                let addr = p as usize;
                if let Some((slab, off)) = self.plain_slab_off(st, c, addr) {
                    // A plain slab of this machine's kmalloc cache (the table is the
                    // machine's: its word settles it), and an object start in it.
                    if c.is_plain_object(off) {
                        // The class's entry names the cache's sheaves if it has one (a
                        // class entry is only ever its normal cache's).
                        let word = FastTable::class_word(index);
                        let pin = || pin().map(|f| (f.pinned, f.area));
                        // SAFETY: a class entry's word (`index` is a class's).
                        return unsafe { self.free_checked_fast_then(c, slab, addr, off, word, pin, slow) };
                    }
                }
            }
        }
        other(p)
    }

    /// `kmalloc(size, gfp)` when the class's cache exists and this CPU's main sheaf has an
    /// object to hand out with no call at all (see [`Kmem::kmalloc`]); `None` otherwise, and
    /// nothing is reported: the caller then calls [`Kmem::kmalloc`], which takes every
    /// careful and slow path. With `__GFP_ZERO` it zeroes the object (kzalloc, calloc), as
    /// the careful path does. Not for requests that may report.
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// // The class's sheaf is empty before the first kmalloc: the caller's slow path.
    /// let p = m.kmalloc_try_fast(100, Gfp::KERNEL).map_or_else(|| m.kmalloc(100, Gfp::KERNEL).unwrap(), |p| p);
    /// // SAFETY: 100 bytes of ours, freed once and not used afterwards.
    /// unsafe {
    ///     p.as_ptr().write_bytes(0xaa, 100);
    ///     m.kfree(p.as_ptr());
    ///     let z = m.kmalloc_try_fast(100, Gfp::KERNEL | Gfp::ZERO).expect("the sheaf has it");
    ///     assert_eq!(z, p, "the same object, last in first out");
    ///     assert!(core::slice::from_raw_parts(z.as_ptr(), 128).iter().all(|&b| b == 0), "zeroed");
    ///     m.kfree(z.as_ptr());
    /// }
    /// ```
    #[inline(always)]
    pub fn kmalloc_try_fast(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        if size.wrapping_sub(1) >= KMALLOC_MAX_CACHE_SIZE || !self.kmalloc_fast_gfp_ok(gfp) {
            return None;
        }
        if KmallocType::of(gfp) == KmallocType::Normal {
            return self.kmalloc_fast_class(kmalloc_index(size), gfp.contains(Gfp::ZERO), || self.try_pin_fast_table());
        }
        // The machine's id once, before the slot's atomic load.
        let id = self.machine_id();
        self.kmalloc_try_fast_slot(
            id,
            &self.kmalloc_state().caches[KmallocType::of(gfp) as usize][kmalloc_index(size)],
            gfp,
        )
    }

    /// [`Kmem::kmalloc_try_fast`] for a caller that has the size class already (`index`, as
    /// [`super::kmalloc_index`] or
    /// [`kmalloc_index_aligned`](super::kmalloc_index_aligned) give it: a C `malloc`'s
    /// 16-byte alignment folded into the lookup). `None` also for an index that names no
    /// class.
    ///
    /// ```
    /// use kmem::kmalloc::kmalloc_index_aligned;
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.kmalloc(24, Gfp::KERNEL).unwrap();
    /// // SAFETY: ours, freed once; the fast path then hands the same object out again.
    /// unsafe { m.kfree(p.as_ptr()) };
    /// let q = m.kmalloc_try_fast_index(kmalloc_index_aligned(20).unwrap(), Gfp::KERNEL).expect("the sheaf has it");
    /// assert_eq!((q, q.as_ptr() as usize % 16), (p, 0));
    /// assert!(m.kmalloc_try_fast_index(99, Gfp::KERNEL).is_none());
    /// // SAFETY: ours (32 bytes: kmalloc-32), freed once.
    /// unsafe {
    ///     assert_eq!(m.ksize(q.as_ptr()), 32);
    ///     m.kfree(q.as_ptr());
    /// }
    /// ```
    #[inline(always)]
    pub fn kmalloc_try_fast_index(&self, index: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        self.kmalloc_try_fast_index_with(index, gfp, || self.try_pin_fast_table_pin())
    }

    /// [`Kmem::kmalloc_try_fast_index`] on the CPU `pin` pins (`None`: the caller's slow
    /// path), for a platform that reaches its CPU without the machine, as
    /// [`Kmem::kfree_slab_or_then_with`]. Types other than the normal one pin the usual way.
    ///
    /// ```
    /// use kmem::kmalloc::kmalloc_index;
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
    /// // SAFETY: ours, freed once.
    /// unsafe { m.kfree(p.as_ptr()) };
    /// // No pin: the caller's slow path (nothing was taken).
    /// assert!(m.kmalloc_try_fast_index_with(kmalloc_index(64), Gfp::KERNEL, || None).is_none());
    /// assert_eq!(m.kmalloc_try_fast_index(kmalloc_index(64), Gfp::KERNEL), Some(p));
    /// // SAFETY: ours, freed once.
    /// unsafe { m.kfree(p.as_ptr()) };
    /// ```
    #[inline(always)]
    pub fn kmalloc_try_fast_index_with(
        &self,
        index: usize,
        gfp: Gfp,
        pin: impl FnOnce() -> Option<FastPin>,
    ) -> Option<NonNull<u8>> {
        if !self.kmalloc_fast_gfp_ok(gfp) {
            return None;
        }
        if KmallocType::of(gfp) == KmallocType::Normal {
            if index >= KMALLOC_NR {
                return None;
            }
            return self.kmalloc_fast_class(index, gfp.contains(Gfp::ZERO), || pin().map(|f| (f.pinned, f.area)));
        }
        let id = self.machine_id();
        self.kmalloc_try_fast_slot(id, self.kmalloc_state().caches[KmallocType::of(gfp) as usize].get(index)?, gfp)
    }

    /// [`Kmem::kmalloc_try_fast_index_with`] of the normal type with a request that never
    /// sleeps (`GFP_NOWAIT`, with `__GFP_ZERO` when `zero`), for a caller that reaches the
    /// machine only through `kmem`: it is called only once `pin` has pinned a CPU of it, so a
    /// caller whose machine may not exist yet (a process allocator's first allocation) has
    /// its pin fail instead of testing for the machine first. `None`: the caller's slow path.
    ///
    /// ```
    /// use kmem::kmalloc::kmalloc_index;
    /// use kmem::Kmem;
    /// use kmem_hosted::HostedPlatform;
    /// // No pin: the caller's slow path, and no look at the machine (there may be none).
    /// let none = Kmem::<HostedPlatform>::kmalloc_class_fast_with(
    ///     || unreachable!("the machine is reached only after a pin"),
    ///     kmalloc_index(64),
    ///     false,
    ///     || None,
    /// );
    /// assert!(none.is_none());
    /// ```
    #[inline(always)]
    pub fn kmalloc_class_fast_with<'a>(
        kmem: impl Fn() -> &'a Self,
        index: usize,
        zero: bool,
        pin: impl FnOnce() -> Option<FastPin>,
    ) -> Option<NonNull<u8>>
    where
        P: 'a,
    {
        if index >= KMALLOC_NR {
            return None;
        }
        Self::kmalloc_fast_class_with(kmem, index, zero, || pin().map(|f| (f.pinned, f.area)))
    }

    /// Whether `gfp` lets a kmalloc fast path serve the request: nothing to fix up or report
    /// (a sleeping request in atomic context is reported by the careful path).
    #[inline(always)]
    pub(super) fn kmalloc_fast_gfp_ok(&self, gfp: Gfp) -> bool {
        !(gfp.intersects(Gfp::SLAB_BUG_MASK) || (gfp.allows_blocking() && self.platform().atomic_context()))
    }

    /// The normal type's fast path: an object from the main sheaf that the pinned CPU's fast
    /// table names for class `index` (below [`KMALLOC_NR`]), with no look at the machine's
    /// kmalloc table or the class's cache (`slab/fast_table.rs`; the table keeps the cache's
    /// free-pointer offset and object size beside the entry). The entry exists only for the
    /// class's plain cache, and only while nothing is armed that the careful path must run
    /// (failslab, `init_on_alloc`, KFENCE's sampling): an empty entry sends the caller to its
    /// careful path, which fills it.
    /// `pin` is the fast pin ([`Kmem::try_pin_fast_table`], or the caller's platform's own
    /// way to it: [`FastPin`]).
    #[inline(always)]
    pub(super) fn kmalloc_fast_class(
        &self,
        index: usize,
        zero: bool,
        pin: impl FnOnce() -> Option<(Pinned, usize)>,
    ) -> Option<NonNull<u8>> {
        Self::kmalloc_fast_class_with(|| self, index, zero, pin)
    }

    /// [`Kmem::kmalloc_fast_class`] that reaches the machine through `kmem`, called only once
    /// `pin` has pinned a CPU.
    #[inline(always)]
    fn kmalloc_fast_class_with<'a>(
        kmem: impl Fn() -> &'a Self,
        index: usize,
        zero: bool,
        pin: impl FnOnce() -> Option<(Pinned, usize)>,
    ) -> Option<NonNull<u8>>
    where
        P: 'a,
    {
        let (p, t) = pin()?;
        // SAFETY: the pinned CPU's table.
        let t = unsafe { FastTable::at(t) };
        let obj = t.sheaf(FastTable::class_word(index)).pop();
        kmem().platform().unpin_cpu_fast(p);
        let obj = obj?;
        // The object is ours now: its free pointer stops looking like a free object's (the
        // free path's double-free check).
        // SAFETY: the entry's cache's free-pointer offset (kept beside the entry): a word
        // inside the object, which is ours.
        unsafe { crate::slab::object::clear_free_word(obj + t.class_fp(index)) };
        if zero {
            // SAFETY: the object is ours: just allocated, of its cache's object size (kept
            // beside the entry).
            unsafe { crate::slab::object::fill(obj, 0, t.class_size(index)) };
        }
        // SAFETY: object addresses are direct-map addresses, never 0.
        Some(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }

    /// The fast paths' common end: the class's cache from its table slot, if it exists and
    /// is this machine's (`id`, loaded before the slot), and an object from its CPU sheaf.
    #[inline(always)]
    fn kmalloc_try_fast_slot(&self, id: usize, slot: &crate::sync::AtomicUsize, gfp: Gfp) -> Option<NonNull<u8>> {
        let cache = KmallocState::fast_cache_of(slot.load(Ordering::Acquire))?;
        // Armed fault injection (failslab) marks the cache's machine word: kmalloc's careful
        // path runs the hook. The absent descriptor's word (0) is no machine's either.
        if !cache.fast_is_of_id(id) {
            return None;
        }
        // kmalloc caches have no constructor: `__GFP_ZERO` is the fast path's to honour.
        let obj = self.alloc_fast(cache, gfp.contains(Gfp::ZERO))?;
        // SAFETY: object addresses are direct-map addresses, never 0.
        Some(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::gfp::Gfp;
    use crate::kmalloc::index::{kmalloc_index, KmallocType};
    use crate::slab::cache::absent_addr;
    use crate::sync::Ordering;
    use crate::testing;

    /// Before a type's caches exist its slots name the absent descriptor, and the fast paths
    /// decline it by their own tests: no allocation, and a free by size goes to `other`.
    #[test]
    fn slots_without_a_cache_name_the_absent_descriptor_which_the_fast_paths_decline() {
        let k = testing::machine(64);
        let slot = |ty: KmallocType, size: usize| {
            k.state().kmalloc.caches[ty as usize][kmalloc_index(size)].load(Ordering::Relaxed)
        };
        assert_eq!(slot(KmallocType::Normal, 64), absent_addr(), "no kmalloc yet");
        assert!(k.kmalloc_try_fast(64, Gfp::KERNEL).is_none());
        let p = k.kmalloc(64, Gfp::KERNEL).unwrap();
        assert_ne!(slot(KmallocType::Normal, 64), absent_addr(), "the first kmalloc made the caches");
        assert_eq!(slot(KmallocType::Dma, 64), absent_addr(), "other types' caches are made on their first use");
        // A free by size whose class's slot names the absent descriptor (the slot pointed
        // back at it for the test) goes the other way.
        let real = slot(KmallocType::Normal, 64);
        k.state().kmalloc.caches[KmallocType::Normal as usize][kmalloc_index(64)]
            .store(absent_addr(), Ordering::Relaxed);
        let mut others = 0;
        // SAFETY: a live kmalloc block, freed once (by `other`).
        unsafe {
            k.kfree_sized_or(p.as_ptr(), 64, |p| {
                others += 1;
                k.kfree(p)
            })
        };
        assert_eq!(others, 1, "the absent descriptor's plain word matches no slab");
        // The allocation fast path does not read the slot: the CPU's fast table names the
        // class's sheaves (`slab/fast_table.rs`), which hold the object `other` freed.
        let q = k.kmalloc_try_fast(64, Gfp::KERNEL).expect("the class's entry names the real cache's sheaves");
        assert_eq!(q, p, "last in, first out");
        k.state().kmalloc.caches[KmallocType::Normal as usize][kmalloc_index(64)].store(real, Ordering::Relaxed);
        // SAFETY: ours, freed once.
        unsafe { k.kfree(q.as_ptr()) };
        assert_eq!(k.report_count(crate::ReportKind::SlabBug), 0);
    }
}
