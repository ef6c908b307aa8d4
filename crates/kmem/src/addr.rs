//! Address and unit newtypes: [`PhysAddr`], [`VirtAddr`], [`Pfn`], [`Order`].
//!
//! Raw `usize`/`u64` addresses never cross a module boundary; these types do. Arithmetic that
//! can overflow is checked at construction, not at every use.

#![forbid(unsafe_code)]

use core::fmt;

/// log2 of the base page size.
pub const PAGE_SHIFT: u32 = 12;
/// The base page size in bytes (4 KiB, as on x86 and most arm64 configurations).
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Largest buddy order, inclusive (Linux's `MAX_PAGE_ORDER`).
pub const MAX_PAGE_ORDER: u8 = 10;
/// Number of buddy free lists per zone (`NR_PAGE_ORDERS`).
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// Orders above this are "costly" (`PAGE_ALLOC_COSTLY_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: u8 = 3;
/// Pageblock order: the unit of migratetype grouping (`pageblock_order`, 2 MiB).
pub const PAGEBLOCK_ORDER: u8 = 9;
/// Pages per pageblock.
pub const PAGEBLOCK_NR_PAGES: usize = 1 << PAGEBLOCK_ORDER;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Wraps a raw physical address.
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }
    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The page frame that contains this address.
    pub const fn pfn(self) -> Pfn {
        Pfn((self.0 >> PAGE_SHIFT) as usize)
    }
    /// Offset within its page.
    pub const fn page_offset(self) -> usize {
        (self.0 as usize) & (PAGE_SIZE - 1)
    }
    /// True if page aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }
    /// Rounds down to `align` (a power of two).
    pub const fn align_down(self, align: u64) -> Self {
        Self(self.0 & !(align - 1))
    }
    /// Rounds up to `align` (a power of two); `None` on overflow.
    pub const fn align_up(self, align: u64) -> Option<Self> {
        match self.0.checked_add(align - 1) {
            Some(v) => Some(Self(v & !(align - 1))),
            None => None,
        }
    }
    /// `self + bytes`, `None` on overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A kernel virtual address (direct map, vmalloc or kmap area).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(usize);

impl VirtAddr {
    /// Wraps a raw virtual address.
    pub const fn new(addr: usize) -> Self {
        Self(addr)
    }
    /// The raw value.
    pub const fn as_usize(self) -> usize {
        self.0
    }
    /// As a raw pointer. Dereferencing it is the caller's business (and `unsafe`).
    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as *mut T
    }
    /// From a pointer.
    pub fn from_ptr<T: ?Sized>(ptr: *const T) -> Self {
        Self(ptr.cast::<u8>() as usize)
    }
    /// Offset within its page.
    pub const fn page_offset(self) -> usize {
        self.0 & (PAGE_SIZE - 1)
    }
    /// `self + bytes`, `None` on overflow.
    pub const fn checked_add(self, bytes: usize) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A page frame number: physical address >> `PAGE_SHIFT`.
///
/// kmem's page descriptors link free lists by 32-bit frame numbers, so a machine may span at
/// most 2^32 frames (16 TiB); boot rejects larger memory maps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(usize);

