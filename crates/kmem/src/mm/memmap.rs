//! The sparse memory map (SPARSEMEM): page descriptors per 128 MiB section.
//!
//! A section with no RAM costs its table slots (88 bytes: a map word, a [`Section`], 64
//! pageblock bytes) and no descriptors. Present sections own an array of
//! `PAGES_PER_SECTION` [`Page`]s carved from RAM at boot (or at hot-add). Each section also
//! has the migratetype of its 64 pageblocks (Linux's `pageblock_flags` usemap), kept in one
//! byte array for the whole table, so a frame's pageblock byte is at index `pfn >> 9`
//! (`pageblock_nr`), a shift and a load ([`Memmap::pageblock_migratetype`]).
//!
//! With deferred struct-page initialisation (`BootConfig::deferred_init`, `boot/deferred.rs`)
//! a present section's descriptors are written in [`MAX_ORDER_NR_PAGES`] chunks (4 MiB of
//! frames, 32 KiB of descriptors), some of them only when the page allocator first needs
//! them. [`Memmap::page`] returns a frame's descriptor slot whether or not its chunk is
//! initialised yet (the slots of an uninitialised chunk read as zero: no flags, no page type,
//! so nothing takes them for a slab, a free block or a compound page); the checked lookups
//! ([`Memmap::pfn_valid`], [`Memmap::valid_page`]) treat uninitialised chunks as absent.
//!
//! # Flat memmap (FLATMEM / VMEMMAP shape)
//!
//! A present section's map word encodes its descriptor array's address minus the descriptor
//! offset of its first frame. When every present section's word is the same value `B`, the
//! descriptors of all present frames form one array indexed by pfn (Linux's FLATMEM
//! `mem_map`, or SPARSEMEM_VMEMMAP's virtual array): `pfn_to_page(pfn) = B + pfn * 32`, one
//! multiply-add and no load but `B`'s. [`Memmap`] keeps `B` (its `flat` word), set by the
//! first present section and cleared for good by a section whose word differs
//! ([`Memmap::set_section_map`]). Boot lays the descriptors of a one-node machine whose
//! present sections are contiguous out as one array in pfn order (Linux's
//! `sparse_buffer_init`), so such machines are flat; others fall back to the sparse lookup.
//! The flat lookups, and the dense ones below, are in `memmap/flat.rs`.
//!
//! `Memmap::pfn_to_page` takes that path for frames kmem itself vouches for (pfns from its
//! own free lists, per-CPU lists, blocks it handed out): the frame lies in a present section
//! (debug builds check it). Lookups of frames nobody vouches for (a pointer passed to `kfree`,
//! `virt_to_page`, a pfn from a caller) use the checked [`Memmap::page`] /
//! [`Memmap::valid_page`], which never read outside a present section's array. A machine with
//! a hole of whole sections between present ones, several nodes, or a section hot-added with
//! its descriptors in itself is not flat, and `pfn_to_page` is the checked lookup inlined,
//! unless its platform has a vmemmap (`Platform::vmemmap_section`, SPARSEMEM_VMEMMAP): then
//! boot and hot-add place each section's descriptors at `vmemmap_base + nr * 1 MiB`, every
//! word agrees, and any machine is flat (kmem-hosted's `MachineBuilder::vmemmap`, on by
//! default where the map would not be flat without it).
//!
//! ## Dense
//!
//! A flat memmap is *dense* when every frame below the direct-map limit, present or not, has
//! a readable slot at `B + pfn * 32` that is its real descriptor or reads as zero (no flags,
//! no page type: nothing takes it for a slab). Then [`Memmap::page_below_limit`], the lookup
//! of a freed pointer (`plain_slab_of`: `kfree`, LD_PRELOAD `free`; `plain_slab_off`:
//! `kmem_cache_free`, a free by size, `KmemAlloc::dealloc`), is one multiply-add for any address that passed the direct-map range
//! check, wild ones included. Boot decides it once (`boot/sparse.rs`, [`Memmap::mark_dense`]):
//! - one carved array (no vmemmap) is dense iff it covers every section from 0 up to the
//!   direct-map limit (a present section's slots past its RAM are carved descriptors too);
//! - a vmemmap is dense iff the platform promises its unfilled slots read as zero
//!   (`Platform::vmemmap_reads_zero`; kmem-hosted reserves it read-only, private, never
//!   written: the zero page) and its range holds a slot for every section below the limit;
//! - otherwise the memmap is not dense, and the lookup is the checked [`Memmap::page`].
//!
//! The property is bit 1 of the `flat` word (set: not known dense; the base is 32-aligned),
//! so `Memmap` keeps its three words and the dense test is the flat test's one bit test. A
//! hot-added section at its vmemmap slot keeps it (the slot read as zero before); one whose
//! descriptors lie elsewhere makes the memmap not flat, hence not dense. The compound-head
//! step ([`Memmap::head_in_section`]) stays within the section of the slot found: a zero slot
//! is never a tail.
//!
//! The table keeps the pageblock migratetypes first, then the map words, then the sections:
//! [`Memmap`] must stay three words (it is part of the machine state, whose size the golden
//! /proc tests pin), so only the table's start is stored and the other arrays are found from
//! it; the pageblock bytes, which every page free reads (its list is its pageblock's type),
//! are the ones at the start (the map words are read by the checked lookups, of `kfree`'s
//! careful path and of memmaps that are not flat: one shift and add more there).
//!
//! This is mechanism: the only `unsafe` here turns a section's map address into references.

