//! Slab allocation: kmem's `kmem_cache_alloc`/`kmem_cache_free` against `slabmalloc` (one
//! `SCAllocator` per size) and mimalloc (`mi_malloc`/`mi_free`), side by side in one run.
//! See [`kmem_bench::slab`] for the allocators and workloads.
//!
//! - `slab/pair64`, `slab/pair256`: one hot alloc + free of a 64- or 256-byte object.
//! - `slab/alloc_n_free_n`: 1000 allocations of 64 bytes, then 1000 frees in the same order;
//!   figures per object (one alloc + one free).
//! - `slab/bulk/{16,128}`: `kmem_cache_alloc_bulk` + `kmem_cache_free_bulk` of n 64-byte
//!   objects (`kmem_bulk`) against loops of n single allocations then n frees (`kmem` and the
//!   peers); per object.
//! - `slab/remote_free`: a producer thread allocates 64-byte objects, a consumer thread on
//!   another CPU frees them (batches of 64 through a ring); per object. kmem runs on a
//!   machine with a CPU per thread (three: the harness's, the producer's, the consumer's),
//!   the two threads on host CPUs 0 and 1. slabmalloc has no
//!   cross-thread path: it runs behind a `Mutex` (`slabmalloc_mutex`).
//! - `slab/colour`: 4096 live 192-byte objects of a cache with `SLAB_COLOUR` (`kmem_colour`)
//!   and of one without (`kmem_nocolour`), the first 8 bytes of each read and incremented in
//!   allocation order; per object.
//!
//! `scripts/bench.sh` runs this and prints the figures as markdown tables.

use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kmem::SlabFlags;
use kmem_bench::slab::{
    alloc_n_free_n, bulk_n_free_n, pair, remote_free, slab_machine, ColourTouch, KmemObjects, LockedSlabmalloc,
    Mimalloc, SlabmallocObjects,
};

/// Function names (`scripts/bench.sh` looks for them).
const KMEM: &str = "kmem";
const KMEM_BULK: &str = "kmem_bulk";
const SLABMALLOC: &str = "slabmalloc";
const SLABMALLOC_MUTEX: &str = "slabmalloc_mutex";
const MIMALLOC: &str = "mimalloc";
const KMEM_COLOUR: &str = "kmem_colour";
const KMEM_NOCOLOUR: &str = "kmem_nocolour";

/// Pages of each slabmalloc region (1 MiB; the workloads need at most about 20).
const SM_PAGES: usize = 256;
/// Objects of `slab/alloc_n_free_n`.
const N: usize = 1000;
/// Objects per hand-over in `slab/remote_free`.
const REMOTE_BATCH: usize = 64;
/// Objects and object size of `slab/colour`.
const COLOUR_OBJECTS: usize = 4096;
const COLOUR_SIZE: usize = 192;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

