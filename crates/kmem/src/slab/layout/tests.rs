use super::*;
use crate::testing::std::{format, string::String, vec::Vec};

const P4: OrderParams = OrderParams::new(4);

#[test]
fn alignment_follows_calculate_alignment() {
    let hw = SlabFlags::HWCACHE_ALIGN;
    assert_eq!(calculate_alignment(SlabFlags::NONE, 0, 24), 8);
    assert_eq!(calculate_alignment(SlabFlags::NONE, 4, 24), 8, "raised to the word");
    assert_eq!(calculate_alignment(hw, 0, 100), 64);
    assert_eq!(calculate_alignment(hw, 0, 32), 32, "halved while the object fits twice");
    assert_eq!(calculate_alignment(hw, 0, 8), 8);
    assert_eq!(calculate_alignment(hw, 128, 8), 128);
}

#[test]
fn plain_cache_puts_the_free_pointer_mid_object() {
    let l = calculate_sizes(64, 0, SlabFlags::NONE, false, P4).unwrap();
    assert_eq!((l.size, l.inuse, l.offset, l.red_left_pad, l.align), (64, 64, 32, 0, 8));
    assert_eq!((l.order, l.objects), (0, 64));
    let l = calculate_sizes(5, 0, SlabFlags::NONE, false, P4).unwrap();
    assert_eq!((l.size, l.offset, l.objects), (8, 0, 512));
}

#[test]
fn ctor_and_poison_move_the_free_pointer_out() {
    let l = calculate_sizes(64, 0, SlabFlags::NONE, true, P4).unwrap();
    assert_eq!((l.inuse, l.offset, l.size), (64, 64, 72));
    assert!(l.freeptr_outside());
    let l = calculate_sizes(64, 0, SlabFlags::POISON, false, P4).unwrap();
    assert!(l.flags.contains(SlabFlags::OBJECT_POISON));
    assert_eq!((l.offset, l.size), (64, 72));
    let l = calculate_sizes(64, 0, SlabFlags::POISON, true, P4).unwrap();
    assert!(!l.flags.contains(SlabFlags::OBJECT_POISON), "a ctor'd cache is never object-poisoned");
}

#[test]
fn full_debug_layout_matches_linux() {
    // slub_debug=FZPU on a 64-byte cache: 64 + 8 (right red zone) = inuse 72, free pointer
    // at 72, 2 tracks (64), red zone padding word (8) and left red zone (8): 160.
    let f = SlabFlags::CONSISTENCY_CHECKS | SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER;
    let l = calculate_sizes(64, 0, f, false, P4).unwrap();
    assert_eq!((l.inuse, l.offset, l.red_left_pad, l.size), (72, 72, 8, 160));
    assert_eq!(l.track_offset(), 80);
    assert_eq!(l.metadata_end(), 144);
    assert_eq!(l.size_from_object(), 152);
    // A kmalloc cache also records orig_size.
    let l = calculate_sizes(64, 0, f | SlabFlags::KMALLOC, false, P4).unwrap();
    assert!(l.has_orig_size());
    assert_eq!(l.orig_size_offset(), 144);
    assert_eq!(l.metadata_end(), 148);
    assert_eq!(l.size, 168, "148 + padding word + left red zone, word-aligned");
    // Red zone on a 60-byte object: the rounding bytes are the right red zone.
    let l = calculate_sizes(60, 0, SlabFlags::RED_ZONE, false, P4).unwrap();
    assert_eq!((l.inuse, l.offset), (64, 24));
}

