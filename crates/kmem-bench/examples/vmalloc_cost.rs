//! Instruction cost of one `vmalloc(4096)` + `vfree` pair (one page), for callgrind, on the
//! hosted platform (a CPU-per-thread machine; its page-table operations are `mmap` calls on
//! the RAM memfd, whose kernel side callgrind does not count) or on the minimal one (one CPU,
//! sections a plain counter, software 4-level page tables: [`kmem_bench::minimal`]):
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example vmalloc_cost
//! valgrind --tool=callgrind --toggle-collect='*vmalloc_cost::pair*' target/perf/examples/vmalloc_cost minimal
//! ```
//! Total instructions collected divided by `ITERS` is the cost of one pair
//! (`scripts/cost_check.sh` does this for both platforms). The first pair (a new vmap area,
//! page tables) runs before and outside the collected function. `vfree` frees lazily, as
//! Linux's does: the purges that follow are part of the steady state and so of the count.

use kmem::{Kmem, Platform};
use kmem_hosted::MachineBuilder;

/// Pairs collected.
const ITERS: usize = 4000;

#[inline(never)]
fn pair<P: Platform>(m: &Kmem<P>) {
    let p = m.vmalloc(4096).expect("vmalloc");
    // SAFETY: from vmalloc, never accessed, freed once.
    unsafe { m.vfree(std::hint::black_box(p.as_ptr())) };
}

fn run<P: Platform>(m: &Kmem<P>) {
    let p = m.vmalloc(4096).expect("vmalloc");
    // SAFETY: as in `pair`.
    unsafe { m.vfree(p.as_ptr()) };
    for _ in 0..ITERS {
        pair(std::hint::black_box(m));
    }
    for kind in [kmem::ReportKind::Warning, kmem::ReportKind::BadPage, kmem::ReportKind::PageAllocFailure] {
        assert_eq!(m.report_count(kind), 0, "kmem reported ({kind:?})");
    }
}

fn main() {
    match std::env::args().nth(1).as_deref().unwrap_or("hosted") {
        "hosted" => run(&*MachineBuilder::new().ram_mib(256).thread_cpus(1).build().expect("boot")),
        // SAFETY: this thread alone uses the machine.
        "minimal" => run(&unsafe { kmem_bench::minimal::boot(256) }),
        other => {
            eprintln!("usage: vmalloc_cost [hosted|minimal]; not {other:?}");
            std::process::exit(2);
        }
    }
}
