//! kmalloc size classes: `kmalloc_index`, the cache names, and `kmalloc_type`.

use crate::gfp::Gfp;

/// Smallest kmalloc object (`KMALLOC_MIN_SIZE`, `1 << KMALLOC_SHIFT_LOW`).
pub const KMALLOC_MIN_SIZE: usize = 8;
/// Alignment of every kmalloc object of `KMALLOC_ALIGN` bytes or more: the power-of-two
/// caches are naturally aligned, and the others (`kmalloc-96`, `kmalloc-192`) are created
/// with this alignment (Linux uses `ARCH_KMALLOC_MINALIGN`, 8 on x86-64; 16 is what C's
/// `malloc` promises there, so kmem's allocators serve 16-aligned requests from the exact
/// class instead of the next power of two). Smaller requests get `KMALLOC_MIN_SIZE`.
pub const KMALLOC_ALIGN: usize = 16;
/// Largest size served by a kmalloc cache (`KMALLOC_MAX_CACHE_SIZE`); above it kmalloc
/// allocates compound pages.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;
/// Largest kmalloc (`KMALLOC_MAX_SIZE`): one `MAX_PAGE_ORDER` block.
pub const KMALLOC_MAX_SIZE: usize = crate::PAGE_SIZE << crate::MAX_PAGE_ORDER;
/// Size-class indices (0 unused: size 0).
pub const KMALLOC_NR: usize = 14;
/// `ZERO_SIZE_PTR`: what `kmalloc(0)` returns; `kfree` and `ksize` accept it.
pub const ZERO_SIZE_PTR: usize = 16;

/// `enum kmalloc_cache_type` (the ones kmem has).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum KmallocType {
    /// `KMALLOC_NORMAL`: `kmalloc-<n>`.
    Normal = 0,
    /// `KMALLOC_RECLAIM`: `kmalloc-rcl-<n>`, for `__GFP_RECLAIMABLE`.
    Reclaim = 1,
    /// `KMALLOC_DMA`: `dma-kmalloc-<n>`, for `__GFP_DMA`.
    Dma = 2,
}

impl KmallocType {
    /// Number of types.
    pub const COUNT: usize = 3;

    /// `kmalloc_type(flags)`: DMA before reclaimable (no cgroup accounting in kmem).
    #[inline]
    pub const fn of(gfp: Gfp) -> KmallocType {
        if gfp.contains(Gfp::DMA) {
            KmallocType::Dma
        } else if gfp.contains(Gfp::RECLAIMABLE) {
            KmallocType::Reclaim
        } else {
            KmallocType::Normal
        }
    }

    /// The name prefix of the type's caches.
    pub const fn prefix(self) -> &'static str {
        match self {
            KmallocType::Normal => "kmalloc-",
            KmallocType::Reclaim => "kmalloc-rcl-",
            KmallocType::Dma => "dma-kmalloc-",
        }
    }
}

/// Sizes [`kmalloc_index`] looks up in a table: every class (their bounds are all multiples
/// of 8).
const SIZE_INDEX_MAX: usize = KMALLOC_MAX_CACHE_SIZE;

/// `size_index[]` of `mm/slab_common.c`, extended from 192 bytes to every class: the class
/// of sizes 1..=8192 by `(size - 1) / 8` (what `kmalloc_slab` looks up instead of computing
/// `fls`). Linux stops at 192 and computes `fls` above; a table of every class keeps requests
/// of mixed sizes off a branch they would mispredict, and a caller that has checked the size
/// against `KMALLOC_MAX_CACHE_SIZE` (every fast path) pays no second test (1 KiB of table,
/// of which a program touches the lines of the sizes it uses).
const SIZE_INDEX: [u8; SIZE_INDEX_MAX / 8] = {
    let mut t = [0u8; SIZE_INDEX_MAX / 8];
    let mut i = 0;
    while i < SIZE_INDEX_MAX / 8 {
        t[i] = kmalloc_index_slow((i + 1) * 8) as u8;
        i += 1;
    }
    t
};

/// The class of a request that wants [`KMALLOC_ALIGN`] alignment (a C `malloc`'s), by 16-byte
/// granule `(size + 15) / 16`, for sizes 0..=[`KMALLOC_MAX_CACHE_SIZE`]: every class at or
/// above 16 bytes is 16-aligned (their sizes are multiples of 16), so granule `g` is
/// `kmalloc_index(max(16 g, 16))`, and granule 0 (size 0) the 16-byte class. One table
/// lookup where clamping the size to 16 and then indexing [`SIZE_INDEX`] took three
/// instructions more (513 bytes of table).
const SIZE_INDEX_ALIGNED: [u8; SIZE_INDEX_MAX / KMALLOC_ALIGN + 1] = {
    let mut t = [0u8; SIZE_INDEX_MAX / KMALLOC_ALIGN + 1];
    let mut g = 0;
    while g < t.len() {
        let size = if g == 0 { KMALLOC_ALIGN } else { g * KMALLOC_ALIGN };
        t[g] = kmalloc_index_slow(size) as u8;
        g += 1;
    }
    t
};

