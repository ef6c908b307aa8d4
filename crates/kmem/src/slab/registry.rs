//! The machine's slab registry ([`SlabState`], Linux's `slab_caches` list, `slab_mutex` and
//! cache-id table), the boot-time slab parameters ([`SlabBootConfig`]), and the ids of the
//! two boot caches. Split from `cache.rs`, which holds the cache descriptor itself.

use core::fmt;

use super::cache::{absent_addr, reserved_addr, KmemCache, MAX_CACHES};
use super::fast_check::{FastCheck, FastChecks};
use super::fast_table::FAST_IDS;
use super::layout::OrderParams;
use crate::mm::page::MAX_SLAB_CACHE_ID;
use crate::platform::Platform;
use crate::sync::{
    const_fn_unless_loom, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock, SpinGuard,
};

/// Boot-time slab parameters (`slab_nomerge`, `slab_min_order=`, `slab_max_order=`,
/// `slab_min_objects=`, `slub_debug=`).
#[derive(Clone, Copy, Debug)]
pub struct SlabBootConfig<'a> {
    /// `slab_nomerge`: never merge caches.
    pub nomerge: bool,
    /// `slab_min_order=`.
    pub min_order: u32,
    /// `slab_max_order=` (capped at `MAX_PAGE_ORDER`).
    pub max_order: u32,
    /// `slab_min_objects=` (0: derived from the CPU count).
    pub min_objects: u32,
    /// `slub_debug=` options (`"FZPU"`, `"P,kmalloc-*"`, `"FZ;-,dentry"`...), `None` for off.
    pub slub_debug: Option<&'a str>,
    /// A kmem option, not Linux's: each object's free pointer at its start (offset 0, where
    /// SLUB kept it before Linux 5.7) instead of the middle of the object
    /// ([`Layout::with_freeptr_at_start`](super::layout::Layout::with_freeptr_at_start)), for
    /// caches whose pointer lives inside the object. An allocation and a free then touch one
    /// cache line of the object, the one its user touches, instead of two: process
    /// allocators (`kmem-alloc`) turn it on. The middle placement (the default) keeps a small
    /// overflow of the object before from reaching the pointer.
    pub freeptr_at_start: bool,
    /// A kmem option, not Linux's: the bytes of objects each cache's sheaves aim to hold
    /// (capacity `sheaf_bytes / object size`, between 32 and [`SlabBootConfig::sheaf_max`] objects; rounded down to a
    /// power of two): 16 KiB by default ([`SHEAF_BYTES_DEFAULT`](super::SHEAF_BYTES_DEFAULT)).
    /// Process allocators (`kmem-alloc`) take 128 KiB: threads that allocate and free
    /// hundreds of blocks at a time then trade a sheaf at the shared barn every 128 objects
    /// of every class up to 1 KiB instead of every 32 (C threadtest at 16 threads on 16 CPUs:
    /// 4.0x glibc's time -> 1.1x, docs/architecture/slab.md).
    pub sheaf_bytes: u32,
    /// A kmem option, not Linux's: the most objects a sheaf holds (128 by default,
    /// [`SHEAF_MAX_DEFAULT`](super::SHEAF_MAX_DEFAULT); rounded down to a power of two
    /// between 32 and [`SHEAF_MAX_CEILING`](super::SHEAF_MAX_CEILING)). Every sheaf of the
    /// machine is a `kmem_sheaf` object with this many slots (8 bytes each), whatever its
    /// cache's capacity; caches of objects up to `sheaf_bytes / sheaf_max` bytes get it.
    /// Process allocators (`kmem-alloc`) take 256: a thread's burst of 1000 allocations
    /// then 1000 frees of 64 bytes stays within its CPU's main, spare and stashed sheaves,
    /// off the barn's lock (Rust alloc_n_free_n/1000 6% faster, docs/architecture/slab.md).
    pub sheaf_max: u32,
    /// A kmem option, not Linux's: how many sheaves each CPU keeps per cache beyond its main
    /// and spare (full and empty ones; 0, the default: none, as Linux). A CPU whose main and
    /// spare are empty (full) swaps in a stashed full (empty) sheaf before it trades at the
    /// node's barn: a thread's burst of a thousand allocations or frees stays on its CPU, with
    /// its own objects, and off the barn's lock, which every CPU of the node shares. Process
    /// allocators (`kmem-alloc`) keep 4 (Linux's per-CPU partial slabs play that part). At
    /// most [`CPU_STASH_MAX`](super::CPU_STASH_MAX) (larger values are clamped).
    pub cpu_stash: u8,
    /// A kmem option, not Linux's: the bytes each node's barn keeps per cache in full
    /// sheaves, objects and the sheaves' slots for them counted (0, the default: 4096 objects, at most 4 MiB and a 32nd of the RAM;
    /// Linux keeps 10 sheaves). A thread that allocates a hundred thousand blocks and then
    /// frees them parks the sheaves it fills in the barn and takes them back for its next
    /// allocations, where a small barn sends them back to their slabs (a flush: each object
    /// chained to its slab's freelist, emptied slabs freed to the page allocator) and the
    /// next allocations rebuild them. Process allocators (`kmem-alloc`) keep 16 MiB: C
    /// programs allocating 100,000 64-byte blocks then freeing them take 27% fewer
    /// instructions (docs/architecture/slab.md). The objects parked stay out of the page allocator
    /// until `kmem_cache_shrink` or reclaim flushes the barn. Rounded down to a power of two
    /// (at least 64 KiB).
    pub barn_bytes: u32,
}

