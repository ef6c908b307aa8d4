//! `global::trim` (C's `malloc_trim`): free memory goes back to the host at once, whatever
//! the give-back policy left (it reports after frees of 2 MiB or more and after slab frees
//! past the CPU's sheaf, never after frees of 1 MiB blocks). Its own process (RSS is
//! process-wide).

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;
use common::rss_kb;

#[test]
fn trim_gives_freed_memory_back_at_once() {
    // 200 blocks of 1 MiB (kmalloc's page path), every page touched.
    let blocks: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i | 1; 1 << 20]).collect();
    let peak = rss_kb();
    assert!(peak > 200_000, "the blocks are resident: {peak} kB");
    drop(blocks);
    let before = rss_kb();
    assert!(before > peak * 3 / 4, "frees of 1 MiB give nothing back on their own: {before} kB of {peak}");
    assert!(global::trim(), "memory went back");
    let after = rss_kb();
    assert!(after < peak / 4, "resident after trim: {after} kB of a {peak} kB peak");
    // The machine still works; memory given back reads as zero when handed out again.
    let v = vec![0u8; 100 << 20];
    assert!(v.iter().step_by(4096).all(|&b| b == 0));
    global::machine().unwrap().verify().unwrap();
}
