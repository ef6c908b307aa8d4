//! [`KmemCache`] (`struct kmem_cache`), its per-node part ([`CacheNode`],
//! `struct kmem_cache_node`), the machine's cache registry ([`SlabState`]), and [`Cache`],
//! the owning handle `kmem_cache_create` returns.
//!
//! Every cache descriptor is an object of the boot cache `kmem_cache`, whose own descriptor
//! is carved from memblock at boot (Linux copies its boot descriptors into slab objects;
//! kmem keeps the boot one where it was carved). A descriptor is followed in the same
//! object by one [`CacheNode`] per NUMA node.

use core::fmt;
use core::ptr::NonNull;

use super::flags::SlabFlags;
use super::layout::{Layout, OrderParams};
use super::sheaf::{Barn, CpuSheaves};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page::{Page, MAX_SLAB_CACHE_ID};
use crate::mm::pfn_list::PfnList;
use crate::percpu::PercpuPtr;
use crate::platform::Platform;
use crate::sync::{
    const_fn_unless_loom, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock, SpinGuard,
};

/// Registry value of an id reserved for a cache under construction.
const RESERVED_ID: usize = 1;

/// Longest cache name kmem stores (Linux keeps a pointer; kmem has no heap to copy into).
pub const CACHE_NAME_MAX: usize = 63;
/// Most caches a machine can have at once (ids are 24-bit in the slab page type; the
/// registry is a fixed table carved with the machine state).
pub const MAX_CACHES: usize = 2048;

/// A slab constructor (`void (*ctor)(void *)`): called once on each object of a new slab
/// with the object's `object_size` bytes. Objects must be back in the constructed state
/// when they are freed.
pub type Ctor = fn(&mut [u8]);

/// The per-node part of a cache (`struct kmem_cache_node`).
#[derive(Debug)]
pub struct CacheNode {
    /// `list_lock`: guards `partial`, `full`, and every transition that moves a slab between
    /// them or freezes/unfreezes it.
    pub(crate) list_lock: RawSpinLock,
    /// Slabs with free objects that no CPU owns.
    pub(crate) partial: PfnList,
    /// Slabs with no free object that no CPU owns (Linux keeps this list only with
    /// `SLAB_STORE_USER`; kmem always does, so destroy and validate see every slab).
    pub(crate) full: PfnList,
    /// Slabs of this node, wherever they are (`nr_slabs`).
    pub(crate) nr_slabs: AtomicUsize,
    /// Objects in them (`total_objects`).
    pub(crate) total_objects: AtomicUsize,
    /// Full and empty sheaves shared by the node's CPUs (`node_barn`).
    pub(crate) barn: Barn,
}

impl CacheNode {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                list_lock: RawSpinLock::new(),
                partial: PfnList::new(),
                full: PfnList::new(),
                nr_slabs: AtomicUsize::new(0),
                total_objects: AtomicUsize::new(0),
                barn: Barn::new(),
            }
        }
    }
    /// Slabs on the partial list (`nr_partial`, lock-free, may be stale).
    pub fn nr_partial(&self) -> usize {
        self.partial.len()
    }
    /// Slabs of this node.
    pub fn nr_slabs(&self) -> usize {
        self.nr_slabs.load(Ordering::Relaxed)
    }
    /// Objects in this node's slabs.
    pub fn total_objects(&self) -> usize {
        self.total_objects.load(Ordering::Relaxed)
    }
}

