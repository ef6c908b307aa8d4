//! Object memory: the few raw reads and writes the slab layer makes into the objects it
//! manages (free pointers, poison, red zones, tracks). This is the slab layer's mechanism;
//! everything else in `slab/` reaches object bytes through these functions.
//!
//! Free-pointer words are read with relaxed atomic loads: the lockless allocation path reads
//! the free pointer of an object another CPU may have just allocated and started to write
//! (the compare-and-exchange that follows then fails and the value is discarded). Linux
//! makes the same racy read (`get_freepointer_safe`); an atomic load keeps kmem's half of
//! the race defined.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};

/// Reads the 8-byte word at `addr`.
///
/// # Safety
///
/// `addr` must be 8-aligned and lie in RAM that the machine maps for its whole life (a slab
/// page of this machine, through the direct map).
#[inline]
pub(crate) unsafe fn read_word(addr: usize) -> u64 {
    #[cfg(not(loom))]
    {
        // SAFETY: aligned, mapped for the machine's life (caller); all kmem accesses to free
        // pointer words are atomic.
        unsafe { AtomicU64::from_ptr(addr as *mut u64) }.load(Ordering::Relaxed)
    }
    #[cfg(loom)]
    {
        // SAFETY: as above; loom runs one thread at a time, so a volatile read is enough.
        unsafe { core::ptr::read_volatile(addr as *const u64) }
    }
}

/// Writes the 8-byte word at `addr`.
///
/// # Safety
///
/// As [`read_word`], and the caller must own the object the word belongs to (it is being
/// freed, or is free and the caller holds the right to its freelist).
#[inline]
pub(crate) unsafe fn write_word(addr: usize, v: u64) {
    #[cfg(not(loom))]
    {
        // SAFETY: caller's contract.
        unsafe { AtomicU64::from_ptr(addr as *mut u64) }.store(v, Ordering::Relaxed)
    }
    #[cfg(loom)]
    {
        // SAFETY: caller's contract.
        unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
    }
}

/// Fills `len` bytes at `addr` with `val`.
///
/// # Safety
///
/// `[addr, addr + len)` must be mapped RAM of the machine that the caller owns (a new slab,
/// an object being allocated or freed, its metadata).
#[inline]
pub(crate) unsafe fn fill(addr: usize, val: u8, len: usize) {
    // SAFETY: caller's contract.
    unsafe { core::ptr::write_bytes(addr as *mut u8, val, len) }
}

/// The bytes `[addr, addr + len)`, writable.
///
/// # Safety
///
/// The range must be mapped RAM of the machine that the caller owns exclusively while
/// the slice lives.
#[inline]
pub(crate) unsafe fn bytes_mut<'a>(addr: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: caller's contract.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// Reads a native-endian `u32` at `addr` (the `orig_size` word).
///
/// # Safety
///
/// The word must be mapped RAM of the machine that nobody writes meanwhile (the caller
/// holds the object's list lock or owns it), with `addr` 4-aligned.
#[inline]
pub(crate) unsafe fn read_u32(addr: usize) -> u32 {
    // SAFETY: caller's contract.
    unsafe { core::ptr::read(addr as *const u32) }
}

/// Writes a native-endian `u32` at `addr`.
///
/// # Safety
///
/// As [`bytes_mut`], with `addr` 4-aligned.
#[inline]
pub(crate) unsafe fn write_u32(addr: usize, v: u32) {
    // SAFETY: caller's contract.
    unsafe { core::ptr::write(addr as *mut u32, v) }
}
