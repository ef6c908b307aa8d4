//! Tests of the GFP flags: values, names, printing, parsing, zones.
use super::*;
use crate::testing::std::{format, string::ToString};
use proptest::prelude::*;

#[rustfmt::skip]
const VALUES: [(Gfp, u32); 49] = [
    (Gfp::DMA, 0x1), (Gfp::HIGHMEM, 0x2), (Gfp::DMA32, 0x4), (Gfp::MOVABLE, 0x8),
    (Gfp::RECLAIMABLE, 0x10), (Gfp::HIGH, 0x20), (Gfp::IO, 0x40), (Gfp::FS, 0x80),
    (Gfp::ZERO, 0x100), (Gfp::DIRECT_RECLAIM, 0x400), (Gfp::KSWAPD_RECLAIM, 0x800),
    (Gfp::WRITE, 0x1000), (Gfp::NOWARN, 0x2000), (Gfp::RETRY_MAYFAIL, 0x4000),
    (Gfp::NOFAIL, 0x8000), (Gfp::NORETRY, 0x10000), (Gfp::MEMALLOC, 0x20000),
    (Gfp::COMP, 0x40000), (Gfp::NOMEMALLOC, 0x80000), (Gfp::HARDWALL, 0x100000),
    (Gfp::THISNODE, 0x200000), (Gfp::ACCOUNT, 0x400000), (Gfp::ZEROTAGS, 0x800000),
    (Gfp::SKIP_ZERO, 0), (Gfp::SKIP_KASAN, 0), (Gfp::NOLOCKDEP, 0),
    (Gfp::NO_OBJ_EXT, 0x100_0000), (Gfp::RECLAIM, 0xc00), (Gfp::WAIT, 0xc00),
    (Gfp::REPEAT, 0x4000), (Gfp::COLD, 0x4000_0000), (Gfp::NO_GROW, 0x8000_0000),
    // Composites and masks.
    (Gfp::ATOMIC, 0x820), (Gfp::KERNEL, 0xcc0), (Gfp::KERNEL_ACCOUNT, 0x400cc0),
    (Gfp::NOWAIT, 0x2800), (Gfp::NOIO, 0xc00), (Gfp::NOFS, 0xc40), (Gfp::USER, 0x100cc0),
    (Gfp::HIGHUSER, 0x100cc2), (Gfp::HIGHUSER_MOVABLE, 0x100cca),
    (Gfp::TRANSHUGE_LIGHT, 0x1c20ca), (Gfp::TRANSHUGE, 0x1c24ca), (Gfp::ZONEMASK, 0xf),
    (Gfp::MOVABLE_MASK, 0x18), (Gfp::RECLAIM_MASK, 0xbece0), (Gfp::BITS_MASK, 0x1ff_ffff),
    (Gfp::KMEM_KNOWN, 0xc1ff_ffff), (Gfp::SLAB_BUG_MASK, 0x3e00_0006),
];

#[test]
fn bit_composite_and_mask_values() {
    for (flag, value) in VALUES {
        assert_eq!(flag.bits(), value, "{value:#x}");
    }
    assert!(Gfp::NAMES.iter().all(|(g, _)| !g.is_empty()));
    for (flag, name) in &Gfp::NAMES[14..] {
        assert!(flag.bits().is_power_of_two() && name.starts_with("__GFP_"));
    }
}

#[test]
fn set_operations() {
    let k = Gfp::KERNEL;
    assert!(k.contains(Gfp::IO | Gfp::FS) && !k.contains(Gfp::IO | Gfp::ZERO));
    assert!(k.intersects(Gfp::IO | Gfp::ZERO) && !k.intersects(Gfp::ZERO));
    assert_eq!(k.union(Gfp::ZERO).bits(), 0xdc0);
    assert_eq!(k.without(Gfp::FS), Gfp::NOFS);
    assert_eq!((k & !Gfp::RECLAIM).bits(), 0xc0);
    let mut g = Gfp::empty();
    g |= Gfp::ATOMIC;
    g &= Gfp::HIGH;
    assert_eq!(g, Gfp::HIGH);
    assert_eq!(Gfp::from_bits(0xdead_beef).bits(), 0xdead_beef);
    assert!(Gfp::KERNEL.allows_blocking() && !Gfp::KERNEL.is_nowait_or_atomic());
    assert!(Gfp::ATOMIC.is_nowait_or_atomic() && Gfp::NOWAIT.is_nowait_or_atomic());
    assert!(Gfp::TRANSHUGE.allows_blocking() && !Gfp::TRANSHUGE_LIGHT.allows_blocking());
}