/// A slab cache (`struct kmem_cache`). Lives in the machine's RAM; reach it through a
/// [`Cache`] handle.
pub struct KmemCache {
    // Hot, immutable after creation: what the fast paths read.
    /// The per-CPU sheaves ([`CpuSheaves`], one per CPU).
    pub(crate) cpu_sheaves: PercpuPtr,
    /// The machine the cache belongs to ([`Kmem::machine_id`]): a cache used with another
    /// machine is refused before anything of it is touched.
    /// While failslab is armed the word also carries [`KmemCache::ARMED`] (`fault/mod.rs`):
    /// the fast paths compare the whole word, so every allocation takes the careful path
    /// where `should_failslab` runs (Linux's static key, as a word the fast path already
    /// tests); every other check masks the bit ([`KmemCache::is_of`]).
    pub(crate) machine: AtomicUsize,
    /// Objects per sheaf; 0: the cache has no sheaves (debug caches, `kmem_sheaf`, the
    /// boot cache).
    pub(crate) sheaf_capacity: u32,
    pub(crate) random: u64,
    pub(crate) recip: u64,
    /// The head-page word of this cache's plain slabs ([`Page::slab_word`]); for a cache
    /// that makes none (a debug cache), a word no page carries.
    pub(crate) plain_word: u32,
    /// Bytes of objects in a plain slab: an object offset below it is inside the slab.
    pub(crate) plain_limit: u32,
    pub(crate) layout: Layout,
    pub(crate) debug: bool,
    /// `init_on_alloc` / `init_on_free` for this cache (`mm::meminit::INIT_ALLOC`,
    /// `INIT_FREE`): 0 for caches with a constructor or `SLAB_TYPESAFE_BY_RCU`. A cache
    /// zeroed on free has no plain slabs, so every free reaches `free_object`.
    pub(crate) meminit: u8,
    pub(crate) id: u32,
    pub(crate) ctor: Option<Ctor>,
    pub(crate) allocflags: Gfp,
    pub(crate) min_partial: u32,
    /// Colours a slab can have (1 without `SLAB_COLOUR`).
    pub(crate) colours: u32,
    /// Bytes between colours (`colour_off`).
    pub(crate) colour_step: u32,
    pub(crate) colour_next: AtomicU32,
    /// `s->object_size`; grows when a larger cache merges into this one.
    pub(crate) object_size: AtomicU32,
    /// Creations merged into this cache plus one (`s->refcount`); -1 for the boot cache.
    pub(crate) refcount: AtomicI32,
    /// Cache registry links (addresses of neighbours, newest first), under the list lock.
    pub(crate) list_next: AtomicUsize,
    pub(crate) list_prev: AtomicUsize,
    /// The per-node parts, just after this descriptor in the same object.
    pub(crate) nodes: *const CacheNode,
    pub(crate) nr_nodes: u32,
    name: [u8; CACHE_NAME_MAX + 1],
    name_len: u8,
}

// SAFETY: the descriptor is immutable after creation except for atomics and lists changed
// under the cache's locks; `nodes` points to per-node parts in the same object, made of
// atomics and locks, and lives as long as the descriptor.
unsafe impl Send for KmemCache {}
// SAFETY: as for Send.
unsafe impl Sync for KmemCache {}

impl fmt::Debug for KmemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemCache")
            .field("name", &self.name())
            .field("id", &self.id)
            .field("layout", &self.layout)
            .field("refcount", &self.refcount.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a new descriptor is made of (`struct kmem_cache_args` plus the computed layout).
pub(crate) struct CacheInit<'a> {
    pub name: &'a str,
    pub layout: Layout,
    pub ctor: Option<Ctor>,
    pub cpu_sheaves: PercpuPtr,
    pub machine: usize,
    pub sheaf_capacity: u32,
    pub random: u64,
    pub id: u32,
    pub nr_nodes: usize,
    pub refcount: i32,
    /// `init_on_alloc`/`init_on_free` bits (`mm/meminit.rs`).
    pub meminit: u8,
}

impl KmemCache {
    /// Bytes of a descriptor with its per-node parts for `nr_nodes` nodes.
    pub(crate) const fn alloc_size(nr_nodes: usize) -> usize {
        core::mem::size_of::<KmemCache>() + nr_nodes * core::mem::size_of::<CacheNode>()
    }

