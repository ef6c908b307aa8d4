//! [`MachineBuilder`]: describe a machine (RAM layout, CPUs, nodes, architecture preset) and
//! boot it inside this process.

use std::sync::Arc;

use kmem::{BootConfig, BootError, DirectMap, Kmem, MemRegion, PhysAddr, ReportKind, VirtAddr, ZoneLayout};

use crate::console::ReportEcho;
use crate::machine::Machine;
use crate::platform::{HostedPlatform, ReportLog};
use crate::ram::{Ram, RamError};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

mod map;
mod slab_opts;

use map::{split_nodes, x86_map};

/// An architecture preset: zone layout and memory-map shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// x86-64: DMA < 16 MiB, DMA32 < 4 GiB, Normal above; PCI hole 3-4 GiB.
    X86_64,
    /// x86-32 with HighMem: DMA < 16 MiB, Normal < 896 MiB, HighMem above; the direct map
    /// ends at 896 MiB, the RAM mapping above it is `PROT_NONE`, and HighMem pages are reached
    /// through `kmap` mappings in a kmap area (`kmem::highmem`).
    X86_32,
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preset::X86_64 => "x86-64",
            Preset::X86_32 => "x86-32",
        })
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "x86-64" | "x86_64" => Ok(Preset::X86_64),
            "x86-32" | "x86_32" | "i386" => Ok(Preset::X86_32),
            _ => Err(format!("unknown preset '{s}' (expected x86-64 or x86-32)")),
        }
    }
}

