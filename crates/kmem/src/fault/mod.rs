//! Fault injection: Linux's `failslab` and `fail_page_alloc` (`mm/failslab.c`,
//! `mm/fail_page_alloc.c`, `lib/fault-inject.c`,
//! `Documentation/fault-injection/fault-injection.rst`).
//!
//! Each machine has two capabilities, each a [`FaultAttr`] (probability, interval, times,
//! space, verbose, task-filter) plus its own filters:
//! - **failslab** ([`Kmem::failslab`]): `ignore-gfp-wait` (default on: allocations that may
//!   sleep are not failed) and `cache-filter` (only caches created with `SLAB_FAILSLAB`).
//!   Its hook, `should_failslab`, runs in `slab_pre_alloc_hook` (the careful path of
//!   `kmem_cache_alloc`, kmalloc and `kmem_cache_alloc_bulk`); the boot cache of cache
//!   descriptors is never failed, as in Linux.
//! - **fail_page_alloc** ([`Kmem::fail_page_alloc`]): `ignore-gfp-wait` and
//!   `ignore-gfp-highmem` (both default on) and `min-order` (default 1). Its hook,
//!   `should_fail_alloc_page`, runs in `prepare_alloc_pages` (`mm/page_alloc.rs`), so it
//!   covers `alloc_pages*`, `__get_free_pages`, bulk allocation, new slabs and vmalloc pages.
//!
//! `__GFP_NOFAIL` is never failed. `__GFP_NOWARN` silences the message, which with `verbose`
//! 1 or 2 is Linux's (counted as [`crate::ReportKind::Info`]):
//!
//! ```text
//! FAULT_INJECTION: forcing a failure.
//! name failslab, interval 1, probability 100, space 0, times 1
//! ```
//!
//! followed, with `verbose` 2, by a `dump_stack()`-shaped header and call trace. An injected
//! failure returns [`crate::SlabAllocError::FaultInjected`] or
//! [`crate::AllocErrorKind::FaultInjected`] without the `page allocation failure` report,
//! as Linux returns NULL from `prepare_alloc_pages` before any warning.
//!
//! # fail-nth
//!
//! [`Kmem::set_fail_nth`] is `/proc/self/task/<tid>/fail-nth`: the N-th call of this task
//! that reaches a capability's decision (after that capability's own filters: set
//! `ignore-gfp-wait` off to count `GFP_KERNEL` calls) fails, whatever the attributes say;
//! [`Kmem::fail_nth`] reads 0 once it has. The state lives with the task, through
//! [`crate::Platform::task_fault`]: the hosted platform keeps it in a thread-local (per thread
//! and machine); a platform that keeps none (the default, e.g. `kmem-minimal`'s single
//! context) uses one cell in the machine for every caller.
//!
//! # Armed flags: the fast paths pay nothing
//!
//! Linux hides both hooks behind static keys. kmem's equivalent is a word the fast paths
//! already test:
//! - the order-0 page fast path tested `pcp_enabled`; it now tests `page_fast`, which is
//!   `pcp_enabled && !armed(fail_page_alloc)` (and not `init_on_alloc`, on a one-node
//!   machine);
//! - the slab fast paths (allocation, and free, which is not hooked but shares the check)
//!   compared the cache's machine word with the machine id; while failslab is armed the word
//!   carries an extra bit (`KmemCache::ARMED`), so the compare fails and the careful paths
//!   run; every other check of a cache's machine masks the bit.
//!
//! A capability is armed while its probability is non-zero or any task of the machine has a
//! fail-nth pending. Configuration calls ([`FailslabHandle`], [`FailPageAllocHandle`],
//! `set_fail_nth`, `set_pcp_enabled`) re-evaluate the flags under the fault lock and, when
//! failslab's changes, rewrite every cache's word under the slab list lock (a cache created
//! meanwhile takes the flag's value under that lock). Arming sends every allocation to the
//! careful paths, where the hooks are; disarming happens at the next configuration call (a
//! fail-nth that fires does not take locks to disarm; a thread that exits with a fail-nth
//! pending leaves its machine armed, which is slower, never wrong). With nothing armed the
//! fast paths run the same instructions as before (`scripts/cost_check.sh`).
//!
//! # Memory
//!
//! The machine state holds only the armed flags and the address of the rest (`cell.rs`):
//! the attributes, the fail-nth count and the fault lock are a kmalloc block allocated by the
//! first configuration call ([`Kmem::failslab`] and friends return [`FaultStateError`] if
//! that allocation fails) or by a boot option, and kept for the machine's life.
//!
//! Lock order: the fault lock, then the slab list lock; both leaves otherwise.
//!
//! ```
//! use kmem::{Gfp, Order, SlabAllocError};
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
//! let c = m.kmem_cache_create("fi_demo", 64, 0, kmem::SlabFlags::empty(), None).unwrap();
//! m.failslab().unwrap().set_ignore_gfp_wait(false);
//! m.failslab().unwrap().set_verbose(0);
//! let a = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
//! m.set_fail_nth(1).unwrap(); // the next allocation of this thread fails
//! assert_eq!(m.kmem_cache_alloc(&c, Gfp::KERNEL), Err(SlabAllocError::FaultInjected));
//! assert_eq!(m.fail_nth(), 0);
//! // SAFETY: `a` came from `c` and is unused.
//! unsafe { m.kmem_cache_free(&c, a) };
//! // fail_page_alloc from the boot string's syntax: every order >= 1 request may fail.
//! m.fail_page_alloc().unwrap().setup("1,100,0,1").unwrap();
//! m.fail_page_alloc().unwrap().set_verbose(0);
//! assert!(m.alloc_pages(Gfp::ATOMIC, Order::of(1)).is_err());
//! assert!(m.alloc_pages(Gfp::ATOMIC, Order::of(1)).is_ok()); // times was 1
//! # m.fail_page_alloc().unwrap().set_probability(0);
//! ```

