//! `kfree_rcu` and friends: freeing after a grace period, in bulk (Linux `mm/slab_common.c`'s
//! `kvfree_call_rcu` with its per-CPU `kfree_rcu_cpu` and `kvfree_rcu_bulk_data` pages).
//!
//! Each CPU fills a *block*: one page from the buddy allocator (`GFP_NOWAIT`) holding an
//! [`RcuHead`], a count and [`BLOCK_PTRS`] pointers. A full block, or every partly filled one
//! at [`Kmem::rcu_poll`] / [`Kmem::kvfree_rcu_barrier`], is queued with `call_rcu`; its
//! callback frees every pointer (`kvfree`) and then the page: one grace period and one
//! callback for hundreds of objects. When no page can be had:
//! - `kfree_rcu(ptr, head)` / `kvfree_rcu(ptr, head)` queue the head embedded in the object
//!   with its offset as the function (Linux's `__is_kvfree_rcu_offset` trick: the object is
//!   `kvfree`d at `head - offset`);
//! - `kfree_rcu_mightsleep(ptr)` (no head) waits for a grace period (`synchronize_rcu`) and
//!   frees at once.

use core::ptr::NonNull;

use super::callbacks::KVFREE_OFFSET_LIMIT;
use super::RcuHead;
use crate::addr::{Order, VirtAddr};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::Ordering;

/// Pointers in one block: a page less the head and the count.
pub const BLOCK_PTRS: usize = (crate::PAGE_SIZE - core::mem::size_of::<RcuHead>() - 8) / 8;

/// A page of pointers waiting for a grace period (`struct kvfree_rcu_bulk_data`).
#[repr(C)]
struct Block {
    head: RcuHead,
    count: usize,
    ptrs: [usize; BLOCK_PTRS],
}

const _: () = assert!(core::mem::size_of::<Block>() <= crate::PAGE_SIZE);

/// The callback of a block: frees its pointers, then its page.
///
/// # Safety
///
/// `head` is the head of a [`Block`] made by [`Kmem::kvfree_call_rcu`], whose grace period
/// has ended.
unsafe fn kvfree_block<P: Platform>(k: &Kmem<P>, head: NonNull<RcuHead>) {
    let b = head.as_ptr() as *mut Block;
    // SAFETY: the block is ours (queued once, invoked once); `count` entries are filled.
    let n = unsafe { (*b).count };
    for i in 0..n {
        // SAFETY: as above.
        let p = unsafe { (*b).ptrs[i] } as *const u8;
        // SAFETY: a `kvfree_rcu` caller handed us the object to free after this grace period.
        unsafe { k.kvfree(p) };
    }
    // SAFETY: the block's page came from `__get_free_pages(.., 0)` and nothing refers to it.
    unsafe { k.free_pages(VirtAddr::new(b as usize), Order::ZERO) };
    k.rcu_cpu(k.platform().current_cpu().index().min(k.nr_cpus() - 1)).blocks.fetch_sub(1, Ordering::Relaxed);
}

impl<P: Platform> Kmem<P> {
    /// `kfree_rcu(ptr, rhf)`: `kfree(ptr)` after a grace period. `head` is an [`RcuHead`]
    /// inside the object, used only when no block page can be had.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use kmem::{Gfp, RcuHead};
    /// #[repr(C)]
    /// struct Entry { key: u64, rcu: RcuHead }
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let e = m.kmalloc(core::mem::size_of::<Entry>(), Gfp::KERNEL).unwrap().cast::<Entry>();
    /// // SAFETY: a fresh object, unpublished, freed once after a grace period.
    /// unsafe {
    ///     e.as_ptr().write(Entry { key: 1, rcu: RcuHead::new() });
    ///     let head = NonNull::new_unchecked(core::ptr::addr_of_mut!((*e.as_ptr()).rcu));
    ///     m.kfree_rcu(e.as_ptr().cast(), head);
    /// }
    /// m.kvfree_rcu_barrier(); // freed now
    /// assert_eq!(m.rcu_stats().pending_callbacks, 0);
    /// ```
    ///
    /// # Safety
    ///
    /// `ptr` is a live kmalloc object of this machine (or null: nothing happens) that the
    /// caller no longer uses, apart from RCU readers that found it before it was unpublished;
    /// `head` lies inside it, less than 4096 bytes from its start.
    pub unsafe fn kfree_rcu(&self, ptr: *const u8, head: NonNull<RcuHead>) {
        // SAFETY: forwarded (kvfree frees kmalloc objects as kfree does).
        unsafe { self.kvfree_call_rcu(ptr, Some(head)) }
    }

