//! The process's machine: booted on the first allocation, grown on demand, and made to give
//! memory back to the host.
//!
//! - **Boot**: the first allocation boots a machine with [`BOOT_RAM`] of RAM (one section: its 1 MiB of descriptors is the fixed cost) and a hotplug
//!   reserve of [`hotplug_max`] (64 GiB of address space by default, `KMEM_RAM_MAX` to
//!   change, e.g. `KMEM_RAM_MAX=8G`), one CPU per host CPU (at most 64; `KMEM_CPUS`). All
//!   zones are ZONE_NORMAL. Booting allocates (the builder's vectors, the machine itself):
//!   while it runs, every allocation of every thread comes from a static bootstrap arena
//!   ([`ARENA_BYTES`]), whose blocks are never freed.
//! - **Growth**: a request the machine cannot serve hot-adds a 128 MiB section
//!   (`Machine::hot_add`; its page descriptors live in the section) and is retried. A small
//!   program touches 1 MiB of descriptors and a few pages of machine state, not more.
//! - **Giving memory back** (the documented policy): after a free that leaves the machine
//!   with at least [`REPORT_MIN_FREE`] free and at most once per [`REPORT_INTERVAL_NS`],
//!   free page reporting hands up to [`REPORT_BUDGET`] free blocks of 2 MiB or more back to
//!   the host (`madvise(MADV_REMOVE)` on the RAM memfd). A block is given back once per time
//!   it becomes free, so a loop freeing and reallocating the same memory makes no system
//!   calls once its blocks are reported... and the interval bounds the rest.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use kmem::{MemRegion, Order, Pfn, ZoneLayout};
use kmem_hosted::{Machine, MachineBuilder};

/// RAM the machine boots with.
pub const BOOT_RAM: u64 = 128 << 20;
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

#[cold]
fn boot_slow() -> Option<&'static Machine> {
    if STATE.compare_exchange(UNINIT, BOOTING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        match build() {
            Some(m) => {
                MACHINE.store(Box::into_raw(Box::new(m)), Ordering::Relaxed);
                STATE.store(READY, Ordering::Release);
            }
            None => STATE.store(FAILED, Ordering::Release),
        }
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

/// The hotplug reserve: `KMEM_RAM_MAX`, else 64 GiB.
pub fn hotplug_max() -> u64 {
    std::env::var("KMEM_RAM_MAX").ok().and_then(|s| parse_bytes(&s)).unwrap_or(64 << 30).max(BOOT_RAM)
}

fn build() -> Option<Machine> {
    let cpus = std::env::var("KMEM_CPUS")
        .ok()
        .and_then(|s| s.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, 64);
    MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, BOOT_RAM)])
        .zone_layout(ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None })
        .cpus(cpus)
        .hotplug_max(hotplug_max())
        .no_alloc_reports(true)
        .build()
        .ok()
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
static FREES: AtomicUsize = AtomicUsize::new(0);

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Called after frees: gives free memory back to the host under the policy above. `big`:
/// the free was of 2 MiB or more (checked at once; other frees every 4096th time).
#[inline]
pub(crate) fn after_free(m: &Machine, big: bool) {
    if !big && FREES.fetch_add(1, Ordering::Relaxed) % 4096 != 4095 {
        return;
    }
    maybe_report(m);
}

#[cold]
fn maybe_report(m: &Machine) {
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
    let (base, _) = m.ram_range();
    m.report_free_pages(Order::PAGEBLOCK, REPORT_BUDGET, &mut |pfn: Pfn, order: Order| {
        let addr = base + pfn.phys().as_u64() as usize;
        // SAFETY: the block is isolated from the free lists while this runs: nobody uses its
        // bytes, and MADV_REMOVE on the memfd mapping only drops their contents (they read
        // back as zero).
        let _ = unsafe {
            rustix::mm::madvise(addr as *mut core::ffi::c_void, order.bytes(), rustix::mm::Advice::LinuxRemove)
        };
    });
}

/// Bytes of the machine's RAM currently online (boot RAM plus hot-added sections).
pub fn online_bytes() -> u64 {
    machine().map_or(0, |m| m.totalram_pages() as u64 * kmem::PAGE_SIZE as u64)
}
