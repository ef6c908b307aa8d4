//! Deferred frees of the any-context allocator (Linux 6.18 mm/slub.c: `defer_free`,
//! `free_deferred_objects`, `defer_free_barrier`).
//!
//! `kfree_nolock` may find every route to an object's slab busy: the CPU's sheaves held by
//! the context it interrupted, the node's `list_lock` held. It then pushes the object onto a
//! lock-free list ([`Llist`], Linux's `llist`) and returns. The object's first word is the
//! link (the object is the caller's until freed, and every slab object is at least a word).
//! The objects are freed for real, with the ordinary `kfree`, at the next *safe point*: a
//! context that may take locks. kmem has no `irq_work`, so the safe points are
//! - the careful (slow) path of every slab allocation, which checks one counter first,
//! - `kmem_cache_shrink` and `kmem_cache_destroy`,
//! - [`Kmem::defer_free_barrier`], for whoever must know that everything freed is free.
//!
//! The fast paths never look. There is one list per machine (Linux: one per CPU, because
//! `irq_work` runs per CPU): kmem's safe points take the whole list anyway (taking is one
//! atomic exchange, [`Llist::del_all`]), deferral is rare (about 1 free in 100 in the
//! hosted NMI storm test), and the machine state stays small (the boot-time memory layout,
//! which golden tests pin, has less than a cache line of slack).
//!
//! # The list
//!
//! `llist_add`: write the node's link to the current first node, then compare-and-exchange
//! the head from that first node to the node (`Release`: the link is written before the node
//! is visible); `llist_del_all`: exchange the head with 0 (`Acquire`: every link of the chain
//! taken is visible). There is no single-node removal, so no ABA: a node the exchange sees
//! was pushed after every node it links to, and is not reused until the chain's taker frees
//! it. The model `slab/defer/loom_tests.rs` checks two pushers against a taker.

use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{const_fn_unless_loom, AtomicUsize, Ordering};

/// A lock-free singly linked list of addresses (Linux's `struct llist_head`). Where a node
/// keeps its link is the caller's business (`set_next`/`next` closures): an object's first
/// word for deferred frees, a cell in the loom model.
#[derive(Debug)]
pub(crate) struct Llist {
    first: AtomicUsize,
}

impl Llist {
    const_fn_unless_loom! {
        /// An empty list.
        pub(crate) fn new() -> Self {
            Self { first: AtomicUsize::new(0) }
        }
    }

    /// `llist_add()`: pushes `node` (non-zero), whose link `set_next(node, next)` writes.
    /// True if the list was empty.
    pub(crate) fn add(&self, node: usize, set_next: impl Fn(usize, usize)) -> bool {
        debug_assert_ne!(node, 0);
        let mut first = self.first.load(Ordering::Relaxed);
        loop {
            set_next(node, first);
            match self.first.compare_exchange_weak(first, node, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return first == 0,
                Err(now) => first = now,
            }
        }
    }

    /// `llist_del_all()`: takes the whole chain (0 if empty); the caller walks it with the
    /// links it wrote.
    pub(crate) fn del_all(&self) -> usize {
        if self.first.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.first.swap(0, Ordering::Acquire)
    }
}

/// Tag of a list node that is an [`RcuHead`](crate::RcuHead) queued by `kfree_rcu_nolock`
/// (objects and heads are word aligned, so bit 0 is free).
const RCU_TAG: usize = 1;

/// The machine's deferred frees (part of the slab registry in the machine state).
#[derive(Debug)]
pub(crate) struct DeferFree {
    list: Llist,
    /// Objects on the list: the safe points. one-load check.
    pending: AtomicUsize,
}

impl DeferFree {
    const_fn_unless_loom! {
        /// No deferred frees.
        pub(crate) fn new() -> Self {
            Self { list: Llist::new(), pending: AtomicUsize::new(0) }
        }
    }

    /// Objects waiting for a safe point.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

impl<P: Platform> Kmem<P> {
    fn defer_state(&self) -> &DeferFree {
        &self.state().slab.defer
    }

    /// `defer_free()`: queues a slab object that `kfree_nolock` could not free now.
    pub(crate) fn defer_free(&self, obj: usize) {
        debug_assert_eq!(obj & RCU_TAG, 0);
        self.defer_push(obj);
    }

