//! # kmem-bench: workloads for benchmarking kmem against peer allocators
//!
//! Every benchmark runs kmem and its peers side by side in one process and one run, on the
//! same workload and the same amount of memory, so their figures can be compared directly.
//! Benchmarks are never timed tests: nothing here asserts a speed.
//!
//! - [`PageAllocator`]: "blocks of `2^order` pages", implemented by [`KmemPages`] (a hosted
//!   kmem machine, `alloc_pages(GFP_KERNEL, order)` / `__free_pages`) and by [`BsaPages`]
//!   (`buddy_system_allocator::LockedHeap` over an equally large region, asked for
//!   `PAGE_SIZE << order` bytes aligned to `PAGE_SIZE << order`, the blocks a buddy page
//!   allocator hands out).
//! - [`Mix`]: a seeded, pre-generated sequence of allocations of random orders and frees of
//!   random live blocks; [`MixRunner`] replays it on one allocator, step by step, cyclically.
//!
//! ```
//! use kmem_bench::{BsaPages, KmemPages, Mix, MixConfig, MixRunner, PageAllocator};
//!
//! let mix = Mix::generate(&MixConfig { steps: 1000, ..MixConfig::default() });
//! let kmem = KmemPages::new(32);
//! let bsa = BsaPages::new(32);
//! let mut a = MixRunner::new(&kmem, &mix);
//! let mut b = MixRunner::new(&bsa, &mix);
//! a.run(mix.len() as u64);
//! b.run(mix.len() as u64);
//! assert_eq!(a.live(), 0); // a whole cycle frees everything it allocated
//! assert_eq!(b.live(), 0);
//! ```
//!
//! - [`scaling`]: throughput of order-0 alloc+free pairs from 1 and 2 threads sharing one
//!   allocator (the `scaling` bench).
//! - [`slab`]: object allocation, kmem's slab caches against `slabmalloc` and mimalloc (the
//!   `slab` bench and the `slab_cost` instruction-count example).
//! - [`malloc`]: kmem as a process's allocator (`kmem_alloc::KmemAlloc`) against mimalloc,
//!   jemalloc, glibc, talc, linked_list_allocator and buddy_system_allocator, through their
//!   `GlobalAlloc`s: pairs, alloc-n-free-n, random sizes, realloc, collections, cross-thread
//!   frees, peak RSS (the `malloc` bench, the `malloc_cost` example, `scripts/benchmarks.sh`);
//!   and with 2 to 8 threads (the `threads` bench, [`malloc::threads`]).
//! - [`minimal`]: the bare-metal example's one-CPU platform (`kmem-minimal`), whose critical
//!   sections are a plain counter, on heap RAM: what the fast paths cost a kernel (the
//!   `*_cost` examples, `scripts/cost_check.sh`).
//!
//! Run the benchmarks with `scripts/bench.sh` at the repository root, which prints the
//! comparison as markdown tables (`scripts/scaling.sh` for the thread-scaling table alone).
//!
//! ## Notes and limits
//!
//! - The criterion benches are single-threaded: the zone lock and the heap's spin lock are
//!   always uncontended. The `scaling` bench runs threads on distinct CPUs of one machine.
//! - kmem serves orders 0..=3 and 9 from per-CPU page lists by default (no zone lock on the
//!   hot path); [`KmemPages::set_pcp`] turns them off, so every call takes the zone lock as
//!   each `LockedHeap` call takes its spin lock.
//! - `buddy_system_allocator` keeps its free lists inside the free blocks; its region is
//!   pre-faulted so page faults do not count. kmem keeps them in page descriptors and never
//!   touches the blocks (without `__GFP_ZERO`).

use std::alloc::Layout;
use std::ptr::NonNull;

