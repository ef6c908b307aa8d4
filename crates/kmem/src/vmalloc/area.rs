//! The vmalloc layer's records, and the only `unsafe` it needs to reach them.
//!
//! - [`VmapArea`] (`struct vmap_area`): one range of the vmalloc space, free, busy or lazily
//!   freed, and a node of exactly one of the three trees at a time. Its fields are atomics
//!   written only under the vmap lock, so readers never race into UB (the page-descriptor
//!   pattern). Objects come from the `vmap_area` slab cache.
//! - [`VmStruct`] (`struct vm_struct`): what a busy area maps (its pages, flags, caller),
//!   kmalloc'ed, written by its creator before the area is published and read-only after,
//!   except the recorded request size (`vrealloc`).
//!
//! A tree link is the address of a live `VmapArea`; `VaRef` turns links into references.
//! The invariant that makes that sound, kept by `alloc.rs`: an area is freed to its cache
//! only after it is unlinked from every tree, and links are only ever set from `VaRef`s.

use core::panic::Location;

use crate::addr::Pfn;
use crate::sync::{AtomicUsize, Ordering};

/// One range of the vmalloc space (`struct vmap_area`).
#[derive(Debug, Default)]
#[repr(C)]
pub struct VmapArea {
    start: AtomicUsize,
    end: AtomicUsize,
    left: AtomicUsize,
    right: AtomicUsize,
    /// Largest `end - start` in this subtree (free tree's augment).
    subtree_max: AtomicUsize,
    height: AtomicUsize,
    /// The `VmStruct` of a busy area (0 otherwise).
    vm: AtomicUsize,
    /// Reserved for per-area flags.
    flags: AtomicUsize,
}

/// A reference to a linked (or about to be linked) area.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VaRef<'a>(&'a VmapArea);

impl<'a> VaRef<'a> {
    /// Wraps a live area.
    #[cfg(test)]
    pub(crate) fn new(va: &'a VmapArea) -> Self {
        VaRef(va)
    }
    /// # Safety
    ///
    /// `addr` is the address of a `VmapArea` that stays allocated for `'a`.
    pub(crate) unsafe fn from_addr(addr: usize) -> VaRef<'a> {
        // SAFETY: the caller's contract.
        VaRef(unsafe { &*(addr as *const VmapArea) })
    }
    /// The area's address (its identity).
    pub(crate) fn addr(self) -> usize {
        self.0 as *const VmapArea as usize
    }
    pub(crate) fn start(self) -> usize {
        self.0.start.load(Ordering::Relaxed)
    }
    pub(crate) fn end(self) -> usize {
        self.0.end.load(Ordering::Relaxed)
    }
    pub(crate) fn size(self) -> usize {
        self.end() - self.start()
    }
    pub(crate) fn set_range(self, start: usize, end: usize) {
        self.0.start.store(start, Ordering::Relaxed);
        self.0.end.store(end, Ordering::Relaxed);
    }
    fn link(self, slot: &AtomicUsize) -> Option<VaRef<'a>> {
        let p = slot.load(Ordering::Relaxed);
        // SAFETY: links hold 0 or the address of a live area (set only from a `VaRef` by
        // `set_left`/`set_right`/`Tree::set_root`; areas are freed only once unlinked).
        (p != 0).then(|| unsafe { VaRef::from_addr(p) })
    }
    pub(crate) fn left(self) -> Option<VaRef<'a>> {
        self.link(&self.0.left)
    }
    pub(crate) fn right(self) -> Option<VaRef<'a>> {
        self.link(&self.0.right)
    }
    pub(crate) fn set_left(self, n: Option<VaRef<'a>>) {
        self.0.left.store(n.map_or(0, VaRef::addr), Ordering::Relaxed);
    }
    pub(crate) fn set_right(self, n: Option<VaRef<'a>>) {
        self.0.right.store(n.map_or(0, VaRef::addr), Ordering::Relaxed);
    }
    pub(crate) fn height(self) -> usize {
        self.0.height.load(Ordering::Relaxed)
    }
    pub(crate) fn set_height(self, h: usize) {
        self.0.height.store(h, Ordering::Relaxed);
    }
    pub(crate) fn subtree_max(self) -> usize {
        self.0.subtree_max.load(Ordering::Relaxed)
    }
    pub(crate) fn set_subtree_max(self, v: usize) {
        self.0.subtree_max.store(v, Ordering::Relaxed);
    }
    /// The busy area's `VmStruct`, if set.
    pub(crate) fn vm(self) -> Option<&'a VmStruct> {
        let p = self.0.vm.load(Ordering::Acquire);
        // SAFETY: `vm` holds 0 or a `VmStruct` published by `set_vm` after its creator wrote
        // it; it is freed only after the area left the busy tree (vfree), by the one caller
        // that removed it.
        (p != 0).then(|| unsafe { &*(p as *const VmStruct) })
    }
    /// Unpublishes the area's `VmStruct` and returns it for its remover to tear down.
    ///
    /// # Safety
    ///
    /// The caller has just unlinked the area from the busy tree under the vmap lock, so no
    /// one else can reach the `VmStruct` any more (every lookup goes through the busy tree
    /// under the lock).
    pub(crate) unsafe fn take_vm(self) -> Option<&'a mut VmStruct> {
        let p = self.0.vm.swap(0, Ordering::AcqRel);
        // SAFETY: a published VmStruct (see `vm`), now exclusively the caller's.
        (p != 0).then(|| unsafe { &mut *(p as *mut VmStruct) })
    }
    /// Publishes (or clears) the area's `VmStruct`.
    pub(crate) fn set_vm(self, vm: Option<&'a VmStruct>) {
        self.0.vm.store(vm.map_or(0, |v| v as *const VmStruct as usize), Ordering::Release);
    }
    pub(crate) fn set_flags(self, f: usize) {
        self.0.flags.store(f, Ordering::Relaxed);
    }
    /// Resets every field (a fresh or recycled area).
    pub(crate) fn reset(self, start: usize, end: usize) {
        self.set_range(start, end);
        self.set_left(None);
        self.set_right(None);
        self.set_height(1);
        self.set_subtree_max(end - start);
        self.0.vm.store(0, Ordering::Relaxed);
        self.set_flags(0);
    }
}