mod attr;
mod cell;
mod handle;
mod hooks;
#[cfg(test)]
mod tests;

pub use attr::{FaultAttr, FaultParseError, TaskFault};
pub(crate) use cell::FaultCell;
pub use cell::FaultStateError;
pub use handle::{FailPageAllocHandle, FailslabHandle};

use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::KmemCache;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock, SpinGuard};

/// `failslab`: the attribute and the slab filters.
#[derive(Debug)]
pub(crate) struct Failslab {
    pub(crate) attr: FaultAttr,
    pub(crate) ignore_gfp_reclaim: AtomicBool,
    pub(crate) cache_filter: AtomicBool,
}

/// `fail_page_alloc`: the attribute and the page filters.
#[derive(Debug)]
pub(crate) struct FailPageAlloc {
    pub(crate) attr: FaultAttr,
    pub(crate) ignore_gfp_reclaim: AtomicBool,
    pub(crate) ignore_gfp_highmem: AtomicBool,
    pub(crate) min_order: AtomicU32,
}

/// A machine's fault-injection state, allocated on first configuration (`cell.rs`).
#[derive(Debug)]
pub(crate) struct FaultState {
    pub(crate) failslab: Failslab,
    pub(crate) page: FailPageAlloc,
    /// Tasks with a fail-nth pending (decremented when one fires or is cleared).
    nth_pending: AtomicUsize,
    /// The task state for platforms that keep none: bits 0..32 `fail_nth`, bit 32
    /// `make_it_fail`.
    task_cell: AtomicU64,
    /// Serialises re-arming (and `set_pcp_enabled`'s update of `page_fast`).
    lock: RawSpinLock,
}