    /// Queues `kfree_rcu(ptr, head)` for the next safe point (`kfree_rcu_nolock`): the node is
    /// the [`RcuHead`](crate::RcuHead) tagged with [`RCU_TAG`], its first word the list link
    /// and its second word `head - ptr` (kfree_rcu's own encoding of an embedded head), so
    /// nothing outside the head is written while RCU readers may still read the object.
    ///
    /// # Safety
    ///
    /// `head` is an `RcuHead` (two words, 8-aligned) inside the kmalloc object `ptr` that the
    /// caller gave up, `head - ptr < 4096`; nothing else uses the head until it is freed.
    pub(crate) unsafe fn defer_kfree_rcu(&self, ptr: usize, head: usize) {
        debug_assert_eq!(head & 7, 0);
        // SAFETY: the head's second word is the caller's to write (contract).
        unsafe { super::object::write_word(head + 8, (head - ptr) as u64) };
        self.defer_push(head | RCU_TAG);
    }

    fn defer_push(&self, node: usize) {
        let d = self.defer_state();
        // Counted before it is visible, so that a taker never subtracts what was not added.
        d.pending.fetch_add(1, Ordering::Relaxed);
        d.list.add(node, |node, next| {
            // SAFETY: `node` (untagged) is a slab object the caller gave up (kfree_nolock's
            // contract) or an RcuHead inside one (`defer_kfree_rcu`'s), at least a word long
            // and word aligned; nothing else reads it until the list is taken.
            unsafe { super::object::write_word(node & !RCU_TAG, next as u64) }
        });
    }

    /// Objects `kfree_nolock` deferred and no safe point has freed yet.
    pub fn deferred_frees(&self) -> usize {
        self.defer_state().pending()
    }

    /// `free_deferred_objects()` when any are pending: the safe points' check. Must be
    /// called from a context that may take kmem's locks (not from a `_nolock` caller).
    #[inline]
    pub(crate) fn free_deferred_if_pending(&self) {
        if self.defer_state().pending() != 0 {
            self.free_deferred_objects();
        }
    }

    /// `defer_free_barrier()`: frees every object `kfree_nolock` deferred so far, with the
    /// ordinary `kfree`. Call it from a context that may take locks,
    /// never from one that interrupted kmem (a `_nolock` caller's context).
    ///
    /// ```
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// # let first = m.kmalloc(8, kmem::Gfp::KERNEL).unwrap();
    /// # unsafe { m.kfree(first.as_ptr()) };
    /// let p = m.kmalloc_nolock(64, kmem::Gfp::empty(), None).unwrap();
    /// // SAFETY: ours, no longer used.
    /// unsafe { m.kfree_nolock(p.as_ptr()) };
    /// m.defer_free_barrier();
    /// assert_eq!(m.deferred_frees(), 0);
    /// ```
    pub fn defer_free_barrier(&self) {
        self.free_deferred_objects();
    }

    #[cold]
    #[inline(never)]
    fn free_deferred_objects(&self) {
        let d = self.defer_state();
        // Objects deferred while this runs (a handler interrupting it) wait for the next
        // safe point; a nested safe point (a free below needing a new sheaf) finds the list
        // empty or takes only what came after.
        let mut cur = d.list.del_all();
        let mut n = 0;
        while cur != 0 {
            let node = cur & !RCU_TAG;
            // SAFETY: a node of a chain `del_all` gave us alone: an object `defer_free`
            // linked, or an RcuHead `defer_kfree_rcu` linked, whose link was written before
            // the push that `del_all` acquired.
            let next = unsafe { super::object::read_word(node) } as usize;
            if cur & RCU_TAG != 0 {
                // SAFETY: as above; the head's second word holds `head - ptr`
                // (`defer_kfree_rcu`), and the object is the caller's, given up for a free
                // after a grace period, which `kfree_rcu` now arranges.
                unsafe {
                    let ptr = node - super::object::read_word(node + 8) as usize;
                    self.kfree_rcu(ptr as *const u8, core::ptr::NonNull::new_unchecked(node as *mut crate::RcuHead));
                }
            } else {
                // SAFETY: as above; the object is ours to free (the link word is cleared so
                // that the free's checks see what the caller left there, not the list).
                unsafe {
                    super::object::write_word(node, 0);
                    self.kfree(node as *const u8);
                }
            }
            n += 1;
            cur = next;
        }
        if n != 0 {
            d.pending.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
