//! [`Kmem`]: one machine's memory-management state, and the accessors every layer uses.
//!
//! The state (`MachineState`) lives in the machine's own RAM, carved by memblock at boot;
//! `Kmem` is a small handle holding the platform and a pointer to it. Several machines can
//! exist in one process: nothing here is global.
//!
//! # Handles of one machine used with another
//!
//! A handle of one machine can reach another's API. Every handle that can is checked cheaply
//! and refused with a one-line `WARNING: ... <func>: <what> belongs to another machine`
//! (counted as `Warning`), changing nothing on either machine:
//! - a cache (`KmemCache`) records its machine's id (the address of its `MachineState`,
//!   `Kmem::machine_id`): the allocation fast path compares it in the condition that
//!   already guards the fast path (a load and a compare: 3-4 instructions per pair,
//!   `scripts/slab_cost.sh`), every other cache API checks it on entry, and
//!   `kmem_cache_free` needs no check of its own (the object's cache, found from the
//!   pointer, is compared with the one named);
//! - a per-CPU pointer's chunk header must lie in the machine's RAM (`per_cpu_ptr`,
//!   `this_cpu_ptr` return null, `free_percpu` ignores it; kmem's own per-CPU accesses use
//!   `per_cpu_ptr_unchecked`); per-CPU variables (`PerCpuVar`) carry the machine id and
//!   panic;
//! - a page reference's descriptor must lie in the machine's RAM (`__free_pages`,
//!   `get_page`/`put_page`, `split_page`, `vmap`, `vm_map_ram`): a range check;
//! - pointers (`kfree`, `vfree`, `ksize`, `krealloc`) are looked up in the machine's own
//!   direct map and vmalloc trees, so another machine's are reported like any pointer kmem
//!   does not own.
//!
//! Owning handles (`Cache`, `Pages`, `PerCpuBox`, `KernelStack`, `SlabBox`) hold their
//! machine and use it. `docs/MISUSE.md` lists each case with its test
//! (`crates/kmem-hosted/tests/soundness.rs`).

use core::ptr::NonNull;

use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::boot::{DeferredState, ZoneLayout};
use crate::fault::FaultCell;
use crate::kmalloc::KmallocState;
use crate::mm::memmap::Memmap;
use crate::mm::node::Node;
use crate::mm::page::{Page, PageIdentity, MAX_NUMNODES};
use crate::mm::pcp::PerCpuPages;
use crate::mm::zone::Zone;
use crate::percpu::PercpuState;
use crate::platform::{CpuId, DirectMap, Platform, ReportKind};
use crate::rcu::RcuState;
use crate::reclaim::ReclaimState;
use crate::report::Reports;
use crate::slab::SlabState;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, RawSpinLock};
use crate::vmalloc::VmallocState;

/// Most CPUs a machine can have (`NR_CPUS`).
pub const NR_CPUS: usize = 256;

/// What boot carved and found, for the demo and `/proc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// Usable RAM in the memory map, bytes.
    pub ram_bytes: u64,
    /// Present sections (each has page descriptors).
    pub present_sections: usize,
    /// Bytes of page descriptors (`struct page` arrays).
    pub memmap_bytes: u64,
    /// Bytes of all kmem metadata carved at boot (descriptors, section table, nodes, state).
    pub metadata_bytes: u64,
    /// Bytes of the per-CPU first chunk carved at boot: one 32 KiB unit per CPU and the
    /// page-rounded chunk headers.
    pub percpu_bytes: u64,
    /// Bytes of usable RAM reserved at boot (metadata plus caller reservations).
    pub reserved_bytes: u64,
}

/// Machine-wide event counters (the global part of `/proc/vmstat`).
#[derive(Debug, Default)]
pub struct VmEvents {
    /// Allocations that entered the slow path (`allocstall`-like: the fast path failed).
    pub slowpath: AtomicU64,
    /// Failed allocations.
    pub alloc_fail: AtomicU64,
    /// kswapd wake-ups delivered to the platform's kswapd (`Platform::wake_kswapd` returned
    /// true).
    pub kswapd_wake: AtomicU64,
}

