//! The platform boundary: what the core asks of its environment, as a kernel asks its arch layer.
//!
//! A bare-metal kernel implements [`Platform`] with its real CPU numbering, preempt counter,
//! interrupt flag and direct map; `kmem-hosted` implements it for an ordinary Linux process
//! (threads are CPUs, RAM is a memfd). The core never calls `std`.
//!
//! Page-table operations for vmalloc ([`Platform::map_kernel_pages`],
//! [`Platform::unmap_kernel_pages`], [`Platform::flush_tlb_kernel_range`]) have defaults that
//! say "no vmalloc area": a platform that gives [`Platform::vmalloc_range`] implements them.

use core::fmt;

use crate::addr::{Pfn, PhysAddr, VirtAddr};

/// A CPU number, `0..nr_cpus`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct CpuId(pub u32);

impl CpuId {
    /// As an index into per-CPU arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A pinned CPU: what [`Platform::pin_cpu`] returns and [`Platform::unpin_cpu`] takes back.
#[must_use = "a pinned CPU must be unpinned with unpin_cpu"]
#[derive(Debug)]
pub struct Pinned {
    /// The CPU whose data the holder owns.
    pub cpu: CpuId,
    /// The platform's word for unpinning (saved interrupt state, a state pointer...).
    pub token: usize,
}

/// A CPU pinned by its platform's fast pin, with the CPU's area word: what
/// [`Platform::try_pin_cpu_area`] returns, made by a platform's own entry point into its
/// fast pin (a hosted process machine's thread reaches its CPU without the machine:
/// `kmem_hosted::ProcessCpu`). The fast paths that take a pin from their caller
/// ([`Kmem::kmalloc_try_fast_index_with`](crate::Kmem::kmalloc_try_fast_index_with),
/// [`Kmem::kfree_slab_or_then_with`](crate::Kmem::kfree_slab_or_then_with)) end it with
/// [`Platform::unpin_cpu_fast`].
#[must_use = "a fast pin must reach a fast path, which ends it"]
#[derive(Debug)]
pub struct FastPin {
    pub(crate) pinned: Pinned,
    pub(crate) area: usize,
}

impl FastPin {
    /// A fast pin of `pinned`, whose CPU's area word is `area`.
    ///
    /// # Safety
    ///
    /// `pinned` and `area` are what [`Platform::try_pin_cpu_area`] of the platform of the
    /// machine the pin is given to would have returned: a fast pin of one of its CPUs, to be
    /// ended with its [`Platform::unpin_cpu_fast`], and that CPU's area word (the fast
    /// paths read the CPU's fast table through it).
    #[inline(always)]
    pub unsafe fn new(pinned: Pinned, area: usize) -> Self {
        Self { pinned, area }
    }
}

/// Saved interrupt state, returned by [`Platform::local_irq_save`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IrqState(pub bool);

/// What a report is about. Each kind has a counter in the machine that tests can read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum ReportKind {
    /// `BUG: Bad page state`: a page freed or put in a state it cannot be in.
    BadPage = 0,
    /// `page allocation failure: order:N, mode:...`: an allocation that failed without `__GFP_NOWARN`.
    PageAllocFailure = 1,
    /// A `WARNING:` (`WARN_ON`-style) about bad arguments, such as order > MAX_PAGE_ORDER.
    Warning = 2,
    /// `BUG: sleeping function called from invalid context`.
    SleepInAtomic = 3,
    /// Slab debugging reports (`BUG <cache>: ...`).
    SlabBug = 4,
    /// Informational messages (boot summary and the like); not errors.
    Info = 5,
    /// `<comm> invoked oom-killer: ...` and `Out of memory and no killable processes...`:
    /// an allocation found nothing to reclaim and the OOM notifiers freed nothing.
    Oom = 6,
    /// `BUG: KFENCE: ...`: an out-of-bounds access, use after free, canary corruption,
    /// invalid access or invalid free that KFENCE caught (`crate::kfence`).
    Kfence = 7,
}

