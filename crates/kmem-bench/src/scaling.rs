//! Thread scaling: order-0 alloc+free throughput of N threads sharing one allocator.
//!
//! [`measure`] starts one thread per CPU, each pinned to its own CPU of the machine
//! (`kmem_hosted::pin_current_thread`; harmless for allocators that are not kmem machines)
//! and to the same-numbered CPU of the host, warms each up, releases them together and lets them run for a fixed wall-clock window. Each
//! thread counts the alloc+free pairs it completed and times itself; the result is the sum of
//! the threads' rates.
//!
//! On a shared host a thread may also lose its core to other processes for part of the
//! window. Each thread therefore also reads how long it actually ran
//! (`/proc/thread-self/schedstat`), and a [`Sample`] carries a second rate, per second on a
//! CPU, and the least share of the window a thread spent on a CPU: a scaling ratio computed
//! from the CPU-time rates is what the allocator itself gives, whatever else ran.
//!
//! A fixed window rather than a fixed number of pairs per thread: on a small, shared machine
//! one thread is sometimes descheduled for a while; with a fixed amount of work the other
//! thread would then finish first and the run would end with one thread alone, measuring the
//! host's scheduling rather than the allocator. With a window both threads run for all of it.
//!
//! ```
//! use std::time::Duration;
//! use kmem_bench::scaling::{measure, Workload};
//! use kmem_bench::KmemPages;
//!
//! let kmem = KmemPages::with_cpus(32, 2);
//! let s = measure(&[&kmem, &kmem], Workload::Pairs, Duration::from_millis(10));
//! assert!(s.rate > 0.0 && s.cpu_rate >= s.rate * 0.99);
//! kmem.assert_no_reports();
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::PageAllocator;

/// What each thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One order-0 allocation and its free, back to back: the LIFO hot path.
    Pairs,
    /// A random walk over up to `max_live` live order-0 pages: each step allocates (probability
    /// 1/2 while below `max_live`, always when none is live) or frees a uniformly chosen live
    /// page. Pages are freed in random order, not LIFO; one pair is one allocation.
    WorkingSet {
        /// Most pages live at once per thread.
        max_live: usize,
    },
}

impl Workload {
    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Workload::Pairs => "alloc+free".into(),
            Workload::WorkingSet { max_live } => format!("working set {max_live}"),
        }
    }
}

/// Steps a thread runs before the window (fills the per-CPU lists, claims pageblocks).
const WARMUP_STEPS: u64 = 20_000;
/// Steps between two looks at the stop flag.
const CHUNK: u64 = 256;

/// xorshift64: a few instructions per number, so the generator does not dominate the step.
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// One thread's state: the live pages of a working set and its generator.
struct Worker<'a, A: PageAllocator> {
    alloc: &'a A,
    workload: Workload,
    live: Vec<A::Block<'a>>,
    rng: XorShift,
}

impl<'a, A: PageAllocator> Worker<'a, A> {
    fn new(alloc: &'a A, workload: Workload, seed: u64) -> Self {
        let cap = match workload {
            Workload::Pairs => 0,
            Workload::WorkingSet { max_live } => max_live,
        };
        Self { alloc, workload, live: Vec::with_capacity(cap), rng: XorShift(seed | 1) }
    }

    #[inline]
    fn alloc0(&self) -> A::Block<'a> {
        self.alloc.alloc(black_box(0)).expect("the workload is far below the allocator's memory")
    }

    /// Runs `n` steps; returns the allocations made (= pairs, in the long run).
    #[inline(never)]
    fn run(&mut self, n: u64) -> u64 {
        match self.workload {
            Workload::Pairs => {
                for _ in 0..n {
                    let b = self.alloc0();
                    // SAFETY: `b` was just allocated at order 0 and its memory is never used.
                    unsafe { self.alloc.free(black_box(b), 0) };
                }
                n
            }
            Workload::WorkingSet { max_live } => {
                let mut allocs = 0;
                for _ in 0..n {
                    let r = self.rng.next();
                    let len = self.live.len();
                    if len == 0 || (len < max_live && r & 1 == 0) {
                        let b = self.alloc0();
                        self.live.push(b);
                        allocs += 1;
                    } else {
                        let i = (((r >> 32) * len as u64) >> 32) as usize;
                        let b = self.live.swap_remove(i);
                        // SAFETY: `b` was allocated at order 0 by this worker and is removed
                        // from `live` here, so it is freed once; its memory is never used.
                        unsafe { self.alloc.free(b, 0) };
                    }
                }
                allocs
            }
        }
    }
}

impl<A: PageAllocator> Drop for Worker<'_, A> {
    fn drop(&mut self) {
        for b in self.live.drain(..) {
            // SAFETY: every block in `live` was allocated at order 0 by this worker and not
            // freed since.
            unsafe { self.alloc.free(b, 0) };
        }
    }
}

/// One run of [`measure`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Pairs per second of wall-clock time, all threads together.
    pub rate: f64,
    /// Pairs per second each thread spent on a CPU, summed over threads (as `rate` where the
    /// kernel does not report per-thread CPU time).
    pub cpu_rate: f64,
    /// The least fraction of the window that one thread spent on a CPU (1.0: none was
    /// descheduled; 1.0 where unknown).
    pub on_cpu: f64,
}

