//! Instruction cost of the page allocator's bulk paths, for callgrind: `N` order-0 pages
//! allocated, then freed in the same order (every page beyond the per-CPU lists' `high` goes
//! through refill and drain, splitting and merging in the buddy lists), on the minimal
//! platform or a hosted machine:
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example bulk_cost
//! valgrind --tool=callgrind --toggle-collect='*bulk_cost::pair*' target/perf/examples/bulk_cost minimal
//! ```
//! Total instructions collected divided by `ROUNDS * N` (65,536) is the cost of one page's
//! allocation and free (`scripts/cost_check.sh`'s `page_bulk0` rows).

use kmem::{Gfp, Kmem, Order, PageRef, Platform};
use kmem_hosted::MachineBuilder;

const N: usize = 16384;
const ROUNDS: usize = 4;

#[inline(never)]
fn pair<'a, P: Platform>(m: &'a Kmem<P>, pages: &mut Vec<PageRef<'a>>) {
    for _ in 0..N {
        pages.push(m.alloc_pages(Gfp::KERNEL, Order::ZERO).expect("allocation"));
    }
    for p in pages.drain(..) {
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(std::hint::black_box(p), Order::ZERO) };
    }
}

fn run<P: Platform>(m: &Kmem<P>) {
    let mut pages = Vec::with_capacity(N);
    pair(m, &mut pages); // warm: claims pageblocks, brings the CPU online
    for _ in 0..ROUNDS {
        pair(std::hint::black_box(m), &mut pages);
    }
    assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0, "kmem reported a bad page");
}

fn main() {
    match std::env::args().nth(1).as_deref().unwrap_or("minimal") {
        "hosted" => run(&*MachineBuilder::new().ram_mib(256).thread_cpus(1).build().expect("boot")),
        // SAFETY: this thread alone uses the machine.
        "minimal" => run(&unsafe { kmem_bench::minimal::boot(256) }),
        other => {
            eprintln!("usage: bulk_cost [hosted|minimal]; not {other:?}");
            std::process::exit(2);
        }
    }
}
