//! [`PageRef`] (kmem's `struct page *`) and the page allocator's error type.

use core::fmt;

use crate::addr::Pfn;
use crate::gfp::Gfp;
use crate::mm::page::{pg, Page};

/// A page descriptor together with its frame number: what Linux passes around as
/// `struct page *`. Copyable; it does not own the page (see [`crate::Pages`] for that).
#[derive(Clone, Copy)]
pub struct PageRef<'a> {
    pfn: Pfn,
    page: &'a Page,
}

impl<'a> PageRef<'a> {
    pub(crate) fn new(pfn: Pfn, page: &'a Page) -> Self {
        Self { pfn, page }
    }
    /// `page_to_pfn()`.
    #[inline]
    pub fn pfn(self) -> Pfn {
        self.pfn
    }
    /// The descriptor.
    #[inline]
    pub fn page(self) -> &'a Page {
        self.page
    }
    /// `page_ref_count()`.
    pub fn refcount(self) -> i32 {
        self.page.refcount()
    }
    /// `PageCompound()`: head or tail of a compound page.
    pub fn is_compound(self) -> bool {
        self.page.flags() & (pg::HEAD | pg::TAIL) != 0
    }
    /// `PageHead()`.
    #[inline]
    pub fn is_head(self) -> bool {
        self.page.test(pg::HEAD)
    }
    /// `PageTail()`.
    pub fn is_tail(self) -> bool {
        self.page.test(pg::TAIL)
    }
    /// `PageReserved()`.
    pub fn is_reserved(self) -> bool {
        self.page.test(pg::RESERVED)
    }
    /// `PageBuddy()`: free in the buddy allocator.
    pub fn is_buddy(self) -> bool {
        self.page.is_buddy()
    }
    /// `page_private()`: the owner's word.
    pub fn private(self) -> u64 {
        self.page.data()
    }
    /// `set_page_private()`: sets the owner's word of a page the caller allocated.
    ///
    /// # Safety
    ///
    /// The caller must own the page: it came from the page allocator (`alloc_pages` and
    /// friends) and has not been freed. Pages kmem owns (slabs, large kmalloc blocks,
    /// vmalloc and per-CPU pages, page tables, free pages) keep kmem's state in this word;
    /// kmem checks what it reads from a slab's word and reports a bad one, but other owners
    /// trust theirs.
    ///
    /// ```compile_fail,E0133
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.alloc_pages(kmem::Gfp::KERNEL, kmem::Order::ZERO).unwrap();
    /// p.set_private(42); // needs `unsafe`
    /// ```
    /// ```
    /// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let p = m.alloc_pages(kmem::Gfp::KERNEL, kmem::Order::ZERO).unwrap();
    /// // SAFETY: our page, from the page allocator.
    /// unsafe { p.set_private(42) };
    /// assert_eq!(p.private(), 42);
    /// # unsafe { m.__free_pages(p, kmem::Order::ZERO) };
    /// ```
    pub unsafe fn set_private(self, v: u64) {
        self.page.set_data(v)
    }
}

impl<P: crate::Platform> crate::Kmem<P> {
    /// Whether `page` is a descriptor of this machine: every descriptor lives in the
    /// machine's own RAM (carved at boot, or in a hot-added section's first pages) or in its
    /// platform's vmemmap range, which no other machine's does, and only kmem makes a
    /// `PageRef`, so its frame number goes with its descriptor. Range checks.
    #[inline(always)]
    pub(crate) fn owns_page(&self, page: PageRef<'_>) -> bool {
        let dm = self.direct_map();
        let at = page.page as *const Page as usize;
        at.wrapping_sub(dm.base.as_usize()) < dm.limit.as_u64() as usize
            || self
                .platform()
                .vmemmap_range()
                .is_some_and(|(s, e)| at.wrapping_sub(s.as_usize()) < e.as_usize() - s.as_usize())
    }

    /// A page reference of another machine passed to `func`: reported, refused.
    #[cold]
    #[inline(never)]
    pub(crate) fn page_of_other_machine(&self, file: &str, func: &str, page: PageRef<'_>) {
        self.other_machine(file, func, &|w| {
            write!(w, "page {:#x} (pfn {:#x})", page.page as *const Page as usize, page.pfn.as_usize())
        });
    }
}

impl PartialEq for PageRef<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.pfn == o.pfn
    }
}

impl Eq for PageRef<'_> {}

impl fmt::Debug for PageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageRef(pfn:{:#x} refcount:{} flags:", self.pfn.as_usize(), self.refcount())?;
        crate::mm::page::write_flag_names(f, self.page.state_flags())?;
        f.write_str(")")
    }
}

/// Why a page allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocErrorKind {
    /// `order > MAX_PAGE_ORDER`.
    OrderTooLarge,
    /// The GFP zone modifiers are an invalid combination (`GFP_ZONE_BAD`).
    BadZoneModifiers,
    /// The node asked for does not exist.
    NoSuchNode(usize),
    /// No zone allowed by the flags had a free block above its watermark.
    NoMemory,
    /// The page has no direct-map address (a HighMem page asked for as an address).
    NotDirectMapped,
    /// `fail_page_alloc` injected this failure (`crate::fault`).
    FaultInjected,
    /// `alloc_pages_nolock`: a zone lock was held by someone else (perhaps the very context
    /// the caller interrupted), and the any-context allocator does not wait.
    Busy,
    /// GFP flags this entry point does not take (`alloc_pages_nolock`: anything but
    /// `__GFP_ACCOUNT`).
    FlagsNotAllowed,
}

/// A failed page allocation: what was asked and why it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError {
    /// The GFP flags of the request.
    pub gfp: Gfp,
    /// The order of the request.
    pub order: u32,
    /// The cause.
    pub kind: AllocErrorKind,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind {
            AllocErrorKind::OrderTooLarge => "order above MAX_PAGE_ORDER",
            AllocErrorKind::BadZoneModifiers => "invalid zone modifiers",
            AllocErrorKind::NoSuchNode(_) => "no such node",
            AllocErrorKind::NoMemory => "out of memory",
            AllocErrorKind::NotDirectMapped => "page not in the direct map",
            AllocErrorKind::FaultInjected => "injected by fail_page_alloc",
            AllocErrorKind::Busy => "zone lock busy (alloc_pages_nolock does not wait)",
            AllocErrorKind::FlagsNotAllowed => "GFP flags not allowed here",
        };
        write!(f, "page allocation failure: order:{}, mode:{:#x}({:#}): {why}", self.order, self.gfp.bits(), self.gfp)
    }
}

impl core::error::Error for AllocError {}
