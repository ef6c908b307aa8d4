//! Unit tests of sheaves and barns.

use super::*;

/// Sheaves are at least 16-byte aligned, so a count 8 mod 16 into one never shares its
/// low 12 bits with the first word of a block of 16 bytes or more (the struct's docs:
/// 4 KiB aliasing).
#[test]
fn the_count_is_off_the_blocks_first_words() {
    assert_eq!(core::mem::align_of::<Sheaf>() % 16, 0, "a sheaf's place in its page");
    for off in [core::mem::offset_of!(Sheaf, size), core::mem::offset_of!(Sheaf, capacity)] {
        assert!((8..16).contains(&(off % 16)), "offset {off}");
    }
}

#[test]
fn capacity_is_about_four_pages_of_objects() {
    assert_eq!(sheaf_capacity(8), 128);
    assert_eq!(sheaf_capacity(128), 128);
    assert_eq!(sheaf_capacity(256), 64);
    assert_eq!(sheaf_capacity(512), 32);
    assert_eq!(sheaf_capacity(1024), 32);
    assert_eq!(sheaf_capacity(8192), 32);
    // A process allocator's 128 KiB sheaves: every class up to 1 KiB holds 128.
    assert_eq!(sheaf_capacity_for(1024, 128 << 10, 128), 128);
    assert_eq!(sheaf_capacity_for(2048, 128 << 10, 128), 64);
    assert_eq!(sheaf_capacity_for(8192, 128 << 10, 128), 32);
    // A machine's larger sheaves go to its small objects.
    assert_eq!(sheaf_capacity_for(64, 128 << 10, 256), 256);
    assert_eq!(sheaf_capacity_for(1024, 128 << 10, 256), 128);
    assert_eq!(sheaf_capacity_for(64, 16 << 10, 256), 256);
    assert_eq!(sheaf_capacity_for(128, 16 << 10, 256), 128);
}

#[test]
fn barns_hold_bytes_of_objects_within_bounds() {
    // 4096 objects of 1 KiB in sheaves of 32: 128 sheaves, 4 MiB.
    assert_eq!(barn_sheaves(32, 1024, barn_bytes(1 << 30)), 128);
    assert_eq!(barn_sheaves(64, 256, barn_bytes(1 << 30)), 64);
    // Small objects: as many sheaves as before the barns grew.
    assert_eq!(barn_sheaves(128, 64, barn_bytes(1 << 30)), MAX_FULL_SHEAVES);
    // Big objects and small machines: the bytes, down to Linux's 10 sheaves.
    assert_eq!(barn_sheaves(32, 8192, barn_bytes(1 << 30)), 16);
    assert_eq!(barn_sheaves(32, 1024, barn_bytes(16 << 20)), 16);
    assert_eq!(barn_sheaves(32, 1024, barn_bytes(4 << 20)), MIN_BARN_SHEAVES);
    assert_eq!(barn_bytes(64 << 20), 2 << 20);
    let b = Barn::new();
    assert_eq!(b.max(), MAX_FULL_SHEAVES);
    b.set_max(100);
    assert_eq!(b.max(), 100);
}

#[test]
fn a_configured_barn_holds_its_bytes_of_objects() {
    use crate::slab::registry::SlabState;
    let mut st = SlabState::empty();
    st.configure(&crate::slab::SlabBootConfig::default(), 4);
    assert_eq!(st.barn_max(128, 64, 1 << 30), barn_sheaves(128, 64, barn_bytes(1 << 30)), "default sizing");
    st.configure(&crate::slab::SlabBootConfig { barn_bytes: 16 << 20, ..Default::default() }, 4);
    // 16 MiB of 64-byte objects and their 8-byte slots in sheaves of 128: 1820 sheaves,
    // whatever the RAM; of 8-byte objects, half of it is the sheaves'.
    assert_eq!(st.barn_max(128, 64, 128 << 20), 1820);
    assert_eq!(st.barn_max(128, 1024, 128 << 20), 127);
    assert_eq!(st.barn_max(128, 8, 128 << 20), 8192);
    // Rounded down to a power of two, at least 64 KiB, and never below 10 sheaves.
    st.configure(&crate::slab::SlabBootConfig { barn_bytes: (16 << 20) + 5, ..Default::default() }, 4);
    assert_eq!(st.barn_max(128, 64, 128 << 20), 1820);
    st.configure(&crate::slab::SlabBootConfig { barn_bytes: 1, ..Default::default() }, 4);
    assert_eq!(st.barn_max(32, 8192, 128 << 20), MIN_BARN_SHEAVES);
    // Caches without sheaves keep the default.
    assert_eq!(st.barn_max(0, 64, 1 << 30), MAX_FULL_SHEAVES);
}

