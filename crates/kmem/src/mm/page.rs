//! The page descriptor (`struct page`): 32 bytes per 4 KiB frame.
//!
//! Layout (all fields atomic, so shared access is always defined; writers follow the
//! ownership rules below):
//!
//! | field      | bytes | free (buddy) page           | allocated page                         |
//! |------------|-------|-----------------------------|----------------------------------------|
//! | `flags`    | 8     | PG_buddy                    | PG_head/tail/slab/..., allocation order |
//! | `refcount` | 4     | 0                           | >= 1 on the head, 0 on tails            |
//! | `private`  | 4     | order \| migratetype << 8   | tail: distance to the compound head     |
//! | `next`     | 4     | free-list link (pfn)        | owner's list link (slab, pcp)           |
//! | `prev`     | 4     | free-list link (pfn)        | owner's list link (slab, pcp)           |
//! | `data`     | 8     | unused                      | owner's word (`page->private`)          |
//!
//! `flags` bits 32..64 hold the section number (32..55), then the zone type (55..58) and the
//! node (58..64), on top as in Linux's layout (the zone and node are one shift); they are
//! written once at boot and never change, so `page_zone()` and `page_to_pfn()` need no lock.
//!
//! Ownership: a free page's fields belong to its zone and change only under the zone lock;
//! an allocated page's fields belong to its owner. `refcount` is the arbiter between them:
//! only the 1 -> 0 transition may hand a block back to the zone.
//!
//! `page_to_pfn` uses the section number in the flags; `pfn_to_page` indexes the section
//! table, or is one multiply-add on a flat memory map (`memmap.rs`). Free lists link pages by pfn (32-bit links), so a machine spans at
//! most 2^32 frames (16 TiB).