impl Default for SlabBootConfig<'_> {
    fn default() -> Self {
        Self {
            nomerge: false,
            min_order: 0,
            max_order: 3,
            min_objects: 0,
            slub_debug: None,
            freeptr_at_start: false,
            sheaf_bytes: super::sheaf::SHEAF_BYTES_DEFAULT,
            sheaf_max: super::sheaf::SHEAF_MAX_DEFAULT,
            cpu_stash: 0,
            barn_bytes: 0,
        }
    }
}

/// Bytes of the `slub_debug=` string kmem keeps.
pub const SLUB_DEBUG_MAX: usize = 127;
/// The id of the boot cache `kmem_cache` (found without the id table).
pub(crate) const BOOT_CACHE_ID: u32 = 1;
/// The id of the sheaves' cache `kmem_sheaf` (found without the id table).
pub(crate) const SHEAF_CACHE_ID: u32 = 2;

/// The cache-id table: `MAX_CACHES` slots holding descriptor addresses. Every slot below
/// [`FAST_IDS`] names a readable descriptor: a live cache's, or for a free id the absent
/// descriptor ([`absent_addr`]) and for a reserved one its twin ([`reserved_addr`]), neither
/// with any objects. (The free fast path no longer reads slots: it tests objects with the
/// ids' [`FastCheck`] records, [`SlabState::check_of_plain_word`].) A free slot from
/// [`FAST_IDS`] on may also be 0: the table is a zeroed block, and only its first slots are
/// written when it is installed, so that its other pages stay untouched until ids reach them
/// (3 page faults fewer at a process's start). (Loom's models keep 0 for free and 1 for
/// reserved, and the test.)
///
/// The block begins with the fast ids' [`FastCheck`] records (`kfree`'s fast path tests an
/// object with its id's record, `fast_check.rs`); the slots follow. Both are reached through
/// [`SlabState::ids`]; the slots by indexing the table (it derefs to them).
#[repr(C)]
pub(crate) struct IdTable {
    pub(crate) checks: FastChecks,
    slots: [AtomicUsize; MAX_CACHES],
}

impl IdTable {
    /// The table at address `p` (a machine's [`SlabState::ids`]).
    ///
    /// # Safety
    ///
    /// `p` is an installed table's address (not 0), which stays valid for `'a`: the
    /// machine's table lives as long as the machine.
    #[inline(always)]
    pub(crate) unsafe fn at<'a>(p: usize) -> &'a IdTable {
        debug_assert_ne!(p, 0, "a slab before the first kmem_cache_create");
        // SAFETY: caller's contract. Telling the compiler it is not 0 spares a null test.
        unsafe {
            core::hint::assert_unchecked(p != 0);
            &*(p as *const IdTable)
        }
    }
}

impl core::ops::Deref for IdTable {
    type Target = [AtomicUsize; MAX_CACHES];
    #[inline(always)]
    fn deref(&self) -> &Self::Target {
        &self.slots
    }
}

