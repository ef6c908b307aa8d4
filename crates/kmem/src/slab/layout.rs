//! Object layout and slab order: Linux's `calculate_alignment`, `calculate_sizes` and
//! `calculate_order` (mm/slab_common.c, mm/slub.c), as pure functions.
//!
//! One object slot of `size` bytes, as SLUB lays it out (`p` is the pointer handed out):
//!
//! ```text
//! slot:  [left red zone: red_left_pad][object: object_size][right red zone / align pad]
//!        ^slot                        ^p                   ^p+object_size       ^p+inuse
//!        [free pointer, if outside the object][2 x track][orig_size][padding 0x5a]
//!        ^p+inuse                                                             ^slot+size
//! ```
//!
//! The free pointer lives inside the object (at `ALIGN_DOWN(object_size / 2, 8)`, away from
//! the edges) unless poisoning, a constructor, a tiny red-zoned object or `orig_size`
//! tracking needs every object byte, in which case it goes just past `inuse`.

use super::flags::SlabFlags;
use crate::addr::{MAX_PAGE_ORDER, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE};

/// Bytes of a word (`sizeof(void *)`).
pub const WORD: u32 = 8;
/// `cache_line_size()`.
pub const CACHE_LINE: u32 = 64;
/// `arch_slab_minalign()` (`__alignof__(unsigned long long)` on x86-64).
pub const ARCH_SLAB_MINALIGN: u32 = 8;
/// Largest number of objects in one slab (`MAX_OBJS_PER_PAGE`): the counters hold 15 bits.
pub const MAX_OBJS_PER_PAGE: u32 = 32767;
/// Largest object a cache may have (`KMALLOC_MAX_SIZE`: one `MAX_PAGE_ORDER` block).
pub const MAX_OBJECT_SIZE: u32 = (PAGE_SIZE as u32) << MAX_PAGE_ORDER;
/// Bytes of one `struct track` (addr, stack handle, cpu, pid, when), as on 64-bit Linux.
pub const TRACK_SIZE: u32 = 32;
/// `MIN_PARTIAL`: empty slabs a node keeps at least.
pub const MIN_PARTIAL: u32 = 5;
/// `MAX_PARTIAL`: empty slabs a node keeps at most.
pub const MAX_PARTIAL: u32 = 10;

/// Boot parameters of the order calculation (`slab_min_order=`, `slab_max_order=`,
/// `slab_min_objects=`) and the CPU count it scales with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderParams {
    /// CPUs of the machine (`num_present_cpus()`).
    pub nr_cpus: u32,
    /// `slab_min_order` (default 0).
    pub min_order: u32,
    /// `slab_max_order` (default `PAGE_ALLOC_COSTLY_ORDER`, 3).
    pub max_order: u32,
    /// `slab_min_objects` (default 0: `4 * (fls(nr_cpus) + 1)`).
    pub min_objects: u32,
}

impl OrderParams {
    /// Linux's defaults for `nr_cpus` CPUs.
    pub const fn new(nr_cpus: u32) -> Self {
        Self { nr_cpus, min_order: 0, max_order: PAGE_ALLOC_COSTLY_ORDER as u32, min_objects: 0 }
    }
}

/// The computed geometry of a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes the user asked for (`s->object_size`).
    pub object_size: u32,
    /// Bytes of a slot, metadata included (`s->size`, slabinfo's `objsize`).
    pub size: u32,
    /// Object alignment (`s->align`).
    pub align: u32,
    /// Object bytes plus the right red zone or alignment padding (`s->inuse`).
    pub inuse: u32,
    /// Free pointer offset from the object (`s->offset`).
    pub offset: u32,
    /// Bytes of left red zone before each object (`s->red_left_pad`).
    pub red_left_pad: u32,
    /// Flags with `__OBJECT_POISON` resolved.
    pub flags: SlabFlags,
    /// Preferred slab order (`oo_order(s->oo)`).
    pub order: u32,
    /// Objects in a slab of the preferred order (`oo_objects(s->oo)`).
    pub objects: u32,
    /// Fallback order when the preferred one fails (`oo_order(s->min)`).
    pub min_order: u32,
    /// Objects in a fallback slab.
    pub min_objects: u32,
}

