//! The process's machine: booted on the first allocation, grown on demand, and made to give
//! memory back to the host.
//!
//! - **Boot**: the first allocation boots a machine with [`BOOT_RAM`] of RAM (one section)
//!   and a hotplug reserve of [`hotplug_max`] (64 GiB of address space by default, half of
//!   what an address-space limit leaves, `KMEM_RAM_MAX` to change, e.g. `KMEM_RAM_MAX=8G`),
//!   a CPU per thread from a pool of
//!   [`possible_cpus`] (`KMEM_CPUS`; each thread's CPU comes online at its first allocation
//!   and goes offline, its per-CPU caches given back, when it exits), slabs sized for the
//!   host's CPUs (`slab_min_objects` as Linux computes it for them: 12 objects on 2 CPUs,
//!   not the 32 of the pool's 256 thread CPUs; a program's first block of a size touches
//!   half the pages, a process starts with 16 page faults fewer). All zones are
//!   ZONE_NORMAL. The misuse policy is read then (`KMEM_ABORT_ON_MISUSE`, see
//!   [`crate::misuse`]); the machine's reports go to stderr through the misuse counters and
//!   policy. Booting allocates (the builder's vectors, the machine itself): while it runs,
//!   every allocation of every thread comes from a static bootstrap arena ([`ARENA_BYTES`]),
//!   whose blocks are never freed.
//! - **Boot is lazy** (what start-up costs: every short-lived process pays it): deferred
//!   struct-page init ([`DEFERRED_INIT`]: the page descriptors of the chunks holding the
//!   machine's own metadata, whose free remnant serves the first allocations, are written at
//!   boot, the rest of the section's 4 MiB at a time when the page allocator runs short,
//!   before it would grow the machine), per-CPU page lists written as each CPU comes up, RAM
//!   that is private anonymous memory from the start (no memfd, nothing to copy), and
//!   nothing read from `/proc` or `/sys`. A process that allocates little touches
//!   about 40 pages of machine state and descriptors.
//! - **Growth**: a request the machine cannot serve (asked without direct reclaim: see
//!   `route.rs`) first sweeps the slab lists (barns and empty slabs, no CPU stopped: [`grow`])
//!   and, unless that gave back [`SWEEP_MIN_PAGES`], hot-adds a 128 MiB section
//!   (`Machine::hot_add`; its page descriptors live in the section's first pages, moved to
//!   their slot of the machine's vmemmap range so the memory map stays flat) and is retried.
//!   A small program touches 1 MiB of descriptors and a few pages of machine state, not more.
//! - **Giving memory back** (the documented policy): after a free of 2 MiB or more, and
//!   after every 64th of a thread's frees that went past its CPU's sheaf (the only small
//!   frees that can move memory towards the page allocator; frees that stay on the sheaf
//!   count nothing: `Kmem::kfree_slab_or_then` calls the count from its slow paths), if the
//!   machine has at least [`REPORT_MIN_FREE`] free and at most once per
//!   [`REPORT_INTERVAL_NS`], free page reporting hands up to [`REPORT_BUDGET`] free blocks
//!   of 2 MiB or more back to the host (`madvise(MADV_DONTNEED)` on the private RAM, see
//!   below). A block is given
//!   back once per time it becomes free, so a loop freeing and reallocating the same memory
//!   makes no system calls once its blocks are reported... and the interval bounds the rest.
//! - **Private RAM**: the machine's RAM is private anonymous memory (`kmem-hosted`'s
//!   `anonymous_ram`, with transparent huge pages off: sparse use of RAM must not cost 2 MiB
//!   per touched page), not the `MAP_SHARED` memfd `kmem-hosted` maps by default, which a
//!   forked child would share with its parent (each writing the other's heap). `fork` copies
//!   the heap as it copies any other memory; giving memory back is `MADV_DONTNEED` (blocks
//!   read back as zero). Nothing can alias such RAM, so the machine has no vmalloc range;
//!   huge blocks come from host mappings instead.
//! - **Fork**: the boot registers `pthread_atfork` handlers ([`crate::raw::fork_prepare`],
//!   `fork_parent`, `fork_child`). Booting, growth and giving memory back run under one lock
//!   (`GROW`) that the prepare handler takes (with the huge-mapping cache's lock and every
//!   CPU of the machine), so a child never inherits a half-done one.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use kmem::{MemRegion, Order, Pfn, ZoneLayout};
use kmem_hosted::{Machine, MachineBuilder};

