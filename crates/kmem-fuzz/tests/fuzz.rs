//! The bounded fuzz run CI does: each target's seed corpus, then seeded mutations, within a
//! number of executions and a time limit per target (`KMEM_FUZZ_ITERS`, `KMEM_FUZZ_SECS`,
//! `KMEM_FUZZ_SEED` override them; see the crate docs).

use kmem_fuzz::driver::{self, Budget};
use kmem_fuzz::target;

fn fuzz(name: &str, iters: u64, secs: f64) {
    let t = target(name).unwrap();
    assert!(!driver::load_corpus(name).is_empty(), "{name} has a seed corpus");
    match driver::run(t, Budget::from_env(iters, secs)) {
        Ok(o) => eprintln!("{name}: {} corpus inputs and {} mutations in {:.1?}", o.corpus, o.mutations, o.elapsed),
        Err(c) => panic!("{c}"),
    }
}

#[test]
fn gfp() {
    fuzz("gfp", 20_000, 4.0);
}

#[test]
fn trace() {
    fuzz("trace", 1_500, 8.0);
}

#[test]
fn alloc_ops() {
    fuzz("alloc_ops", 1_500, 8.0);
}

/// The driver finds a failing input: a target that panics on one byte sequence.
#[test]
fn the_driver_reports_a_crash() {
    fn picky(data: &[u8]) {
        assert!(!data.windows(2).any(|w| w == b"]]"), "found it");
    }
    let t = kmem_fuzz::Target { name: "gfp", run: picky, dict: &[b"]"], max_len: 64 };
    let c = driver::run(&t, Budget { iters: 100_000, time: std::time::Duration::from_secs(20), seed: 1 }).unwrap_err();
    assert!(c.message.contains("found it") && c.input.windows(2).any(|w| w == b"]]"), "{c}");
}
