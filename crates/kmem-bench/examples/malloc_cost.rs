//! Instruction cost of one hot alloc + free pair of `SIZE` bytes (default 64), for callgrind:
//!
//! - `kmalloc`: kmem's core API, `kmalloc(SIZE, GFP_KERNEL)` + `kfree` on a hosted machine of
//!   256 MiB with a CPU per thread (as a process's allocator has); `kmalloc-minimal`: the same
//!   on the minimal platform (one CPU, sections a plain counter: [`kmem_bench::minimal`]);
//! - `kmem`, `mimalloc`, `jemalloc`, `system`, `talc`, `linked_list_allocator`,
//!   `buddy_system_allocator`: `GlobalAlloc::alloc` + `dealloc` of each allocator
//!   ([`kmem_bench::malloc::Peer`]), 8-aligned;
//! - `mi_malloc`: mimalloc's `mi_malloc` + `mi_free` called directly;
//! - `libc`: `malloc` + `free` through the C library's symbols, so whichever malloc the
//!   process has (glibc's, or an `LD_PRELOAD` one such as `libkmem_malloc.so`);
//! - `WHAT-mt` (`kmem-mt`, `libc-mt`): WHAT after the process started and joined a second
//!   thread (kmem's process allocator then frees with its locked claim).
//! - `kmem-batch`, `mimalloc-batch`: `ITERS / 100` rounds of [`BATCH`] blocks allocated in a
//!   row, then freed in the same order (the Rust bench's `alloc_n_free_n/1000`), so the
//!   sheaves' refills and flushes are counted too: `scripts/callgrind_pair.sh malloc_cost
//!   40000 kmem-batch 64` prints instructions per block (an allocation and its free).
//!   (2026-12-07: kmem 86, mimalloc 76; kmem's slow paths about 1% of it.)
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example malloc_cost
//! valgrind --tool=callgrind --toggle-collect='*malloc_cost::pair_*' target/perf/examples/malloc_cost kmalloc 64
//! ```
//! Total instructions collected divided by `ITERS` is the cost of one pair
//! (`scripts/malloc_cost.sh` does this for each). The first pair, which takes the slow path
//! (booting kmem's machine, a new slab, a thread heap), runs before and outside the collected
//! functions.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::hint::black_box;

use kmem::{Gfp, Kmem, Platform};
#[cfg(feature = "jemalloc")]
use kmem_bench::malloc::JEMALLOC;
use kmem_bench::malloc::{Peer, BSA, KMEM, LLA, MIMALLOC, SYSTEM, TALC};
use kmem_hosted::MachineBuilder;

/// Pairs collected. (`KmemAlloc`'s give-memory-back check, which reads the clock through
/// rustix's vDSO parser, which crashes under valgrind (rustix issue 1559), runs only after
/// frees that went past their CPU's sheaf: never in a steady pair.)
const ITERS: usize = 4000;

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
}

#[inline(always)]
fn global_pair<A: GlobalAlloc>(a: &A, l: Layout) {
    // SAFETY: a non-zero layout; the block is freed at once with the same layout.
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null());
        a.dealloc(black_box(p), l);
    }
}

#[inline(never)]
fn pair_kmalloc<P: Platform>(m: &Kmem<P>, size: usize) {
    let p = m.kmalloc(size, Gfp::KERNEL).expect("kmalloc");
    // SAFETY: just allocated, never used, freed once.
    unsafe { m.kfree(black_box(p.as_ptr())) };
}

#[inline(never)]
fn pair_kmem(l: Layout) {
    global_pair(&KMEM, l);
}

/// Blocks of one `WHAT-batch` round: allocated in a row, then freed in the same order.
const BATCH: usize = 1000;

#[inline(always)]
fn global_batch<A: GlobalAlloc>(a: &A, l: Layout, slots: &mut [*mut u8; BATCH]) {
    // SAFETY: non-zero layouts; each block is freed once, with its layout, unused.
    unsafe {
        for s in slots.iter_mut() {
            *s = a.alloc(l);
            assert!(!s.is_null());
        }
        for s in slots.iter() {
            a.dealloc(black_box(*s), l);
        }
    }
}

#[inline(never)]
fn pair_batch_kmem(l: Layout, slots: &mut [*mut u8; BATCH]) {
    global_batch(&KMEM, l, slots);
}

#[inline(never)]
fn pair_batch_mimalloc(l: Layout, slots: &mut [*mut u8; BATCH]) {
    global_batch(&MIMALLOC, l, slots);
}

#[inline(never)]
fn pair_mimalloc(l: Layout) {
    global_pair(&MIMALLOC, l);
}

#[inline(never)]
#[cfg(feature = "jemalloc")]
fn pair_jemalloc(l: Layout) {
    global_pair(&JEMALLOC, l);
}

#[inline(never)]
fn pair_system(l: Layout) {
    global_pair(&SYSTEM, l);
}

