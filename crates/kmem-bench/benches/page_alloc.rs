//! Page allocation: kmem's `alloc_pages`/`__free_pages` against `buddy_system_allocator`'s
//! `LockedHeap`, side by side in one run, each with 256 MiB.
//!
//! - `alloc_free/order{0,3,9}`: one allocation and one free per iteration.
//! - `pcp/order0`: one order-0 allocation and free per iteration through kmem's per-CPU lists
//!   (`kmem_pcp`), straight from kmem's buddy lists with the per-CPU lists off (`kmem_buddy`),
//!   and from `buddy_system_allocator`.
//! - `random_mix`: a seeded sequence of allocations (orders 0..=9, mostly 0) and frees over
//!   up to 512 live blocks; time per step.
//!
//! `scripts/bench.sh` runs this and prints the figures as markdown tables.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kmem_bench::{BsaPages, KmemPages, Mix, MixConfig, MixRunner, PageAllocator, BENCH_RAM_MIB};

/// Function names, the same in every group but `pcp/order0` (`scripts/bench.sh` looks for them).
const KMEM: &str = "kmem";
const BSA: &str = "buddy_system_allocator";
/// Functions of the `pcp/order0` group.
const KMEM_PCP: &str = "kmem_pcp";
const KMEM_BUDDY: &str = "kmem_buddy";

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500))
        .sample_size(20)
}

/// One allocation and one free of an order-`order` block.
#[inline]
fn alloc_free<A: PageAllocator>(a: &A, order: u32) {
    let b = a.alloc(black_box(order)).expect("an empty allocator serves any order");
    // SAFETY: `b` was just allocated with `order` and its memory is never used.
    unsafe { a.free(black_box(b), order) };
}

fn bench_alloc_free(c: &mut Criterion) {
    let kmem = KmemPages::new(BENCH_RAM_MIB);
    let bsa = BsaPages::new(BENCH_RAM_MIB);
    for order in [0, 3, 9] {
        let mut g = c.benchmark_group(format!("alloc_free/order{order}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function(KMEM, |b| b.iter(|| alloc_free(&kmem, order)));
        g.bench_function(BSA, |b| b.iter(|| alloc_free(&bsa, order)));
        g.finish();
    }
    kmem.assert_no_reports();
}

fn bench_pcp_order0(c: &mut Criterion) {
    let pcp = KmemPages::new(BENCH_RAM_MIB);
    let buddy = KmemPages::new(BENCH_RAM_MIB);
    buddy.set_pcp(false);
    let bsa = BsaPages::new(BENCH_RAM_MIB);
    let mut g = c.benchmark_group("pcp/order0");
    g.throughput(Throughput::Elements(1));
    g.bench_function(KMEM_PCP, |b| b.iter(|| alloc_free(&pcp, 0)));
    g.bench_function(KMEM_BUDDY, |b| b.iter(|| alloc_free(&buddy, 0)));
    g.bench_function(BSA, |b| b.iter(|| alloc_free(&bsa, 0)));
    g.finish();
    pcp.assert_no_reports();
    buddy.assert_no_reports();
}

/// Times `iters` steps of the mix, continuing where the previous sample stopped.
fn run_steps<A: PageAllocator>(r: &mut MixRunner<'_, A>, iters: u64) -> Duration {
    let t = Instant::now();
    r.run(iters);
    t.elapsed()
}

fn bench_random_mix(c: &mut Criterion) {
    let mix = Mix::generate(&MixConfig::default());
    let kmem = KmemPages::new(BENCH_RAM_MIB);
    let bsa = BsaPages::new(BENCH_RAM_MIB);
    let mut g = c.benchmark_group("random_mix");
    // One iteration is one step (an allocation or a free), so figures are per step.
    g.throughput(Throughput::Elements(1));
    let mut r = MixRunner::new(&kmem, &mix);
    g.bench_function(KMEM, |b| b.iter_custom(|iters| run_steps(&mut r, iters)));
    drop(r);
    let mut r = MixRunner::new(&bsa, &mix);
    g.bench_function(BSA, |b| b.iter_custom(|iters| run_steps(&mut r, iters)));
    drop(r);
    g.finish();
    kmem.assert_no_reports();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_alloc_free, bench_pcp_order0, bench_random_mix
}
criterion_main!(benches);