impl ReportKind {
    /// Number of kinds (size of counter arrays).
    pub const COUNT: usize = 8;
    /// Every kind, in counter order.
    pub const ALL: [ReportKind; Self::COUNT] = [
        ReportKind::BadPage,
        ReportKind::PageAllocFailure,
        ReportKind::Warning,
        ReportKind::SleepInAtomic,
        ReportKind::SlabBug,
        ReportKind::Info,
        ReportKind::Oom,
        ReportKind::Kfence,
    ];
}

/// The environment of a kmem machine.
///
/// # Safety
///
/// The core trusts the implementation in ways that affect memory safety:
/// - [`Platform::direct_map`] must describe a mapping in which every physical address below
///   `limit` that the memory map calls RAM is readable and writable at `base + phys`, for as
///   long as the machine lives, and maps nothing else the core could be told to write
///   (descriptor RAM that [`Platform::vmemmap_section`] moved away excepted: the core never
///   reaches it through the direct map).
/// - [`Platform::vmemmap_section`]'s address must lie in [`Platform::vmemmap_range`], be
///   readable and writable, hold the bytes written there, and stay so for as long as the
///   machine lives; the range must be this machine's alone, disjoint from everything else
///   the core uses.
/// - [`Platform::current_cpu`] must return a value below [`Platform::nr_cpus`], and
///   `nr_cpus` must not change; so must every [`CpuId`] the platform hands out (a pin's,
///   `preempt_disable`'s, `migrate_disable`'s): the fast paths index per-CPU data with it
///   unchecked.
/// - [`Platform::kmap_range`], like [`Platform::vmalloc_range`], must be kernel address
///   space that nothing but the core's page-table calls maps, disjoint from the direct map.
/// - [`Platform::sole_thread`] must answer `true` only when no other thread can free an
///   object of any machine of the platform until the caller returns (a racing free could
///   otherwise put one object on two CPUs' sheaves).
pub unsafe trait Platform: Send + Sync {
    /// Number of possible CPUs (`nr_cpu_ids`), at most [`crate::NR_CPUS`].
    fn nr_cpus(&self) -> usize;
    /// The CPU the caller runs on (`raw_smp_processor_id`).
    fn current_cpu(&self) -> CpuId;

    /// The preemption counter of the current context (`preempt_count()`, without IRQ bits).
    fn preempt_count(&self) -> u32;
    /// `preempt_disable()`.
    fn preempt_disable(&self);
    /// `preempt_enable()`.
    fn preempt_enable(&self);
    /// Disables interrupts on this CPU and returns the previous state (`local_irq_save`).
    fn local_irq_save(&self) -> IrqState;
    /// Restores a state returned by `local_irq_save` (`local_irq_restore`).
    fn local_irq_restore(&self, state: IrqState);
    /// `irqs_disabled()`.
    fn irqs_disabled(&self) -> bool;
    /// True in hard or soft interrupt context (`in_interrupt()`).
    fn in_interrupt(&self) -> bool;
    /// `in_atomic()`: preemption disabled or interrupt context.
    fn in_atomic(&self) -> bool {
        self.preempt_count() != 0 || self.in_interrupt()
    }
    /// `in_atomic() || irqs_disabled()`: the caller may not sleep (what `might_sleep` checks).
    /// A platform may answer this in one step.
    #[inline]
    fn atomic_context(&self) -> bool {
        self.in_atomic() || self.irqs_disabled()
    }
    /// `preempt_disable()` then `smp_processor_id()`: pins the caller and says where. A
    /// platform may do both in one step.
    #[inline]
    fn preempt_disable_cpu(&self) -> CpuId {
        self.preempt_disable();
        self.current_cpu()
    }

