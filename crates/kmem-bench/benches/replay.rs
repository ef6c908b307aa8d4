//! Trace replay throughput (`kmem replay`'s engine) on a real kmem capture, in events per
//! second: `$KMEM_TRACE`, else the full `shared/traces/fsops.trace.zst` when a `shared/`
//! directory lies beside the checkout, else the repository's 50,000-line excerpt
//! (`fixtures/traces/fsops-excerpt.trace.zst`; the figures are then noisier):
//!
//! - `parse`: decompress and parse every line into operations on one thread (no machine);
//! - `cold`: apply the pre-parsed operations to a freshly booted 4 GiB, 4-CPU machine
//!   (parsing excluded; the host faults the machine's RAM in as it is first touched);
//! - `warm`: the same on a machine that has replayed the trace once already (and freed it
//!   all), so its RAM is faulted in: the allocator's and the engine's own speed;
//! - `cold_nozero`, `warm_nozero`: both without `__GFP_ZERO` (`kmem replay --no-zero`): the
//!   capture's 113,178 `GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP` pages are 442 MiB of
//!   memset, which is memory bandwidth, not allocation work;
//! - `stream`: read, parse and replay in batches, as `kmem replay` does (parsing included):
//!   a thread decompresses, a second parses, the calling one replays.
//!
//! Each runs `KMEM_REPLAY_RUNS` times (default 3; boot excluded); the best and the median are
//! printed. `KMEM_REPLAY_LIMIT=N` replays only the first N operations and skips `stream`.
//! Run with `cargo bench -p kmem-bench --bench replay`.

use std::path::Path;
use std::time::{Duration, Instant};

use kmem::Gfp;
use kmem_hosted::MachineBuilder;
use kmem_trace::run::{parse_all, replay_stream, MachineMem};
use kmem_trace::{input, Frontend, Op, Replayer};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn report(what: &str, events: u64, times: &mut [Duration]) {
    times.sort();
    let rate = |t: Duration| events as f64 / t.as_secs_f64() / 1e6;
    println!(
        "replay/{what:<11} {events:>8} events: best {:>6.2} M events/s, median {:>6.2} M events/s ({:.3} s)",
        rate(times[0]),
        rate(times[times.len() / 2]),
        times[times.len() / 2].as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that names none of ours skips all.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref().is_some_and(|f| !"replay/parse replay/cold replay/warm replay/stream".contains(f)) {
        return;
    }
    let path = input::sample_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    println!("replay bench: {}", path.display());
    let runs = env_usize("KMEM_REPLAY_RUNS", 3).max(1);
    let limit = env_usize("KMEM_REPLAY_LIMIT", usize::MAX);
    // As `kmem replay` boots it: anonymous RAM in small pages (no vmalloc; the capture has no
    // vmalloc events). `KMEM_REPLAY_MEMFD=1`: the memfd RAM of other machines;
    // `KMEM_REPLAY_THP=1`: transparent huge pages (`kmem replay --thp`).
    let anon = std::env::var_os("KMEM_REPLAY_MEMFD").is_none();
    let thp = std::env::var_os("KMEM_REPLAY_THP").is_some();
    let machine =
        || MachineBuilder::new().ram_mib(4096).cpus(4).anonymous_ram(anon).ram_hugepages(thp).build().expect("boot");

    let mut fe = Frontend::new();
    let mut times = Vec::new();
    let mut ops = Vec::new();
    for _ in 0..runs {
        let (mut r, _) = input::open(&path).expect("open trace");
        fe = Frontend::new();
        let t = Instant::now();
        ops = parse_all(&mut *r, &mut fe).expect("read trace");
        times.push(t.elapsed());
    }
    ops.truncate(limit);
    report("parse", fe.counts.lines, &mut times);

    let nozero: Vec<Op> = ops.iter().map(|o| Op { gfp: o.gfp.without(Gfp::ZERO), ..*o }).collect();
    for (name, ops, warm) in
        [("cold", &ops, false), ("warm", &ops, true), ("cold_nozero", &nozero, false), ("warm_nozero", &nozero, true)]
    {
        times.clear();
        for _ in 0..runs {
            let m = machine();
            if warm {
                let mut rp = Replayer::new(&m, false);
                rp.apply_all(ops, fe.caches());
                rp.release_all();
            }
            let mut rp = Replayer::new(&m, false);
            let t = Instant::now();
            rp.apply_all(ops, fe.caches());
            times.push(t.elapsed());
            let failures: u64 = rp.counts.failures.iter().sum();
            assert_eq!(failures, 0, "allocation failures on the 4 GiB machine");
            rp.release_all();
        }
        report(name, ops.len() as u64, &mut times);
    }

    if limit != usize::MAX {
        return;
    }
    times.clear();
    let mut events = 0;
    for _ in 0..runs {
        let m = machine();
        let mut rp = Replayer::new(&m, false);
        let (mut r, _) = input::open(&path).expect("open trace");
        let mut fe = Frontend::new();
        let timing = replay_stream(&mut *r, &mut fe, &mut rp, &mut MachineMem::default(), |_, _| {}).expect("read");
        times.push(timing.total);
        events = fe.counts.total_events();
        rp.release_all();
    }
    report("stream", events, &mut times);
}
