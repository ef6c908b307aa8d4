//! Kernel stacks from the vmalloc range (`CONFIG_VMAP_STACK`, kernel/fork.c
//! `alloc_thread_stack_node`): `THREAD_SIZE` bytes aligned to `THREAD_SIZE`, zeroed. The
//! page below every stack is never mapped (it is the guard page after the area below, or
//! free space), so an overflow faults instead of corrupting a neighbour. Each CPU caches
//! two freed stacks (`NR_CACHED_STACKS`), zeroed again on reuse.

use core::panic::Location;
use core::ptr::NonNull;

use super::area::{vm_flags, CpuSlots};
use super::VmallocError;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{AtomicUsize, Ordering};

/// `THREAD_SIZE` on x86-64 (16 KiB).
pub const THREAD_SIZE: usize = 16 << 10;
/// `NR_CACHED_STACKS`.
pub const NR_CACHED_STACKS: usize = 2;

/// An owned kernel stack; dropping it frees it (`free_thread_stack`).
#[derive(Debug)]
pub struct KernelStack<'m, P: Platform> {
    k: &'m Kmem<P>,
    base: NonNull<u8>,
}

// SAFETY: the handle owns its stack's vmalloc area outright; the machine is Sync and every
// vmalloc call (the free in Drop included) may be made from any thread.
unsafe impl<P: Platform> Send for KernelStack<'_, P> {}

impl<P: Platform> KernelStack<'_, P> {
    /// Lowest address of the stack.
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }
    /// One past the highest address: the initial stack pointer of a downward stack.
    pub fn top(&self) -> *mut u8 {
        // SAFETY: base + THREAD_SIZE is one past the end of the stack's area.
        unsafe { self.base.as_ptr().add(THREAD_SIZE) }
    }
}

impl<P: Platform> Drop for KernelStack<'_, P> {
    fn drop(&mut self) {
        self.k.free_thread_stack(self.base);
    }
}

impl<P: Platform> Kmem<P> {
    /// `alloc_thread_stack_node()`: a zeroed `THREAD_SIZE` stack, from this CPU's cache of
    /// freed stacks or a new vmalloc area (`GFP_KERNEL_ACCOUNT | __GFP_ZERO`). Counted in
    /// `KernelStack` while owned.
    #[track_caller]
    pub fn alloc_thread_stack(&self, node: Option<usize>) -> Result<KernelStack<'_, P>, VmallocError> {
        let caller = Location::caller();
        let base = match self.stack_cache_take() {
            Some(b) => {
                // SAFETY: a cached stack is a live vmalloc area of THREAD_SIZE bytes that only
                // the cache referenced; we took it out.
                unsafe { core::ptr::write_bytes(b.as_ptr(), 0, THREAD_SIZE) };
                b
            }
            None => self.vmalloc_at(
                THREAD_SIZE,
                THREAD_SIZE,
                Gfp::KERNEL_ACCOUNT | Gfp::ZERO,
                node,
                vm_flags::STACK,
                caller,
            )?,
        };
        self.vm().nr_stacks.fetch_add(1, Ordering::Relaxed);
        Ok(KernelStack { k: self, base })
    }

    fn free_thread_stack(&self, base: NonNull<u8>) {
        self.vm().nr_stacks.fetch_sub(1, Ordering::Relaxed);
        if let Some(slots) = self.stack_slots(true) {
            for s in slots {
                if s.compare_exchange(0, base.as_ptr() as usize, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return;
                }
            }
        }
        // SAFETY: the stack's vmalloc area, owned by the dropped handle.
        unsafe { self.vfree(base.as_ptr()) };
    }

    fn stack_cache_take(&self) -> Option<NonNull<u8>> {
        let slots = self.stack_slots(false)?;
        slots.iter().find_map(|s| NonNull::new(s.swap(0, Ordering::AcqRel) as *mut u8))
    }

    /// Frees the kernel stacks cached by `cpu` (its CPU going offline).
    pub(crate) fn stack_cache_drain_cpu(&self, cpu: usize) {
        let Some(t) = CpuSlots::get(self, &self.vm().stack_cache, false) else { return };
        for s in &t.of(cpu)[..NR_CACHED_STACKS] {
            let p = s.swap(0, Ordering::AcqRel);
            if p != 0 {
                // SAFETY: a cached stack's vmalloc area, owned by its slot until taken.
                unsafe { self.vfree(p as *const u8) };
            }
        }
    }

    /// This CPU's cache slots; with `create`, the table is allocated on first use.
    fn stack_slots(&self, create: bool) -> Option<&[AtomicUsize]> {
        let t = CpuSlots::get(self, &self.vm().stack_cache, create)?;
        Some(&t.of(self.platform().current_cpu().index())[..NR_CACHED_STACKS])
    }
}