    /// Writes a descriptor and its per-node parts at `at`.
    ///
    /// # Safety
    ///
    /// `at` must point to [`KmemCache::alloc_size`]`(init.nr_nodes)` writable bytes aligned
    /// to 64, used by nothing else, that stay valid as long as the descriptor is used.
    pub(crate) unsafe fn init(at: NonNull<u8>, init: CacheInit<'_>) -> NonNull<KmemCache> {
        let l = init.layout;
        let nodes = at.as_ptr().wrapping_add(core::mem::size_of::<KmemCache>()) as *mut CacheNode;
        for n in 0..init.nr_nodes {
            // SAFETY: the nodes follow the descriptor inside the caller's allocation;
            // CacheNode's alignment divides KmemCache's size (both multiples of 8).
            unsafe { nodes.add(n).write(CacheNode::new()) };
        }
        let mut name = [0u8; CACHE_NAME_MAX + 1];
        let n = init.name.len().min(CACHE_NAME_MAX);
        name[..n].copy_from_slice(&init.name.as_bytes()[..n]);
        let mut allocflags = Gfp::COMP;
        if l.flags.contains(SlabFlags::CACHE_DMA) {
            allocflags |= Gfp::DMA;
        }
        if l.flags.contains(SlabFlags::CACHE_DMA32) {
            allocflags |= Gfp::DMA32;
        }
        if l.flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
            allocflags |= Gfp::RECLAIMABLE;
        }
        // SLAB's colour_off: a cache line, or the alignment if larger; the page records a
        // slab's colour in cache lines (8 bits).
        let colour_step = super::layout::CACHE_LINE.max(l.align);
        let colours = if l.flags.contains(SlabFlags::COLOUR) && !l.flags.intersects(SlabFlags::DEBUG_FLAGS) {
            (l.leftover(l.order) / colour_step + 1).min(255 * super::layout::CACHE_LINE / colour_step + 1)
        } else {
            1
        };
        let debug = l.flags.intersects(SlabFlags::DEBUG_FLAGS);
        let cache = KmemCache {
            cpu_sheaves: init.cpu_sheaves,
            machine: AtomicUsize::new(init.machine),
            sheaf_capacity: if l.flags.intersects(SlabFlags::DEBUG_FLAGS) { 0 } else { init.sheaf_capacity },
            // Bit 56 set: the key's high half is never zero for an 8-aligned slot, so zeroed
            // memory never decodes like a free object's pointer (free.rs).
            random: init.random | 1 << 56,
            recip: super::layout::reciprocal(l.size),
            plain_word: if debug || init.meminit & crate::mm::meminit::INIT_FREE != 0 {
                Page::slab_word(0, false)
            } else {
                Page::slab_word(init.id, true)
            },
            plain_limit: l.objects * l.size,
            layout: l,
            debug,
            meminit: init.meminit,
            id: init.id,
            ctor: init.ctor,
            allocflags,
            // Sheaves are freed in bursts (shrink, destroy, a CPU going offline): their cache
            // keeps no empty slab.
            min_partial: if init.id == SHEAF_CACHE_ID { 0 } else { super::layout::min_partial(l.size) },
            colours,
            colour_step,
            colour_next: AtomicU32::new(0),
            object_size: AtomicU32::new(l.object_size),
            refcount: AtomicI32::new(init.refcount),
            list_next: AtomicUsize::new(0),
            list_prev: AtomicUsize::new(0),
            nodes,
            nr_nodes: init.nr_nodes as u32,
            name,
            name_len: n as u8,
        };
        let p = at.cast::<KmemCache>();
        // SAFETY: caller's contract: writable, aligned, exclusively ours.
        unsafe { p.as_ptr().write(cache) };
        p
    }

    /// The name, as given at creation.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("?")
    }
    /// The geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Creation flags, with boot-time debug flags applied.
    pub fn flags(&self) -> SlabFlags {
        self.layout.flags
    }
    /// `s->object_size` (the largest size merged into this cache).
    pub fn object_size(&self) -> usize {
        self.object_size.load(Ordering::Relaxed) as usize
    }
    /// `s->size`: bytes of a slot, metadata included.
    pub fn size(&self) -> usize {
        self.layout.size as usize
    }
    /// Objects per slab of the preferred order.
    pub fn objects_per_slab(&self) -> usize {
        self.layout.objects as usize
    }
    /// The preferred slab order.
    pub fn order(&self) -> u32 {
        self.layout.order
    }
    /// Other creations merged into this cache (sysfs `aliases`).
    pub fn aliases(&self) -> usize {
        (self.refcount.load(Ordering::Relaxed).max(1) - 1) as usize
    }
    /// True if the cache takes the debug (checked) paths.
    pub fn is_debug(&self) -> bool {
        self.debug
    }
    /// The per-node part of node `nid`.
    #[inline]
    pub fn node(&self, nid: usize) -> &CacheNode {
        assert!(nid < self.nr_nodes as usize, "node {nid} out of range");
        // SAFETY: `nodes` points to `nr_nodes` initialised parts in this descriptor's object
        // (written by `init`), which lives as long as `self`.
        unsafe { &*self.nodes.add(nid) }
    }
    /// Every per-node part, node 0 first.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &CacheNode)> + '_ {
        (0..self.nr_nodes as usize).map(move |n| (n, self.node(n)))
    }
    /// The bit of the machine word that says failslab is armed (machine ids are the
    /// addresses of aligned states: the bit is never part of one).
    pub(crate) const ARMED: usize = 1;
    /// Whether the cache belongs to machine `k` (a load, a mask and a compare).
    #[inline(always)]
    pub(crate) fn is_of<P: Platform>(&self, k: &Kmem<P>) -> bool {
        self.machine.load(Ordering::Relaxed) & !Self::ARMED == k.machine_id()
    }
    /// Whether the fast paths may serve this cache for machine `k`: it belongs to `k` and
    /// failslab is not armed (a load and a compare). False sends the caller to its careful
    /// path, which checks [`KmemCache::is_of`].
    #[inline(always)]
    pub(crate) fn fast_is_of<P: Platform>(&self, k: &Kmem<P>) -> bool {
        self.machine.load(Ordering::Relaxed) == k.machine_id()
    }
    /// This cache's sheaves on `cpu`.
    #[inline(always)]
    pub(crate) fn pcs<'a, P: Platform>(&'a self, k: &Kmem<P>, cpu: usize) -> &'a CpuSheaves {
        // SAFETY: `cpu_sheaves` is a live per-CPU allocation of a CpuSheaves (aligned,
        // initialised on every CPU by `kmem_cache_create`), freed only by destroy after which
        // no reference to this descriptor is used; `cpu` comes from the platform (< nr_cpus).
        unsafe { &*(k.per_cpu_ptr_unchecked(self.cpu_sheaves, cpu) as *const CpuSheaves) }
    }
    /// A statistics counter summed over CPUs (0, reported, if `k` is not the cache's machine).
    pub fn stat<P: Platform>(&self, k: &Kmem<P>, s: super::sheaf::SlubStat) -> u64 {
        if !self.is_of(k) {
            k.cache_of_other_machine("slab_stat", self);
            return 0;
        }
        (0..k.nr_cpus()).map(|c| self.pcs(k, c).stat_value(s)).sum()
    }
    /// Objects held in sheaves: every CPU's and every barn's (racy; 0, reported, if `k` is
    /// not the cache's machine).
    pub fn sheaf_objects<P: Platform>(&self, k: &Kmem<P>) -> usize {
        if !self.is_of(k) {
            k.cache_of_other_machine("sheaf_objects", self);
            return 0;
        }
        let cpus: usize = (0..k.nr_cpus()).map(|c| self.pcs(k, c).objects()).sum();
        let barns: usize = self
            .nodes()
            .map(|(_, n)| {
                let g = n.barn.lock().lock_irqsave(k.platform());
                let o = n.barn.objects_locked(&g);
                drop(g);
                o
            })
            .sum();
        cpus + barns
    }
    /// Objects per sheaf (0: the cache has no sheaves).
    pub fn sheaf_capacity(&self) -> usize {
        self.sheaf_capacity as usize
    }
}

