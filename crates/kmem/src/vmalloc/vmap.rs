//! `vmap`/`vunmap` (caller pages into one contiguous range, with a guard page) and
//! `vm_map_ram`/`vm_unmap_ram` (the same without a guard page, for short-lived mappings).
//!
//! Linux serves small `vm_map_ram` counts from per-CPU `vmap_block`s; kmem gives every call its
//! own area (Linux's path for large counts), so `vm_unmap_ram` is always one area's free.

use core::panic::Location;
use core::ptr::NonNull;

use super::alloc::{AreaReq, Removed};
use super::area::{vm_flags, VmStruct};
use super::{VmallocError, VmallocErrorKind};
use crate::addr::{Pfn, PAGE_SIZE};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::mm::page_ref::PageRef;
use crate::platform::{PageProt, Platform};
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// `vmap(pages, count, VM_MAP, prot)`: maps the caller's pages (each a page of this
    /// machine, any zone, HighMem included) contiguously. The pages stay the caller's:
    /// [`Kmem::vunmap`] unmaps without freeing them.
    #[track_caller]
    pub fn vmap(&self, pages: &[PageRef<'_>], prot: PageProt) -> Result<NonNull<u8>, VmallocError> {
        self.map_pages_area(pages, prot, vm_flags::MAP, Location::caller())
    }

    /// `vunmap(addr)`: releases a [`Kmem::vmap`] mapping (the pages are not freed). Anything
    /// else is reported (`Trying to vunmap() nonexistent vm area`) and left alone.
    ///
    /// # Safety
    ///
    /// `addr` came from [`Kmem::vmap`] and the mapping is not used afterwards.
    pub unsafe fn vunmap(&self, addr: *const u8) {
        self.unmap_pages_area(addr as usize, vm_flags::MAP, "vunmap", "Trying to vunmap() nonexistent vm area", None);
    }

    /// `vm_map_ram(pages, count, node)`: a mapping with no guard page, for short-lived use.
    #[track_caller]
    pub fn vm_map_ram(&self, pages: &[PageRef<'_>]) -> Result<NonNull<u8>, VmallocError> {
        self.map_pages_area(pages, PageProt::KERNEL, vm_flags::MAP_RAM, Location::caller())
    }

    /// `vm_unmap_ram(addr, count)`: ends a [`Kmem::vm_map_ram`] mapping of `count` pages.
    /// A wrong address or count is reported and changes nothing.
    ///
    /// # Safety
    ///
    /// `addr` came from [`Kmem::vm_map_ram`] and the mapping is not used afterwards.
    pub unsafe fn vm_unmap_ram(&self, addr: *const u8, count: usize) {
        self.unmap_pages_area(
            addr as usize,
            vm_flags::MAP_RAM,
            "vm_unmap_ram",
            "vm_unmap_ram of an address or count vm_map_ram did not give",
            Some(count),
        );
    }

    fn map_pages_area(
        &self,
        pages: &[PageRef<'_>],
        prot: PageProt,
        flags: u32,
        caller: &'static Location<'static>,
    ) -> Result<NonNull<u8>, VmallocError> {
        let count = pages.len();
        let bytes = count.saturating_mul(PAGE_SIZE);
        let err = |kind| VmallocError { size: bytes, gfp: Gfp::KERNEL, kind };
        if count == 0 {
            return Err(err(VmallocErrorKind::ZeroSize));
        }
        if count > self.totalram_pages() {
            return Err(err(VmallocErrorKind::TooLarge));
        }
        if let Some(&p) = pages.iter().find(|&&p| !self.owns_page(p)) {
            let func = if flags == vm_flags::MAP_RAM { "vm_map_ram" } else { "vmap" };
            self.page_of_other_machine("mm/vmalloc.c", func, p);
            return Err(err(VmallocErrorKind::OtherMachine));
        }
        self.vmalloc_ready(Gfp::KERNEL).map_err(err)?;
        let gfp = self.vm_might_alloc(Gfp::KERNEL);
        let req = AreaReq { flags, align: PAGE_SIZE, caller };
        let (va, vm) = self.get_vm_area(bytes, &req, gfp).map_err(err)?;
        let arr = match self.kvmalloc_array_pfns(count, gfp) {
            Some(a) => a,
            None => {
                self.release_unpublished(va, vm);
                return Err(err(VmallocErrorKind::NoMemory));
            }
        };
        vm.pages = arr;
        for (i, p) in pages.iter().enumerate() {
            // SAFETY: the array holds `count` entries.
            unsafe { arr.add(i).write(p.pfn()) };
        }
        vm.nr_pages = count;
        if let Err(e) = self.map_vm(vm, prot, gfp) {
            vm.nr_pages = 0;
            self.release_unpublished(va, vm);
            return Err(err(VmallocErrorKind::Map(e)));
        }
        va.set_vm(Some(vm));
        Ok(NonNull::new(vm.addr as *mut u8).expect("vmalloc addresses are never null"))
    }

    /// A page array for `count` frames, kmalloc'ed (a large kmalloc above 8 KiB).
    fn kvmalloc_array_pfns(&self, count: usize, gfp: Gfp) -> Option<*mut Pfn> {
        let bytes = count.checked_mul(core::mem::size_of::<Pfn>())?;
        self.kmalloc_node_at(bytes, gfp | Gfp::NOWARN, None, Location::caller()).ok().map(|p| p.as_ptr().cast::<Pfn>())
    }

    fn unmap_pages_area(&self, addr: usize, want: u32, func: &str, msg: &str, count: Option<usize>) {
        if !self.platform().in_interrupt() && self.platform().atomic_context() {
            self.might_sleep_report("mm/vmalloc.c");
        }
        if let Some(c) = count {
            // vm_unmap_ram: check the count before anything changes.
            let ok = self.vmalloc_size_of_area(addr, want).is_some_and(|n| n == c);
            if !ok {
                self.vm_warn(func, msg, addr);
                return;
            }
        }
        let Some(Removed::Gone(vm, over)) = self.remove_vm_area(addr, want, 0, false) else {
            self.vm_warn(func, msg, addr);
            return;
        };
        vm.nr_pages = 0;
        let arr = core::mem::replace(&mut vm.pages, core::ptr::null_mut());
        // SAFETY: the page array and the VmStruct were kmalloc'ed for this area, which we
        // just removed.
        unsafe {
            self.kfree(arr.cast::<u8>());
            self.kfree((vm as *mut VmStruct).cast::<u8>());
        }
        if over {
            self.try_purge_vmap_area_lazy();
        }
    }

    /// Pages of the busy area starting at `addr` with a flag in `want`.
    fn vmalloc_size_of_area(&self, addr: usize, want: u32) -> Option<usize> {
        let v = self.vm();
        if v.init.load(Ordering::Acquire) != super::INIT_READY {
            return None;
        }
        let g = v.lock.lock_irqsave(self.platform());
        let (_, vm) = self.busy_vm_at(&g, addr)?;
        (vm.flags & want != 0).then_some(vm.nr_pages)
    }
}
