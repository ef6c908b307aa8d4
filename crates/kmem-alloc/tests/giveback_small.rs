//! kmem as the global allocator of a process that does nothing else (RSS is process-wide):
//! memory freed as many small blocks goes back to the host too. No free here is of 2 MiB or
//! more (which gives memory back at once): the check runs only on frees that went past
//! their CPU's sheaf (`kmem_alloc::global`'s slow-free tick), so this fails if those frees
//! stop counting.
use kmem_alloc::KmemAlloc;

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;
use common::rss_kb;

#[test]
fn small_frees_give_memory_back() {
    const N: usize = 2 << 20; // 128 MiB of 64-byte blocks
    let mut blocks: Vec<Box<[u8; 64]>> = Vec::with_capacity(N);
    for i in 0..N {
        blocks.push(Box::new([i as u8; 64]));
    }
    assert!(blocks.iter().enumerate().step_by(4099).all(|(i, b)| b[63] == i as u8));
    let peak = rss_kb();
    // Frees the blocks and keeps the vector's buffer (its free would be a large one).
    blocks.clear();
    // Giving back is rate-limited (one round per 100 ms): small frees in later rounds run
    // the check again.
    for _ in 0..20 {
        if rss_kb() < peak / 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(110));
        for i in 0..20_000 {
            blocks.push(Box::new([i as u8; 64]));
        }
        blocks.clear();
    }
    assert!(rss_kb() < peak / 2, "freed memory went back to the host: peak {peak} kB, now {} kB", rss_kb());
}
