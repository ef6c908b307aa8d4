//! The slab allocator (SLUB): `kmem_cache_create/alloc/free/destroy/shrink`, per-CPU
//! active slabs with lockless fast paths, per-node partial lists, constructors, cache
//! merging, colouring, and `slub_debug` debugging with Linux's reports.
//!
//! # Design
//!
//! - **Slabs** are page blocks from the page allocator, of the order Linux's
//!   `calculate_order` picks ([`layout`]). A slab's state lives in its head page descriptor
//!   (`slab_page.rs`): page type and cache id, the freelist+counters word, list links. No
//!   side tables.
//! - **Objects** are named by their offset from the slab's object 0, so a freelist head and
//!   a 32-bit tid (per CPU) or the counters (per slab) fit one word changed by one CAS
//!   ([`word`]). Free pointers inside objects are stored obfuscated
//!   (`CONFIG_SLAB_FREELIST_HARDENED`).
//! - **Per CPU** (`cpu.rs`): an active (frozen) slab and the CPU's freelist of it. Fast
//!   paths pop and push with one CAS and no lock; the slow path runs with interrupts off
//!   and the CPU's local lock.
//! - **Per node** (`cache.rs`): partial and full lists under `list_lock`; empty slabs beyond
//!   `min_partial` go back to the page allocator.
//! - **Debug caches** (any of `slub_debug=FZPU`) skip the per-CPU layer: every operation
//!   takes the list lock and runs the checks (`debug/`).
//!
//! # Lock order
//!
//! 1. `slab_mutex` ([`SlabState`]'s list lock): cache creation, merging, destruction, the
//!    registry. Never held while allocating.
//! 2. a CPU's local lock ([`CpuSlab`](cpu)'s `lock`, interrupts off);
//! 3. a node's `list_lock`;
//! 4. the page allocator's locks (pageset, zone): slabs are freed to it with (2) held, but
//!    never allocated from it with any slab lock held (`new_slab` runs with the CPU
//!    released, as Linux's `___slab_alloc` drops its local lock).
//!
//! Reports are made with (2)/(3) held, as Linux prints under `list_lock`: the platform's
//! report sink must not allocate from the machine it reports on.
//!
//! # Differences from Linux
//!
//! - No per-CPU partial lists (`CONFIG_SLUB_CPU_PARTIAL`), no sheaves, no RCU
//!   (`SLAB_TYPESAFE_BY_RCU` is refused), no kmemcg, no KASAN/KFENCE, no freelist
//!   randomisation.
//! - Full slabs are always on a node list (Linux: only with `SLAB_STORE_USER`), so destroy
//!   names every leaked object and validate sees every slab.
//! - Debug caches check red zones on every free and poison on every allocation without `F`,
//!   and always detect double frees.
//! - `kmem_cache_free` of an object of another cache is reported and the object freed to the
//!   cache it belongs to.

pub(crate) mod alloc;
mod bulk;
pub(crate) mod cache;
mod cpu;
pub(crate) mod create;
pub mod debug;
mod flags;
mod free;
pub mod layout;
#[cfg(all(test, loom))]
mod loom_tests;
mod object;
mod shrink;
mod slab_page;
mod slub_debug;
mod typed;
mod word;

use core::fmt;

pub use cache::{Cache, CacheNode, Ctor, KmemCache, SlabBootConfig, SlabState, CACHE_NAME_MAX, MAX_CACHES};
pub use cpu::SlubStat;
pub use debug::ValidateReport;
pub use flags::SlabFlags;
pub use layout::{Layout, LayoutError};
pub use slub_debug::{slub_debug_flags, DEBUG_DEFAULT_FLAGS};
pub use typed::{SlabBox, TypedCache};

use crate::mm::page_ref::AllocError;

/// Why `kmem_cache_create` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// Empty name, size 0 or above 4 MiB (`integrity check failed`, -EINVAL).
    Invalid,
    /// Called from interrupt context.
    InInterrupt,
    /// The name is longer than [`CACHE_NAME_MAX`] bytes.
    NameTooLong(usize),
    /// Flags `kmem_cache_create` does not know (outside `SLAB_FLAGS_PERMITTED`).
    BadFlags(SlabFlags),
    /// A flag kmem knows but does not implement.
    Unsupported(SlabFlags),
    /// The object cannot be laid out (alignment, or too large with its metadata).
    Layout(LayoutError),
    /// No cache id left ([`MAX_CACHES`]).
    TooManyCaches,
    /// No memory for the descriptor or its per-CPU part.
    NoMemory,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid => write!(f, "-22 (invalid name or size)"),
            Self::InInterrupt => write!(f, "-22 (called from interrupt context)"),
            Self::NameTooLong(n) => write!(f, "-22 (name of {n} bytes, at most {CACHE_NAME_MAX})"),
            Self::BadFlags(fl) => write!(f, "-22 (unknown flags {fl:?})"),
            Self::Unsupported(fl) => write!(f, "-22 (unsupported flags {fl:?})"),
            Self::Layout(e) => write!(f, "-22 ({e:?})"),
            Self::TooManyCaches => write!(f, "-12 (no cache id left)"),
            Self::NoMemory => write!(f, "-12 (out of memory)"),
        }
    }
}

impl core::error::Error for CacheError {}

/// Why a slab allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabAllocError {
    /// The page allocator could not give a new slab.
    NoMemory(AllocError),
    /// The node asked for does not exist.
    NoSuchNode(usize),
}

impl fmt::Display for SlabAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemory(e) => write!(f, "slab allocation failed: {e}"),
            Self::NoSuchNode(n) => write!(f, "slab allocation failed: no node {n}"),
        }
    }
}

impl core::error::Error for SlabAllocError {}
