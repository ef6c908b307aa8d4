//! `kmem_cache_alloc_bulk` / `kmem_cache_free_bulk`: many objects per pinning of the CPU.

use core::ptr::NonNull;

use super::alloc::Req;
use super::cache::KmemCache;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_alloc_bulk(s, gfp, size, p)`: fills every slot of `out`, or none
    /// (all-or-nothing, as Linux): returns `out.len()` on success, 0 on failure (anything
    /// allocated is freed again). Empties the CPU's main sheaf in one pinned pass, refilling
    /// it through the slow path as needed.
    #[track_caller]
    pub fn kmem_cache_alloc_bulk(&self, s: &KmemCache, gfp: Gfp, out: &mut [Option<NonNull<u8>>]) -> usize {
        let caller = core::panic::Location::caller();
        if !s.is_of(self) {
            self.cache_of_other_machine("kmem_cache_alloc_bulk", s);
            return 0;
        }
        let gfp = self.slab_pre_alloc(s, gfp);
        if self.should_failslab(s, gfp, caller) {
            return 0;
        }
        let req = Req { gfp, node: None, caller, orig_size: s.object_size() as u32 };
        let mut i = 0;
        while i < out.len() {
            i += self.bulk_from_sheaf(s, &mut out[i..]);
            if i == out.len() {
                break;
            }
            match self.alloc_slow(s, req) {
                // SAFETY: object addresses are never 0.
                Ok(obj) => out[i] = Some(unsafe { NonNull::new_unchecked(obj as *mut u8) }),
                Err(_) => {
                    // SAFETY: the objects in out[..i] were just allocated from `s` and are unused.
                    unsafe { self.kmem_cache_free_bulk(s, &mut out[..i]) };
                    return 0;
                }
            }
            i += 1;
        }
        for p in out.iter().flatten() {
            let obj = p.as_ptr() as usize;
            if gfp.contains(Gfp::ZERO) {
                // SAFETY: just allocated, ours, `object_size` bytes.
                unsafe { super::object::fill(obj, 0, s.object_size()) };
            } else if !s.debug {
                // SAFETY: as in `alloc_fast`: the object is ours now.
                unsafe { super::object::clear_free_word(s.fp_addr(obj)) };
            }
        }
        out.len()
    }

    /// Pops as many objects as the CPU's main sheaf holds (the caller clears their free
    /// pointers).
    fn bulk_from_sheaf(&self, s: &KmemCache, out: &mut [Option<NonNull<u8>>]) -> usize {
        let p = self.platform().pin_cpu();
        let mut n = 0;
        if let Some(main) = s.pcs(self, p.cpu.index()).main() {
            while n < out.len() {
                let Some(obj) = main.pop() else { break };
                // SAFETY: object addresses are never 0.
                out[n] = Some(unsafe { NonNull::new_unchecked(obj as *mut u8) });
                n += 1;
            }
        }
        self.platform().unpin_cpu(p);
        n
    }

    /// `kmem_cache_free_bulk(s, size, p)`: frees every `Some` slot (and sets it to `None`),
    /// each with the checks of [`Kmem::kmem_cache_free`].
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`] for every object.
    #[track_caller]
    pub unsafe fn kmem_cache_free_bulk(&self, s: &KmemCache, objs: &mut [Option<NonNull<u8>>]) {
        let caller = core::panic::Location::caller();
        for slot in objs.iter_mut() {
            if let Some(p) = slot.take() {
                // SAFETY: forwarded caller contract.
                unsafe { self.kmem_cache_free_at(s, p, caller) };
            }
        }
    }
}