use crate::sync::{const_fn_unless_loom, AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Page flags (low 32 bits of `Page::flags`).
pub mod pg {
    /// Not managed by the buddy allocator (firmware, holes, boot allocations).
    pub const RESERVED: u64 = 1 << 0;
    /// Free, on a buddy free list. Not stored in `flags`: like Linux's `page_type`, buddy state
    /// lives in a word only the zone-lock holder writes (`private`, see [`super::Page::is_buddy`]);
    /// the bit appears in [`super::Page::state_flags`] for dumps and checks.
    pub const BUDDY: u64 = 1 << 1;
    /// First page of a compound allocation.
    pub const HEAD: u64 = 1 << 2;
    /// Other pages of a compound allocation.
    pub const TAIL: u64 = 1 << 3;
    /// Owned by the slab allocator.
    pub const SLAB: u64 = 1 << 4;
    /// On a per-CPU page list. Like `BUDDY`, kept in the page type, folded into
    /// `state_flags` for dumps and checks.
    pub const PCP: u64 = 1 << 5;
    /// A page-table page.
    pub const PGTABLE: u64 = 1 << 6;
    /// Backing a vmalloc area.
    pub const VMALLOC: u64 = 1 << 7;
    /// A kmalloc allocation too large for the slab caches.
    pub const LARGE_KMALLOC: u64 = 1 << 8;
    /// Backing per-CPU chunks.
    pub const PERCPU: u64 = 1 << 9;
    /// Pages that exist in the memory map's hole inside a present section (no RAM).
    pub const NOMEM: u64 = 1 << 10;
    /// A free block whose contents were given back to the host (free page reporting); set
    /// only on free block heads, under the zone lock.
    pub const REPORTED: u64 = 1 << 11;
    /// A free block whose memory reads as zero (never written since boot or hot-add on RAM
    /// the platform promises reads as zero, or cleared by `init_on_free`); set only on free
    /// block heads, under the zone lock or by the CPU owning the per-CPU list the page is
    /// on. An allocation that asks for `__GFP_ZERO` skips the clearing (and so never touches
    /// the block). Kept by a split for both halves, by a merge only when both halves have it
    /// (`mm/zeroed.rs`). Bookkeeping of kmem's own, as Linux's page-reporting state: not
    /// in the state flags reports print ([`super::Page::state_flags`]).
    pub const ZEROED: u64 = 1 << 24;
    /// Flags that must be clear when a page is freed (`PAGE_FLAGS_CHECK_AT_FREE`).
    pub const CHECK_AT_FREE: u64 = RESERVED | BUDDY | SLAB | PCP | NOMEM;

    /// Names for `flags: 0x...(name|name)` dumps, in bit order.
    pub const NAMES: [(u64, &str); 12] = [
        (RESERVED, "reserved"),
        (BUDDY, "buddy"),
        (HEAD, "head"),
        (TAIL, "tail"),
        (SLAB, "slab"),
        (PCP, "pcp"),
        (PGTABLE, "pgtable"),
        (VMALLOC, "vmalloc"),
        (LARGE_KMALLOC, "large_kmalloc"),
        (PERCPU, "percpu"),
        (NOMEM, "nomem"),
        (REPORTED, "reported"),
    ];
}

/// Bits 12..16 of `flags`: allocation order + 1 on the first page of a block handed out by the
/// page allocator (0: not the start of an allocation). It lets `__free_pages` detect a wrong
/// order or an interior pointer, which Linux cannot.
const ALLOC_ORDER_SHIFT: u32 = 12;
const ALLOC_ORDER_MASK: u64 = 0xf << ALLOC_ORDER_SHIFT;
/// The identity bits, at the top of `flags` as in Linux's layout: the section number in
/// bits 32..55, then the zone (55..58) and the node (58..64). The zone and node on top make
/// the free fast path's zone key one shift of the flags word, no mask.
const SECTION_SHIFT: u32 = 32;
const SECTION_BITS: u32 = ZONE_SHIFT - SECTION_SHIFT;
const ZONE_SHIFT: u32 = 55;
const NODE_SHIFT: u32 = 58;
/// Largest node number + 1 that fits the flags.
pub const MAX_NUMNODES: usize = 1 << (64 - NODE_SHIFT);
/// Largest section number + 1 that fits the flags.
pub const MAX_SECTIONS: usize = 1 << SECTION_BITS;

/// The top byte of `private` holds the page type, as Linux's `page_type`.
const PAGE_TYPE_MASK: u32 = 0xff00_0000;
/// Page type of a free buddy page.
const PAGE_TYPE_BUDDY: u32 = 0xf000_0000;
/// Page type of a free page on a per-CPU list.
const PAGE_TYPE_PCP: u32 = 0xe000_0000;
/// Page type of the head page of a slab (`PGTY_slab`); the low 23 bits name the cache.
const PAGE_TYPE_SLAB: u32 = 0xd000_0000;
/// Bit 23 of a slab head's `private`: a *plain* slab, whose object 0 starts the slab and
/// which holds as many objects as a slab of its cache's order (no colour, no left red zone,
/// not an order fallback, not a debug cache). The free fast path recognises an object of a
/// plain slab of the cache it names with one compare of this word ([`Page::slab_word`]).
const SLAB_PLAIN: u32 = 1 << 23;
/// Cache ids that fit beside the slab page type and the plain bit.
pub const MAX_SLAB_CACHE_ID: u32 = SLAB_PLAIN - 1;
/// Bits 16..24 of `flags` on a slab head: the slab's colour, in cache lines.
const COLOUR_SHIFT: u32 = 16;
const COLOUR_MASK: u64 = 0xff << COLOUR_SHIFT;

/// A page's zone type index and node id ([`Page::identity`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageIdentity {
    /// Zone type index.
    pub(crate) zone: usize,
    /// Node id.
    pub(crate) node: usize,
}

impl PageIdentity {
    #[inline(always)]
    fn of(f: u64) -> Self {
        PageIdentity { zone: ((f >> ZONE_SHIFT) & 0x7) as usize, node: (f >> NODE_SHIFT) as usize }
    }
    /// The zone and node as one number, as `flags` holds them (zone in the low 3 bits): the
    /// free fast path tells the fast zone's pages by one compare of it.
    #[inline(always)]
    pub(crate) const fn key(zone: usize, node: usize) -> u32 {
        (zone | node << (NODE_SHIFT - ZONE_SHIFT)) as u32
    }
}

/// No link (end of a free list).
pub const NIL: u32 = u32::MAX;