use buddy_system_allocator::LockedHeap;
use kmem::{Gfp, Order, PageRef, MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE};
use kmem_hosted::{Machine, MachineBuilder};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `KMEM_BENCH_KFENCE=1` in the environment: the hosted machines of the cost examples
/// (`slab_cost`, `malloc_cost kmalloc`) boot with KFENCE at Linux's default interval
/// (100 ms, 255 objects), to show the fast paths pay nothing for it
/// (`KMEM_BENCH_KFENCE=1 scripts/cost_check.sh`).
pub fn kfence_from_env(b: MachineBuilder) -> MachineBuilder {
    match std::env::var("KMEM_BENCH_KFENCE").as_deref() {
        Ok("1") => b.kfence(kmem::kfence::KfenceConfig::default()),
        _ => b,
    }
}

pub mod handoff;
pub mod malloc;
pub mod minimal;
pub mod scaling;
pub mod slab;

/// The highest order every allocator here serves (kmem's `MAX_PAGE_ORDER`).
pub const MAX_ORDER: u32 = MAX_PAGE_ORDER as u32;

/// RAM given to each allocator in the benchmarks, in MiB.
pub const BENCH_RAM_MIB: u64 = 256;

/// An allocator of blocks of `2^order` pages, `order <= MAX_ORDER`.
pub trait PageAllocator {
    /// A handle to an allocated block.
    type Block<'a>: Copy
    where
        Self: 'a;

    /// Allocates a block of `2^order` pages; `None` when out of memory.
    fn alloc(&self, order: u32) -> Option<Self::Block<'_>>;

    /// Frees a block.
    ///
    /// # Safety
    ///
    /// `block` must come from `self.alloc(order)` with this same `order`, must not have been
    /// freed since, and its memory must not be used afterwards.
    unsafe fn free<'a>(&'a self, block: Self::Block<'a>, order: u32);
}

/// kmem's page allocator: a hosted machine, `alloc_pages(GFP_KERNEL, order)`.
#[derive(Debug)]
pub struct KmemPages {
    machine: Machine,
}

impl KmemPages {
    /// Boots a one-CPU x86-64 machine with `ram_mib` MiB of RAM.
    ///
    /// # Panics
    ///
    /// If the machine does not boot (RAM below the 2 MiB minimum, memfd failure).
    pub fn new(ram_mib: u64) -> Self {
        Self::with_cpus(ram_mib, 1)
    }

    /// Boots an x86-64 machine with `cpus` CPUs and `ram_mib` MiB of RAM. Threads that share
    /// it should each pin themselves to a CPU (`kmem_hosted::pin_current_thread`).
    ///
    /// # Panics
    ///
    /// As [`KmemPages::new`], or if `cpus` is 0.
    pub fn with_cpus(ram_mib: u64, cpus: usize) -> Self {
        let machine = MachineBuilder::new().ram_mib(ram_mib).cpus(cpus).build().expect("kmem machine boots");
        Self { machine }
    }

    /// Turns the per-CPU page lists on (the default) or off (every call goes to the buddy
    /// lists under the zone lock); off drains them first.
    pub fn set_pcp(&self, on: bool) {
        self.machine.set_pcp_enabled(on);
    }

    /// Free pages: in the buddy lists plus on every CPU's lists.
    pub fn free_pages(&self) -> usize {
        self.machine.zones().map(|z| z.free_pages() + z.pcp_pages()).sum()
    }

    /// The machine, for statistics and reports.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Checks that kmem made no report (bad page, warning, failed allocation) so far: a
    /// report means the benchmark misused the allocator or timed an error path.
    ///
    /// # Panics
    ///
    /// With the last report's text if there was one.
    pub fn assert_no_reports(&self) {
        if let Some(r) = self.machine.reports().last() {
            panic!("kmem reported during the benchmark:\n{r}");
        }
    }
}

impl PageAllocator for KmemPages {
    type Block<'a> = PageRef<'a>;

    #[inline]
    fn alloc(&self, order: u32) -> Option<PageRef<'_>> {
        self.machine.alloc_pages(Gfp::KERNEL, Order::of(order)).ok()
    }

    #[inline]
    unsafe fn free<'a>(&'a self, block: PageRef<'a>, order: u32) {
        // SAFETY: the caller owns `block`, allocated with `order` and unused from now on.
        unsafe { self.machine.__free_pages(block, Order::of(order)) }
    }
}

