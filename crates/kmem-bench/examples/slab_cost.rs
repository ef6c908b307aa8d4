//! Instruction cost of one hot object alloc + free pair, for callgrind: kmem's
//! `kmem_cache_alloc` + `kmem_cache_free` through the cache's handle (`Cache::alloc`,
//! `Cache::free`; the machine's own methods, which must test that the cache is theirs, take 3
//! instructions more a pair), mimalloc's `mi_malloc` + `mi_free`, slabmalloc's
//! `SCAllocator::allocate` + `deallocate`, of `SIZE` bytes (default 64). `kmem` runs on the
//! hosted platform (a CPU-per-thread machine), `kmem-minimal` on the minimal one (one CPU,
//! sections a plain counter: [`kmem_bench::minimal`]):
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
use std::ptr::NonNull;

use kmem::{Cache, Gfp, SlabFlags};
use kmem_bench::minimal::MinimalPlatform;
use kmem_bench::slab::{pair, slab_machine, KmemObjects, Mimalloc, ObjectAllocator, SlabmallocObjects};

/// A kmem cache on the minimal platform, created as [`KmemObjects`] creates its own.
struct MinimalObjects<'m> {
    cache: Cache<'m, MinimalPlatform>,
}

impl ObjectAllocator for MinimalObjects<'_> {
    fn size(&self) -> usize {
        self.cache.object_size()
    }
    #[inline(always)]
    fn alloc(&self) -> NonNull<u8> {
        self.cache.alloc(Gfp::KERNEL).expect("kmem_cache_alloc")
    }
    #[inline(always)]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: the caller owns `obj`, an object of this cache, unused from now on.
        unsafe { self.cache.free(obj) }
    }
}

/// Pairs collected.
const ITERS: usize = 10_000;

#[inline(never)]
fn pair_kmem(a: &KmemObjects<'_>) {
    pair(a);
}

#[inline(never)]
fn pair_kmem_minimal(a: &MinimalObjects<'_>) {
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
        "kmem-minimal" => {
            // SAFETY: this thread alone uses the machine.
            let m = unsafe { kmem_bench::minimal::boot(kmem_bench::BENCH_RAM_MIB as usize) };
            let cache = m.kmem_cache_create("slab-cost", size, 0, SlabFlags::NO_MERGE, None).expect("cache created");
            run(&MinimalObjects { cache }, pair_kmem_minimal);
            for kind in [kmem::ReportKind::SlabBug, kmem::ReportKind::Warning, kmem::ReportKind::BadPage] {
                assert_eq!(m.report_count(kind), 0, "kmem reported ({kind:?})");
            }
        }
        "mimalloc" => run(&Mimalloc::new(size), pair_mimalloc),
        "slabmalloc" => run(&SlabmallocObjects::new(size, 16), pair_slabmalloc),
        other => {
            eprintln!("usage: slab_cost [kmem|kmem-minimal|mimalloc|slabmalloc] [SIZE]; not {other:?}");
            std::process::exit(2);
        }
    }
}
