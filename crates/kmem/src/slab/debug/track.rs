//! Owner tracking (`SLAB_STORE_USER`): the last allocation and free of each object, as two
//! `struct track`s after the object, and the call-site depot they refer to.
//!
//! A track is 32 bytes, as Linux's: the call site's address, a depot handle, CPU, pid and
//! time. The call site is a `#[track_caller]` location; tracks store a handle into a small
//! per-machine depot of locations (Linux's stack depot, one frame deep) so that reading a
//! track never follows a pointer an overwrite could have forged.

use core::fmt::{self, Write};
use core::panic::Location;

use super::super::cache::KmemCache;
use super::super::object::{fill, read_word, write_word};
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{AtomicUsize, Ordering};

/// Locations the depot keeps.
pub const DEPOT_SLOTS: usize = 1024;

/// `TRACK_ALLOC` / `TRACK_FREE`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Which {
    Alloc = 0,
    Free = 1,
}

/// The call-site depot: an open-addressed table of `&'static Location` addresses, in a
/// zeroed page-allocator block (all slots empty).
#[derive(Debug)]
pub struct CallerDepot {
    slots: [AtomicUsize; DEPOT_SLOTS],
}

impl CallerDepot {
    /// The handle of `loc` (1-based), or 0 if the depot is full.
    pub(crate) fn save(&self, loc: &'static Location<'static>) -> u32 {
        let p = loc as *const _ as usize;
        let mut i = (p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize >> 54;
        for _ in 0..DEPOT_SLOTS {
            let slot = &self.slots[i % DEPOT_SLOTS];
            match slot.compare_exchange(0, p, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return (i % DEPOT_SLOTS) as u32 + 1,
                Err(cur) if cur == p => return (i % DEPOT_SLOTS) as u32 + 1,
                Err(_) => i += 1,
            }
        }
        0
    }

    /// The location of a handle.
    pub(crate) fn get(&self, handle: u32) -> Option<&'static Location<'static>> {
        let i = (handle as usize).checked_sub(1)?;
        let p = self.slots.get(i)?.load(Ordering::Acquire);
        // SAFETY: slots only ever hold addresses of `&'static Location<'static>` (`save`).
        (p != 0).then(|| unsafe { &*(p as *const Location<'static>) })
    }
}

fn track_addr(s: &KmemCache, obj: usize, which: Which) -> usize {
    obj + (s.layout.track_offset() + which as u32 * super::super::layout::TRACK_SIZE) as usize
}

impl<P: Platform> Kmem<P> {
    /// `set_track()`.
    pub(crate) fn set_track(&self, s: &KmemCache, obj: usize, which: Which, caller: &'static Location<'static>) {
        let a = track_addr(s, obj, which);
        let handle = self.depot().map_or(0, |d| d.save(caller));
        let cpu = self.platform().current_cpu().0;
        let pid = self.platform().current_task().pid;
        // SAFETY: the track lies in the object's metadata (STORE_USER layout), which the
        // caller owns (the object is being allocated or freed under the list lock).
        unsafe {
            write_word(a, caller as *const _ as u64);
            write_word(a + 8, handle as u64 | (cpu as u64) << 32);
            write_word(a + 16, pid as u64);
            write_word(a + 24, self.jiffies());
        }
    }

    /// `init_tracking()`: both tracks zeroed.
    pub(crate) fn init_tracking(&self, s: &KmemCache, obj: usize) {
        // SAFETY: as `set_track`: the metadata of an object of a new slab.
        unsafe { fill(track_addr(s, obj, Which::Alloc), 0, 2 * super::super::layout::TRACK_SIZE as usize) };
    }
}

/// `print_track()`: `Allocated in <site> age=<jiffies> cpu=<cpu> pid=<pid>`.
pub(crate) fn print_tracking<P: Platform>(
    k: &Kmem<P>,
    w: &mut dyn Write,
    s: &KmemCache,
    obj: usize,
    which: Which,
    now: u64,
) -> fmt::Result {
    let a = track_addr(s, obj, which);
    // SAFETY: the track lies in the object's metadata inside a slab page (mapped).
    let (addr, hc, pid, when) = unsafe { (read_word(a), read_word(a + 8), read_word(a + 16), read_word(a + 24)) };
    if addr == 0 {
        return Ok(());
    }
    let label = if which == Which::Alloc { "Allocated" } else { "Freed" };
    match k.depot().and_then(|d| d.get(hc as u32)) {
        Some(loc) => write!(w, "{label} in {loc}")?,
        None => write!(w, "{label} in 0x{addr:x}")?,
    }
    writeln!(w, " age={} cpu={} pid={}", now.wrapping_sub(when), hc >> 32, pid as u32)
}

/// The allocation site recorded for `obj`, if tracking is on (for tests and leak reports).
pub(crate) fn alloc_site<P: Platform>(k: &Kmem<P>, s: &KmemCache, obj: usize) -> Option<&'static Location<'static>> {
    // SAFETY: as in `print_tracking`.
    let hc = unsafe { read_word(track_addr(s, obj, Which::Alloc) + 8) };
    k.depot()?.get(hc as u32)
}

impl<P: Platform> Kmem<P> {
    /// The call-site depot, once a tracking cache exists.
    pub(crate) fn depot(&self) -> Option<&CallerDepot> {
        let p = self.slab().depot.load(Ordering::Acquire);
        // SAFETY: `depot` is 0 or the address of a zeroed block of at least
        // size_of::<CallerDepot>() bytes, never freed (installed once by `install_table`).
        (p != 0).then(|| unsafe { &*(p as *const CallerDepot) })
    }
}
