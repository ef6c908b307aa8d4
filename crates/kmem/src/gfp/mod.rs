//! GFP ("get free pages") flags: the `gfp_t` every kmem allocation entry point takes.
//!
//! A [`Gfp`] is a plain `u32` with Linux's bit values, so flag values, hex dumps and trace
//! output can be compared with a real kernel's byte for byte. Besides the bits and the
//! composites of `include/linux/gfp_types.h`, this module implements the two helpers every
//! allocator needs first (`gfp_zone()` as [`Gfp::zone`] and `gfp_migratetype()` as
//! [`Gfp::migratetype`]) and the kernel's textual form: [`Display`](core::fmt::Display)
//! renders exactly as `show_gfp_flags()` / `%pGg` do, and [`Gfp::parse`] reads that form back.
//!
//! # Modelled configuration
//!
//! Some GFP bits exist only under some kernel configs, and since Linux numbers them from an
//! enum (`___GFP_*_BIT`) the config also moves the bits after them. kmem models Linux 6.18 on
//! x86-64 with `CONFIG_SLAB_OBJ_EXT=y` (memcg), `CONFIG_KASAN_HW_TAGS=n` and `CONFIG_LOCKDEP=n`:
//!
//! * `__GFP_SKIP_ZERO`, `__GFP_SKIP_KASAN` and `__GFP_NOLOCKDEP` are 0, are never printed and
//!   are accepted by the parser as 0;
//! * `__GFP_NO_OBJ_EXT` takes the first bit after `__GFP_ZEROTAGS`: bit 24, `0x100_0000`;
//! * `__GFP_BITS_SHIFT` is 25, so `__GFP_BITS_MASK` is `0x1ff_ffff` (bit 9, unused since
//!   `__GFP_ATOMIC` went away in 6.3, stays inside it as in Linux);
//! * `GFP_NOWAIT` is `__GFP_KSWAPD_RECLAIM | __GFP_NOWARN` (`0x2800`), as in 6.18.
//!
//! # kmem extensions and legacy names
//!
//! Texts of the Linux Device Drivers era use flags Linux has since renamed or dropped.
//! [`Gfp::WAIT`] and [`Gfp::REPEAT`] are aliases of today's equivalents. [`Gfp::COLD`] and
//! [`Gfp::NO_GROW`] are kmem's own bits 30 and 31: outside Linux's [`Gfp::BITS_MASK`] (so no
//! Linux value can collide with them) but inside [`Gfp::KMEM_KNOWN`]. They print as
//! `__GFP_COLD` / `__GFP_NO_GROW`, after every Linux name.

#![forbid(unsafe_code)]

use crate::mm::zone_type::{Migratetype, ZoneType};
use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// GFP flags (`gfp_t`) with Linux's bit values.
///
/// Unknown bits are kept as they are: nothing here masks them off; [`Display`](fmt::Display)
/// prints them as a trailing hex number, as Linux does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gfp(u32);