    /// Owns this CPU's per-CPU data against every other context until [`Platform::unpin_cpu`]:
    /// other threads or CPUs, remote [`Platform::run_on_cpu`] callers, and interrupt handlers
    /// on this CPU (Linux's `local_lock_irqsave` on a CPU's data). The per-CPU fast paths
    /// (slab sheaves, per-CPU page lists) run inside one. Nothing inside may sleep, allocate,
    /// report, or call code that does. Sections nest.
    ///
    /// The default is `local_irq_save()` + `smp_processor_id()`; a platform whose interrupts
    /// cannot arrive inside the section (a hosted one) may do less.
    #[inline]
    fn pin_cpu(&self) -> Pinned {
        let irq = self.local_irq_save();
        Pinned { cpu: self.current_cpu(), token: irq.0 as usize }
    }
    /// [`Platform::pin_cpu`] when it needs no waiting and no out-of-line work, else `None`
    /// (the caller then takes its slow path, which pins with [`Platform::pin_cpu`]). The
    /// allocation fast paths use it so that they make no call at all and save no registers;
    /// a platform whose pin is always cheap keeps the default. End it with
    /// [`Platform::unpin_cpu`].
    #[inline(always)]
    fn try_pin_cpu(&self) -> Option<Pinned> {
        Some(self.pin_cpu())
    }
    /// Whether this platform keeps each CPU's area word ([`Platform::set_cpu_area`]) where
    /// its fast pin finds the CPU, and answers [`Platform::try_pin_cpu_area`] with it.
    /// Without it (the default), kmem looks the area up itself from the pinned CPU's number
    /// (a few loads more on each fast path).
    const CPU_AREA: bool = false;
    /// Records CPU `cpu`'s area word: the address of the CPU's fast table, kmem's per-CPU
    /// index of the sheaves its fast paths use (`slab/fast_table.rs`), as Linux keeps a
    /// CPU's `this_cpu_off` in a per-CPU register. Called at boot for every possible CPU,
    /// before any allocation; the word never changes afterwards. A platform with
    /// [`Platform::CPU_AREA`] keeps it; the default forgets it.
    #[inline]
    fn set_cpu_area(&self, cpu: CpuId, area: usize) {
        let _ = (cpu, area);
    }
    /// Whether the calling thread is the only one that can touch the machine's objects now:
    /// no other thread exists, and only the caller could make one (`false` by default; the
    /// hosted platform reads glibc's `__libc_single_threaded`). The mapped free fast paths
    /// ([`Kmem::kfree_mapped_or_then_with`](crate::Kmem::kfree_mapped_or_then_with), the
    /// process allocator's) then mark an object free with a plain store after reading its
    /// word, instead of claiming it with a locked compare-and-exchange
    /// (`slab::object::claim_word`, which keeps two frees of one object on two CPUs from
    /// both succeeding); `kfree_nolock` defers every free meanwhile, so a handler that
    /// interrupted such a free claims nothing. Measured 2026-12-06 (AMD EPYC VM, Rust
    /// `KmemAlloc`, alternated): alloc_n_free_n/1000 7.3-7.5 ns a block with the locked
    /// exchange, 6.58-6.65 with the store (6.51-6.56 before the claim); pair/16 6.03-6.57
    /// against 5.85-6.04 ns.
    ///
    /// `true` only as the trait's Safety section says.
    #[inline(always)]
    fn sole_thread() -> bool
    where
        Self: Sized,
    {
        false
    }
    /// [`Platform::try_pin_cpu`] that also returns the pinned CPU's area word
    /// ([`Platform::set_cpu_area`]), for a platform with [`Platform::CPU_AREA`] (the default,
    /// never called, is `None`). End it with [`Platform::unpin_cpu_fast`].
    #[inline(always)]
    fn try_pin_cpu_area(&self) -> Option<(Pinned, usize)> {
        None
    }
    /// `local_trylock_irqsave()` on this CPU's data, for the any-context allocator
    /// (`kmalloc_nolock`, `kfree_nolock`): pins this CPU like [`Platform::pin_cpu`], but only
    /// if no context on it holds it already (a section this call may have interrupted, as
    /// an NMI interrupts kmem on the same CPU, included) and pinning needs no waiting at all;
    /// else `None`, and the caller keeps off the CPU's per-CPU data. End it with
    /// [`Platform::unpin_cpu`]. It may be called from a context that interrupted any
    /// instruction of kmem's own, including the platform's section bookkeeping: an answer of
    /// `Some` must be right even then.
    ///
    /// The default is `None`, always right: `kmalloc_nolock` then takes only the node
    /// lists' and zones' trylock routes. A platform that knows whether its CPU is in a
    /// section (a counter it reads) says more.
    #[inline]
    fn try_pin_cpu_nolock(&self) -> Option<Pinned> {
        None
    }
    /// Ends [`Platform::pin_cpu`].
    #[inline]
    fn unpin_cpu(&self, pinned: Pinned) {
        self.local_irq_restore(IrqState(pinned.token != 0));
    }
    /// Ends a pin that [`Platform::try_pin_cpu`] made (a platform may know more about it
    /// than about any pin, and end it without a call).
    #[inline(always)]
    fn unpin_cpu_fast(&self, pinned: Pinned) {
        self.unpin_cpu(pinned);
    }
    /// Runs `f` as CPU `cpu`, owning its per-CPU data as if inside [`Platform::pin_cpu`] on
    /// it (Linux's `smp_call_function_single`, or `work_on_cpu` for a CPU that may be
    /// offline): how one CPU drains or flushes another's per-CPU caches. Inside `f`,
    /// `current_cpu()` is `cpu`. The caller must not have its own CPU pinned, preemption
    /// disabled or interrupts off (two CPUs waiting for each other would deadlock); `f` must
    /// not call `run_on_cpu` itself.
    ///
    /// The default serves one-CPU platforms and the caller's own CPU: it pins the current
    /// CPU and runs `f` if that is `cpu`; for any other CPU it does nothing and returns
    /// false. A platform with several CPUs must implement it.
    fn run_on_cpu(&self, cpu: CpuId, f: &mut dyn FnMut()) -> bool {
        let p = self.pin_cpu();
        let here = p.cpu == cpu;
        if here {
            f();
        }
        self.unpin_cpu(p);
        here
    }
    /// Whether this platform's CPUs come online after boot, each only once the platform has
    /// run [`crate::Kmem::cpu_up_prepare`] for it (a hosted machine with a CPU per thread, as
    /// a thread takes its CPU). False (the default): boot prepares every CPU, online or not
    /// (a kernel's secondary CPUs start after the allocator, and run its fast paths at
    /// once).
    fn cpus_come_up_later(&self) -> bool {
        false
    }
    /// `cpu_online()`: whether CPU `cpu` may have per-CPU state in use. Platforms whose CPUs
    /// come and go (hosted machines with a CPU per thread) say false for CPUs no thread runs
    /// on, so machine-wide walks can skip them; their per-CPU caches were emptied when they
    /// went offline ([`crate::Kmem::cpu_offline`]).
    fn cpu_online(&self, cpu: CpuId) -> bool {
        cpu.index() < self.nr_cpus()
    }

