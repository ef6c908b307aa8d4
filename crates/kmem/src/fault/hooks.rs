//! The two hooks (`should_failslab`, `should_fail_alloc_page`) and `fail_dump()`.
//!
//! Each hook is an inline test of its armed flag (false when nothing is armed; the fast
//! paths never get here then, see the module docs) and a cold decision: the capability's
//! filters in Linux's order, then [`FaultAttr::should_fail`] with the task's state.

#![forbid(unsafe_code)]

use core::panic::Location;

use super::attr::{FaultAttr, Injected};
use super::FaultState;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{Platform, ReportKind};
use crate::slab::registry::BOOT_CACHE_ID;
use crate::slab::{KmemCache, SlabFlags};
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// `should_failslab(s, gfp)`, from `slab_pre_alloc_hook`. `caller`: the allocation's call
    /// site, for the `verbose` 2 trace.
    #[inline]
    pub(crate) fn should_failslab(&self, s: &KmemCache, gfp: Gfp, caller: &'static Location<'static>) -> bool {
        self.state().fault.slab_armed.load(Ordering::Relaxed) && self.should_failslab_armed(s, gfp, caller)
    }

    #[cold]
    #[inline(never)]
    fn should_failslab_armed(&self, s: &KmemCache, gfp: Gfp, caller: &'static Location<'static>) -> bool {
        let Some(fs) = self.fault_state() else { return false };
        let f = &fs.failslab;
        // No fault injection for the bootstrap cache.
        if s.id == BOOT_CACHE_ID || gfp.contains(Gfp::NOFAIL) {
            return false;
        }
        if f.ignore_gfp_reclaim.load(Ordering::Relaxed) && gfp.contains(Gfp::DIRECT_RECLAIM) {
            return false;
        }
        if f.cache_filter.load(Ordering::Relaxed) && !s.layout.flags.contains(SlabFlags::FAILSLAB) {
            return false;
        }
        self.should_fail_ex(fs, &f.attr, "failslab", s.object_size() as i64, gfp, Some(caller))
    }

    /// `should_fail_alloc_page(gfp, order)`, from `prepare_alloc_pages`.
    #[inline]
    pub(crate) fn should_fail_alloc_page(&self, gfp: Gfp, order: u32) -> bool {
        self.state().fault.page_armed.load(Ordering::Relaxed) && self.should_fail_alloc_page_armed(gfp, order)
    }

    #[cold]
    #[inline(never)]
    fn should_fail_alloc_page_armed(&self, gfp: Gfp, order: u32) -> bool {
        let Some(fs) = self.fault_state() else { return false };
        let f = &fs.page;
        if order < f.min_order.load(Ordering::Relaxed) || gfp.contains(Gfp::NOFAIL) {
            return false;
        }
        if f.ignore_gfp_highmem.load(Ordering::Relaxed) && gfp.contains(Gfp::HIGHMEM) {
            return false;
        }
        if f.ignore_gfp_reclaim.load(Ordering::Relaxed) && gfp.contains(Gfp::DIRECT_RECLAIM) {
            return false;
        }
        self.should_fail_ex(fs, &f.attr, "fail_page_alloc", 1i64 << order, gfp, None)
    }

    /// `should_fail_ex(attr, size, flags)` with the current task's state; prints unless
    /// `__GFP_NOWARN` (`FAULT_NOWARN`).
    fn should_fail_ex(
        &self,
        fs: &FaultState,
        attr: &FaultAttr,
        name: &str,
        size: i64,
        gfp: Gfp,
        caller: Option<&'static Location<'static>>,
    ) -> bool {
        let in_task = !self.platform().in_interrupt();
        let before = self.task_fault();
        let mut task = before;
        let got = attr.should_fail(size, &mut task, in_task);
        if task != before {
            self.set_task_fault(fs, task);
            if task.fail_nth == 0 {
                self.fail_nth_fired(fs);
            }
        }
        let Some(inj) = got else { return false };
        if !gfp.contains(Gfp::NOWARN) && inj.verbose > 0 {
            self.fail_dump(name, inj, caller);
        }
        true
    }

    /// `fail_dump()`: Linux's two lines, and with `verbose` 2 a `dump_stack()`-shaped trace.
    #[cold]
    fn fail_dump(&self, name: &str, inj: Injected, caller: Option<&'static Location<'static>>) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        let hook = if name == "failslab" { "should_failslab" } else { "should_fail_alloc_page" };
        self.report(ReportKind::Info, &|w| {
            writeln!(w, "FAULT_INJECTION: forcing a failure.")?;
            writeln!(
                w,
                "name {name}, interval {}, probability {}, space {}, times {}",
                inj.interval, inj.probability, inj.space, inj.times
            )?;
            if inj.verbose > 1 {
                writeln!(w, "CPU: {cpu} UID: 0 PID: {} Comm: {} Not tainted kmem", task.pid, task.comm())?;
                writeln!(w, "Call Trace:")?;
                writeln!(w, " <TASK>")?;
                writeln!(w, " dump_stack_lvl")?;
                writeln!(w, " should_fail_ex")?;
                writeln!(w, " {hook}")?;
                if let Some(c) = caller {
                    writeln!(w, " {}:{}", c.file(), c.line())?;
                }
                writeln!(w, " </TASK>")?;
            }
            Ok(())
        });
    }
}
