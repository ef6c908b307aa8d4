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
//! Measurement, made for a small shared host: a run is a 1-thread and a 2-thread window of
//! `--secs` (default 0.5 s, millions of pairs) back to back, so that their ratio is taken
//! with the host in one state. A run is clean if no thread lost its core to another process
//! for more than 5% of either window (`/proc/thread-self/schedstat`). Rounds of one run per
//! configuration, configurations interleaved, repeat until every configuration has `--reps`
//! clean runs (default 5) or `--budget` seconds (default 90) have passed. The table shows
//! the median over the clean runs (over all runs, marked *, where none was clean), their
//! range, and how many runs were clean. Prints a markdown table.
//!
//! `cargo bench -p kmem-bench --bench scaling [-- --secs 0.5 --reps 5 --budget 90 --only
//! kmem_pcp,kmem_pcp_private]`; without `--bench` (as under `cargo test --all-targets`) it
//! runs every configuration once for a few milliseconds and checks that all memory came back.

use std::time::{Duration, Instant};

use kmem_bench::scaling::{measure, median, Sample, Workload};
use kmem_bench::{BsaPages, KmemPages, BENCH_RAM_MIB};

const THREADS: [usize; 2] = [1, 2];
const WORKLOADS: [Workload; 2] = [Workload::Pairs, Workload::WorkingSet { max_live: 64 }];
const ALLOCATORS: [&str; 4] = ["kmem_pcp", "kmem_buddy", "buddy_system_allocator", "kmem_pcp_private"];

/// A run is clean if every thread ran on a CPU for at least this share of the window.
const CLEAN_ON_CPU: f64 = 0.95;

/// True if no thread of either window lost its core for long.
fn is_clean(p: &[Sample; 2]) -> bool {
    p.iter().all(|s| s.on_cpu >= CLEAN_ON_CPU)
}

/// The runs of one configuration: the clean ones (all if none is clean).
struct Runs {
    /// Pairs per second of 1 and 2 threads.
    rates: [Vec<f64>; 2],
    /// 2-thread rate over 1-thread rate, run by run.
    ratios: Vec<f64>,
    clean: usize,
    total: usize,
}

impl Runs {
    fn of(pairs: &[[Sample; 2]]) -> Self {
        let clean = pairs.iter().filter(|p| is_clean(p)).count();
        let kept: Vec<&[Sample; 2]> = pairs.iter().filter(|p| clean == 0 || is_clean(p)).collect();
        Self {
            rates: [0, 1].map(|t| kept.iter().map(|p| p[t].rate).collect()),
            ratios: kept.iter().map(|p| p[1].rate / p[0].rate).collect(),
            clean,
            total: pairs.len(),
        }
    }

    /// `median (lo-hi)` of thread count index `t`, in millions.
    fn cell(&self, t: usize) -> String {
        let v = &self.rates[t];
        let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if v.len() > 1 {
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

/// `threads` references to `a`: the threads share it.
fn shared<A>(a: &A, threads: usize) -> Vec<&A> {
    vec![a; threads]
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

    // results[workload][allocator] = one [1-thread, 2-thread] pair of samples per run, taken
    // back to back so that both see the host in the same state.
    let mut results: Vec<Vec<Vec<[Sample; 2]>>> = vec![vec![Vec::new(); ALLOCATORS.len()]; WORKLOADS.len()];
    let start = Instant::now();
    let wanted = |ai: usize| o.only.is_empty() || o.only.iter().any(|n| n == ALLOCATORS[ai]);
    let done = |r: &[[Sample; 2]]| r.iter().filter(|p| is_clean(p)).count() >= o.reps;
    loop {
        for (wi, &w) in WORKLOADS.iter().enumerate() {
            for (ai, r) in results[wi].iter_mut().enumerate() {
                if !wanted(ai) || done(r) {
                    continue;
                }
                let pair = THREADS.map(|n| match ai {
                    0 => measure(&shared(&pcp, n), w, window),
                    1 => measure(&shared(&buddy, n), w, window),
                    2 => measure(&shared(&bsa, n), w, window),
                    _ => measure(&private.iter().take(n).collect::<Vec<_>>(), w, window),
                });
                r.push(pair);
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
    println!();
    println!(
        "Order-0 alloc+free pairs per second, all threads together: median of the clean runs \
         (range in brackets); windows of {} s, up to {} clean runs wanted; {:.0} s in all. Host: \
         {cpus} CPUs, load average {load_before} before, {} after.",
        o.secs,
        o.reps,
        start.elapsed().as_secs_f64(),
        loadavg()
    );
    println!();
    println!(
        "| allocator | workload | 1 thread, M pairs/s | 2 threads, M pairs/s | 2t / 1t | 2t / 1t paired | clean |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (wi, w) in WORKLOADS.iter().enumerate() {
        for (ai, name) in ALLOCATORS.iter().enumerate().filter(|&(ai, _)| wanted(ai)) {
            let runs = Runs::of(&results[wi][ai]);
            println!(
                "| {name} | {} | {} | {} | {:.2} | {:.2} | {} |",
                w.label(),
                runs.cell(0),
                runs.cell(1),
                median(&runs.rates[1]) / median(&runs.rates[0]),
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
         shared (the host's ceiling). 2t / 1t: of the medians; paired: median over the runs of \
         (2-thread rate / the 1-thread rate measured just before it). Clean: runs (1-thread and \
         2-thread back to back) in which every thread was on a CPU for at least {}% of the \
         window (/proc/thread-self/schedstat), i.e. no other process of this host took its core; \
         only those count, unless there are none (marked *).",
        zone.name(),
        ps.batch(),
        ps.high(),
        CLEAN_ON_CPU * 100.0
    );
    if !o.bench {
        println!("(test mode: one short run each; `cargo bench` for figures)");
    }
}