use crate::lock::RawLock;

/// RAM the machine boots with.
pub const BOOT_RAM: u64 = 128 << 20;
/// Free RAM whose page descriptors boot writes (`BootConfig::deferred_init`), besides the
/// chunks that hold the machine's own metadata (its descriptors, the pagesets, the per-CPU
/// units: 8 MiB of them with 256 possible CPUs). Their free remnant counts, so with 256
/// possible CPUs 1 MiB releases no whole chunk at boot: a chunk (about 20,000 instructions
/// and 8 host page faults, its 32 KiB of descriptors) is initialised when the page allocator
/// first runs short, which a short process never does. 4 MiB until 2026-12-06 (20:10 UTC),
/// when the metadata of 128 possible CPUs left less: with 1 MiB `ls /` takes 8 faults and
/// 0.02-0.03 ms less (`scripts/startup_cost.sh`'s spawner, 3 x 300 runs alternated).
pub const DEFERRED_INIT: u64 = 1 << 20;
/// Bytes of the bootstrap arena.
pub const ARENA_BYTES: usize = 1 << 20;
/// Free memory the machine keeps before it gives any back.
pub const REPORT_MIN_FREE: usize = 64 << 20;
/// Time between two rounds of giving memory back.
pub const REPORT_INTERVAL_NS: u64 = 100_000_000;
/// Blocks given back per round.
pub const REPORT_BUDGET: usize = 256;

const UNINIT: u8 = 0;
const BOOTING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The machine: null until it is ready (stored, with release, just before `STATE` says
/// READY), so the fast paths test this one word ([`ready`]).
static MACHINE: AtomicPtr<Machine> = AtomicPtr::new(core::ptr::null_mut());

/// The machine, once booted; `None` while it boots (or if it could not).
#[inline]
pub fn machine() -> Option<&'static Machine> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: set once before READY is published, never freed.
        return Some(unsafe { &*MACHINE.load(Ordering::Relaxed) });
    }
    boot_slow()
}

/// The machine if it is booted already (never boots it): the fast paths' test.
#[inline(always)]
pub(crate) fn ready() -> Option<&'static Machine> {
    // One load and one test (the state byte and then the pointer cost a load more): the
    // pointer is published with release once the machine is whole.
    // SAFETY: non-null only once set to a booted machine, which is never freed.
    unsafe { MACHINE.load(Ordering::Acquire).as_ref() }
}

/// Held while the machine boots, grows (hot-add) or gives memory back, and across `fork`
/// (`raw::fork_prepare` to the parent and child handlers).
pub(crate) static GROW: RawLock = RawLock::new();
/// Times room was made ([`grow`]: a section hot-added, or a sweep of the slab lists that
/// gave back enough): a thread that waited for [`GROW`] while another made room retries its
/// allocation before making room again.
static GROWN: AtomicUsize = AtomicUsize::new(0);

/// Registers the `fork` handlers ([`crate::raw::fork_prepare`] and the parent and child
/// handlers) with `pthread_atfork`, once per process, as the machine boots. Handlers
/// registered later (nearly all) run their prepare before these and their child handler
/// after, so they may allocate. (A child forked while another thread is booting the machine
/// finds it half booted and lives on the bootstrap arena.)
fn register_atfork() {
    extern "C" fn prepare() {
        // SAFETY: glibc runs the parent or the child handler right after `fork`, in the
        // thread that forked.
        unsafe { crate::raw::fork_prepare() }
    }
    extern "C" fn parent() {
        // SAFETY: after `prepare`, in the thread that forked.
        unsafe { crate::raw::fork_parent() }
    }
    extern "C" fn child() {
        // SAFETY: after `prepare`, in the child's only thread (the forking one's copy).
        unsafe { crate::raw::fork_child() }
    }
    // SAFETY: three handlers that live as long as the process.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// The machine if it has booted; never boots it.
#[inline]
pub(crate) fn booted() -> Option<&'static Machine> {
    // SAFETY: as in `machine`.
    (STATE.load(Ordering::Acquire) == READY).then(|| unsafe { &*MACHINE.load(Ordering::Relaxed) })
}

