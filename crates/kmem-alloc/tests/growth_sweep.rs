//! Before the process machine grows, it sweeps the slab lists (`global::grow`): objects that
//! frees parked in the caches' barns go back to the page allocator and serve other sizes,
//! rather than the machine taking another section. Its own process: the machine and its
//! RAM are process-wide.

use std::alloc::{GlobalAlloc, Layout};

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

/// Allocates `bytes` worth of blocks of `size` bytes, each written.
fn fill(size: usize, bytes: usize) -> Vec<usize> {
    let l = Layout::from_size_align(size, 8).unwrap();
    (0..bytes / size)
        .map(|i| {
            // SAFETY: a non-zero size.
            let p = unsafe { A.alloc(l) };
            assert!(!p.is_null());
            // SAFETY: a fresh block of `size` bytes.
            unsafe { p.write_bytes(i as u8, size) };
            p as usize
        })
        .collect()
}

fn free(size: usize, blocks: Vec<usize>) {
    let l = Layout::from_size_align(size, 8).unwrap();
    for p in blocks {
        // SAFETY: allocated by `fill` with this layout, freed once.
        unsafe { A.dealloc(p as *mut u8, l) };
    }
}

#[test]
fn memory_parked_in_the_barns_serves_other_sizes_before_the_machine_grows() {
    let m = global::machine().expect("booted");
    let before = global::online_bytes();
    assert!(before <= global::BOOT_RAM, "a fresh machine: {before} bytes online");
    // Three sizes, 30 MiB each, all freed: each cache's barn keeps up to 16 MiB of them
    // (`slab_barn_bytes`), 48 MiB in all, which the page allocator does not see.
    const MIB: usize = 1 << 20;
    for size in [64, 96, 128] {
        free(size, fill(size, 30 * MIB));
    }
    assert_eq!(global::online_bytes(), before, "90 MiB fit the boot section");
    let sweeps = m.reclaim_events().slab_sweeps;
    // 100 MiB of another size: more than the boot section has free beside the barns.
    let big = fill(512, 100 * MIB);
    assert!(m.reclaim_events().slab_sweeps > sweeps, "the full machine swept its slab lists");
    assert_eq!(global::online_bytes(), before, "the barns' memory served the new size: the machine did not grow");
    assert_eq!(m.allocstall(), 0, "no direct reclaim");
    free(512, big);
    m.verify().unwrap();
}
