//! Threads that make the first request of a medium size at once: each may make the size's
//! cache (`kmem_alloc`'s `medium.rs` publishes one with a compare-exchange and destroys the
//! others), and every block comes from the one published. (Its own process: the caches must
//! not exist yet.)

use kmem_alloc::{global, raw, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

#[test]
fn threads_making_a_medium_cache_at_once_end_with_one() {
    const THREADS: usize = 8;
    drop(Box::new(0u8)); // boot the machine first
    let barrier = std::sync::Barrier::new(THREADS);
    let blocks: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let p = raw::malloc(100_000);
                    assert!(!p.is_null());
                    // SAFETY: live, 100,000 bytes.
                    unsafe { p.write_bytes(7, 100_000) };
                    p as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut s = String::new();
    kmem::proc::slabinfo(global::machine().unwrap(), &mut s).unwrap();
    let lines: Vec<_> = s.lines().filter(|l| l.starts_with("malloc-128k ")).collect();
    assert_eq!(lines.len(), 1, "one cache: {s}");
    let active: usize = lines[0].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(active >= THREADS, "every block from the published cache: {}", lines[0]);
    for p in blocks {
        // SAFETY: live, freed once.
        unsafe { raw::free(p as *mut u8) };
    }
    assert!(global::machine().unwrap().verify().is_ok());
}
