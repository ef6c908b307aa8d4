//! `kmem_cache_alloc_bulk` / `kmem_cache_free_bulk`: many objects for one pass of the CPU's
//! local lock instead of one compare-and-exchange each.

use core::ptr::NonNull;

use super::alloc::Req;
use super::cache::KmemCache;
use super::cpu::CpuLock;
use super::slab_page::take_freelist;
use super::word::OFF_NONE;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_alloc_bulk(s, gfp, size, p)`: fills every slot of `out`, or none
    /// (all-or-nothing, as Linux): returns `out.len()` on success, 0 on failure (anything
    /// allocated is freed again). Takes the whole CPU freelist in one locked pass, refilling
    /// through the slow path as needed.
    #[track_caller]
    pub fn kmem_cache_alloc_bulk(&self, s: &KmemCache, gfp: Gfp, out: &mut [Option<NonNull<u8>>]) -> usize {
        let caller = core::panic::Location::caller();
        let gfp = self.slab_pre_alloc(s, gfp);
        let req = Req { gfp, node: None, caller, orig_size: s.object_size() as u32 };
        let mut i = 0;
        while i < out.len() {
            if !s.debug {
                i += self.bulk_from_cpu(s, &mut out[i..]);
                if i == out.len() {
                    break;
                }
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
        if gfp.contains(Gfp::ZERO) {
            for p in out.iter().flatten() {
                // SAFETY: just allocated, ours, `object_size` bytes.
                unsafe { super::object::fill(p.as_ptr() as usize, 0, s.object_size()) };
            }
        }
        out.len()
    }

    /// Pops as many objects as the CPU's freelist and its active slab's remote frees hold.
    fn bulk_from_cpu(&self, s: &KmemCache, out: &mut [Option<NonNull<u8>>]) -> usize {
        let cl = CpuLock::new(self.platform(), |cpu| s.cpu(self, cpu));
        let (mut head, tid) = cl.c.lock_word();
        let Some(a) = cl.c.active() else {
            cl.c.unlock_word(head, tid);
            return 0;
        };
        let objects = a.limit / s.layout.size;
        let mut n = 0;
        while n < out.len() {
            if head == OFF_NONE {
                match take_freelist(self.slab_at(a.slab)) {
                    Some(h) => head = h,
                    None => break,
                }
            }
            let obj = a.base + head as usize;
            // SAFETY: `head` heads the CPU's chain, which we own with the word locked.
            let next = unsafe { s.get_fp(obj) };
            // SAFETY: object addresses are never 0.
            out[n] = Some(unsafe { NonNull::new_unchecked(obj as *mut u8) });
            n += 1;
            if !s.valid_next(next, objects) {
                // SAFETY: as above.
                unsafe { s.set_fp(obj, OFF_NONE) };
                self.freelist_corrupt(s, self.slab_at(a.slab), obj);
                head = OFF_NONE;
                break;
            }
            head = next as u32;
        }
        cl.c.unlock_word(head, tid);
        n
    }

    /// `kmem_cache_free_bulk(s, size, p)`: frees every `Some` slot (and sets it to `None`).
    /// Objects of the CPU's active slab are pushed in one locked pass; the rest take the
    /// ordinary free path.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`] for every object.
    #[track_caller]
    pub unsafe fn kmem_cache_free_bulk(&self, s: &KmemCache, objs: &mut [Option<NonNull<u8>>]) {
        let caller = core::panic::Location::caller();
        if !s.debug {
            let cl = CpuLock::new(self.platform(), |cpu| s.cpu(self, cpu));
            let (mut head, tid) = cl.c.lock_word();
            if let Some(a) = cl.c.active() {
                for slot in objs.iter_mut() {
                    let Some(p) = *slot else { continue };
                    let off = (p.as_ptr() as usize).wrapping_sub(a.base);
                    if off < a.limit as usize && s.is_boundary(off as u32) && off as u32 != head {
                        // SAFETY: an object of the active slab, freed by its owner (contract).
                        unsafe { s.set_fp(p.as_ptr() as usize, head) };
                        head = off as u32;
                        *slot = None;
                    }
                }
            }
            cl.c.unlock_word(head, tid);
        }
        for slot in objs.iter_mut() {
            if let Some(p) = slot.take() {
                // SAFETY: forwarded caller contract.
                unsafe { self.kmem_cache_free_at(s, p, caller) };
            }
        }
    }

    /// `kmem_cache_free` with an explicit call site.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kmem_cache_free`].
    #[inline(always)]
    pub(crate) unsafe fn kmem_cache_free_at(
        &self,
        s: &KmemCache,
        obj: NonNull<u8>,
        caller: &'static core::panic::Location<'static>,
    ) {
        let addr = obj.as_ptr() as usize;
        if !self.free_fast(s, addr) {
            self.free_slow(s, addr, caller);
        }
    }
}
