//! Multi-threaded workloads: kmem (`kmem_alloc::KmemAlloc`) against mimalloc, jemalloc,
//! glibc, talc, linked_list_allocator and buddy_system_allocator, all in one run, each through
//! its `GlobalAlloc` from every thread (see [`kmem_bench::malloc::threads`] for the
//! workloads): larson (cross-thread frees), threadtest (each thread its own blocks) and
//! thread_churn (short-lived threads), with 2, 4 and 8 threads.
//!
//! Prints tab-separated results on stdout, progress on stderr (`scripts/benchmarks.sh` turns
//! them into BENCHMARKS.md):
//!
//! `mt WORKLOAD THREADS PEER MEDIAN MIN MAX SAMPLES KTHREADS`: millions of alloc + free pairs
//! per second (median, lowest and highest sample), and for thread_churn the median thousands
//! of threads started and ended per second (else 0). Every (workload, threads) cell runs each
//! allocator once as warm-up, then `--rounds` samples of `--sample-ms` each, the allocators
//! taking turns in a rotating order so that drift of the machine hits all of them alike.
//!
//! Usage (after `cargo bench -p kmem-bench --bench threads --no-run`, or through cargo):
//! `threads [--only SUBSTRING] [--peers NAME,NAME..] [--threads N,N..] [--rounds N] [--sample-ms MS]`.

use std::time::{Duration, Instant};

use kmem_bench::malloc::{run_mt, Dispatch, MtWorkload, Peer, MT_THREADS};
use kmem_bench::scaling::median;

#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

struct Opts {
    only: Option<String>,
    rounds: usize,
    sample: Duration,
    peers: Vec<Peer>,
    threads: Vec<usize>,
}

fn list<T>(s: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    s.split(',').map(|n| f(n).ok_or(format!("bad list element {n:?}"))).collect()
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        only: None,
        rounds: 5,
        sample: Duration::from_millis(50),
        peers: Peer::ALL.to_vec(),
        threads: MT_THREADS.to_vec(),
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
            "--peers" => o.peers = list(&val("--peers")?, Peer::from_name)?,
            "--threads" => o.threads = list(&val("--threads")?, |n| n.parse().ok().filter(|&t| t > 0))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("threads bench: {e}");
            std::process::exit(2);
        }
    };
    for w in MtWorkload::ALL {
        if o.only.as_deref().is_some_and(|f| !w.name().contains(f)) {
            continue;
        }
        for &t in &o.threads {
            let t0 = Instant::now();
            for &p in &o.peers {
                run_mt(p, w, t, o.sample / 4);
            }
            let n = o.peers.len();
            let mut rate = vec![Vec::new(); n];
            let mut kthreads = vec![Vec::new(); n];
            for round in 0..o.rounds {
                for k in 0..n {
                    let i = (k + round) % n;
                    let r = run_mt(o.peers[i], w, t, o.sample);
                    rate[i].push(r.mpairs_per_s());
                    kthreads[i].push(r.kthreads_per_s());
                }
            }
            for (i, p) in o.peers.iter().enumerate() {
                let v = &rate[i];
                let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = v.iter().copied().fold(0.0, f64::max);
                println!(
                    "mt\t{}\t{t}\t{}\t{:.4}\t{min:.4}\t{max:.4}\t{}\t{:.3}",
                    w.name(),
                    p.name(),
                    median(v),
                    v.len(),
                    median(&kthreads[i])
                );
            }
            eprintln!("threads bench: {} x{t} done in {:.1} s", w.name(), t0.elapsed().as_secs_f64());
        }
    }
}