impl Gfp {
    /// `__GFP_DMA` (bit 0): zone modifier, allocate from `ZONE_DMA`.
    pub const DMA: Gfp = Gfp(1 << 0);
    /// `__GFP_HIGHMEM` (bit 1): zone modifier, `ZONE_HIGHMEM` allowed.
    pub const HIGHMEM: Gfp = Gfp(1 << 1);
    /// `__GFP_DMA32` (bit 2): zone modifier, allocate below 4 GiB (`ZONE_DMA32`).
    pub const DMA32: Gfp = Gfp(1 << 2);
    /// `__GFP_MOVABLE` (bit 3): the page can be migrated or reclaimed; also a zone modifier
    /// (`ZONE_MOVABLE` allowed together with `__GFP_HIGHMEM`).
    pub const MOVABLE: Gfp = Gfp(1 << 3);
    /// `__GFP_RECLAIMABLE` (bit 4): slab pages of `SLAB_RECLAIM_ACCOUNT` caches, freeable by
    /// shrinkers.
    pub const RECLAIMABLE: Gfp = Gfp(1 << 4);
    /// `__GFP_HIGH` (bit 5): high priority, may dip into the emergency reserves.
    pub const HIGH: Gfp = Gfp(1 << 5);
    /// `__GFP_IO` (bit 6): may start physical I/O.
    pub const IO: Gfp = Gfp(1 << 6);
    /// `__GFP_FS` (bit 7): may call into the filesystem layer.
    pub const FS: Gfp = Gfp(1 << 7);
    /// `__GFP_ZERO` (bit 8): return zeroed memory.
    pub const ZERO: Gfp = Gfp(1 << 8);
    /// `__GFP_DIRECT_RECLAIM` (bit 10): the caller may sleep in direct reclaim.
    pub const DIRECT_RECLAIM: Gfp = Gfp(1 << 10);
    /// `__GFP_KSWAPD_RECLAIM` (bit 11): wake kswapd when the low watermark is reached.
    pub const KSWAPD_RECLAIM: Gfp = Gfp(1 << 11);
    /// `__GFP_WRITE` (bit 12): the caller intends to dirty the page.
    pub const WRITE: Gfp = Gfp(1 << 12);
    /// `__GFP_NOWARN` (bit 13): suppress allocation failure reports.
    pub const NOWARN: Gfp = Gfp(1 << 13);
    /// `__GFP_RETRY_MAYFAIL` (bit 14): retry hard, but fail rather than invoke the OOM killer.
    pub const RETRY_MAYFAIL: Gfp = Gfp(1 << 14);
    /// `__GFP_NOFAIL` (bit 15): retry forever; the caller cannot handle failure.
    pub const NOFAIL: Gfp = Gfp(1 << 15);
    /// `__GFP_NORETRY` (bit 16): only lightweight reclaim, fail early.
    pub const NORETRY: Gfp = Gfp(1 << 16);
    /// `__GFP_MEMALLOC` (bit 17): may use all memory, reserves included.
    pub const MEMALLOC: Gfp = Gfp(1 << 17);
    /// `__GFP_COMP` (bit 18): set up compound page metadata.
    pub const COMP: Gfp = Gfp(1 << 18);
    /// `__GFP_NOMEMALLOC` (bit 19): never use the reserves; overrides `__GFP_MEMALLOC`.
    pub const NOMEMALLOC: Gfp = Gfp(1 << 19);
    /// `__GFP_HARDWALL` (bit 20): enforce the cpuset memory policy.
    pub const HARDWALL: Gfp = Gfp(1 << 20);
    /// `__GFP_THISNODE` (bit 21): only the requested node, no fallback.
    pub const THISNODE: Gfp = Gfp(1 << 21);
    /// `__GFP_ACCOUNT` (bit 22): charge the allocation to the memory cgroup (kmemcg).
    pub const ACCOUNT: Gfp = Gfp(1 << 22);
    /// `__GFP_ZEROTAGS` (bit 23): zero memory tags when zeroing the memory.
    pub const ZEROTAGS: Gfp = Gfp(1 << 23);
    /// `__GFP_SKIP_ZERO`: 0, as Linux without `CONFIG_KASAN_HW_TAGS`.
    pub const SKIP_ZERO: Gfp = Gfp(0);
    /// `__GFP_SKIP_KASAN`: 0, as Linux without `CONFIG_KASAN_HW_TAGS`.
    pub const SKIP_KASAN: Gfp = Gfp(0);
    /// `__GFP_NOLOCKDEP`: 0, as Linux without `CONFIG_LOCKDEP`.
    pub const NOLOCKDEP: Gfp = Gfp(0);
    /// `__GFP_NO_OBJ_EXT` (bit 24 in the modelled config): the slab object gets no object
    /// extension vector (used to avoid recursion when allocating that vector).
    pub const NO_OBJ_EXT: Gfp = Gfp(1 << 24);
    /// `__GFP_RECLAIM`: `DIRECT_RECLAIM | KSWAPD_RECLAIM`, shorthand for both reclaim kinds.
    pub const RECLAIM: Gfp = Gfp(Self::DIRECT_RECLAIM.0 | Self::KSWAPD_RECLAIM.0);

