//! [`Machine`]: a booted hosted machine, owning its RAM.

use std::ops::Deref;
use std::sync::Arc;

use kmem::{Kmem, MemRegion, PhysAddr};

use crate::builder::Preset;
use crate::platform::{HostedPlatform, ReportLog};
use crate::ram::Ram;
use crate::vspace::VSpace;

/// A kmem machine living in this process. Derefs to [`Kmem`] for the whole API; share it
/// between threads by reference (`std::thread::scope`) or in an `Arc`.
#[derive(Debug)]
pub struct Machine {
    // Field order matters: the Kmem (and its state inside RAM) goes before the vmalloc
    // reservation and the RAM mapping.
    kmem: Kmem<HostedPlatform>,
    /// The vmalloc range and the kmap area.
    _vspace: [Option<VSpace>; 3],
    ram: Ram,
    log: Arc<ReportLog>,
    regions: Vec<MemRegion>,
    preset: Preset,
    hotplug: std::sync::Mutex<()>,
    kswapd: crate::reclaim::Kswapd,
    /// The KFENCE fault handler's registration (none without a pool).
    kfence: Option<crate::kfence::Registration>,
}

impl Machine {
    pub(crate) fn new(
        kmem: Kmem<HostedPlatform>,
        vspace: [Option<VSpace>; 3],
        ram: Ram,
        log: Arc<ReportLog>,
        regions: Vec<MemRegion>,
        preset: Preset,
        kswapd: crate::reclaim::Kswapd,
    ) -> Self {
        let kfence = crate::kfence::Registration::new(&kmem);
        Self { kmem, _vspace: vspace, ram, log, regions, preset, hotplug: std::sync::Mutex::new(()), kswapd, kfence }
    }

    /// Makes this machine the process machine: the one whose threads' CPUs
    /// [`ProcessCpu`](crate::ProcessCpu) finds without the machine, so that
    /// a process allocator built on it (`kmem-alloc`) reaches its fast paths with one
    /// thread-local load and no test of its own (its machine booted, the machine's id
    /// compared with the thread's gate). Only a machine with a CPU per thread
    /// ([`MachineBuilder::thread_cpus`](crate::MachineBuilder::thread_cpus)) can be, and
    /// only one per process, for its whole life (hence `'static`): whether this one is now.
    /// The machine's threads see it at their next fast pin of the machine that finds their
    /// gate closed or open with the machine's former token.
    ///
    /// ```
    /// let m: &'static kmem_hosted::Machine =
    ///     Box::leak(Box::new(kmem_hosted::MachineBuilder::new().ram_mib(64).thread_cpus(4).build().unwrap()));
    /// // (Another test's machine may be this process's already.)
    /// let _ = m.make_process_machine();
    /// ```
    pub fn make_process_machine(&'static self) -> bool {
        self.kmem.platform().make_process_machine(self)
    }