/// Why a cache geometry is impossible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Size 0, or above [`MAX_OBJECT_SIZE`].
    BadSize(usize),
    /// Alignment not a power of two, or above the largest object (4 MiB).
    BadAlign(usize),
    /// The slot (object plus debug metadata) does not fit a `MAX_PAGE_ORDER` block.
    TooLarge(u32),
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BadSize(n) => write!(f, "object size {n} is 0 or above {MAX_OBJECT_SIZE} bytes"),
            Self::BadAlign(a) if !a.is_power_of_two() => write!(f, "alignment {a} is not a power of two"),
            Self::BadAlign(a) => write!(f, "alignment {a} is above the largest object ({MAX_OBJECT_SIZE} bytes)"),
            Self::TooLarge(n) => {
                write!(f, "an object with its metadata ({n} bytes) does not fit a block of order MAX_PAGE_ORDER")
            }
        }
    }
}

impl core::error::Error for LayoutError {}

impl Layout {
    /// Offset from the object of the end of the free pointer area (`get_info_end`).
    pub const fn info_end(&self) -> u32 {
        if self.freeptr_outside() {
            self.inuse + WORD
        } else {
            self.inuse
        }
    }
    /// The geometry with the free pointer at the object's start when it lies inside the object
    /// ([`SlabBootConfig::freeptr_at_start`](super::SlabBootConfig::freeptr_at_start)); a
    /// pointer kept after the object (constructor, RCU, poisoning) stays where it is.
    ///
    /// ```
    /// use kmem::slab::layout::{calculate_sizes, OrderParams};
    /// use kmem::slab::SlabFlags;
    /// let l = calculate_sizes(256, 0, SlabFlags::NONE, false, OrderParams::new(2)).unwrap();
    /// assert_eq!((l.offset, l.with_freeptr_at_start().offset), (128, 0));
    /// let ctor = calculate_sizes(256, 0, SlabFlags::NONE, true, OrderParams::new(2)).unwrap();
    /// assert_eq!(ctor.with_freeptr_at_start(), ctor, "a constructed object keeps its bytes");
    /// ```
    #[must_use]
    pub const fn with_freeptr_at_start(mut self) -> Self {
        if !self.freeptr_outside() {
            self.offset = 0;
        }
        self
    }
    /// The free pointer lies outside the object bytes (`freeptr_outside_object`).
    pub const fn freeptr_outside(&self) -> bool {
        self.offset >= self.inuse
    }
    /// Offset from the object of the two tracks (alloc, free), with `STORE_USER`.
    pub const fn track_offset(&self) -> u32 {
        self.info_end()
    }
    /// Whether the requested size of each kmalloc object is recorded (`slub_debug_orig_size`).
    pub const fn has_orig_size(&self) -> bool {
        self.flags.contains(SlabFlags::STORE_USER) && self.flags.contains(SlabFlags::KMALLOC)
    }
    /// Offset from the object of the `orig_size` word.
    pub const fn orig_size_offset(&self) -> u32 {
        self.track_offset() + 2 * TRACK_SIZE
    }
    /// Offset from the object where the metadata ends and padding starts.
    pub const fn metadata_end(&self) -> u32 {
        let mut off = self.info_end();
        if self.flags.contains(SlabFlags::STORE_USER) {
            off += 2 * TRACK_SIZE;
            if self.flags.contains(SlabFlags::KMALLOC) {
                off += 4;
            }
        }
        off
    }
    /// Bytes from the object to the next slot's start (`size_from_object`).
    pub const fn size_from_object(&self) -> u32 {
        self.size - self.red_left_pad
    }
    /// Bytes of a slab of `order` left over after `objects` slots.
    pub const fn leftover(&self, order: u32) -> u32 {
        ((PAGE_SIZE as u32) << order) % self.size
    }
    /// `slab_ksize()`: bytes of an object a user may use.
    pub const fn ksize(&self) -> u32 {
        if self.flags.intersects(SlabFlags::RED_ZONE.union(SlabFlags::POISON)) {
            self.object_size
        } else if self.flags.contains(SlabFlags::STORE_USER) {
            self.inuse
        } else {
            self.size
        }
    }
}