/// The machine's slab registry (lives in the machine state, so it is kept small: the id
/// table and the call-site depot are page-allocator blocks allocated when first needed).
pub(crate) struct SlabState {
    /// `slab_mutex`: guards the cache list and registry, and merging decisions.
    pub(crate) list_lock: RawSpinLock,
    /// Newest cache (list head), 0 if none.
    pub(crate) head: AtomicUsize,
    /// Address of the [`IdTable`]: 0 until the first `kmem_cache_create` installs the
    /// machine's (no slab exists before: the boot caches get their first slab in it).
    pub(crate) ids: AtomicUsize,
    /// The boot cache `kmem_cache` (carved at boot).
    pub(crate) boot_cache: AtomicUsize,
    pub(crate) boot_cache_mem: usize,
    /// Memory carved at boot for the `kmem_sheaf` descriptor.
    pub(crate) sheaf_cache_mem: usize,
    pub(crate) nomerge: bool,
    /// [`SlabBootConfig::freeptr_at_start`] (in `nomerge`'s padding: the state does not grow).
    pub(crate) freeptr_at_start: bool,
    /// log2 of [`SlabBootConfig::sheaf_bytes`] (a byte: the state does not grow).
    pub(crate) sheaf_shift: u8,
    /// log2 of [`SlabBootConfig::sheaf_max`] (a byte: the state does not grow).
    pub(crate) sheaf_max_shift: u8,
    /// [`SlabBootConfig::cpu_stash`].
    pub(crate) cpu_stash: u8,
    /// log2 of [`SlabBootConfig::barn_bytes`], 0 for kmem's default sizing (a byte: the
    /// state does not grow).
    pub(crate) barn_shift: u8,
    pub(crate) order: OrderParams,
    pub(crate) debug_str: [u8; SLUB_DEBUG_MAX],
    pub(crate) debug_len: usize,
    /// A splitmix64 state for `s->random`.
    pub(crate) seed: AtomicU64,
    /// `TAINT_BAD_PAGE` after the first slab report.
    pub(crate) tainted: AtomicBool,
    /// Address of the call-site depot of `SLAB_STORE_USER` tracks, 0 until a cache with
    /// tracking is created.
    pub(crate) depot: AtomicUsize,
    /// The `kmem_sheaf` cache (sheaves are its objects), 0 until the first sheaf.
    pub(crate) sheaf_cache: AtomicUsize,
    /// Objects `kfree_nolock` could not free at once (`defer.rs`).
    pub(crate) defer: super::defer::DeferFree,
    /// The per-CPU fast tables (`fast_table.rs`): the allocation's chunk (0 before
    /// `kmem_cache_init`) and offset.
    pub(crate) fast_chunk: AtomicUsize,
    pub(crate) fast_off: AtomicU32,
}

impl fmt::Debug for SlabState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabState").field("boot_cache", &self.boot_cache.load(Ordering::Relaxed)).finish()
    }
}

impl SlabState {
    const_fn_unless_loom! {
        /// No caches yet.
        pub(crate) fn empty() -> Self {
            Self {
                list_lock: RawSpinLock::new(),
                head: AtomicUsize::new(0),
                ids: AtomicUsize::new(0),
                boot_cache: AtomicUsize::new(0),
                boot_cache_mem: 0,
                sheaf_cache_mem: 0,
                nomerge: false,
                freeptr_at_start: false,
                sheaf_shift: super::sheaf::SHEAF_BYTES_DEFAULT.trailing_zeros() as u8,
                sheaf_max_shift: super::sheaf::SHEAF_MAX_DEFAULT.trailing_zeros() as u8,
                cpu_stash: 0,
                barn_shift: 0,
                order: OrderParams::new(1),
                debug_str: [0; SLUB_DEBUG_MAX],
                debug_len: 0,
                seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
                tainted: AtomicBool::new(false),
                depot: AtomicUsize::new(0),
                sheaf_cache: AtomicUsize::new(0),
                defer: super::defer::DeferFree::new(),
                fast_chunk: AtomicUsize::new(0),
                fast_off: AtomicU32::new(0),
            }
        }
    }