    /// The direct map (Linux's linear map, `__va`/`__pa`).
    fn direct_map(&self) -> DirectMap;
    /// The kmap area (`PKMAP_BASE` and the fixmap's `kmap_local` slots): page-aligned kernel
    /// virtual addresses, disjoint from the direct map and the vmalloc range, at least
    /// [`crate::highmem::kmap_area_bytes`]`(nr_cpus)` long. The core maps HighMem pages
    /// there with [`Platform::map_kernel_pages`] and unmaps them with
    /// [`Platform::unmap_kernel_pages`], one page at a time, without page-table pages (the
    /// platform populates the area's tables once, as Linux's `permanent_kmaps_init` does).
    /// Needed only when the memory map has RAM above the direct map (HighMem); `None` (the
    /// default) makes such a machine fail to boot.
    fn kmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        None
    }

    /// `migrate_disable()`: keeps the caller on its CPU until [`Platform::migrate_enable`]
    /// and returns the CPU, without making the context atomic (a `kmap_local_page` mapping
    /// lives in the CPU's slots). The CPU's `kmap_local` stack must be the caller's alone
    /// meanwhile, apart from interrupt handlers nesting on top. Sections nest. The default
    /// disables preemption, which is stronger.
    #[inline]
    fn migrate_disable(&self) -> CpuId {
        self.preempt_disable_cpu()
    }
    /// Ends [`Platform::migrate_disable`].
    #[inline]
    fn migrate_enable(&self) {
        self.preempt_enable();
    }
    /// The CPU the caller holds on this machine (inside a [`Platform::migrate_disable`] or
    /// preemption-disabled section), or `None` when it holds none. `kunmap_local` asks this
    /// to check that the caller is the one whose stack it pops, without a nested section.
    /// The default enters and leaves a section (the CPU the caller would hold), which is
    /// always right on a one-CPU platform; a platform with many CPUs should answer exactly.
    #[inline]
    fn held_cpu(&self) -> Option<CpuId> {
        let cpu = self.migrate_disable();
        self.migrate_enable();
        Some(cpu)
    }

    /// Spin-wait hint, called while waiting for a lock. A hosted platform may yield here.
    fn cpu_relax(&self) {
        core::hint::spin_loop();
    }
    /// Sleeps until `ready()` is true: a `__GFP_NOFAIL` allocation waiting for memory to be
    /// freed. The platform must evaluate `ready` under the lock that
    /// [`Platform::wake_free_memory_waiters`] takes (a wait queue), so that a wake-up between
    /// the check and the sleep is not lost; it may return early (the caller checks again).
    /// kmem calls it with no lock held and outside any pinned section. The default spins
    /// with [`Platform::cpu_relax`].
    fn wait_for_free_memory(&self, ready: &dyn Fn() -> bool) {
        while !ready() {
            self.cpu_relax();
        }
    }
    /// Wakes every sleeper of [`Platform::wait_for_free_memory`]: pages reached the buddy
    /// lists while someone slept. Called with no kmem lock held, never from the free fast
    /// path. The default does nothing (the default wait spins).
    fn wake_free_memory_waiters(&self) {}
    /// `wakeup_kswapd()`'s wake-up of node `nid`'s kswapd: a platform with background
    /// reclaim makes its kswapd for the node call [`crate::Kmem::kswapd_run_once`] soon, from
    /// a context that may sleep, and returns true. The default has no kswapd (direct reclaim
    /// only) and returns false. Called from allocations, atomic ones included: it must not
    /// sleep or allocate.
    fn wake_kswapd(&self, nid: usize) -> bool {
        let _ = nid;
        false
    }
    /// `current->flags & PF_MEMALLOC`: the current task is reclaiming (its allocations do
    /// not recurse into reclaim and may use the reserves).
    fn in_reclaim(&self) -> bool {
        false
    }
    /// Sets or clears `PF_MEMALLOC` for the current task; returns the previous value. The
    /// default keeps no task flags (returns false): on such a platform a shrinker that
    /// allocates with direct reclaim may re-enter reclaim.
    fn set_in_reclaim(&self, on: bool) -> bool {
        let _ = on;
        false
    }

    /// A monotonic clock in nanoseconds (report rate limits, ages). May be coarse.
    fn now_ns(&self) -> u64;
    /// The current task's pid and name, for reports (`current->pid`, `current->comm`).
    fn current_task(&self) -> TaskId;

    /// The current task's fault-injection state (`current->fail_nth`,
    /// `current->make_it_fail`; `crate::fault`). `None` (the default): the platform keeps
    /// none, and the machine keeps one cell for every caller (right for a single context).
    fn task_fault(&self) -> Option<crate::fault::TaskFault> {
        None
    }
    /// Stores the current task's fault-injection state; false (the default) when the
    /// platform keeps none (the machine's cell is used).
    fn set_task_fault(&self, state: crate::fault::TaskFault) -> bool {
        let _ = state;
        false
    }

    /// Delivers one report. The core has already counted it; `body` writes its text.
    fn report(&self, kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result);

    /// The kernel virtual range vmalloc and vmap hand out (`VMALLOC_START..VMALLOC_END`),
    /// page aligned, disjoint from the direct map. `None` (the default): the machine has no
    /// vmalloc area, and every vmalloc-family call fails.
    fn vmalloc_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        None
    }

    /// SPARSEMEM_VMEMMAP: makes the page descriptors of section `nr`, the
    /// `PAGES_PER_SECTION * 32` bytes (1 MiB) of RAM carved for them at direct-map address
    /// `map` (page aligned, not written yet), reachable at the section's slot of a virtual
    /// descriptor array, `vmemmap_base + nr * 1 MiB`, and returns that address. The core
    /// then reaches those descriptors only there (the platform may move the pages away from
    /// `map`, leaving a hole in the direct map), and with every section at its slot the
    /// memory map is flat (`mm/memmap.rs`): `pfn_to_page` is one multiply-add. `None` (the
    /// default, or a section beyond the platform's range): the core uses `map`.
    ///
    /// # Safety
    ///
    /// `map` is that RAM, carved for section `nr`'s descriptors, used for nothing else and not
    /// referenced; the call is made once per section, at boot or hot-add.
    unsafe fn vmemmap_section(&self, nr: usize, map: VirtAddr) -> Option<VirtAddr> {
        let _ = (nr, map);
        None
    }

    /// The virtual range [`Platform::vmemmap_section`] places descriptors in, reserved for
    /// this machine alone: a descriptor there is this machine's (`PageRef` ownership checks).
    /// `None` (the default): no vmemmap.
    fn vmemmap_range(&self) -> Option<(VirtAddr, VirtAddr)> {
        None
    }

    /// True if [`Platform::vmemmap_range`] is readable throughout, and every slot that
    /// [`Platform::vmemmap_section`] has not filled reads as zero, for the life of the
    /// machine. With a range that holds a slot for every section below the direct-map limit,
    /// the memory map is then dense (`mm/memmap.rs`): `kfree` looks any direct-map address's
    /// descriptor up in one multiply-add. `false` (the default): not promised.
    fn vmemmap_reads_zero(&self) -> bool {
        false
    }

    /// Maps `npages` physically contiguous frames starting at `pfn` at `va` with `prot`
    /// (`vmap_pages_range`). The range was unmapped, so no TLB flush is needed. Page-table
    /// pages the platform needs come from `tables` (the core allocates them with the
    /// caller's GFP flags and accounts them as `PageTables`).
    ///
    /// # Safety
    ///
    /// `[va, va + npages pages)` lies in [`Platform::vmalloc_range`] or
    /// [`Platform::kmap_range`], is page aligned, and is not mapped (the core's vmap-area
    /// allocator or kmap layer owns it); the frames are RAM of this machine.
    unsafe fn map_kernel_pages(
        &self,
        va: VirtAddr,
        pfn: Pfn,
        npages: usize,
        prot: PageProt,
        tables: &mut dyn PageTableAlloc,
    ) -> Result<(), MapError> {
        let _ = (va, pfn, npages, prot, tables);
        Err(MapError::Unsupported)
    }

    /// Clears the mappings of `[va, va + npages pages)` (`vunmap_range_noflush`). Stale TLB
    /// entries may keep old translations alive until the returned [`TlbFlush`] is passed to
    /// [`Platform::flush_tlb_kernel_range`], which the caller must do before the range is
    /// mapped again (flushes may be merged and done once for many ranges).
    ///
    /// # Safety
    ///
    /// The range lies in [`Platform::vmalloc_range`] or [`Platform::kmap_range`], and
    /// nothing may access it any more.
    unsafe fn unmap_kernel_pages(&self, va: VirtAddr, npages: usize) -> TlbFlush {
        TlbFlush::range(va, npages)
    }

    /// `flush_tlb_kernel_range()`: ends every stale translation in the token's range.
    fn flush_tlb_kernel_range(&self, flush: TlbFlush) {
        flush.done();
    }
}