/// `buddy_system_allocator`'s size classes, one per power of two, up to the largest block kmem
/// hands out (`PAGE_SIZE << MAX_ORDER`, 4 MiB), so both allocators split and merge over the
/// same range of orders.
pub const BSA_ORDER: usize = PAGE_SHIFT as usize + MAX_PAGE_ORDER as usize + 1;

/// `buddy_system_allocator::LockedHeap` over a private, pre-faulted region, serving page blocks:
/// `PAGE_SIZE << order` bytes aligned to the same.
pub struct BsaPages {
    heap: LockedHeap<BSA_ORDER>,
    region: NonNull<u8>,
    layout: Layout,
}

impl std::fmt::Debug for BsaPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BsaPages").field("region", &self.region).field("heap", &*self.heap.lock()).finish()
    }
}

impl BsaPages {
    /// A heap over `ram_mib` MiB aligned to the largest block.
    ///
    /// # Panics
    ///
    /// If `ram_mib` is 0 or not a multiple of 4 (the largest block), or the region cannot be
    /// allocated.
    pub fn new(ram_mib: u64) -> Self {
        let block = PAGE_SIZE << MAX_ORDER;
        let bytes = usize::try_from(ram_mib << 20).expect("region fits the address space");
        assert!(bytes != 0 && bytes % block == 0, "region of {ram_mib} MiB is not a whole number of 4 MiB blocks");
        let layout = Layout::from_size_align(bytes, block).expect("valid region layout");
        // SAFETY: `layout` has a non-zero size (asserted above).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(region) = NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        // SAFETY: `region` is a fresh allocation of `bytes` bytes, ours alone; writing it
        // faults every page in now rather than during measurement.
        unsafe { std::ptr::write_bytes(region.as_ptr(), 0, bytes) };
        let heap = LockedHeap::<BSA_ORDER>::new();
        // SAFETY: `[region, region + bytes)` is valid, writable memory owned by this value and
        // used by nothing else; it is released in `drop`, after which the heap is never used.
        unsafe { heap.lock().init(region.as_ptr() as usize, bytes) };
        Self { heap, region, layout }
    }

    fn block_layout(order: u32) -> Layout {
        let bytes = PAGE_SIZE << order;
        Layout::from_size_align(bytes, bytes).expect("order <= MAX_ORDER gives a valid layout")
    }
}

// SAFETY: the heap is a spin-locked `LockedHeap` (Send + Sync); `region` is only the address
// of the memory the heap manages, dereferenced by nobody but the heap (under its lock) and
// released once, in `drop`.
unsafe impl Send for BsaPages {}
// SAFETY: as for Send: every access to the region goes through the heap's lock.
unsafe impl Sync for BsaPages {}

impl BsaPages {
    /// Bytes the heap has handed out and not taken back.
    pub fn allocated_bytes(&self) -> usize {
        self.heap.lock().stats_alloc_actual()
    }
}

impl Drop for BsaPages {
    fn drop(&mut self) {
        // SAFETY: `region` was allocated in `new` with `layout`; the heap that hands out
        // pieces of it is dropped with `self` and every block handle borrows `self`.
        unsafe { std::alloc::dealloc(self.region.as_ptr(), self.layout) };
    }
}

impl PageAllocator for BsaPages {
    type Block<'a> = NonNull<u8>;

    #[inline]
    fn alloc(&self, order: u32) -> Option<NonNull<u8>> {
        if order > MAX_ORDER {
            return None;
        }
        self.heap.lock().alloc(Self::block_layout(order)).ok()
    }

    #[inline]
    unsafe fn free(&self, block: NonNull<u8>, order: u32) {
        self.heap.lock().dealloc(block, Self::block_layout(order));
    }
}

/// One step of a [`Mix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Allocate a block of this order and append it to the live list.
    Alloc(u8),
    /// Free the live block at this index; the last live block takes its place
    /// (`Vec::swap_remove`).
    Free(u32),
}