/// Nanoseconds the calling thread has run on a CPU (`/proc/thread-self/schedstat`, first
/// field; kept up to date by the kernel at every tick and context switch).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Restricts the calling thread to host CPU `cpu` (`sched_setaffinity(0, ...)`, made
/// directly: the crate has no libc binding); false where that is not possible (not x86-64
/// Linux, or the kernel refused, e.g. no such CPU).
pub fn pin_host_cpu(cpu: usize) -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        const SYS_SCHED_SETAFFINITY: isize = 203;
        let mut mask = [0u64; 16];
        if cpu >= mask.len() * 64 {
            return false;
        }
        mask[cpu / 64] = 1 << (cpu % 64);
        let ret: isize;
        // SAFETY: sched_setaffinity(0: this thread, len, mask) reads `len` bytes at `mask`, a
        // live local array of that size, and touches no other memory of ours; the `syscall`
        // instruction clobbers rcx and r11, declared, and does not use the stack.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") SYS_SCHED_SETAFFINITY => ret,
                in("rdi") 0usize,
                in("rsi") core::mem::size_of_val(&mask),
                in("rdx") mask.as_ptr(),
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, readonly),
            );
        }
        ret == 0
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = cpu;
        false
    }
}

/// Runs `workload` on `allocs.len()` threads at once for `window` and returns the pairs per
/// second of all threads together. Thread `i` uses `allocs[i]` and runs on CPU `i`: see
/// [`measure_on`].
///
/// # Panics
///
/// If `allocs` is empty or an allocation fails.
pub fn measure<A: PageAllocator + Sync>(allocs: &[&A], workload: Workload, window: Duration) -> Sample {
    let on: Vec<(&A, usize)> = allocs.iter().enumerate().map(|(cpu, &a)| (a, cpu)).collect();
    measure_on(&on, workload, window)
}

/// As [`measure`], with one `(allocator, cpu)` per thread: the thread is pinned to that CPU of
/// the kmem machine (`kmem_hosted::pin_current_thread`; ignored by other allocators) and, where
/// possible, to host CPU `cpu` modulo the host's CPUs ([`pin_host_cpu`]), so that runs on a
/// host whose CPUs differ in speed (a virtual machine whose CPUs share cores with other
/// guests) compare like with like. Pass the same allocator for each thread to share it, or
/// one per thread for a no-sharing baseline.
///
/// # Panics
///
/// If `threads` is empty or an allocation fails.
pub fn measure_on<A: PageAllocator + Sync>(threads: &[(&A, usize)], workload: Workload, window: Duration) -> Sample {
    assert!(!threads.is_empty(), "at least one thread");
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let barrier = Barrier::new(threads.len() + 1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = threads
            .iter()
            .map(|&(a, cpu)| {
                let (barrier, stop) = (&barrier, &stop);
                s.spawn(move || {
                    pin_host_cpu(cpu % host_cpus);
                    kmem_hosted::pin_current_thread(cpu as u32);
                    let mut w = Worker::new(a, workload, 0x9e37_79b9_7f4a_7c15 ^ cpu as u64);
                    w.run(WARMUP_STEPS);
                    barrier.wait();
                    let cpu0 = thread_cpu_ns();
                    let t = Instant::now();
                    // At least one chunk, so that a thread that starts late still measures.
                    let mut pairs = w.run(CHUNK);
                    while !stop.load(Ordering::Relaxed) {
                        pairs += w.run(CHUNK);
                    }
                    let wall = t.elapsed().as_secs_f64();
                    let cpu = match (cpu0, thread_cpu_ns()) {
                        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
                        _ => wall,
                    };
                    drop(w);
                    (pairs as f64, wall, cpu)
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
        let mut s = Sample { rate: 0.0, cpu_rate: 0.0, on_cpu: 1.0 };
        for t in handles {
            let (pairs, wall, cpu) = t.join().expect("bench thread panicked");
            s.rate += pairs / wall;
            s.cpu_rate += pairs / cpu.min(wall);
            s.on_cpu = s.on_cpu.min((cpu / wall).min(1.0));
        }
        s
    })
}

/// The median of `v` (the mean of the middle two for an even length); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BsaPages, KmemPages};

    #[test]
    fn working_set_stays_bounded_and_returns_everything() {
        let kmem = KmemPages::with_cpus(32, 2);
        let free0 = kmem.free_pages();
        let mut w = Worker::new(&kmem, Workload::WorkingSet { max_live: 64 }, 7);
        let allocs = w.run(10_000);
        assert!(w.live.len() <= 64);
        assert!((4_000..6_000).contains(&allocs), "{allocs} allocations in 10,000 steps");
        drop(w);
        assert_eq!(kmem.free_pages(), free0);
        kmem.assert_no_reports();
    }

    #[test]
    fn measure_shared_and_private() {
        let window = Duration::from_millis(5);
        let kmem = KmemPages::with_cpus(32, 2);
        let free0 = kmem.free_pages();
        for w in [Workload::Pairs, Workload::WorkingSet { max_live: 64 }] {
            for threads in [1, 2] {
                let s = measure(&vec![&kmem; threads], w, window);
                assert!(s.rate > 0.0 && s.cpu_rate >= s.rate && s.on_cpu > 0.0 && s.on_cpu <= 1.0, "{s:?}");
            }
        }
        assert_eq!(kmem.free_pages(), free0);
        kmem.assert_no_reports();
        let (a, b) = (BsaPages::new(32), BsaPages::new(32));
        assert!(measure(&[&a, &b], Workload::WorkingSet { max_live: 64 }, window).rate > 0.0);
        assert_eq!(a.allocated_bytes() + b.allocated_bytes(), 0);
    }

    #[test]
    fn pin_host_cpu_restricts_the_thread() {
        let allowed = || {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
            status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_owned())
        };
        let (pinned, list) = std::thread::spawn(move || (pin_host_cpu(0), allowed())).join().unwrap();
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert!(pinned);
            assert_eq!(list.as_deref(), Some("0"));
        }
        assert!(!std::thread::spawn(|| pin_host_cpu(1 << 20)).join().unwrap());
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