/// All state of one machine. Lives in the machine's RAM; only the core reaches it.
#[derive(Debug)]
pub(crate) struct MachineState {
    pub(crate) memmap: Memmap,
    nodes: [usize; MAX_NUMNODES],
    pub(crate) nr_nodes: u32,
    pub(crate) nr_cpus: u32,
    /// [`PageIdentity::key`] of the fast zone ([`MachineState::fast_zone`]) while the free
    /// fast path may run (`page_free_fast`), `u32::MAX` otherwise (no fast zone, the per-CPU
    /// lists off, `init_on_free`): the free fast path's one test (two `u32`s where two
    /// `usize`s were, so the state keeps its size, which boot's carving and the golden /proc
    /// tests pin). Written with `page_free_fast` ([`MachineState::set_page_free_fast`]).
    fast_zone_key: AtomicU32,
    cpu_to_node: [u8; NR_CPUS],
    pub(crate) layout: ZoneLayout,
    pub(crate) direct_map: DirectMap,
    pub(crate) max_pfn: AtomicUsize,
    pub(crate) min_free_kbytes: AtomicU64,
    pub(crate) totalram: AtomicUsize,
    pub(crate) reports: Reports,
    pub(crate) boot: BootInfo,
    pub(crate) grouping_disabled: bool,
    /// [`BootConfig::ram_zeroed`](crate::BootConfig::ram_zeroed): free RAM never written
    /// since boot (or hot-add) reads as zero, and is marked so (`mm/zeroed.rs`).
    pub(crate) ram_zeroed: bool,
    /// The order-0 fast path's zone: the first of node 0's zonelist (its address, 0 if
    /// none; set once boot has built the zonelists, which never change).
    fast_zone: usize,
    pub(crate) events: VmEvents,
    pub(crate) pcp_enabled: AtomicBool,
    /// `pcp_enabled`, `fail_page_alloc` not armed, not `init_on_alloc`, one node and a fast
    /// zone: the order-0 fast path may run ([`Kmem::page_fast_ok`]; written by `fault_rearm`,
    /// under the fault lock once there is a fault state; boot clears it if there is no fast
    /// zone). True only while `fast_zone` is set: the fast path takes the zone without a test
    /// ([`MachineState::fast_zone_if_ok`]).
    pub(crate) page_fast: AtomicBool,
    /// `pcp_enabled` and not `init_on_free`: freed order-0..3 blocks may go straight to the
    /// per-CPU lists (`mm/page_free.rs`; written by `fault_rearm`, with `fast_zone_key`).
    pub(crate) page_free_fast: AtomicBool,
    /// The `init_on_alloc=1` boot option (`mm/meminit.rs`).
    pub(crate) init_on_alloc: AtomicBool,
    /// The `init_on_free=1` boot option.
    pub(crate) init_on_free: AtomicBool,
    /// Fault injection: the armed flags and where the rest is (`fault/`).
    pub(crate) fault: FaultCell,
    /// The per-CPU allocator: first chunk and chunk list (`percpu/`).
    pub(crate) percpu: PercpuState,
    /// The slab allocator's registry (`slab/`).
    pub(crate) slab: SlabState,
    /// `mem_hotplug_lock`: serialises memory hot-add.
    pub(crate) hotplug_lock: RawSpinLock,
    /// Deferred struct-page initialisation (`boot/deferred.rs`).
    pub(crate) deferred: DeferredState,
    /// The kmalloc caches (`kmalloc/`).
    pub(crate) kmalloc: KmallocState,
    /// The vmalloc layer (`vmalloc/`).
    pub(crate) vmalloc: VmallocState,
    /// Address of the highmem layer's state (`highmem/`), carved at boot on machines with
    /// HighMem memory; 0 on the others.
    pub(crate) highmem: usize,
    /// Shrinkers, OOM notifiers, kswapd's per-node state and reclaim's counters (`reclaim/`).
    pub(crate) reclaim: ReclaimState,
    /// RCU (`rcu/`): the grace-period state and where its per-CPU part is.
    pub(crate) rcu: RcuState,
    /// KFENCE: the address of the pool's metadata, which holds its range, gate and records
    /// (`kfence/`); 0 without a pool.
    pub(crate) kfence: crate::kfence::KfenceCell,
}

