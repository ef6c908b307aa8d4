//! The slab allocator (SLUB with Linux 6.18's sheaves): `kmem_cache_create/alloc/free/
//! destroy/shrink`, per-CPU sheaves and per-node barns in front of the slabs, per-node
//! partial lists, constructors, cache merging, colouring, and `slub_debug` debugging with
//! Linux's reports.
//!
//! # Design
//!
//! - **Slabs** are page blocks from the page allocator, of the order Linux's
//!   `calculate_order` picks ([`layout`]). A slab's state lives in its head page descriptor
//!   (`slab_page.rs`): page type and cache id, the freelist+counters word, list links. No
//!   side tables.
//! - **Objects** are named by their offset from the slab's object 0, so a slab's freelist
//!   head and counters fit one word (`word.rs`). Free pointers inside objects are stored
//!   obfuscated (`CONFIG_SLAB_FREELIST_HARDENED`).
//! - **Per CPU** (`sheaf.rs`): a main and a spare sheaf, arrays of free objects. The fast
//!   paths pop and push the main sheaf with the CPU pinned (`Platform::pin_cpu`): no lock,
//!   no atomic read-modify-write. Slow paths trade sheaves with the node's barn, refill from
//!   partial slabs or flush to them (`alloc.rs`, `free.rs`, `node.rs`, `pcs.rs`).
//! - **Per node** (`cache.rs`): partial and full lists under `list_lock`, every slab word
//!   change under it; empty slabs beyond `min_partial` go back to the page allocator; the
//!   barn of full and empty sheaves.
//! - **Checks on every free** (`free.rs`): the pointer starts an object of a slab of that
//!   cache, and the object is not already free (non-adjacent double frees included).
//! - **Debug caches** (any of `slub_debug=FZPU`) have no sheaves: every operation takes the
//!   list lock and runs the checks (`debug/`).
//!
//! # Structures
//!
//! A cache ([`KmemCache`]) is an object of the boot cache `kmem_cache`, whose own descriptor
//! is carved at boot; the per-node parts (`CacheNode`: `list_lock`, partial and full lists,
//! counters, the barn) follow the descriptor in the same object; the per-CPU part
//! (`CpuSheaves`) is an `alloc_percpu` area. [`Cache`] is the owning handle (drop =
//! `kmem_cache_destroy`); [`TypedCache`] hands out [`SlabBox`]es.
//!
//! ```text
//!  CpuSheaves (per CPU, 2 lines)     Sheaf (a kmem_sheaf object)     slab head page (struct page)
//!  main  ──────────────────────────► size | capacity | next          private = PGTY_slab | cache id
//!  spare ──► (another sheaf)          objects[capacity]: addresses    data    = freelist_off | inuse | objects
//!  stats                                                              lru     = partial/full list links
//!  CacheNode.barn: full and empty sheaves (≤ 4096 objects, ≥ 40 sheaves) flags = PG_slab (+ head/tail), colour
//! ```
//!
//! - **Fast paths** (`alloc.rs`, `free.rs`): pin the CPU, pop from / push onto the main
//!   sheaf, unpin. Objects in sheaves are addresses kept out of band: a freed object's bytes
//!   are never followed.
//! - **Slow paths** (CPU pinned unless said): an empty main swaps with a non-empty spare,
//!   else trades itself for a full sheaf at the node's barn, else is refilled from the node's
//!   partial slabs (`node.rs`, under `list_lock`), else a new slab comes from the page
//!   allocator with the CPU released (it may sleep) and fills it. A full main swaps with an
//!   empty spare, else goes to the barn for an empty one, else is flushed to its slabs.
//!   Producer/consumer patterns move whole sheaves through the barn; random-order frees never
//!   touch a slab. Barns hold up to 4096 objects (at least 40 sheaves; at most 4 MiB, a 32nd
//!   of RAM): a thread's burst of a thousand frees, for eight threads, waits there for the
//!   next burst of allocations instead of going through `list_lock`.
//! - **CPUs coming and going** (`pcs.rs`): a CPU going offline (a thread's exit, for process
//!   machines) parks its sheaves in the barn, objects and all; a CPU without sheaves takes
//!   one from there before allocating a new one. Short-lived threads thus reuse each other's
//!   sheaves and objects without touching the slabs.
//! - **Slabs and lists**: a slab is on `partial` iff it has free objects, on `full` iff none;
//!   every change of a slab's freelist and counters is made under its node's `list_lock`, a
//!   sheaf at a time. Free pointers inside free objects are stored `next ^ key`: the key's
//!   low half is `s->random ^ swab(slot address)` folded to 32 bits, its high half the
//!   cache's tag (`word.rs`); they are validated (boundary, range) whenever a freelist is
//!   walked.
//! - **The free fast path** (`free.rs`): a slab head's `private` word holds the slab type,
//!   the cache id and a *plain* bit (object 0 at the slab start, the cache's order and
//!   object count, aligned to its size). `kmem_cache_free` (and a free by size) rounds the
//!   object's physical address down to the named cache's slab size, compares that frame's
//!   word with the cache's `plain_word`, checks that the offset starts one of a plain slab's objects
//!   (an exact division: a multiply, a rotate, a compare), and pushes: no tail-to-head step, no cache table, no colour, no slab word.
//!   `kfree` reads the word from the object's own page (a slab's tail pages carry their
//!   head's word in their `next` link, set when the slab is made and reset when it ends),
//!   tests the object with its cache id's record (`fast_check.rs`: a copy of the cache's
//!   constants beside the id table, so the descriptor is not loaded), and rounds down to the
//!   head the same way.
//!   Anything else takes the careful path.
//! - **The double-free check** (`free.rs`): a free object's free-pointer word carries the
//!   cache's tag in its high half (the sheaf marker in a sheaf, the encoded next offset on a
//!   freelist) while a live object's was cleared when handed out; the sheaf marker is a
//!   double free, other tagged words are confirmed on the slab's freelist. A bad pointer is
//!   `Invalid object pointer` / `Wrong slab cache`.
//! - **Sheaves** are objects of `kmem_sheaf`, a second boot cache (carved descriptor, no
//!   sheaves of its own, `min_partial` 0). Capacity: about 4 KiB of objects, 8 to 64.
//!   Shrink, destroy, validate and CPU offline flush sheaves by running as each CPU
//!   (`pcs.rs`) and empty the barns.
//! - **Layout and order** ([`layout`]): `calculate_alignment`/`calculate_sizes`/
//!   `calculate_order` as pure functions; a test checks objects per slab against every cache
//!   of a real 6.18 `/proc/slabinfo`.
//! - **Debug reports** are Linux's `BUG <cache> (<taint>): ...` / `FIX <cache>: ...`, and the
//!   damage is repaired. Owner tracks store a handle into a call-site depot (no pointer a
//!   corrupted track could forge).
//! - **Registry**: `SlabState` in the machine state (list head, boot caches, boot options);
//!   the cache-id table (the boot caches included) and the call-site depot are page blocks
//!   allocated on first need, so a machine that never creates a cache pays nothing.
//!
//! # Lock order
//!
//! 1. `slab_mutex` (`SlabState`'s list lock): cache creation, merging, destruction, the
//!    registry. Never held while allocating.
//! 2. the pinned CPU (`pin_cpu`, the sheaves' protection);
//! 3. a node's barn lock, or its `list_lock` (never both);
//! 4. the page allocator's locks (pageset, zone): slabs are freed to it with (2) or (3)
//!    held, but never allocated from it with the CPU pinned or any slab lock held
//!    (`new_slab` runs with the CPU released, as Linux's `___slab_alloc` drops its local
//!    lock).
//!
//! Other CPUs' sheaves are flushed by running as that CPU (`Platform::run_on_cpu`), with no
//! lock held. Reports are made with (2)/(3) held, as Linux prints under `list_lock`: the
//! platform's report sink must not allocate from the machine it reports on.
//!
//! # Differences from Linux
//!
//! - Every cache without debugging has sheaves (Linux 6.18: those that ask), sized to about
//!   4 KiB of objects; they replace the per-CPU active slab and per-CPU partial lists. No
//!   kmemcg, no KASAN/KFENCE, no freelist randomisation. `SLAB_TYPESAFE_BY_RCU` slabs wait
//!   for a grace period before their pages are freed (`crate::rcu`, `rcu/slabs.rs`), linked
//!   through their head page's data word (Linux uses the `rcu_head` in `struct slab`).
//! - `init_on_alloc`/`init_on_free` (`crate::mm::meminit`) send every allocation and free of
//!   a cache they apply to through the careful paths, where the zeroing is.
//! - Full slabs are always on a node list (Linux: only with `SLAB_STORE_USER`), so destroy
//!   names every leaked object and validate sees every slab.
//! - Debug caches check red zones on every free and poison on every allocation without `F`,
//!   and always detect double frees.
//! - `kmem_cache_free` of an object of another cache is reported and the object freed to the
//!   cache it belongs to.
//! - Every free checks the pointer, the cache and double frees (Linux: only the naive double
//!   free, and the cache with hardening).
//! - Sheaves are objects of the boot cache `kmem_sheaf` (Linux: kmalloc).
//! - `kmalloc_nolock`/`kfree_nolock` (`nolock.rs`, `defer.rs`): an interrupting context
//!   keeps off every sheaf of its CPU (kmem pins whole CPUs; Linux trylocks one cache's
//!   per-CPU lock); debug caches are refused for allocation and always deferred on free;
//!   deferred frees complete at the next slab slow path, shrink, destroy or
//!   `defer_free_barrier` (Linux: `irq_work`); a slab emptied by a nolock free stays on the
//!   partial list.
//! - Cache names are at most 63 bytes; flag values are the fixed pre-6.x ones; `SLAB_COLOUR`
//!   is a kmem extension (SLAB's colouring).

