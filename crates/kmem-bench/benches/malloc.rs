//! General-purpose allocation: kmem (`kmem_alloc::KmemAlloc`) against mimalloc, jemalloc,
//! glibc, talc, linked_list_allocator and buddy_system_allocator, all in one run, each through
//! its `GlobalAlloc` (see [`kmem_bench::malloc`] for the allocators and workloads).
//!
//! Prints tab-separated results on stdout, progress on stderr (`scripts/benchmarks.sh` turns
//! them into BENCHMARKS.md):
//!
//! - `time WORKLOAD PEER MEDIAN_NS MIN_NS MAX_NS SAMPLES`: ns per operation. Every workload
//!   runs once per allocator as warm-up, then `--rounds` samples of at least `--sample-ms`
//!   each, the allocators taking turns (in a rotating order) so that drift of the machine
//!   hits all of them alike; an allocator that has spent [`PEER_BUDGET`] on a workload stops
//!   at [`MIN_SAMPLES`] samples;
//! - `prodcons PEER MEDIAN MIN MAX SAMPLES`: millions of blocks per second, 2 threads;
//! - `rss WORKLOAD PEER KIB`: peak RSS (`VmHWM`) of a child process (this binary again, with
//!   `--rss-child PEER WORKLOAD`) that ran the workload [`RSS_RUNS`] times with that allocator
//!   alone; `WORKLOAD` `all` runs every workload once and then the producer/consumer pair;
//!   `rss_baseline KIB`: the same child running nothing.
//!
//! Usage (after `cargo bench -p kmem-bench --bench malloc --no-run`, or through cargo):
//! `malloc [--only SUBSTRING] [--peers NAME,NAME..] [--rounds N] [--sample-ms MS] [--no-rss] [--no-time]`.

use std::process::Command;
use std::time::{Duration, Instant};

use kmem_bench::malloc::{peak_rss_kib, prodcons, run_once, Dispatch, Inputs, Peer, Workload};
use kmem_bench::scaling::median;

#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

/// Runs of the workload in each peak-RSS child.
const RSS_RUNS: usize = 2;
/// Samples of every allocator, however slow.
const MIN_SAMPLES: usize = 3;
/// Time after which an allocator takes no more samples of a workload (past `MIN_SAMPLES`).
const PEER_BUDGET: Duration = Duration::from_secs(2);
/// Blocks of one producer/consumer sample.
const PRODCONS_BLOCKS: usize = 1 << 18;

