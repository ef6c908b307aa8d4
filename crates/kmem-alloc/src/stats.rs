//! `KMEM_STATS=1`: at process exit, the global machine's slab caches on stderr, each cache
//! that served anything with its `/proc/slabinfo` counts and its SLUB statistics (Linux's
//! `/sys/kernel/slab/<cache>/<stat>` names: `alloc_slowpath`, `sheaf_flush`, `barn_get`, ...),
//! what glibc's `MALLOC_STATS`-style knobs give: where a program's allocations went (sheaves,
//! barns, slabs) without a profiler. Read once, when the first allocation boots the machine.

use std::fmt::Write as _;
use std::io::Write as _;

use kmem::slab::SlubStat;
use kmem_hosted::Machine;

/// Registers the exit report if `KMEM_STATS` is set (and not `0`).
pub(crate) fn register_if_asked() {
    if std::env::var_os("KMEM_STATS").is_some_and(|v| v != "0") {
        extern "C" fn at_exit() {
            if let Some(m) = crate::global::booted() {
                let _ = std::io::stderr().write_all(report(m).as_bytes());
            }
        }
        // SAFETY: a handler that lives as long as the process.
        unsafe { libc::atexit(at_exit) };
    }
}

/// Bytes the report may take: it is written while the cache registry is held, where it
/// must not allocate (a `GFP_KERNEL` allocation under that lock is a `BUG: sleeping
/// function called from invalid context`), so into a buffer reserved before.
const REPORT_BYTES: usize = 64 << 10;

/// The report: one line per cache with any statistic, `name active_objs=N num_objs=N
/// stat=N ...`; lines that would not fit [`REPORT_BYTES`] are left out.
pub fn report(m: &Machine) -> String {
    let mut out = String::with_capacity(REPORT_BYTES);
    out.push_str("kmem: slab statistics (KMEM_STATS)\n");
    let mut line = String::with_capacity(1024);
    m.for_each_cache(|c| {
        line.clear();
        let info = kmem::proc::slab_info(m, c);
        let _ = write!(line, "{:<20} active_objs={} num_objs={}", c.name(), info.active_objs, info.num_objs);
        let mut any = false;
        for &(s, name) in SlubStat::ALL.iter() {
            let v = c.stat(m, s);
            if v != 0 && line.len() + 48 < line.capacity() {
                let _ = write!(line, " {name}={v}");
                any = true;
            }
        }
        if any && out.len() + line.len() < out.capacity() {
            out.push_str(&line);
            out.push('\n');
        }
    });
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_names_the_caches_that_served() {
        let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
        let ps: Vec<_> = (0..500).map(|_| m.kmalloc(64, kmem::Gfp::KERNEL).unwrap()).collect();
        for p in ps {
            // SAFETY: ours, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
        let r = super::report(&m);
        let line = r.lines().find(|l| l.starts_with("kmalloc-64 ")).unwrap_or_else(|| panic!("{r}"));
        assert!(line.contains("alloc_slowpath="), "{line}");
        assert!(line.contains("sheaf_refill=") || line.contains("alloc_slab="), "{line}");
    }
}