#[cold]
fn boot_slow() -> Option<&'static Machine> {
    // Booting reads files and the environment through the C library, which may set errno;
    // the allocation that boots the machine (a program's malloc) must leave it as it was.
    // SAFETY: this thread's errno, read and restored.
    let saved = unsafe { *libc::__errno_location() };
    let m = boot_slow_inner();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
    m
}

fn boot_slow_inner() -> Option<&'static Machine> {
    // The thread that wins boots with GROW held (so `fork` never copies a half-booted
    // machine); its own allocations meanwhile, and other threads', use the arena.
    if STATE.load(Ordering::Acquire) == UNINIT && GROW.try_lock() {
        if STATE.compare_exchange(UNINIT, BOOTING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            match build() {
                Some(m) => {
                    // Before the machine is published, so no thread holds any of its locks
                    // without the handlers knowing. `pthread_atfork` may allocate: from the
                    // arena, still.
                    register_atfork();
                    crate::stats::register_if_asked();
                    let m: &'static Machine = Box::leak(Box::new(m));
                    // The process machine: the fast paths reach a thread's CPU of it with one
                    // thread-local load (`kmem_hosted::ProcessCpu::fast`). Only a machine made
                    // before this one's first allocation could have taken the place: the
                    // fast paths then serve from that one (`ProcessCpu::machine_unchecked`), the rest
                    // from this one, which reports the blocks it does not know and keeps
                    // working.
                    if !m.make_process_machine() {
                        const MSG: &[u8] =
                            b"kmem-alloc: another machine is the process machine; the fast paths use it\n";
                        // SAFETY: a write of a static buffer to stderr (no allocation: boot).
                        unsafe { libc::write(2, MSG.as_ptr().cast(), MSG.len()) };
                    }
                    MACHINE.store(m as *const Machine as *mut Machine, Ordering::Release);
                    STATE.store(READY, Ordering::Release);
                }
                None => STATE.store(FAILED, Ordering::Release),
            }
        }
        // SAFETY: taken above.
        unsafe { GROW.unlock() };
    }
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: as in `machine`.
        return Some(unsafe { &*MACHINE.load(Ordering::Relaxed) });
    }
    None
}

fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Possible CPUs of the global machine without `KMEM_CPUS`: `kmem::NR_CPUS` (256), as a
/// Linux kernel without firmware tables takes `NR_CPUS`. A program's threads beyond them
/// share the overflow CPUs ([`possible_cpus`], [`overflow_cpus`]).
///
/// 256 since 2026-12-06 (18:30 UTC), 128 before (four per host CPU at least, 64 before
/// 12:00): `mtbench many 256` (256 live threads looping on `malloc` + `free` of 8-1000 B)
/// took 80.6 ms with 128 (the 133 threads beyond the owned CPUs on four overflow CPUs,
/// `free_no_cpu` and `alloc_careful` a third of its samples), 73.0 with 256 (glibc 69.5),
/// alternated. The start-up they cost (the first `malloc` 153,617 -> 177,165 instructions
/// and 73 -> 90 page faults: the per-CPU page lists and units' descriptors of 128 more CPUs)
/// was paid back: the page lists are written as each CPU comes up, and boot initialises no
/// whole chunk of free frames ([`DEFERRED_INIT`]): 148,145 instructions and 68 faults.
pub const DEFAULT_POSSIBLE_CPUS: usize = kmem::NR_CPUS;

/// The hotplug reserve: `KMEM_RAM_MAX`, else 64 GiB, or half the address space the process
/// has left under its limit (`RLIMIT_AS`, `ulimit -v`) if that is less, in whole sections.
/// The reserve is address space mapped at boot (`PROT_NONE` until sections come online),
/// which the limit counts: a reserve past it could not be mapped, the machine would not
/// boot, and every allocation past the bootstrap arena would fail (under `ulimit -v
/// 2000000`, Python failed to start). The other half is left to the program's own mappings
/// and kmem's blocks above 4 MiB (host mappings). If the reserve cannot be mapped all the
/// same, boot tries half of it, down to [`BOOT_RAM`] ([`build`]).
pub fn hotplug_max() -> u64 {
    match std::env::var("KMEM_RAM_MAX").ok().and_then(|s| parse_bytes(&s)) {
        Some(max) => max.max(BOOT_RAM),
        None => (64 << 30).min(address_space_left() / 2 / BOOT_RAM * BOOT_RAM).max(BOOT_RAM),
    }
}