    /// `kfree_rcu_nolock(ptr, rhf)`: [`Kmem::kfree_rcu`] from any context, including one
    /// that interrupted kmem on the same CPU (the `_nolock` family's contexts, see
    /// [`Kmem::kmalloc_nolock`]). It takes no lock and allocates nothing: the head is queued
    /// on the machine's lock-free list of deferred frees, and the next safe point (a slab
    /// slow path, `kmem_cache_shrink`/`destroy`, [`Kmem::defer_free_barrier`]) hands it to
    /// `kfree_rcu`, so the grace period starts then. Only the head is written until the
    /// object is freed.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use kmem::{Gfp, RcuHead};
    /// #[repr(C)]
    /// struct Entry { key: u64, rcu: RcuHead }
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let e = m.kmalloc(core::mem::size_of::<Entry>(), Gfp::KERNEL).unwrap().cast::<Entry>();
    /// // SAFETY: a fresh object, unpublished, freed once after a grace period.
    /// unsafe {
    ///     e.as_ptr().write(Entry { key: 1, rcu: RcuHead::new() });
    ///     let head = NonNull::new_unchecked(core::ptr::addr_of_mut!((*e.as_ptr()).rcu));
    ///     m.kfree_rcu_nolock(e.as_ptr().cast(), head);
    /// }
    /// assert_eq!(m.deferred_frees(), 1);
    /// m.defer_free_barrier(); // now a kfree_rcu
    /// m.kvfree_rcu_barrier(); // freed now
    /// assert_eq!(m.deferred_frees(), 0);
    /// ```
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree_rcu`]: `ptr` is a live kmalloc object of this machine (or null:
    /// nothing happens) that the caller no longer uses apart from RCU readers; `head` lies
    /// inside it, less than 4096 bytes from its start.
    pub unsafe fn kfree_rcu_nolock(&self, ptr: *const u8, head: NonNull<RcuHead>) {
        if ptr.is_null() {
            return;
        }
        let (p, h) = (ptr as usize, head.as_ptr() as usize);
        if h < p || h - p >= KVFREE_OFFSET_LIMIT {
            // Not kfree_rcu's encoding: refuse rather than corrupt (nothing is freed).
            self.warn_on("kfree_rcu_nolock", &|w| {
                core::fmt::Write::write_str(w, "rcu_head is not inside the object's first 4096 bytes")
            });
            return;
        }
        // SAFETY: forwarded (the caller's contract is defer_kfree_rcu's).
        unsafe { self.defer_kfree_rcu(p, h) }
    }

    /// `kvfree_rcu(ptr, rhf)`: [`Kmem::kvfree`] after a grace period (kmalloc or vmalloc
    /// memory).
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree_rcu`], for a `kvmalloc` object.
    pub unsafe fn kvfree_rcu(&self, ptr: *const u8, head: NonNull<RcuHead>) {
        // SAFETY: forwarded.
        unsafe { self.kvfree_call_rcu(ptr, Some(head)) }
    }

    /// `kfree_rcu_mightsleep(ptr)`: as [`Kmem::kfree_rcu`] for an object without an
    /// [`RcuHead`]; may wait for a grace period when no block page can be had, so the
    /// caller must be able to sleep.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kfree_rcu`].
    pub unsafe fn kfree_rcu_mightsleep(&self, ptr: *const u8) {
        // SAFETY: forwarded.
        unsafe { self.kvfree_call_rcu(ptr, None) }
    }

    /// `kvfree_rcu_mightsleep(ptr)`.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kvfree_rcu`].
    pub unsafe fn kvfree_rcu_mightsleep(&self, ptr: *const u8) {
        // SAFETY: forwarded.
        unsafe { self.kvfree_call_rcu(ptr, None) }
    }

    /// `kvfree_call_rcu()`.
    ///
    /// # Safety
    ///
    /// As [`Kmem::kvfree_rcu`].
    unsafe fn kvfree_call_rcu(&self, ptr: *const u8, head: Option<NonNull<RcuHead>>) {
        if ptr.is_null() || ptr as usize == crate::ZERO_SIZE_PTR {
            return;
        }
        let p = self.platform();
        let cpu = p.current_cpu().index().min(self.nr_cpus() - 1);
        let l = &self.rcu_cpu(cpu).cb;
        let l_blocks = &self.rcu_cpu(cpu).blocks;
        loop {
            let full = {
                let _g = l.lock().lock_irqsave(p);
                let b = l.bulk.load(Ordering::Relaxed) as *mut Block;
                if !b.is_null() {
                    // SAFETY: the CPU's block is a page of ours, written only under this lock.
                    let n = unsafe { (*b).count };
                    if n < BLOCK_PTRS {
                        // SAFETY: as above.
                        unsafe {
                            (*b).ptrs[n] = ptr as usize;
                            (*b).count = n + 1;
                        }
                        return;
                    }
                    l.bulk.store(0, Ordering::Relaxed);
                }
                b
            };
            if !full.is_null() {
                // SAFETY: a full block, off the CPU, queued once.
                unsafe { self.kvfree_queue_block(full) };
            }
            let Ok(page) = self.__get_free_pages(Gfp::NOWAIT | Gfp::NOWARN, Order::ZERO) else { break };
            l_blocks.fetch_add(1, Ordering::Relaxed);
            let b = page.as_usize() as *mut Block;
            // SAFETY: a fresh page of ours, large enough for a block.
            unsafe {
                core::ptr::addr_of_mut!((*b).head).write(RcuHead::new());
                core::ptr::addr_of_mut!((*b).count).write(0);
            }
            let spare = {
                let _g = l.lock().lock_irqsave(p);
                if l.bulk.load(Ordering::Relaxed) == 0 {
                    l.bulk.store(b as usize, Ordering::Relaxed);
                    false
                } else {
                    true
                }
            };
            if spare {
                // SAFETY: the page we just took and did not install.
                unsafe { self.free_pages(page, Order::ZERO) };
                l_blocks.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // No page: the fallbacks.
        match head {
            Some(h) if (h.as_ptr() as usize).wrapping_sub(ptr as usize) < KVFREE_OFFSET_LIMIT => {
                let off = h.as_ptr() as usize - ptr as usize;
                // SAFETY: the head lies in the object (caller's contract), which is ours until
                // the callback frees it; the offset marks a kvfree (`rcu_invoke`).
                unsafe {
                    (*h.as_ptr()).func = off as *const ();
                    self.call_rcu_raw(h);
                }
            }
            _ => {
                if head.is_some() {
                    self.warn_on("kvfree_call_rcu", &|w| write!(w, "rcu_head is not within 4096 bytes of the object"));
                }
                self.synchronize_rcu();
                // SAFETY: a grace period has ended since the caller unpublished the object.
                unsafe { self.kvfree(ptr) };
            }
        }
    }

    /// Queues a block for its grace period.
    ///
    /// # Safety
    ///
    /// `b` is a block taken off its CPU, queued once.
    unsafe fn kvfree_queue_block(&self, b: *mut Block) {
        // SAFETY: `b` is a valid block; its head is the first field.
        let head = unsafe { NonNull::new_unchecked(core::ptr::addr_of_mut!((*b).head)) };
        // SAFETY: the block is ours until `kvfree_block` frees it.
        unsafe { self.call_rcu(head, kvfree_block::<P>) };
    }

    /// Hands every CPU's partly filled block to the grace period (Linux's monitor work,
    /// `kfree_rcu_monitor`).
    pub(crate) fn kvfree_rcu_flush_blocks(&self) {
        let p = self.platform();
        for cpu in 0..self.nr_cpus() {
            let l = &self.rcu_cpu(cpu).cb;
            if l.bulk.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let b = {
                let _g = l.lock().lock_irqsave(p);
                l.bulk.swap(0, Ordering::Relaxed) as *mut Block
            };
            if !b.is_null() {
                // SAFETY: taken off its CPU under the lock.
                unsafe { self.kvfree_queue_block(b) };
            }
        }
    }

    /// `kvfree_rcu_barrier()`: waits until every object handed to `kfree_rcu` and its
    /// family before the call has been freed. May sleep.
    pub fn kvfree_rcu_barrier(&self) {
        if self.platform().atomic_context() {
            self.might_sleep_report("mm/slab_common.c");
            return;
        }
        self.kvfree_rcu_flush_blocks();
        self.rcu_barrier();
    }
}

impl<P: Platform> Kmem<P> {
    /// What `kmem_cache_destroy` waits for first: pending `kfree_rcu` objects and deferred
    /// slabs, if there are any and the caller may sleep (a destroy from atomic context is
    /// reported by the destroy itself).
    pub(crate) fn rcu_barrier_before_destroy(&self) {
        let busy = self.rcu_slabs_queued() != self.rcu_slabs_freed()
            || (0..self.nr_cpus()).any(|c| {
                let l = &self.rcu_cpu(c).cb;
                l.pending() != 0 || l.bulk.load(Ordering::Relaxed) != 0
            });
        if busy && !self.platform().atomic_context() {
            self.kvfree_rcu_barrier();
        }
    }
}