/// The size class of a request of `size` bytes (0 to [`KMALLOC_MAX_CACHE_SIZE`]) aligned to
/// [`KMALLOC_ALIGN`]: [`kmalloc_index`] of `size.max(KMALLOC_ALIGN)`, in one lookup. `None`
/// past the slab classes.
#[inline(always)]
pub const fn kmalloc_index_aligned(size: usize) -> Option<usize> {
    if size > SIZE_INDEX_MAX {
        return None;
    }
    Some(SIZE_INDEX_ALIGNED[size.div_ceil(KMALLOC_ALIGN)] as usize)
}

/// `__kmalloc_index(size)`: the size class of a request of `size` bytes (1 to
/// [`KMALLOC_MAX_CACHE_SIZE`]); 0 for size 0. Index 1 is kmalloc-96 and 2 kmalloc-192,
/// otherwise index `n` holds objects of `2^n` bytes. Sizes up to 1 KiB are a table lookup.
#[inline(always)]
pub const fn kmalloc_index(size: usize) -> usize {
    if size.wrapping_sub(1) < SIZE_INDEX_MAX {
        return SIZE_INDEX[(size - 1) / 8] as usize;
    }
    kmalloc_index_slow(size)
}

const fn kmalloc_index_slow(size: usize) -> usize {
    if size == 0 {
        return 0;
    }
    if size <= KMALLOC_MIN_SIZE {
        return 3;
    }
    if size > 64 && size <= 96 {
        return 1;
    }
    if size > 128 && size <= 192 {
        return 2;
    }
    (usize::BITS - (size - 1).leading_zeros()) as usize
}

/// Object size of class `index` (`kmalloc_info[index].size`).
pub const fn kmalloc_size(index: usize) -> usize {
    match index {
        0 => 0,
        1 => 96,
        2 => 192,
        n => 1 << n,
    }
}

/// The size part of a class's cache name (`kmalloc_info[index].name`).
pub const fn kmalloc_name(index: usize) -> &'static str {
    const NAMES: [&str; KMALLOC_NR] =
        ["0", "96", "192", "8", "16", "32", "64", "128", "256", "512", "1k", "2k", "4k", "8k"];
    NAMES[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-lookup class of a 16-aligned request is the class of its size clamped to 16,
    /// every size from 0 to the largest class; a class object of it is 16-aligned (its size
    /// is a multiple of 16); and nothing past the classes.
    #[test]
    fn aligned_classes_are_the_clamped_sizes_classes() {
        for size in 0..=KMALLOC_MAX_CACHE_SIZE {
            let c = kmalloc_index_aligned(size).expect("a class");
            assert_eq!(c, kmalloc_index(size.max(KMALLOC_ALIGN)), "size {size}");
            assert!(kmalloc_size(c) >= size && kmalloc_size(c) % KMALLOC_ALIGN == 0, "size {size}");
        }
        assert_eq!(kmalloc_index_aligned(KMALLOC_MAX_CACHE_SIZE + 1), None);
        assert_eq!(kmalloc_index_aligned(usize::MAX), None);
    }

    #[test]
    fn size_classes_follow_linux() {
        let cases = [
            (1, 3),
            (8, 3),
            (9, 4),
            (16, 4),
            (17, 5),
            (32, 5),
            (33, 6),
            (64, 6),
            (65, 1),
            (96, 1),
            (97, 7),
            (128, 7),
            (129, 2),
            (192, 2),
            (193, 8),
            (256, 8),
            (257, 9),
            (1024, 10),
            (1025, 11),
            (4096, 12),
            (4097, 13),
            (8192, 13),
        ];
        for (size, idx) in cases {
            assert_eq!(kmalloc_index(size), idx, "size {size}");
            assert!(kmalloc_size(idx) >= size);
        }
        // The size_index table of slab_common.c for runtime sizes up to 192.
        let table = [3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2];
        for (i, &idx) in table.iter().enumerate() {
            assert_eq!(kmalloc_index(i * 8 + 8), idx, "size {}", i * 8 + 8);
        }
        // The table (every class) and the computation agree on every size, and beyond.
        for size in 0..=(1 << 20) {
            assert_eq!(kmalloc_index(size), kmalloc_index_slow(size), "size {size}");
        }
        assert_eq!(kmalloc_name(1), "96");
        assert_eq!(kmalloc_name(13), "8k");
        assert_eq!(KmallocType::of(Gfp::KERNEL | Gfp::DMA | Gfp::RECLAIMABLE), KmallocType::Dma);
        assert_eq!(KmallocType::of(Gfp::KERNEL | Gfp::RECLAIMABLE), KmallocType::Reclaim);
    }
}