#[inline(never)]
fn pair_talc(l: Layout) {
    global_pair(&TALC, l);
}

#[inline(never)]
fn pair_linked_list_allocator(l: Layout) {
    global_pair(&LLA, l);
}

#[inline(never)]
fn pair_buddy_system_allocator(l: Layout) {
    global_pair(&BSA, l);
}

#[inline(never)]
fn pair_mi_malloc(size: usize) {
    // SAFETY: mi_malloc's block is freed at once, unused.
    unsafe {
        let p = libmimalloc_sys::mi_malloc(size);
        assert!(!p.is_null());
        libmimalloc_sys::mi_free(black_box(p));
    }
}

#[inline(never)]
fn pair_libc(size: usize) {
    // SAFETY: malloc's block is freed at once, unused.
    unsafe {
        let p = malloc(size);
        assert!(!p.is_null());
        free(black_box(p));
    }
}

/// Warms up, then runs `ITERS` kmalloc + kfree pairs on `m`; fails if kmem reported.
fn kmalloc_pairs<P: Platform>(m: &Kmem<P>, size: usize) {
    run(
        || {
            let p = m.kmalloc(size, Gfp::KERNEL).expect("kmalloc");
            // SAFETY: just allocated, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        },
        || pair_kmalloc(black_box(m), size),
    );
    for kind in [kmem::ReportKind::SlabBug, kmem::ReportKind::Warning, kmem::ReportKind::BadPage] {
        assert_eq!(m.report_count(kind), 0, "kmem reported ({kind:?})");
    }
}

/// Runs `f` once (warm-up, outside the collected functions when `f` inlines into `warm`),
/// then `ITERS` times.
fn run(warm: impl Fn(), f: impl Fn()) {
    warm();
    for _ in 0..ITERS {
        f();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "kmalloc".into());
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    // `WHAT-mt`: WHAT in a process that has started (and joined) a second thread, so that
    // glibc's `__libc_single_threaded` is clear for good and kmem's process allocator frees
    // with its locked claim (`Platform::sole_thread`), as in any multi-threaded program.
    let which = match which.strip_suffix("-mt") {
        Some(base) => {
            std::thread::spawn(|| {}).join().expect("a second thread");
            base.to_string()
        }
        None => which,
    };
    let l = Layout::from_size_align(size.max(1), 8).expect("layout");
    if let Some(p) = Peer::from_name(&which) {
        p.prepare();
    }
    match which.as_str() {
        "kmalloc" => kmalloc_pairs(
            &*kmem_bench::kfence_from_env(MachineBuilder::new().ram_mib(256).thread_cpus(1))
                .build()
                .expect("kmem machine boots"),
            size,
        ),
        // SAFETY: this thread alone uses the machine.
        "kmalloc-minimal" => kmalloc_pairs(&unsafe { kmem_bench::minimal::boot(256) }, size),
        "kmem-batch" => {
            let mut slots = [std::ptr::null_mut(); BATCH];
            global_batch(&KMEM, l, &mut slots);
            for _ in 0..ITERS / 100 {
                pair_batch_kmem(black_box(l), &mut slots);
            }
        }
        "mimalloc-batch" => {
            let mut slots = [std::ptr::null_mut(); BATCH];
            global_batch(&MIMALLOC, l, &mut slots);
            for _ in 0..ITERS / 100 {
                pair_batch_mimalloc(black_box(l), &mut slots);
            }
        }
        "kmem" => run(|| global_pair(&KMEM, l), || pair_kmem(black_box(l))),
        "mimalloc" => run(|| global_pair(&MIMALLOC, l), || pair_mimalloc(black_box(l))),
        #[cfg(feature = "jemalloc")]
        "jemalloc" => run(|| global_pair(&JEMALLOC, l), || pair_jemalloc(black_box(l))),
        "system" => run(|| global_pair(&SYSTEM, l), || pair_system(black_box(l))),
        "talc" => run(|| global_pair(&TALC, l), || pair_talc(black_box(l))),
        "linked_list_allocator" => run(|| global_pair(&LLA, l), || pair_linked_list_allocator(black_box(l))),
        "buddy_system_allocator" => run(|| global_pair(&BSA, l), || pair_buddy_system_allocator(black_box(l))),
        "mi_malloc" => run(
            // SAFETY: freed at once.
            || unsafe { libmimalloc_sys::mi_free(libmimalloc_sys::mi_malloc(size)) },
            || pair_mi_malloc(black_box(size)),
        ),
        "libc" => run(
            // SAFETY: freed at once.
            || unsafe { free(malloc(size)) },
            || pair_libc(black_box(size)),
        ),
        other => {
            eprintln!(
                "usage: malloc_cost [kmalloc|kmalloc-minimal|kmem|mimalloc|jemalloc|system|talc|linked_list_allocator|\
                 buddy_system_allocator|mi_malloc|libc] [SIZE]; not {other:?}"
            );
            std::process::exit(2);
        }
    }
}
