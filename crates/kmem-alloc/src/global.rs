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
//!   whose blocks are never freed. The machine's sizes and the builder's settings are
//!   `global/config.rs`.
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

use kmem::{Order, Pfn};
use kmem_hosted::Machine;

use crate::lock::RawLock;

mod config;

pub use config::{host_cpus, hotplug_max, overflow_cpus, possible_cpus, DEFAULT_POSSIBLE_CPUS};

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
            match config::build() {
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