/// Why a hosted machine could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The configuration is inconsistent (message says how).
    Config(String),
    /// Setting up RAM failed.
    Ram(RamError),
    /// The core refused to boot.
    Boot(BootError),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Config(s) => f.write_str(s),
            BuildError::Ram(e) => write!(f, "RAM: {e}"),
            BuildError::Boot(e) => write!(f, "boot: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builds a hosted machine. Defaults: x86-64, 4 GiB of RAM, 4 CPUs, one node.
#[derive(Debug, Clone)]
pub struct MachineBuilder {
    preset: Preset,
    ram: u64,
    cpus: usize,
    thread_cpus: bool,
    warm_cpus: usize,
    overflow_cpus: usize,
    nodes: usize,
    map: Option<Vec<MemRegion>>,
    layout: Option<ZoneLayout>,
    reserve: Vec<(u64, u64)>,
    echo: ReportEcho,
    migrate_every: u32,
    slub_debug: Option<String>,
    failslab: Option<String>,
    fail_page_alloc: Option<String>,
    init_on_alloc: bool,
    init_on_free: bool,
    kfence: Option<kmem::kfence::KfenceConfig>,
    slab_nomerge: bool,
    slab_freeptr_at_start: bool,
    slab_sheaf_bytes: Option<u32>,
    slab_sheaf_max: Option<u32>,
    slab_cpu_stash: u8,
    slab_barn_bytes: u32,
    slab_min_objects: u32,
    hotplug: u64,
    no_alloc_reports: bool,
    on_report: Option<fn(ReportKind)>,
    vmalloc: Option<u64>,
    vmap_lazy_max: Option<usize>,
    vmalloc_recycle: bool,
    anonymous_ram: bool,
    ram_hugepages: bool,
    deferred_init: Option<u64>,
    kswapd: bool,
    vmemmap: Option<bool>,
}

impl Default for MachineBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MachineBuilder {
    /// The default machine.
    pub fn new() -> Self {
        Self {
            preset: Preset::X86_64,
            ram: 4 * GIB,
            cpus: 4,
            thread_cpus: false,
            warm_cpus: 0,
            overflow_cpus: 0,
            nodes: 1,
            map: None,
            layout: None,
            reserve: Vec::new(),
            echo: ReportEcho::Problems,
            migrate_every: 0,
            slub_debug: None,
            failslab: None,
            fail_page_alloc: None,
            init_on_alloc: false,
            init_on_free: false,
            kfence: None,
            slab_nomerge: false,
            slab_freeptr_at_start: false,
            slab_sheaf_bytes: None,
            slab_sheaf_max: None,
            slab_cpu_stash: 0,
            slab_barn_bytes: 0,
            slab_min_objects: 0,
            hotplug: 0,
            no_alloc_reports: false,
            on_report: None,
            vmalloc: None,
            vmap_lazy_max: None,
            vmalloc_recycle: true,
            anonymous_ram: false,
            ram_hugepages: false,
            vmemmap: None,
            deferred_init: None,
            kswapd: false,
        }
    }
    /// Runs a kswapd thread per node (background reclaim: woken when a zone falls below its
    /// low watermark, it runs the shrinkers until the zone is over its high watermark).
    /// Off by default: direct reclaim only, and no thread besides the caller's touches the
    /// machine.
    pub fn kswapd(mut self, on: bool) -> Self {
        self.kswapd = on;
        self
    }
    /// Architecture preset.
    pub fn preset(mut self, p: Preset) -> Self {
        self.preset = p;
        self
    }
    /// RAM in MiB (the memory map is generated with the preset's holes).
    pub fn ram_mib(mut self, mib: u64) -> Self {
        self.ram = mib * MIB;
        self
    }
    /// RAM in bytes.
    pub fn ram_bytes(mut self, bytes: u64) -> Self {
        self.ram = bytes;
        self
    }
    /// Number of CPUs, shared by all threads (threads run on CPU `thread number % n`, or the
    /// one [`crate::pin_current_thread`] chose, and may migrate).
    pub fn cpus(mut self, n: usize) -> Self {
        self.cpus = n;
        self.thread_cpus = false;
        self
    }
    /// A CPU per thread: `possible` CPUs (Linux's `cpu_possible`), each taken by a thread at
    /// its first use of the machine and given back at thread exit, after the machine's
    /// CPU-offline teardown ([`kmem::Kmem::cpu_offline`]). A thread's per-CPU sections are
    /// then plain loads and stores on its own CPU, and no thread waits for another's fast
    /// path (what a process's allocator wants). Threads beyond the pool run on its overflow
    /// CPUs ([`MachineBuilder::thread_cpus_overflow`]), or without them borrow a CPU for
    /// each section, slowly. Needs `membarrier(2)`; without it the machine falls back to
    /// `possible` shared CPUs. Replaces [`MachineBuilder::cpus`].
    pub fn thread_cpus(mut self, possible: usize) -> Self {
        self.cpus = possible;
        self.thread_cpus = true;
        self
    }
    /// With [`MachineBuilder::thread_cpus`]: up to `n` CPUs given back by exiting threads stay
    /// warm (free, their per-CPU caches kept for the next thread to take them) instead of
    /// going through the offline teardown; beyond that, exits tear down. A pool of worker
    /// threads that come and go then finds warm caches, as tasks on a real CPU do. 0 (the
    /// default): every exit tears down.
    pub fn thread_cpus_warm(mut self, n: usize) -> Self {
        self.warm_cpus = n;
        self
    }
    /// With [`MachineBuilder::thread_cpus`]: the last `n` of the possible CPUs (at most all
    /// but one) are overflow CPUs, which no thread owns: threads that find every other CPU
    /// taken share them as a shared machine's threads share theirs (a compare-exchange a
    /// section; a thread whose home overflow CPU is held takes any free one, and waits only
    /// while all `n` are held), and retry for a CPU of their own now and then. 0 (the
    /// default): such threads borrow an owned CPU for each section, stopping it with a
    /// process-wide barrier (`membarrier`), thousands of times slower.
    pub fn thread_cpus_overflow(mut self, n: usize) -> Self {
        self.overflow_cpus = n;
        self
    }
    /// Number of NUMA nodes (1 to [`kmem::MAX_NUMNODES`]); usable RAM is split between them
    /// at 128 MiB section boundaries, so each needs at least one section of usable RAM.
    /// [`MachineBuilder::build`] refuses other counts.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// Uses this memory map instead of a generated one (regions carry their nodes).
    pub fn memory_map(mut self, regions: Vec<MemRegion>) -> Self {
        self.map = Some(regions);
        self
    }
    /// Uses these zone boundaries instead of the preset's.
    pub fn zone_layout(mut self, layout: ZoneLayout) -> Self {
        self.layout = Some(layout);
        self
    }
    /// `memblock_reserve` a range before the buddy allocator starts.
    pub fn reserve(mut self, start: PhysAddr, size: u64) -> Self {
        self.reserve.push((start.as_u64(), size));
        self
    }
    /// Moves each thread to the next CPU after every `n` critical sections it leaves (0: never),
    /// to exercise per-CPU code under migration.
    pub fn migrate_every(mut self, n: u32) -> Self {
        self.migrate_every = n;
        self
    }
    /// The `failslab=<interval>,<probability>,<space>,<times>` boot option (fault injection
    /// into slab allocations from boot on; `kmem::fault`). A string that does not parse is
    /// reported as Linux does (`FAULT_INJECTION: failed to parse arguments`) and ignored.
    pub fn failslab(mut self, opts: &str) -> Self {
        self.failslab = Some(opts.to_owned());
        self
    }

    /// The `init_on_alloc=1` boot option: pages and slab objects (of caches without a
    /// constructor or `SLAB_TYPESAFE_BY_RCU`) are zeroed on allocation (`kmem::mm::meminit`).
    pub fn init_on_alloc(mut self, on: bool) -> Self {
        self.init_on_alloc = on;
        self
    }

    /// The `init_on_free=1` boot option: pages and slab objects are zeroed on free.
    pub fn init_on_free(mut self, on: bool) -> Self {
        self.init_on_free = on;
        self
    }

    /// KFENCE (`kfence.sample_interval=`, `CONFIG_KFENCE_NUM_OBJECTS`; `kmem::kfence`): a
    /// pool in the vmalloc range, and the machine's fault handler (`SIGSEGV`, see
    /// `crate::kfence`) turning its faults into reports. Needs a vmalloc range (not with
    /// [`MachineBuilder::anonymous_ram`]); without one, boot reports it and goes on.
    ///
    /// ```
    /// use kmem::{kfence::KfenceConfig, Gfp, ReportKind};
    /// let cfg = KfenceConfig { sample_interval_ms: 3_600_000, num_objects: 7 };
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).kfence(cfg).build().unwrap();
    /// m.kfence_force_next();
    /// let p = m.kmalloc(32, Gfp::KERNEL).unwrap();
    /// assert!(m.is_kfence_address(p.as_ptr()));
    /// // SAFETY: ours; the second free is the bug KFENCE reports.
    /// unsafe { m.kfree(p.as_ptr()); m.kfree(p.as_ptr()) };
    /// assert_eq!(m.report_count(ReportKind::Kfence), 1);
    /// assert!(m.reports().last().unwrap().contains("BUG: KFENCE: invalid free in "));
    /// ```
    pub fn kfence(mut self, cfg: kmem::kfence::KfenceConfig) -> Self {
        self.kfence = Some(cfg);
        self
    }

    /// The `fail_page_alloc=<interval>,<probability>,<space>,<times>` boot option.
    pub fn fail_page_alloc(mut self, opts: &str) -> Self {
        self.fail_page_alloc = Some(opts.to_owned());
        self
    }

    /// Reserves physical address space up to `bytes` for memory hot-add
    /// ([`Machine::hot_add`]): the page-descriptor table covers it, the RAM mapping reserves
    /// it (inaccessible until added). 0: none.
    pub fn hotplug_max(mut self, bytes: u64) -> Self {
        self.hotplug = bytes;
        self
    }
    /// Reports go straight to stderr from a stack buffer and are not kept: the platform
    /// never allocates from the host's allocator (needed when this machine *is* the host's
    /// allocator: `kmem-alloc`).
    pub fn no_alloc_reports(mut self, on: bool) -> Self {
        self.no_alloc_reports = on;
        self
    }
    /// A function called after each report the platform delivers (its text written or
    /// logged), with the report's kind: `kmem-alloc` counts the global machine's reports and
    /// applies its abort-on-misuse policy there. It must not allocate with
    /// [`MachineBuilder::no_alloc_reports`]. Reports dropped by a rate limit are not delivered.
    pub fn on_report(mut self, hook: fn(ReportKind)) -> Self {
        self.on_report = Some(hook);
        self
    }
    /// Bytes of the vmalloc range (`VMALLOC_TOTAL`), reserved as `PROT_NONE` address space;
    /// 0: no vmalloc. Default: 32 GiB on x86-64, 120 MiB on x86-32 (what is left of its 1 GiB
    /// kernel space above the 896 MiB direct map and the 8 MiB gap).
    pub fn vmalloc_size(mut self, bytes: u64) -> Self {
        self.vmalloc = Some(bytes);
        self
    }
    /// `lazy_max_pages()` override: lazily freed vmalloc pages that trigger a purge
    /// (default: Linux's `fls(cpus) * 32 MiB / PAGE_SIZE`). Each lazy area keeps a host
    /// mapping until its purge, so processes with very many machines may lower it.
    pub fn vmap_lazy_max_pages(mut self, pages: usize) -> Self {
        self.vmap_lazy_max = Some(pages);
        self
    }
    /// Recycle freed small vmalloc areas per CPU (default on; see `kmem::vmalloc::recycle`).
    pub fn vmalloc_recycle(mut self, on: bool) -> Self {
        self.vmalloc_recycle = on;
        self
    }
    /// RAM as private anonymous memory ([`Ram::anonymous`]) instead of a memfd: a host fault
    /// on it costs less than on a memfd's shared memory (2.2 against 3.8 us a page on a 2-CPU
    /// VM), so it suits machines that touch much of their RAM, but nothing can alias it, so
    /// the machine has no vmalloc range. Small pages unless [`MachineBuilder::ram_hugepages`]
    /// asks for huge ones. Ignored for a
    /// machine with HighMem, whose pages are reached only through kmap mappings of the memfd.
    pub fn anonymous_ram(mut self, on: bool) -> Self {
        self.anonymous_ram = on;
        self
    }
    /// SPARSEMEM_VMEMMAP: each section's page descriptors move to their slot of a reserved
    /// virtual array (`kmem::Platform::vmemmap_section`), so the memory map is flat whatever
    /// the holes, nodes and hot-adds. It costs `__free_pages` and `kmap` a second range check
    /// (is the descriptor this machine's?), so by default it is on only where the map would
    /// not be flat without it: sections with a hole between them, several nodes, or a
    /// hotplug reserve.
    pub fn vmemmap(mut self, on: bool) -> Self {
        self.vmemmap = Some(on);
        self
    }
    /// With [`MachineBuilder::anonymous_ram`]: whether to ask the host for transparent huge
    /// pages (`MADV_HUGEPAGE`). Default: no (`MADV_NOHUGEPAGE`, small pages, what a memfd
    /// gets): touching a page commits one page, not 2 MiB.
    ///
    /// Huge pages save host faults and TLB misses where the host keeps them cheap, but a
    /// virtual machine whose guest reports free memory to its host (virtio-balloon free page
    /// reporting, common in cloud VMs) hands the host back every freed huge page after a
    /// couple of seconds, and the next process that gets one waits for the host to back all
    /// 2 MiB of it again: `kmem replay` of the shared capture (240 MiB touched) took 2.6-3.4 s
    /// on huge pages against 0.19-0.29 s on small ones on such a VM (2026-12-06), and small
    /// pages touched 143 MiB where huge ones committed 240.
    pub fn ram_hugepages(mut self, on: bool) -> Self {
        self.ram_hugepages = on;
        self
    }
    /// Deferred struct-page initialisation ([`kmem::BootConfig::deferred_init`]): boot writes
    /// the page descriptors of only the first `bytes` of free RAM of each node's highest
    /// zone (and of everything that is not free RAM), the page allocator the rest on demand,
    /// 4 MiB at a time. `None` (the default): every descriptor at boot. Host RAM is fresh
    /// memory, zero as the core requires.
    pub fn deferred_init(mut self, bytes: Option<u64>) -> Self {
        self.deferred_init = bytes;
        self
    }
    /// Echo every report to stderr, informational ones included (`true`), or none (`false`).
    /// The default echoes problem reports only ([`ReportEcho::Problems`], see
    /// [`crate::console`]).
    pub fn echo_reports(mut self, on: bool) -> Self {
        self.echo = if on { ReportEcho::All } else { ReportEcho::Off };
        self
    }
    /// Echo nothing to stderr: reports are only counted and logged (for tests and tools that
    /// misuse kmem on purpose and must keep stderr clean).
    pub fn quiet_reports(self) -> Self {
        self.report_echo(ReportEcho::Off)
    }
    /// Which reports to echo to stderr (default [`ReportEcho::Problems`]).
    pub fn report_echo(mut self, echo: ReportEcho) -> Self {
        self.echo = echo;
        self
    }

    /// The memory map this builder will boot.
    pub fn regions(&self) -> Result<Vec<MemRegion>, BuildError> {
        let map = match &self.map {
            Some(m) => m.clone(),
            None => {
                if self.ram < 2 * MIB {
                    return Err(BuildError::Config(format!(
                        "RAM size {} KiB is below the 2 MiB minimum",
                        self.ram >> 10
                    )));
                }
                x86_map(self.ram, self.preset)
            }
        };
        if self.nodes == 0 || self.nodes > kmem::MAX_NUMNODES {
            return Err(BuildError::Config(format!(
                "node count {} out of range 1..={}",
                self.nodes,
                kmem::MAX_NUMNODES
            )));
        }
        if self.nodes == 1 || self.map.is_some() {
            return Ok(map);
        }
        split_nodes(&map, self.nodes)
    }

    /// Boots the machine.
    pub fn build(self) -> Result<Machine, BuildError> {
        if self.cpus == 0 || self.cpus > kmem::NR_CPUS {
            return Err(BuildError::Config(format!("CPU count {} out of range 1..={}", self.cpus, kmem::NR_CPUS)));
        }
        let regions = self.regions()?;
        let layout = self.layout.unwrap_or(match self.preset {
            Preset::X86_64 => ZoneLayout::X86_64,
            Preset::X86_32 => ZoneLayout::X86_32,
        });
        // HighMem is reached only through mappings of the RAM memfd (kmap), so a machine with
        // RAM above the direct map always has memfd RAM.
        let has_highmem = layout.highmem_start.is_some_and(|h| {
            regions.iter().any(|r| r.kind == kmem::RegionKind::Usable && r.end() > h) || self.hotplug > h.as_u64()
        });
        let ram = if self.anonymous_ram && !has_highmem {
            Ram::anonymous_with(&regions, self.hotplug, self.ram_hugepages)
        } else {
            Ram::with_reserve(&regions, self.hotplug)
        }
        .map_err(BuildError::Ram)?;
        let limit = match layout.highmem_start {
            Some(h) => h.min(PhysAddr::new(ram.len() as u64)),
            None => PhysAddr::new(ram.len() as u64),
        };
        let dm = DirectMap { base: VirtAddr::new(ram.base()), limit };
        if has_highmem {
            // The direct map stops at the HighMem boundary: the RAM mapping above it faults.
            ram.seal_from(limit.as_u64() as usize).map_err(BuildError::Ram)?;
        }
        let mut log = if self.no_alloc_reports { ReportLog::stderr_only() } else { ReportLog::echoing(self.echo) };
        log.hook = self.on_report;
        let log = Arc::new(log);
        let cpus = match self.thread_cpus {
            true => crate::cpus::Cpus::one_per_thread(self.cpus, self.overflow_cpus),
            false => None,
        }
        .unwrap_or_else(|| crate::cpus::Cpus::shared(self.cpus, self.migrate_every));
        cpus.set_warm_limit(self.warm_cpus);
        let vsize = self.vmalloc.unwrap_or(match self.preset {
            Preset::X86_64 => 32 * GIB,
            Preset::X86_32 => 120 * MIB,
        });
        let vspace = if vsize == 0 || ram.raw_fd().is_none() {
            None
        } else {
            Some(crate::vspace::VSpace::reserve(vsize as usize).map_err(|e| BuildError::Ram(RamError::Os("mmap", e)))?)
        };
        let vrange = vspace.as_ref().zip(ram.raw_fd()).map(|(v, fd)| {
            let (s, e) = v.range();
            (fd, s, e)
        });
        let kspace = match has_highmem {
            true => Some(
                crate::vspace::VSpace::reserve(kmem::highmem::kmap_area_bytes(self.cpus))
                    .map_err(|e| BuildError::Ram(RamError::Os("mmap", e)))?,
            ),
            false => None,
        };
        // One section's descriptors per section slot of the RAM mapping (hotplug reserve
        // included).
        let vmemmap = match self.vmemmap.unwrap_or(self.hotplug > 0 || !crate::vspace::flat_without_vmemmap(&regions)) {
            true => {
                let slots = (ram.len() as u64).div_ceil(kmem::boot::PAGES_PER_SECTION_BYTES) as usize;
                let bytes = slots * kmem::boot::MEMMAP_BYTES_PER_SECTION;
                // Readable zeros where no section sits: the memory map is dense (kmem's
                // `mm/memmap.rs`), and the slots cover every section the direct map reaches.
                Some(
                    crate::vspace::VSpace::reserve_zeroes(bytes)
                        .map_err(|e| BuildError::Ram(RamError::Os("mmap", e)))?,
                )
            }
            false => None,
        };
        let maps = crate::platform::MapRanges {
            fd: ram.raw_fd(),
            vmalloc: vrange.map(|(_, s, e)| (s, e)),
            kmap: kspace.as_ref().map(|k| k.range()),
            vmemmap: vmemmap.as_ref().map(|v| v.range()),
        };
        let platform = HostedPlatform::new(cpus, dm, ram.len(), log.clone(), maps);
        let nodes = regions.iter().map(|r| r.node as usize + 1).max().unwrap_or(1);
        let mut cfg = BootConfig::new(&regions, layout);
        cfg.nr_nodes = nodes;
        cfg.slab.slub_debug = self.slub_debug.as_deref();
        cfg.failslab = self.failslab.as_deref();
        cfg.fail_page_alloc = self.fail_page_alloc.as_deref();
        cfg.init_on_alloc = self.init_on_alloc;
        cfg.init_on_free = self.init_on_free;
        cfg.kfence = self.kfence;
        cfg.slab.nomerge = self.slab_nomerge;
        cfg.slab.freeptr_at_start = self.slab_freeptr_at_start;
        if let Some(b) = self.slab_sheaf_bytes {
            cfg.slab.sheaf_bytes = b;
        }
        if let Some(n) = self.slab_sheaf_max {
            cfg.slab.sheaf_max = n;
        }
        cfg.slab.cpu_stash = self.slab_cpu_stash;
        cfg.slab.barn_bytes = self.slab_barn_bytes;
        cfg.slab.min_objects = self.slab_min_objects;
        if self.hotplug > 0 {
            cfg.hotplug_end = Some(PhysAddr::new(self.hotplug));
        }
        cfg.vmap_lazy_max_pages = self.vmap_lazy_max;
        cfg.vmalloc_recycle = self.vmalloc_recycle;
        cfg.deferred_init = self.deferred_init;
        // A fresh memfd or anonymous mapping reads as zero.
        cfg.ram_zeroed = true;
        let reserve = self.reserve.clone();
        // SAFETY: every usable region lies inside `ram`'s mapping, which is read-write there,
        // ours alone, and outlives the Kmem (Machine drops its Kmem before its Ram); it is a
        // fresh memfd or anonymous mapping, so it reads as zero (deferred init's condition).
        let kmem = unsafe {
            Kmem::boot(platform, &cfg, |mb| {
                for (s, n) in &reserve {
                    mb.reserve(PhysAddr::new(*s), *n)?;
                }
                Ok(())
            })
        }
        .map_err(BuildError::Boot)?;
        if kmem.platform().cpu_per_thread() {
            // SAFETY: the alias lives in the CPUs' hook, which `Machine`'s drop removes before
            // the machine's state and RAM go away.
            let alias = unsafe { kmem.alias() };
            kmem.platform().cpus().set_offline_hook(Box::new(move |cpu| {
                alias.cpu_offline(kmem::CpuId(cpu));
            }));
            // SAFETY: as above.
            let alias = unsafe { kmem.alias() };
            kmem.platform().cpus().set_up_hook(Box::new(move |cpu| alias.cpu_up_prepare(kmem::CpuId(cpu))));
            // The CPUs taken since boot wrote the online ones' tables (the building thread's).
            for cpu in 0..kmem.nr_cpus() {
                if kmem::Platform::cpu_online(kmem.platform(), kmem::CpuId(cpu as u32)) {
                    kmem.cpu_up_prepare(kmem::CpuId(cpu as u32));
                }
            }
        }
        // SAFETY: the Machine owns the threads and stops them first thing in its drop,
        // before its state and RAM go away.
        let kswapd = if self.kswapd { unsafe { crate::reclaim::Kswapd::start(&kmem) } } else { Default::default() };
        Ok(Machine::new(kmem, [vspace, kspace, vmemmap], ram, log, regions, self.preset, kswapd))
    }
}
