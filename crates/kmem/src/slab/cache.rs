//! [`KmemCache`] (`struct kmem_cache`), its per-node part ([`CacheNode`],
//! `struct kmem_cache_node`) and [`Cache`], the owning handle `kmem_cache_create` returns.
//! The machine's cache registry is in `registry.rs`.
//!
//! Every cache descriptor is an object of the boot cache `kmem_cache`, whose own descriptor
//! is carved from memblock at boot (Linux copies its boot descriptors into slab objects;
//! kmem keeps the boot one where it was carved). A descriptor is followed in the same
//! object by one [`CacheNode`] per NUMA node.

use core::fmt;
use core::ptr::NonNull;

use super::flags::SlabFlags;
use super::layout::Layout;
use super::registry::SHEAF_CACHE_ID;
use super::sheaf::{Barn, CpuSheaves};
use super::SlabAllocError;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page::Page;
use crate::mm::pfn_list::PfnList;
use crate::percpu::PercpuPtr;
use crate::platform::Platform;
use crate::sync::{const_fn_unless_loom, AtomicI32, AtomicU32, AtomicU8, AtomicUsize, Ordering, RawSpinLock};

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

// `KmemCache::plain_objects` holds any slab's object count.
const _: () = assert!(super::layout::MAX_OBJS_PER_PAGE <= u16::MAX as u32);

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
    /// The free-pointer word of an object held in a sheaf ([`sheaf_marker`](super::word::sheaf_marker)):
    /// the cache's tag (the high half of `s->random`) and [`OFF_SHEAF`](super::word::OFF_SHEAF).
    /// Free objects' words carry the tag, so it is also what the double-free test compares.
    pub(crate) marker: u64,
    /// The secret low half of the free-pointer key ([`freeptr_key`](super::word::freeptr_key)):
    /// `s->random`'s two halves folded, never written anywhere an object could reveal.
    pub(crate) key_lo: u32,
    /// Exact division by the slot size ([`exact_divisor`](super::layout::exact_divisor)):
    /// the odd part's inverse and the power of two.
    pub(crate) div_inv: u64,
    pub(crate) div_shift: u8,
    /// The head-page word of this cache's plain slabs ([`Page::slab_word`]); for a cache
    /// that makes none (a debug cache), a word no page carries.
    pub(crate) plain_word: u32,
    /// Objects in a plain slab (of the cache's order; at most `MAX_OBJS_PER_PAGE`) for the
    /// free fast paths' object test ([`KmemCache::is_plain_object`]); 0 for a cache of a
    /// machine with several nodes, whose frees must ask which node an object is on: the test
    /// then sends all of them to the careful paths, so the fast paths skip the node-count test
    /// (`Kmem::free_checked_fast_then`).
    pub(crate) plain_objects: u16,
    /// Minus the bytes of a slab of the cache's order (a mask, sign-extended when used).
    /// Plain slabs are aligned to their size (buddy blocks are), so the physical address of
    /// an object of a plain slab masked with this is the slab's (`Kmem::plain_slab_off`).
    pub(crate) head_mask: i32,
    /// The bytes of a slab of the cache's order minus one: `!head_mask`, kept apart so that
    /// `kfree`'s offset of an object in its slab is one `and` (`Kmem::plain_slab_of`).
    pub(crate) off_mask: u32,
    pub(crate) layout: Layout,
    pub(crate) debug: bool,
    /// `init_on_alloc` / `init_on_free` for this cache (`mm::meminit::INIT_ALLOC`,
    /// `INIT_FREE`): 0 for caches with a constructor or `SLAB_TYPESAFE_BY_RCU`. A cache
    /// zeroed on free has no plain slabs, so every free reaches `free_object`.
    pub(crate) meminit: u8,
    /// The kmalloc class whose fast-table entry this cache's sheaves may take
    /// (`fast_table.rs`): set by kmalloc for its normal caches whose objects the fast path
    /// can hand out knowing only the class; [`super::fast_table::NO_CLASS`] otherwise.
    pub(crate) fast_class: AtomicU8,
    pub(crate) id: u32,
    /// The fast-table entry that names the cache's main sheaf on each CPU, through which
    /// `kmem_cache_alloc` and `kmem_cache_free` reach it
    /// ([`FastTable::named_word`](super::fast_table::FastTable::named_word) of `id`).
    pub(crate) fast_word: u32,
    pub(crate) ctor: Option<Ctor>,
    pub(crate) allocflags: Gfp,
    pub(crate) min_partial: u16,
    /// Colours a slab can have (1 without `SLAB_COLOUR`).
    pub(crate) colours: u16,
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
    pub(crate) nr_nodes: u16,
    /// The name's bytes (no terminator: `name_len` says where it ends).
    name: [u8; CACHE_NAME_MAX],
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