/// One page frame's descriptor. See the module docs for the field protocol.
///
/// Only kmem changes a descriptor: users read it (flags, refcount, owner's word), and the one
/// write they may make, the owner's word of a page they allocated, is
/// [`PageRef::set_private`](crate::PageRef::set_private), which is `unsafe`. So safe code
/// cannot reach kmem's state through a descriptor:
///
/// ```compile_fail,E0624
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let p = m.alloc_pages(kmem::Gfp::KERNEL, kmem::Order::ZERO).unwrap();
/// p.page().set_refcount(3); // private to kmem
/// ```
/// ```compile_fail,E0624
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let p = m.alloc_pages(kmem::Gfp::KERNEL, kmem::Order::ZERO).unwrap();
/// p.page().set_data(0xdead); // private to kmem
/// ```
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let p = m.alloc_pages(kmem::Gfp::KERNEL, kmem::Order::ZERO).unwrap();
/// assert_eq!(p.page().refcount(), 1); // reading is fine
/// # // SAFETY: the page is ours and no longer used.
/// # unsafe { m.__free_pages(p, kmem::Order::ZERO) };
/// ```
#[repr(C, align(32))]
#[derive(Debug)]
pub struct Page {
    flags: AtomicU64,
    refcount: AtomicI32,
    private: AtomicU32,
    /// List links (Linux's `lru`), as two words so that relinking a neighbour is one store.
    next: AtomicU32,
    prev: AtomicU32,
    data: AtomicU64,
}

// Loom's atomics are larger than the hardware's; the layout holds for every real build.
#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Page>() == 32);

impl Page {
    /// Size of a descriptor in bytes.
    pub const SIZE: usize = core::mem::size_of::<Page>();

    const_fn_unless_loom! {
        /// A fresh descriptor for boot: reserved, refcount 1, the given identity.
        pub(crate) fn new_boot(zone: u8, node: u8, section: usize, extra_flags: u64) -> Page {
            let id = (zone as u64) << ZONE_SHIFT | (node as u64) << NODE_SHIFT | (section as u64) << SECTION_SHIFT;
            Page {
                flags: AtomicU64::new(id | pg::RESERVED | extra_flags),
                refcount: AtomicI32::new(1),
                private: AtomicU32::new(0),
                next: AtomicU32::new(NIL),
                prev: AtomicU32::new(NIL),
                data: AtomicU64::new(0),
            }
        }
    }

    /// Writes a fresh descriptor for a frame about to be freed to the buddy allocator for the
    /// first time (deferred struct-page init: `__init_single_page` + `__ClearPageReserved` +
    /// `set_page_count(0)`): the identity, no flags, refcount 0. Field by field, with atomic
    /// stores, because lock-free readers may look at the slot meanwhile (they find it zero
    /// before and a page nobody owns after).
    pub(crate) fn init_free(&self, zone: u8, node: u8, section: usize) {
        let id = (zone as u64) << ZONE_SHIFT | (node as u64) << NODE_SHIFT | (section as u64) << SECTION_SHIFT;
        self.refcount.store(0, Ordering::Relaxed);
        self.private.store(0, Ordering::Relaxed);
        self.next.store(NIL, Ordering::Relaxed);
        self.prev.store(NIL, Ordering::Relaxed);
        self.data.store(0, Ordering::Relaxed);
        self.flags.store(id, Ordering::Relaxed);
    }

