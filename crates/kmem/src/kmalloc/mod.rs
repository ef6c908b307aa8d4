//! The kmalloc family (`include/linux/slab.h`, `mm/slab_common.c`): `kmalloc`, `kzalloc`,
//! `kcalloc`, `kmalloc_array`, `krealloc`, `kfree`, `kfree_sensitive`, `ksize`,
//! `kmalloc_size_roundup`, `kmemdup`, `kstrdup`, `kvmalloc`/`kvfree` (falling back to vmalloc).
//!
//! - **Size classes** ([`index`]): `kmalloc-8` … `kmalloc-8k` plus `kmalloc-96` and
//!   `kmalloc-192`, Linux's `__kmalloc_index`; three types chosen by `kmalloc_type(gfp)`:
//!   `kmalloc-<n>`, `kmalloc-rcl-<n>` (`__GFP_RECLAIMABLE`), `dma-kmalloc-<n>` (`__GFP_DMA`).
//!   A type's 13 caches are created on its first use (Linux creates them at boot; a machine
//!   that never kmallocs pays nothing), from any context (atomic callers create them with
//!   `GFP_ATOMIC`), and are never merged into other caches. They carry `SLAB_KMALLOC`, so debug caches record each
//!   request's size and red-zone the rest of the bucket (`kmalloc Redzone overwritten`).
//! - **Alignment**: at least 8 bytes; power-of-two sizes are naturally aligned (the caches of
//!   power-of-two classes are created with that alignment; large blocks are page-aligned).
//! - **Large** requests (above [`KMALLOC_MAX_CACHE_SIZE`], up to [`KMALLOC_MAX_SIZE`]) are
//!   compound pages marked `PG_large_kmalloc`, counted in `SUnreclaim`, as Linux's
//!   `__kmalloc_large_node`.
//! - **kfree** (and `ksize`, `krealloc`) finds the object's slab and cache from the address (`virt_to_slab`), or the
//!   large block; a pointer kmem did not hand out (no slab, not the start of a large block,
//!   an interior pointer, a double free) is reported and nothing is freed.

mod error;
mod fast;
pub mod index;
mod kv;
mod nolock;
mod resize;

use core::ptr::NonNull;

pub use error::{KmallocError, KmallocErrorKind};
pub use index::{
    kmalloc_index, kmalloc_index_aligned, kmalloc_name, kmalloc_size, KmallocType, KMALLOC_ALIGN,
    KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, KMALLOC_MIN_SIZE, KMALLOC_NR, ZERO_SIZE_PTR,
};

use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page::pg;
use crate::mm::page_ref::PageRef;
use crate::platform::Platform;
use crate::slab::cache::absent_addr;
use crate::slab::create::CreateArgs;
use crate::slab::free::Lookup;
use crate::slab::slab_page::Slab;
use crate::slab::{KmemCache, SlabFlags};
use crate::sync::{array_of, const_fn_unless_loom, AtomicUsize, Ordering};
use crate::{Order, VirtAddr, PAGE_SIZE};

/// The machine's kmalloc caches: descriptor addresses by type and size class. A class whose
/// cache does not exist yet names the shared absent descriptor
/// ([`absent_addr`](crate::slab::cache::absent_addr), from `kmem_cache_init` on), which
/// every fast path declines by the tests it makes anyway, so they read a slot's cache
/// without testing the slot (2 instructions off every kmalloc and `kfree_sized_or`).
#[derive(Debug)]
pub(crate) struct KmallocState {
    caches: [[AtomicUsize; KMALLOC_NR]; KmallocType::COUNT],
}

