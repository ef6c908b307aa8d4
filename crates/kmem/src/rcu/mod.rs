//! RCU: read-copy-update for a non-preemptible kernel (Linux `kernel/rcu/`, the `TINY_RCU` /
//! `TREE_RCU` API without the tree), and the RCU-deferred freeing built on it
//! (`kfree_rcu`, `SLAB_TYPESAFE_BY_RCU`).
//!
//! # Read side
//!
//! [`Kmem::rcu_read_lock`] / [`Kmem::rcu_read_unlock`] (or the guard [`Kmem::rcu_read`]) make
//! a read-side critical section: a preempt-off section on the platform
//! (`Platform::preempt_disable_cpu`), which keeps the reader on its CPU, plus a raise of that
//! CPU's reader word (`gp.rs`). Sections nest; nothing inside may sleep. An unlock without a
//! lock is reported as lockdep reports it (`WARNING: bad unlock balance detected!`) and
//! changes nothing.
//!
//! # Grace periods
//!
//! A grace period ends once every CPU has passed a quiescent state: it was outside any
//! read-side section when the grace period began, or has left the section it was in since
//! (`gp.rs` explains the detection and its memory ordering; a loom model checks it). No
//! platform support is needed beyond the preempt-off section: the reader owns its CPU, so the
//! CPU's word in the machine state says what it is doing.
//!
//! # Callbacks and where they run
//!
//! [`Kmem::call_rcu`] queues a caller-embedded [`RcuHead`] (Linux's `struct rcu_head`; kmem
//! allocates nothing) on the current CPU's list (`callbacks.rs`). Linux invokes callbacks
//! from `RCU_SOFTIRQ`; kmem has no softirq, so callbacks run at these *processing points*,
//! always with no kmem lock held and never inside a read-side section (never in atomic
//! context at all):
//! - [`Kmem::rcu_poll`] (Linux's `rcu_core`): advances the grace period, invokes every ready
//!   callback, hands the filled and partly filled `kfree_rcu` blocks to the grace period, and
//!   frees `SLAB_TYPESAFE_BY_RCU` slab pages whose grace period has ended. Platforms call it
//!   from a housekeeping thread or timer (kmem-hosted: each kswapd thread when woken); tests
//!   call it directly;
//! - [`Kmem::call_rcu`], when its CPU has [`CALL_RCU_PROCESS_AT`] callbacks pending and the
//!   caller may sleep (a soft `qhimark`);
//! - [`Kmem::synchronize_rcu`] and [`Kmem::rcu_barrier`], which poll while they wait.
//!
//! A caller that only ever queues from atomic context must give the machine a processing
//! point (`rcu_poll`), as a kernel must run its softirqs.
//!
//! # Deferred freeing
//!
//! - `kfree_rcu`, `kvfree_rcu`, `kfree_rcu_mightsleep`, `kvfree_rcu_barrier` (`kvfree.rs`,
//!   Linux `mm/slab_common.c`'s kvfree_rcu bulk path): pointers go into per-CPU blocks (pages
//!   from the buddy allocator), freed in bulk after a grace period.
//! - `SLAB_TYPESAFE_BY_RCU` (`slabs.rs`): a cache's empty slabs wait a grace period before
//!   their pages go back to the page allocator (`rcu_free_slab`).
//!
//! # Notes and missing features
//! - No Tree RCU, no expedited grace periods (`synchronize_rcu_expedited` is
//!   `synchronize_rcu`), no SRCU, no preemptible-RCU flavour, no stall warnings, no
//!   callback offloading.
//! - `kmem_cache_destroy` waits for every pending `kfree_rcu` of the machine
//!   (`kvfree_rcu_barrier`), not only its cache's (Linux 6.18's
//!   `kvfree_rcu_barrier_on_cache` narrows it).

use core::ptr::NonNull;