/// Address space the process may still map under its limit (`RLIMIT_AS`): `u64::MAX` with
/// no limit (the common case: one `getrlimit`, nothing read from `/proc`), else the limit
/// less the process's size now (`/proc/self/statm`'s first field).
fn address_space_left() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    let used = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |pages| pages * kmem::PAGE_SIZE as u64);
    r.rlim_cur.saturating_sub(used)
}

/// Possible CPUs of the global machine: `KMEM_CPUS` (1 to `kmem::NR_CPUS`), else
/// [`DEFAULT_POSSIBLE_CPUS`]. Each thread takes one for as long as it lives, but for the
/// last [`overflow_cpus`], which the threads beyond the others share (a compare-exchange an
/// operation: 1000 live threads each looping on `malloc(64)` + `free` take 10-11 ns a pair,
/// glibc 4-6.5; before, they borrowed owned CPUs, stopping them: 200 threads took 8.1 us a
/// pair). Each possible CPU costs start-up only its per-CPU unit's page descriptors (32 KiB
/// of RAM, a page of descriptors per 16 CPUs; its page lists and fast table are written as
/// it comes up).
pub fn possible_cpus() -> usize {
    std::env::var("KMEM_CPUS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_POSSIBLE_CPUS)
        .clamp(1, kmem::NR_CPUS)
}

/// Of `possible` CPUs on a host of `host` CPUs, the overflow CPUs: shared by the threads
/// that find every other CPU owned by a live thread (`MachineBuilder::thread_cpus_overflow`).
/// Two per host CPU (so that a thread descheduled inside its section holds up none of the
/// others: they take another), 4 to 16, at most an eighth of the CPUs (none below 8).
///
/// Measured (C, `LD_PRELOAD`, threads each looping on `malloc(64)` + `free`, 128 possible
/// CPUs on 2 host CPUs, 4 of them overflow): 200 live threads took 8.1 us a pair when the
/// 72 beyond the pool borrowed owned CPUs, 7-8 ns on the overflow CPUs (glibc 3-6.5 ns);
/// 1000 threads 10-11 ns (glibc 4-6.5).
pub fn overflow_cpus(possible: usize, host: usize) -> usize {
    host.saturating_mul(2).clamp(4, 16).min(possible / 8)
}

/// CPUs of the process's affinity mask: one `sched_getaffinity` (std's
/// `available_parallelism` also reads the cgroup's CPU quota, a dozen system calls at every
/// process start; a quota limits time, not how many threads run at once). The machine's
/// slabs are sized for them (`slab_min_objects`).
pub fn host_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let ok = unsafe { libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    // SAFETY: `set` is initialised (zeroed, then filled by the kernel).
    let n = if ok { (unsafe { libc::CPU_COUNT(&set) }) as usize } else { 0 };
    n.max(1)
}

/// Linux's default `slab_min_objects` for `cpus` CPUs: `4 * (fls(cpus) + 1)`.
fn slab_min_objects(cpus: usize) -> u32 {
    4 * (usize::BITS - cpus.leading_zeros() + 1)
}

/// Boots the machine with the [`hotplug_max`] reserve, else (the reserve's address space
/// refused) half of it, and so on down to [`BOOT_RAM`].
fn build() -> Option<Machine> {
    crate::misuse::read_policy();
    let mut max = hotplug_max();
    loop {
        if let Some(m) = build_with(max) {
            return Some(m);
        }
        if max <= BOOT_RAM {
            return None;
        }
        max = (max / 2 / BOOT_RAM * BOOT_RAM).max(BOOT_RAM);
    }
}

fn build_with(hotplug_max: u64) -> Option<Machine> {
    let host = host_cpus();
    MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, BOOT_RAM)])
        .zone_layout(ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None })
        .thread_cpus(possible_cpus())
        // The last few possible CPUs are shared by the threads beyond the rest (a thread
        // pool larger than the pool of CPUs): a compare-exchange a section, not a borrowed
        // CPU stopped with a process-wide barrier (see `overflow_cpus`).
        .thread_cpus_overflow(overflow_cpus(possible_cpus(), host))
        // Exiting threads leave up to one warm CPU per host CPU for the next threads (a
        // pool of workers reuses full caches); more exits tear down and give memory back.
        .thread_cpus_warm(host)
        // Slabs sized for the host's CPUs, as Linux on this host would size them, not for the
        // pool of thread CPUs (256): with 2 host CPUs a slab aims at 12 objects, not
        // 32, so a program's first block of a size touches half the pages.
        .slab_min_objects(slab_min_objects(host))
        .hotplug_max(hotplug_max)
        .deferred_init(Some(DEFERRED_INIT))
        // Private anonymous memory (for fork), small pages; nothing can alias it: no vmalloc
        // range, huge blocks come from host mappings instead.
        .anonymous_ram(true)
        .ram_hugepages(false)
        // Hot-added sections' descriptors at their vmemmap slots: the memory map stays flat
        // as the machine grows (kmem's own pfn-to-descriptor lookups are one multiply-add).
        .vmemmap(true)
        .vmalloc_size(0)
        // Free pointers at the object's start: malloc's caller touches the first line of a
        // block, so alloc and free touch no second one (a random-order churn over 2000
        // blocks: 43% fewer simulated L1 misses; BENCHMARKS.md).
        .slab_freeptr_at_start(true)
        // Sheaves of 128 KiB (128 objects for every class up to 1 KiB, against 32 for the
        // classes above 512 B by default): threads that allocate and free hundreds of blocks
        // at a time (threadtest, a pool of short-lived threads) trade sheaves at the shared
        // barn four times less often, and get back more of their own objects. On 16 CPUs, C
        // threadtest at 16 threads went from 4.0x glibc's time to 1.1x, the thread churn
        // from 2.1x to 0.8x (BENCHMARKS.md).
        .slab_sheaf_bytes(128 << 10)
        // Sheaves of up to 256 objects (the classes up to 512 B; Linux's and kmem's default:
        // 128): a thread's burst of a thousand 64-byte allocations, then frees, stays within
        // its CPU's main, spare and stashed sheaves (six of them: 1536 objects), off the
        // barn's lock, with half the exchanges (Rust alloc_n_free_n/1000 6% faster, the C
        // loop 97 instructions a block against 102; ARCHITECTURE.md).
        .slab_sheaf_max(256)
        // Four more sheaves per CPU and cache: a thread's burst of a thousand frees, then
        // allocations, stays on its CPU with its own objects, off the shared barn.
        .slab_cpu_stash(4)
        // Barns of 16 MiB of objects per cache: a thread that allocates a hundred thousand
        // blocks and frees them parks the full sheaves there and takes them back for its next
        // allocations, rather than flushing them to their slabs (and the page allocator)
        // and rebuilding them (100,000 64-byte blocks allocated then freed: 242 -> 177
        // instructions a block).
        .slab_barn_bytes(16 << 20)
        .no_alloc_reports(true)
        .on_report(crate::misuse::machine_report)
        .build()
        .ok()
}