    /// Legacy `__GFP_WAIT` ("may sleep"): Linux 4.4 renamed it to `__GFP_RECLAIM`, which is
    /// what this alias means today. Printed as `__GFP_RECLAIM`.
    pub const WAIT: Gfp = Self::RECLAIM;
    /// Legacy `__GFP_REPEAT` ("try hard"): Linux 4.13 replaced it with
    /// `__GFP_RETRY_MAYFAIL`, which is what this alias means today.
    pub const REPEAT: Gfp = Self::RETRY_MAYFAIL;
    /// kmem extension (bit 30; Linux dropped `__GFP_COLD` in 4.15): ask the page allocator
    /// for a cache-cold page, taken from the tail of a free list rather than the head.
    /// Outside [`Gfp::BITS_MASK`], inside [`Gfp::KMEM_KNOWN`]; printed as `__GFP_COLD`.
    pub const COLD: Gfp = Gfp(1 << 30);
    /// kmem extension (bit 31, after the slab-internal `__GFP_NO_GROW` of old kernels): the
    /// slab layer must not add a slab to satisfy the request; it fails instead.
    /// Outside [`Gfp::BITS_MASK`], inside [`Gfp::KMEM_KNOWN`]; printed as `__GFP_NO_GROW`.
    pub const NO_GROW: Gfp = Gfp(1 << 31);

    /// `GFP_ATOMIC` (`0x820`): cannot sleep, must succeed; may use the atomic reserves.
    pub const ATOMIC: Gfp = Gfp(Self::HIGH.0 | Self::KSWAPD_RECLAIM.0);
    /// `GFP_KERNEL` (`0xcc0`): the usual kernel allocation; may sleep, do I/O and call FS.
    pub const KERNEL: Gfp = Gfp(Self::RECLAIM.0 | Self::IO.0 | Self::FS.0);
    /// `GFP_KERNEL_ACCOUNT` (`0x400cc0`): `GFP_KERNEL` charged to kmemcg.
    pub const KERNEL_ACCOUNT: Gfp = Gfp(Self::KERNEL.0 | Self::ACCOUNT.0);
    /// `GFP_NOWAIT` (`0x2800`): no direct reclaim, no I/O, no FS; failure is likely and silent.
    pub const NOWAIT: Gfp = Gfp(Self::KSWAPD_RECLAIM.0 | Self::NOWARN.0);
    /// `GFP_NOIO` (`0xc00`): may reclaim but start no I/O.
    pub const NOIO: Gfp = Self::RECLAIM;
    /// `GFP_NOFS` (`0xc40`): may reclaim and do I/O but not call into the FS.
    pub const NOFS: Gfp = Gfp(Self::RECLAIM.0 | Self::IO.0);
    /// `GFP_USER` (`0x100cc0`): userspace memory the kernel also accesses directly.
    pub const USER: Gfp = Gfp(Self::KERNEL.0 | Self::HARDWALL.0);
    /// `GFP_HIGHUSER` (`0x100cc2`): `GFP_USER` that may live in highmem.
    pub const HIGHUSER: Gfp = Gfp(Self::USER.0 | Self::HIGHMEM.0);
    /// `GFP_HIGHUSER_MOVABLE` (`0x100cca`): LRU pages (`| __GFP_SKIP_KASAN`, 0 here).
    pub const HIGHUSER_MOVABLE: Gfp = Gfp(Self::HIGHUSER.0 | Self::MOVABLE.0 | Self::SKIP_KASAN.0);
    /// `GFP_TRANSHUGE_LIGHT` (`0x1c20ca`): THP fault path; no reclaim or compaction at all.
    #[rustfmt::skip]
    pub const TRANSHUGE_LIGHT: Gfp = Gfp((Self::HIGHUSER_MOVABLE.0 | Self::COMP.0
        | Self::NOMEMALLOC.0 | Self::NOWARN.0) & !Self::RECLAIM.0);
    /// `GFP_TRANSHUGE` (`0x1c24ca`): khugepaged; `GFP_TRANSHUGE_LIGHT` plus direct reclaim.
    pub const TRANSHUGE: Gfp = Gfp(Self::TRANSHUGE_LIGHT.0 | Self::DIRECT_RECLAIM.0);

