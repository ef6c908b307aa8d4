//! What the tests of the `LD_PRELOAD` library share: the library itself, built once per test
//! binary as it is deployed, the test for programs a test needs, and runs of a command with
//! and without kmem (scratch directories, outputs compared).

#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `libkmem_malloc.so`, built on first use as it is deployed (`cd crates/kmem-malloc &&
/// cargo build --release`: that directory's `.cargo/config.toml` gives the PIE relocation
/// model and one codegen unit) into the same directory, `<target>/kmem-malloc-pie`, so the
/// test, `scripts/memcheck.sh` and `scripts/cost_check.sh` share one build.
pub fn lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        // CARGO_TARGET_TMPDIR is `<target>/tmp`.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp").join("kmem-malloc-pie");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let t = Instant::now();
        let out = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--release"])
            // Its own target directory: the outer `cargo test` holds the lock of its own.
            .env("CARGO_TARGET_DIR", &target)
            // The flags come from the crate's .cargo/config.toml, not from the outer build.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "building libkmem_malloc.so failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let so = target.join("release/libkmem_malloc.so");
        assert!(so.exists(), "{} was not built", so.display());
        eprintln!("built {} in {:.1?}", so.display(), t.elapsed());
        so
    })
}

/// Whether `prog` can be run (`--version`). A missing program fails the test (`.ci/run`
/// installs them all), unless `KMEM_SKIP_MISSING_TOOLS=1` is set: then the test prints
/// `SKIPPED: <test>: <prog> is not installed` and returns false, to be skipped.
pub fn installed(test: &str, prog: &str) -> bool {
    match Command::new(prog).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => true,
        Err(e) => {
            let skip = std::env::var_os("KMEM_SKIP_MISSING_TOOLS").is_some_and(|v| v == "1");
            assert!(
                skip,
                "{test}: {prog} is not installed ({e}); install it (.ci/run does) or set KMEM_SKIP_MISSING_TOOLS=1 to skip"
            );
            // Printed even without --nocapture: the skip must be seen.
            let _ = writeln!(std::io::stdout().lock(), "SKIPPED: {test}: {prog} is not installed ({e})");
            eprintln!("SKIPPED: {test}: {prog} is not installed ({e})");
            false
        }
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kmem-malloc-preload").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cmd` with kmem preloaded or not; returns its output and wall time.
pub fn run(mut cmd: Command, kmem: bool) -> (Output, Duration) {
    if kmem {
        cmd.env("LD_PRELOAD", lib());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    (out, t.elapsed())
}

pub fn check_ok(what: &str, kmem: bool, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cannot be preloaded"), "{what}: LD_PRELOAD failed: {stderr}");
    assert!(
        out.status.success(),
        "{what} ({}) failed: {}\nstdout:\n{}\nstderr:\n{stderr}",
        if kmem { "kmem" } else { "system malloc" },
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs the command `make()` builds with and without kmem: both succeed with the same
/// stdout. Returns the runs (system malloc's, kmem's).
pub fn same_output(what: &str, make: impl Fn() -> Command) -> (Output, Output) {
    let (sys, t_sys) = run(make(), false);
    check_ok(what, false, &sys);
    let (km, t_km) = run(make(), true);
    check_ok(what, true, &km);
    eprintln!("{what}: system malloc {t_sys:.2?}, kmem {t_km:.2?}");
    if sys.stdout != km.stdout {
        let (a, b) = (String::from_utf8_lossy(&sys.stdout), String::from_utf8_lossy(&km.stdout));
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        panic!(
            "{what}: stdout differs ({} vs {} bytes); first differing line {first:?}:\n  system: {:?}\n  kmem:   {:?}",
            sys.stdout.len(),
            km.stdout.len(),
            first.and_then(|i| a.lines().nth(i)),
            first.and_then(|i| b.lines().nth(i)),
        );
    }
    (sys, km)
}