struct Opts {
    only: Option<String>,
    rounds: usize,
    sample: Duration,
    rss: bool,
    time: bool,
    peers: Vec<Peer>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        only: None,
        rounds: 9,
        sample: Duration::from_millis(15),
        rss: true,
        time: true,
        peers: Peer::ALL.to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--bench" => {}
            "--only" => o.only = Some(val("--only")?),
            "--rounds" => o.rounds = val("--rounds")?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--sample-ms" => {
                o.sample = Duration::from_millis(val("--sample-ms")?.parse().map_err(|e| format!("--sample-ms: {e}"))?)
            }
            "--peers" => {
                o.peers = val("--peers")?
                    .split(',')
                    .map(|n| Peer::from_name(n).ok_or(format!("unknown peer {n:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--no-rss" => o.rss = false,
            "--no-time" => o.time = false,
            "--rss-child" => {
                let peer = val("--rss-child")?;
                let w = val("--rss-child")?;
                rss_child(&peer, &w)?;
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn selected(o: &Opts, name: &str) -> bool {
    o.only.as_deref().is_none_or(|f| name.contains(f))
}

/// One child: runs `workload` (a workload name, `all` or `none`) on `peer`, prints its peak RSS.
fn rss_child(peer: &str, workload: &str) -> Result<(), String> {
    let peer = Peer::from_name(peer).ok_or(format!("unknown peer {peer:?}"))?;
    let mut inputs = Inputs::new();
    match workload {
        "none" => {}
        "all" => {
            for w in Workload::ALL {
                run_once(peer, w, &mut inputs);
            }
            prodcons(peer, PRODCONS_BLOCKS);
        }
        "prodcons" => {
            for _ in 0..RSS_RUNS {
                prodcons(peer, PRODCONS_BLOCKS);
            }
        }
        name => {
            let w = Workload::from_name(name).ok_or(format!("unknown workload {name:?}"))?;
            for _ in 0..RSS_RUNS {
                run_once(peer, w, &mut inputs);
            }
        }
    }
    println!("{}", peak_rss_kib().ok_or("no VmHWM in /proc/self/status")?);
    Ok(())
}

fn child_rss(peer: Peer, workload: &str) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe).args(["--rss-child", peer.name(), workload]).output().ok()?;
    if !out.status.success() {
        eprintln!("rss child {} {workload} failed: {}", peer.name(), String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Ns per operation of `runs` runs of `w` on `peer`.
fn sample(peer: Peer, w: Workload, runs: usize, inputs: &mut Inputs) -> f64 {
    let start = Instant::now();
    let mut ops = 0;
    for _ in 0..runs {
        ops += run_once(peer, w, inputs);
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (median(v), min, max)
}

fn time_workloads(o: &Opts) {
    let mut inputs = Inputs::new();
    for w in Workload::ALL {
        let name = w.name();
        if !selected(o, &name) {
            continue;
        }
        let t0 = Instant::now();
        // Warm-up and calibration: runs per sample for at least `o.sample`.
        let runs: Vec<usize> = o
            .peers
            .iter()
            .map(|&p| {
                run_once(p, w, &mut inputs);
                let start = Instant::now();
                run_once(p, w, &mut inputs);
                let once = start.elapsed().max(Duration::from_nanos(1));
                (o.sample.as_nanos() / once.as_nanos()).max(1) as usize
            })
            .collect();
        let mut samples = vec![Vec::new(); o.peers.len()];
        let mut spent = vec![Duration::ZERO; o.peers.len()];
        for round in 0..o.rounds {
            for k in 0..o.peers.len() {
                let i = (k + round) % o.peers.len();
                // A slow allocator (a quadratic free list) stops at MIN_SAMPLES once over
                // budget, so the whole run keeps to a few minutes.
                if samples[i].len() >= MIN_SAMPLES && spent[i] > PEER_BUDGET {
                    continue;
                }
                let start = Instant::now();
                samples[i].push(sample(o.peers[i], w, runs[i], &mut inputs));
                spent[i] += start.elapsed();
            }
        }
        for (i, p) in o.peers.iter().enumerate() {
            let (med, min, max) = stats(&samples[i]);
            println!("time\t{name}\t{}\t{med:.3}\t{min:.3}\t{max:.3}\t{}", p.name(), samples[i].len());
        }
        eprintln!("malloc bench: {name} done in {:.1} s", t0.elapsed().as_secs_f64());
    }
    if selected(o, "prodcons") {
        let t0 = Instant::now();
        for &p in &o.peers {
            prodcons(p, PRODCONS_BLOCKS / 8);
        }
        let mut samples = vec![Vec::new(); o.peers.len()];
        for round in 0..o.rounds {
            for k in 0..o.peers.len() {
                let i = (k + round) % o.peers.len();
                let d = prodcons(o.peers[i], PRODCONS_BLOCKS);
                samples[i].push(PRODCONS_BLOCKS as f64 / d.as_secs_f64() / 1e6);
            }
        }
        for (i, p) in o.peers.iter().enumerate() {
            let (med, min, max) = stats(&samples[i]);
            println!("prodcons\t{}\t{med:.3}\t{min:.3}\t{max:.3}\t{}", p.name(), samples[i].len());
        }
        eprintln!("malloc bench: prodcons done in {:.1} s", t0.elapsed().as_secs_f64());
    }
}

fn rss(o: &Opts) {
    let t0 = Instant::now();
    if let Some(kib) = child_rss(Peer::System, "none") {
        println!("rss_baseline\t{kib}");
    }
    let mut names: Vec<String> = Workload::ALL.iter().map(|w| w.name()).collect();
    names.push("prodcons".into());
    names.push("all".into());
    for name in names.iter().filter(|n| selected(o, n) || n.as_str() == "all") {
        for &p in &o.peers {
            if let Some(kib) = child_rss(p, name) {
                println!("rss\t{name}\t{}\t{kib}", p.name());
            }
        }
    }
    eprintln!("malloc bench: peak RSS done in {:.1} s", t0.elapsed().as_secs_f64());
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("malloc bench: {e}");
            std::process::exit(2);
        }
    };
    if o.time {
        time_workloads(&o);
    }
    if o.rss {
        rss(&o);
    }
}