    /// `GFP_ZONEMASK` (`0xf`): the four zone-modifier bits [`Gfp::zone`] reads.
    pub const ZONEMASK: Gfp = Gfp(Self::DMA.0 | Self::HIGHMEM.0 | Self::DMA32.0 | Self::MOVABLE.0);
    /// `GFP_MOVABLE_MASK` (`0x18`): the mobility bits [`Gfp::migratetype`] reads.
    pub const MOVABLE_MASK: Gfp = Gfp(Self::RECLAIMABLE.0 | Self::MOVABLE.0);
    /// `GFP_RECLAIM_MASK` (`0xbece0`, mm/internal.h): the bits that only affect watermarks
    /// and reclaim, which the MM obeys while ignoring placement hints.
    #[rustfmt::skip]
    pub const RECLAIM_MASK: Gfp = Gfp(Self::RECLAIM.0 | Self::HIGH.0 | Self::IO.0 | Self::FS.0
        | Self::NOWARN.0 | Self::RETRY_MAYFAIL.0 | Self::NOFAIL.0 | Self::NORETRY.0
        | Self::MEMALLOC.0 | Self::NOMEMALLOC.0 | Self::NOLOCKDEP.0);
    /// `__GFP_BITS_SHIFT` in the modelled config: the number of Linux GFP bits.
    pub const BITS_SHIFT: u32 = 25;
    /// `__GFP_BITS_MASK` (`0x1ff_ffff`): every bit Linux defines in the modelled config.
    pub const BITS_MASK: Gfp = Gfp((1 << Self::BITS_SHIFT) - 1);
    /// Every bit kmem gives a meaning (`0xc1ff_ffff`): [`Gfp::BITS_MASK`] plus the kmem
    /// extensions [`Gfp::COLD`] and [`Gfp::NO_GROW`].
    pub const KMEM_KNOWN: Gfp = Gfp(Self::BITS_MASK.0 | Self::COLD.0 | Self::NO_GROW.0);
    /// `GFP_SLAB_BUG_MASK` (`0x3e00_0006`): bits kmalloc rejects (`kmalloc_fix_flags`).
    /// Linux's definition is `__GFP_DMA32 | __GFP_HIGHMEM | ~__GFP_BITS_MASK`; kmem uses
    /// `~KMEM_KNOWN` instead of `~__GFP_BITS_MASK` so that [`Gfp::COLD`] and
    /// [`Gfp::NO_GROW`] (meant for the slab layer) are not stripped.
    pub const SLAB_BUG_MASK: Gfp = Gfp(Self::DMA32.0 | Self::HIGHMEM.0 | !Self::KMEM_KNOWN.0);

