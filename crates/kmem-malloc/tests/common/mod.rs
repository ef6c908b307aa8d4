//! What the tests of the `LD_PRELOAD` library share: the library itself, built once per test
//! binary as it is deployed, and the test for programs a test needs.

#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

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
