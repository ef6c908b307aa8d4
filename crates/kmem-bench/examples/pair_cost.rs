//! Instruction cost of one `alloc_pages` + `__free_pages` pair, for callgrind, on the hosted
//! platform (a CPU-per-thread machine, as a process's allocator has) or on the minimal one
//! (one CPU, sections a plain counter: [`kmem_bench::minimal`]):
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example pair_cost
//! valgrind --tool=callgrind --toggle-collect='*pair_cost::pair*' target/perf/examples/pair_cost 0 hosted
//! ```
//! `sparse` and `vmemmap` run the hosted pair on a machine whose sections have a hole, so its
//! memory map is sparse, or flat through the vmemmap (`MachineBuilder::vmemmap`).
//! Total instructions collected divided by `ITERS` is the cost of one pair at that order
//! (`scripts/pair_cost.sh` does this for orders 0, 3 and 9, `scripts/cost_check.sh` for
//! order 0 on both platforms).

use kmem::{Gfp, Kmem, Order, Platform};
use kmem_hosted::MachineBuilder;

const ITERS: usize = 1000;

#[inline(never)]
fn pair<P: Platform>(m: &Kmem<P>, order: u32) {
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(order)).expect("allocation");
    // SAFETY: the block is ours and unused afterwards.
    unsafe { m.__free_pages(std::hint::black_box(p), Order::of(order)) };
}

fn run<P: Platform>(m: &Kmem<P>, order: u32) {
    pair(m, order); // warm: claims a pageblock for Unmovable, brings the CPU online
    for _ in 0..ITERS {
        pair(std::hint::black_box(m), order);
    }
    assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0, "kmem reported a bad page");
}

/// A hosted machine of 256 MiB in two sections with a section-sized hole between them.
fn holey() -> MachineBuilder {
    const MIB: u64 = 1 << 20;
    MachineBuilder::new()
        .memory_map(vec![kmem::MemRegion::usable(0, 128 * MIB), kmem::MemRegion::usable(256 * MIB, 128 * MIB)])
        .zone_layout(kmem::ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None })
        .thread_cpus(1)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let order: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    match args.next().as_deref().unwrap_or("hosted") {
        "hosted" => run(&*MachineBuilder::new().ram_mib(256).thread_cpus(1).build().expect("boot"), order),
        // The memory map's two lookups (mm/memmap.rs) on one shape: sections 0 and 2 present,
        // section 1 a hole, so the descriptors are sparse, or flat through the vmemmap.
        "sparse" => run(&*holey().vmemmap(false).build().expect("boot"), order),
        "vmemmap" => run(&*holey().vmemmap(true).build().expect("boot"), order),
        // SAFETY: this thread alone uses the machine.
        "minimal" => run(&unsafe { kmem_bench::minimal::boot(256) }, order),
        other => {
            eprintln!("usage: pair_cost [ORDER] [hosted|minimal|sparse|vmemmap]; not {other:?}");
            std::process::exit(2);
        }
    }
}