pub(crate) mod alloc;
mod bulk;
pub(crate) mod cache;
mod cpu_sheaves;
pub use cpu_sheaves::CPU_STASH_MAX;
pub(crate) mod create;
pub mod debug;
mod defer;
pub(crate) mod fast_check;
pub(crate) mod fast_table;
mod flags;
pub(crate) mod free;
mod free_map;
pub(crate) mod free_tag;
pub mod layout;
mod node;
mod nolock;
pub(crate) mod object;
mod pcs;
pub(crate) mod registry;
pub(crate) mod sheaf;
mod shrink;
pub(crate) mod slab_page;
mod slub_debug;
mod typed;
mod word;

#[cfg(test)]
mod locked_tests;

use core::fmt;

pub use cache::{Cache, CacheNode, Ctor, KmemCache, CACHE_NAME_MAX, MAX_CACHES};
pub use create::KmemCacheArgs;
pub use debug::ValidateReport;
pub use fast_table::FAST_TABLE_PERCPU_BYTES;
pub use flags::SlabFlags;
pub use free_map::FreeMap;
pub use layout::{Layout, LayoutError};
pub use nolock::NolockError;
pub use registry::SlabBootConfig;
pub(crate) use registry::SlabState;
pub use sheaf::{SlubStat, SHEAF_BYTES_DEFAULT, SHEAF_MAX_CEILING, SHEAF_MAX_DEFAULT};
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