/// `ALIGN(x, a)` for a power-of-two `a`.
const fn align_up(x: u32, a: u32) -> u32 {
    (x + a - 1) & !(a - 1)
}

/// `get_order(size)`: the smallest order whose block holds `size` bytes.
pub const fn get_order(size: u32) -> u32 {
    let pages = (size as usize).div_ceil(PAGE_SIZE);
    if pages <= 1 {
        0
    } else {
        usize::BITS - (pages - 1).leading_zeros()
    }
}

/// `fls(x)`: position of the highest set bit, 1-based; 0 for 0.
const fn fls(x: u32) -> u32 {
    u32::BITS - x.leading_zeros()
}

/// `order_objects(order, size)`.
pub const fn order_objects(order: u32, size: u32) -> u32 {
    ((PAGE_SIZE as u32) << order) / size
}

/// `calculate_alignment(flags, align, size)`.
pub const fn calculate_alignment(flags: SlabFlags, align: u32, size: u32) -> u32 {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        if ralign > align {
            align = ralign;
        }
    }
    if align < ARCH_SLAB_MINALIGN {
        align = ARCH_SLAB_MINALIGN;
    }
    align_up(align, WORD)
}

/// `calc_slab_order()`: the first order from `min_order` up to `max_order` whose leftover
/// is at most `1/fract_leftover` of the slab; `max_order + 1` if none.
const fn calc_slab_order(size: u32, min_order: u32, max_order: u32, fract_leftover: u32) -> u32 {
    let mut order = min_order;
    while order <= max_order {
        let slab_size = (PAGE_SIZE as u32) << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `calculate_order(size)` (Linux 6.8+): accept at most 1/16, 1/8, 1/4, then 1/2 of waste,
/// from the order that holds `min_objects` objects up to `slab_max_order`; else the order
/// of one object. `None` if one object needs more than `MAX_PAGE_ORDER`.
pub const fn calculate_order(size: u32, p: OrderParams) -> Option<u32> {
    let mut min_objects = p.min_objects;
    if min_objects == 0 {
        min_objects = 4 * (fls(p.nr_cpus) + 1);
    }
    let mut max_objects = order_objects(p.max_order, size);
    if max_objects < 1 {
        max_objects = 1;
    }
    if min_objects > max_objects {
        min_objects = max_objects;
    }
    let mut min_order = get_order(min_objects * size);
    if p.min_order > min_order {
        min_order = p.min_order;
    }
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return Some(get_order(size * MAX_OBJS_PER_PAGE) - 1);
    }
    let mut fraction = 16;
    while fraction > 1 {
        let order = calc_slab_order(size, min_order, p.max_order, fraction);
        if order <= p.max_order {
            return Some(order);
        }
        fraction /= 2;
    }
    let order = get_order(size);
    if order <= MAX_PAGE_ORDER as u32 {
        Some(order)
    } else {
        None
    }
}

/// `calculate_sizes()` after `kmem_cache_open`'s flag resolution: the whole geometry of a
/// cache of `object_size`-byte objects aligned to `align`, with a constructor or not.
pub fn calculate_sizes(
    object_size: usize,
    align: usize,
    flags: SlabFlags,
    has_ctor: bool,
    p: OrderParams,
) -> Result<Layout, LayoutError> {
    if object_size == 0 || object_size > MAX_OBJECT_SIZE as usize {
        return Err(LayoutError::BadSize(object_size));
    }
    if !(align == 0 || align.is_power_of_two()) || align > MAX_OBJECT_SIZE as usize {
        return Err(LayoutError::BadAlign(align));
    }
    let object_size = object_size as u32;
    let align = calculate_alignment(flags, align as u32, object_size);
    let mut flags = flags;
    let mut size = align_up(object_size, WORD);
    // `calculate_sizes()`: a TYPESAFE_BY_RCU object may be read after its free, so it is
    // never poisoned.
    if flags.contains(SlabFlags::POISON) && !has_ctor && !flags.contains(SlabFlags::TYPESAFE_BY_RCU) {
        flags |= SlabFlags::OBJECT_POISON;
    } else {
        flags = flags.without(SlabFlags::OBJECT_POISON);
    }
    if flags.contains(SlabFlags::RED_ZONE) && size == object_size {
        size += WORD;
    }
    let inuse = size;
    let orig_size = flags.contains(SlabFlags::STORE_USER) && flags.contains(SlabFlags::KMALLOC);
    let offset = if orig_size
        || flags.intersects(SlabFlags::TYPESAFE_BY_RCU.union(SlabFlags::POISON))
        || (flags.contains(SlabFlags::RED_ZONE) && object_size < WORD)
        || has_ctor
    {
        let o = size;
        size += WORD;
        o
    } else {
        (object_size / 2) & !(WORD - 1)
    };
    if flags.contains(SlabFlags::STORE_USER) {
        size += 2 * TRACK_SIZE;
        if flags.contains(SlabFlags::KMALLOC) {
            size += 4;
        }
    }
    let mut red_left_pad = 0;
    if flags.contains(SlabFlags::RED_ZONE) {
        size += WORD;
        red_left_pad = align_up(WORD, align);
        size += red_left_pad;
    }
    let size = align_up(size, align);
    let order = calculate_order(size, p).ok_or(LayoutError::TooLarge(size))?;
    let min_order = get_order(size);
    Ok(Layout {
        object_size,
        size,
        align,
        inuse,
        offset,
        red_left_pad,
        flags,
        order,
        objects: order_objects(order, size).min(MAX_OBJS_PER_PAGE),
        min_order,
        min_objects: order_objects(min_order, size).min(MAX_OBJS_PER_PAGE),
    })
}

/// `min_partial`: `clamp(ilog2(size) / 2, MIN_PARTIAL, MAX_PARTIAL)`.
pub const fn min_partial(size: u32) -> u32 {
    let v = (u32::BITS - 1 - size.leading_zeros()) / 2;
    if v < MIN_PARTIAL {
        MIN_PARTIAL
    } else if v > MAX_PARTIAL {
        MAX_PARTIAL
    } else {
        v
    }
}

/// Exact division by a slot size, for the checks that an offset starts an object: `size` is
/// `odd << shift`, and `inv` is `odd`'s inverse modulo 2^64. For any 64-bit `off`,
/// [`exact_slot`]`(off)` is `off / size` when `size` divides `off`, and otherwise at least
/// 2^32, above every object count: so `exact_slot(off) < n` says "`off` starts one of the
/// first `n` objects" in a multiply, a rotate and a compare (no divide, no second test).
///
/// Why: `x = off * inv` (mod 2^64). If `off = k * size`, `x = k << shift` and the rotate
/// gives `k`. Conversely a result `k < 2^32` needs `x`'s low `shift` bits clear (they
/// rotate to the top), so `x = k << shift`, and multiplying by `odd`, `off = k * size`
/// modulo 2^64, hence exactly, as `k * size` is below 2^64.
pub const fn exact_divisor(size: u32) -> (u64, u8) {
    assert!(size != 0);
    let shift = size.trailing_zeros();
    let odd = (size >> shift) as u64;
    // Newton's iteration doubles the correct low bits: `odd` is its own inverse modulo 8
    // (3 bits), then 6, 12, 24, 48, 96.
    let mut inv = odd;
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        i += 1;
    }
    (inv, shift as u8)
}

/// `off / size` if `size` (given by [`exact_divisor`]'s `inv` and `shift`) divides `off`,
/// else a number of at least 2^32.
#[inline(always)]
pub const fn exact_slot(off: u64, inv: u64, shift: u8) -> u64 {
    off.wrapping_mul(inv).rotate_right(shift as u32)
}

#[cfg(test)]
mod tests;