use crate::gfp::Gfp;
use crate::machine::{Kmem, NR_CPUS};
use crate::platform::{Platform, ReportKind};
use crate::sync::Ordering;

mod callbacks;
mod gp;
mod kvfree;
pub use kvfree::BLOCK_PTRS;
#[cfg(all(test, loom))]
mod loom_tests;
mod slabs;

pub use callbacks::CALL_RCU_PROCESS_AT;
pub(crate) use slabs::DeferredSlabs;

/// Linux's `struct rcu_head`: two words the caller embeds in the object a callback is about,
/// linked on a CPU's list until the callback runs.
#[repr(C)]
#[derive(Debug)]
pub struct RcuHead {
    next: *mut RcuHead,
    func: *const (),
}

impl RcuHead {
    /// An unqueued head.
    pub const fn new() -> Self {
        Self { next: core::ptr::null_mut(), func: core::ptr::null() }
    }
}

impl Default for RcuHead {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a head is two words that only the RCU engine reads and writes while it is queued
// (under the CPU list's lock, or by the one context invoking it); the pointers are links, not
// shared data.
unsafe impl Send for RcuHead {}
// SAFETY: as for Send.
unsafe impl Sync for RcuHead {}

/// An RCU callback (`rcu_callback_t`), called with the machine that queued it.
///
/// # Safety
///
/// Called once, after a grace period that began after `call_rcu`, with the head given to it.
pub type RcuCallback<P> = unsafe fn(&Kmem<P>, NonNull<RcuHead>);

/// A grace-period cookie (`get_state_synchronize_rcu`'s `unsigned long`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcuCookie(u32);

/// Counters of the RCU engine, for tests and `/proc`-style views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcuStats {
    /// Grace periods completed.
    pub completed: u64,
    /// Callbacks queued and not yet invoked, every CPU.
    pub pending_callbacks: u64,
    /// `SLAB_TYPESAFE_BY_RCU` slabs waiting for a grace period before their pages are freed.
    pub pending_slabs: u64,
    /// `kfree_rcu` block pages taken from the buddy allocator and not yet freed.
    pub kfree_blocks: u64,
}

/// The machine's RCU state (in `MachineState`, Linux's `rcu_state`): the grace-period
/// sequence, and where the per-CPU part ([`RcuCpu`], Linux's `rcu_data`) is: an area of the
/// per-CPU allocator's first chunk, allocated at the end of boot ([`Kmem::rcu_init`]).
#[derive(Debug, Default)]
pub(crate) struct RcuState {
    pub(crate) gp: gp::GpState,
    /// The per-CPU area's offset in the first chunk (`PercpuPtr::to_raw`), plus one; 0
    /// before `rcu_init`. (The machine state is kept small: see `gp::GpState`.)
    pcpu_off: crate::sync::AtomicU32,
}

/// One CPU's RCU state: its reader word and grace-period snapshot, its callback list, its
/// `SLAB_TYPESAFE_BY_RCU` slabs waiting for a grace period, its `kfree_rcu` block count.
/// All-zero bytes are its initial value (the per-CPU allocator hands out zeroed areas;
/// checked by a test against `Default`).
#[derive(Debug, Default)]
pub(crate) struct RcuCpu {
    pub(crate) gp: gp::GpCpu,
    pub(crate) cb: callbacks::CbList,
    pub(crate) slabs: DeferredSlabs,
    /// `kfree_rcu` block pages this CPU took and the callbacks have not freed yet (the
    /// machine's count is the wrapping sum: a block may be freed on another CPU).
    pub(crate) blocks: crate::sync::AtomicU64,
}

/// Bytes of the per-CPU allocator's first chunk each CPU gives RCU.
pub const RCU_PERCPU_BYTES: usize = core::mem::size_of::<RcuCpu>();

/// A read-side critical section: [`Kmem::rcu_read_lock`] until dropped.
#[must_use = "the read-side section ends when the guard is dropped"]
pub struct RcuReadGuard<'a, P: Platform> {
    kmem: &'a Kmem<P>,
}