#[test]
fn every_flag_combination_keeps_objects_aligned_and_metadata_inside_the_slot() {
    let bits = [
        SlabFlags::RED_ZONE,
        SlabFlags::POISON,
        SlabFlags::STORE_USER,
        SlabFlags::HWCACHE_ALIGN,
        SlabFlags::KMALLOC,
        SlabFlags::CONSISTENCY_CHECKS,
    ];
    for mask in 0..(1u32 << bits.len()) {
        let flags =
            bits.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).fold(SlabFlags::NONE, |a, (_, &f)| a | f);
        for size in [1usize, 7, 8, 24, 60, 64, 100, 192, 1000, 4096, 5000, 65536] {
            for align in [0usize, 8, 16, 64, 256] {
                for ctor in [false, true] {
                    let l = calculate_sizes(size, align, flags, ctor, P4).unwrap();
                    let ctx = format!("size {size} align {align} flags {flags:?} ctor {ctor}: {l:?}");
                    assert_eq!(l.size % l.align, 0, "{ctx}");
                    assert!(l.align as usize >= align.max(8), "{ctx}");
                    assert_eq!(l.red_left_pad % l.align, 0, "{ctx}");
                    assert!(l.inuse as usize >= size, "{ctx}");
                    assert!(l.metadata_end() <= l.size_from_object(), "{ctx}");
                    assert_eq!(l.offset % WORD, 0, "{ctx}");
                    assert!(l.offset + WORD <= l.size_from_object(), "{ctx}");
                    if ctor || flags.contains(SlabFlags::POISON) {
                        assert!(l.freeptr_outside(), "{ctx}");
                    }
                    assert!(l.objects >= 1 && l.objects * l.size <= (PAGE_SIZE as u32) << l.order, "{ctx}");
                    assert!(l.ksize() as usize >= size, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn order_bounds_waste_like_linux() {
    assert_eq!(calculate_order(8, P4), Some(0));
    assert_eq!(calculate_order(1016, P4), Some(2));
    assert_eq!(calculate_order(2496, P4), Some(3));
    assert_eq!(calculate_order(4232, P4), Some(3));
    assert_eq!(calculate_order(8192, P4), Some(3));
    assert_eq!(calculate_order(65536, P4), Some(4), "one object, its own order");
    assert_eq!(calculate_order(MAX_OBJECT_SIZE, P4), Some(10));
    assert_eq!(calculate_order(MAX_OBJECT_SIZE + 8, P4), None);
    // More CPUs want more objects per slab.
    assert_eq!(calculate_order(1016, OrderParams::new(64)), Some(3));
    assert_eq!(min_partial(64), 5);
    assert_eq!(min_partial(1 << 30), 10);
    assert_eq!(min_partial(4096), 6);
}

/// [`exact_slot`] against `%` and `/`, for slot sizes of every shape (odd multiples of every
/// power of two, kmalloc's sizes, the largest object) and offsets in and around a slab,
/// wrapped ones included (`lookup_object`'s offset before object 0 wraps).
#[test]
fn exact_slot_finds_exactly_the_object_starts() {
    let mut sizes = Vec::from([8u32, 16, 24, 40, 72, 96, 192, 1000, 1016, 4232, 65544, MAX_OBJECT_SIZE, 1, 3, 7]);
    sizes.extend((1..=64).map(|k| k * 8));
    let limit = ((PAGE_SIZE as u64) << MAX_PAGE_ORDER) * 2;
    for size in sizes {
        let (inv, shift) = exact_divisor(size);
        assert_eq!(inv.wrapping_mul((size >> shift) as u64), 1, "inverse of {size}'s odd part");
        let size64 = size as u64;
        let mut base = 0u64;
        while base < limit {
            for d in [0, 1, 2, 8, size64 / 2, size64 - 1] {
                for off in [base + d, (base + d).wrapping_neg()] {
                    let got = exact_slot(off, inv, shift);
                    if off % size64 == 0 {
                        assert_eq!(got, off / size64, "size {size} off {off}");
                    } else {
                        assert!(got >= 1 << 32, "size {size} off {off}: {got} looks like a slot");
                    }
                }
            }
            base += size64.max(4093);
        }
    }
}

/// slabinfo's `objsize` is `s->size`: kmem's order calculation, on the same CPU count as the
/// captured machine (4), must fit at least as many objects per page for every cache there.
#[test]
fn objects_per_slab_at_least_as_good_as_linux_6_18() {
    // The real slabinfo of a Linux 6.18 machine, vendored in the repository (fixtures/README.md).
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/linux-6.18-proc/slabinfo.txt"));
    let mut worse: Vec<String> = Vec::new();
    let mut checked = 0;
    for line in text.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (size, objs, pages): (u32, u32, u32) =
            (f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap());
        let order = calculate_order(size, P4).unwrap();
        let ours = order_objects(order, size);
        // objects per page, cross-multiplied
        if (ours as u64) * (pages as u64) < (objs as u64) << order {
            worse.push(format!("{line}: kmem order {order} objects {ours}"));
        }
        checked += 1;
    }
    assert!(checked > 100);
    assert!(worse.is_empty(), "{worse:#?}");
}
