//! kmem as the global allocator of a process that does nothing else (RSS is
//! process-wide): the machine grows by hot-add and gives freed memory back to the host.

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;
use common::rss_kb;

#[test]
fn grows_by_hot_add_and_gives_memory_back() {
    let before = global::online_bytes();
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..96u8 {
        blocks.push(vec![i; 3 << 20]); // 3 MiB: kmalloc's page path
    }
    assert!(
        global::online_bytes() > before.max(global::BOOT_RAM),
        "the machine grew: {before} -> {}",
        global::online_bytes()
    );
    // The hot-added sections' descriptors sit at their vmemmap slots: still one array.
    assert!(global::machine().unwrap().memmap_is_flat());
    for (i, b) in blocks.iter().enumerate() {
        assert!(b.iter().step_by(4096).all(|&x| x == i as u8));
    }
    let peak = rss_kb();
    drop(blocks);
    // Frees of 2 MiB and more trigger reporting at once (rate-limited): give it a few rounds.
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(110));
        drop(vec![0u8; 3 << 20]);
        if rss_kb() < peak / 2 {
            break;
        }
    }
    assert!(rss_kb() < peak / 2, "freed memory went back to the host: peak {peak} kB, now {} kB", rss_kb());
}
