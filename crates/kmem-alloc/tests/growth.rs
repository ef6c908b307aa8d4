//! The process machine grows before it reclaims (`route::alloc_slow`): while the hotplug
//! reserve lasts, a full machine takes another section, and direct reclaim (with its flush of
//! every CPU's sheaves) runs only once the reserve is used up.
//!
//! Each test is its own process (the machine, its RAM and its counters are process-wide):
//! the reserve test re-runs this binary with `KMEM_RAM_MAX`, which the machine reads at boot.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;

/// Small blocks of several classes, every fourth freed at once (the frees fill the CPU's
/// sheaves, which reclaim would flush): a heap that only grows, as a script interpreter's
/// building a large hash does. Allocates until the machine has grown by `sections` sections
/// (with 0, until `cap` blocks are live) or an allocation fails; returns the blocks and
/// whether one failed.
fn grow_a_heap(sections: usize, cap: usize) -> (Vec<(usize, Layout)>, bool) {
    let m = global::machine().expect("booted");
    let section_pages = global::BOOT_RAM as usize / 4096;
    let target = m.totalram_pages() + sections * section_pages;
    let mut live = Vec::with_capacity(cap);
    let sizes = [16usize, 24, 40, 64, 96, 200];
    let mut i = 0usize;
    while (sections == 0 || m.totalram_pages() < target) && live.len() < cap {
        let l = Layout::from_size_align(sizes[i % sizes.len()], 8).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe { A.alloc(l) };
        if p.is_null() {
            return (live, true);
        }
        // SAFETY: a fresh block of `l.size()` bytes.
        unsafe { p.write_bytes(i as u8, l.size()) };
        if i % 4 == 3 {
            // SAFETY: just allocated with `l`, not used again.
            unsafe { A.dealloc(p, l) };
        } else {
            live.push((p as usize, l));
        }
        i += 1;
    }
    (live, false)
}

fn free_all(live: Vec<(usize, Layout)>) {
    for (p, l) in live {
        // SAFETY: each a live block of this allocator with its layout.
        unsafe { A.dealloc(p as *mut u8, l) };
    }
}

#[test]
fn a_full_machine_grows_without_reclaiming() {
    if std::env::var_os("KMEM_RAM_MAX").is_some() {
        return; // the reserve test's child runs its own test only
    }
    let m = global::machine().expect("booted");
    let before = m.reclaim_events();
    let (live, failed) = grow_a_heap(2, 12_000_000);
    assert!(!failed, "an allocation failed with the reserve unused");
    let after = m.reclaim_events();
    assert!(
        global::online_bytes() >= 3 * global::BOOT_RAM,
        "the machine grew by two sections: {} bytes online",
        global::online_bytes()
    );
    assert_eq!(after.allocstall_total(), before.allocstall_total(), "no direct reclaim while the machine could grow");
    assert_eq!(after.slab_cpu_flushes, before.slab_cpu_flushes, "no CPU's sheaves flushed");
    for (n, &(p, l)) in live.iter().enumerate().step_by(997) {
        // SAFETY: live blocks, each filled with one byte value when allocated.
        let (first, last) = unsafe { (*(p as *const u8), *((p + l.size() - 1) as *const u8)) };
        assert_eq!(first, last, "block {n} intact");
    }
    free_all(live);
    m.verify().unwrap();
}

#[test]
#[ignore = "run in a child process by reclaim_runs_once_the_reserve_is_used_up"]
fn child_fill_a_small_reserve() {
    let m = global::machine().expect("booted");
    assert_eq!(global::hotplug_max(), 256 << 20, "KMEM_RAM_MAX was read at boot");
    let (live, failed) = grow_a_heap(64, 40_000_000);
    assert!(failed, "the reserve of 256 MiB ran out");
    assert!(m.allocstall() > 0, "direct reclaim ran before the allocation failed");
    // The machine keeps working: freed memory serves new allocations.
    free_all(live);
    let (again, failed) = grow_a_heap(0, 100_000);
    assert!(!failed && again.len() == 100_000, "allocations succeed again after the frees");
    free_all(again);
    m.verify().unwrap();
    println!("child done");
}

#[test]
fn reclaim_runs_once_the_reserve_is_used_up() {
    if std::env::var_os("KMEM_RAM_MAX").is_some() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_fill_a_small_reserve", "--ignored", "--nocapture", "--test-threads=1"])
        .env("KMEM_RAM_MAX", "256M")
        .output()
        .unwrap();
    common::assert_child_done(&out);
}