    /// The name table `%pGg` and `show_gfp_flags()` walk, in the order of
    /// `__def_gfpflag_names` (include/trace/events/mmflags.h) for the modelled config:
    /// composites (most bits first), `__GFP_RECLAIM`, then single bits; kmem's extension bits
    /// come last. Zero-valued flags are absent, so they are never printed.
    #[rustfmt::skip]
    pub const NAMES: [(Gfp, &'static str); 40] = [
        (Self::TRANSHUGE, "GFP_TRANSHUGE"), (Self::TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
        (Self::HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"), (Self::HIGHUSER, "GFP_HIGHUSER"),
        (Self::USER, "GFP_USER"), (Self::KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
        (Self::KERNEL, "GFP_KERNEL"), (Self::NOFS, "GFP_NOFS"), (Self::ATOMIC, "GFP_ATOMIC"),
        (Self::NOIO, "GFP_NOIO"), (Self::NOWAIT, "GFP_NOWAIT"), (Self::DMA, "GFP_DMA"),
        (Self::DMA32, "GFP_DMA32"), (Self::RECLAIM, "__GFP_RECLAIM"), (Self::DMA, "__GFP_DMA"),
        (Self::HIGHMEM, "__GFP_HIGHMEM"), (Self::DMA32, "__GFP_DMA32"),
        (Self::MOVABLE, "__GFP_MOVABLE"), (Self::RECLAIMABLE, "__GFP_RECLAIMABLE"),
        (Self::HIGH, "__GFP_HIGH"), (Self::IO, "__GFP_IO"), (Self::FS, "__GFP_FS"),
        (Self::ZERO, "__GFP_ZERO"), (Self::DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
        (Self::KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"), (Self::WRITE, "__GFP_WRITE"),
        (Self::NOWARN, "__GFP_NOWARN"), (Self::RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
        (Self::NOFAIL, "__GFP_NOFAIL"), (Self::NORETRY, "__GFP_NORETRY"),
        (Self::MEMALLOC, "__GFP_MEMALLOC"), (Self::COMP, "__GFP_COMP"),
        (Self::NOMEMALLOC, "__GFP_NOMEMALLOC"), (Self::HARDWALL, "__GFP_HARDWALL"),
        (Self::THISNODE, "__GFP_THISNODE"), (Self::ACCOUNT, "__GFP_ACCOUNT"),
        (Self::ZEROTAGS, "__GFP_ZEROTAGS"), (Self::NO_OBJ_EXT, "__GFP_NO_OBJ_EXT"),
        (Self::COLD, "__GFP_COLD"), (Self::NO_GROW, "__GFP_NO_GROW"),
    ];

    /// Names [`Gfp::parse`] accepts besides [`Gfp::NAMES`]: legacy aliases, the flags that
    /// are 0 in the modelled config, and ftrace's `none`.
    const EXTRA_NAMES: [(Gfp, &'static str); 6] = [
        (Self::WAIT, "__GFP_WAIT"),
        (Self::REPEAT, "__GFP_REPEAT"),
        (Self::SKIP_ZERO, "__GFP_SKIP_ZERO"),
        (Self::SKIP_KASAN, "__GFP_SKIP_KASAN"),
        (Self::NOLOCKDEP, "__GFP_NOLOCKDEP"),
        (Gfp(0), "none"),
    ];

    /// Flags with exactly these bits, unknown ones included.
    pub const fn from_bits(bits: u32) -> Gfp {
        Gfp(bits)
    }

    /// The raw `gfp_t` value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// No flags (0).
    pub const fn empty() -> Gfp {
        Gfp(0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share at least one bit.
    pub const fn intersects(self, other: Gfp) -> bool {
        self.0 & other.0 != 0
    }

    /// `self | other`.
    pub const fn union(self, other: Gfp) -> Gfp {
        Gfp(self.0 | other.0)
    }

    /// `self & !other`: `self` with the bits of `other` cleared.
    pub const fn without(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }

    /// `gfpflags_allow_blocking()`: the caller may sleep (`__GFP_DIRECT_RECLAIM` is set).
    pub const fn allows_blocking(self) -> bool {
        self.intersects(Self::DIRECT_RECLAIM)
    }

    /// `!gfpflags_allow_blocking()`: a `GFP_NOWAIT`/`GFP_ATOMIC`-style request that must not
    /// sleep (`__GFP_DIRECT_RECLAIM` is clear).
    pub const fn is_nowait_or_atomic(self) -> bool {
        !self.allows_blocking()
    }

    /// `gfp_zone()`: the highest zone the request may use, read from the zone-modifier bits
    /// through Linux's `GFP_ZONE_TABLE`. The 8 combinations Linux lists in `GFP_ZONE_BAD`
    /// (two of `DMA`/`DMA32`/`HIGHMEM` at once, with or without `MOVABLE`) are errors.
    /// Whether the machine has that zone is the caller's business.
    pub const fn zone(self) -> Result<GfpZone, BadGfpZone> {
        // The bits are MOVABLE, DMA32, HIGHMEM, DMA (GFP_ZONE_TABLE in include/linux/gfp.h).
        match self.0 & Self::ZONEMASK.0 {
            0b0000 | 0b1000 => Ok(GfpZone::Normal),
            0b0001 | 0b1001 => Ok(GfpZone::Dma),
            0b0010 => Ok(GfpZone::HighMem),
            0b0100 | 0b1100 => Ok(GfpZone::Dma32),
            0b1010 => Ok(GfpZone::Movable),
            _ => Err(BadGfpZone(self)),
        }
    }

    /// `gfp_migratetype()`: `__GFP_MOVABLE` gives [`Migratetype::Movable`],
    /// `__GFP_RECLAIMABLE` gives [`Migratetype::Reclaimable`], neither gives
    /// [`Migratetype::Unmovable`].
    ///
    /// Both bits together is a caller bug: Linux `VM_WARN_ON`s it and, computing
    /// `(flags & GFP_MOVABLE_MASK) >> 3`, returns index 3, `MIGRATE_HIGHATOMIC`, handing the
    /// request the high-order atomic reserve's lists. kmem returns
    /// [`Migratetype::Movable`] instead: it agrees with the zone choice `__GFP_MOVABLE`
    /// already made and never lets a flag mistake reach the reserve. (Linux's
    /// `page_group_by_mobility_disabled` override is left to the caller.)
    pub const fn migratetype(self) -> Migratetype {
        if self.intersects(Self::MOVABLE) {
            Migratetype::Movable
        } else if self.intersects(Self::RECLAIMABLE) {
            Migratetype::Reclaimable
        } else {
            Migratetype::Unmovable
        }
    }

    /// Parses the textual form: names from [`Gfp::NAMES`] (plus `__GFP_WAIT`,
    /// `__GFP_REPEAT`, the zero-valued `__GFP_SKIP_ZERO`/`__GFP_SKIP_KASAN`/`__GFP_NOLOCKDEP`
    /// and `none`), hex (`0xcc0`, `0XCC0`) or decimal numbers, joined by `|` with optional
    /// whitespace around each token, e.g. `GFP_KERNEL | __GFP_ZERO` or `GFP_KERNEL|0x100000`
    /// (ftrace prints leftover bits as hex). Names are case-sensitive; numbers must fit `u32`.
    /// Everything [`Display`](fmt::Display) prints parses back to the same value.
    pub fn parse(s: &str) -> Result<Gfp, GfpParseError> {
        let mut bits = 0;
        let mut start = 0;
        for raw in s.split('|') {
            let position = start + (raw.len() - raw.trim_start().len());
            start += raw.len() + 1;
            let token = raw.trim();
            let err = |kind| GfpParseError { position, kind };
            if token.is_empty() {
                return Err(err(GfpParseErrorKind::Empty));
            }
            bits |= if token.as_bytes()[0].is_ascii_digit() {
                parse_number(token).ok_or(err(GfpParseErrorKind::BadNumber))?
            } else {
                let mut names = Self::NAMES.iter().chain(Self::EXTRA_NAMES.iter());
                let found = names.find(|(_, name)| *name == token);
                found.ok_or(err(GfpParseErrorKind::UnknownName))?.0.bits()
            };
        }
        Ok(Gfp(bits))
    }
}

/// A decimal or `0x`/`0X` hex `u32`, digits only (no sign, no `_`).
fn parse_number(token: &str) -> Option<u32> {
    let (digits, radix) = match token.strip_prefix("0x").or(token.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (token, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

impl core::str::FromStr for Gfp {
    type Err = GfpParseError;

    fn from_str(s: &str) -> Result<Gfp, GfpParseError> {
        Gfp::parse(s)
    }
}

/// Linux's rendering (`format_flags()` in lib/vsprintf.c, `__print_flags()` in ftrace): walk
/// [`Gfp::NAMES`] in order; print every entry whose bits are all still set, separated by
/// `|`, and clear its bits; print what is left as `0x…` (lowercase hex).
///
/// Zero prints as `none`, as ftrace's `show_gfp_flags()` does. The alternate form `{:#}` is
/// `%pGg` to the letter, which prints nothing for zero (`mode:0x0()` in `warn_alloc`);
/// for every other value the two forms are identical.
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        if rest == 0 && !f.alternate() {
            return f.write_str("none");
        }
        let mut sep = "";
        for (flag, name) in Self::NAMES {
            if rest == 0 {
                break;
            }
            if rest & flag.0 == flag.0 {
                f.write_str(sep)?;
                f.write_str(name)?;
                sep = "|";
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            write!(f, "{sep}{rest:#x}")?;
        }
        Ok(())
    }
}

/// `Gfp(0xcc0 GFP_KERNEL)`: the hex value, then the [`Display`](fmt::Display) form.
impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfp({:#x} {})", self.0, self)
    }
}

impl BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

impl BitOrAssign for Gfp {
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Gfp {
    type Output = Gfp;
    fn bitand(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 & rhs.0)
    }
}

impl BitAndAssign for Gfp {
    fn bitand_assign(&mut self, rhs: Gfp) {
        self.0 &= rhs.0;
    }
}

/// Complements all 32 bits, unknown ones included (as `~` on a `gfp_t`).
impl Not for Gfp {
    type Output = Gfp;
    fn not(self) -> Gfp {
        Gfp(!self.0)
    }
}

/// The zone [`Gfp::zone`] picks: the highest zone a request may be served from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GfpZone {
    /// `ZONE_DMA` (`__GFP_DMA`, with or without `__GFP_MOVABLE`).
    Dma,
    /// `ZONE_DMA32` (`__GFP_DMA32`, with or without `__GFP_MOVABLE`).
    Dma32,
    /// `ZONE_NORMAL` (no zone modifier, or `__GFP_MOVABLE` alone).
    Normal,
    /// `ZONE_HIGHMEM` (`__GFP_HIGHMEM`).
    HighMem,
    /// `ZONE_MOVABLE` (`__GFP_MOVABLE | __GFP_HIGHMEM`).
    Movable,
}

impl GfpZone {
    /// The [`ZoneType`] of the same name.
    pub const fn zone_type(self) -> ZoneType {
        match self {
            GfpZone::Dma => ZoneType::Dma,
            GfpZone::Dma32 => ZoneType::Dma32,
            GfpZone::Normal => ZoneType::Normal,
            GfpZone::HighMem => ZoneType::HighMem,
            GfpZone::Movable => ZoneType::Movable,
        }
    }
}

/// Flags whose zone modifiers are one of Linux's `GFP_ZONE_BAD` combinations; holds the
/// whole flag word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadGfpZone(pub Gfp);

/// `invalid zone modifiers GFP_DMA|__GFP_HIGHMEM in 0xcc3`.
impl fmt::Display for BadGfpZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let zone_bits = self.0 & Gfp::ZONEMASK;
        write!(f, "invalid zone modifiers {zone_bits} in {:#x}", self.0 .0)
    }
}

impl core::error::Error for BadGfpZone {}

/// Why [`Gfp::parse`] rejected its input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GfpParseErrorKind {
    /// A token is not a known flag name.
    UnknownName,
    /// A token starting with a digit is not a well-formed decimal or hex `u32`.
    BadNumber,
    /// The input, or a token between two `|`, is empty or only whitespace.
    Empty,
}

/// A [`Gfp::parse`] failure: what went wrong and where.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GfpParseError {
    /// Byte offset in the input of the offending token (after its leading whitespace).
    pub position: usize,
    /// What was wrong with it.
    pub kind: GfpParseErrorKind,
}

impl fmt::Display for GfpParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            GfpParseErrorKind::UnknownName => "unknown GFP flag name",
            GfpParseErrorKind::BadNumber => "malformed GFP number",
            GfpParseErrorKind::Empty => "empty GFP flag",
        };
        write!(f, "{what} at byte {}", self.position)
    }
}

impl core::error::Error for GfpParseError {}

#[cfg(test)]
mod tests;