/// The order-0 fast path's zone ([`MachineState::fast_zone`]): a zone with a pageset for every
/// CPU, installed at boot and never removed, so its CPU's pageset needs no test.
#[derive(Clone, Copy)]
pub(crate) struct FastZone<'a>(&'a Zone);

impl<'a> FastZone<'a> {
    /// The zone.
    #[inline(always)]
    pub(crate) fn zone(self) -> &'a Zone {
        self.0
    }
    /// CPU `cpu`'s pageset, with no test: the length test `Zone::pageset` makes cost the
    /// order-0 page pair four instructions.
    #[inline(always)]
    pub(crate) fn pageset(self, cpu: CpuId) -> &'a PerCpuPages {
        // SAFETY: `set_fast_zone` chose a zone with `nr_cpus` pagesets installed (boot
        // carves them for every zone populated at boot; they are never removed), and a CPU
        // the platform names is below `nr_cpus` (`Platform`'s safety contract).
        unsafe { self.0.pagesets().get_unchecked(cpu.index()) }
    }
}

impl MachineState {
    pub(crate) fn new(
        memmap: Memmap,
        layout: ZoneLayout,
        direct_map: DirectMap,
        nr_cpus: usize,
        vmap_lazy_max: usize,
        vmalloc_recycle: bool,
    ) -> Self {
        Self {
            memmap,
            nodes: [0; MAX_NUMNODES],
            nr_nodes: 0,
            nr_cpus: u32::try_from(nr_cpus).expect("CPU count fits 32 bits"),
            fast_zone_key: AtomicU32::new(u32::MAX),
            cpu_to_node: [0; NR_CPUS],
            layout,
            direct_map,
            max_pfn: AtomicUsize::new(0),
            min_free_kbytes: AtomicU64::new(0),
            totalram: AtomicUsize::new(0),
            reports: Reports::new(),
            boot: BootInfo::default(),
            grouping_disabled: false,
            ram_zeroed: false,
            fast_zone: 0,
            events: VmEvents::default(),
            pcp_enabled: AtomicBool::new(true),
            page_fast: AtomicBool::new(true),
            page_free_fast: AtomicBool::new(true),
            init_on_alloc: AtomicBool::new(false),
            init_on_free: AtomicBool::new(false),
            fault: FaultCell::new(),
            percpu: PercpuState::empty(),
            slab: SlabState::empty(),
            hotplug_lock: RawSpinLock::new(),
            deferred: DeferredState::new(),
            kmalloc: KmallocState::new(),
            vmalloc: VmallocState::new(vmap_lazy_max, vmalloc_recycle),
            highmem: 0,
            reclaim: ReclaimState::new(),
            rcu: RcuState::default(),
            kfence: crate::kfence::KfenceCell::new(),
        }
    }

    pub(crate) fn set_node(&mut self, nid: usize, node: NonNull<Node>) {
        self.nodes[nid] = node.as_ptr() as usize;
        self.nr_nodes = self.nr_nodes.max(nid as u32 + 1);
    }

    pub(crate) fn set_cpu_node(&mut self, cpu: usize, nid: u8) {
        self.cpu_to_node[cpu] = nid;
    }

    /// Records node 0's first zonelist zone for [`MachineState::fast_zone`] (boot, once the
    /// zonelists are built and the pagesets carved), if it has a pageset for every CPU (a
    /// zone populated at boot has); without one, the order-0 fast paths stay off.
    pub(crate) fn set_fast_zone(&mut self) {
        let first = self.node(0).and_then(|n| n.zonelist().first().map(|zr| (n, zr.zone)));
        if let Some((node, zt)) = first {
            let zone = &node.zones[zt as usize];
            if zone.pagesets().len() == self.nr_cpus as usize {
                self.fast_zone = zone as *const Zone as usize;
            }
        }
        if self.fast_zone == 0 {
            self.page_fast.store(false, Ordering::Relaxed);
        }
        self.set_page_free_fast(self.page_free_fast.load(Ordering::Relaxed));
    }