/// An owned slab cache: what [`Kmem::kmem_cache_create`] returns. Dropping it destroys the
/// cache (`kmem_cache_destroy`); `Deref` gives the descriptor.
pub struct Cache<'m, P: Platform> {
    pub(crate) kmem: &'m Kmem<P>,
    pub(crate) cache: NonNull<KmemCache>,
}

// SAFETY: a Cache is a shared reference to a Sync descriptor plus the machine, which is Sync.
unsafe impl<P: Platform> Send for Cache<'_, P> {}
// SAFETY: as for Send.
unsafe impl<P: Platform> Sync for Cache<'_, P> {}

impl<'m, P: Platform> Cache<'m, P> {
    /// The machine.
    pub fn kmem(&self) -> &'m Kmem<P> {
        self.kmem
    }
    /// Gives up ownership without destroying the cache (a kernel's global cache pointer).
    pub fn into_raw(self) -> NonNull<KmemCache> {
        let p = self.cache;
        core::mem::forget(self);
        p
    }
    /// Takes ownership of a raw cache.
    ///
    /// # Safety
    ///
    /// `cache` must come from [`Cache::into_raw`] on `kmem`, and be owned by nobody else.
    pub unsafe fn from_raw(kmem: &'m Kmem<P>, cache: NonNull<KmemCache>) -> Self {
        Self { kmem, cache }
    }
}