/// The descriptor every kmalloc slot names until its cache exists ([`KmemCache::absent`]).
/// Never written; shared by every machine. Loom's atomics cannot be built in a `static`:
/// models keep the slots' null test.
#[cfg(not(loom))]
pub(crate) static ABSENT: KmemCache = KmemCache::absent();

/// What an empty kmalloc slot holds: [`ABSENT`]'s address (0 under loom). A free id's slot
/// of the cache-id table holds it too.
#[inline(always)]
pub(crate) fn absent_addr() -> usize {
    #[cfg(not(loom))]
    {
        &ABSENT as *const KmemCache as usize
    }
    #[cfg(loom)]
    {
        0
    }
}

/// The descriptor the cache-id table names for an id reserved for a cache under
/// construction: a copy of [`ABSENT`] at an address of its own (the registry tells it from a
/// free id), never written, no objects (the free fast path reads a slot's descriptor without
/// testing the slot: it finds no object in this one).
#[cfg(not(loom))]
static RESERVED: KmemCache = KmemCache::absent();

/// What the cache-id table holds for a reserved id: [`RESERVED`]'s address (1 under loom).
#[inline(always)]
pub(crate) fn reserved_addr() -> usize {
    #[cfg(not(loom))]
    {
        &RESERVED as *const KmemCache as usize
    }
    #[cfg(loom)]
    {
        1
    }
}

impl KmemCache {
    /// A descriptor no fast path ever serves, for the kmalloc slots whose cache does not exist
    /// yet, so that the fast paths read a slot's cache without testing the slot: its machine
    /// word is no machine's (0), so the allocation fast paths decline it; its plain word is
    /// `slab_word(0, false)`, which no page carries, and it has no objects, so the free fast
    /// paths find none of its objects. It has no per-CPU table and no nodes: nothing reads
    /// them past those tests.
    #[cfg(not(loom))]
    const fn absent() -> KmemCache {
        let layout = Layout {
            object_size: 0,
            size: 0,
            align: 0,
            inuse: 0,
            offset: 0,
            red_left_pad: 0,
            flags: SlabFlags::NONE,
            order: 0,
            objects: 0,
            min_order: 0,
            min_objects: 0,
        };
        KmemCache {
            cpu_sheaves: PercpuPtr::NULL,
            machine: AtomicUsize::new(0),
            sheaf_capacity: 0,
            marker: 0,
            key_lo: 0,
            div_inv: 0,
            div_shift: 0,
            plain_word: Page::slab_word(0, false),
            plain_objects: 0,
            head_mask: (crate::PAGE_SIZE as i32).wrapping_neg(),
            off_mask: crate::PAGE_SIZE as u32 - 1,
            layout,
            debug: false,
            meminit: 0,
            fast_class: AtomicU8::new(super::fast_table::NO_CLASS),
            id: 0,
            fast_word: super::fast_table::FastTable::named_word(0) as u32,
            ctor: None,
            allocflags: Gfp::empty(),
            min_partial: 0,
            colours: 1,
            colour_step: 0,
            colour_next: AtomicU32::new(0),
            object_size: AtomicU32::new(0),
            refcount: AtomicI32::new(-1),
            list_next: AtomicUsize::new(0),
            list_prev: AtomicUsize::new(0),
            nodes: core::ptr::null(),
            nr_nodes: 0,
            name: [0; CACHE_NAME_MAX],
            name_len: 0,
        }
    }