use crate::addr::{Pfn, MAX_PAGE_ORDER, PAGEBLOCK_ORDER, PAGE_SHIFT};
use crate::mm::page::Page;
use crate::mm::zone_type::Migratetype;
use crate::sync::{array_of, AtomicU32, AtomicU8, AtomicUsize, Ordering};

mod flat;

pub(crate) use flat::FlatMemmap;

/// log2 of the section size in bytes (128 MiB, x86-64's `SECTION_SIZE_BITS`).
pub const SECTION_SIZE_BITS: u32 = 27;
/// log2 of pages per section.
pub const PFN_SECTION_SHIFT: u32 = SECTION_SIZE_BITS - PAGE_SHIFT;
/// Pages per section.
pub const PAGES_PER_SECTION: usize = 1 << PFN_SECTION_SHIFT;
/// Pageblocks per section.
pub const PAGEBLOCKS_PER_SECTION: usize = PAGES_PER_SECTION >> PAGEBLOCK_ORDER;
/// Frames per descriptor chunk, the unit of deferred initialisation: one largest buddy block
/// (`MAX_ORDER_NR_PAGES`), so a chunk is freed as one block and never merges across chunks.
pub const MAX_ORDER_NR_PAGES: usize = 1 << MAX_PAGE_ORDER;
/// Descriptor chunks per section (one bit each in a section's initialised mask).
pub const CHUNKS_PER_SECTION: usize = PAGES_PER_SECTION / MAX_ORDER_NR_PAGES;
const _: () = assert!(CHUNKS_PER_SECTION <= 32);
/// Every chunk of a section initialised.
const ALL_CHUNKS: u32 = u32::MAX >> (32 - CHUNKS_PER_SECTION);

/// One memory section.
#[repr(C)]
#[derive(Debug)]
pub struct Section {
    /// Address of this section's `[Page; PAGES_PER_SECTION]`, 0 if absent.
    map: AtomicUsize,
    /// Node the section belongs to.
    node: AtomicU8,
    /// Bit `i`: the descriptors of chunk `i` ([`MAX_ORDER_NR_PAGES`] frames) are initialised.
    /// All set for a section without deferred chunks.
    init: AtomicU32,
}

impl Section {
    /// True if the section has page descriptors.
    pub fn present(&self) -> bool {
        self.map.load(Ordering::Acquire) != 0
    }
    /// The node of a present section.
    pub fn node(&self) -> usize {
        self.node.load(Ordering::Relaxed) as usize
    }
}

/// The migratetypes of one section's pageblocks, in the table's pageblock array.
type PageblockTypes = [AtomicU8; PAGEBLOCKS_PER_SECTION];