/// Pages a sweep of the slab lists must give back to stand for a growth ([`grow`]): 16 MiB,
/// an eighth of a section.
pub const SWEEP_MIN_PAGES: usize = (16 << 20) / kmem::PAGE_SIZE;

/// Makes room for a request that found the machine full, unless another thread did since the
/// caller saw [`grown`] return `seen`: first the slab lists (`Machine::shrink_slab_lists`:
/// every cache's barns and empty slabs back to the page allocator, no CPU stopped), and if
/// that gave back fewer than [`SWEEP_MIN_PAGES`], one more section. False when the hotplug
/// reserve is used up.
///
/// The sweep keeps memory that frees parked in the barns (up to `slab_barn_bytes` a cache)
/// from making the machine grow: 64 threads, 4 at a time, each building a heap of about
/// 23 MB and freeing it, peaked at 122 MB resident growing straight away, 72 MB with the
/// sweep, 70 MB when every full machine ran direct reclaim (glibc 94, mimalloc 103). Its
/// minimum keeps a sweep that finds little from standing for a growth: the next request
/// would find the machine full again at once.
pub(crate) fn grow(m: &Machine, seen: usize) -> bool {
    GROW.lock();
    let ok = GROWN.load(Ordering::Relaxed) != seen || m.shrink_slab_lists() >= SWEEP_MIN_PAGES || m.hot_add(1).is_ok();
    if ok {
        GROWN.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: taken above.
    unsafe { GROW.unlock() };
    ok
}

/// How many times room was made (see [`grow`]).
#[inline]
pub(crate) fn grown() -> usize {
    GROWN.load(Ordering::Relaxed)
}

/// The bootstrap arena: a bump allocator for allocations made while the machine boots.
#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: blocks are handed out once each (an atomic bump), so no two users share bytes.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

/// Whether `p` lies in the bootstrap arena.
#[inline]
pub(crate) fn in_arena(p: *const u8) -> bool {
    (p as usize).wrapping_sub(ARENA.0.get() as usize) < ARENA_BYTES
}

/// A block of the arena, `size` bytes aligned to `align`, its size recorded in the word
/// before it; null when the arena is used up.
pub(crate) fn arena_alloc(size: usize, align: usize) -> *mut u8 {
    let base = ARENA.0.get() as usize;
    let align = align.max(16);
    let mut cur = ARENA_USED.load(Ordering::Relaxed);
    loop {
        let start = (base + cur + 8).next_multiple_of(align) - base;
        let end = match start.checked_add(size) {
            Some(e) if e <= ARENA_BYTES => e,
            _ => return core::ptr::null_mut(),
        };
        match ARENA_USED.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                let p = (base + start) as *mut u8;
                // SAFETY: [start - 8, end) was just reserved for us alone, inside the arena.
                unsafe { (p.sub(8) as *mut usize).write(size) };
                return p;
            }
            Err(now) => cur = now,
        }
    }
}