    /// All flags (identity bits included).
    #[inline]
    pub fn flags(&self) -> u64 {
        self.flags.load(Ordering::Relaxed)
    }
    /// The page-state flags only (low 32 bits, allocation order, colour and [`pg::ZEROED`]
    /// masked out), with `PG_buddy` folded in from the buddy type.
    #[inline]
    pub fn state_flags(&self) -> u64 {
        let f = self.flags() & 0xffff_ffff & !(ALLOC_ORDER_MASK | COLOUR_MASK | pg::ZEROED);
        if self.is_buddy() {
            f | pg::BUDDY
        } else if self.is_pcp() {
            f | pg::PCP
        } else {
            f
        }
    }
    /// True if all of `f` are set.
    #[inline]
    pub fn test(&self, f: u64) -> bool {
        self.flags() & f == f
    }
    /// Sets flags of a page nobody else can be updating (its owner, or the zone-lock holder
    /// for a free page): a plain load and store, no locked instruction.
    #[inline]
    pub(crate) fn set_exclusive(&self, f: u64) {
        self.flags.store(self.flags.load(Ordering::Relaxed) | f, Ordering::Relaxed);
    }
    /// Clears flags of a page nobody else can be updating (see [`Page::set_exclusive`]).
    #[inline]
    pub(crate) fn clear_exclusive(&self, f: u64) {
        self.flags.store(self.flags.load(Ordering::Relaxed) & !f, Ordering::Relaxed);
    }
    /// Sets flags.
    #[inline]
    pub(crate) fn set(&self, f: u64) {
        self.flags.fetch_or(f, Ordering::Relaxed);
    }
    /// Clears flags.
    #[inline]
    pub(crate) fn clear(&self, f: u64) {
        self.flags.fetch_and(!f, Ordering::Relaxed);
    }
    /// Zone type index from the identity bits.
    #[inline]
    pub fn zone_index(&self) -> usize {
        ((self.flags() >> ZONE_SHIFT) & 0x7) as usize
    }
    /// Node id from the identity bits.
    #[inline]
    pub fn node(&self) -> usize {
        (self.flags() >> NODE_SHIFT) as usize
    }
    /// Zone type index and node id from one read of the identity bits (`page_zone()`).
    #[inline(always)]
    pub(crate) fn identity(&self) -> PageIdentity {
        PageIdentity::of(self.flags())
    }
    /// Section number from the identity bits.
    #[inline]
    pub fn section(&self) -> usize {
        ((self.flags() >> SECTION_SHIFT) & ((1 << SECTION_BITS) - 1)) as usize
    }

    /// The order recorded when this page was handed out as the start of a block.
    #[inline]
    pub fn alloc_order(&self) -> Option<u8> {
        let v = (self.flags() & ALLOC_ORDER_MASK) >> ALLOC_ORDER_SHIFT;
        if v == 0 {
            None
        } else {
            Some(v as u8 - 1)
        }
    }
    /// Records (or with `None`, forgets) the allocation order, and forgets
    /// [`pg::ZEROED`] (a block being handed out or freed is its owner's to write). The caller
    /// owns the page exclusively, so this is a plain load and store.
    #[inline]
    pub(crate) fn set_alloc_order(&self, order: Option<u8>) {
        let v = order.map_or(0, |o| (o as u64 + 1) << ALLOC_ORDER_SHIFT);
        let f = self.flags.load(Ordering::Relaxed) & !(ALLOC_ORDER_MASK | pg::ZEROED);
        self.flags.store(f | v, Ordering::Relaxed);
    }

    /// `prep_new_page()` of an order-0 block just taken off a per-CPU list (its page type
    /// already cleared): owner's word 0, not reported, allocation order 0 recorded, a
    /// refcount of one. Returns whether the page read as zero ([`pg::ZEROED`], which it
    /// forgets): a `__GFP_ZERO` caller need not clear it.
    #[inline(always)]
    pub(crate) fn prep_order0(&self) -> bool {
        self.data.store(0, Ordering::Relaxed);
        let old = self.flags.load(Ordering::Relaxed);
        let f = old & !(pg::REPORTED | pg::ZEROED | ALLOC_ORDER_MASK);
        self.flags.store(f | 1 << ALLOC_ORDER_SHIFT, Ordering::Relaxed);
        self.refcount.store(1, Ordering::Release);
        old & pg::ZEROED != 0
    }

    /// The page's identity as a [`PageIdentity::key`] if it is exactly what an order-0
    /// allocation left: no state flag at all (none of `PAGE_FLAGS_CHECK_AT_FREE`, not
    /// compound), allocation order 0 recorded, no page type; else `None`. One compare of each
    /// word, the flags read once: the free fast path's whole check, anything else taking the
    /// checked path (which reports what is wrong, or frees what is merely unusual).
    #[inline(always)]
    pub(crate) fn plain_order0(&self) -> Option<u32> {
        let f = self.flags();
        (f as u32 == 1 << ALLOC_ORDER_SHIFT && self.private() == 0).then_some((f >> ZONE_SHIFT) as u32)
    }