/// A view of the section table: `pfn_to_page`, `page_to_pfn`, pageblock migratetypes.
///
/// Besides the [`Section`]s, the table holds one word per section for `pfn_to_page`, as
/// Linux's classic SPARSEMEM encodes `section_mem_map`: the section's descriptor array
/// address minus the descriptor offset of the section's first frame, plus 1 (0: absent). A
/// lookup is then a shift, a bound, one load and one `lea`, with no stride multiply and no
/// in-section mask. Every section's pageblock migratetypes come first in the table (one byte
/// per pageblock of the table, in pfn order), then the words, then the [`Section`]s.
#[derive(Debug)]
pub struct Memmap {
    /// The table's start: `nr_sections` sections' pageblock migratetypes, then the encoded
    /// map words, then the sections.
    pageblocks: *const PageblockTypes,
    /// The flat base (module docs): [`NO_SECTION`] while no section is present; `B | NOT_DENSE`,
    /// `B` the common map word less its tag bit (a multiple of 32: descriptor arrays are
    /// aligned, and so are section offsets), while every present section has the same word;
    /// `B` alone once boot found the memmap dense ([`Memmap::mark_dense`]); [`NOT_FLAT`] after
    /// a section whose word differs became present (never flat again). Odd means "not flat",
    /// so each test is one bit test: `& 1` flat, `& 3 == 0` dense.
    flat: AtomicUsize,
    nr_sections: usize,
    /// Bytes of physical memory, from 0, whose frames' descriptor slots are `dense_base + pfn *
    /// 32` for the life of the memmap (the direct-map limit boot marked dense with,
    /// [`Memmap::mark_dense`]; 0 if it did not): unlike `flat`, which a section placed
    /// elsewhere turns, these never change once boot has set them, so the free fast path
    /// reads them with no test of the mode ([`Memmap::dense_page`]). Plain words, written
    /// through `&mut` before the machine is shared: the compiler folds their loads into the
    /// instructions that use them, which it does not for atomic loads.
    dense_bytes: usize,
    /// The flat base when boot marked the memmap dense (see `dense_bytes`).
    dense_base: usize,
}

/// [`Memmap`]'s `flat` word before any section is present.
const NO_SECTION: usize = 1;
/// [`Memmap`]'s `flat` word once two present sections disagree.
const NOT_FLAT: usize = 3;
/// Set in a flat [`Memmap`]'s `flat` word while it is not known to be dense (module docs).
/// Set rather than clear so the dense word is the base itself: the lookups add no offset.
const NOT_DENSE: usize = 2;

// SAFETY: a Memmap only hands out shared references to `Section`s and `Page`s, which consist
// of atomics; the memory they live in is valid for the life of the machine (constructor contract).
unsafe impl Send for Memmap {}
// SAFETY: as for Send: all access goes through atomics.
unsafe impl Sync for Memmap {}

impl Memmap {
    /// Bytes needed for a table of `nr_sections` sections.
    pub const fn table_bytes(nr_sections: usize) -> usize {
        nr_sections
            * (core::mem::size_of::<Section>()
                + core::mem::size_of::<AtomicUsize>()
                + core::mem::size_of::<PageblockTypes>())
    }

    /// The map words of a table of `nr_sections` sections starting with the pageblock
    /// migratetypes at `pageblocks`: just after them (a section's are a multiple of a word).
    const fn words_of(pageblocks: *const PageblockTypes, nr_sections: usize) -> *const AtomicUsize {
        pageblocks.wrapping_add(nr_sections).cast::<AtomicUsize>()
    }

    /// The sections of such a table: after the words (the words and the pageblock arrays of
    /// a section together are a multiple of a `Section`'s alignment).
    const fn sections_of(pageblocks: *const PageblockTypes, nr_sections: usize) -> *const Section {
        Self::words_of(pageblocks, nr_sections).wrapping_add(nr_sections).cast::<Section>()
    }

    /// The map word of section `nr` (`nr < nr_sections`).
    #[inline(always)]
    fn word(&self, nr: usize) -> &AtomicUsize {
        debug_assert!(nr < self.nr_sections);
        // SAFETY: `nr` is in bounds of the words written by `init` (or zeroed for
        // `init_zeroed`), which stay valid for the life of `self` (contract of `init`).
        unsafe { &*Self::words_of(self.pageblocks, self.nr_sections).add(nr) }
    }