    /// Bytes of a descriptor with its per-node parts for `nr_nodes` nodes.
    ///
    /// (It carried a table of every possible CPU's `CpuSheaves` address too, written at
    /// creation: one load less on the careful paths, which alone use it since the fast table,
    /// for 8 bytes a possible CPU in every cache written at boot. A process machine of 256
    /// possible CPUs paid 85,000 instructions and 38 page faults more at its first `malloc`
    /// than one of 64.)
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
        let mut name = [0u8; CACHE_NAME_MAX];
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
        // Bit 56 set: the key's high half is never zero for an 8-aligned slot, so zeroed
        // memory never decodes like a free object's pointer (free.rs).
        let random = init.random | 1 << 56;
        let cache = KmemCache {
            cpu_sheaves: init.cpu_sheaves,
            machine: AtomicUsize::new(init.machine),
            sheaf_capacity: if l.flags.intersects(SlabFlags::DEBUG_FLAGS) { 0 } else { init.sheaf_capacity },
            marker: super::word::sheaf_marker(random),
            key_lo: super::word::key_lo(random),
            div_inv: super::layout::exact_divisor(l.size).0,
            div_shift: super::layout::exact_divisor(l.size).1,
            plain_word: if debug || init.meminit & crate::mm::meminit::INIT_FREE != 0 {
                Page::slab_word(0, false)
            } else {
                Page::slab_word(init.id, true)
            },
            plain_objects: if init.nr_nodes > 1 { 0 } else { l.objects as u16 },
            head_mask: ((crate::PAGE_SIZE as i32) << l.order).wrapping_neg(),
            off_mask: ((crate::PAGE_SIZE as u32) << l.order) - 1,
            layout: l,
            debug,
            meminit: init.meminit,
            fast_class: AtomicU8::new(super::fast_table::NO_CLASS),
            id: init.id,
            fast_word: super::fast_table::FastTable::named_word(init.id as usize) as u32,
            ctor: init.ctor,
            allocflags,
            // Sheaves are freed in bursts (shrink, destroy, a CPU going offline): their cache
            // keeps no empty slab.
            min_partial: if init.id == SHEAF_CACHE_ID { 0 } else { super::layout::min_partial(l.size) as u16 },
            colours: colours as u16,
            colour_step,
            colour_next: AtomicU32::new(0),
            object_size: AtomicU32::new(l.object_size),
            refcount: AtomicI32::new(init.refcount),
            list_next: AtomicUsize::new(0),
            list_prev: AtomicUsize::new(0),
            nodes,
            nr_nodes: init.nr_nodes as u16,
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
    /// Whether this is one of kmem's own boot caches (`kmem_cache`, the descriptors, and
    /// `kmem_sheaf`, the sheaves), whose objects kmem alone allocates and frees: nobody
    /// outside kmem holds one, so `kfree`, `ksize`, `krealloc` and `kfree_nolock` refuse
    /// them as pointers kmalloc did not return (a stray pointer must not free a sheaf or a
    /// cache descriptor that kmem still uses).
    #[inline]
    pub(crate) fn is_kmem_internal(&self) -> bool {
        self.id == super::registry::BOOT_CACHE_ID || self.id == SHEAF_CACHE_ID
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
        self.fast_is_of_id(k.machine_id())
    }
    /// [`KmemCache::fast_is_of`] for a caller that knows the cache is the machine's (its
    /// owning handle): failslab and KFENCE are not armed (a load and a bit test).
    #[inline(always)]
    pub(crate) fn fast_unarmed(&self) -> bool {
        self.machine.load(Ordering::Relaxed) & Self::ARMED == 0
    }
    /// [`KmemCache::fast_is_of`] for the machine whose id ([`Kmem::machine_id`]) the caller
    /// has at hand.
    #[inline(always)]
    pub(crate) fn fast_is_of_id(&self, id: usize) -> bool {
        self.machine.load(Ordering::Relaxed) == id
    }
    /// This cache's sheaves on `cpu`: `per_cpu_ptr(cpu_sheaves, cpu)` (the chunk's unit for
    /// the CPU and the area's offset). The careful paths use it; the fast paths find the
    /// CPU's main sheaf through the CPU's fast table (`fast_table.rs`).
    #[inline(always)]
    pub(crate) fn pcs<'a, P: Platform>(&'a self, k: &Kmem<P>, cpu: usize) -> &'a CpuSheaves {
        debug_assert!(cpu < k.nr_cpus(), "CPU {cpu} of {}", k.nr_cpus());
        // SAFETY: `cpu_sheaves` is this cache's live per-CPU allocation of a CpuSheaves
        // (aligned, zero, i.e. `CpuSheaves::new()`, from creation on), freed only by destroy,
        // after which no reference to this descriptor is used; `cpu` comes from the platform,
        // below `nr_cpus`; the cache is `k`'s (its callers' checks).
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
    /// `kmem_cache_alloc(s, gfp)` through the cache's handle: [`Kmem::kmem_cache_alloc`] of
    /// this cache on its machine, without testing that the cache is the machine's (the
    /// handle is); the fast path tests only that nothing is armed (failslab, KFENCE), with a
    /// bit of the cache's word rather than a compare with the machine's id.
    ///
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(16).build().unwrap();
    /// let c = m.kmem_cache_create("handle", 64, 0, SlabFlags::NONE, None).unwrap();
    /// let p = c.alloc(Gfp::KERNEL).unwrap();
    /// // SAFETY: allocated from `c` just above, freed once.
    /// unsafe { c.free(p) };
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn alloc(&self, gfp: Gfp) -> Result<NonNull<u8>, SlabAllocError> {
        self.kmem.slab_alloc_own(self, gfp, core::panic::Location::caller())
    }
    /// `kmem_cache_free(s, obj)` through the cache's handle: [`Kmem::kmem_cache_free`]
    /// without testing that the cache is the machine's (3 instructions less on the fast
    /// path); the same checks of the object and the same reports.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`].
    #[inline(always)]
    #[track_caller]
    pub unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: forwarded caller contract; the handle's cache is its machine's.
        unsafe { self.kmem.kmem_cache_free_own(self, obj, core::panic::Location::caller()) }
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