/// How to generate a [`Mix`].
#[derive(Clone, Debug)]
pub struct MixConfig {
    /// Seed of the generator: the same seed gives the same sequence.
    pub seed: u64,
    /// Random steps before the final frees that close the cycle.
    pub steps: usize,
    /// Most blocks live at once.
    pub max_live: usize,
    /// Most pages live at once; an allocation that would pass it becomes a free. Keep it well
    /// below the RAM so that fragmentation and watermarks cannot fail an allocation.
    pub max_live_pages: usize,
    /// Relative weight of each order `0..=MAX_ORDER` in allocations.
    pub order_weights: Vec<u32>,
}

impl Default for MixConfig {
    /// 65,536 steps over up to 512 live blocks and 64 MiB, orders 0..=9 weighted toward
    /// order 0 as kernel page allocations are (order 0 most common, then small orders for
    /// slab caches and stacks, rarely 2 MiB blocks).
    fn default() -> Self {
        Self {
            seed: 0x6b6d_656d,
            steps: 1 << 16,
            max_live: 512,
            max_live_pages: (64 << 20) / PAGE_SIZE,
            order_weights: vec![60, 12, 8, 8, 4, 3, 2, 1, 1, 1],
        }
    }
}

/// A closed sequence of steps: it starts and ends with no block live, so it can be replayed
/// in a loop.
#[derive(Clone, Debug)]
pub struct Mix {
    steps: Vec<Step>,
    max_live: usize,
}

impl Mix {
    /// Generates a sequence: each step allocates (probability 1/2 while below both limits) or
    /// frees a uniformly chosen live block; then every block still live is freed in random
    /// order.
    ///
    /// # Panics
    ///
    /// If the weights are not one to `MAX_ORDER + 1` non-negative numbers with a positive sum.
    pub fn generate(cfg: &MixConfig) -> Self {
        assert!(cfg.order_weights.len() <= MAX_ORDER as usize + 1, "orders above MAX_ORDER have weights");
        let orders = WeightedIndex::new(&cfg.order_weights).expect("valid order weights");
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut live: Vec<u8> = Vec::with_capacity(cfg.max_live);
        let mut live_pages = 0usize;
        let mut steps = Vec::with_capacity(cfg.steps + cfg.max_live);
        let free_one = |rng: &mut StdRng, live: &mut Vec<u8>, live_pages: &mut usize, steps: &mut Vec<Step>| {
            let i = rng.gen_range(0..live.len());
            *live_pages -= 1 << live.swap_remove(i);
            steps.push(Step::Free(i as u32));
        };
        for _ in 0..cfg.steps {
            let order = orders.sample(&mut rng) as u8;
            let fits = live.len() < cfg.max_live && live_pages + (1 << order) <= cfg.max_live_pages;
            if fits && (live.is_empty() || rng.gen_bool(0.5)) {
                live.push(order);
                live_pages += 1 << order;
                steps.push(Step::Alloc(order));
            } else if !live.is_empty() {
                free_one(&mut rng, &mut live, &mut live_pages, &mut steps);
            }
        }
        while !live.is_empty() {
            free_one(&mut rng, &mut live, &mut live_pages, &mut steps);
        }
        Self { steps, max_live: cfg.max_live }
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Number of steps in one cycle.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True if the sequence has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Allocations per order `0..=MAX_ORDER` in one cycle.
    pub fn allocs_per_order(&self) -> [usize; MAX_ORDER as usize + 1] {
        let mut n = [0; MAX_ORDER as usize + 1];
        for s in &self.steps {
            if let Step::Alloc(o) = s {
                n[*o as usize] += 1;
            }
        }
        n
    }
}

/// Replays a [`Mix`] on one allocator, owning the blocks it allocated: dropping the runner
/// frees those still live.
pub struct MixRunner<'a, A: PageAllocator> {
    alloc: &'a A,
    mix: &'a Mix,
    live: Vec<(A::Block<'a>, u32)>,
    next: usize,
}

impl<A: PageAllocator> std::fmt::Debug for MixRunner<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixRunner").field("live", &self.live.len()).field("next", &self.next).finish()
    }
}