fn bench_pairs(c: &mut Criterion) {
    let m = slab_machine(1);
    for size in [64, 256] {
        let kmem = KmemObjects::new(&m, &format!("bench-pair-{size}"), size, SlabFlags::NONE);
        let sm = SlabmallocObjects::new(size, SM_PAGES);
        let mi = Mimalloc::new(size);
        let mut g = c.benchmark_group(format!("slab/pair{size}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function(KMEM, |b| b.iter(|| pair(&kmem)));
        g.bench_function(SLABMALLOC, |b| b.iter(|| pair(&sm)));
        g.bench_function(MIMALLOC, |b| b.iter(|| pair(&mi)));
        g.finish();
        kmem.assert_no_reports();
    }
}

fn bench_alloc_n_free_n(c: &mut Criterion) {
    let m = slab_machine(1);
    let kmem = KmemObjects::new(&m, "bench-n-64", 64, SlabFlags::NONE);
    let sm = SlabmallocObjects::new(64, SM_PAGES);
    let mi = Mimalloc::new(64);
    let mut slots: Vec<Option<NonNull<u8>>> = vec![None; N];
    let mut g = c.benchmark_group("slab/alloc_n_free_n");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(KMEM, |b| b.iter(|| alloc_n_free_n(&kmem, &mut slots)));
    g.bench_function(SLABMALLOC, |b| b.iter(|| alloc_n_free_n(&sm, &mut slots)));
    g.bench_function(MIMALLOC, |b| b.iter(|| alloc_n_free_n(&mi, &mut slots)));
    g.finish();
    kmem.assert_no_reports();
}

fn bench_bulk(c: &mut Criterion) {
    let m = slab_machine(1);
    let kmem = KmemObjects::new(&m, "bench-bulk-64", 64, SlabFlags::NONE);
    let sm = SlabmallocObjects::new(64, SM_PAGES);
    let mi = Mimalloc::new(64);
    let mut g = c.benchmark_group("slab/bulk");
    for n in [16usize, 128] {
        let mut slots: Vec<Option<NonNull<u8>>> = vec![None; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new(KMEM_BULK, n), |b| b.iter(|| bulk_n_free_n(&kmem, &mut slots)));
        g.bench_function(BenchmarkId::new(KMEM, n), |b| b.iter(|| alloc_n_free_n(&kmem, &mut slots)));
        g.bench_function(BenchmarkId::new(SLABMALLOC, n), |b| b.iter(|| alloc_n_free_n(&sm, &mut slots)));
        g.bench_function(BenchmarkId::new(MIMALLOC, n), |b| b.iter(|| alloc_n_free_n(&mi, &mut slots)));
    }
    g.finish();
    kmem.assert_no_reports();
}

fn bench_remote_free(c: &mut Criterion) {
    // A CPU for each thread that touches the machine: the harness's (it made the cache), the
    // producer's and the consumer's. With two, one of them had none and borrowed a CPU for
    // every operation (14 us an object, where its own CPU takes tens of ns).
    let m = slab_machine(3);
    let kmem = KmemObjects::new(&m, "bench-remote-64", 64, SlabFlags::NONE);
    let sm = LockedSlabmalloc::new(64, SM_PAGES);
    let mi = Mimalloc::new(64);
    let mut g = c.benchmark_group("slab/remote_free");
    // One iteration is one object allocated on CPU 0 and freed on CPU 1.
    g.throughput(Throughput::Elements(1));
    g.bench_function(KMEM, |b| b.iter_custom(|iters| remote_free(&kmem, iters, REMOTE_BATCH, (0, 1))));
    g.bench_function(MIMALLOC, |b| b.iter_custom(|iters| remote_free(&mi, iters, REMOTE_BATCH, (0, 1))));
    g.bench_function(SLABMALLOC_MUTEX, |b| b.iter_custom(|iters| remote_free(&sm, iters, REMOTE_BATCH, (0, 1))));
    g.finish();
    kmem.assert_no_reports();
}

fn bench_colour(c: &mut Criterion) {
    let m = slab_machine(1);
    let plain = KmemObjects::new(&m, "bench-nocolour-192", COLOUR_SIZE, SlabFlags::NONE);
    let coloured = KmemObjects::new(&m, "bench-colour-192", COLOUR_SIZE, SlabFlags::COLOUR);
    let a = ColourTouch::new(&plain, COLOUR_OBJECTS);
    let b_ = ColourTouch::new(&coloured, COLOUR_OBJECTS);
    let l = plain.cache().layout();
    eprintln!(
        "slab/colour: {COLOUR_OBJECTS} objects of {COLOUR_SIZE} B (slot {} B, order {}, {} per slab); first \
         words on {} of 64 line offsets without colour, {} with",
        l.size,
        l.order,
        l.objects,
        a.line_offsets(),
        b_.line_offsets()
    );
    let mut g = c.benchmark_group("slab/colour");
    g.throughput(Throughput::Elements(COLOUR_OBJECTS as u64));
    g.bench_function(KMEM_NOCOLOUR, |b| b.iter(|| black_box(a.touch())));
    g.bench_function(KMEM_COLOUR, |b| b.iter(|| black_box(b_.touch())));
    g.finish();
    drop((a, b_));
    plain.assert_no_reports();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_pairs, bench_alloc_n_free_n, bench_bulk, bench_remote_free, bench_colour
}
criterion_main!(benches);