impl KmallocState {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self { caches: array_of![array_of![AtomicUsize::new(0); KMALLOC_NR]; KmallocType::COUNT] }
        }
    }

    /// Points every slot at the absent descriptor (`kmem_cache_init`, before any kmalloc).
    pub(crate) fn init_slots(&self) {
        for slot in self.caches.iter().flatten() {
            slot.store(absent_addr(), Ordering::Relaxed);
        }
    }

    /// The address of the normal caches' slots, for a [`FreeMap`](crate::slab::FreeMap).
    pub(crate) fn normal_slots_addr(&self) -> usize {
        self.caches[KmallocType::Normal as usize].as_ptr() as usize
    }

    /// Slot `index` of the normal caches' slots at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` is a live machine's [`KmallocState::normal_slots_addr`], which lives for `'a`;
    /// `index` is a size class's (below `KMALLOC_NR`).
    #[inline(always)]
    pub(crate) unsafe fn normal_slot_at<'a>(addr: usize, index: usize) -> &'a AtomicUsize {
        debug_assert!(index < KMALLOC_NR);
        // SAFETY: caller's contract: a slot of the array.
        unsafe { &*(addr as *const AtomicUsize).add(index) }
    }

    /// The cache a slot's value names, if it exists (the careful paths).
    #[inline(always)]
    pub(crate) fn cache_of<'a>(p: usize) -> Option<&'a KmemCache> {
        // SAFETY: slots hold descriptors of kmalloc caches, which are never destroyed, or
        // the absent one.
        (p != absent_addr()).then(|| unsafe { &*(p as *const KmemCache) })
    }

    /// A slot's cache for a fast path, the absent descriptor included (its tests decline
    /// it); under loom, whose slots stay 0 until their cache exists, `None` for those.
    #[inline(always)]
    pub(crate) fn fast_cache_of<'a>(p: usize) -> Option<&'a KmemCache> {
        #[cfg(loom)]
        if p == 0 {
            return None;
        }
        // SAFETY: as in `cache_of`; the absent descriptor is a static that lives forever.
        Some(unsafe { &*(p as *const KmemCache) })
    }
}

/// What a pointer given to `kfree`/`ksize`/`krealloc` is.
enum Owner<'a> {
    /// `ZERO_SIZE_PTR` or null.
    Nothing,
    /// The start of an object of this slab of this cache, at this offset from object 0 at
    /// this address.
    Slab(Slab<'a>, &'a KmemCache, u32, usize),
    /// Inside a slab of this cache, but no object start.
    NotObject(Slab<'a>, &'a KmemCache),
    /// The start of a large kmalloc block of this order.
    Large(PageRef<'a>, u32),
    /// An address in the KFENCE pool (`is_kfence_address`): KFENCE checks it.
    Kfence,
    /// Nothing kmalloc hands out.
    Invalid,
}

/// `kmalloc_size_roundup(size)`: the bytes a kmalloc of `size` really gets (its bucket), so
/// callers can ask for that much; `size` itself above [`KMALLOC_MAX_SIZE`], 0 for 0.
pub const fn kmalloc_size_roundup(size: usize) -> usize {
    if size == 0 {
        0
    } else if size <= KMALLOC_MAX_CACHE_SIZE {
        kmalloc_size(kmalloc_index(size))
    } else if size <= KMALLOC_MAX_SIZE {
        PAGE_SIZE << crate::slab::layout::get_order(size as u32)
    } else {
        size
    }
}

/// The `ZERO_SIZE_PTR` pointer.
pub const fn zero_size_ptr() -> NonNull<u8> {
    // SAFETY: 16 is not 0.
    unsafe { NonNull::new_unchecked(ZERO_SIZE_PTR as *mut u8) }
}

impl<P: Platform> Kmem<P> {
    fn kmalloc_state(&self) -> &KmallocState {
        &self.state().kmalloc
    }

    /// The cache of size class `index` of type `ty`, creating the type's caches on first use.
    #[inline]
    fn kmalloc_cache(&self, ty: KmallocType, index: usize, gfp: Gfp) -> Result<&KmemCache, KmallocErrorKind> {
        let p = self.kmalloc_state().caches[ty as usize][index].load(Ordering::Acquire);
        if let Some(c) = KmallocState::cache_of(p) {
            return Ok(c);
        }
        self.create_kmalloc_caches(ty, gfp)?;
        let p = self.kmalloc_state().caches[ty as usize][index].load(Ordering::Acquire);
        // `create_kmalloc_caches` filled every slot of the type.
        Ok(KmallocState::cache_of(p).expect("kmalloc caches created"))
    }