    /// Blocks until no kswapd of the machine has a wake-up pending or a pass in progress
    /// (returns at once on a machine without kswapd).
    pub fn wait_kswapd_idle(&self) {
        self.kmem.platform().reclaim().wait_kswapd_idle();
    }
    /// The reports made so far, with their texts.
    pub fn reports(&self) -> &ReportLog {
        &self.log
    }
    /// The memory map the machine booted from.
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions
    }
    /// The architecture preset.
    pub fn preset(&self) -> Preset {
        self.preset
    }
    /// Bytes of the RAM mapping (the physical address space).
    pub fn ram_mapping_len(&self) -> usize {
        self.ram.len()
    }

    /// The RAM mapping: `[base, base + len)` holds every address kmem hands out.
    pub fn ram_range(&self) -> (usize, usize) {
        (self.ram.base(), self.ram.len())
    }

    /// Whether RAM is private anonymous memory ([`crate::MachineBuilder::anonymous_ram`]),
    /// not a memfd: a forked child gets a copy, and `MADV_DONTNEED` gives pages back.
    pub fn ram_is_anonymous(&self) -> bool {
        self.ram.raw_fd().is_none()
    }

    /// Whether RAM was advised for transparent huge pages
    /// ([`crate::MachineBuilder::ram_hugepages`]; the host decides what backs it).
    pub fn ram_hugepages(&self) -> bool {
        self.ram.hugepages()
    }

    /// `stop_machine()`: takes every CPU of the machine for the calling thread. Until
    /// [`Machine::restart_machine`], no other thread is inside a critical section of it, so
    /// none holds any of its locks: what `fork()` needs so the child finds them free
    /// (`pthread_atfork` prepare; restart in both parent and child).
    ///
    /// # Safety
    ///
    /// The calling thread must not use the machine (allocate, free, disable preemption or
    /// interrupts on it) before calling [`Machine::restart_machine`], which it must call
    /// exactly once.
    pub unsafe fn stop_machine(&self) {
        self.kmem.platform().stop_cpus();
    }

    /// Ends [`Machine::stop_machine`].
    ///
    /// # Safety
    ///
    /// Only after [`Machine::stop_machine`] by the same thread (in a forked child: the thread
    /// that forked).
    pub unsafe fn restart_machine(&self) {
        self.kmem.platform().start_cpus();
    }

    /// [`Machine::restart_machine`] in a `fork()` child: also frees the CPUs of threads the
    /// child does not have (machines with a CPU per thread; their per-CPU caches stay warm
    /// for the child's next threads).
    ///
    /// # Safety
    ///
    /// As [`Machine::restart_machine`], in the child, from the thread that forked.
    pub unsafe fn restart_machine_in_child(&self) {
        self.kmem.platform().start_cpus();
        self.kmem.platform().cpus().after_fork_child();
    }

    /// Memory hot-add: makes the next `sections` 128 MiB sections of the reserved hotplug
    /// range ([`crate::MachineBuilder::hotplug_max`]) RAM of node 0. Returns the pages the
    /// buddy allocator gained. Concurrent calls are serialised (the second may find the
    /// sections taken and add the following ones).
    pub fn hot_add(&self, sections: usize) -> Result<usize, HotAddError> {
        let sec = kmem::boot::PAGES_PER_SECTION_BYTES;
        let _g = self.hotplug.lock().expect("hotplug lock poisoned");
        let start = (self.kmem.max_pfn().phys().as_u64()).next_multiple_of(sec);
        let size = sections as u64 * sec;
        if start + size > self.ram.len() as u64 {
            return Err(HotAddError::NoSpace);
        }
        // Only lowmem becomes reachable through the RAM mapping; HighMem stays sealed.
        let lowmem_end = (self.kmem.direct_map().limit.as_u64()).clamp(start, start + size);
        if lowmem_end > start {
            self.ram.make_usable(start as usize, (lowmem_end - start) as usize).map_err(HotAddError::Ram)?;
        }
        // SAFETY: the range is part of this machine's RAM mapping, now read-write, never
        // used before (beyond max_pfn, inside the hotplug reserve), and lives as long as the
        // machine (Machine drops its Kmem before its Ram).
        unsafe { self.kmem.hot_add_memory(PhysAddr::new(start), size, 0) }.map_err(HotAddError::Hotplug)
    }
}

/// Why [`Machine::hot_add`] failed.
#[derive(Debug)]
pub enum HotAddError {
    /// The hotplug reserve is used up.
    NoSpace,
    /// Making the range accessible failed.
    Ram(crate::ram::RamError),
    /// The core refused the range.
    Hotplug(kmem::boot::HotplugError),
}

impl std::fmt::Display for HotAddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HotAddError::NoSpace => f.write_str("hotplug reserve exhausted"),
            HotAddError::Ram(e) => write!(f, "{e}"),
            HotAddError::Hotplug(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HotAddError {}

impl Drop for Machine {
    fn drop(&mut self) {
        // kswapd threads use the machine: they go first.
        self.kswapd.stop();
        // The fault handler's alias goes before the machine (it waits for running handlers).
        self.kfence.take();
        // Before the state and RAM go: threads that exit later must not run the teardown.
        self.kmem.platform().cpus().clear_offline_hook();
    }
}

impl Deref for Machine {
    type Target = Kmem<HostedPlatform>;
    fn deref(&self) -> &Kmem<HostedPlatform> {
        &self.kmem
    }
}