    /// Applies the boot configuration (during boot, before any cache exists).
    pub(crate) fn configure(&mut self, cfg: &SlabBootConfig<'_>, nr_cpus: usize) {
        self.nomerge = cfg.nomerge;
        self.freeptr_at_start = cfg.freeptr_at_start;
        // A power of two between one object (32 B: 32-object minimum) and 16 MiB.
        self.sheaf_shift = cfg.sheaf_bytes.clamp(32, 16 << 20).ilog2() as u8;
        self.sheaf_max_shift = cfg.sheaf_max.clamp(32, super::sheaf::SHEAF_MAX_CEILING).ilog2() as u8;
        self.cpu_stash = cfg.cpu_stash.min(super::CPU_STASH_MAX);
        self.barn_shift = if cfg.barn_bytes == 0 { 0 } else { cfg.barn_bytes.max(64 << 10).ilog2() as u8 };
        let max_order = cfg.max_order.min(crate::addr::MAX_PAGE_ORDER as u32);
        self.order = OrderParams {
            nr_cpus: nr_cpus as u32,
            min_order: cfg.min_order.min(max_order),
            max_order,
            min_objects: cfg.min_objects,
        };
        if let Some(s) = cfg.slub_debug {
            let n = s.len().min(SLUB_DEBUG_MAX);
            self.debug_str[..n].copy_from_slice(&s.as_bytes()[..n]);
            // An empty string still means "slub_debug given": full debugging.
            self.debug_len = if s.is_empty() { usize::MAX } else { n };
        }
    }

    /// Bytes of objects a new cache's sheaves aim to hold ([`SlabBootConfig::sheaf_bytes`]).
    pub(crate) fn sheaf_bytes(&self) -> u32 {
        1 << self.sheaf_shift
    }

    /// The most objects a sheaf holds ([`SlabBootConfig::sheaf_max`]): the slots of every
    /// `kmem_sheaf` object.
    pub(crate) fn sheaf_max(&self) -> u32 {
        1 << self.sheaf_max_shift
    }

    /// How many full (and empty) sheaves a new cache's barns keep, on a machine of
    /// `totalram` bytes: [`SlabBootConfig::barn_bytes`] of objects and the sheaf slots that
    /// hold them if given, else kmem's default ([`barn_sheaves`](super::sheaf::barn_sheaves)).
    pub(crate) fn barn_max(&self, capacity: u32, size: u32, totalram: usize) -> u32 {
        use super::sheaf::{barn_bytes, barn_sheaves, MIN_BARN_SHEAVES};
        if self.barn_shift == 0 || capacity == 0 {
            return barn_sheaves(capacity, size, barn_bytes(totalram));
        }
        // The objects and the sheaves' slots that hold them (a word each: for 8-byte objects
        // the sheaves weigh as much as the objects).
        let sheaf = capacity as usize * (size.max(1) as usize + core::mem::size_of::<usize>());
        ((1usize << self.barn_shift) / sheaf).clamp(MIN_BARN_SHEAVES as usize, u32::MAX as usize) as u32
    }

    /// A new cache's geometry with the free pointer where the boot configuration puts it.
    pub(crate) fn place_freeptr(&self, l: super::layout::Layout) -> super::layout::Layout {
        if self.freeptr_at_start {
            l.with_freeptr_at_start()
        } else {
            l
        }
    }

    /// The `slub_debug=` string.
    pub(crate) fn debug_string(&self) -> Option<&str> {
        match self.debug_len {
            0 => None,
            usize::MAX => Some(""),
            n => Some(core::str::from_utf8(&self.debug_str[..n]).unwrap_or("")),
        }
    }