impl FaultState {
    crate::sync::const_fn_unless_loom! {
        /// Linux's defaults: nothing armed, `ignore-gfp-wait` and `ignore-gfp-highmem` on,
        /// `min-order` 1.
        pub(crate) fn new() -> Self {
            Self {
                failslab: Failslab {
                    attr: FaultAttr::new(),
                    ignore_gfp_reclaim: AtomicBool::new(true),
                    cache_filter: AtomicBool::new(false),
                },
                page: FailPageAlloc {
                    attr: FaultAttr::new(),
                    ignore_gfp_reclaim: AtomicBool::new(true),
                    ignore_gfp_highmem: AtomicBool::new(true),
                    min_order: AtomicU32::new(1),
                },
                nth_pending: AtomicUsize::new(0),
                task_cell: AtomicU64::new(0),
                lock: RawSpinLock::new(),
            }
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// The `failslab` capability (`/sys/kernel/debug/failslab/`). The first configuration
    /// call of a machine allocates its fault-injection state (about 200 bytes, kmalloc).
    pub fn failslab(&self) -> Result<FailslabHandle<'_, P>, FaultStateError> {
        Ok(FailslabHandle { kmem: self, f: self.fault_state_init()? })
    }

    /// The `fail_page_alloc` capability (`/sys/kernel/debug/fail_page_alloc/`); see
    /// [`Kmem::failslab`].
    pub fn fail_page_alloc(&self) -> Result<FailPageAllocHandle<'_, P>, FaultStateError> {
        Ok(FailPageAllocHandle { kmem: self, f: self.fault_state_init()? })
    }