impl Pfn {
    /// Wraps a raw frame number.
    pub const fn new(pfn: usize) -> Self {
        Self(pfn)
    }
    /// The raw value.
    pub const fn as_usize(self) -> usize {
        self.0
    }
    /// The physical address of the frame's first byte.
    pub const fn phys(self) -> PhysAddr {
        PhysAddr((self.0 as u64) << PAGE_SHIFT)
    }
    /// `self + n`.
    #[allow(clippy::should_implement_trait)]
    pub const fn add(self, n: usize) -> Self {
        Self(self.0 + n)
    }
    /// `self - n`.
    #[allow(clippy::should_implement_trait)]
    pub const fn sub(self, n: usize) -> Self {
        Self(self.0 - n)
    }
    /// True if aligned to a block of `order`.
    pub const fn is_aligned(self, order: Order) -> bool {
        self.0 & (order.nr_pages() - 1) == 0
    }
    /// The buddy of the block of `order` that starts here (`pfn ^ (1 << order)`).
    pub const fn buddy(self, order: Order) -> Self {
        Self(self.0 ^ order.nr_pages())
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A buddy order: a block of `2^order` pages. Always `<= MAX_PAGE_ORDER`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Order(u8);

impl Order {
    /// Order 0: one page.
    pub const ZERO: Order = Order(0);
    /// The largest order (`MAX_PAGE_ORDER`).
    pub const MAX: Order = Order(MAX_PAGE_ORDER);
    /// The pageblock order.
    pub const PAGEBLOCK: Order = Order(PAGEBLOCK_ORDER);

    /// `Some` if `order <= MAX_PAGE_ORDER`.
    pub const fn new(order: u32) -> Option<Self> {
        if order <= MAX_PAGE_ORDER as u32 {
            Some(Self(order as u8))
        } else {
            None
        }
    }
    /// Order `order`, for constants and literals (`Order::of(3)`). Panics if
    /// `order > MAX_PAGE_ORDER` (in a `const`, the build fails); orders that come from input
    /// go through [`Order::new`].
    ///
    /// ```
    /// use kmem::Order;
    /// const UNIT: Order = Order::of(3);
    /// assert_eq!(UNIT.nr_pages(), 8);
    /// assert_eq!(Order::new(11), None);
    /// ```
    /// ```compile_fail,E0080
    /// const TOO_BIG: kmem::Order = kmem::Order::of(11);
    /// ```
    #[track_caller]
    pub const fn of(order: u32) -> Self {
        match Self::new(order) {
            Some(o) => o,
            None => panic!("order above MAX_PAGE_ORDER"),
        }
    }
    /// The raw value.
    pub const fn as_u32(self) -> u32 {
        self.0 as u32
    }
    /// As an index into per-order arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// Pages in a block of this order.
    pub const fn nr_pages(self) -> usize {
        1 << self.0
    }
    /// Bytes in a block of this order.
    pub const fn bytes(self) -> usize {
        PAGE_SIZE << self.0
    }
    /// The next order up, if any.
    pub const fn up(self) -> Option<Self> {
        Self::new(self.0 as u32 + 1)
    }
    /// The next order down, if any.
    pub const fn down(self) -> Option<Self> {
        if self.0 == 0 {
            None
        } else {
            Some(Self(self.0 - 1))
        }
    }
    /// The smallest order whose block holds `bytes` (Linux's `get_order`); `None` above MAX.
    pub const fn for_bytes(bytes: usize) -> Option<Self> {
        let pages = bytes.div_ceil(PAGE_SIZE);
        let pages = if pages == 0 { 1 } else { pages };
        Self::new(pages.next_power_of_two().trailing_zeros())
    }
    /// True for orders above `PAGE_ALLOC_COSTLY_ORDER`.
    pub const fn is_costly(self) -> bool {
        self.0 > PAGE_ALLOC_COSTLY_ORDER
    }
    /// All orders, 0..=MAX.
    pub fn all() -> impl DoubleEndedIterator<Item = Order> + Clone {
        (0..=MAX_PAGE_ORDER).map(Order)
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Order({})", self.0)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bounds_and_sizes() {
        assert_eq!(Order::new(10), Some(Order::MAX));
        assert_eq!(Order::new(11), None);
        assert_eq!(Order::MAX.nr_pages(), 1024);
        assert_eq!(Order::MAX.bytes(), 4 << 20);
        assert_eq!(Order::for_bytes(0), Some(Order::ZERO));
        assert_eq!(Order::for_bytes(4096), Some(Order::ZERO));
        assert_eq!(Order::for_bytes(4097), Some(Order::new(1).unwrap()));
        assert_eq!(Order::for_bytes(4 << 20), Some(Order::MAX));
        assert_eq!(Order::for_bytes((4 << 20) + 1), None);
        assert!(Order::new(4).unwrap().is_costly());
        assert!(!Order::new(3).unwrap().is_costly());
    }

    #[test]
    fn buddy_arithmetic() {
        let o3 = Order::new(3).unwrap();
        assert_eq!(Pfn::new(0x100).buddy(o3), Pfn::new(0x108));
        assert_eq!(Pfn::new(0x108).buddy(o3), Pfn::new(0x100));
        assert!(Pfn::new(0x108).is_aligned(o3));
        assert!(!Pfn::new(0x104).is_aligned(o3));
        assert_eq!(PhysAddr::new(0x1234).pfn(), Pfn::new(1));
        assert_eq!(Pfn::new(2).phys(), PhysAddr::new(0x2000));
        assert_eq!(PhysAddr::new(0x1001).align_up(4096), Some(PhysAddr::new(0x2000)));
        assert_eq!(PhysAddr::new(u64::MAX).align_up(4096), None);
    }
}
