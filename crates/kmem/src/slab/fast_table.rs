//! Each CPU's fast table: the addresses of the CPU's main sheaves of the caches the fast
//! paths serve, indexed the way those paths know the cache: by kmalloc class (what `malloc`
//! and `kmalloc` know before they touch anything) and by cache id (what `kfree` reads in the
//! object's page descriptor, and what `kmem_cache_alloc` and `kmem_cache_free` read in the
//! cache they are given: `KmemCache::fast_word`, one load where the cache's per-CPU
//! `CpuSheaves` took four instructions more a call).
//!
//! Without it, a fast path went from the machine to its kmalloc table, the class's cache,
//! the cache's table of per-CPU addresses and the CPU's sheaves: a chain of dependent
//! loads that the processor cannot start before the previous one ends. Linux's shape is
//! shorter (`this_cpu_ptr(s->cpu_sheaves)` is one add of the CPU's `this_cpu_off`, which
//! x86 keeps in a segment register); here the platform keeps the address of each CPU's
//! table where its fast pin finds the CPU ([`Platform::try_pin_cpu_area`]: for a hosted
//! owned CPU, a copy in the thread's context read with the thread's other words), so that
//! `malloc` goes from the pinned CPU to its table, the class's sheaves and the main sheaf.
//! Measured: a C loop of 1000 `malloc(64)` then 1000 `free` 6% faster, the Rust
//! `GlobalAlloc` pair 12% (`crates/kmem-bench/notes/where-kmem-loses.md`, "night").
//!
//! # Entries
//!
//! An entry is the address of the CPU's main sheaf of one live cache, or of the empty sheaf
//! ([`empty_sheaf`]: no objects, no room), never 0 once the CPU is up: the fast path goes
//! from the entry to the sheaf's count with no test of the entry, and an empty entry fails
//! its pop or push as an empty or full sheaf does (since 2026-12-06: a null test and its
//! branch less on every allocation and free; the entries named the CPU's [`CpuSheaves`]
//! before 2026-12-05, one dependent load more). A CPU's per-CPU memory starts zeroed, so
//! its table is written empty before its first fast pin ([`FastTable::init`]): at boot for
//! every CPU, or on a platform whose CPUs come up later (a hosted machine with a CPU per
//! thread) for those online then and by [`Kmem::cpu_up_prepare`] for each other as it
//! comes up, and by the CPU's first fill if it ran before that (a CPU borrowed with
//! `run_on_cpu`). Entries mirror `CpuSheaves::main`, filled lazily:
//!
//! - **Filled** by the CPU itself, pinned, on its careful paths ([`Kmem::fast_table_fill`]:
//!   an allocation that found the entry empty, a free's slow path), so a machine of many
//!   possible CPUs never touches the per-CPU memory of CPUs that do not allocate. The fill
//!   also tells the `CpuSheaves` where its entries are (`mirror_in`).
//! - **Kept** by every change of the CPU's main sheaf (`CpuSheaves::set_main` and `swap`,
//!   whoever makes it: the CPU on its slow paths, or the CPU's teardown): the id entry is
//!   stored the new sheaf (the empty one for none); the class entry is compare-and-swapped
//!   from the old sheaf to the new one, so that one cleared by arming meanwhile stays empty,
//!   and one that mirrored no sheaf is left for the next careful allocation (or slow free)
//!   to fill. Nothing else writes `main`.
//! - **A class entry** exists only for a plain kmalloc cache of the normal type (set by
//!   kmalloc, `KmemCache::fast_class`; the table keeps the cache's free-pointer offset and
//!   object size beside it, what the allocation fast path needs of the cache), and only
//!   while nothing is armed (failslab, fail-nth, `init_on_alloc`, KFENCE's sampling: the
//!   allocations must then take the careful path, which the cache's machine word used to
//!   tell the fast path). Arming clears every CPU's class entries
//!   ([`Kmem::fast_table_disarm_classes`]); a CPU filling one re-checks the armed state
//!   after its store (Dekker's pattern, both sides with a full fence: the filler sees the
//!   arming, or the arming's clear comes after the fill). Disarming gives nothing back: each
//!   CPU fills its class entries again on its next careful allocation of the class (another
//!   CPU's main sheaf is not to be read from here).
//! - **An id entry** exists for a cache with sheaves whose id is below [`FAST_IDS`]; the free
//!   fast path admits only those ids (others take the careful free). Destroying a cache
//!   clears its entries on every CPU before its per-CPU sheaves are freed and its id can be
//!   reused ([`Kmem::fast_table_forget`]): the cache has no objects left and no user, so no
//!   CPU can be filling or using its entry then.
//!
//! The fast paths still check everything they checked: a free's object against its slab's
//! cache (the id's record, `fast_check.rs`), and the double-free tag; an entry only says
//! where the CPU's main sheaf of that cache is.