impl<'a, A: PageAllocator> MixRunner<'a, A> {
    /// A runner at the start of the sequence, nothing live.
    pub fn new(alloc: &'a A, mix: &'a Mix) -> Self {
        Self { alloc, mix, live: Vec::with_capacity(mix.max_live), next: 0 }
    }

    /// Runs the next `n` steps, wrapping around at the end of the sequence.
    ///
    /// # Panics
    ///
    /// If an allocation fails: the workload is sized to fit, and a failure would make the
    /// figures meaningless.
    #[inline]
    pub fn run(&mut self, n: u64) {
        let steps = self.mix.steps();
        for _ in 0..n {
            match steps[self.next] {
                Step::Alloc(order) => {
                    let order = u32::from(order);
                    let Some(b) = self.alloc.alloc(order) else {
                        panic!("order-{order} allocation failed at step {} with {} live", self.next, self.live.len())
                    };
                    self.live.push((b, order));
                }
                Step::Free(i) => {
                    let (b, order) = self.live.swap_remove(i as usize);
                    // SAFETY: `b` was allocated by `self.alloc` with `order` in an earlier
                    // step, is removed from `live` here so it is freed once, and the runner
                    // never touches block memory.
                    unsafe { self.alloc.free(b, order) };
                }
            }
            self.next += 1;
            if self.next == steps.len() {
                self.next = 0;
            }
        }
    }

    /// Blocks live now.
    pub fn live(&self) -> usize {
        self.live.len()
    }
}

impl<A: PageAllocator> Drop for MixRunner<'_, A> {
    fn drop(&mut self) {
        for (b, order) in self.live.drain(..) {
            // SAFETY: every block in `live` was allocated by `self.alloc` with its order and
            // not freed since (frees remove it from `live`).
            unsafe { self.alloc.free(b, order) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_closed_and_within_limits() {
        let cfg = MixConfig::default();
        let mix = Mix::generate(&cfg);
        let (mut live, mut max_live) = (0usize, 0usize);
        for s in mix.steps() {
            match s {
                Step::Alloc(o) => {
                    assert!(u32::from(*o) <= MAX_ORDER);
                    live += 1;
                }
                Step::Free(i) => {
                    assert!((*i as usize) < live);
                    live -= 1;
                }
            }
            max_live = max_live.max(live);
        }
        assert_eq!(live, 0);
        assert!(max_live <= cfg.max_live);
        let per = mix.allocs_per_order();
        assert!(per[0] > per[3] && per[3] > per[9] && per[9] > 0, "{per:?}");
    }

    #[test]
    fn mix_is_reproducible() {
        let cfg = MixConfig { steps: 4096, ..MixConfig::default() };
        assert_eq!(Mix::generate(&cfg).steps(), Mix::generate(&cfg).steps());
        let other = MixConfig { seed: 1, ..cfg.clone() };
        assert_ne!(Mix::generate(&cfg).steps(), Mix::generate(&other).steps());
    }

    #[test]
    fn both_allocators_return_all_memory() {
        let mix = Mix::generate(&MixConfig { steps: 4096, ..MixConfig::default() });
        let kmem = KmemPages::new(64);
        let free0 = kmem.free_pages();
        let bsa = BsaPages::new(64);
        {
            let mut a = MixRunner::new(&kmem, &mix);
            let mut b = MixRunner::new(&bsa, &mix);
            a.run(mix.len() as u64 + 1000);
            b.run(mix.len() as u64 + 1000);
        }
        assert_eq!(kmem.free_pages(), free0);
        kmem.assert_no_reports();
        assert_eq!(bsa.allocated_bytes(), 0);
        for order in [0, 3, 9, MAX_ORDER] {
            let b = bsa.alloc(order).unwrap();
            assert_eq!(b.as_ptr() as usize % (PAGE_SIZE << order), 0, "order-{order} block misaligned");
            // SAFETY: just allocated with `order`, never used.
            unsafe { bsa.free(b, order) };
        }
        assert!(bsa.alloc(MAX_ORDER + 1).is_none());
    }
}
