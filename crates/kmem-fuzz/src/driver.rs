//! The deterministic driver: every input of a target's seed corpus, then random mutations of
//! them (seeded), bounded by a number of executions and a time limit. A panic in the target
//! is a finding: the input is written to `target/kmem-fuzz/crashes/` and returned.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{mutate::mutate, Target};

/// How long a driver run may go.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Mutated inputs to run after the corpus (at most).
    pub iters: u64,
    /// Wall-clock limit for the mutations (the corpus always runs in full).
    pub time: Duration,
    /// Seed of the mutation generator.
    pub seed: u64,
}

impl Budget {
    /// From the environment: `KMEM_FUZZ_ITERS` (default `iters`), `KMEM_FUZZ_SECS` (default
    /// `secs`) and `KMEM_FUZZ_SEED` (default 0).
    pub fn from_env(iters: u64, secs: f64) -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self {
            iters: var("KMEM_FUZZ_ITERS").and_then(|s| s.parse().ok()).unwrap_or(iters),
            time: Duration::from_secs_f64(var("KMEM_FUZZ_SECS").and_then(|s| s.parse().ok()).unwrap_or(secs)),
            seed: var("KMEM_FUZZ_SEED").and_then(|s| s.parse().ok()).unwrap_or(0),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Corpus inputs run.
    pub corpus: usize,
    /// Mutated inputs run.
    pub mutations: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// A target that panicked.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The target.
    pub target: &'static str,
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
    /// Where the input was saved.
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} panicked: {}", self.target, self.message)?;
        if let Some(p) = &self.saved {
            write!(
                f,
                "\n  input saved to {} (rerun: cargo run -p kmem-fuzz -- exec {} {})",
                p.display(),
                self.target,
                p.display()
            )?;
        }
        write!(
            f,
            "\n  input ({} bytes): {:?}",
            self.input.len(),
            String::from_utf8_lossy(&self.input[..self.input.len().min(400)])
        )
    }
}

/// The seed corpus directory of a target (`crates/kmem-fuzz/corpus/<name>`).
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name)
}

/// The seed corpus of a target, sorted by file name.
pub fn load_corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(corpus_dir(name))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Runs `t` on one input; a panic becomes its message.
pub fn exec(t: &Target, data: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| (t.run)(data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

fn save(t: &Target, data: &[u8]) -> Option<PathBuf> {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/kmem-fuzz/crashes");
    std::fs::create_dir_all(&dir).ok()?;
    let p = dir.join(format!("{}-{h:016x}", t.name));
    std::fs::write(&p, data).ok()?;
    Some(p)
}

/// Runs the corpus, then mutations within `budget`.
pub fn run(t: &Target, budget: Budget) -> Result<Outcome, Box<Crash>> {
    let start = Instant::now();
    let corpus: Vec<Vec<u8>> = load_corpus(t.name).into_iter().map(|(_, b)| b).collect();
    let crash = |input: &[u8], message| {
        Box::new(Crash { target: t.name, input: input.to_vec(), message, saved: save(t, input) })
    };
    for input in &corpus {
        exec(t, input).map_err(|m| crash(input, m))?;
    }
    let mut rng = SmallRng::seed_from_u64(budget.seed ^ t.name.bytes().fold(0, |h, b| h * 31 + b as u64));
    let mut n = 0;
    while n < budget.iters && start.elapsed() < budget.time {
        let mut input = if corpus.is_empty() { Vec::new() } else { corpus[rng.gen_range(0..corpus.len())].clone() };
        mutate(&mut rng, &mut input, t.dict, &corpus, t.max_len);
        exec(t, &input).map_err(|m| crash(&input, m))?;
        n += 1;
    }
    Ok(Outcome { corpus: corpus.len(), mutations: n, elapsed: start.elapsed() })
}

/// Shrinks a failing input: removes chunks (halves down to single bytes) while the target
/// still fails with the same first line of message. Returns the smallest input found and
/// its message.
pub fn minimize(t: &Target, input: &[u8]) -> Option<(Vec<u8>, String)> {
    let first_line = |m: &str| m.lines().next().unwrap_or("").to_owned();
    let want = first_line(&exec(t, input).err()?);
    let mut cur = input.to_vec();
    let mut chunk = cur.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < cur.len() {
            let mut cand = cur.clone();
            cand.drain(i..(i + chunk).min(cur.len()));
            match exec(t, &cand) {
                Err(m) if first_line(&m) == want => cur = cand,
                _ => i += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    let msg = exec(t, &cur).err()?;
    Some((cur, msg))
}
