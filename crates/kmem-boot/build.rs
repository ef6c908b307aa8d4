//! Links the kernel with `link.ld` when building for a bare-metal target; the host build
//! (a stub binary) links as usual.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        // A fixed-address kernel: the image runs where the linker put it (1 MiB), nobody
        // applies relocations, so the output must not be position independent.
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-znorelro");
    }
}
