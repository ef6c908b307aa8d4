//! # kmem-malloc: an `LD_PRELOAD` malloc on kmem (work in progress)
//!
//! Built as `libkmem_malloc.so`; `LD_PRELOAD=target/release/libkmem_malloc.so <program>`
//! runs a program with kmem as its allocator.
