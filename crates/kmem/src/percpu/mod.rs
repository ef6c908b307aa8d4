//! The per-CPU allocator (`mm/percpu.c`, simplified) and per-CPU variables.
//!
//! Per-CPU memory comes in **chunks**; a chunk has one **unit** per CPU, all units of
//! [`PCPU_MIN_UNIT_SIZE`] bytes. An allocation is an offset: an area of 512 bytes at 6 KiB in a
//! chunk occupies 512 bytes at 6 KiB of every unit of that chunk, and CPU `c`'s copy lives at
//! `unit_base[c] + offset` ([`Kmem::per_cpu_ptr`]: a table lookup and an add).
//!
//! - **First chunk** (Linux's `pcpu_embed_first_chunk`): carved from memblock at boot, each
//!   CPU's unit on that CPU's node. Its units are laid out `<reserved 8 KiB | dynamic 24 KiB>`:
//!   the reserved region serves [`Kmem::define_per_cpu`] (kmem's `DEFINE_PER_CPU`, which has
//!   no linker section to copy from), the dynamic region serves [`Kmem::__alloc_percpu`].
//! - **Dynamic chunks** (percpu-km style): created on demand by blocking requests; each unit
//!   is a separate `2^3`-page block from the page allocator on the CPU's node, so units need
//!   not be contiguous; the chunk header keeps their addresses.
//! - **Allocation maps**: one bit per [`PCPU_MIN_ALLOC_SIZE`] (4-byte) granule, plus a boundary
//!   map marking where each allocation starts and ends (Linux's `alloc_map`/`bound_map`).
//!   First fit with alignment, in the fullest chunk that has room. The headers and maps live in
//!   a page-allocator block per chunk (the first chunk's in memblock): no heap.
//! - **Freeing**: a dynamic chunk that becomes empty is given back to the page allocator when
//!   another empty one already exists (at most one is kept, as Linux's balance work does);
//!   [`Kmem::pcpu_free_empty_chunks`] gives back the last one too.
//! - **Accounting**: `Percpu:` in `/proc/meminfo` counts the unit pages of every chunk (the
//!   first included), not the headers.
//!
//! # Lock order
//!
//! One lock, the **percpu lock** (`PercpuState`, `spin_lock_irqsave`, Linux's `pcpu_lock`),
//! guards the chunk list and every chunk's maps. It is a leaf: the page allocator (and the
//! zone lock under it) is never called while it is held, and nothing reports under it. A chunk
//! is created with no lock held and then linked in; a chunk to destroy is unlinked under the
//! lock and its pages freed after unlocking.
//!
//! # Safety model
//!
//! The raw API ([`PercpuPtr`], [`Kmem::per_cpu_ptr`], [`Kmem::free_percpu`]) is `unsafe` where
//! Linux trusts the caller. The typed handles are safe: [`PerCpuBox`] owns an allocation of a
//! `T` per CPU and frees it on drop; [`PerCpuVar`] is a never-freed per-CPU integer whose
//! operations are Linux's `this_cpu_*` on atomic storage, so a remote reader never races with
//! a non-atomic write: with C's integer conversions, a relaxed load and store while
//! preemption and interrupts are off, so remote `per_cpu`/`per_cpu_sum` readers never see a
//! torn value. [`PreemptGuard`] is the proof the `__this_cpu_*` operations take.

mod alloc;
mod bitmap;
mod chunk;
mod state;
mod typed;
mod var;

use core::fmt;

pub(crate) use state::PercpuState;
pub use state::PercpuStats;
pub use typed::{IrqGuard, PerCpuBox, PreemptGuard};
pub use var::{PcpuInt, PcpuSlot, PerCpuVar};

use crate::addr::PAGE_SIZE;
use crate::mm::page_ref::AllocError;

#[cfg(doc)]
use crate::machine::Kmem;