/// `vm_struct` flags (include/linux/vmalloc.h).
pub mod vm_flags {
    /// `VM_IOREMAP`.
    pub const IOREMAP: u32 = 0x0000_0001;
    /// `VM_ALLOC`: vmalloc'ed (pages owned by the area).
    pub const ALLOC: u32 = 0x0000_0002;
    /// `VM_MAP`: vmap'ed pages (owned by the caller).
    pub const MAP: u32 = 0x0000_0004;
    /// `VM_USERMAP`: may be mapped to user space (`vmalloc_user`).
    pub const USERMAP: u32 = 0x0000_0008;
    /// `VM_NO_GUARD`: no guard page after the area.
    pub const NO_GUARD: u32 = 0x0000_0040;
    /// kmem: a `vm_map_ram` area (Linux has no `vm_struct` for these).
    pub const MAP_RAM: u32 = 0x0100_0000;
    /// kmem: the page array was vmalloc'ed (`vpages` in `/proc/vmallocinfo`).
    pub const VPAGES: u32 = 0x0200_0000;
    /// kmem: a kernel stack.
    pub const STACK: u32 = 0x0400_0000;
}

/// What a busy area maps (`struct vm_struct`).
#[derive(Debug)]
pub struct VmStruct {
    /// Start of the area.
    pub addr: usize,
    /// Bytes including the guard page (what `/proc/vmallocinfo` prints).
    pub size: usize,
    /// [`vm_flags`].
    pub flags: u32,
    /// Pages mapped (`nr_pages`).
    pub nr_pages: usize,
    /// The page array: `nr_pages` frame numbers (kmalloc'ed, or vmalloc'ed with
    /// [`vm_flags::VPAGES`]).
    pub pages: *mut Pfn,
    /// Who asked (`caller`).
    pub caller: &'static Location<'static>,
    /// Bytes asked for (`requested_size`, for `vrealloc`).
    pub requested: AtomicUsize,
    /// The GFP zone modifiers the pages were allocated with (recycling matches them).
    pub zone_gfp: u32,
    /// 1 while the area sits freed in a recycle cache (`recycle.rs`), 0 while its owner has it.
    pub cached: crate::sync::AtomicU32,
}

impl VmStruct {
    /// The page array.
    pub fn pages(&self) -> &[Pfn] {
        if self.pages.is_null() {
            return &[];
        }
        // SAFETY: `pages` points to `nr_pages` initialised frame numbers, allocated with the
        // VmStruct and freed only with it (vfree, after the area left the busy tree).
        unsafe { core::slice::from_raw_parts(self.pages, self.nr_pages) }
    }
    /// Bytes mapped (without the guard page).
    pub fn mapped_size(&self) -> usize {
        self.nr_pages * crate::PAGE_SIZE
    }
}

/// Slots per CPU of a [`CpuSlots`] table (one cache line of words).
pub(crate) const CPU_SLOTS: usize = 8;

/// A table of one cache line of atomic words per CPU (the stack and recycle caches),
/// kmalloc'ed zeroed on first use and never freed; its address lives in `root`.
#[derive(Debug)]
pub(crate) struct CpuSlots<'a> {
    table: usize,
    _root: core::marker::PhantomData<&'a AtomicUsize>,
}

impl<'a> CpuSlots<'a> {
    /// The table at `root`, created (from any context) if `create`; `None` if absent or
    /// out of memory.
    pub(crate) fn get<P: crate::platform::Platform>(
        k: &'a crate::machine::Kmem<P>,
        root: &'a AtomicUsize,
        create: bool,
    ) -> Option<CpuSlots<'a>> {
        let mut t = root.load(Ordering::Acquire);
        if t == 0 {
            if !create {
                return None;
            }
            let bytes = k.nr_cpus() * CPU_SLOTS * core::mem::size_of::<usize>();
            let gfp = crate::gfp::Gfp::ATOMIC | crate::gfp::Gfp::ZERO | crate::gfp::Gfp::NOWARN;
            let p = k.kmalloc_node_at(bytes, gfp, None, Location::caller()).ok()?;
            match root.compare_exchange(0, p.as_ptr() as usize, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => t = p.as_ptr() as usize,
                Err(other) => {
                    // SAFETY: our fresh block lost the race; nobody saw it.
                    unsafe { k.kfree(p.as_ptr()) };
                    t = other;
                }
            }
        }
        Some(CpuSlots { table: t, _root: core::marker::PhantomData })
    }

    /// CPU `cpu`'s words (`cpu < nr_cpus` of the machine that made the table).
    pub(crate) fn of(&self, cpu: usize) -> &'a [AtomicUsize; CPU_SLOTS] {
        // SAFETY: the table holds `nr_cpus` zeroed rows of CPU_SLOTS words (atomics may start
        // as zero bytes), is never freed, and callers pass a CPU of the machine.
        unsafe { &*((self.table + cpu * CPU_SLOTS * core::mem::size_of::<usize>()) as *const [AtomicUsize; CPU_SLOTS]) }
    }
}