    /// Whether boot found a fast zone ([`MachineState::set_fast_zone`]).
    pub(crate) fn has_fast_zone(&self) -> bool {
        self.fast_zone != 0
    }

    /// Sets `page_free_fast` and, with it, the free fast path's key (`fast_zone_key`): the
    /// fast zone's while freed blocks may go to the per-CPU lists, none otherwise.
    pub(crate) fn set_page_free_fast(&self, on: bool) {
        self.page_free_fast.store(on, Ordering::Relaxed);
        let key = match self.fast_zone_any() {
            Some(z) if on => PageIdentity::key(z.zone_type() as usize, z.node()),
            _ => u32::MAX,
        };
        self.fast_zone_key.store(key, Ordering::Relaxed);
    }

    /// The fast zone ([`MachineState::fast_zone`]) if it is the zone of a page whose identity
    /// is `key` ([`PageIdentity::key`]) and the free fast path may run: one compare does
    /// both, where the node and zone lookups, the pageset's length test and a load and test
    /// of `page_free_fast` were.
    #[inline(always)]
    pub(crate) fn fast_zone_of(&self, key: u32) -> Option<FastZone<'_>> {
        if key != self.fast_zone_key.load(Ordering::Relaxed) {
            return None;
        }
        debug_assert_ne!(self.fast_zone, 0);
        // SAFETY: the key is set (not `u32::MAX`, which no page's identity is) only while
        // `fast_zone` is set, to the address of a zone of node 0 carved at boot and living as
        // long as the machine state.
        Some(FastZone(unsafe { &*(self.fast_zone as *const Zone) }))
    }

    /// The order-0 allocation fast path's zone while that path may run (`page_fast`; one
    /// load and test where `page_fast` and the zone's address were each loaded and tested).
    #[inline(always)]
    pub(crate) fn fast_zone_if_ok(&self) -> Option<FastZone<'_>> {
        if !self.page_fast.load(Ordering::Relaxed) {
            return None;
        }
        debug_assert_ne!(self.fast_zone, 0);
        // SAFETY: `page_fast` is true only while `fast_zone` is set (`set_fast_zone` clears
        // it when there is none, `fault_rearm` sets it only when there is one), to the
        // address of a zone of node 0 carved at boot and living as long as the machine state.
        Some(FastZone(unsafe { &*(self.fast_zone as *const Zone) }))
    }

    /// The fast zone, whether or not the fast paths may run.
    fn fast_zone_any(&self) -> Option<&Zone> {
        // SAFETY: a non-zero `fast_zone` is the address of a zone of node 0, carved at boot
        // and living as long as the machine state (`set_fast_zone`).
        (self.fast_zone != 0).then(|| unsafe { &*(self.fast_zone as *const Zone) })
    }

    /// Node `nid`, if it exists.
    #[inline]
    pub(crate) fn node(&self, nid: usize) -> Option<&Node> {
        let p = *self.nodes.get(nid)?;
        if p == 0 {
            return None;
        }
        // SAFETY: non-zero slots hold nodes carved and initialised at boot that live as long as
        // the machine state (set only by boot through `set_node`).
        Some(unsafe { &*(p as *const Node) })
    }

    /// The zone a page's identity names (`page_zone()`).
    #[inline(always)]
    pub(crate) fn zone_of(&self, id: PageIdentity) -> &Zone {
        let node = self.node(id.node).expect("page descriptor names a node that does not exist");
        &node.zones[id.zone]
    }

    /// `cpu_to_node()`.
    #[inline]
    pub(crate) fn cpu_to_node(&self, cpu: usize) -> usize {
        self.cpu_to_node[cpu] as usize
    }
}