/// Protections of a kernel mapping (`pgprot_t`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PageProt {
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl PageProt {
    /// `PAGE_KERNEL`: read-write, not executable.
    pub const KERNEL: PageProt = PageProt { write: true, exec: false };
    /// `PAGE_KERNEL_RO`.
    pub const KERNEL_RO: PageProt = PageProt { write: false, exec: false };
    /// `PAGE_KERNEL_EXEC`.
    pub const KERNEL_EXEC: PageProt = PageProt { write: true, exec: true };
}

/// Why a kernel mapping could not be made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// The platform has no page-table operations.
    Unsupported,
    /// A page-table page could not be allocated.
    NoMemory,
    /// The host refused (hosted platforms: the `mmap` errno).
    Host(i32),
}

/// Gives the platform zeroed pages for page tables while it maps (`pte_alloc_kernel`).
pub trait PageTableAlloc {
    /// A zeroed page for a page table, or `None` when memory is short.
    fn alloc_table(&mut self) -> Option<Pfn>;
}

/// A pending TLB flush for a kernel virtual range: the obligation
/// [`Platform::unmap_kernel_pages`] hands back. It must reach
/// [`Platform::flush_tlb_kernel_range`] (or be [merged](TlbFlush::merge) into one that does);
/// dropping it unflushed is a bug (a debug assertion).
#[must_use = "an unmapped range must be TLB-flushed before reuse: pass this to flush_tlb_kernel_range"]
#[derive(Debug, PartialEq, Eq)]
pub struct TlbFlush {
    start: usize,
    end: usize,
}