impl<P: Platform> core::ops::Deref for Cache<'_, P> {
    type Target = KmemCache;
    fn deref(&self) -> &KmemCache {
        // SAFETY: the handle keeps the cache alive: it is destroyed only by this handle's drop
        // (or `kmem_cache_destroy`, which consumes it).
        unsafe { self.cache.as_ref() }
    }
}

impl<P: Platform> Drop for Cache<'_, P> {
    fn drop(&mut self) {
        // SAFETY: the handle owns one reference to the cache and is going away.
        unsafe { self.kmem.destroy_cache_ref(self.cache, core::panic::Location::caller()) };
    }
}

impl<P: Platform> fmt::Debug for Cache<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

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
}

impl Default for SlabBootConfig<'_> {
    fn default() -> Self {
        Self { nomerge: false, min_order: 0, max_order: 3, min_objects: 0, slub_debug: None }
    }
}

/// Bytes of the `slub_debug=` string kmem keeps.
pub const SLUB_DEBUG_MAX: usize = 127;
/// The id of the boot cache `kmem_cache` (found without the id table).
pub(crate) const BOOT_CACHE_ID: u32 = 1;
/// The id of the sheaves' cache `kmem_sheaf` (found without the id table).
pub(crate) const SHEAF_CACHE_ID: u32 = 2;

/// The cache-id table: `MAX_CACHES` slots holding descriptor addresses.
pub(crate) type IdTable = [AtomicUsize; MAX_CACHES];

