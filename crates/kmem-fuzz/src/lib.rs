//! # kmem-fuzz: fuzzing kmem on the stable toolchain
//!
//! Three targets, each a plain `fn(&[u8])` that panics when a property fails (as a
//! libFuzzer or AFL target would):
//!
//! | target | what it feeds | module |
//! | --- | --- | --- |
//! | `gfp` | GFP flag text: `Gfp::parse`, `Display`, the trace replay's `parse_gfp` | [`gfp`] |
//! | `trace` | ftrace text: `kmem_trace::Frontend` line by line and as a stream, then a replay on a small machine | [`trace`] |
//! | `alloc_ops` | an operation interpreter over a small machine, with misuse that must be reported | [`alloc_ops`] |
//!
//! Each has a seed corpus committed under `crates/kmem-fuzz/corpus/<target>/` (small files;
//! add an input there to keep it forever, e.g. one that found a bug).
//!
//! ## What CI runs
//!
//! `cargo test -p kmem-fuzz` (part of `cargo test --workspace`): every corpus input of every
//! target, then seeded random mutations of them ([`mutate`]), bounded by a number of
//! executions and a time limit per target ([`driver::Budget`]; about 20 s in all in a debug
//! build). A panic fails the test with the input, which is also saved under
//! `target/kmem-fuzz/crashes/`.
//!
//! ## Longer runs
//!
//! ```text
//! # Release build, 10 minutes per target, another seed:
//! KMEM_FUZZ_SECS=600 KMEM_FUZZ_ITERS=100000000 KMEM_FUZZ_SEED=7 \
//!     cargo test --release -p kmem-fuzz -- --nocapture
//! # Or the command: one target, with its own budget
//! cargo run --release -p kmem-fuzz -- run alloc_ops --secs 600 --seed 7
//! # Replay one input (a saved crash):
//! cargo run -p kmem-fuzz -- exec trace target/kmem-fuzz/crashes/trace-0123456789abcdef
//! ```
//!
//! ## Coverage-guided fuzzing with AFL++ (optional, local)
//!
//! `kmem-fuzz exec <target>` with no file reads its input from standard input and aborts on
//! a failed property, which is what AFL needs; `cargo afl` instruments the build. Nothing
//! in the workspace depends on AFL:
//!
//! ```text
//! cargo install cargo-afl
//! cargo afl build --release -p kmem-fuzz
//! cargo afl fuzz -i crates/kmem-fuzz/corpus/trace -o /tmp/afl-trace \
//!     target/release/kmem-fuzz exec trace
//! ```
//!
//! AFL then runs the binary once per input (no persistent mode: about a thousand
//! executions a second for `alloc_ops`, whose machine boots per input). Copy what
//! `/tmp/afl-trace/default/crashes/` holds into the corpus once it is fixed.
//!
//! ## Regression seeds
//!
//! `corpus/alloc_ops/hole2_non_adjacent_double_free.bin` (`free(a); free(b); free(a)` on two
//! 32-byte kmallocs) corrupted the slab freelist before the free path checked every free
//! object's free pointer (issue 12, hole 2); it must now make one report and nothing else.

pub mod alloc_ops;
pub mod driver;
pub mod gfp;
pub mod mutate;
pub mod trace;

/// A fuzz target.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Its name (the corpus directory's name).
    pub name: &'static str,
    /// Runs one input; panics when a property fails.
    pub run: fn(&[u8]),
    /// Words the mutator inserts.
    pub dict: &'static [&'static [u8]],
    /// Longest input the mutator makes.
    pub max_len: usize,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target { name: "gfp", run: gfp::run, dict: gfp::DICT, max_len: 512 },
    Target { name: "trace", run: trace::run, dict: trace::DICT, max_len: 16 << 10 },
    Target { name: "alloc_ops", run: alloc_ops::run, dict: alloc_ops::DICT, max_len: 4 << 10 },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
