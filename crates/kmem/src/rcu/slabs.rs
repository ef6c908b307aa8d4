//! `SLAB_TYPESAFE_BY_RCU` slab pages waiting for a grace period (Linux `mm/slub.c`'s
//! `rcu_free_slab`).
//!
//! Linux queues a `call_rcu` on the `rcu_head` in `struct slab`. kmem's page descriptor has
//! no room for one, and the slab's memory must keep its objects' bytes for readers, so the
//! discarded slabs are linked through their head page's data word instead (`pfn + 1`, 0 ends
//! the list): per CPU, a *next* list of slabs discarded there since the last grace-period
//! request, and a *wait* list tagged with a grace-period snapshot, as the callback lists are. The pages stay
//! allocated (not `PG_slab` any more, not on any cache list) until [`Kmem::rcu_free_slabs`]
//! sees their grace period end and frees them.

use crate::addr::{Order, Pfn};
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::platform::Platform;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering, RawSpinLock};

/// One CPU's slabs waiting for a grace period.
#[derive(Debug, Default)]
pub(crate) struct DeferredSlabs {
    lock: RawSpinLock,
    next: AtomicU64,
    wait: AtomicU64,
    wait_seq: AtomicU32,
    queued: AtomicU64,
    freed: AtomicU64,
    freeing: AtomicBool,
}

impl DeferredSlabs {
    /// Slabs queued so far.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Slabs freed so far (a prefix of the queued ones).
    pub(crate) fn freed(&self) -> u64 {
        self.freed.load(Ordering::Acquire)
    }
}

impl<P: Platform> Kmem<P> {
    /// Queues an empty slab of a `SLAB_TYPESAFE_BY_RCU` cache (no longer `PG_slab`, on no
    /// list, its accounting undone) to be freed after a grace period.
    pub(crate) fn rcu_defer_slab(&self, pfn: Pfn) {
        let cpu = self.platform().current_cpu().index().min(self.nr_cpus() - 1);
        let d = &self.rcu_cpu(cpu).slabs;
        let Some(page) = self.memmap().page(pfn) else { return };
        let _g = d.lock.lock_irqsave(self.platform());
        page.set_data(d.next.load(Ordering::Relaxed));
        d.next.store(pfn.as_usize() as u64 + 1, Ordering::Relaxed);
        d.queued.fetch_add(1, Ordering::Release);
    }

    /// Deferred slabs queued so far, every CPU.
    pub(crate) fn rcu_slabs_queued(&self) -> u64 {
        (0..self.nr_cpus()).map(|c| self.rcu_cpu(c).slabs.queued()).sum()
    }

    /// Deferred slabs freed so far, every CPU.
    pub(crate) fn rcu_slabs_freed(&self) -> u64 {
        (0..self.nr_cpus()).map(|c| self.rcu_cpu(c).slabs.freed()).sum()
    }

    /// Frees the deferred slabs whose grace period has ended, and asks for a grace period
    /// for the newer ones, on every CPU.
    pub(crate) fn rcu_free_slabs(&self) {
        for cpu in 0..self.nr_cpus() {
            self.rcu_free_slabs_of(cpu);
        }
    }

    fn rcu_free_slabs_of(&self, cpu: usize) {
        let gp = &self.rcu_state().gp;
        let d = &self.rcu_cpu(cpu).slabs;
        if d.queued() == d.freed() {
            return;
        }
        let mut batch = 0u64;
        {
            let _g = d.lock.lock_irqsave(self.platform());
            let wait = d.wait.load(Ordering::Relaxed);
            if wait != 0 && gp.done(d.wait_seq.load(Ordering::Relaxed)) && !d.freeing.load(Ordering::Relaxed) {
                batch = wait;
                d.wait.store(0, Ordering::Relaxed);
                d.freeing.store(true, Ordering::Relaxed);
            }
            if d.wait.load(Ordering::Relaxed) == 0 && d.next.load(Ordering::Relaxed) != 0 {
                d.wait.store(d.next.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                let s = gp.snap();
                d.wait_seq.store(s, Ordering::Relaxed);
                gp.request(s);
            }
        }
        if batch == 0 {
            return;
        }
        while batch != 0 {
            let pfn = Pfn::new(batch as usize - 1);
            let Some(page) = self.memmap().page(pfn) else { break };
            batch = page.data();
            page.set_data(0);
            let order = page.alloc_order().unwrap_or(0);
            // SAFETY: the slab was discarded by its cache (`discard_slab`), linked only here,
            // and its grace period has ended: no reader can still reach its memory.
            unsafe { self.__free_pages(PageRef::new(pfn, page), Order::of(order as u32)) };
            d.freed.fetch_add(1, Ordering::Release);
        }
        d.freeing.store(false, Ordering::Release);
    }
}