use super::cache::KmemCache;
use super::cpu_sheaves::CpuSheaves;
use super::sheaf::{empty_sheaf, Sheaf};
use crate::kmalloc::KMALLOC_NR;
use crate::machine::Kmem;
use crate::percpu::PercpuPtr;
use crate::platform::{CpuId, Pinned, Platform};
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// Class entries: kmalloc's classes (indices below [`KMALLOC_NR`]).
pub(crate) const FAST_CLASSES: usize = 16;
/// Id entries: caches with ids below this (the boot caches, kmalloc's, and the first user
/// caches) have their frees on the fast path.
pub(crate) const FAST_IDS: usize = 32;
/// `KmemCache::fast_class` of a cache without a class entry.
pub(crate) const NO_CLASS: u8 = u8::MAX;

const _: () = assert!(KMALLOC_NR <= FAST_CLASSES && FAST_IDS.is_power_of_two());

/// Bytes of the per-CPU allocator's first chunk each CPU gives its fast table.
pub const FAST_TABLE_PERCPU_BYTES: usize = core::mem::size_of::<FastTable>();

/// Where a table's entries start in it, and so in their page ([`FastTable`]).
pub(crate) const TABLE_COLOUR: usize = 8;
const _: () = assert!(cfg!(loom) || core::mem::offset_of!(FastTable, words) == TABLE_COLOUR);

/// One CPU's fast table (a per-CPU allocation): class entries, then id entries, then what
/// the allocation fast path needs of a class's cache (its free-pointer offset, which it
/// clears, and its object size, which `__GFP_ZERO` zeroes), written before the class entry.
///
/// The entries start 8 bytes into the table ([`TABLE_COLOUR`]), which is 128-byte aligned
/// (the first one starts a page): a load waits on an earlier store to an address with the
/// same low 12 bits as if the two overlapped (4 KiB aliasing), and each free stores its
/// object's tag at the object's start, so an entry (or free-pointer offset) at a multiple of
/// its class's size in its page slowed the class's hot pair whenever the hot block sat at
/// the same place in its own page (`kmalloc-16`'s entry at offset 32 and the third block of
/// a slab: 14.4 ns a pair instead of 12.5, measured). 8 bytes in, no class of 16 bytes or
/// more has its entry or its offset word where one of its blocks starts, wherever in its
/// page the table lies (test `no_class_entry_shares_its_blocks_low_bits`); `kmalloc-8`'s
/// blocks start at every word, so its entry shares its low bits with one block of a page.
#[repr(C, align(128))]
pub(crate) struct FastTable {
    /// 1 once the entries are written ([`FastTable::init`]; a CPU's per-CPU memory starts
    /// zeroed, and an empty entry names the empty sheaf, not 0). First, so that it also
    /// shifts the entries off the page's first word ([`TABLE_COLOUR`]).
    ready: AtomicUsize,
    words: [AtomicUsize; FAST_CLASSES + FAST_IDS],
    class_fp: [AtomicU32; FAST_CLASSES],
    class_size: [AtomicU32; FAST_CLASSES],
}

