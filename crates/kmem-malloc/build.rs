//! Links the unwinder into `libkmem_malloc.so` statically (`libgcc_eh.a`) instead of making
//! every process that preloads it also load `libgcc_s.so.1`.
//!
//! The standard library of `*-linux-gnu` asks the linker for `-lgcc_s` (its unwinder, for
//! panics); loading that second library costs each process about 0.08 ms and 8 page faults
//! of its 0.2 ms and 26 faults for loading kmem (measured with `scripts/startup_cost.sh`), a
//! sixth of issue 13's 0.5 ms start-up budget. `link/libgcc_s.so` is a linker script that
//! the linker finds first on this search path and that pulls in `libgcc_eh.a`, the same
//! unwinder as an archive. Its symbols stay local to the library (a cdylib exports only its
//! own API), so programs that unwind with `libgcc_s` are unaffected. Without a
//! `libgcc_eh.a` beside the C compiler the library links `libgcc_s` as before.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/libgcc_s.so");
    println!("cargo:rerun-if-env-changed=CC");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !gnu_linux {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    // `cc -print-file-name=X` prints X's full path if the compiler has it, else just X.
    let eh = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if Path::new(&eh).is_absolute() && Path::new(&eh).exists() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("link");
        println!("cargo:rustc-link-search=native={}", dir.display());
    } else {
        println!("cargo:warning=libgcc_eh.a not found: libkmem_malloc.so will load libgcc_s.so.1");
    }
}