#[rustfmt::skip]
const CASES: [(u32, &str); 20] = [
    (0xcc0, "GFP_KERNEL"),
    (0xdc0, "GFP_KERNEL|__GFP_ZERO"),
    (0x2820, "GFP_ATOMIC|__GFP_NOWARN"),
    (0x140cca, "GFP_HIGHUSER_MOVABLE|__GFP_COMP"),
    (0x2800, "GFP_NOWAIT"),
    (0, "none"),
    (0x40cc0, "GFP_KERNEL|__GFP_COMP"),
    (0x200_0cc0, "GFP_KERNEL|0x2000000"),
    (0x200, "0x200"),
    (0x1c24ca, "GFP_TRANSHUGE"),
    (0x500cc0, "GFP_USER|__GFP_ACCOUNT"),
    (0x400cc1, "GFP_KERNEL_ACCOUNT|GFP_DMA"),
    (0xc20, "GFP_ATOMIC|__GFP_DIRECT_RECLAIM"),
    (0x2c00, "GFP_NOIO|__GFP_NOWARN"),
    (0x1c, "GFP_DMA32|__GFP_MOVABLE|__GFP_RECLAIMABLE"),
    (0x400, "__GFP_DIRECT_RECLAIM"),
    (0x1000_0800, "__GFP_KSWAPD_RECLAIM|0x10000000"),
    (0xc100_0cc0, "GFP_KERNEL|__GFP_NO_OBJ_EXT|__GFP_COLD|__GFP_NO_GROW"),
    (0x3e00_0000, "0x3e000000"),
    (0xffff_ffff, "GFP_TRANSHUGE|GFP_ATOMIC|GFP_DMA|GFP_DMA32|__GFP_RECLAIMABLE|__GFP_ZERO|__GFP_WRITE|__GFP_RETRY_MAYFAIL|__GFP_NOFAIL|__GFP_NORETRY|__GFP_MEMALLOC|__GFP_THISNODE|__GFP_ACCOUNT|__GFP_ZEROTAGS|__GFP_NO_OBJ_EXT|__GFP_COLD|__GFP_NO_GROW|0x3e000200"),
];

#[test]
fn display_matches_linux() {
    for (bits, text) in CASES {
        assert_eq!(Gfp::from_bits(bits).to_string(), text);
        assert_eq!(Gfp::parse(text), Ok(Gfp::from_bits(bits)), "{text}");
    }
    assert_eq!(format!("{:#}", Gfp::empty()), "");
    assert_eq!(format!("{:#}", Gfp::KERNEL), "GFP_KERNEL");
    assert_eq!(format!("{:?}", Gfp::KERNEL), "Gfp(0xcc0 GFP_KERNEL)");
    assert_eq!(format!("{:?}", Gfp::empty()), "Gfp(0x0 none)");
}