#[test]
fn sheaf_is_a_stack_with_a_capacity() {
    let s = OwnedSheaf::new(2);
    assert_eq!(s.pop(), None);
    assert!(s.push(8) && s.push(16) && !s.push(24));
    assert_eq!(s.pop(), Some(16));
    assert_eq!(s.objects().next(), Some(8));
    let r = OwnedSheaf::new(5);
    for o in [1, 2, 3, 4] {
        r.push(o);
    }
    r.reverse_from(1);
    assert_eq!([r.pop(), r.pop(), r.pop(), r.pop()], [Some(2), Some(3), Some(4), Some(1)]);
}

mod model {
    //! [`Sheaf`] against a vector with a capacity: any sequence of pushes, pops, bulk pushes,
    //! reversals and clears keeps the same objects in the same order, refuses what does not
    //! fit, and never reaches past its slots (a sheaf's slots follow its header in memory of
    //! `Sheaf::bytes_for(capacity)` bytes: guard words after them must stay untouched).

    use super::*;
    use crate::testing::std::{vec, vec::Vec};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push,
        Pop,
        PushMany(u32),
        Reverse(u32),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Push),
            4 => Just(Op::Pop),
            2 => (0u32..80).prop_map(Op::PushMany),
            1 => (0u32..64).prop_map(Op::Reverse),
            1 => Just(Op::Clear),
        ]
    }

    const GUARD: u128 = 0x5a5a_5a5a_5a5a_5a5a_a5a5_a5a5_a5a5_a5a5;

    proptest! {
        #[test]
        fn a_sheaf_is_a_bounded_stack(cap in 1u32..70, ops in proptest::collection::vec(op(), 1..300)) {
            // The sheaf's memory and two guard words after it, in one buffer.
            let words = Sheaf::bytes_for(cap).div_ceil(16);
            let mut buf = vec![GUARD; words + 2];
            for w in &mut buf[..words] {
                *w = 0;
            }
            // SAFETY: 16-byte aligned, `bytes_for(cap)` bytes, ours for the test.
            let s = unsafe { Sheaf::init(buf.as_mut_ptr() as usize, cap) };
            let mut model: Vec<usize> = Vec::new();
            let mut next = 0x1000usize;
            for o in ops {
                match o {
                    Op::Push => {
                        next += 16;
                        let fits = model.len() < cap as usize;
                        prop_assert_eq!(s.push(next), fits);
                        if fits {
                            model.push(next);
                        }
                    }
                    Op::Pop => prop_assert_eq!(s.pop(), model.pop()),
                    Op::PushMany(k) => {
                        let base = next;
                        let n = s.push_many(k, |j| base + 16 * (j as usize + 1));
                        let want = k.min(cap - model.len() as u32);
                        prop_assert_eq!(n, want);
                        model.extend((0..n).map(|j| base + 16 * (j as usize + 1)));
                        next = base + 16 * (k as usize + 1);
                    }
                    Op::Reverse(from) => {
                        s.reverse_from(from);
                        if (from as usize) < model.len() {
                            model[from as usize..].reverse();
                        }
                    }
                    Op::Clear => {
                        s.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(s.size() as usize, model.len());
                prop_assert_eq!(s.objects().collect::<Vec<_>>(), model.clone());
                for (i, &o) in model.iter().enumerate() {
                    prop_assert_eq!(s.object(i), o);
                }
            }
            prop_assert_eq!(&buf[words..], &[GUARD, GUARD][..], "a sheaf wrote past its slots");
        }
    }
}