    /// `create_kmalloc_caches()` for one type. Safe to race: the loser of a slot destroys its
    /// cache. A request that may not sleep creates them with non-blocking allocations.
    #[cold]
    fn create_kmalloc_caches(&self, ty: KmallocType, gfp: Gfp) -> Result<(), KmallocErrorKind> {
        let blocking = gfp.allows_blocking() && !self.platform().atomic_context();
        let cgfp = if blocking { Gfp::KERNEL } else { Gfp::ATOMIC };
        let flags = SlabFlags::KMALLOC
            | match ty {
                KmallocType::Normal => SlabFlags::NONE,
                KmallocType::Reclaim => SlabFlags::RECLAIM_ACCOUNT,
                KmallocType::Dma => SlabFlags::CACHE_DMA,
            };
        for index in 1..KMALLOC_NR {
            let slot = &self.kmalloc_state().caches[ty as usize][index];
            if slot.load(Ordering::Acquire) != absent_addr() {
                continue;
            }
            let mut buf = [0u8; 32];
            let name = cache_name(&mut buf, ty, index);
            let size = kmalloc_size(index);
            let align = if size.is_power_of_two() { size } else { KMALLOC_ALIGN };
            let args = CreateArgs {
                name,
                size,
                align,
                flags,
                ctor: None,
                gfp: cgfp,
                mergeable: false,
                internal: true,
                sheaf_capacity: None,
            };
            let c = self.create_cache(args).map_err(KmallocErrorKind::Cache)?;
            let raw = c.into_raw();
            if slot.compare_exchange(absent_addr(), raw.as_ptr() as usize, Ordering::AcqRel, Ordering::Acquire).is_err()
            {
                // SAFETY: our cache lost the race; nothing else has seen it.
                let c = unsafe { crate::slab::Cache::from_raw(self, raw) };
                self.kmem_cache_destroy(c);
            } else if ty == KmallocType::Normal {
                // The class's cache from now on (only then: a loser's would name its class).
                // SAFETY: a cache of this machine, never destroyed (it is the class's).
                self.kmalloc_give_class_entry(unsafe { raw.as_ref() }, index);
            }
        }
        Ok(())
    }

    /// Gives cache `s`, kmalloc's normal cache of class `index`, its class entry in the
    /// CPUs' fast tables (`slab/fast_table.rs`) if the allocation fast path can hand out its
    /// objects knowing only the class: a plain cache with sheaves (not a debug cache, not one
    /// zeroed on allocation or free).
    fn kmalloc_give_class_entry(&self, s: &crate::slab::KmemCache, index: usize) {
        if !s.debug && s.meminit == 0 && s.sheaf_capacity > 0 && s.ctor.is_none() {
            s.fast_class.store(index as u8, Ordering::Relaxed);
        }
    }