/// One kmem machine: a platform plus the state carved from its RAM.
///
/// Every API is callable from any thread. Create one with [`Kmem::boot`] (or, in a process,
/// with `kmem_hosted::MachineBuilder`).
///
/// The machine's state, free lists and memory map are kmem's alone: users see them through
/// read-only views (`/proc`, [`Kmem::frame`], [`Zone`]'s counters), never as references they
/// could misuse.
///
/// ```compile_fail,E0624
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let state = m.state(); // private to kmem
/// ```
/// ```compile_fail,E0603
/// use kmem::mm::buddy; // private to kmem
/// ```
/// ```compile_fail,E0616
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let lists = &m.zones().next().unwrap().area; // private to kmem
/// ```
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let free: usize = m.zones().map(|z| z.nr_free(kmem::Order::ZERO)).sum(); // the view
/// # let _ = free;
/// ```
pub struct Kmem<P: Platform> {
    platform: P,
    state: NonNull<MachineState>,
}

// SAFETY: the state is made of atomics, locks, data immutable after boot, and the per-CPU
// chunk list, which is only reached under the percpu lock; the platform
// is Send + Sync by its trait bound; the pointer stays valid for the life of the Kmem (boot's
// contract).
unsafe impl<P: Platform> Send for Kmem<P> {}
// SAFETY: as for Send.
unsafe impl<P: Platform> Sync for Kmem<P> {}

impl<P: Platform> core::fmt::Debug for Kmem<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kmem").field("state", &self.state).field("boot", &self.state().boot).finish()
    }
}

impl<P: Platform> Kmem<P> {
    pub(crate) fn from_parts(platform: P, state: NonNull<MachineState>) -> Self {
        Self { platform, state }
    }

    /// The machine state.
    #[inline]
    pub(crate) fn state(&self) -> &MachineState {
        // SAFETY: `state` was carved and initialised by boot and stays valid while `self` lives
        // (the contract of `Kmem::boot`); it is only accessed through shared references.
        unsafe { self.state.as_ref() }
    }

    /// The machine's identity: the address of its state, which no other live machine shares.
    /// Handles that can meet another machine (caches, per-CPU variables) carry it.
    #[inline(always)]
    pub(crate) fn machine_id(&self) -> usize {
        self.state.as_ptr() as usize
    }

    /// The state pointer (for [`Kmem::alias`]).
    pub(crate) fn state_ptr(&self) -> NonNull<MachineState> {
        self.state
    }

    /// The platform.
    #[inline]
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The sparse memory map.
    #[inline]
    pub(crate) fn memmap(&self) -> &Memmap {
        &self.state().memmap
    }

    /// Slots in the section table (128 MiB sections, present or not, up to the hotplug
    /// limit): what `/sys/devices/system/memory` would list.
    pub fn nr_sections(&self) -> usize {
        self.memmap().nr_sections()
    }

    /// Node `nid`.
    pub fn node(&self, nid: usize) -> Option<&Node> {
        self.state().node(nid)
    }

    /// Number of nodes.
    pub fn nr_nodes(&self) -> usize {
        self.state().nr_nodes as usize
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.state().nr_cpus as usize
    }

    /// The node of the current CPU (`numa_node_id()`). One-node machines skip asking the
    /// platform for the CPU.
    #[inline]
    pub fn numa_node_id(&self) -> usize {
        let st = self.state();
        if st.nr_nodes == 1 {
            0
        } else {
            st.cpu_to_node(self.platform.current_cpu().index())
        }
    }

    /// `cpu_to_node()`.
    pub fn cpu_to_node(&self, cpu: usize) -> usize {
        self.state().cpu_to_node(cpu)
    }

