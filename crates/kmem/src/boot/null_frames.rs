//! The frames behind virtual addresses 0 and `ZERO_SIZE_PTR` on a direct map that covers
//! them (one that starts at 0, as an identity map does, or wraps): boot reserves them, so
//! that a null or zero-size pointer is never an object's address and kfree's fast path
//! (`Kmem::kfree_slab_or`) needs no test of its own for them. Linux's x86 reserves page 0
//! anyway.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::kmalloc::ZERO_SIZE_PTR;
use crate::platform::DirectMap;

/// The frames (page-aligned physical addresses) that map virtual 0 and `ZERO_SIZE_PTR`, for
/// those the direct map covers.
pub(super) fn null_frames(dm: &DirectMap) -> [Option<PhysAddr>; 2] {
    [0, ZERO_SIZE_PTR].map(|va| {
        let pa = va.wrapping_sub(dm.base.as_usize()) as u64;
        (pa < dm.limit.as_u64()).then(|| PhysAddr::new(pa).align_down(PAGE_SIZE as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::VirtAddr;

    fn dm(base: usize, limit: u64) -> DirectMap {
        DirectMap { base: VirtAddr::new(base), limit: PhysAddr::new(limit) }
    }

    #[test]
    fn a_direct_map_high_in_the_address_space_covers_neither() {
        assert_eq!(null_frames(&dm(0xffff_8880_0000_0000, 1 << 40)), [None, None]);
        assert_eq!(null_frames(&dm(0x7f00_0000_0000, 1 << 30)), [None, None]);
    }

    #[test]
    fn an_identity_map_gives_up_page_0() {
        let p0 = Some(PhysAddr::new(0));
        assert_eq!(null_frames(&dm(0, 1 << 30)), [p0, p0]);
        // Starting at 8: virtual 0 is below it, ZERO_SIZE_PTR (16) is physical 8.
        assert_eq!(null_frames(&dm(8, 1 << 30)), [None, p0]);
    }

    #[test]
    fn a_wrapping_direct_map_gives_up_the_frames_it_maps_there() {
        let base = 0usize.wrapping_sub(0x3000);
        assert_eq!(null_frames(&dm(base, 1 << 20)), [Some(PhysAddr::new(0x3000)), Some(PhysAddr::new(0x3000))]);
        assert_eq!(null_frames(&dm(base, 0x3000)), [None, None], "the map ends before it wraps");
    }
}