impl CacheError {
    /// The errno Linux's `kmem_cache_create` callers would see (negative).
    pub const fn errno(&self) -> i32 {
        match self {
            Self::TooManyCaches | Self::NoMemory => -12,
            _ => -22,
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("kmem_cache_create: ")?;
        match self {
            Self::Invalid => write!(f, "empty name, or object size 0 or above {} bytes", layout::MAX_OBJECT_SIZE)?,
            Self::InInterrupt => f.write_str("called from interrupt context")?,
            Self::NameTooLong(n) => write!(f, "name of {n} bytes is longer than {CACHE_NAME_MAX}")?,
            Self::BadFlags(fl) => write!(f, "unknown flags {fl:?}")?,
            Self::Unsupported(fl) => write!(f, "flags {fl:?} are not supported by kmem")?,
            Self::Layout(e) => write!(f, "{e}")?,
            Self::TooManyCaches => write!(f, "no cache id left (at most {MAX_CACHES} caches)")?,
            Self::NoMemory => f.write_str("no memory for the cache descriptor or its per-CPU part")?,
        }
        f.write_str(if self.errno() == -12 { " (-ENOMEM)" } else { " (-EINVAL)" })
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
    /// The cache belongs to another machine (reported as a `WARNING`; nothing allocated).
    OtherMachine,
    /// A constructed object was asked of a typed cache without a constructor.
    NoConstructor,
    /// `failslab` injected this failure (`crate::fault`).
    FaultInjected,
}

impl fmt::Display for SlabAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemory(e) => write!(f, "slab allocation failed: {e}"),
            Self::NoSuchNode(n) => write!(f, "slab allocation failed: no node {n}"),
            Self::OtherMachine => write!(f, "slab allocation failed: the cache belongs to another machine"),
            Self::NoConstructor => write!(f, "slab allocation failed: the cache has no constructor"),
            Self::FaultInjected => write!(f, "slab allocation failed: injected by failslab"),
        }
    }
}

impl core::error::Error for SlabAllocError {}