    /// Every zone of every node, node by node, lowest type first.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> + '_ {
        (0..self.nr_nodes()).filter_map(|n| self.node(n)).flat_map(|n| n.zones.iter())
    }

    /// The zone that owns a page (`page_zone()`). Always inlined: the order-0 free fast
    /// path's zone.
    #[inline(always)]
    pub fn page_zone(&self, page: &Page) -> &Zone {
        self.state().zone_of(page.identity())
    }

    /// The zone layout of the architecture.
    pub fn layout(&self) -> &ZoneLayout {
        &self.state().layout
    }

    /// The direct map.
    pub fn direct_map(&self) -> DirectMap {
        self.state().direct_map
    }

    /// One past the highest frame with RAM.
    pub fn max_pfn(&self) -> Pfn {
        Pfn::new(self.state().max_pfn.load(Ordering::Relaxed))
    }

    /// Pages managed by the buddy allocator (`totalram_pages()`, MemTotal), deferred frames
    /// included (see [`Kmem::deferred_pages`]), as Linux counts them.
    pub fn totalram_pages(&self) -> usize {
        self.state().totalram.load(Ordering::Relaxed)
    }

    /// `min_free_kbytes`.
    pub fn min_free_kbytes(&self) -> u64 {
        self.state().min_free_kbytes.load(Ordering::Relaxed)
    }

    /// What boot carved and found.
    pub fn boot_info(&self) -> BootInfo {
        self.state().boot
    }

    /// True while the memory map is flat: every present section's descriptors lie in one
    /// array indexed by pfn, so kmem's own pfn-to-descriptor lookups are one multiply-add
    /// (`mm/memmap.rs`). Boot makes it so for a one-node machine whose sections are
    /// contiguous; a section hot-added elsewhere ends it.
    pub fn memmap_is_flat(&self) -> bool {
        self.memmap().is_flat()
    }

    /// True if the memory map is flat and dense (`mm/memmap.rs`): `kfree` finds any
    /// direct-map address's descriptor slot in one multiply-add.
    pub fn memmap_is_dense(&self) -> bool {
        self.memmap().is_dense()
    }

    /// Machine-wide event counters.
    pub fn events(&self) -> &VmEvents {
        &self.state().events
    }

    /// True if orders 0..=3 and pageblock order go through the per-CPU page lists (the default).
    #[inline]
    pub fn pcp_enabled(&self) -> bool {
        self.state().pcp_enabled.load(Ordering::Relaxed)
    }

    /// Whether the order-0 allocation fast path may run: the per-CPU lists are on,
    /// `fail_page_alloc` is not armed, `init_on_alloc` is off and the machine has one node
    /// (the fast path reads the flag through [`MachineState::fast_zone_if_ok`]; the tests ask
    /// here).
    #[cfg(test)]
    pub(crate) fn page_fast_ok(&self) -> bool {
        self.state().page_fast.load(Ordering::Relaxed)
    }

    /// Turns the per-CPU page lists on or off (off drains them; everything then goes straight to
    /// the buddy lists, as for comparison benchmarks).
    pub fn set_pcp_enabled(&self, on: bool) {
        self.state().pcp_enabled.store(on, Ordering::Relaxed);
        self.fault_rearm();
        if !on {
            self.drain_all_pages();
        }
    }

    /// The slab allocator's registry.
    #[inline]
    pub(crate) fn slab(&self) -> &SlabState {
        &self.state().slab
    }

    /// Number of reports of `kind` made so far.
    pub fn report_count(&self, kind: ReportKind) -> u64 {
        self.state().reports.count(kind)
    }

    /// Counts and emits a report.
    pub(crate) fn report(&self, kind: ReportKind, body: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result) {
        self.state().reports.emit(&self.platform, kind, body);
    }

    /// `__va()`: direct-map address of a physical address.
    #[inline]
    pub fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        self.state().direct_map.phys_to_virt(pa)
    }

    /// `__pa()`: physical address of a direct-map address.
    #[inline]
    pub fn virt_to_phys(&self, va: VirtAddr) -> Option<PhysAddr> {
        self.state().direct_map.virt_to_phys(va)
    }
}

#[cfg(test)]
mod tests {
    use crate::addr::VirtAddr;
    use crate::mm::page::pg;

    #[test]
    fn the_machine_state_page_stays_reserved() {
        // The state is carved top-down at 64-byte alignment, so its page is partly free:
        // boot must still keep the whole page out of the buddy allocator.
        let m = crate::testing::machine(64);
        let pa = m.virt_to_phys(VirtAddr::from_ptr(m.state())).unwrap();
        let page = m.memmap().page(pa.pfn()).unwrap();
        assert!(page.test(pg::RESERVED), "{pa} holds the machine state but is not PG_reserved");
        assert!(!page.is_buddy(), "{pa} holds the machine state but is on a buddy free list");
    }
}