/// Usable size of an arena block.
///
/// # Safety
///
/// `p` must be a block [`arena_alloc`] returned.
pub(crate) unsafe fn arena_size(p: *const u8) -> usize {
    // SAFETY: the size word precedes every arena block.
    unsafe { (p.sub(8) as *const usize).read() }
}

static LAST_REPORT: AtomicU64 = AtomicU64::new(0);
/// Frees past a CPU's sheaf between two runs of [`maybe_report`] by one thread. A sheaf
/// holds 32 to 128 objects, so this is one check every few thousand frees of a thread that
/// frees more than it allocates, and none while frees stay on the sheaves (nothing reaches
/// the page allocator then).
const SLOW_FREES_PER_TICK: u32 = 64;
thread_local! {
    /// Slow frees left before this thread's next check (no destructor: usable until the
    /// thread's last free).
    static SLOW_FREES_LEFT: core::cell::Cell<u32> = const { core::cell::Cell::new(SLOW_FREES_PER_TICK) };
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Counts one free that went past its CPU's sheaf ([`kmem::kmalloc::FreePath::Slow`]),
/// outside every kmem lock; every [`SLOW_FREES_PER_TICK`]th runs [`maybe_report`]. The
/// fast free path never gets here: it counts nothing (it used to count every free, three
/// instructions a free). `#[inline]` (and cold, so it stays a call) for the `LD_PRELOAD`
/// library's PIE build: a thread-local that only this crate's own code reaches gets the
/// local-exec TLS model there, which a shared object cannot link (`R_X86_64_TPOFF32`);
/// reachable from the inlined `raw::free`, it gets initial-exec.
#[cold]
#[inline]
pub(crate) fn slow_free_tick() {
    let due = SLOW_FREES_LEFT.with(|c| {
        let n = c.get().saturating_sub(1);
        c.set(if n == 0 { SLOW_FREES_PER_TICK } else { n });
        n == 0
    });
    // The machine read again rather than passed: the free's slow branch then keeps no value
    // alive across its call of the slab's slow path, and the fast path saves no register.
    if let (true, Some(m)) = (due, ready()) {
        maybe_report(m);
    }
}

/// Gives free memory back to the host under the policy above: after a free of 2 MiB or
/// more at once, after other frees every 64th of a thread's frees that went past its CPU's
/// sheaf ([`slow_free_tick`]).
#[cold]
pub(crate) fn maybe_report(m: &Machine) {
    let free: usize = m.zones().map(|z| z.free_pages()).sum::<usize>() * kmem::PAGE_SIZE;
    if free < REPORT_MIN_FREE {
        return;
    }
    let now = now_ns();
    let last = LAST_REPORT.load(Ordering::Relaxed);
    if now.saturating_sub(last) < REPORT_INTERVAL_NS
        || LAST_REPORT.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return;
    }
    if !GROW.try_lock() {
        return; // booting, growing, forking or giving back already
    }
    give_back(m, REPORT_BUDGET);
    // SAFETY: taken above.
    unsafe { GROW.unlock() };
}

