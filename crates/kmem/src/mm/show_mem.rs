//! `warn_alloc()` and `show_free_areas()`: the report Linux prints when an allocation fails.

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::{Order, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::zone::{Wmark, Zone};
use crate::mm::zone_type::Migratetype;
use crate::platform::{Platform, ReportKind};

const fn kb(pages: usize) -> usize {
    pages * (PAGE_SIZE / 1024)
}

impl<P: Platform> Kmem<P> {
    /// `warn_alloc()`: `<comm>: page allocation failure: order:N, mode:0x..(...), nodemask=(null)`
    /// followed by the task line and `Mem-Info`.
    pub(crate) fn warn_alloc(&self, gfp: Gfp, order: u32) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        self.report(ReportKind::PageAllocFailure, &|w| {
            writeln!(
                w,
                "{}: page allocation failure: order:{order}, mode:{:#x}({:#}), nodemask=(null)",
                task.comm(),
                gfp.bits(),
                gfp
            )?;
            writeln!(w, "CPU: {cpu} PID: {} Comm: {}", task.pid, task.comm())?;
            self.show_free_areas(w)
        });
    }

    /// `__show_mem()`: `show_free_areas()`, then the page totals (`pages RAM`,
    /// `pages HighMem/MovableOnly`, `pages reserved`).
    pub fn show_mem(&self, w: &mut dyn Write) -> fmt::Result {
        self.show_free_areas(w)?;
        let present: usize = self.zones().map(Zone::present_pages).sum();
        let managed: usize = self.zones().map(Zone::managed_pages).sum();
        let high: usize = self
            .zones()
            .filter(|z| matches!(z.zone_type(), crate::ZoneType::HighMem | crate::ZoneType::Movable))
            .map(Zone::present_pages)
            .sum();
        writeln!(w, "{present} pages RAM")?;
        writeln!(w, "{high} pages HighMem/MovableOnly")?;
        writeln!(w, "{} pages reserved", present.saturating_sub(managed))
    }

    /// `show_free_areas()` (the `Mem-Info:` block), the parts kmem has counters for.
    pub fn show_free_areas(&self, w: &mut dyn Write) -> fmt::Result {
        writeln!(w, "Mem-Info:")?;
        let free: usize = self.zones().map(Zone::free_pages).sum();
        let free_pcp: usize = self.zones().map(Zone::pcp_pages).sum();
        writeln!(w, "active_anon:0 inactive_anon:0 isolated_anon:0")?;
        writeln!(w, " active_file:0 inactive_file:0 isolated_file:0")?;
        writeln!(w, " unevictable:0 dirty:0 writeback:0")?;
        writeln!(w, " slab_reclaimable:0 slab_unreclaimable:0")?;
        writeln!(w, " mapped:0 shmem:0 pagetables:0")?;
        writeln!(w, " sec_pagetables:0 bounce:0")?;
        writeln!(w, " kernel_misc_reclaimable:0")?;
        writeln!(w, " free:{free} free_pcp:{free_pcp} free_cma:0")?;
        let layout = *self.layout();
        for z in self.zones().filter(|z| z.is_populated()) {
            write!(
                w,
                "Node {} {} free:{}kB boost:0kB min:{}kB low:{}kB high:{}kB reserved_highatomic:{}KB free_highatomic:{}KB \
                 active_anon:0kB inactive_anon:0kB active_file:0kB inactive_file:0kB unevictable:0kB writepending:0kB \
                 present:{}kB managed:{}kB mlocked:0kB bounce:0kB free_pcp:{}kB local_pcp:{}kB free_cma:0kB\nlowmem_reserve[]:",
                z.node(),
                z.name(),
                kb(z.free_pages()),
                kb(z.wmark(Wmark::Min)),
                kb(z.wmark(Wmark::Low)),
                kb(z.wmark(Wmark::High)),
                kb(z.area.nr_reserved_highatomic()),
                kb(z.area.nr_free_highatomic()),
                kb(z.present_pages()),
                kb(z.managed_pages()),
                kb(z.pcp_pages()),
                kb(z.pageset(self.platform().current_cpu().index()).map_or(0, |p| p.count())),
            )?;
            for zt in layout.zone_types() {
                write!(w, " {}", z.lowmem_reserve(zt))?;
            }
            writeln!(w)?;
        }
        for z in self.zones().filter(|z| z.is_populated()) {
            write!(w, "Node {} {}: ", z.node(), z.name())?;
            let mut total = 0;
            for o in Order::all() {
                let n = z.area.nr_free(o);
                total += n * o.nr_pages();
                write!(w, "{n}*{}kB ", kb(o.nr_pages()))?;
                if n != 0 {
                    w.write_char('(')?;
                    for mt in Migratetype::ALL.iter().filter(|&&mt| z.area.nr_free_mt(o, mt) != 0) {
                        w.write_char(mt.letter())?;
                    }
                    w.write_str(") ")?;
                }
            }
            writeln!(w, "= {}kB", kb(total))?;
        }
        Ok(())
    }
}
