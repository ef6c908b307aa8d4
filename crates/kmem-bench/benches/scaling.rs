//! Thread scaling of order-0 alloc+free: 1 and 2 threads, each pinned to its own CPU of a
//! 2-CPU kmem machine, for
//!
//! - `kmem_pcp`: one machine, per-CPU page lists on (the default);
//! - `kmem_buddy`: one machine, per-CPU lists off: every call takes the zone lock;
//! - `buddy_system_allocator`: one shared `LockedHeap`;
//! - `kmem_pcp_private` (baseline): one single-CPU machine per thread, so the threads share
//!   nothing; its ratio is what the host gives two independent threads, the ceiling for the
//!   others.
//!
//! Two workloads: back-to-back alloc+free pairs, and a random walk over up to 64 live pages
//! per thread (see [`kmem_bench::scaling`]).
//!
//! Measurement, made for a small shared virtual machine: each thread is also pinned to the
//! host CPU of its number, since the host's CPUs need not be equally fast (a guest's CPU may
//! share a core with another guest). A run is three windows of `--secs` (default 0.5 s,
//! millions of pairs) back to back, so that they see the host in one state: one thread on
//! CPU 0, one thread on CPU 1, two threads on CPUs 0 and 1; its ratio is the 2-thread rate
//! over the mean of the two 1-thread rates. A run is clean if no thread lost its CPU to
//! another process for more than 5% of any window (`/proc/thread-self/schedstat`). Rounds
//! of one run per configuration, configurations interleaved, repeat until every
//! configuration has `--reps` clean runs (default 5) or `--budget` seconds (default 90)
//! have passed. The table shows medians over the clean runs (over all runs, marked *, where
//! none was clean), the range of the 2-thread rates, and how many runs were clean. Prints a
//! markdown table.
//!
//! `cargo bench -p kmem-bench --bench scaling [-- --secs 0.5 --reps 5 --budget 90 --only
//! kmem_pcp,kmem_pcp_private]`; without `--bench` (as under `cargo test --all-targets`) it
//! runs every configuration once for a few milliseconds and checks that all memory came back.

use std::time::{Duration, Instant};

use kmem_bench::scaling::{measure_on, median, pin_host_cpu, Sample, Workload};
use kmem_bench::{BsaPages, KmemPages, BENCH_RAM_MIB};

const WORKLOADS: [Workload; 2] = [Workload::Pairs, Workload::WorkingSet { max_live: 64 }];
const ALLOCATORS: [&str; 4] = ["kmem_pcp", "kmem_buddy", "buddy_system_allocator", "kmem_pcp_private"];

/// A run is clean if every thread ran on a CPU for at least this share of the window.
const CLEAN_ON_CPU: f64 = 0.95;

/// One run: one thread on CPU 0, one thread on CPU 1, two threads.
type Run = [Sample; 3];

/// True if no thread of any window lost its CPU for long.
fn is_clean(r: &Run) -> bool {
    r.iter().all(|s| s.on_cpu >= CLEAN_ON_CPU)
}

/// The runs of one configuration: the clean ones (all if none is clean).
struct Runs {
    /// Pairs per second of each window of a run.
    rates: [Vec<f64>; 3],
    /// 2-thread rate over the mean 1-thread rate, run by run.
    ratios: Vec<f64>,
    clean: usize,
    total: usize,
}

impl Runs {
    fn of(runs: &[Run]) -> Self {
        let clean = runs.iter().filter(|r| is_clean(r)).count();
        let kept: Vec<&Run> = runs.iter().filter(|r| clean == 0 || is_clean(r)).collect();
        Self {
            rates: [0, 1, 2].map(|t| kept.iter().map(|r| r[t].rate).collect()),
            ratios: kept.iter().map(|r| r[2].rate / ((r[0].rate + r[1].rate) / 2.0)).collect(),
            clean,
            total: runs.len(),
        }
    }

    /// The median of window `t`, in millions, with the range with `range`.
    fn cell(&self, t: usize, range: bool) -> String {
        let v = &self.rates[t];
        let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if range && v.len() > 1 {
            format!("{:.2} ({:.2}-{:.2})", median(v) / 1e6, lo / 1e6, hi / 1e6)
        } else {
            format!("{:.2}", median(v) / 1e6)
        }
    }

    fn clean_of(&self) -> String {
        let star = if self.clean == 0 { "*" } else { "" };
        format!("{}/{}{star}", self.clean, self.total)
    }
}

struct Opts {
    bench: bool,
    secs: f64,
    reps: usize,
    budget: f64,
    /// Allocators to run (all if empty).
    only: Vec<String>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str);
    let secs =
        value("--secs").map(|v| v.parse().expect("--secs takes seconds")).unwrap_or(if bench { 0.5 } else { 0.005 });
    let reps = value("--reps").map(|v| v.parse().expect("--reps takes a count")).unwrap_or(if bench { 5 } else { 1 });
    let default_budget = if bench { 90.0 } else { 0.0 };
    let budget = value("--budget").map(|v| v.parse().expect("--budget takes seconds")).unwrap_or(default_budget);
    let only = value("--only").map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
    Opts { bench, secs, reps: reps.max(1), budget, only }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One thread on each of `cpus`, all sharing `a`.
