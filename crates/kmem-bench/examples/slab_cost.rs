//! Instruction cost of one hot object alloc + free pair, for callgrind: kmem's
//! `kmem_cache_alloc` + `kmem_cache_free`, mimalloc's `mi_malloc` + `mi_free`, slabmalloc's
//! `SCAllocator::allocate` + `deallocate`, of `SIZE` bytes (default 64):
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example slab_cost
//! valgrind --tool=callgrind --toggle-collect='*slab_cost::pair_*' target/perf/examples/slab_cost kmem 64
//! ```
//! Total instructions collected divided by `ITERS` is the cost of one pair
//! (`scripts/slab_cost.sh` does this for each allocator). The first pair, which takes the
//! slow path (a new slab, a thread heap, a first page), runs before and outside the collected
//! functions.

use std::hint::black_box;

use kmem::SlabFlags;
use kmem_bench::slab::{pair, slab_machine, KmemObjects, Mimalloc, ObjectAllocator, SlabmallocObjects};

/// Pairs collected.
const ITERS: usize = 10_000;

#[inline(never)]
fn pair_kmem(a: &KmemObjects<'_>) {
    pair(a);
}

#[inline(never)]
fn pair_mimalloc(a: &Mimalloc) {
    pair(a);
}

#[inline(never)]
fn pair_slabmalloc(a: &SlabmallocObjects) {
    pair(a);
}

/// Warms `a` up with one pair outside the collected functions, then runs `ITERS` through `f`.
fn run<A: ObjectAllocator>(a: &A, f: fn(&A)) {
    pair(black_box(a));
    for _ in 0..ITERS {
        f(black_box(a));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "kmem".into());
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    match which.as_str() {
        "kmem" => {
            let m = slab_machine(1);
            let k = KmemObjects::new(&m, "slab-cost", size, SlabFlags::NONE);
            run(&k, pair_kmem);
            k.assert_no_reports();
        }
        "mimalloc" => run(&Mimalloc::new(size), pair_mimalloc),
        "slabmalloc" => run(&SlabmallocObjects::new(size, 16), pair_slabmalloc),
        other => {
            eprintln!("usage: slab_cost [kmem|mimalloc|slabmalloc] [SIZE]; not {other:?}");
            std::process::exit(2);
        }
    }
}
