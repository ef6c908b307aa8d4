//! `realloc` of a block above 4 MiB (a host mapping) that stays one resizes the mapping
//! (`mremap`): its pages move with it, nothing is copied, as glibc does for its mapped
//! chunks. (Its own process: `huge_reuse.rs` counts the whole process's page faults.)

use kmem_alloc::KmemAlloc;

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;
use common::minor_faults;

#[test]
fn realloc_of_a_mapped_block_moves_its_pages_instead_of_copying_them() {
    use std::alloc::{GlobalAlloc, Layout};
    const MIB: usize = 1 << 20;
    let l = Layout::from_size_align(8 * MIB, 8).unwrap();
    // SAFETY: a non-zero size.
    let mut p = unsafe { A.alloc(l) };
    assert!(!p.is_null());
    let mut n = 8 * MIB;
    for o in (0..n).step_by(4096) {
        // SAFETY: inside the block.
        unsafe { p.add(o).write((o / 4096) as u8) };
    }
    // Grow by an eighth at a time to 64 MiB (a buffer built up by appends), then shrink.
    let mut faults = 0;
    while n < 64 * MIB {
        let m = n + n / 8;
        let before = minor_faults(libc::RUSAGE_THREAD);
        // SAFETY: `p` is live with `n` bytes at alignment 8.
        p = unsafe { A.realloc(p, Layout::from_size_align(n, 8).unwrap(), m) };
        faults += minor_faults(libc::RUSAGE_THREAD) - before;
        assert!(!p.is_null());
        for o in (n..m).step_by(4096) {
            // SAFETY: inside the grown block.
            unsafe { p.add(o).write((o / 4096) as u8) };
        }
        n = m;
    }
    // Copying faults in the copied pages of each new mapping (18,589 faults when it did).
    assert!(faults < 1000, "{faults} faults in the reallocs: the pages were copied");
    // SAFETY: `p` is live with `n` bytes.
    p = unsafe { A.realloc(p, Layout::from_size_align(n, 8).unwrap(), 5 * MIB) };
    assert!(!p.is_null());
    for o in (0..5 * MIB).step_by(4096) {
        // SAFETY: inside the shrunk block.
        assert_eq!(unsafe { p.add(o).read() }, (o / 4096) as u8, "page {} kept its contents", o / 4096);
    }
    // SAFETY: live, 5 MiB.
    unsafe { A.dealloc(p, Layout::from_size_align(5 * MIB, 8).unwrap()) };
}