    /// The next pseudo-random word (splitmix64; not cryptographic).
    pub(crate) fn next_random(&self, mix: u64) -> u64 {
        let s = self.seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ mix;
        let mut z = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills a just-installed id table with the boot caches. `g` holds the list lock. Their
    /// fast records stay empty: no object of theirs passes `kfree`'s fast test, so a pointer
    /// to one takes the careful path, which refuses it ([`KmemCache::is_kmem_internal`]);
    /// kmem frees them with `kmem_cache_free` and `free_single`, which use no record.
    pub(crate) fn register_boot_caches_locked<P: Platform>(&self, g: &SpinGuard<'_, P>) {
        debug_assert!(g.holds(&self.list_lock));
        if let Some(t) = self.id_table() {
            for (id, c) in [(BOOT_CACHE_ID, &self.boot_cache), (SHEAF_CACHE_ID, &self.sheaf_cache)] {
                t.checks.at(id as usize).clear();
                t[id as usize].store(c.load(Ordering::Acquire), Ordering::Release);
            }
        }
    }

    /// The id table, once allocated.
    #[inline(always)]
    pub(crate) fn id_table(&self) -> Option<&IdTable> {
        let p = self.ids.load(Ordering::Acquire);
        // SAFETY: `ids` is 0 or the address of a page-aligned block of at least
        // size_of::<IdTable>() bytes that is never freed (installed once by
        // `kmem_cache_create`, every slot free: `init_id_table`).
        (p != 0).then(|| unsafe { &*(p as *const IdTable) })
    }

    /// The cache with id `id`. (Every slab's cache is in the table: the table is installed
    /// by the first `kmem_cache_create`, with the boot caches, before any slab exists.)
    #[inline(always)]
    pub(crate) fn cache(&self, id: u32) -> Option<&KmemCache> {
        let p = self.id_table()?.get(id as usize)?.load(Ordering::Acquire);
        Self::live_cache(p)
    }

    /// The [`FastCheck`] record of a plain slab's word (a page's
    /// [`Page::slab_word_any`](crate::mm::page::Page::slab_word_any)) and its id, or `None`
    /// if the word is no plain slab's of an id below [`FAST_IDS`] (the free fast paths'
    /// caches: their CPUs' sheaves have entries in the fast tables, `fast_table.rs`).
    /// `kfree`'s fast path (`fast_check.rs`). A plain slab's word is the plain word of id 0
    /// plus the cache's id: one subtraction and one bound test decide both, and the bound
    /// keeps the index in the tables. `ids` needs no test: a slab exists, so
    /// `kmem_cache_init` has pointed it at a table. Nor does the record: a free or reserved
    /// id's admits no object, which the caller's object test then finds.
    #[inline(always)]
    pub(crate) fn check_of_plain_word(&self, word: u32) -> Option<(FastCheck<'_>, usize)> {
        const { assert!(FAST_IDS <= MAX_CACHES && MAX_CACHES <= MAX_SLAB_CACHE_ID as usize + 1) };
        let id = Self::fast_id_of_plain_word(word)?;
        #[cfg(loom)]
        let t = self.id_table()?;
        #[cfg(not(loom))]
        // SAFETY: a plain slab word means a slab exists, so the table is installed: `ids` is
        // 0 until the first `kmem_cache_create` installs the machine's own (the boot caches
        // are registered in it, and no slab of any cache exists before), a block of an
        // IdTable's size that is never freed. (A shared static table, for the time before,
        // cost 2,048 load-time relocations and 4 page faults in every process under
        // `LD_PRELOAD`.)
        let t = unsafe { IdTable::at(self.ids.load(Ordering::Acquire)) };
        Some((t.checks.at(id), id))
    }

    /// The fast id a plain slab's word names (see [`SlabState::check_of_plain_word`]), if
    /// it is below [`FAST_IDS`].
    #[inline(always)]
    pub(crate) fn fast_id_of_plain_word(word: u32) -> Option<usize> {
        let id = word.wrapping_sub(crate::mm::page::Page::slab_word(0, true)) as usize;
        (id < FAST_IDS).then_some(id)
    }

    /// The live cache a slot value names, if any (not a free or a reserved id).
    #[inline(always)]
    fn live_cache<'a>(p: usize) -> Option<&'a KmemCache> {
        // SAFETY: a registered id names a live descriptor: it is unregistered (under the list
        // lock) before its descriptor is freed, and only after its last slab is gone, so a
        // slab page naming it cannot outlive it. The absent descriptor (or 0, from
        // `FAST_IDS` on) marks a free id and its twin an id reserved for a cache being
        // created, which no slab names yet.
        (p != 0 && p != absent_addr() && p != reserved_addr()).then(|| unsafe { &*(p as *const KmemCache) })
    }

    /// Marks every slot of a table about to be installed free (the absent descriptor): its
    /// block, just allocated, is the caller's alone.
    pub(crate) fn init_id_table(t: &IdTable) {
        for slot in &t[..FAST_IDS] {
            slot.store(absent_addr(), Ordering::Relaxed);
        }
    }

    /// Caches, newest first (the `slab_caches` order of `/proc/slabinfo`). `g` holds the list
    /// lock.
    pub(crate) fn for_each_locked<P: Platform>(&self, g: &SpinGuard<'_, P>, mut f: impl FnMut(&KmemCache)) {
        debug_assert!(g.holds(&self.list_lock));
        let mut p = self.head.load(Ordering::Acquire);
        while p != 0 {
            // SAFETY: list members are live descriptors; the list lock (held by the caller)
            // keeps them from being unlinked and freed.
            let c = unsafe { &*(p as *const KmemCache) };
            f(c);
            p = c.list_next.load(Ordering::Relaxed);
        }
    }

    /// Links `c` at the list head and registers its id. `g` holds the list lock.
    pub(crate) fn link_locked<P: Platform>(&self, g: &SpinGuard<'_, P>, c: &KmemCache) {
        debug_assert!(g.holds(&self.list_lock));
        let head = self.head.load(Ordering::Relaxed);
        c.list_next.store(head, Ordering::Relaxed);
        c.list_prev.store(0, Ordering::Relaxed);
        if head != 0 {
            // SAFETY: list members are live (list lock held).
            unsafe { &*(head as *const KmemCache) }.list_prev.store(c as *const _ as usize, Ordering::Relaxed);
        }
        self.head.store(c as *const _ as usize, Ordering::Release);
        if let Some(t) = self.id_table() {
            if let Some(r) = t.checks.try_at(c.id as usize) {
                r.set(c, self.freeptr_at_start);
            }
            t[c.id as usize].store(c as *const _ as usize, Ordering::Release);
        }
    }

    /// Unlinks `c` and frees its id. `g` holds the list lock.
    pub(crate) fn unlink_locked<P: Platform>(&self, g: &SpinGuard<'_, P>, c: &KmemCache) {
        debug_assert!(g.holds(&self.list_lock));
        let (next, prev) = (c.list_next.load(Ordering::Relaxed), c.list_prev.load(Ordering::Relaxed));
        if prev == 0 {
            self.head.store(next, Ordering::Release);
        } else {
            // SAFETY: list members are live (list lock held).
            unsafe { &*(prev as *const KmemCache) }.list_next.store(next, Ordering::Relaxed);
        }
        if next != 0 {
            // SAFETY: as above.
            unsafe { &*(next as *const KmemCache) }.list_prev.store(prev, Ordering::Relaxed);
        }
        if let Some(t) = self.id_table() {
            if let Some(r) = t.checks.try_at(c.id as usize) {
                r.clear();
            }
            t[c.id as usize].store(absent_addr(), Ordering::Release);
        }
    }

    /// Reserves a free id, or `None` if the table is full or not allocated. `g` holds the
    /// list lock; ids 0, [`BOOT_CACHE_ID`] and [`SHEAF_CACHE_ID`] are never handed out.
    pub(crate) fn reserve_id_locked<P: Platform>(&self, g: &SpinGuard<'_, P>) -> Option<u32> {
        debug_assert!(g.holds(&self.list_lock));
        let t = self.id_table()?;
        let i = (SHEAF_CACHE_ID as usize + 1..MAX_CACHES.min(MAX_SLAB_CACHE_ID as usize))
            .find(|&i| matches!(t[i].load(Ordering::Relaxed), p if p == absent_addr() || p == 0))?;
        t[i].store(reserved_addr(), Ordering::Relaxed);
        Some(i as u32)
    }

    /// Gives back an id reserved by [`SlabState::reserve_id_locked`] that was never linked.
    /// `g` holds the list lock.
    pub(crate) fn release_id_locked<P: Platform>(&self, g: &SpinGuard<'_, P>, id: u32) {
        debug_assert!(g.holds(&self.list_lock));
        if let Some(t) = self.id_table() {
            t[id as usize].store(absent_addr(), Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::IdTable;
    use crate::slab::SlabFlags;
    use crate::sync::Ordering;
    use crate::testing;

    /// A machine has no id table until its first `kmem_cache_create` (no slab exists before
    /// it, so the free fast path, which reads the table untested, never meets the missing
    /// one), and then a table of its own: two machines each install theirs, and `kfree`
    /// finds each machine's caches through it.
    #[test]
    fn each_machine_installs_its_own_id_table_at_its_first_create() {
        let (a, b) = (testing::machine(16), testing::machine(16));
        for k in [&a, &b] {
            assert_eq!(k.slab().ids.load(Ordering::Relaxed), 0, "a table before the first create");
            assert!(k.slab().id_table().is_none());
        }
        let ca = a.kmem_cache_create("ids-a", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
        let cb = b.kmem_cache_create("ids-b", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
        let table = |k: &crate::machine::Kmem<testing::TestPlatform>| {
            k.slab().id_table().expect("installed by the first create") as *const IdTable
        };
        assert!(table(&a) != table(&b));
        for k in [&a, &b] {
            assert_eq!(k.slab().ids.load(Ordering::Relaxed), table(k) as usize);
        }
        for (k, c) in [(&a, &ca), (&b, &cb)] {
            let o = k.kmem_cache_alloc(c, crate::Gfp::KERNEL).unwrap();
            // SAFETY: an object of `c`, freed once (by `kfree`, which looks its cache up).
            unsafe { k.kfree(o.as_ptr()) };
        }
        for k in [&a, &b] {
            assert_eq!(k.report_count(crate::ReportKind::SlabBug), 0);
        }
    }

    /// The free fast path reads an id's slot without testing it: a page whose word names a
    /// free id, or one reserved for a cache under construction, finds the absent descriptor
    /// or its twin there, with no objects, and the pointer goes the careful way, which
    /// reports it (a slot of 0 or 1 would be dereferenced: a crash).
    #[test]
    fn a_page_naming_a_free_or_reserved_id_holds_no_object() {
        let k = testing::machine(16);
        let c = k.kmem_cache_create("ids-c", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
        let st = k.slab();
        let reserved = {
            let g = st.list_lock.lock_irqsave(k.platform());
            st.reserve_id_locked(&g).expect("a free id")
        };
        let free = reserved + 1;
        let t = st.id_table().unwrap();
        assert_eq!(t[free as usize].load(Ordering::Relaxed), super::absent_addr(), "a free id");
        assert_eq!(t[reserved as usize].load(Ordering::Relaxed), super::reserved_addr());
        let order = crate::Order::new(0).unwrap();
        let pages = k.alloc_pages(crate::Gfp::KERNEL, order).unwrap();
        let page = pages.page();
        let addr = k.page_address(pages).unwrap().as_usize();
        let reports = || crate::ReportKind::ALL.iter().map(|&r| k.report_count(r)).sum::<u64>();
        for (n, id) in [free, reserved].into_iter().enumerate() {
            page.set_slab(id, 0, true);
            assert!(st.check_of_plain_word(page.slab_word_any()).is_some_and(|(r, _)| !r.is_plain_object(0)));
            // SAFETY: not a live kmalloc object: kfree must see that and report it, nothing
            // more (the page is ours and its bytes are not touched).
            unsafe { k.kfree(addr as *const u8) };
            assert_eq!(reports(), n as u64 + 1, "reported, not freed");
        }
        page.clear_slab();
        {
            let g = st.list_lock.lock_irqsave(k.platform());
            st.release_id_locked(&g, reserved);
        }
        assert_eq!(t[reserved as usize].load(Ordering::Relaxed), super::absent_addr(), "released");
        // A destroyed cache's id: its record admits no object any more (kfree's fast path
        // tests with the record alone, `fast_check.rs`).
        let d = k.kmem_cache_create("ids-d", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
        let gone = d.id;
        let obj = k.kmem_cache_alloc(&d, crate::Gfp::KERNEL).unwrap();
        assert!(t.checks.at(gone as usize).is_plain_object(0), "a live cache's record admits object 0");
        // SAFETY: ours, freed once.
        unsafe { k.kmem_cache_free(&d, obj) };
        drop(d);
        page.set_slab(gone, 0, true);
        assert!(!t.checks.at(gone as usize).is_plain_object(0), "destroy emptied the record");
        // SAFETY: as above.
        unsafe { k.kfree(addr as *const u8) };
        assert_eq!(reports(), 3, "reported, not freed");
        page.clear_slab();
        // SAFETY: our page, its descriptor as it was, freed once.
        unsafe { k.__free_pages(pages, order) };
        drop(c);
        assert_eq!(reports(), 3, "the page went back unremarked");
    }
}
