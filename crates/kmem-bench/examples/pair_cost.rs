//! Instruction cost of one `alloc_pages` + `__free_pages` pair, for callgrind:
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example pair_cost
//! valgrind --tool=callgrind --toggle-collect='*pair_cost::pair*' target/perf/examples/pair_cost 0
//! ```
//! Total instructions collected divided by `ITERS` is the cost of one pair at that order
//! (`scripts/pair_cost.sh` does this for orders 0, 3 and 9).

use kmem::{Gfp, Order};
use kmem_hosted::{Machine, MachineBuilder};

const ITERS: usize = 1000;

#[inline(never)]
fn pair(m: &Machine, order: u32) {
    let p = m.alloc_pages(Gfp::KERNEL, Order::of(order)).expect("allocation");
    // SAFETY: the block is ours and unused afterwards.
    unsafe { m.__free_pages(std::hint::black_box(p), Order::of(order)) };
}

fn main() {
    let order: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let m = MachineBuilder::new().ram_mib(256).thread_cpus(1).build().expect("boot");
    pair(&m, order); // warm: claims a pageblock for Unmovable
    for _ in 0..ITERS {
        pair(&m, order);
    }
}