impl<P: Platform> Drop for RcuReadGuard<'_, P> {
    fn drop(&mut self) {
        self.kmem.rcu_read_unlock();
    }
}

impl<P: Platform> core::fmt::Debug for RcuReadGuard<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RcuReadGuard")
    }
}

impl<P: Platform> Kmem<P> {
    /// The RCU state.
    #[inline]
    pub(crate) fn rcu_state(&self) -> &RcuState {
        &self.state().rcu
    }

    /// Allocates the per-CPU part at the end of boot (`rcu_init`).
    pub(crate) fn rcu_init(&self) -> Result<(), crate::percpu::PercpuError> {
        let p = self.__alloc_percpu_gfp(RCU_PERCPU_BYTES, core::mem::align_of::<RcuCpu>(), Gfp::KERNEL)?;
        let (chunk, off) = p.to_raw();
        // At boot the first chunk has room: the area is there, so its offset names it.
        assert_eq!(chunk, self.state().percpu.first_chunk_addr(), "RCU's per-CPU area is in the first chunk");
        self.rcu_state().pcpu_off.store(off + 1, Ordering::Release);
        Ok(())
    }

    /// CPU `cpu`'s RCU state.
    #[inline]
    pub(crate) fn rcu_cpu(&self, cpu: usize) -> &RcuCpu {
        let off = self.rcu_state().pcpu_off.load(Ordering::Acquire);
        assert!(off != 0 && cpu < self.nr_cpus(), "RCU state of CPU {cpu} before rcu_init or beyond nr_cpus");
        let chunk = self.state().percpu.first_chunk_addr();
        let p = crate::percpu::PercpuPtr::from_raw(chunk, off - 1);
        // SAFETY: the area lives as long as the machine (never freed), `cpu` is below nr_cpus,
        // and each CPU's copy is zeroed memory (a valid `RcuCpu`) of the right size and
        // alignment, made of atomics and shared by reference only.
        unsafe { &*(self.per_cpu_ptr_unchecked(p, cpu) as *const RcuCpu) }
    }

    /// Drives the grace-period engine once over every CPU.
    pub(crate) fn rcu_advance(&self) {
        self.rcu_state().gp.advance(self.nr_cpus(), |i| &self.rcu_cpu(i).gp);
    }

    /// `rcu_read_lock()`: enters a read-side critical section (preemption off; nests). End it
    /// with [`Kmem::rcu_read_unlock`] on the same thread.
    #[inline]
    pub fn rcu_read_lock(&self) {
        let cpu = self.platform().preempt_disable_cpu();
        self.rcu_cpu(cpu.index()).gp.enter();
    }

    /// `rcu_read_unlock()`: leaves the innermost read-side section. Without one, reports
    /// `WARNING: bad unlock balance detected!` (lockdep's text) and changes nothing.
    #[inline]
    pub fn rcu_read_unlock(&self) {
        let p = self.platform();
        let held = p.preempt_count() != 0;
        let cpu = p.current_cpu().index();
        if !held || self.rcu_cpu(cpu).gp.exit().is_err() {
            self.rcu_unbalanced();
            return;
        }
        p.preempt_enable();
    }