impl TlbFlush {
    /// Nothing to flush.
    pub const fn none() -> TlbFlush {
        TlbFlush { start: usize::MAX, end: 0 }
    }
    /// A flush of `npages` pages at `va`.
    pub fn range(va: VirtAddr, npages: usize) -> TlbFlush {
        let start = va.as_usize();
        TlbFlush { start, end: start + npages * crate::PAGE_SIZE }
    }
    /// One flush covering both (`[min start, max end)`, as Linux's purge flushes once).
    pub fn merge(mut self, other: TlbFlush) -> TlbFlush {
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        other.done();
        self
    }
    /// The range to flush, `None` if empty.
    pub fn bounds(&self) -> Option<(VirtAddr, VirtAddr)> {
        (self.start < self.end).then(|| (VirtAddr::new(self.start), VirtAddr::new(self.end)))
    }
    /// Marks the flush done (what a platform's `flush_tlb_kernel_range` ends with).
    pub fn done(self) {
        core::mem::forget(self);
    }
}

impl Drop for TlbFlush {
    fn drop(&mut self) {
        debug_assert!(self.start >= self.end, "TlbFlush dropped without flush_tlb_kernel_range");
    }
}

/// Identity of the running task, for report headers.
#[derive(Clone, Copy, Debug)]
pub struct TaskId {
    /// Task id.
    pub pid: u32,
    /// Up to 15 bytes of name (`TASK_COMM_LEN` - 1), NUL padded.
    pub comm: [u8; 16],
}

