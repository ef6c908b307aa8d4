//! The recycle cache: each CPU keeps its last few freed small vmalloc areas (up to
//! [`RECYCLE_MAX_PAGES`] pages, plain `vmalloc`/`vzalloc`/`__vmalloc` areas), mapped and with
//! their pages, and hands one back to the next request of the same size and zone class.
//!
//! This is Linux's per-CPU cache of kernel stacks (`NR_CACHED_STACKS`, which exists because
//! vmalloc+vfree cost too much for fork) applied to every small area. It matters most where
//! changing a mapping is expensive: a hosted machine's map is an `mmap` system call. A
//! cached area stays in the busy tree marked cached: a second `vfree` of it is reported as
//! a free of a nonexistent area, `/proc/vmallocinfo` does not list it, and its pages still
//! count in `VmallocUsed`. The cache is bounded (`RECYCLE_SLOTS` areas per CPU, the oldest
//! evicted), drained by `vm_unmap_aliases` and before any vmalloc fails, and can be turned
//! off at boot ([`crate::BootConfig::vmalloc_recycle`]).

use core::ptr::NonNull;

use super::area::{vm_flags, CpuSlots, VmStruct};
use crate::addr::PAGE_SIZE;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{AtomicUsize, Ordering};

/// Largest area (pages, guard excluded) the cache keeps.
pub const RECYCLE_MAX_PAGES: usize = 4;
/// Areas cached per CPU.
pub const RECYCLE_SLOTS: usize = 4;

impl<P: Platform> Kmem<P> {
    /// This CPU's slots (the table is allocated on first use with `create`).
    fn recycle_slots(&self, create: bool) -> Option<&[AtomicUsize]> {
        if !self.vm().recycle {
            return None;
        }
        let t = CpuSlots::get(self, &self.vm().recycle_table, create)?;
        Some(&t.of(self.platform().current_cpu().index())[..RECYCLE_SLOTS])
    }

    /// Takes a cached area of `nr` pages for a request, if this CPU has one.
    pub(crate) fn recycle_take(&self, nr: usize, size: usize, gfp: Gfp, req_flags: u32) -> Option<NonNull<u8>> {
        if nr > RECYCLE_MAX_PAGES || req_flags != vm_flags::ALLOC {
            return None;
        }
        let zone = (gfp & Gfp::ZONEMASK).bits();
        let slots = self.recycle_slots(false)?;
        let p = slots_take(
            slots,
            |p| {
                // SAFETY: `slots_take` passes areas it took out of their slot: ours alone.
                let vm = unsafe { &*(p as *const VmStruct) };
                vm.nr_pages == nr && vm.zone_gfp == zone
            },
            |p| self.recycle_evict(p),
        )?;
        // SAFETY: a cached area's VmStruct, ours alone since we took it out of its slot.
        let vm = unsafe { &*(p as *const VmStruct) };
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: the area's `nr` mapped pages, ours.
            unsafe { core::ptr::write_bytes(vm.addr as *mut u8, 0, nr * PAGE_SIZE) };
        }
        vm.requested.store(size, Ordering::Relaxed);
        self.vm().nr_recycled.fetch_sub(1, Ordering::Relaxed);
        vm.cached.store(0, Ordering::Release);
        NonNull::new(vm.addr as *mut u8)
    }

    /// Whether a freed area goes to the recycle cache: plain vmalloc areas of up to
    /// [`RECYCLE_MAX_PAGES`] pages, when recycling is on.
    pub(crate) fn recyclable(&self, vm: &VmStruct) -> bool {
        self.vm().recycle && vm.flags == vm_flags::ALLOC && vm.nr_pages <= RECYCLE_MAX_PAGES
    }

    /// Puts a freed area that `remove_vm_area` marked cached into this CPU's slots (evicting
    /// the oldest if they are full; freeing it at once if the slot table cannot be made).
    pub(crate) fn recycle_put(&self, vm: usize) {
        match self.recycle_slots(true) {
            Some(slots) => slots_put(slots, vm, |old| self.recycle_evict(old)),
            None => self.recycle_evict(vm),
        }
    }

    /// Really frees a cached area taken out of its slot.
    fn recycle_evict(&self, vm_addr: usize) {
        // SAFETY: a cached area's VmStruct, ours alone since we took it out of its slot.
        let addr = unsafe { (*(vm_addr as *const VmStruct)).addr };
        self.vm().nr_recycled.fetch_sub(1, Ordering::Relaxed);
        self.vfree_cached(addr);
    }

    /// Drains every CPU's recycle slots (`vm_unmap_aliases`, and before a vmalloc fails).
    /// Returns whether anything was freed.
    pub fn recycle_drain(&self) -> bool {
        let mut any = false;
        for cpu in 0..self.nr_cpus() {
            any |= self.recycle_drain_cpu(cpu);
        }
        any
    }

    /// Drains one CPU's recycle slots (its CPU going offline). Returns whether anything was
    /// freed.
    pub(crate) fn recycle_drain_cpu(&self, cpu: usize) -> bool {
        let Some(t) = CpuSlots::get(self, &self.vm().recycle_table, false) else { return false };
        let mut any = false;
        slots_drain(&t.of(cpu)[..RECYCLE_SLOTS], |p| {
            self.recycle_evict(p);
            any = true;
        });
        any
    }
}

// The slot protocol, over plain words (non-zero: an area whose owner is the slot), shared by
// the machine and the loom model (`loom_tests.rs`). An area is always owned by exactly one of:
// a slot, a taker, or `evict`.

/// Takes an area out of the slots for which `matches` (called only on areas the caller took
/// out, so owns) is true. Areas that do not match go back to their slot, or to `evict` if
/// the slot was refilled meanwhile.
pub(crate) fn slots_take(
    slots: &[AtomicUsize],
    mut matches: impl FnMut(usize) -> bool,
    mut evict: impl FnMut(usize),
) -> Option<usize> {
    for s in slots {
        if s.load(Ordering::Relaxed) == 0 {
            continue;
        }
        // Own the slot's area before reading it: another CPU may drain the slot and free the
        // area at any time, so nothing is read from an area not taken out first.
        let p = s.swap(0, Ordering::AcqRel);
        if p == 0 {
            continue;
        }
        if matches(p) {
            return Some(p);
        }
        if s.compare_exchange(0, p, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            evict(p);
        }
    }
    None
}

/// Puts `v` into a free slot, or into the first slot, evicting its area.
pub(crate) fn slots_put(slots: &[AtomicUsize], v: usize, mut evict: impl FnMut(usize)) {
    for s in slots {
        if s.compare_exchange(0, v, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return;
        }
    }
    let old = slots[0].swap(v, Ordering::AcqRel);
    if old != 0 {
        evict(old);
    }
}

/// Empties every slot into `evict`.
pub(crate) fn slots_drain(slots: &[AtomicUsize], mut evict: impl FnMut(usize)) {
    for s in slots {
        let p = s.swap(0, Ordering::AcqRel);
        if p != 0 {
            evict(p);
        }
    }
}
