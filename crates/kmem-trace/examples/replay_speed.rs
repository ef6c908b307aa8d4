//! Replay-engine speed on a capture (default: `input::sample_trace`: `$KMEM_TRACE`, the full
//! shared capture beside the checkout, or the repository's excerpt), parsing excluded: pre-parses
//! every line, then replays the operations on one machine `KMEM_REPLAY_PASSES` times (default
//! 2: the first pass also faults the machine's RAM in; later passes find it warm), freeing
//! everything between passes. `KMEM_REPLAY_NOZERO=1` drops `__GFP_ZERO`. For profiling with callgrind:
//! `cargo run --release -p kmem-trace --example replay_speed -- [TRACE]`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kmem_hosted::MachineBuilder;
use kmem_trace::run::parse_trace;
use kmem_trace::{input, Frontend, Kind, Replayer};

fn main() {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| input::sample_trace(Path::new(env!("CARGO_MANIFEST_DIR"))));
    let passes: usize = std::env::var("KMEM_REPLAY_PASSES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let trace = input::Trace::open(&path).expect("open trace");
    let mut fe = Frontend::new();
    fe.set_drop_zero(std::env::var_os("KMEM_REPLAY_NOZERO").is_some());
    let t = Instant::now();
    let ops = parse_trace(trace, &mut fe).expect("read trace");
    println!("parse: {} lines in {:.3} s", fe.counts.lines, t.elapsed().as_secs_f64());
    let m = MachineBuilder::new().ram_mib(4096).cpus(4).build().expect("boot");
    for pass in 0..passes {
        let mut rp = Replayer::new(&m, false);
        let t = Instant::now();
        rp.apply_all(&ops, fe.caches());
        let e = t.elapsed().as_secs_f64();
        let failures: u64 = rp.counts.failures.iter().sum();
        println!(
            "pass {pass}: {} ops in {e:.3} s = {:.2} M ops/s ({failures} failures, {} kmem_cache_alloc)",
            ops.len(),
            ops.len() as f64 / e / 1e6,
            rp.counts.replayed[Kind::CacheAlloc as usize]
        );
        rp.release_all();
    }
}
