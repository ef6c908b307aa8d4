//! The model-based test machinery of issue 12 ("test kmem like a hardened allocator"),
//! shared by `api_model.rs` and `hardening_stress.rs`: content stamps ([`stamp`]), the
//! operations ([`ops`]), the reference model and its interpreter ([`world`]), and the
//! invariant scanner ([`scan`]).
//!
//! The model holds every live block (page block, slab object, kmalloc, vmalloc, per-CPU area)
//! with its address ranges and a content stamp (written at allocation, checked before each
//! free). The interpreter of random operations checks each answer: alignment, zone, zeroing,
//! `ksize`, constructor state, contents kept by `krealloc`/`vrealloc`, `TooLarge` above
//! 4 MiB. The scanner runs after every operation (one thread) or at barriers (three threads
//! on two CPUs). At the end everything is freed and the free pages return to the baseline
//! taken after warm-up (`quiesce`: shrink every cache, purge vmalloc, free empty per-CPU
//! chunks, drain the per-CPU lists, until it settles; page-table pages that vmalloc kept are
//! counted apart). A self-test damages each invariant on purpose and checks that the scanner
//! or the stamps catch it. The stress test and the fuzz target `alloc_ops` (crates/kmem-fuzz)
//! reuse the same ideas; `alloc_ops` also does misuse (adjacent double frees, interior, wild
//! and wrong-cache frees, sleeping allocations in IRQ context), each of which must be
//! reported while legal calls never are.
#![allow(dead_code)]

pub mod ops;
pub mod scan;
pub mod stamp;
pub mod world;
