//! kmem's `allocator_api2` allocators: std-shaped collections (`allocator_api2`'s `Vec`,
//! `Box`) in one machine's kmalloc ([`kmem_alloc::Kmalloc`]) and in one slab cache's objects
//! ([`kmem_alloc::SlabAlloc`]), on stable Rust. Then the same machine's /proc/slabinfo shows
//! where they live.
//!
//! Run: `cargo run -p kmem-alloc --example allocator_api2`.

use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use kmem::SlabFlags;
use kmem_alloc::{Kmalloc, SlabAlloc};

#[derive(Debug)]
struct Node {
    id: u64,
    parent: Option<u64>,
    name: [u8; 16],
}

fn main() {
    let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().expect("machine boots");

    // Any layout through kmalloc: 1000 u64s are one 8000-byte block of the kmalloc-8k bucket.
    let mut squares: Vec<u64, _> = Vec::new_in(Kmalloc::new(&m));
    squares.extend((0..1000u64).map(|i| i * i));
    println!("{} squares in kmalloc memory, capacity {}", squares.len(), squares.capacity());

    // One slab cache's objects: each Box is one object of "node_cache".
    let cache = m
        .kmem_cache_create("node_cache", size_of::<Node>(), align_of::<Node>(), SlabFlags::NONE, None)
        .expect("cache created");
    let nodes: std::vec::Vec<Box<Node, SlabAlloc<'_>>> = (0..100)
        .map(|id| {
            Box::new_in(
                Node { id, parent: id.checked_sub(1), name: *b"node\0\0\0\0\0\0\0\0\0\0\0\0" },
                SlabAlloc::new(&m, &cache),
            )
        })
        .collect();
    println!(
        "{} nodes in {:?} objects; the last: {:?}",
        nodes.len(),
        cache.name(),
        nodes.last().map(|n| (n.id, n.parent))
    );
    assert_eq!(nodes[0].name[..4], *b"node");

    let mut info = String::new();
    kmem::proc::slabinfo(&m, &mut info).expect("slabinfo");
    for line in info.lines().filter(|l| l.starts_with("node_cache") || l.starts_with("kmalloc-8k ")) {
        println!("{line}");
    }
    drop(nodes);
    m.kmem_cache_destroy(cache);
}