impl FastTable {
    /// The table at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` is what [`Kmem::try_pin_fast_table`] returned (a CPU's table, never freed).
    #[inline(always)]
    pub(crate) unsafe fn at<'a>(addr: usize) -> &'a FastTable {
        // SAFETY: the caller's contract: the platform returns the word `fast_table_init` set
        // for the pinned CPU, at boot, before any allocation.
        unsafe { &*(addr as *const FastTable) }
    }
    /// The entry of kmalloc class `index` (below [`FAST_CLASSES`]).
    #[inline(always)]
    pub(crate) const fn class_word(index: usize) -> usize {
        index
    }
    /// The entry of cache id `id` (below [`FAST_IDS`]).
    #[inline(always)]
    pub(crate) const fn id_word(id: usize) -> usize {
        FAST_CLASSES + id
    }
    /// The entry through which the named-cache fast paths (`kmem_cache_alloc`,
    /// `kmem_cache_free`) of cache id `id` reach its sheaves (`KmemCache::fast_word`): its
    /// id entry; for an id past [`FAST_IDS`], id 0's, which stays empty (no cache has id 0:
    /// ids start after the boot caches', and the absent descriptor's 0 has no sheaves), so
    /// that its fast paths fail to the careful ones with no test of the id.
    pub(crate) const fn named_word(id: usize) -> usize {
        Self::id_word(if id < FAST_IDS { id } else { 0 })
    }
    /// The sheaf entry `word` names: the CPU's main sheaf of the entry's cache, or the empty
    /// sheaf ([`empty_sheaf`]), on which a pop and a push both fail. No test of the entry:
    /// the fast paths' pop and push tests are the only ones. The table is the pinned CPU's,
    /// written ([`FastTable::init`]) before the CPU's first fast pin.
    #[inline(always)]
    pub(crate) fn sheaf(&self, word: usize) -> &Sheaf {
        let p = self.words[word].load(Ordering::Acquire);
        debug_assert!(p != 0, "a fast table read before its CPU came up");
        // SAFETY: an entry of a written table is the address of this CPU's main sheaf of a
        // live cache (module docs: filled from the CPU's `CpuSheaves`, changed with its main
        // sheaf, emptied before the cache is freed), a live `kmem_sheaf` object the CPU owns
        // while it is its main sheaf and only the CPU, pinned, reads; or the empty sheaf,
        // a static.
        unsafe { &*(p as *const Sheaf) }
    }
    /// [`FastTable::sheaf`] of a word the caller vouches for, with no bound test (a word read
    /// from a cache descriptor, `KmemCache::fast_word`, which the compiler cannot bound).
    ///
    /// # Safety
    ///
    /// `word` is an entry's: below `FAST_CLASSES + FAST_IDS`.
    #[inline(always)]
    pub(crate) unsafe fn sheaf_unchecked(&self, word: usize) -> &Sheaf {
        debug_assert!(word < self.words.len());
        // SAFETY: the caller's contract.
        unsafe { core::hint::assert_unchecked(word < self.words.len()) };
        self.sheaf(word)
    }
    /// Writes every entry empty (the empty sheaf), once: the CPU's table is then `ready`.
    /// Idempotent, and harmless beside the CPU's own fills and other CPUs' clears: every
    /// write here names the empty sheaf.
    fn init(&self) {
        // A compare-exchange, not a load: this is a CPU's first touch of its table's page
        // (zero-filled anonymous memory on a hosted machine, whose first load maps the shared
        // zero page, so that the stores below fault a second time: two page faults for each
        // thread that came online, measured on `mtbench many`). Not an idempotent
        // `fetch_add(0)` either, which LLVM compiles to a fence and a load.
        if self.ready.compare_exchange(0, 0, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let empty = empty_sheaf();
        for w in &self.words {
            // Not over a fill of the CPU's that came first (a CPU borrowed for
            // `run_on_cpu` may fill before its first owner brings it up).
            let _ = w.compare_exchange(0, empty, Ordering::AcqRel, Ordering::Relaxed);
        }
        self.ready.store(1, Ordering::Release);
    }
    /// Whether the entries are written.
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) != 0
    }
    /// The address of entry `word` (for [`CpuSheaves::mirror_in`]).
    fn slot(&self, word: usize) -> usize {
        &self.words[word] as *const AtomicUsize as usize
    }
    /// The free-pointer offset of class `index`'s cache, for an object from its entry.
    #[inline(always)]
    pub(crate) fn class_fp(&self, index: usize) -> usize {
        self.class_fp[index].load(Ordering::Relaxed) as usize
    }
    /// The object size of class `index`'s cache, for an object from its entry.
    #[inline(always)]
    pub(crate) fn class_size(&self, index: usize) -> usize {
        self.class_size[index].load(Ordering::Relaxed) as usize
    }
    /// Sets entry `word` to the sheaf at `main` (0: empty, the empty sheaf), if it differs.
    fn set(&self, word: usize, main: usize) {
        let v = if main == 0 { empty_sheaf() } else { main };
        let w = &self.words[word];
        if w.load(Ordering::Relaxed) != v {
            w.store(v, Ordering::Release);
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_init`'s part: every CPU's table (zeroed per-CPU memory), each CPU's area
    /// word for the platform, and the tables written empty ([`FastTable::init`]): every
    /// CPU's, or on a platform whose CPUs come up later
    /// ([`Platform::cpus_come_up_later`]) those online now (the others' are written by
    /// [`Kmem::cpu_up_prepare`], which the platform runs first: a process machine of 64
    /// possible CPUs does not touch 64 tables at start-up). The tables come from the
    /// first chunk's dynamic region, next to the per-CPU sheaves of the first caches, on a
    /// page a CPU that allocates touches anyway (the reserved region's first page is touched
    /// by nothing else: one page fault more at a process's start).
    pub(crate) fn fast_table_init(&self) -> Result<(), super::CacheError> {
        let (size, align) = (core::mem::size_of::<FastTable>(), core::mem::align_of::<FastTable>());
        let p = self
            .__alloc_percpu_gfp(size, align, crate::gfp::Gfp::KERNEL | crate::gfp::Gfp::NOWARN)
            .map_err(|_| super::CacheError::NoMemory)?;
        let (chunk, off) = p.to_raw();
        let st = self.slab();
        st.fast_off.store(off, Ordering::Relaxed);
        st.fast_chunk.store(chunk, Ordering::Release);
        for cpu in 0..self.nr_cpus() {
            let t = self.fast_table(cpu);
            // Loom's atomics are not plain integers: models write the empty entries.
            #[cfg(loom)]
            // SAFETY: a fresh per-CPU area of a FastTable's size and alignment, ours alone.
            unsafe {
                (t as *const FastTable as *mut FastTable).write(FastTable {
                    ready: AtomicUsize::new(0),
                    words: core::array::from_fn(|_| AtomicUsize::new(0)),
                    class_fp: core::array::from_fn(|_| AtomicU32::new(0)),
                    class_size: core::array::from_fn(|_| AtomicU32::new(0)),
                })
            };
            self.platform().set_cpu_area(CpuId(cpu as u32), t as *const FastTable as usize);
            let p = self.platform();
            if !p.cpus_come_up_later() || p.cpu_online(CpuId(cpu as u32)) {
                t.init();
            }
        }
        Ok(())
    }

    /// Writes CPU `cpu`'s fast table empty if it is not yet (the CPU comes online: a
    /// platform whose CPUs come and go runs it before the CPU's first fast pin; boot writes
    /// those online then).
    pub(crate) fn fast_table_up(&self, cpu: usize) {
        if self.slab().fast_chunk.load(Ordering::Acquire) != 0 && cpu < self.nr_cpus() {
            self.fast_table(cpu).init();
        }
    }

    /// CPU `cpu`'s table (`cpu` below the CPU count; after `kmem_cache_init`).
    #[inline(always)]
    pub(crate) fn fast_table(&self, cpu: usize) -> &FastTable {
        let st = self.slab();
        let p = PercpuPtr::from_raw(st.fast_chunk.load(Ordering::Acquire), st.fast_off.load(Ordering::Relaxed));
        debug_assert!(!p.is_null(), "fast table used before kmem_cache_init");
        // SAFETY: a live per-CPU allocation of a FastTable, never freed (made at boot by
        // `fast_table_init`, before any cache), and a CPU of the machine.
        unsafe { &*(self.per_cpu_ptr_unchecked(p, cpu) as *const FastTable) }
    }

    /// [`Kmem::try_pin_fast_table`] as a [`crate::FastPin`] (the fast paths that take their
    /// pin from their caller take this one from the machine's own callers).
    #[inline(always)]
    pub(crate) fn try_pin_fast_table_pin(&self) -> Option<crate::FastPin> {
        // SAFETY: this machine's platform's fast pin and the CPU's table address.
        self.try_pin_fast_table().map(|(p, t)| unsafe { crate::FastPin::new(p, t) })
    }

    /// [`Platform::try_pin_cpu`] and the address of the pinned CPU's table: from the
    /// platform's area word where it keeps one ([`Platform::CPU_AREA`]), else looked up from
    /// the CPU's number. The table is never freed ([`FastTable::at`] reads it). (An address,
    /// not a reference: a reference's null niche made the `Option` test it.)
    #[inline(always)]
    pub(crate) fn try_pin_fast_table(&self) -> Option<(Pinned, usize)> {
        if P::CPU_AREA {
            let (p, area) = self.platform().try_pin_cpu_area()?;
            debug_assert_eq!(area, self.fast_table(p.cpu.index()) as *const FastTable as usize);
            Some((p, area))
        } else {
            let p = self.platform().try_pin_cpu()?;
            let t = self.fast_table(p.cpu.index()) as *const FastTable as usize;
            Some((p, t))
        }
    }

    /// Fills CPU `cpu`'s entries for cache `s` with the main sheaf of `pcs`, its sheaves
    /// there, and tells `pcs` where they are, so that every change of its main sheaf carries
    /// through (module docs): the caller has `cpu` pinned and is allocating from or freeing
    /// to `s`.
    pub(crate) fn fast_table_fill(&self, s: &KmemCache, cpu: usize, pcs: &CpuSheaves) {
        if s.sheaf_capacity == 0 {
            return;
        }
        let t = self.fast_table(cpu);
        let main = pcs.main_addr();
        if main == 0 {
            // No main sheaf: the entries are empty, as they should be.
            return;
        }
        // (A CPU borrowed before it first came up, `run_on_cpu`: its table is written now.)
        t.init();
        if (s.id as usize) < FAST_IDS {
            debug_assert_ne!(s.id, 0, "id 0's entry stays empty (FastTable::named_word)");
            let word = FastTable::id_word(s.id as usize);
            pcs.mirror_in(t.slot(word), 0);
            t.set(word, main);
        }
        let class = s.fast_class.load(Ordering::Relaxed);
        let word = FastTable::class_word(class as usize);
        // (The fence only when the entry changes: the careful paths fill on every call.)
        if class != NO_CLASS && t.words[word].load(Ordering::Relaxed) != main && !self.caches_armed() {
            pcs.mirror_in(0, t.slot(word));
            // Before the entry, whose `Release` store publishes them.
            t.class_fp[class as usize].store(s.layout.offset, Ordering::Relaxed);
            t.class_size[class as usize].store(s.object_size() as u32, Ordering::Relaxed);
            t.words[word].store(main, Ordering::Release);
            crate::sync::fence(Ordering::SeqCst);
            if self.caches_armed() {
                // A swap, as the arming's clear: every write that may race with the CPU's
                // compare-and-swap of the entry (`CpuSheaves::main_changed`) is a
                // read-modify-write (the loom model in `cpu_sheaves.rs`).
                t.words[word].swap(empty_sheaf(), Ordering::AcqRel);
            }
        }
    }

    /// Clears every CPU's class entries: something was armed that the allocations must see
    /// on their careful path (module docs). The caller has stored the armed state.
    pub(crate) fn fast_table_disarm_classes(&self) {
        crate::sync::fence(Ordering::SeqCst);
        let empty = empty_sheaf();
        for cpu in 0..self.nr_cpus() {
            let t = self.fast_table(cpu);
            for class in 0..FAST_CLASSES {
                // Read first (a CPU that never allocated keeps its table's page untouched,
                // and one never up keeps its zeros), then a swap: the CPU may be
                // compare-and-swapping the entry meanwhile.
                let w = &t.words[FastTable::class_word(class)];
                let v = w.load(Ordering::Relaxed);
                if v != 0 && v != empty {
                    w.swap(empty, Ordering::AcqRel);
                }
            }
        }
    }

    /// Clears the entries that name cache `s`'s sheaves on every CPU: it is being destroyed
    /// (no objects, no user). Its id's entry and its class's name no other cache's.
    pub(crate) fn fast_table_forget(&self, s: &KmemCache) {
        let class = s.fast_class.load(Ordering::Relaxed);
        for cpu in 0..self.nr_cpus() {
            let t = self.fast_table(cpu);
            if !t.is_ready() {
                // Never up: its entries are zeros, and its first fill writes them.
                continue;
            }
            if (s.id as usize) < FAST_IDS {
                t.set(FastTable::id_word(s.id as usize), 0);
            }
            if class != NO_CLASS {
                t.set(FastTable::class_word(class as usize), 0);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