    /// `PageBuddy()`: free and on a buddy list. Written only under the zone lock.
    #[inline]
    pub fn is_buddy(&self) -> bool {
        self.private() & PAGE_TYPE_MASK == PAGE_TYPE_BUDDY
    }
    /// Marks a free page with its list (`set_buddy_order` + `__SetPageBuddy`).
    #[inline]
    pub(crate) fn set_buddy(&self, order: u32, mt: u32) {
        self.private.store(PAGE_TYPE_BUDDY | mt << 8 | order, Ordering::Relaxed);
    }
    /// `__ClearPageBuddy`.
    #[inline]
    pub(crate) fn clear_buddy(&self) {
        self.private.store(0, Ordering::Relaxed);
    }
    /// Free, on a per-CPU page list. Written only under that list's lock.
    #[inline]
    pub fn is_pcp(&self) -> bool {
        self.private() & PAGE_TYPE_MASK == PAGE_TYPE_PCP
    }
    /// Marks a page as being on a per-CPU list of `order` and `mt` (`set_pcppage_migratetype`).
    #[inline]
    pub(crate) fn set_pcp(&self, order: u32, mt: u32) {
        self.private.store(PAGE_TYPE_PCP | mt << 8 | order, Ordering::Relaxed);
    }

    /// `folio_test_slab()`: the head page of a slab. Written only by the slab's owner when
    /// it creates or discards the slab.
    #[inline]
    pub fn is_slab(&self) -> bool {
        self.private() & PAGE_TYPE_MASK == PAGE_TYPE_SLAB
    }
    /// The id of the cache a slab head belongs to (`slab->slab_cache`), if it is one.
    #[inline]
    pub fn slab_cache_id(&self) -> Option<u32> {
        let v = self.private();
        (v & PAGE_TYPE_MASK == PAGE_TYPE_SLAB).then_some(v & MAX_SLAB_CACHE_ID)
    }
    /// Makes a page the head of a slab of cache `id` with `colour` cache lines of offset
    /// (`__folio_set_slab`). The caller owns the page (just allocated).
    pub(crate) fn set_slab(&self, id: u32, colour: u8, plain: bool) {
        self.private.store(Page::slab_word(id, plain), Ordering::Relaxed);
        let f = self.flags.load(Ordering::Relaxed) & !COLOUR_MASK;
        self.flags.store(f | pg::SLAB | (colour as u64) << COLOUR_SHIFT, Ordering::Relaxed);
    }
    /// The `private` word of the head of a slab of cache `id` (plain or not). Id 0 names no
    /// cache, so `slab_word(0, false)` is a word no page carries.
    #[inline]
    pub(crate) const fn slab_word(id: u32, plain: bool) -> u32 {
        debug_assert!(id <= MAX_SLAB_CACHE_ID);
        PAGE_TYPE_SLAB | if plain { SLAB_PLAIN } else { 0 } | id
    }
    /// The slab word of any page of a slab: a head's `private` ([`Page::set_slab`]), or the
    /// head's word a slab's tail page carries in its own `private` ([`Page::set_slab_tail`]:
    /// a tail's distance to its head is in its `next` link, where Linux keeps
    /// `compound_head`), so that a free that does not name the cache (`kfree`) finds it in
    /// the object's own descriptor, one load, without going to the head. Any other page
    /// gives a word that is no slab's: a head or a lone page its type or 0, another compound
    /// page's tail 0 (`prep_new_page`).
    #[inline(always)]
    pub(crate) fn slab_word_any(&self) -> u32 {
        self.private.load(Ordering::Relaxed)
    }
    /// Gives tail page `self` of a new slab its head's word (`slab_word_any`). The caller
    /// owns the slab (it is being made, nobody else can reach it).
    pub(crate) fn set_slab_tail(&self, word: u32) {
        debug_assert!(self.test(pg::TAIL) && self.private() == 0, "a slab tail's private word is its own");
        self.private.store(word, Ordering::Relaxed);
    }
    /// Undoes [`Page::set_slab_tail`] as the slab ends, before its pages go back.
    pub(crate) fn clear_slab_tail(&self) {
        self.private.store(0, Ordering::Relaxed);
    }
    /// A compound tail's distance in frames to its head (its `next` link: a tail is on no
    /// list), written by `prep_new_page`; meaningless on any other page.
    #[inline(always)]
    pub(crate) fn tail_back(&self) -> u32 {
        self.next.load(Ordering::Relaxed)
    }
    /// Ends a slab (`__folio_clear_slab`) before its pages go back to the page allocator.
    pub(crate) fn clear_slab(&self) {
        self.private.store(0, Ordering::Relaxed);
        self.data.store(0, Ordering::Relaxed);
        let f = self.flags.load(Ordering::Relaxed) & !(COLOUR_MASK | pg::SLAB);
        self.flags.store(f, Ordering::Relaxed);
    }
    /// The colour of a slab head, in cache lines.
    #[inline]
    pub fn slab_colour(&self) -> u32 {
        ((self.flags() & COLOUR_MASK) >> COLOUR_SHIFT) as u32
    }
    /// The owner's word, read with acquire ordering (a slab's freelist and counters).
    #[inline]
    pub(crate) fn data_acquire(&self) -> u64 {
        self.data.load(Ordering::Acquire)
    }
    /// `page_ref_count()`.
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.refcount.load(Ordering::Relaxed)
    }
    /// `set_page_count()`.
    #[inline]
    pub(crate) fn set_refcount(&self, v: i32) {
        self.refcount.store(v, Ordering::Release);
    }
    /// Adds `delta` and returns the previous value (`page_ref_add` / `page_ref_sub`).
    #[inline]
    pub(crate) fn refcount_add(&self, delta: i32) -> i32 {
        self.refcount.fetch_add(delta, Ordering::AcqRel)
    }
    /// Drops one reference and returns the previous count, as `put_page_testzero` does: one
    /// atomic subtraction. A count that was already at or below zero (a double free) is put
    /// back and returned as the error; the underflow is reported afterwards, as Linux's
    /// `VM_BUG_ON_PAGE` does (another CPU may see the transient negative value, which no
    /// reader takes for a live page: `get_page_unless_zero` wants it positive).
    #[inline]
    pub(crate) fn ref_dec_positive(&self) -> Result<i32, i32> {
        let old = self.refcount.fetch_sub(1, Ordering::AcqRel);
        if old > 0 {
            return Ok(old);
        }
        self.refcount.fetch_add(1, Ordering::Relaxed);
        Err(old)
    }
    /// `get_page_unless_zero()`: takes a reference only if the count is positive.
    #[inline]
    pub(crate) fn ref_inc_not_zero(&self) -> bool {
        self.refcount
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |c| if c > 0 { Some(c + 1) } else { None })
            .is_ok()
    }

    /// The `private` word.
    #[inline]
    pub fn private(&self) -> u32 {
        self.private.load(Ordering::Relaxed)
    }
    /// Sets the `private` word.
    #[inline]
    pub(crate) fn set_private(&self, v: u32) {
        self.private.store(v, Ordering::Relaxed);
    }
    /// The free-list links `(next, prev)` as frame numbers ([`NIL`] for none).
    #[inline]
    pub fn links(&self) -> (u32, u32) {
        (self.next_link(), self.prev.load(Ordering::Relaxed))
    }
    /// The next link alone ([`NIL`] for none).
    #[inline]
    pub fn next_link(&self) -> u32 {
        self.next.load(Ordering::Relaxed)
    }
    /// Sets both links.
    #[inline]
    pub(crate) fn set_links(&self, next: u32, prev: u32) {
        self.next.store(next, Ordering::Relaxed);
        self.prev.store(prev, Ordering::Relaxed);
    }
    /// Sets the next link.
    #[inline]
    pub(crate) fn set_next(&self, next: u32) {
        self.next.store(next, Ordering::Relaxed);
    }
    /// Sets the previous link.
    #[inline]
    pub(crate) fn set_prev(&self, prev: u32) {
        self.prev.store(prev, Ordering::Relaxed);
    }
    /// The owner's data word (`page->private` of Linux, for the owner's use).
    #[inline]
    pub fn data(&self) -> u64 {
        self.data.load(Ordering::Relaxed)
    }
    /// Sets the owner's data word.
    #[inline]
    pub(crate) fn set_data(&self, v: u64) {
        self.data.store(v, Ordering::Relaxed);
    }
}

/// Writes `name|name` for the set state flags of `flags`.
pub fn write_flag_names(w: &mut dyn core::fmt::Write, flags: u64) -> core::fmt::Result {
    let mut first = true;
    for (bit, name) in pg::NAMES {
        if flags & bit != 0 {
            if !first {
                w.write_char('|')?;
            }
            first = false;
            w.write_str(name)?;
        }
    }
    Ok(())
}
