//! The kmalloc family's error: [`KmallocError`] (what failed, with the request) and its
//! [`KmallocErrorKind`], with the errno a C caller would see.

use core::fmt;

use super::KMALLOC_MAX_SIZE;
use crate::gfp::Gfp;
use crate::mm::page_ref::AllocError;
use crate::slab::{CacheError, SlabAllocError};

/// Why a kmalloc-family call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmallocErrorKind {
    /// `n * size` overflows (`kmalloc_array`, `kcalloc`): never a short buffer.
    Overflow,
    /// Above [`KMALLOC_MAX_SIZE`].
    TooLarge,
    /// The slab allocator could not give an object.
    Slab(SlabAllocError),
    /// The page allocator could not give a large block.
    Pages(AllocError),
    /// The size class's cache could not be created.
    Cache(CacheError),
    /// `krealloc` of a pointer kmem did not hand out.
    InvalidPointer,
    /// kvmalloc's vmalloc fallback failed.
    Vmalloc(crate::vmalloc::VmallocErrorKind),
    /// An alignment kmalloc cannot give (above a page: the owning handles of
    /// [`crate::alloc`] refuse it).
    Align(usize),
}

/// A failed kmalloc-family call: the request and the cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmallocError {
    /// Bytes asked for (for an overflow, the element size).
    pub size: usize,
    /// The GFP flags.
    pub gfp: Gfp,
    /// The cause.
    pub kind: KmallocErrorKind,
}

impl KmallocError {
    /// The errno a Linux caller would return for this failure (negative): `-EINVAL` for a
    /// bad pointer or alignment, `-ENOMEM` otherwise.
    pub const fn errno(&self) -> i32 {
        match self.kind {
            KmallocErrorKind::InvalidPointer | KmallocErrorKind::Align(_) => -22,
            KmallocErrorKind::Cache(e) => e.errno(),
            _ => -12,
        }
    }
}

impl fmt::Display for KmallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (size, gfp) = (self.size, self.gfp);
        match self.kind {
            KmallocErrorKind::Overflow => write!(f, "kmalloc_array(n, {size}, {gfp:#}): n * {size} overflows")?,
            KmallocErrorKind::TooLarge => {
                write!(f, "kmalloc({size}, {gfp:#}): size above KMALLOC_MAX_SIZE ({KMALLOC_MAX_SIZE} bytes)")?
            }
            KmallocErrorKind::Slab(e) => write!(f, "kmalloc({size}, {gfp:#}): {e}")?,
            KmallocErrorKind::Pages(e) => write!(f, "kmalloc({size}, {gfp:#}): large block: {e}")?,
            // The cache error ends with its own errno.
            KmallocErrorKind::Cache(e) => return write!(f, "kmalloc({size}, {gfp:#}): its size class's cache: {e}"),
            KmallocErrorKind::InvalidPointer => {
                write!(f, "krealloc(p, {size}, {gfp:#}): p is not a kmalloc allocation of this machine")?
            }
            KmallocErrorKind::Vmalloc(k) => write!(f, "kvmalloc({size}, {gfp:#}): vmalloc fallback: {}", k.reason())?,
            KmallocErrorKind::Align(a) => write!(f, "kmalloc({size}, {gfp:#}): alignment {a} is above a page")?,
        }
        f.write_str(if self.errno() == -22 { " (-EINVAL)" } else { " (-ENOMEM)" })
    }
}

impl core::error::Error for KmallocError {}