#[test]
fn parse_forms_and_errors() {
    let ok = |s: &str, bits: u32| assert_eq!(Gfp::parse(s), Ok(Gfp(bits)), "{s}");
    ok("0xcc0", 0xcc0);
    ok("0XCC0", 0xcc0);
    ok("3264", 0xcc0);
    ok("0", 0);
    ok(" GFP_KERNEL | __GFP_ZERO ", 0xdc0);
    ok("GFP_KERNEL|0x100000", 0x100cc0);
    ok("__GFP_WAIT|__GFP_IO|__GFP_FS", 0xcc0);
    ok("__GFP_REPEAT", 0x4000);
    ok("__GFP_COLD|__GFP_NO_GROW", 0xc000_0000);
    ok("__GFP_DMA|__GFP_SKIP_KASAN|__GFP_NOLOCKDEP|__GFP_SKIP_ZERO", 1);
    ok("0xffffffff", u32::MAX);
    use GfpParseErrorKind::*;
    let err = |s: &str, position, kind| {
        assert_eq!(Gfp::parse(s), Err(GfpParseError { position, kind }), "{s}");
    };
    err("", 0, Empty);
    err("  ", 2, Empty);
    err("GFP_KERNEL||__GFP_ZERO", 11, Empty);
    err("GFP_KERNEL|", 11, Empty);
    err("GFP_KERNEL | gfp_kernel", 13, UnknownName);
    err("__GFP_ATOMIC", 0, UnknownName);
    err("0x", 0, BadNumber);
    err("GFP_KERNEL|0x1_0", 11, BadNumber);
    err("0x+5", 0, BadNumber);
    err("12a", 0, BadNumber);
    err("0x100000000", 0, BadNumber);
    let e = Gfp::parse("GFP_KERNEL|BOGUS").unwrap_err();
    assert_eq!(e.to_string(), "unknown GFP flag name at byte 11");
    assert_eq!("GFP_NOFS".parse::<Gfp>(), Ok(Gfp::NOFS));
}

#[test]
fn gfp_zone_table() {
    use GfpZone::*;
    #[rustfmt::skip]
    let table = [ // Indexed by MOVABLE(8) | DMA32(4) | HIGHMEM(2) | DMA(1); None: GFP_ZONE_BAD.
        Some(Normal), Some(Dma), Some(HighMem), None, Some(Dma32), None, None, None,
        Some(Normal), Some(Dma), Some(Movable), None, Some(Dma32), None, None, None,
    ];
    for (bits, want) in table.into_iter().enumerate() {
        let gfp = Gfp::KERNEL | Gfp::from_bits(bits as u32);
        match want {
            Some(zone) => assert_eq!(gfp.zone(), Ok(zone), "{bits:#x}"),
            None => assert_eq!(gfp.zone(), Err(BadGfpZone(gfp)), "{bits:#x}"),
        }
    }
    assert_eq!(Gfp::HIGHUSER_MOVABLE.zone(), Ok(Movable));
    assert_eq!(Movable.zone_type(), ZoneType::Movable);
    assert_eq!(Dma32.zone_type(), ZoneType::Dma32);
    let bad = (Gfp::KERNEL | Gfp::DMA | Gfp::HIGHMEM).zone().unwrap_err();
    assert_eq!(bad.to_string(), "invalid zone modifiers GFP_DMA|__GFP_HIGHMEM in 0xcc3");
}

#[test]
fn gfp_migratetype() {
    assert_eq!(Gfp::KERNEL.migratetype(), Migratetype::Unmovable);
    assert_eq!(Gfp::HIGHUSER_MOVABLE.migratetype(), Migratetype::Movable);
    let reclaimable = Gfp::KERNEL | Gfp::RECLAIMABLE;
    assert_eq!(reclaimable.migratetype(), Migratetype::Reclaimable);
    assert_eq!(Gfp::MOVABLE_MASK.migratetype(), Migratetype::Movable);
}

proptest! {
    #[test]
    fn display_parse_round_trip(bits in any::<u32>(), keep_unknown in any::<bool>()) {
        let bits = if keep_unknown { bits } else { bits & Gfp::KMEM_KNOWN.bits() };
        let gfp = Gfp::from_bits(bits);
        let text = gfp.to_string();
        prop_assert_eq!(Gfp::parse(&text), Ok(gfp), "{}", text);
        if bits != 0 {
            prop_assert_eq!(format!("{gfp:#}"), text.clone());
        }
        // Only bits outside KMEM_KNOWN, and the unused bit 9, are ever printed as hex.
        let named = bits & Gfp::KMEM_KNOWN.bits() & !0x200 == bits;
        prop_assert_eq!(text.contains("0x"), !named);
    }
}
