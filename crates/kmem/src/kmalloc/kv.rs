//! Copies and the kvmalloc family: `kmemdup`, `kstrdup`, and `kvmalloc`/`kvzalloc`/`kvfree`
//! (kmalloc first, vmalloc when a large request cannot have contiguous pages).

use core::ptr::NonNull;

use super::{KmallocError, KmallocErrorKind};
use crate::addr::PAGE_SIZE;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::vmalloc::VmallocErrorKind;

impl<P: Platform> Kmem<P> {
    /// `kmemdup(src, len, gfp)`.
    #[track_caller]
    pub fn kmemdup(&self, src: &[u8], gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let p = self.kmalloc_node_at(src.len(), gfp.without(Gfp::ZERO), None, core::panic::Location::caller())?;
        if !src.is_empty() {
            // SAFETY: a fresh allocation of `src.len()` bytes, ours.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr(), src.len()) };
        }
        Ok(p)
    }

    /// `kstrdup(s, gfp)`: a NUL-terminated copy of `s`.
    #[track_caller]
    pub fn kstrdup(&self, s: &str, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let p = self.kmalloc_node_at(s.len() + 1, gfp.without(Gfp::ZERO), None, core::panic::Location::caller())?;
        // SAFETY: a fresh allocation of `s.len() + 1` bytes, ours.
        unsafe {
            core::ptr::copy_nonoverlapping(s.as_ptr(), p.as_ptr(), s.len());
            p.as_ptr().add(s.len()).write(0);
        }
        Ok(p)
    }

    /// `kvmalloc_node(size, gfp, node)`: kmalloc first with `kmalloc_gfp_adjust` (above a
    /// page: `__GFP_NOWARN`, `__GFP_NORETRY` unless `__GFP_RETRY_MAYFAIL`, no `__GFP_NOFAIL`),
    /// then vmalloc with the caller's flags, as Linux's `__kvmalloc_node`. Requests of a page
    /// or less and non-blocking requests do not fall back; neither do sizes above `INT_MAX`
    /// (a warning unless `__GFP_NOWARN`). A machine without a vmalloc range retries kmalloc
    /// with the caller's flags instead.
    #[track_caller]
    pub fn kvmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        let caller = core::panic::Location::caller();
        let mut g = gfp;
        if size > PAGE_SIZE {
            g = g.union(Gfp::NOWARN).without(Gfp::NOFAIL);
            if !g.contains(Gfp::RETRY_MAYFAIL) {
                g = g.union(Gfp::NORETRY);
            }
        }
        let e = match self.kmalloc_node_at(size, g, None, caller) {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        if size <= PAGE_SIZE || !gfp.allows_blocking() {
            return Err(e);
        }
        if size > i32::MAX as usize {
            if !gfp.contains(Gfp::NOWARN) {
                self.warn_on("__kvmalloc_node", &|w| write!(w, "size {size} > INT_MAX"));
            }
            return Err(KmallocError { size, gfp, kind: KmallocErrorKind::TooLarge });
        }
        match self.vmalloc_at(size, 1, gfp, None, 0, caller) {
            Ok(p) => Ok(p),
            Err(v) if v.kind == VmallocErrorKind::NoVmallocArea => self.kmalloc_node_at(size, gfp, None, caller),
            Err(v) => Err(KmallocError { size, gfp, kind: KmallocErrorKind::Vmalloc(v.kind) }),
        }
    }

    /// `kvzalloc(size, gfp)`.
    #[track_caller]
    pub fn kvzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmallocError> {
        self.kvmalloc(size, gfp | Gfp::ZERO)
    }

    /// `kvfree(p)`: `vfree` for vmalloc addresses, `kfree` otherwise.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree`] / [`Kmem::vfree`].
    #[track_caller]
    pub unsafe fn kvfree(&self, p: *const u8) {
        if self.is_vmalloc_addr(p) {
            // SAFETY: forwarded caller contract.
            unsafe { self.vfree(p) }
        } else {
            // SAFETY: forwarded caller contract.
            unsafe { self.kfree(p) }
        }
    }
}
