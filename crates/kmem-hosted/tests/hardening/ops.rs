//! The operations of the model and their proptest strategies.

use kmem::kmalloc::KMALLOC_MAX_SIZE;
use proptest::prelude::*;

/// Cache slots of one world.
pub const SLOTS: usize = 3;
/// Object sizes of the test caches.
pub const CACHE_SIZES: [usize; 6] = [8, 24, 96, 200, 700, 2048];
/// Per-CPU request sizes and alignments (those below 4 are raised to 4, as Linux does).
pub const PERCPU_SIZES: [usize; 8] = [4, 8, 16, 24, 64, 200, 1024, 4096];
pub const PERCPU_ALIGNS: [usize; 7] = [1, 2, 4, 8, 16, 64, 256];

/// One call of the public API (indices are reduced modulo what exists when applied).
#[derive(Clone, Debug)]
pub enum Op {
    /// `alloc_pages(gfp, order)`.
    Pages { order: u32, gfp: u8 },
    /// `kmem_cache_create` into an empty slot (size index; with a constructor or not).
    CacheCreate { slot: u8, size: u8, ctor: bool },
    /// `kmem_cache_alloc` / `kmem_cache_zalloc`.
    CacheAlloc { slot: u8, zero: bool },
    /// `kmem_cache_shrink`.
    CacheShrink { slot: u8 },
    /// Frees the slot's objects, then `kmem_cache_destroy`.
    CacheDestroy { slot: u8 },
    /// `kmalloc` / `kzalloc` (in IRQ context with `GFP_ATOMIC` if `irq`).
    Kmalloc { size: usize, gfp: u8, irq: bool },
    /// `krealloc` of a live kmalloc block (or of NULL).
    Krealloc { pick: usize, size: usize },
    /// `vmalloc` / `vzalloc`.
    Vmalloc { size: usize, zero: bool },
    /// `vrealloc` of a live vmalloc block (or of NULL).
    Vrealloc { pick: usize, size: usize },
    /// `__alloc_percpu(size, align)` (indices into the tables).
    Percpu { size: u8, align: u8 },
    /// Frees a live block with its API's free (in IRQ context if `irq`, except per-CPU).
    Free { pick: usize, irq: bool },
}

/// kmalloc sizes: 0, small, every bucket, large blocks up to `KMALLOC_MAX_SIZE`, and a few
/// above it (which must fail).
pub fn kmalloc_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        8 => 1usize..=256,
        6 => 257usize..=8192,
        3 => 8193usize..=(256 << 10),
        1 => (256usize << 10)..=KMALLOC_MAX_SIZE,
        1 => (KMALLOC_MAX_SIZE + 1)..=(5 << 20),
    ]
}

/// vmalloc sizes: mostly a few pages, sometimes up to 1 MiB.
pub fn vmalloc_size() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 1usize..=(64 << 10), 1 => (64usize << 10)..=(1 << 20)]
}

/// Page orders: mostly small, sometimes up to `MAX_PAGE_ORDER`.
pub fn order() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0u32..=3, 2 => 4u32..=7, 1 => 8u32..=10]
}

/// One operation, weighted so that allocations and frees balance and every API is used.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (order(), any::<u8>()).prop_map(|(order, gfp)| Op::Pages { order, gfp }),
        1 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(slot, size, ctor)| Op::CacheCreate { slot, size, ctor }),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(slot, zero)| Op::CacheAlloc { slot, zero }),
        1 => any::<u8>().prop_map(|slot| Op::CacheShrink { slot }),
        1 => any::<u8>().prop_map(|slot| Op::CacheDestroy { slot }),
        5 => (kmalloc_size(), any::<u8>(), prop::bool::weighted(0.2)).prop_map(|(size, gfp, irq)| Op::Kmalloc { size, gfp, irq }),
        2 => (any::<usize>(), prop_oneof![1 => Just(0usize), 9 => kmalloc_size()]).prop_map(|(pick, size)| Op::Krealloc { pick, size }),
        2 => (vmalloc_size(), any::<bool>()).prop_map(|(size, zero)| Op::Vmalloc { size, zero }),
        1 => (any::<usize>(), prop_oneof![1 => Just(0usize), 9 => vmalloc_size()]).prop_map(|(pick, size)| Op::Vrealloc { pick, size }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(size, align)| Op::Percpu { size, align }),
        14 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(pick, irq)| Op::Free { pick, irq }),
    ]
}
