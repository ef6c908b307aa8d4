//! Per-CPU callback lists (Linux's `struct rcu_segcblist`, simplified to two segments) and
//! their processing (`rcu_do_batch`).
//!
//! Each CPU has a list with a spinlock: `call_rcu` appends to the *next* segment of the list
//! of the CPU it runs on. Processing a list ([`Kmem::rcu_process_cpu`]) moves the *next*
//! segment into the *wait* segment when that is empty, tagging it with a grace-period
//! snapshot taken then (so every callback in it was queued before the snapshot), and takes
//! the *wait* segment out once its grace period has ended, to invoke it with no lock held.
//! One context at a time invokes a CPU's callbacks (`invoking`), so a CPU's callbacks run in
//! the order they were queued and `invoked` counts a prefix of `queued`: what `rcu_barrier`
//! waits on.
//!
//! The links live in the callers' [`RcuHead`]s (no allocation); the list words are atomics
//! written under the list's lock.

use core::ptr::NonNull;

use super::{RcuCallback, RcuHead};
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock};

/// Offsets below this in [`RcuHead`]'s function word mean "kvfree the object that starts
/// this many bytes before the head" (Linux's `__is_kvfree_rcu_offset`).
pub(crate) const KVFREE_OFFSET_LIMIT: usize = 4096;

/// One CPU's callbacks.
#[derive(Debug, Default)]
pub(crate) struct CbList {
    lock: RawSpinLock,
    wait_head: AtomicUsize,
    wait_tail: AtomicUsize,
    wait_seq: AtomicU32,
    next_head: AtomicUsize,
    next_tail: AtomicUsize,
    /// Callbacks queued so far (ever).
    queued: AtomicU64,
    /// Callbacks invoked so far (ever): a prefix of `queued`, in order.
    invoked: AtomicU64,
    /// A context is invoking this CPU's callbacks.
    invoking: AtomicBool,
    /// `kfree_rcu`'s block being filled on this CPU (its address, 0 for none; `kvfree.rs`).
    pub(crate) bulk: AtomicUsize,
}

impl CbList {
    /// The list's lock (also guards `bulk`).
    pub(crate) fn lock(&self) -> &RawSpinLock {
        &self.lock
    }

    /// Callbacks queued and not yet invoked.
    pub(crate) fn pending(&self) -> u64 {
        self.queued.load(Ordering::Acquire) - self.invoked.load(Ordering::Acquire)
    }

    /// Callbacks queued so far.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Callbacks invoked so far.
    pub(crate) fn invoked(&self) -> u64 {
        self.invoked.load(Ordering::Acquire)
    }
}

/// Pending callbacks on one CPU above which `call_rcu` processes callbacks itself (when it
/// may: not in atomic context). Linux's `qhimark` is 10000; kmem has no softirq to lean on.
pub const CALL_RCU_PROCESS_AT: u64 = 256;

impl<P: Platform> Kmem<P> {
    /// Appends `head` (with `func` already stored) to the current CPU's next segment.
    ///
    /// # Safety
    ///
    /// `head` is valid for writes and stays so, untouched by the caller, until its callback
    /// has been invoked.
    pub(crate) unsafe fn rcu_enqueue(&self, head: NonNull<RcuHead>) -> u64 {
        let p = self.platform();
        let h = head.as_ptr();
        // SAFETY: caller's contract: the head is ours until it is invoked.
        unsafe { (*h).next = core::ptr::null_mut() };
        let cpu = p.current_cpu().index().min(self.nr_cpus() - 1);
        let l = &self.rcu_cpu(cpu).cb;
        let _g = l.lock.lock_irqsave(p);
        let tail = l.next_tail.load(Ordering::Relaxed);
        if tail == 0 {
            l.next_head.store(h as usize, Ordering::Relaxed);
        } else {
            // SAFETY: `tail` is a head queued on this list (under its lock), which stays valid
            // until invoked; only this list's lock holders write its link.
            unsafe { (*(tail as *mut RcuHead)).next = h };
        }
        l.next_tail.store(h as usize, Ordering::Relaxed);
        l.queued.fetch_add(1, Ordering::Release);
        l.pending()
    }

    /// Processes CPU `cpu`'s list: advances its segments and invokes the callbacks whose
    /// grace period has ended. Call with no lock held, outside any read-side section.
    pub(crate) fn rcu_process_cpu(&self, cpu: usize) {
        let p = self.platform();
        let st = self.rcu_state();
        let l = &self.rcu_cpu(cpu).cb;
        if l.pending() == 0 {
            return;
        }
        let mut batch = 0usize;
        {
            let _g = l.lock.lock_irqsave(p);
            let wait = l.wait_head.load(Ordering::Relaxed);
            if wait != 0 && st.gp.done(l.wait_seq.load(Ordering::Relaxed)) && !l.invoking.load(Ordering::Relaxed) {
                batch = wait;
                l.invoking.store(true, Ordering::Relaxed);
                l.wait_head.store(0, Ordering::Relaxed);
                l.wait_tail.store(0, Ordering::Relaxed);
            }
            if l.wait_head.load(Ordering::Relaxed) == 0 {
                let next = l.next_head.load(Ordering::Relaxed);
                if next != 0 {
                    l.wait_head.store(next, Ordering::Relaxed);
                    l.wait_tail.store(l.next_tail.load(Ordering::Relaxed), Ordering::Relaxed);
                    l.next_head.store(0, Ordering::Relaxed);
                    l.next_tail.store(0, Ordering::Relaxed);
                    let s = st.gp.snap();
                    l.wait_seq.store(s, Ordering::Relaxed);
                    st.gp.request(s);
                }
            }
        }
        if batch == 0 {
            return;
        }
        while batch != 0 {
            let h = batch as *mut RcuHead;
            // SAFETY: `h` was queued by `rcu_enqueue` and is still valid: it is invoked only
            // here, once, by the one context that took its batch out of the list.
            let (next, func) = unsafe { ((*h).next as usize, (*h).func) };
            // SAFETY: as above; non-null.
            let head = unsafe { NonNull::new_unchecked(h) };
            // SAFETY: the grace period of the head's callback has ended, and its caller of
            // `call_rcu` handed us the head with this function.
            unsafe { self.rcu_invoke(head, func) };
            l.invoked.fetch_add(1, Ordering::Release);
            batch = next;
        }
        l.invoking.store(false, Ordering::Release);
    }

    /// Calls one callback: `func` is an [`RcuCallback<P>`] stored by `call_rcu`, or an offset
    /// below [`KVFREE_OFFSET_LIMIT`] stored by `kvfree_rcu`'s fallback.
    ///
    /// # Safety
    ///
    /// `head` is a queued head of this machine whose grace period has ended; `func` is what
    /// was stored with it.
    unsafe fn rcu_invoke(&self, head: NonNull<RcuHead>, func: *const ()) {
        let f = func as usize;
        if f < KVFREE_OFFSET_LIMIT {
            let obj = (head.as_ptr() as usize - f) as *const u8;
            // SAFETY: `kvfree_rcu` stored the offset of the head in the object it was asked to
            // free, whose grace period has now ended.
            unsafe { self.kvfree(obj) };
        } else {
            // SAFETY: `call_rcu::<P>` stored an `RcuCallback<P>` (a function pointer) as
            // `*const ()`, and this machine's lists only hold heads queued on it.
            let cb: RcuCallback<P> = unsafe { core::mem::transmute::<*const (), RcuCallback<P>>(func) };
            // SAFETY: the callback's contract (set by its caller of `call_rcu`): the grace
            // period has ended.
            unsafe { cb(self, head) };
        }
    }
}