/// Bytes per unit: the first chunk's unit size and the largest allocation
/// (`PCPU_MIN_UNIT_SIZE`, `PFN_ALIGN(32 << 10)`).
pub const PCPU_MIN_UNIT_SIZE: usize = 32 << 10;
/// Allocation granule: sizes are rounded up to it and alignments raised to it
/// (`PCPU_MIN_ALLOC_SIZE`).
pub const PCPU_MIN_ALLOC_SIZE: usize = 4;
/// Bytes at the start of each first-chunk unit reserved for per-CPU variables
/// ([`Kmem::define_per_cpu`]; Linux's `PERCPU_MODULE_RESERVE`).
pub const PERCPU_RESERVED_SIZE: usize = 8 << 10;
/// Pages per unit.
pub const PCPU_UNIT_PAGES: usize = PCPU_MIN_UNIT_SIZE / PAGE_SIZE;

const _: () = assert!(PCPU_MIN_UNIT_SIZE.is_power_of_two() && PCPU_MIN_UNIT_SIZE % PAGE_SIZE == 0);
const _: () = assert!(PERCPU_RESERVED_SIZE % PCPU_MIN_ALLOC_SIZE == 0 && PERCPU_RESERVED_SIZE < PCPU_MIN_UNIT_SIZE);

/// A per-CPU allocation (Linux's `void __percpu *`): which chunk, and the byte offset inside
/// every unit of it. Copyable and inert; it does not own the allocation (see [`PerCpuBox`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PercpuPtr {
    /// Address of the chunk header; 0 for [`PercpuPtr::NULL`].
    chunk: usize,
    /// Byte offset inside each unit.
    off: u32,
}

impl PercpuPtr {
    /// The null per-CPU pointer: [`Kmem::free_percpu`] ignores it.
    pub const NULL: PercpuPtr = PercpuPtr { chunk: 0, off: 0 };

    /// The raw parts (chunk address, offset), for kmem's own per-CPU state kept in atomics.
    pub(crate) const fn to_raw(self) -> (usize, u32) {
        (self.chunk, self.off)
    }
    /// Rebuilds a pointer from [`PercpuPtr::to_raw`]'s parts.
    pub(crate) const fn from_raw(chunk: usize, off: u32) -> Self {
        Self { chunk, off }
    }

    /// Whether this is [`PercpuPtr::NULL`].
    pub const fn is_null(self) -> bool {
        self.chunk == 0
    }

    /// Byte offset of the allocation inside each unit of its chunk.
    pub const fn offset(self) -> usize {
        self.off as usize
    }
}

impl fmt::Debug for PercpuPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            f.write_str("PercpuPtr(NULL)")
        } else {
            write!(f, "PercpuPtr(chunk {:#x} + {:#x})", self.chunk, self.off)
        }
    }
}

/// Why a per-CPU allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PercpuErrorKind {
    /// Size 0 or above [`PCPU_MIN_UNIT_SIZE`], or an alignment that is not a power of two or
    /// is above `PAGE_SIZE` (`illegal size (%zu) or align (%zu) for percpu allocation`).
    IllegalRequest,
    /// A non-blocking request found no room in the existing chunks; it may not create one
    /// (`atomic alloc failed, no space left`).
    AtomicNoSpace,
    /// The reserved region of the first chunk is full (`alloc from reserved chunk failed`).
    ReservedFull,
    /// The page allocator could not give the pages of a new chunk
    /// (`failed to allocate new chunk`).
    NewChunk(AllocError),
}

impl PercpuErrorKind {
    /// Linux's reason string for an allocation failure.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::IllegalRequest => "illegal size or align",
            Self::AtomicNoSpace => "atomic alloc failed, no space left",
            Self::ReservedFull => "alloc from reserved chunk failed",
            Self::NewChunk(_) => "failed to allocate new chunk",
        }
    }
}