impl TaskId {
    /// Builds a task id, truncating the name to 15 bytes.
    pub fn new(pid: u32, name: &str) -> Self {
        let mut comm = [0u8; 16];
        let n = name.len().min(15);
        comm[..n].copy_from_slice(&name.as_bytes()[..n]);
        Self { pid, comm }
    }
    /// The name as text.
    pub fn comm(&self) -> &str {
        let n = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        core::str::from_utf8(&self.comm[..n]).unwrap_or("?")
    }
}

/// The linear map: physical address `p < limit` lives at virtual `base + p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectMap {
    /// Virtual address of physical address 0.
    pub base: VirtAddr,
    /// First physical address not mapped (`high_memory`'s physical address).
    pub limit: PhysAddr,
}

impl DirectMap {
    /// `__va()`: `None` above the direct map.
    #[inline]
    pub fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        if pa < self.limit {
            Some(VirtAddr::new(self.base.as_usize() + pa.as_u64() as usize))
        } else {
            None
        }
    }
    /// `__pa()`: `None` for addresses outside the direct map. One compare: an address below
    /// the base wraps to an offset past any limit (a direct map never wraps the address
    /// space), so the free fast paths use it too.
    #[inline(always)]
    pub fn virt_to_phys(&self, va: VirtAddr) -> Option<PhysAddr> {
        let off = va.as_usize().wrapping_sub(self.base.as_usize()) as u64;
        if off < self.limit.as_u64() {
            Some(PhysAddr::new(off))
        } else {
            None
        }
    }
}