fn on<'a, A>(a: &'a A, cpus: &[usize]) -> Vec<(&'a A, usize)> {
    cpus.iter().map(|&c| (a, c)).collect()
}

fn main() {
    let o = opts();
    let window = Duration::from_secs_f64(o.secs);
    let load_before = loadavg();

    let pcp = KmemPages::with_cpus(BENCH_RAM_MIB, 2);
    let buddy = KmemPages::with_cpus(BENCH_RAM_MIB, 2);
    buddy.set_pcp(false);
    let bsa = BsaPages::new(BENCH_RAM_MIB);
    let private = [KmemPages::new(BENCH_RAM_MIB), KmemPages::new(BENCH_RAM_MIB)];
    let free0 = [pcp.free_pages(), buddy.free_pages(), private[0].free_pages(), private[1].free_pages()];

    // results[workload][allocator] = the runs.
    let mut results: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); ALLOCATORS.len()]; WORKLOADS.len()];
    let start = Instant::now();
    let wanted = |ai: usize| o.only.is_empty() || o.only.iter().any(|n| n == ALLOCATORS[ai]);
    let done = |r: &[Run]| r.iter().filter(|r| is_clean(r)).count() >= o.reps;
    loop {
        for (wi, &w) in WORKLOADS.iter().enumerate() {
            for (ai, r) in results[wi].iter_mut().enumerate() {
                if !wanted(ai) || done(r) {
                    continue;
                }
                // CPU lists of the three windows.
                let run = [&[0][..], &[1], &[0, 1]].map(|cpus| match ai {
                    0 => measure_on(&on(&pcp, cpus), w, window),
                    1 => measure_on(&on(&buddy, cpus), w, window),
                    2 => measure_on(&on(&bsa, cpus), w, window),
                    _ => measure_on(&cpus.iter().map(|&c| (&private[c], c)).collect::<Vec<_>>(), w, window),
                });
                r.push(run);
            }
        }
        let all_done = results.iter().all(|w| w.iter().enumerate().all(|(ai, r)| !wanted(ai) || done(r)));
        if all_done || start.elapsed().as_secs_f64() > o.budget {
            break;
        }
    }

    for k in [&pcp, &buddy, &private[0], &private[1]] {
        k.assert_no_reports();
    }
    let free1 = [pcp.free_pages(), buddy.free_pages(), private[0].free_pages(), private[1].free_pages()];
    assert_eq!(free0, free1, "kmem got back every page");
    assert_eq!(bsa.allocated_bytes(), 0, "buddy_system_allocator got back every block");

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let host_pinned = std::thread::spawn(|| pin_host_cpu(0)).join().unwrap_or(false);
    println!();
    println!(
        "Order-0 alloc+free pairs per second, all threads together: median of the clean runs; \
         windows of {} s, up to {} clean runs wanted; {:.0} s in all. Host: {cpus} CPUs{}, load \
         average {load_before} before, {} after.",
        o.secs,
        o.reps,
        start.elapsed().as_secs_f64(),
        if host_pinned { "" } else { " (threads not pinned to host CPUs)" },
        loadavg()
    );
    println!();
    println!(
        "| allocator | workload | 1 thread on CPU 0, M pairs/s | 1 thread on CPU 1 | 2 threads (range) | 2t / 1t | clean runs |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (wi, w) in WORKLOADS.iter().enumerate() {
        for (ai, name) in ALLOCATORS.iter().enumerate().filter(|&(ai, _)| wanted(ai)) {
            let runs = Runs::of(&results[wi][ai]);
            println!(
                "| {name} | {} | {} | {} | {} | {:.2} | {} |",
                w.label(),
                runs.cell(0, false),
                runs.cell(1, false),
                runs.cell(2, true),
                median(&runs.ratios),
                runs.clean_of()
            );
        }
    }
    println!();
    let zone = pcp.machine().zones().max_by_key(|z| z.managed_pages()).expect("a zone");
    let ps = zone.pageset(0).expect("pagesets");
    println!(
        "Threads pinned to CPUs 0 and 1 of a 2-CPU kmem machine ({BENCH_RAM_MIB} MiB; per-CPU lists of \
         zone {}: batch {}, high {}). kmem_pcp_private: one 1-CPU machine per thread, nothing \
         shared (the host's ceiling). Each thread is pinned to the same-numbered kmem CPU and \
         host CPU. 2t / 1t: median over the runs of the 2-thread rate over the mean of the two \
         1-thread rates of the same run (its three windows back to back). Clean runs: every \
         thread of the run was on its CPU for at least {}% of its window \
         (/proc/thread-self/schedstat), i.e. no other process of this host took the CPU; only \
         those count, unless there are none (marked *).",
        zone.name(),
        ps.batch(),
        ps.high(),
        CLEAN_ON_CPU * 100.0
    );
    if !o.bench {
        println!("(test mode: one short run each; `cargo bench` for figures)");
    }
}