    /// Writes `/proc/self/task/<tid>/fail-nth`: the `n`-th call of the current task that
    /// reaches a capability's decision fails (0 cancels). See the module docs.
    pub fn set_fail_nth(&self, n: u32) -> Result<(), FaultStateError> {
        if n == 0 && self.fault_state().is_none() {
            return Ok(());
        }
        let f = self.fault_state_init()?;
        let mut t = self.task_fault();
        match (t.fail_nth, n) {
            (0, 1..) => {
                f.nth_pending.fetch_add(1, Ordering::Relaxed);
            }
            (1.., 0) => {
                f.nth_pending.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        t.fail_nth = n;
        self.set_task_fault(f, t);
        self.fault_rearm();
        Ok(())
    }

    /// Reads `/proc/self/task/<tid>/fail-nth`: 0 once the failure was injected (or none was
    /// asked for), else the calls left until it.
    pub fn fail_nth(&self) -> u32 {
        self.task_fault().fail_nth
    }

    /// Writes `/proc/self/make-it-fail` for the current task (what `task-filter` selects).
    pub fn set_make_it_fail(&self, on: bool) -> Result<(), FaultStateError> {
        let f = self.fault_state_init()?;
        let mut t = self.task_fault();
        t.make_it_fail = on;
        self.set_task_fault(f, t);
        Ok(())
    }

    /// The current task's fault state: the platform's, else the machine's one cell.
    pub(crate) fn task_fault(&self) -> TaskFault {
        self.platform().task_fault().unwrap_or_else(|| {
            let v = self.fault_state().map_or(0, |f| f.task_cell.load(Ordering::Relaxed));
            TaskFault { fail_nth: v as u32, make_it_fail: v >> 32 != 0 }
        })
    }

    pub(crate) fn set_task_fault(&self, f: &FaultState, t: TaskFault) {
        if !self.platform().set_task_fault(t) {
            let v = t.fail_nth as u64 | (t.make_it_fail as u64) << 32;
            f.task_cell.store(v, Ordering::Relaxed);
        }
    }

    /// Re-evaluates both armed flags and updates what the fast paths test (module docs).
    pub(crate) fn fault_rearm(&self) {
        let st = self.state();
        let Some(f) = self.fault_state() else {
            // Nothing ever configured: nothing armed.
            let pcp = st.pcp_enabled.load(Ordering::Relaxed);
            let fast = pcp && !self.want_init_on_alloc() && st.nr_nodes == 1 && st.has_fast_zone();
            st.page_fast.store(fast, Ordering::Relaxed);
            st.set_page_free_fast(pcp && !self.want_init_on_free());
            return;
        };
        let p = self.platform();
        let g = f.lock.lock_irqsave(p);
        let nth = f.nth_pending.load(Ordering::Relaxed) > 0;
        let page = nth || f.page.attr.probability() > 0;
        // init_on_alloc / init_on_free (`mm/meminit.rs`) keep every cache on its careful path.
        let meminit = self.want_init_on_alloc() || self.want_init_on_free();
        let slab = nth || f.failslab.attr.probability() > 0 || meminit;
        st.fault.page_armed.store(page, Ordering::Relaxed);
        let pcp = st.pcp_enabled.load(Ordering::Relaxed);
        let fast = pcp && !page && !self.want_init_on_alloc() && st.nr_nodes == 1 && st.has_fast_zone();
        st.page_fast.store(fast, Ordering::Relaxed);
        st.set_page_free_fast(pcp && !self.want_init_on_free());
        if st.fault.slab_armed.swap(slab, Ordering::Relaxed) != slab {
            self.rekey_caches();
        }
        drop(g);
    }

    /// Whether the caches' machine words carry [`KmemCache::ARMED`]: failslab is armed, or
    /// KFENCE wants the next allocation (`kfence_force_next`).
    pub(crate) fn caches_armed(&self) -> bool {
        let st = self.state();
        st.fault.slab_armed.load(Ordering::Relaxed)
            || self.kfence_pool().is_some_and(|k| k.armed.load(Ordering::Relaxed))
    }

    /// Rewrites every cache's machine word for [`Kmem::caches_armed`], under the slab list
    /// lock (the armed state is read under it, so two callers cannot leave a stale word).
    pub(crate) fn rekey_caches(&self) {
        let sl = self.slab();
        let lg = sl.list_lock.lock_irqsave(self.platform());
        let armed = self.caches_armed();
        // Disarming gives no class entry back: each CPU fills its own on its next careful
        // allocation of the class (`fast_table.rs`).
        sl.for_each_locked(&lg, |c| self.set_machine_word(c, armed));
        if armed {
            self.fast_table_disarm_classes();
        }
        drop(lg);
    }

    /// Gives a cache just linked into the registry the key the armed flag asks for. `g` holds
    /// the slab list lock.
    pub(crate) fn failslab_key_locked(&self, g: &SpinGuard<'_, P>, c: &KmemCache) {
        debug_assert!(g.holds(&self.slab().list_lock));
        self.set_machine_word(c, self.caches_armed());
    }

    /// The cache's machine word: the machine id, with [`KmemCache::ARMED`] while failslab is
    /// armed (the fast paths compare the whole word, everything else masks the bit).
    fn set_machine_word(&self, c: &KmemCache, armed: bool) {
        let id = self.machine_id();
        c.machine.store(if armed { id | KmemCache::ARMED } else { id }, Ordering::Relaxed);
    }

    /// The `failslab=` and `fail_page_alloc=` boot options (`setup_fault_attr`), applied once
    /// the slab allocator runs (the state is a kmalloc block). A bad string is reported
    /// (`FAULT_INJECTION: failed to parse arguments`, a `Warning`) and ignored.
    pub(crate) fn setup_fault_attrs(
        &self,
        failslab: Option<&str>,
        fail_page_alloc: Option<&str>,
    ) -> Result<(), FaultStateError> {
        if failslab.is_none() && fail_page_alloc.is_none() {
            return Ok(());
        }
        let f = self.fault_state_init()?;
        for (attr, opt) in [(&f.failslab.attr, failslab), (&f.page.attr, fail_page_alloc)] {
            if let Some(Err(e)) = opt.map(|s| attr.setup(s)) {
                self.report(crate::platform::ReportKind::Warning, &|w| writeln!(w, "{e}"));
            }
        }
        self.fault_rearm();
        Ok(())
    }

    /// A fail-nth reached 0 in a decision: one task fewer has one pending.
    pub(crate) fn fail_nth_fired(&self, f: &FaultState) {
        f.nth_pending.fetch_sub(1, Ordering::Relaxed);
    }
}