/// A failed per-CPU allocation: the request (size rounded up to the granule, alignment raised
/// to it, as Linux prints them) and the cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PercpuError {
    /// Size asked for, rounded up to [`PCPU_MIN_ALLOC_SIZE`].
    pub size: usize,
    /// Alignment asked for, at least [`PCPU_MIN_ALLOC_SIZE`] when valid.
    pub align: usize,
    /// The cause.
    pub kind: PercpuErrorKind,
}

impl fmt::Display for PercpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PercpuErrorKind::IllegalRequest => {
                write!(f, "illegal size ({}) or align ({}) for percpu allocation", self.size, self.align)
            }
            kind => write!(f, "percpu: allocation failed, size={} align={}, {}", self.size, self.align, kind.reason()),
        }
    }
}

impl core::error::Error for PercpuError {}

/// A validated request, in bytes and in granules.
#[derive(Clone, Copy, Debug)]
struct Request {
    size: usize,
    align: usize,
    bits: usize,
    align_bits: usize,
}

impl Request {
    /// `pcpu_alloc()`'s checks, in Linux's order: an alignment below
    /// [`PCPU_MIN_ALLOC_SIZE`] (0 to 3, power of two or not) is raised to it first, the size
    /// rounded up to it, and only then are both checked (so `align` 3 is fine, 5 is not).
    fn new(size: usize, align: usize) -> Result<Self, PercpuError> {
        let align = align.max(PCPU_MIN_ALLOC_SIZE);
        // ALIGN(size, 4) as C computes it: wraps to 0 for sizes near usize::MAX.
        let size = size.wrapping_add(PCPU_MIN_ALLOC_SIZE - 1) & !(PCPU_MIN_ALLOC_SIZE - 1);
        if size == 0 || size > PCPU_MIN_UNIT_SIZE || align > PAGE_SIZE || !align.is_power_of_two() {
            return Err(PercpuError { size, align, kind: PercpuErrorKind::IllegalRequest });
        }
        Ok(Self { size, align, bits: size / PCPU_MIN_ALLOC_SIZE, align_bits: align / PCPU_MIN_ALLOC_SIZE })
    }

    fn error(self, kind: PercpuErrorKind) -> PercpuError {
        PercpuError { size: self.size, align: self.align, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_rounded_and_checked_as_pcpu_alloc_does() {
        let r = Request::new(1, 1).unwrap();
        assert_eq!((r.size, r.align, r.bits, r.align_bits), (4, 4, 1, 1));
        let r = Request::new(13, 16).unwrap();
        assert_eq!((r.size, r.align, r.bits, r.align_bits), (16, 16, 4, 4));
        let r = Request::new(PCPU_MIN_UNIT_SIZE, PAGE_SIZE).unwrap();
        assert_eq!((r.bits, r.align_bits), (8192, 1024));
        let bad = |size, align| Request::new(size, align).unwrap_err();
        assert_eq!(bad(0, 4), PercpuError { size: 0, align: 4, kind: PercpuErrorKind::IllegalRequest });
        // Linux prints the rounded size.
        assert_eq!(bad(PCPU_MIN_UNIT_SIZE + 1, 8).size, PCPU_MIN_UNIT_SIZE + 4);
        // Alignments below 4 are raised to 4 before the check, as Linux does.
        for a in [0, 1, 2, 3] {
            let r = Request::new(8, a).unwrap();
            assert_eq!((r.size, r.align, r.align_bits), (8, 4, 1), "align {a}");
        }
        assert_eq!(bad(8, 5).align, 5);
        assert_eq!(bad(8, 7).align, 7);
        assert_eq!(bad(8, 2 * PAGE_SIZE).align, 2 * PAGE_SIZE);
        assert_eq!(bad(usize::MAX, 4).size, 0, "ALIGN wraps as in C");
        assert_eq!(
            crate::testing::std::format!("{}", bad(0, 4)),
            "illegal size (0) or align (4) for percpu allocation"
        );
    }
}