    /// `kmalloc(size, gfp)`: `size` bytes, at least 8-aligned, naturally aligned for power-of-two
    /// sizes; `kmalloc(0)` is [`ZERO_SIZE_PTR`] (not dereferenceable; `kfree` takes it).
    ///
    /// ```
    /// use kmem::Gfp;
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.kmalloc(100, Gfp::KERNEL).unwrap();
    /// // SAFETY: `p` is ours; ksize says how much of it we may use.
    /// assert_eq!(unsafe { m.ksize(p.as_ptr()) }, 128);
    /// unsafe { m.kfree(p.as_ptr()) };
    /// ```
    #[inline]
    #[track_caller]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        self.kmalloc_node_at(size, gfp, None, core::panic::Location::caller())
    }

    /// `kzalloc(size, gfp)`: zeroed.
    #[inline]
    #[track_caller]
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        self.kmalloc_node_at(size, gfp | Gfp::ZERO, None, core::panic::Location::caller())
    }

    /// `kmalloc_node(size, gfp, node)`.
    #[track_caller]
    pub fn kmalloc_node(&self, size: usize, gfp: Gfp, node: Option<usize>) -> Result<NonNull<u8>, KmallocError> {
        self.kmalloc_node_at(size, gfp, node, core::panic::Location::caller())
    }

    /// `kmalloc_array(n, size, gfp)`: `n * size` bytes; an overflowing product is an error,
    /// never a short buffer.
    #[track_caller]
    pub fn kmalloc_array(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let bytes = n.checked_mul(size).ok_or(KmallocError { size, gfp, kind: KmallocErrorKind::Overflow })?;
        self.kmalloc_node_at(bytes, gfp, None, core::panic::Location::caller())
    }

    /// `kcalloc(n, size, gfp)`: `kmalloc_array` zeroed.
    #[track_caller]
    pub fn kcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let bytes = n.checked_mul(size).ok_or(KmallocError { size, gfp, kind: KmallocErrorKind::Overflow })?;
        self.kmalloc_node_at(bytes, gfp | Gfp::ZERO, None, core::panic::Location::caller())
    }

    /// `kmalloc_node_track_caller`: the one entry of the family. Inlined down to the slab
    /// fast path for sizes the caches serve (a class table lookup, the cache slot, the
    /// sheaf pop); everything else, and the slab slow path, are out of line.
    #[inline(always)]
    pub(crate) fn kmalloc_node_at(
        &self,
        size: usize,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
    ) -> Result<NonNull<u8>, KmallocError> {
        if size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE {
            let (ty, index) = (KmallocType::of(gfp), kmalloc_index(size));
            if ty == KmallocType::Normal && node.is_none() && self.kmalloc_fast_gfp_ok(gfp) {
                // The CPU's fast table names the class's sheaves (`fast.rs`).
                if let Some(obj) = self.kmalloc_fast_class(index, gfp.contains(Gfp::ZERO), || self.try_pin_fast_table())
                {
                    return Ok(obj);
                }
            } else {
                let p = self.kmalloc_state().caches[ty as usize][index].load(Ordering::Acquire);
                // The absent descriptor (no cache yet) fails the fast path's machine test.
                if let Some(cache) = KmallocState::fast_cache_of(p) {
                    if let Some(obj) = self.slab_alloc_try_fast(cache, gfp, node) {
                        return Ok(obj);
                    }
                }
            }
            let p = self.kmalloc_state().caches[ty as usize][index].load(Ordering::Acquire);
            return self.kmalloc_careful(p, size, gfp, node, caller);
        }
        self.kmalloc_node_slow(size, gfp, node, caller)
    }

    /// [`Kmem::kmalloc_node_at`] past the slab fast path: the careful path of the class's
    /// cache (slot value `p`), or the slow path that creates the caches.
    #[cold]
    #[inline(never)]
    fn kmalloc_careful(
        &self,
        p: usize,
        size: usize,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
    ) -> Result<NonNull<u8>, KmallocError> {
        let Some(cache) = KmallocState::cache_of(p) else {
            return self.kmalloc_node_slow(size, gfp, node, caller);
        };
        self.slab_alloc_careful(cache, gfp, node, caller, Some(size as u32)).map_err(|e| KmallocError {
            size,
            gfp,
            kind: KmallocErrorKind::Slab(e),
        })
    }

    /// [`Kmem::kmalloc_node_at`] for a large or zero size, or a class whose caches do not
    /// exist yet.
    #[inline(never)]
    fn kmalloc_node_slow(
        &self,
        size: usize,
        gfp: Gfp,
        node: Option<usize>,
        caller: &'static core::panic::Location<'static>,
    ) -> Result<NonNull<u8>, KmallocError> {
        if size > KMALLOC_MAX_CACHE_SIZE {
            return self.kmalloc_large(size, gfp, node);
        }
        if size == 0 {
            return Ok(zero_size_ptr());
        }
        let err = |kind| KmallocError { size, gfp, kind };
        let cache = self.kmalloc_cache(KmallocType::of(gfp), kmalloc_index(size), gfp).map_err(err)?;
        self.slab_alloc_sized(cache, gfp, node, caller, Some(size as u32)).map_err(|e| err(KmallocErrorKind::Slab(e)))
    }

    /// `__kmalloc_large_node()`: compound pages for requests above the largest cache.
    #[cold]
    fn kmalloc_large(&self, size: usize, gfp: Gfp, node: Option<usize>) -> Result<NonNull<u8>, KmallocError> {
        let err = |kind| KmallocError { size, gfp, kind };
        if size > KMALLOC_MAX_SIZE {
            if !gfp.contains(Gfp::NOWARN) {
                self.warn_on("__kmalloc_large_node", &|w| {
                    write!(w, "kmalloc of {size} bytes: above KMALLOC_MAX_SIZE ({KMALLOC_MAX_SIZE})")
                });
            }
            return Err(err(KmallocErrorKind::TooLarge));
        }
        let order = crate::slab::layout::get_order(size as u32);
        let g = gfp.without(Gfp::SLAB_BUG_MASK).union(Gfp::COMP);
        let page = self.alloc_pages_node(node, g, Order::of(order)).map_err(|e| err(KmallocErrorKind::Pages(e)))?;
        page.page().set_exclusive(pg::LARGE_KMALLOC);
        if let Some(n) = self.node(page.page().node()) {
            n.mod_slab_pages(false, 1 << order);
        }
        let addr = self.page_address(page).expect("kmalloc pages are direct-mapped (no __GFP_HIGHMEM)");
        Ok(NonNull::new(addr.as_mut_ptr::<u8>()).expect("direct-map addresses are not null"))
    }

    /// What `p` is (`virt_to_slab` / `folio_test_large_kmalloc`).
    #[inline]
    fn kmalloc_owner(&self, p: *const u8) -> Owner<'_> {
        let addr = p as usize;
        if addr <= ZERO_SIZE_PTR {
            return Owner::Nothing;
        }
        match self.lookup_object(addr) {
            // kmem's own objects (sheaves, cache descriptors) are nobody else's to free.
            Lookup::Object(_, c, ..) | Lookup::Invalid(_, c) if c.is_kmem_internal() => Owner::Invalid,
            Lookup::Object(slab, c, off, base) => Owner::Slab(slab, c, off, base),
            Lookup::Invalid(slab, c) => Owner::NotObject(slab, c),
            Lookup::NotSlab => self.kmalloc_owner_large(addr),
        }
    }

    /// The rest of [`Kmem::kmalloc_owner`]: a large kmalloc block, or nothing kmalloc made.
    #[inline(never)]
    fn kmalloc_owner_large(&self, addr: usize) -> Owner<'_> {
        if self.is_kfence_address(addr as *const u8) {
            return Owner::Kfence;
        }
        let Some(page) = self.virt_to_page(VirtAddr::new(addr)) else { return Owner::Invalid };
        let head = self.compound_head(page);
        if head.page().test(pg::LARGE_KMALLOC) && self.page_address(head).map(VirtAddr::as_usize) == Some(addr) {
            let order = head.page().alloc_order().unwrap_or(0) as u32;
            return Owner::Large(head, order);
        }
        Owner::Invalid
    }

    #[cold]
    fn kfree_invalid(&self, func: &str, p: *const u8) {
        self.warn_on(func, &|w| write!(w, "object pointer: 0x{:016x} was not returned by kmalloc", p as usize));
    }

    /// `kfree(p)`: frees what `kmalloc` (or any slab cache: Linux's `kfree` takes those too)
    /// returned. Null and `ZERO_SIZE_PTR` are no-ops. A pointer kmem did not hand out is
    /// reported (`WARNING` for a non-slab address, the slab's `BUG` report for a bad object
    /// pointer) and nothing is freed.
    ///
    /// # Safety
    ///
    /// `p` must be null, `ZERO_SIZE_PTR`, or an allocation of this machine that the caller
    /// owns and no longer uses. As with `kmem_cache_free`, many mistakes are detected, but a
    /// stale pointer to memory reallocated since cannot be told from a live one.
    #[inline]
    #[track_caller]
    pub unsafe fn kfree(&self, p: *const u8) {
        // SAFETY: forwarded caller contract.
        unsafe { self.kfree_large(p) };
    }

    /// [`Kmem::kfree`] that also says whether it freed a large block, and its bytes (0 for a
    /// slab object or when nothing was freed): `kmem-alloc` gives memory back to its host
    /// after large frees, and asks without a second lookup.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`].
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kfree_large(&self, p: *const u8) -> usize {
        let addr = p as usize;
        // An object of a plain slab first: its head's word names the cache (see slab/free.rs).
        // NULL and ZERO_SIZE_PTR need no test here: they are outside the direct map, or in a
        // frame boot reserved (`boot/null_frames.rs`), never in a slab; `kfree_other` returns
        // for them.
        if let Some(o) = self.plain_slab_of(addr) {
            if o.chk.is_plain_object(o.off) {
                self.free_checked_id_then(
                    o.chk,
                    o.id,
                    o.slab,
                    addr,
                    o.off,
                    o.word,
                    || self.try_pin_fast_table(),
                    || {},
                );
                return 0;
            }
        }
        self.kfree_other(p, core::panic::Location::caller())
    }

    /// [`Kmem::kfree_large`] of anything but a slab object: a large block, or a bad pointer.
    #[inline(never)]
    fn kfree_other(&self, p: *const u8, caller: &'static core::panic::Location<'static>) -> usize {
        match self.kmalloc_owner(p) {
            Owner::Nothing => 0,
            Owner::Slab(slab, c, off, base) => {
                self.free_object(c, slab, off, base, caller);
                0
            }
            Owner::NotObject(slab, c) => {
                self.invalid_object_pointer(c, Some(slab), p as usize);
                0
            }
            Owner::Large(head, order) => {
                self.free_large_kmalloc(head, order);
                PAGE_SIZE << order
            }
            Owner::Kfence => {
                self.kfence_free(p as usize, caller);
                0
            }
            Owner::Invalid => {
                self.kfree_invalid("kfree", p);
                0
            }
        }
    }

    /// `free_large_kmalloc()`.
    #[inline(never)]
    fn free_large_kmalloc(&self, head: PageRef<'_>, order: u32) {
        head.page().clear_exclusive(pg::LARGE_KMALLOC);
        if let Some(n) = self.node(head.page().node()) {
            n.mod_slab_pages(false, -(1 << order));
        }
        // SAFETY: the block was a large kmalloc owned by the caller of `kfree`.
        unsafe { self.__free_pages(head, Order::of(order)) };
    }

    /// The kmalloc cache serving `size` bytes with `gfp` (created if needed), if `size` is
    /// cache-sized.
    pub fn kmalloc_slab(&self, size: usize, gfp: Gfp) -> Option<&KmemCache> {
        if size == 0 || size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        self.kmalloc_cache(KmallocType::of(gfp), kmalloc_index(size), gfp).ok()
    }

    /// Whether `p` is a live large kmalloc block's start.
    pub fn is_large_kmalloc(&self, p: *const u8) -> bool {
        matches!(self.kmalloc_owner(p), Owner::Large(..))
    }
}

/// `kmalloc_info[].name` with the type's prefix, in `buf`.
fn cache_name(buf: &mut [u8; 32], ty: KmallocType, index: usize) -> &str {
    let (a, b) = (ty.prefix().as_bytes(), kmalloc_name(index).as_bytes());
    buf[..a.len()].copy_from_slice(a);
    buf[a.len()..a.len() + b.len()].copy_from_slice(b);
    core::str::from_utf8(&buf[..a.len() + b.len()]).expect("ASCII names")
}