    /// Initialises an empty section table at `table` (all sections absent).
    ///
    /// # Safety
    ///
    /// `table` must point to `table_bytes(nr_sections)` writable bytes, aligned for `Section`,
    /// that stay valid and are used for nothing else for as long as the returned `Memmap` or any
    /// copy of it is used.
    pub unsafe fn init(table: *mut Section, nr_sections: usize) -> Self {
        let pageblocks = table.cast::<PageblockTypes>();
        let maps = Self::words_of(pageblocks, nr_sections).cast_mut();
        let sections = Self::sections_of(pageblocks, nr_sections).cast_mut();
        const _: () = assert!(core::mem::align_of::<Section>() <= core::mem::align_of::<AtomicUsize>());
        const _: () = assert!(core::mem::align_of::<PageblockTypes>() <= core::mem::align_of::<AtomicUsize>());
        const _: () = assert!(core::mem::size_of::<PageblockTypes>() % core::mem::align_of::<AtomicUsize>() == 0);
        const _: () = assert!(
            (core::mem::size_of::<AtomicUsize>() + core::mem::size_of::<PageblockTypes>())
                % core::mem::align_of::<Section>()
                == 0
        );
        for i in 0..nr_sections {
            // SAFETY: `i < nr_sections` and the caller guarantees the table (pageblock arrays,
            // words, then sections) is in bounds and writable; no type has drop glue, so
            // writing over uninitialised memory is fine.
            unsafe {
                maps.add(i).write(AtomicUsize::new(0));
                pageblocks.add(i).write(array_of![AtomicU8::new(Migratetype::Movable as u8); PAGEBLOCKS_PER_SECTION]);
                sections.add(i).write(Section {
                    map: AtomicUsize::new(0),
                    node: AtomicU8::new(0),
                    init: AtomicU32::new(0),
                });
            }
        }
        Self { pageblocks, flat: AtomicUsize::new(NO_SECTION), nr_sections, dense_bytes: 0, dense_base: 0 }
    }

    /// [`Memmap::init`] for a table whose memory reads as zero: nothing to write (a zeroed
    /// [`Section`] is an absent one; [`Memmap::set_section_map`] sets a section's pageblock
    /// migratetypes when it becomes present). A machine with a large hotplug range then
    /// touches only the slots of its present sections.
    ///
    /// # Safety
    ///
    /// As [`Memmap::init`], and the `table_bytes(nr_sections)` bytes at `table` must be zero.
    pub unsafe fn init_zeroed(table: *mut Section, nr_sections: usize) -> Self {
        // Loom's atomics are not plain integers: zero bytes are no valid state for them.
        #[cfg(loom)]
        // SAFETY: the caller's contract is `init`'s.
        return unsafe { Self::init(table, nr_sections) };
        #[cfg(not(loom))]
        Self {
            pageblocks: table.cast::<PageblockTypes>(),
            flat: AtomicUsize::new(NO_SECTION),
            nr_sections,
            dense_bytes: 0,
            dense_base: 0,
        }
    }

