//! [`StaticRam`]: a page-aligned RAM region in a `static`, for a kernel that gives kmem part
//! of its image (`.bss`) rather than memory the firmware map describes.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use kmem::PAGE_SIZE;

/// `N` bytes of page-aligned, zero-initialised memory (`.bss` in a kernel image), handed out
/// once by [`StaticRam::take`].
///
/// ```
/// use kmem_minimal::StaticRam;
/// static RAM: StaticRam<{ 4 << 20 }> = StaticRam::new();
/// let (ram, bytes) = RAM.take().unwrap();
/// assert_eq!(bytes, 4 << 20);
/// assert_eq!(ram.as_ptr() as usize % kmem::PAGE_SIZE, 0);
/// assert!(RAM.take().is_none(), "handed out once");
/// ```
#[repr(C, align(4096))]
pub struct StaticRam<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    taken: AtomicBool,
}

// SAFETY: the bytes are reached only through the pointer `take` hands out, once; `taken` is
// atomic.
unsafe impl<const N: usize> Sync for StaticRam<N> {}

impl<const N: usize> StaticRam<N> {
    const PAGE_MULTIPLE: () = assert!(N >= PAGE_SIZE && N % PAGE_SIZE == 0, "StaticRam: N must be whole pages");

    /// Zeroed memory, not yet taken.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::PAGE_MULTIPLE;
        StaticRam { bytes: UnsafeCell::new([0; N]), taken: AtomicBool::new(false) }
    }

    /// The region (start, length), the first time only: the caller owns it for ever, as
    /// [`crate::MinimalPlatform::new`] requires.
    pub fn take(&'static self) -> Option<(NonNull<u8>, usize)> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        NonNull::new(self.bytes.get().cast::<u8>()).map(|p| (p, N))
    }
}

impl<const N: usize> core::fmt::Debug for StaticRam<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticRam").field("bytes", &N).field("taken", &self.taken.load(Ordering::Relaxed)).finish()
    }
}
