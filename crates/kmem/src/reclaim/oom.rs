//! The OOM path (`mm/oom_kill.c`): OOM notifiers, and the `out of memory` report.
//!
//! kmem has no processes to kill. `out_of_memory()` calls the registered OOM notifiers (a
//! kernel using kmem decides what to free: Linux's `register_oom_notifier`); if they report
//! pages freed, the allocation retries. Otherwise kmem reports what Linux reports when it
//! finds no victim (`dump_header` and `Out of memory and no killable processes...`), as a
//! [`ReportKind::Oom`] report, and the allocation fails where Linux would panic.

#![forbid(unsafe_code)]

use core::fmt;

use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{Platform, ReportKind};
use crate::reclaim::OpsCells;
use crate::sync::{array_of, AtomicU32, Ordering, RawSpinLock};

/// Slots in a machine's OOM-notifier table.
pub const MAX_OOM_NOTIFIERS: usize = 16;

/// Why an OOM notifier could not be registered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OomNotifierError {
    /// Every slot of the chain is taken.
    TableFull,
    /// The table could not be allocated (the first registration allocates it).
    NoMemory,
}

impl fmt::Display for OomNotifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OomNotifierError::TableFull => write!(f, "OOM notifier chain full ({MAX_OOM_NOTIFIERS} notifiers)"),
            OomNotifierError::NoMemory => f.write_str("no memory for the OOM notifier chain"),
        }
    }
}

/// An OOM notifier (`register_oom_notifier`'s `notifier_block`): called when an allocation
/// is about to fail for want of memory, with no kmem lock held. Returns the pages it freed.
pub trait OomNotifier: Sync {
    /// Frees what it can; returns how many pages.
    fn notify(&self, gfp: Gfp, order: u32) -> usize;
}

const FREE: u32 = 0;
const REGISTERED: u32 = 1;

/// The machine's OOM notifier chain.
pub(crate) struct OomTable {
    lock: RawSpinLock,
    state: [AtomicU32; MAX_OOM_NOTIFIERS],
    active: [AtomicU32; MAX_OOM_NOTIFIERS],
    ops: OpsCells<dyn OomNotifier, MAX_OOM_NOTIFIERS>,
}

impl fmt::Debug for OomTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OomTable").finish_non_exhaustive()
    }
}

impl OomTable {
    pub(crate) fn new() -> Self {
        Self {
            lock: RawSpinLock::new(),
            state: array_of!(AtomicU32::new(FREE); MAX_OOM_NOTIFIERS),
            active: array_of!(AtomicU32::new(0); MAX_OOM_NOTIFIERS),
            ops: OpsCells::new(),
        }
    }
}

/// A registered OOM notifier; dropping it (or [`Kmem::unregister_oom_notifier`]) unregisters
/// it and waits for a call in flight to end.
pub struct OomNotifierHandle<'m, P: Platform> {
    kmem: &'m Kmem<P>,
    table: &'m OomTable,
    slot: usize,
}

impl<P: Platform> fmt::Debug for OomNotifierHandle<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OomNotifierHandle").field("slot", &self.slot).finish()
    }
}

impl<P: Platform> Drop for OomNotifierHandle<'_, P> {
    fn drop(&mut self) {
        let t = self.table;
        let g = t.lock.lock_irqsave(self.kmem.platform());
        t.state[self.slot].store(FREE, Ordering::Release);
        t.ops.set(&g, self.slot, None);
        drop(g);
        while t.active[self.slot].load(Ordering::Acquire) != 0 {
            self.kmem.platform().cpu_relax();
        }
    }
}

/// A call in flight: the slot's count, dropped when the call ends.
struct Active<'a>(&'a AtomicU32);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl<P: Platform> Kmem<P> {
    /// `register_oom_notifier(nb)`.
    pub fn register_oom_notifier(
        &self,
        nb: &'static dyn OomNotifier,
    ) -> Result<OomNotifierHandle<'_, P>, OomNotifierError> {
        let t = &self.reclaim_tables_or_alloc().ok_or(OomNotifierError::NoMemory)?.oom;
        let g = t.lock.lock_irqsave(self.platform());
        let Some(i) = t.state.iter().position(|s| s.load(Ordering::Relaxed) == FREE) else {
            return Err(OomNotifierError::TableFull);
        };
        t.ops.set(&g, i, Some(nb));
        t.state[i].store(REGISTERED, Ordering::Release);
        drop(g);
        Ok(OomNotifierHandle { kmem: self, table: t, slot: i })
    }

    /// `unregister_oom_notifier(nb)`.
    pub fn unregister_oom_notifier(&self, h: OomNotifierHandle<'_, P>) {
        drop(h);
    }

    /// `blocking_notifier_call_chain(&oom_notify_list, 0, &freed)`: pages the notifiers freed.
    pub(crate) fn oom_notify(&self, gfp: Gfp, order: u32) -> usize {
        let Some(t) = self.reclaim_tables().map(|t| &t.oom) else { return 0 };
        let mut freed = 0;
        for i in 0..MAX_OOM_NOTIFIERS {
            if t.state[i].load(Ordering::Acquire) != REGISTERED {
                continue;
            }
            let g = t.lock.lock_irqsave(self.platform());
            let nb = t.ops.get(&g, i);
            if nb.is_some() {
                t.active[i].fetch_add(1, Ordering::Relaxed);
            }
            drop(g);
            if let Some(nb) = nb {
                // Dropped after the call, even if the notifier panics.
                let _active = Active(&t.active[i]);
                freed = nb.notify(gfp, order).saturating_add(freed);
            }
        }
        self.count_reclaim(|e| &e.oom_notifier_freed, freed as u64);
        freed
    }

    /// `out_of_memory()` without a victim to choose: true if the notifiers freed memory (the
    /// caller retries). Otherwise the `out of memory` report, unless `__GFP_NOWARN`.
    pub(crate) fn out_of_memory(&self, gfp: Gfp, order: u32) -> bool {
        if self.oom_notify(gfp, order) > 0 {
            return true;
        }
        self.count_reclaim(|e| &e.oom, 1);
        if !gfp.contains(Gfp::NOWARN) {
            self.oom_report(gfp, order);
        }
        false
    }

    /// `dump_header()` and the no-victim line, as Linux 6.18 prints them.
    #[cold]
    fn oom_report(&self, gfp: Gfp, order: u32) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        self.report(ReportKind::Oom, &|w| {
            writeln!(
                w,
                "{} invoked oom-killer: gfp_mask={:#x}({:#}), order={order}, oom_score_adj=0",
                task.comm(),
                gfp.bits(),
                gfp
            )?;
            writeln!(w, "CPU: {cpu} PID: {} Comm: {}", task.pid, task.comm())?;
            self.show_mem(w)?;
            writeln!(w, "Tasks state (memory values in pages):")?;
            writeln!(
                w,
                "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name"
            )?;
            writeln!(w, "Out of memory and no killable processes...")
        });
    }
}
