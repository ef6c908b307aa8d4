//! Medium blocks (above 8 KiB, up to 128 KiB) on the process machine come from slab caches of
//! their own (`malloc-16k` to `malloc-128k`: `kmem_alloc`'s `medium.rs`), not
//! kmalloc's compound pages: power-of-two blocks aligned to their size, which keep their
//! contents through `realloc`, are never handed out twice (a double free is reported and
//! changes nothing), and are each thread's own under concurrency.

use kmem_alloc::misuse::{self, Misuse};
use kmem_alloc::{global, raw, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

fn fill(p: *mut u8, n: usize, tag: u8) {
    for o in (0..n).step_by(512).chain([n - 1]) {
        // SAFETY: inside a live block of `n` bytes.
        unsafe { p.add(o).write(tag ^ (o / 512) as u8) };
    }
}

fn check(p: *mut u8, n: usize, tag: u8) {
    for o in (0..n).step_by(512).chain([n - 1]) {
        // SAFETY: inside a live block of `n` bytes.
        assert_eq!(unsafe { p.add(o).read() }, tag ^ (o / 512) as u8, "byte {o} of {p:?}");
    }
}

/// [`check`] of the pattern's bytes below `n` that [`fill`] wrote into a longer block.
fn check_prefix(p: *mut u8, n: usize, tag: u8) {
    for o in (0..n).step_by(512) {
        // SAFETY: inside a live block of at least `n` bytes.
        assert_eq!(unsafe { p.add(o).read() }, tag ^ (o / 512) as u8, "byte {o} of {p:?}");
    }
}

fn slabinfo() -> String {
    let mut s = String::new();
    kmem::proc::slabinfo(global::machine().unwrap(), &mut s).unwrap();
    s
}

/// Objects of cache `name` in `/proc/slabinfo` (`num_objs`; 0 if it has no line).
fn objects(name: &str) -> usize {
    slabinfo()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map_or(0, |l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
}

#[test]
fn medium_blocks_come_from_their_own_caches() {
    for (size, bucket) in [
        (8193usize, 16384usize),
        (12000, 16384),
        (16384, 16384),
        (16385, 32768),
        (40000, 65536),
        (65536, 65536),
        (65537, 131072),
        (131072, 131072),
    ] {
        let name = ["malloc-16k", "malloc-32k", "malloc-64k", "malloc-128k"][bucket.trailing_zeros() as usize - 14];
        let blocks: Vec<_> = (0..20).map(|_| raw::malloc(size)).collect();
        assert!(objects(name) >= 20, "{size} B from {name}: {}", slabinfo());
        for (i, &p) in blocks.iter().enumerate() {
            assert!(!p.is_null());
            assert_eq!(p as usize % bucket, 0, "{size} B aligned to its {bucket} B bucket");
            // SAFETY: live.
            assert_eq!(unsafe { raw::usable_size(p) }, bucket);
            fill(p, size, i as u8);
        }
        for (i, &p) in blocks.iter().enumerate() {
            check(p, size, i as u8);
            // SAFETY: live, freed once.
            unsafe { raw::free(p) };
        }
    }
    // Past 128 KiB: kmalloc's pages, as before (no cache of 256 KiB).
    let p = raw::malloc(131073);
    // SAFETY: live.
    assert_eq!(unsafe { raw::usable_size(p) }, 256 << 10);
    assert!(!slabinfo().contains("malloc-256k"));
    // SAFETY: live, freed once.
    unsafe { raw::free(p) };
    // calloc's are zeroed, aligned requests naturally aligned.
    let z = raw::alloc_aligned(30000, 16, true);
    // SAFETY: live, 30000 bytes.
    assert!(unsafe { std::slice::from_raw_parts(z, 30000) }.iter().all(|&b| b == 0));
    let a = raw::alloc_aligned(100, 32768, false);
    assert_eq!(a as usize % 32768, 0);
    // SAFETY: live, freed once.
    unsafe {
        raw::free(z);
        raw::free(a);
    }
}

#[test]
fn medium_blocks_keep_their_contents_through_realloc() {
    let mut p = raw::malloc(100);
    let mut n = 100;
    fill(p, n, 7);
    for m in [12_000, 20_000, 50_000, 70_000, 9_000, 120_000, 140_000, 60_000, 3_000] {
        // SAFETY: `p` is live with `n` bytes.
        let q = unsafe { raw::realloc_aligned(p, None, m, 16) };
        assert!(!q.is_null());
        check_prefix(q, n.min(m), 7);
        fill(q, m, 7);
        (p, n) = (q, m);
    }
    // SAFETY: live, freed once.
    unsafe { raw::free(p) };
}

#[test]
fn a_double_free_of_a_medium_block_is_reported_and_changes_nothing() {
    let a = raw::malloc(20_000);
    fill(a, 20_000, 1);
    // SAFETY: live and ours.
    unsafe { raw::free(a) };
    let before = misuse::count(Misuse::Machine);
    // SAFETY: the misuse under test: `a` was freed.
    unsafe { raw::free(a) };
    assert_eq!(misuse::count(Misuse::Machine), before + 1, "one report");
    let (b, c) = (raw::malloc(20_000), raw::malloc(20_000));
    assert_ne!(b, c, "two mallocs after a double free returned the same block");
    fill(b, 20_000, 2);
    fill(c, 20_000, 3);
    check(b, 20_000, 2);
    check(c, 20_000, 3);
    // SAFETY: live, freed once.
    unsafe {
        raw::free(b);
        raw::free(c);
    }
}

#[test]
fn threads_churning_medium_blocks_never_share_one() {
    std::thread::scope(|s| {
        for t in 0..6u64 {
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
                for i in 0..4000usize {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if live.len() > 40 || (x & 3 == 0 && !live.is_empty()) {
                        let (p, n, tag) = live.swap_remove((x >> 8) as usize % live.len());
                        check(p, n, tag);
                        // SAFETY: live, freed once.
                        unsafe { raw::free(p) };
                    } else {
                        let n = 8193 + (x >> 16) as usize % (131072 - 8192);
                        let p = raw::malloc(n);
                        assert!(!p.is_null());
                        fill(p, n, i as u8);
                        live.push((p, n, i as u8));
                    }
                }
                for (p, n, tag) in live {
                    check(p, n, tag);
                    // SAFETY: live, freed once.
                    unsafe { raw::free(p) };
                }
            });
        }
    });
    assert!(global::machine().unwrap().verify().is_ok());
}