/// Free page reporting with [`GROW`] held: up to `budget` free blocks of 2 MiB or more
/// (unreported since they last became free) handed back to the host. Returns the blocks.
fn give_back(m: &Machine, budget: usize) -> usize {
    let (base, _) = m.ram_range();
    m.report_free_pages(Order::PAGEBLOCK, budget, &mut |pfn: Pfn, order: Order| {
        let addr = base + pfn.phys().as_u64() as usize;
        // SAFETY: the block is isolated from the free lists while this runs: nobody uses its
        // bytes, and MADV_DONTNEED on private anonymous memory only drops their contents
        // (they read back as zero).
        let dropped = unsafe {
            rustix::mm::madvise(addr as *mut core::ffi::c_void, order.bytes(), rustix::mm::Advice::LinuxDontNeed)
        };
        // Dropped, the block reads as zero: a calloc of it need not clear it.
        dropped.is_ok()
    })
}

/// `malloc_trim`: gives back to the host all it can at once, with no rate limit and no
/// free memory kept back: the slab lists swept (barns and empty slabs back to the page
/// allocator, no CPU stopped: objects in the CPUs' sheaves stay), then every free block of
/// 2 MiB or more reported. Waits for a boot, growth, give-back or `fork` in progress. True
/// if anything went back (glibc's `malloc_trim` returns 1 then).
pub fn trim() -> bool {
    let Some(m) = ready() else { return false };
    GROW.lock();
    let slabs = m.shrink_slab_lists();
    let blocks = give_back(m, usize::MAX);
    // SAFETY: taken above.
    unsafe { GROW.unlock() };
    slabs > 0 || blocks > 0
}

/// `fork_prepare`'s part here: waits for a boot, a growth or a round of giving memory back
/// to finish and keeps the next from starting.
pub(crate) fn fork_lock() {
    GROW.lock();
}

/// After `fork`, parent and child: ends [`fork_lock`].
///
/// # Safety
///
/// After [`fork_lock`], in the thread that called it (or the child's copy of it).
pub(crate) unsafe fn fork_unlock() {
    // SAFETY: caller's contract.
    unsafe { GROW.unlock() };
}

/// Whether the machine's RAM is private anonymous memory (see the module docs); false
/// before boot.
pub fn ram_is_private() -> bool {
    booted().is_some_and(|m| m.ram_is_anonymous())
}

/// Bytes of the machine's RAM currently online (boot RAM plus hot-added sections).
pub fn online_bytes() -> u64 {
    machine().map_or(0, |m| m.totalram_pages() as u64 * kmem::PAGE_SIZE as u64)
}

#[cfg(test)]
mod tests {
    /// Linux's `4 * (fls(nr_cpus) + 1)`.
    #[test]
    fn slab_min_objects_is_linux_s_for_the_host_cpus() {
        for (cpus, objs) in [(1, 8), (2, 12), (3, 12), (4, 16), (16, 24), (64, 32), (256, 40)] {
            assert_eq!(super::slab_min_objects(cpus), objs, "{cpus} CPUs");
        }
    }

    /// Two overflow CPUs per host CPU, 4 to 16, at most an eighth of the possible CPUs.
    #[test]
    fn overflow_cpus_scale_with_the_host() {
        for (possible, host, n) in
            [(128, 1, 4), (128, 2, 4), (128, 4, 8), (256, 64, 16), (16, 2, 2), (7, 2, 0), (1, 1, 0)]
        {
            assert_eq!(super::overflow_cpus(possible, host), n, "{possible} possible CPUs on {host}");
        }
    }
}