/// The machine's slab registry (lives in the machine state, so it is kept small: the id
/// table and the call-site depot are page-allocator blocks allocated when first needed).
pub(crate) struct SlabState {
    /// `slab_mutex`: guards the cache list and registry, and merging decisions.
    pub(crate) list_lock: RawSpinLock,
    /// Newest cache (list head), 0 if none.
    pub(crate) head: AtomicUsize,
    /// Address of the [`IdTable`], 0 until the first `kmem_cache_create`.
    pub(crate) ids: AtomicUsize,
    /// The boot cache `kmem_cache` (carved at boot).
    pub(crate) boot_cache: AtomicUsize,
    pub(crate) boot_cache_mem: usize,
    /// Memory carved at boot for the `kmem_sheaf` descriptor.
    pub(crate) sheaf_cache_mem: usize,
    pub(crate) nomerge: bool,
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
                order: OrderParams::new(1),
                debug_str: [0; SLUB_DEBUG_MAX],
                debug_len: 0,
                seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
                tainted: AtomicBool::new(false),
                depot: AtomicUsize::new(0),
                sheaf_cache: AtomicUsize::new(0),
                defer: super::defer::DeferFree::new(),
            }
        }
    }

    /// Applies the boot configuration (during boot, before any cache exists).
    pub(crate) fn configure(&mut self, cfg: &SlabBootConfig<'_>, nr_cpus: usize) {
        self.nomerge = cfg.nomerge;
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

    /// Fills a just-installed id table with the boot caches. `g` holds the list lock.
    pub(crate) fn register_boot_caches_locked<P: Platform>(&self, g: &SpinGuard<'_, P>) {
        debug_assert!(g.holds(&self.list_lock));
        if let Some(t) = self.id_table() {
            for (id, c) in [(BOOT_CACHE_ID, &self.boot_cache), (SHEAF_CACHE_ID, &self.sheaf_cache)] {
                t[id as usize].store(c.load(Ordering::Acquire), Ordering::Release);
            }
        }
    }

    /// The id table, once allocated.
    #[inline(always)]
    pub(crate) fn id_table(&self) -> Option<&IdTable> {
        let p = self.ids.load(Ordering::Acquire);
        // SAFETY: `ids` is 0 or the address of a zeroed, page-aligned block of at least
        // size_of::<IdTable>() bytes that is never freed (installed once by `install_ids`).
        (p != 0).then(|| unsafe { &*(p as *const IdTable) })
    }

    /// The cache with id `id`. (Every slab's cache is in the table: the table is installed
    /// by the first `kmem_cache_create`, with the boot caches, before any slab exists.)
    #[inline(always)]
    pub(crate) fn cache(&self, id: u32) -> Option<&KmemCache> {
        let p = self.id_table()?.get(id as usize)?.load(Ordering::Acquire);
        // SAFETY: a registered id names a live descriptor: it is unregistered (under the list
        // lock) before its descriptor is freed, and only after its last slab is gone, so a
        // slab page naming it cannot outlive it. 1 marks an id reserved for a cache being
        // created, which no slab names yet.
        (p > RESERVED_ID).then(|| unsafe { &*(p as *const KmemCache) })
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
            t[c.id as usize].store(0, Ordering::Release);
        }
    }

    /// Reserves a free id, or `None` if the table is full or not allocated. `g` holds the
    /// list lock; ids 0, [`BOOT_CACHE_ID`] and [`SHEAF_CACHE_ID`] are never handed out.
    pub(crate) fn reserve_id_locked<P: Platform>(&self, g: &SpinGuard<'_, P>) -> Option<u32> {
        debug_assert!(g.holds(&self.list_lock));
        let t = self.id_table()?;
        let i = (SHEAF_CACHE_ID as usize + 1..MAX_CACHES.min(MAX_SLAB_CACHE_ID as usize))
            .find(|&i| t[i].load(Ordering::Relaxed) == 0)?;
        t[i].store(RESERVED_ID, Ordering::Relaxed);
        Some(i as u32)
    }

    /// Gives back an id reserved by [`SlabState::reserve_id_locked`] that was never linked.
    /// `g` holds the list lock.
    pub(crate) fn release_id_locked<P: Platform>(&self, g: &SpinGuard<'_, P>, id: u32) {
        debug_assert!(g.holds(&self.list_lock));
        if let Some(t) = self.id_table() {
            t[id as usize].store(0, Ordering::Relaxed);
        }
    }
}
