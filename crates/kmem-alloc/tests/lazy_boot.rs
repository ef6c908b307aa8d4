//! The process's machine boots lazily (`global` module docs): a process that allocates a
//! little has most of its boot section's descriptors still deferred and touched a few dozen
//! pages of RAM; one that allocates a lot uses every deferred chunk before the machine grows.

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

/// Resident pages of `[base, base + len)` (`/proc/self/pagemap`).
fn resident_pages(base: usize, len: usize) -> usize {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut buf = vec![0u8; len / 4096 * 8];
    f.read_exact_at(&mut buf, (base / 4096 * 8) as u64).unwrap();
    buf.chunks_exact(8).filter(|e| u64::from_ne_bytes((*e).try_into().unwrap()) >> 63 != 0).count()
}

#[test]
fn boots_with_little_initialised_and_uses_it_all_before_growing() {
    let small = vec![1u8; 100];
    let m = global::machine().expect("booted");
    assert!(global::ram_is_private(), "anonymous RAM from the start");
    let section = global::BOOT_RAM as usize / 4096;
    let deferred = m.deferred_pages();
    assert!(deferred > section * 3 / 4, "most of the boot section is deferred: {deferred} of {section} frames");
    assert_eq!(m.totalram_pages() * 4096, global::online_bytes() as usize);
    assert!(global::online_bytes() > global::BOOT_RAM * 9 / 10, "MemTotal counts deferred frames");
    m.verify().unwrap();
    // Boot wrote the descriptors of the chunks holding its metadata (whose free remnant
    // serves a short process) and of no whole chunk of free frames (`global::DEFERRED_INIT`):
    // every initialised chunk of the boot section holds a reserved frame.
    let chunk = 1usize << kmem::MAX_PAGE_ORDER;
    let free_chunks: Vec<usize> = (0..section / chunk)
        .map(|c| c * chunk)
        .filter(|&first| m.pfn_valid(kmem::Pfn::new(first)))
        .filter(|&first| (first..first + chunk).all(|p| m.frame_state(kmem::Pfn::new(p)) != kmem::FrameState::Reserved))
        .collect();
    assert!(free_chunks.is_empty(), "boot initialised whole chunks of free frames at pfns {free_chunks:?}");
    let (base, _) = m.ram_range();
    // The test harness allocates too (threads, names, output capture), all on this machine.
    let touched = resident_pages(base, global::BOOT_RAM as usize);
    assert!(touched < 256, "boot and the harness touched {touched} pages of RAM");
    // Allocate until the machine grows: every deferred chunk is used first.
    let grown_at = m.totalram_pages();
    let mut blocks = vec![small];
    while m.totalram_pages() == grown_at {
        assert!(blocks.len() < 200, "the machine never grew");
        let before = m.deferred_pages();
        blocks.push(vec![7u8; 1 << 20]);
        if m.totalram_pages() == grown_at {
            assert!(m.deferred_pages() <= before, "deferred frames only ever decrease");
        }
    }
    assert_eq!(m.deferred_pages(), 0, "no section was hot-added while deferred chunks remained");
    m.verify().unwrap();
}