    /// Makes a section present with descriptors at `map` (boot or memory hot-add).
    ///
    /// # Safety
    ///
    /// `map` must point to `PAGES_PER_SECTION` initialised [`Page`]s that stay valid for the life
    /// of this memmap and are used for nothing else; the section must not already be present.
    /// (A model or test may provide only the first `n` descriptors if no frame of the section
    /// at or beyond `n` is ever looked up through this memmap or a copy of it.)
    pub unsafe fn set_section_map(&self, nr: usize, map: *const Page, node: u8) {
        let sec = self.section(nr).expect("section number out of range");
        debug_assert!(!sec.present());
        for mt in self.pageblock_types(nr).expect("in range, as the section") {
            mt.store(Migratetype::Movable as u8, Ordering::Relaxed);
        }
        sec.node.store(node, Ordering::Relaxed);
        sec.init.store(ALL_CHUNKS, Ordering::Relaxed);
        sec.map.store(map as usize, Ordering::Release);
        let first = nr * PAGES_PER_SECTION * Page::SIZE;
        // Even: `map` is aligned for `Page`, `first` a multiple of its size.
        let base = (map as usize).wrapping_sub(first);
        let encoded = base | 1;
        // `nr` is in range (checked by `section` above).
        self.word(nr).store(encoded, Ordering::Release);
        // The first present section sets the flat base; one that disagrees clears it for good.
        // The section's frames reach kmem's lists only after this returns, so a reader that
        // finds one of them on a list also sees the cleared base.
        // A section at its slot of a dense map keeps it dense (its slot read as zero before).
        let _ = self.flat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| match f {
            NO_SECTION => Some(base | NOT_DENSE),
            f if f & !NOT_DENSE == base => None,
            _ => Some(NOT_FLAT),
        });
    }

    /// Marks the chunks of section `nr` named by `mask` as not initialised (boot, before the
    /// machine runs: deferred struct-page init). Their descriptor slots must read as zero
    /// until [`Memmap::set_chunk_initialised`].
    pub(crate) fn defer_chunks(&self, nr: usize, mask: u32) {
        if let Some(sec) = self.section(nr) {
            sec.init.fetch_and(!mask, Ordering::Relaxed);
        }
    }

    /// Publishes chunk `chunk` of section `nr` as initialised: its descriptors, written before,
    /// are visible to whoever sees the bit (release; [`Memmap::valid_page`] acquires).
    pub(crate) fn set_chunk_initialised(&self, nr: usize, chunk: usize) {
        if let Some(sec) = self.section(nr) {
            sec.init.fetch_or(1 << chunk, Ordering::Release);
        }
    }

    /// The initialised-chunk mask of section `nr` (0 for an absent section).
    #[inline]
    fn chunk_mask(&self, nr: usize) -> u32 {
        match self.section(nr) {
            Some(sec) if sec.present() => sec.init.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// The chunks of section `nr` whose initialisation is deferred (bit per chunk; 0 for an
    /// absent section or one fully initialised).
    pub(crate) fn deferred_chunks(&self, nr: usize) -> u32 {
        match self.section(nr) {
            Some(sec) if sec.present() => !sec.init.load(Ordering::Acquire) & ALL_CHUNKS,
            _ => 0,
        }
    }

    /// True if `pfn`'s section is present and its chunk's descriptors are initialised.
    #[inline]
    pub fn chunk_initialised(&self, pfn: Pfn) -> bool {
        let nr = pfn.as_usize() >> PFN_SECTION_SHIFT;
        let chunk = (pfn.as_usize() & (PAGES_PER_SECTION - 1)) / MAX_ORDER_NR_PAGES;
        self.chunk_mask(nr) & (1 << chunk) != 0
    }

    /// Number of section slots (present or not).
    pub fn nr_sections(&self) -> usize {
        self.nr_sections
    }

    /// Section `nr`, if in range.
    #[inline]
    pub fn section(&self, nr: usize) -> Option<&Section> {
        if nr < self.nr_sections {
            // SAFETY: `nr` is in bounds of the table initialised by `init`, which stays valid
            // for the life of `self` (contract of `init`); the sections follow the words.
            Some(unsafe { &*Self::sections_of(self.pageblocks, self.nr_sections).add(nr) })
        } else {
            None
        }
    }

    /// `pfn_to_page()`: the descriptor slot of `pfn`, if its section is present. In a chunk
    /// whose initialisation is deferred the slot reads as zero (see the module docs); lookups
    /// of addresses nobody vouches for use [`Memmap::valid_page`].
    #[inline]
    pub fn page(&self, pfn: Pfn) -> Option<&Page> {
        let nr = pfn.as_usize() >> PFN_SECTION_SHIFT;
        if nr >= self.nr_sections {
            return None;
        }
        let word = self.word(nr).load(Ordering::Acquire);
        if word == 0 {
            return None;
        }
        let at = (word - 1).wrapping_add(pfn.as_usize() * Page::SIZE);
        // SAFETY: a present section's word encodes the address of its PAGES_PER_SECTION
        // initialised descriptors minus the offset of its first frame (`set_section_map`), so
        // `at` is `pfn`'s descriptor in that array: `pfn` lies in section `nr`.
        Some(unsafe { &*(at as *const Page) })
    }

    /// The head of the compound block whose tail page `page` (of frame `pfn`) is, `back`
    /// frames before it (a tail's `private`), without a second section lookup: blocks are
    /// aligned and at most `2^MAX_PAGE_ORDER` frames, so never cross a section. `None` if
    /// `back` would leave the section (a corrupt descriptor).
    #[inline(always)]
    pub fn head_in_section<'a>(&self, pfn: Pfn, page: &'a Page, back: usize) -> Option<(Pfn, &'a Page)> {
        if back > (pfn.as_usize() & (PAGES_PER_SECTION - 1)) {
            return None;
        }
        // SAFETY: `page` is the descriptor of `pfn` in its section's array (it came from this
        // memmap), and `back` does not reach below the array's first entry (checked above).
        let head = unsafe { &*(page as *const Page).sub(back) };
        Some((Pfn::new(pfn.as_usize() - back), head))
    }

    /// The descriptors of the aligned block of `2^order` frames from frame `pfn` (one kmem
    /// vouches for, as [`Memmap::pfn_to_page`]'s), as one slice: a block never crosses a
    /// section, whose descriptors are one array. What walks a compound block's tails uses
    /// it (a lookup per tail cost a 1 MiB block's alloc and free a third of their time).
    ///
    /// # Panics
    ///
    /// If `pfn` is not aligned to the block, or the block is larger than a section.
    #[inline]
    pub(crate) fn block_pages(&self, pfn: Pfn, order: crate::addr::Order) -> &[Page] {
        let n = order.nr_pages();
        assert!(n <= PAGES_PER_SECTION && pfn.as_usize() & (n - 1) == 0, "not a block: {pfn:?} order {order}");
        let head = self.pfn_to_page(pfn);
        // SAFETY: `head` is `pfn`'s descriptor in its section's array (`pfn_to_page`); the
        // block is aligned to its size and at most a section (checked), so it lies in that
        // section, and its frames' descriptors are the `n` entries of the array from `head`
        // on, which live as long as the memmap.
        unsafe { core::slice::from_raw_parts(head, n) }
    }

    /// `pfn_valid()`: `pfn` has an initialised descriptor.
    #[inline]
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        self.chunk_initialised(pfn)
    }

    /// `pfn_valid()` + `pfn_to_page()`: the descriptor of `pfn` if it has an initialised one.
    #[inline]
    pub fn valid_page(&self, pfn: Pfn) -> Option<&Page> {
        if !self.chunk_initialised(pfn) {
            return None;
        }
        self.page(pfn)
    }

    /// The pageblock migratetypes of section `nr`, if in range.
    #[inline]
    fn pageblock_types(&self, nr: usize) -> Option<&PageblockTypes> {
        if nr < self.nr_sections {
            // SAFETY: `nr` is in bounds of the pageblock arrays written by `init` (or zeroed for
            // `init_zeroed`), which stay valid for the life of `self` (contract of `init`).
            Some(unsafe { &*self.pageblocks.add(nr) })
        } else {
            None
        }
    }

    /// Migratetype of the pageblock containing `pfn` (`get_pageblock_migratetype`).
    #[inline]
    pub fn pageblock_migratetype(&self, pfn: Pfn) -> Migratetype {
        self.pageblock_slot(pfn)
            .and_then(|b| Migratetype::from_index(b.load(Ordering::Relaxed) as usize))
            .unwrap_or(Migratetype::Movable)
    }

    /// Sets the migratetype of the pageblock containing `pfn` (`set_pageblock_migratetype`).
    #[inline]
    pub fn set_pageblock_migratetype(&self, pfn: Pfn, mt: Migratetype) {
        if let Some(b) = self.pageblock_slot(pfn) {
            b.store(mt as u8, Ordering::Relaxed);
        }
    }

    /// [`Memmap::pageblock_migratetype`] of a frame in a present section (one kmem vouches
    /// for, as [`Memmap::pfn_to_page`]'s): no bound check, no `Option`; Linux's
    /// `get_pfnblock_migratetype`, a shift and a load of the table's pageblock array. The
    /// bound is checked in debug builds only: like [`Memmap::pfn_to_page`], this trusts that
    /// the frame is kmem's own.
    #[inline(always)]
    pub(crate) fn pageblock_migratetype_vouched(&self, pfn: Pfn) -> Migratetype {
        debug_assert!(self.page(pfn).is_some(), "pageblock_migratetype({pfn:?}): no present section");
        // SAFETY: `pfn` lies in a present section (this function's contract, which every
        // caller meets with a frame from kmem's own lists or blocks), so its section number is
        // below `nr_sections`, and its pageblock's byte, at `pfn >> PAGEBLOCK_ORDER` of the
        // table's pageblock arrays (one after another in section order), was written by
        // `init` and lives as long as `self`.
        let b = unsafe { &*self.pageblocks.cast::<AtomicU8>().add(pfn.as_usize() >> PAGEBLOCK_ORDER) };
        // As `from_index(v).unwrap_or(Movable)`, in a shape that compiles to no table.
        match b.load(Ordering::Relaxed) {
            0 => Migratetype::Unmovable,
            2 => Migratetype::Reclaimable,
            3 => Migratetype::HighAtomic,
            4 => Migratetype::Isolate,
            _ => Migratetype::Movable,
        }
    }

    fn pageblock_slot(&self, pfn: Pfn) -> Option<&AtomicU8> {
        let types = self.pageblock_types(pfn.as_usize() >> PFN_SECTION_SHIFT)?;
        Some(&types[(pfn.as_usize() & (PAGES_PER_SECTION - 1)) >> PAGEBLOCK_ORDER])
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
