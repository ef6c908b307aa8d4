//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use kmem::{Order, ZoneType};
use kmem_hosted::Machine;

/// buddyinfo numbers of every populated zone: (node, zone, nr_free per order), after draining
/// the per-CPU lists (so that every free page is back in the buddy lists).
/// Whether the test runs under valgrind's memcheck (`scripts/memcheck.sh` sets
/// `KMEM_MEMCHECK=1`): the longest tests then run a smaller grid of the same paths.
pub fn under_memcheck() -> bool {
    std::env::var_os("KMEM_MEMCHECK").is_some_and(|v| v == "1")
}

pub fn buddyinfo(m: &Machine) -> Vec<(usize, ZoneType, [usize; 11])> {
    m.drain_all_pages();
    m.zones()
        .filter(|z| z.is_populated())
        .map(|z| (z.node(), z.zone_type(), std::array::from_fn(|o| z.nr_free(Order::new(o as u32).unwrap()))))
        .collect()
}

/// Free pages over all zones: buddy lists plus per-CPU lists.
pub fn free_pages(m: &Machine) -> usize {
    m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum()
}

/// Fills `len` bytes of `p` with a pattern derived from `tag`.
pub fn stamp(p: std::ptr::NonNull<u8>, len: usize, tag: u8) {
    // SAFETY: callers pass objects they own of at least `len` bytes.
    let b = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) };
    for (i, x) in b.iter_mut().enumerate() {
        *x = tag.wrapping_add(i as u8);
    }
}

/// Checks a pattern written by [`stamp`].
pub fn check(p: std::ptr::NonNull<u8>, len: usize, tag: u8) {
    // SAFETY: callers pass objects they own of at least `len` bytes.
    let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    for (i, x) in b.iter().enumerate() {
        assert_eq!(*x, tag.wrapping_add(i as u8), "object {p:?} byte {i} changed under its owner");
    }
}

/// Frees an object of `c` the test owns.
pub fn free(m: &Machine, c: &kmem::KmemCache, p: std::ptr::NonNull<u8>) {
    // SAFETY: the tests only free objects they allocated from `c` and no longer use.
    unsafe { m.kmem_cache_free(c, p) };
}

/// The /proc/slabinfo line of cache `name`, if it is listed.
pub fn slabinfo_line(m: &Machine, name: &str) -> Option<String> {
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    s.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_owned)
}

/// After a misuse: kmem keeps working. Allocates 10,000 blocks of a few sizes (kmalloc from
/// 8 bytes to a large block, a slab cache, pages), stamps each with its own pattern, checks
/// every pattern (no two blocks overlap, nothing was handed out twice), frees them all, and
/// checks the machine's invariants. No report may be made meanwhile.
pub fn assert_still_works(m: &Machine) {
    use kmem::{Gfp, SlabFlags};
    let before: u64 = kmem::ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum();
    let sizes = [8usize, 24, 64, 200, 512, 1024, 4096, 9000];
    let cache = m.kmem_cache_create("still_works", 96, 0, SlabFlags::NONE, None).unwrap();
    let mut blocks: Vec<(*mut u8, usize, u8)> = Vec::with_capacity(10_000);
    for i in 0..10_000usize {
        let tag = (i % 251) as u8;
        let (p, len) = match i % 10 {
            8 => (m.kmem_cache_alloc(&cache, Gfp::KERNEL).unwrap().as_ptr(), 96),
            9 if i % 100 == 9 => {
                let a = m.__get_free_pages(Gfp::KERNEL, Order::ZERO).unwrap();
                (a.as_mut_ptr::<u8>(), kmem::PAGE_SIZE)
            }
            k => {
                let len = sizes[k % sizes.len()];
                (m.kmalloc(len, Gfp::KERNEL).unwrap().as_ptr(), len)
            }
        };
        // SAFETY: a fresh block of `len` bytes, ours.
        unsafe { std::slice::from_raw_parts_mut(p, len) }.iter_mut().enumerate().for_each(|(j, b)| {
            *b = tag.wrapping_add(j as u8);
        });
        blocks.push((p, len, tag));
    }
    for &(p, len, tag) in &blocks {
        // SAFETY: as above, still ours.
        let b = unsafe { std::slice::from_raw_parts(p, len) };
        assert!(
            b.iter().enumerate().all(|(j, &x)| x == tag.wrapping_add(j as u8)),
            "block {p:?} ({len} bytes) was overwritten"
        );
    }
    for (i, &(p, _, _)) in blocks.iter().enumerate() {
        // SAFETY: each block is freed once, by the API that allocated it.
        unsafe {
            match i % 10 {
                8 => m.kmem_cache_free(&cache, std::ptr::NonNull::new(p).unwrap()),
                9 if i % 100 == 9 => m.free_pages(kmem::VirtAddr::from_ptr(p), Order::ZERO),
                _ => m.kfree(p),
            }
        }
    }
    drop(cache);
    let after: u64 = kmem::ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum();
    assert_eq!(after, before, "kmem reported while it should just work: {:?}", m.reports().last());
    m.verify().unwrap();
}

/// Runs `f` in a forked child; returns the signal that killed it (None if it exited). The
/// child must only touch memory and die or return (it leaves with `_exit`): the caller's
/// test has no other thread that could hold a lock at the fork.
pub fn in_child(f: impl FnOnce()) -> Option<i32> {
    // SAFETY: per this function's contract, the child takes no lock another thread of the
    // parent could have held at fork; it only touches memory and dies or `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: leave the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}