    /// A read-side section that ends when the guard is dropped.
    ///
    /// ```
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// {
    ///     let _r = m.rcu_read();
    ///     assert!(m.rcu_read_lock_held());
    /// }
    /// m.synchronize_rcu(); // no reader left: returns after one grace period
    /// ```
    pub fn rcu_read(&self) -> RcuReadGuard<'_, P> {
        self.rcu_read_lock();
        RcuReadGuard { kmem: self }
    }

    /// `rcu_read_lock_held()`: the caller is inside a read-side section of this machine.
    pub fn rcu_read_lock_held(&self) -> bool {
        let p = self.platform();
        p.preempt_count() != 0 && self.rcu_cpu(p.current_cpu().index()).gp.depth() != 0
    }

    #[cold]
    fn rcu_unbalanced(&self) {
        let task = self.platform().current_task();
        self.report(ReportKind::Warning, &|w| {
            writeln!(w, "WARNING: bad unlock balance detected!")?;
            writeln!(w, "{}/{} is trying to release lock (rcu_read_lock) at:", task.comm(), task.pid)?;
            writeln!(w, "rcu_read_unlock")?;
            writeln!(w, "but there are no more locks to release!")
        });
    }

    /// `call_rcu(head, func)`: calls `func(self, head)` after a grace period, at one of the
    /// processing points (module docs). Callbacks queued on one CPU run in queueing order.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use core::sync::atomic::{AtomicUsize, Ordering};
    /// use kmem::{Kmem, RcuHead};
    /// use kmem_hosted::HostedPlatform;
    /// static RAN: AtomicUsize = AtomicUsize::new(0);
    /// unsafe fn done(_: &Kmem<HostedPlatform>, _: NonNull<RcuHead>) {
    ///     RAN.fetch_add(1, Ordering::Relaxed);
    /// }
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let mut head = Box::new(RcuHead::new());
    /// // SAFETY: the head outlives the callback (rcu_barrier below waits for it).
    /// unsafe { m.call_rcu(NonNull::from(&mut *head), done) };
    /// m.rcu_barrier();
    /// assert_eq!(RAN.load(Ordering::Relaxed), 1);
    /// ```
    ///
    /// # Safety
    ///
    /// `head` is valid for writes and is neither touched by the caller nor queued again until
    /// `func` runs; `func` may then do what its caller expects of a callback (free the object
    /// around `head`, say).
    pub unsafe fn call_rcu(&self, head: NonNull<RcuHead>, func: RcuCallback<P>) {
        // SAFETY: caller's contract.
        unsafe { (*head.as_ptr()).func = func as *const () };
        // SAFETY: caller's contract.
        unsafe { self.call_rcu_raw(head) };
    }

    /// Queues a head whose function word is set.
    ///
    /// # Safety
    ///
    /// As [`Kmem::call_rcu`].
    pub(crate) unsafe fn call_rcu_raw(&self, head: NonNull<RcuHead>) {
        // SAFETY: forwarded.
        let pending = unsafe { self.rcu_enqueue(head) };
        if pending >= CALL_RCU_PROCESS_AT && !self.platform().atomic_context() {
            self.rcu_poll();
        }
    }

    /// Processes RCU work (Linux's `rcu_core`, run from `RCU_SOFTIRQ`): advances the grace
    /// period, invokes ready callbacks, hands `kfree_rcu` blocks to the grace period and
    /// frees `SLAB_TYPESAFE_BY_RCU` slabs whose grace period has ended. Does nothing in atomic
    /// context (a read-side section included).
    pub fn rcu_poll(&self) {
        if self.platform().atomic_context() {
            return;
        }
        self.kvfree_rcu_flush_blocks();
        self.rcu_poll_callbacks();
    }

    fn rcu_poll_callbacks(&self) {
        self.rcu_advance();
        for cpu in 0..self.nr_cpus() {
            self.rcu_process_cpu(cpu);
        }
        self.rcu_advance();
        self.rcu_free_slabs();
    }

    /// Whether the caller may wait for a grace period; reports when it may not.
    fn rcu_may_wait(&self, func: &str) -> bool {
        let p = self.platform();
        if !p.atomic_context() {
            return true;
        }
        if self.rcu_read_lock_held() {
            self.warn_on(func, &|w| write!(w, "Illegal {func}() in RCU read-side critical section"));
        } else {
            self.might_sleep_report("kernel/rcu/tree.c");
        }
        false
    }

    /// `synchronize_rcu()`: returns once a full grace period has ended, so every read-side
    /// section that began before the call has ended. Must be called where sleeping is
    /// allowed; inside a read-side section it would wait for itself: that is reported
    /// (`Illegal synchronize_rcu() in RCU read-side critical section`) and returns at once.
    pub fn synchronize_rcu(&self) {
        if !self.rcu_may_wait("synchronize_rcu") {
            return;
        }
        let c = self.get_state_synchronize_rcu();
        self.rcu_wait(c);
    }

    /// `get_state_synchronize_rcu()`: a cookie for the grace period that must end before
    /// [`Kmem::poll_state_synchronize_rcu`] says true. Asks for that grace period.
    pub fn get_state_synchronize_rcu(&self) -> RcuCookie {
        let gp = &self.rcu_state().gp;
        let s = gp.snap();
        gp.request(s);
        RcuCookie(s)
    }

    /// `poll_state_synchronize_rcu()`: whether the grace period of `cookie` has ended
    /// (advances the engine first).
    pub fn poll_state_synchronize_rcu(&self, cookie: RcuCookie) -> bool {
        self.rcu_advance();
        self.rcu_state().gp.done(cookie.0)
    }

    /// `cond_synchronize_rcu()`: waits for `cookie`'s grace period unless it has ended.
    pub fn cond_synchronize_rcu(&self, cookie: RcuCookie) {
        if !self.poll_state_synchronize_rcu(cookie) && self.rcu_may_wait("cond_synchronize_rcu") {
            self.rcu_wait(cookie);
        }
    }

    fn rcu_wait(&self, cookie: RcuCookie) {
        loop {
            self.rcu_advance();
            if self.rcu_state().gp.done(cookie.0) {
                return;
            }
            self.platform().cpu_relax();
        }
    }

    /// `rcu_barrier()`: waits until every callback queued before the call has been invoked,
    /// and every `SLAB_TYPESAFE_BY_RCU` slab waiting for a grace period has been freed. Must
    /// be called where sleeping is allowed (reported and returns at once otherwise).
    pub fn rcu_barrier(&self) {
        if !self.rcu_may_wait("rcu_barrier") {
            return;
        }
        let nr = self.nr_cpus();
        let mut target = [0u64; NR_CPUS];
        for (cpu, t) in target.iter_mut().enumerate().take(nr) {
            *t = self.rcu_cpu(cpu).cb.queued();
        }
        let slabs = self.rcu_slabs_queued();
        loop {
            self.rcu_poll_callbacks();
            let cbs_done = (0..nr).all(|cpu| self.rcu_cpu(cpu).cb.invoked() >= target[cpu]);
            if cbs_done && self.rcu_slabs_freed() >= slabs {
                return;
            }
            self.platform().cpu_relax();
        }
    }

    /// The engine's counters.
    pub fn rcu_stats(&self) -> RcuStats {
        let st = self.rcu_state();
        RcuStats {
            completed: st.gp.completed(),
            pending_callbacks: (0..self.nr_cpus()).map(|c| self.rcu_cpu(c).cb.pending()).sum(),
            pending_slabs: self.rcu_slabs_queued() - self.rcu_slabs_freed(),
            kfree_blocks: (0..self.nr_cpus())
                .fold(0u64, |n, c| n.wrapping_add(self.rcu_cpu(c).blocks.load(Ordering::Relaxed))),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::RcuCpu;
    use crate::testing::std;

    #[test]
    fn the_initial_state_is_all_zero_bytes() {
        fn zero<T: Default + core::fmt::Debug>() {
            // SAFETY: `T` is made of atomics, locks (atomics) and integers: all-zero bytes
            // are a valid value of each (what the test then compares with `Default`).
            let zeroed: T = unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
            assert_eq!(
                std::format!("{zeroed:?}"),
                std::format!("{:?}", T::default()),
                "the per-CPU allocator zeroes RCU's area: zero must be its initial value"
            );
        }
        zero::<RcuCpu>();
    }
}
