//! # kmem-alloc: kmem as the allocator of a process
//!
//! - [`KmemAlloc`]: a `GlobalAlloc` for `#[global_allocator]`. It boots a hosted machine
//!   on first use ([`global`]), routes requests by size and alignment to kmalloc, kmalloc's
//!   page path or host mappings ([`route`]), reallocates in place when the bucket allows,
//!   and grows the machine by memory hot-add.
//! - [`raw`]: the same as C-shaped functions (`malloc`, `free`, `realloc`, `memalign`,
//!   `usable_size`) for an `LD_PRELOAD` malloc.
//! - [`misuse`]: what kmem-alloc does with pointers it does not own (a double or invalid
//!   `free`, a `realloc` of a freed block: one line on stderr, counted, nothing changes) and
//!   the abort-on-misuse policy (`KMEM_ABORT_ON_MISUSE=1`).
//! - [`Kmalloc`] and [`SlabAlloc`]: `allocator_api2::alloc::Allocator`s over any machine's
//!   kmalloc and over a slab cache, so `allocator_api2::vec::Vec::new_in` and `Box::new_in`
//!   work on stable.
//!
//! ```
//! use allocator_api2::vec::Vec;
//! use kmem_alloc::Kmalloc;
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
//! let mut v: Vec<u32, _> = Vec::new_in(Kmalloc::new(&m));
//! v.extend(0..1000);
//! assert_eq!(v.iter().sum::<u32>(), 499_500);
//! ```
//!
//! ```no_run
//! #[global_allocator]
//! static A: kmem_alloc::KmemAlloc = kmem_alloc::KmemAlloc;
//! fn main() {
//!     let v: Vec<u64> = (0..1_000_000).collect(); // every allocation is kmem's
//!     assert_eq!(v.len(), 1_000_000);
//! }
//! ```

mod api2;
pub mod global;
mod huge;
mod huge_table;
mod lock;
mod medium;
pub mod misuse;
pub mod route;
pub mod stats;

use core::alloc::{GlobalAlloc, Layout};

pub use api2::{Kmalloc, SlabAlloc};

/// kmem as `#[global_allocator]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KmemAlloc;

// SAFETY: every block returned is `layout.size()` bytes aligned to `layout.align()` and
// stays valid until deallocated (kmalloc and huge mappings); `dealloc`/`realloc` accept
// exactly what alloc returned, as `raw` documents.
// alloc/dealloc are always inlined: the fast paths (raw::alloc_aligned, raw::free) then land
// in `__rust_alloc`/`__rust_dealloc` (or the caller), with no call of their own; the compiler
// stopped inlining them once the slow paths grew (measured: 177 -> 188 instructions a pair).
unsafe impl GlobalAlloc for KmemAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        raw::alloc_aligned(layout.size(), layout.align(), false)
    }
    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        raw::alloc_aligned(layout.size(), layout.align(), true)
    }
    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe { raw::free_sized(ptr, layout.size(), layout.align()) }
    }
    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe { raw::realloc_aligned(ptr, Some(layout.size()), new_size, layout.align()) }
    }
}

/// C-shaped entry points over the global machine (what an `LD_PRELOAD` malloc exports).
pub mod raw {
    use kmem::Kmem;
    use kmem_hosted::ProcessCpu;

    use crate::global::{self, arena_alloc, arena_size, in_arena};
    use crate::{huge, route};

    /// `malloc`-like: `size` bytes aligned to `align` (a power of two), zeroed with `zero`;
    /// null on failure. Size 0 gives a unique minimal block, as C's malloc.
    ///
    /// The fast path starts from the thread's CPU of the process machine as its fast gate
    /// has it ([`ProcessCpu::fast`]), with no test of the gate: a closed gate (no machine
    /// yet, the thread's first allocation, the first after a careful section) is a CPU
    /// stopped for good, whose pin fails (or is opened there, after a careful section). A miss
    /// goes to [`alloc_no_cpu`]: the machine's own fast path, else its slow path, else booting.
    #[inline(always)]
    pub fn alloc_aligned(size: usize, align: usize, zero: bool) -> *mut u8 {
        if let Some(p) = route::alloc_on(ProcessCpu::fast(), size, align, zero) {
            return p.as_ptr();
        }
        alloc_no_cpu(size, align, zero)
    }

    /// [`alloc_aligned`] without the thread's process CPU: the machine's own fast path (which
    /// opens the thread's gate), else booting.
    #[inline(never)]
    fn alloc_no_cpu(size: usize, align: usize, zero: bool) -> *mut u8 {
        match global::ready() {
            Some(m) => route::alloc(m, size, align, zero),
            None => alloc_booting(size, align, zero),
        }
    }

    /// [`alloc_aligned`] with the alignment of C's `malloc` (16, glibc's `MALLOC_ALIGNMENT`):
    /// the size goes to its class in one lookup.
    #[inline(always)]
    pub fn alloc_malloc_aligned(size: usize, zero: bool) -> *mut u8 {
        match global::ready() {
            Some(m) => route::alloc16(m, size, zero),
            None => alloc_booting(size, kmem::kmalloc::KMALLOC_ALIGN, zero),
        }
    }

    /// [`alloc_malloc_aligned`]'s fast path alone (the machine ready, the class's CPU sheaf
    /// not empty): `None` where it would take its slow path (the machine not booted, the
    /// thread's gate closed, no CPU to be had without waiting, an empty sheaf, a size past
    /// the classes), which the caller then takes: [`alloc_malloc_aligned`], out of line (C's
    /// `malloc` sets `errno` there, so its fast path saves no register).
    ///
    /// It starts from the thread's CPU of the process machine, as [`alloc_aligned`] does.
    #[inline(always)]
    pub fn alloc_malloc_fast(size: usize, zero: bool) -> Option<core::ptr::NonNull<u8>> {
        route::alloc16_fast_on(ProcessCpu::fast(), size, zero)
    }

    /// [`alloc_aligned`] before the machine is ready: boot it, or use the bootstrap arena.
    #[cold]
    #[inline(never)]
    fn alloc_booting(size: usize, align: usize, zero: bool) -> *mut u8 {
        match global::machine() {
            Some(m) => route::alloc_slow(m, size.max(1), align, zero),
            None => arena_alloc(size.max(1), align),
        }
    }

    /// `malloc(size)`.
    #[inline]
    pub fn malloc(size: usize) -> *mut u8 {
        alloc_aligned(size, 16, false)
    }

    /// `free(p)`: null is a no-op; bootstrap-arena blocks are never freed. A `p` outside the
    /// machine's RAM that is no live large block (freed already, stack, global, interior,
    /// wild) is reported and ignored ([`crate::misuse`]); one inside the RAM is checked by
    /// the machine's `kfree`.
    ///
    /// # Safety
    ///
    /// `p` must be null or a live block of this allocator, not used afterwards (the checks
    /// above are for programs that break this).
    ///
    /// The fast path (an object of a plain slab onto its CPU's sheaf) makes no call and
    /// counts nothing: a free that went past the sheaf counts towards the thread's next
    /// give-back check ([`global::slow_free_tick`]), the only frees that can have given
    /// pages back to the machine.
    #[inline(always)]
    pub unsafe fn free(p: *mut u8) {
        let cpu = ProcessCpu::fast();
        // SAFETY: caller's contract; the map is the process machine's (the thread's copy of
        // it, empty before the thread took the machine's gate token), the pin is its CPU's
        // (fails while the gate is closed), given to its fast path; the machine is reached
        // only once the map found the block (so the machine exists), and only off the fast
        // path; anything the map does not find as a slab object goes to `free_no_cpu`.
        unsafe {
            Kmem::kfree_mapped_or_then_with(
                || &**cpu.machine_unchecked(),
                &cpu.free_map(),
                p,
                || cpu.try_pin(),
                |p| free_no_cpu(p.cast_mut()),
                global::slow_free_tick,
            )
        }
    }

    /// [`free`] of a block its thread's map did not find (not a plain slab object, or no map
    /// yet): the machine's own fast path (which opens the thread's gate), else
    /// [`free_slow`].
    ///
    /// # Safety
    ///
    /// As [`free`].
    #[inline(never)]
    unsafe fn free_no_cpu(p: *mut u8) {
        if let Some(m) = global::ready() {
            // `kfree_slab_or` checks the direct map itself, so the RAM range is checked only
            // off the fast path: in `free_other`.
            // SAFETY: caller's contract; anything but a slab object goes to `free_other`.
            return unsafe { m.kfree_slab_or_then(p, |p| free_other(m, p), global::slow_free_tick) };
        }
        // SAFETY: caller's contract.
        unsafe { free_slow(p) }
    }

    /// [`free`] of a block allocated with `size` and `align` (what `GlobalAlloc::dealloc`
    /// and C23's `free_sized` know): the request names the kmalloc cache the block should
    /// be in, so the free goes to that cache's CPU sheaf without waiting for the object's
    /// slab and cache to be looked up (`Kmem::kfree_sized_or`, which then checks the block
    /// is that cache's). A block elsewhere (a wrong size, a block realloc kept in place)
    /// is freed as [`free`] frees it.
    ///
    /// # Safety
    ///
    /// As [`free`].
    #[inline(always)]
    pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
        let cpu = ProcessCpu::fast();
        // The request `route::alloc`'s fast path makes (0, which names no cache, for the
        // others: they take `free_no_cpu`, as do blocks of size 0).
        let req = route::fast_request(size, align).unwrap_or(0);
        // SAFETY: caller's contract; the map and the pin are the process machine's, given to
        // its fast path, the machine reached only once the map found the block, as in
        // `free`; anything but an object of the request's cache goes to `free_no_cpu`, which
        // frees whatever it is.
        unsafe {
            Kmem::kfree_sized_mapped_or_then_with(
                || &**cpu.machine_unchecked(),
                &cpu.free_map(),
                p,
                req,
                || cpu.try_pin(),
                |p| free_no_cpu(p.cast_mut()),
                global::slow_free_tick,
            )
        }
    }

    /// [`free`] of anything but a plain slab object: outside the machine's RAM, what
    /// [`free_slow`] takes (null, the arena, huge mappings, wild pointers); in it, a large
    /// block (memory given back after 2 MiB or more), a debug cache's object, or a bad
    /// pointer (reported by `kfree`).
    #[inline(never)]
    fn free_other(m: &kmem_hosted::Machine, p: *const u8) {
        if !route::in_ram(m, p) {
            // Null, the bootstrap arena, a huge mapping or a wild pointer.
            // SAFETY: `free`'s caller's contract.
            return unsafe { free_slow(p.cast_mut()) };
        }
        // SAFETY: `free`'s caller's contract.
        let freed = unsafe { m.kfree_large(p) };
        if freed >= 2 << 20 {
            global::maybe_report(m);
        }
    }

    /// [`free`] before the machine is ready: null and the bootstrap arena, or a block of a
    /// machine that is still booting.
    ///
    /// # Safety
    ///
    /// As [`free`].
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(p: *mut u8) {
        if p.is_null() || in_arena(p) {
            return;
        }
        let Some(m) = global::machine() else { return };
        // SAFETY: caller's contract.
        unsafe { route::free(m, p) };
        global::maybe_report(m);
    }

    /// `realloc`: `copy` is the old size when known (else the old usable size is copied).
    /// A `p` that is no live block is reported as by [`free`]; the result is null and
    /// nothing changes.
    ///
    /// # Safety
    ///
    /// As [`free`]; on success only the returned pointer may be used.
    pub unsafe fn realloc_aligned(p: *mut u8, copy: Option<usize>, new_size: usize, align: usize) -> *mut u8 {
        if in_arena(p) {
            let n = alloc_aligned(new_size, align, false);
            if !n.is_null() {
                // SAFETY: the arena block holds `arena_size` bytes; the new one `new_size`.
                unsafe {
                    let len = copy.unwrap_or(usize::MAX).min(arena_size(p)).min(new_size);
                    core::ptr::copy_nonoverlapping(p, n, len);
                }
            }
            return n;
        }
        match global::machine() {
            // SAFETY: caller's contract.
            Some(m) => unsafe { route::realloc(m, p, copy, new_size.max(1), align) },
            None => {
                // Booting: only arena blocks exist (handled above) or null.
                alloc_aligned(new_size, align, false)
            }
        }
    }

    /// Usable bytes of a live block (`malloc_usable_size`); 0 for a pointer outside the
    /// machine's RAM that is no live large block (as glibc's, nothing reported).
    ///
    /// # Safety
    ///
    /// `p` must be null or a live block of this allocator.
    pub unsafe fn usable_size(p: *const u8) -> usize {
        if p.is_null() {
            return 0;
        }
        if in_arena(p) {
            // SAFETY: an arena block.
            return unsafe { arena_size(p) };
        }
        match global::machine() {
            // SAFETY: caller's contract.
            Some(m) => unsafe { route::usable_size(m, p) },
            None => 0,
        }
    }

    /// `pthread_atfork` prepare: waits for a boot, growth or round of giving memory back in
    /// progress, takes the huge-mapping cache's lock and stops the machine (every CPU taken
    /// by the forking thread), so the child finds no kmem lock held by a thread that no
    /// longer exists. (The child gets a copy of the heap: the machine's RAM is private
    /// memory, see [`global`].)
    ///
    /// # Safety
    ///
    /// Call [`fork_parent`] or [`fork_child`] right after `fork`, from the same thread,
    /// without allocating in between.
    pub unsafe fn fork_prepare() {
        // Lock order: growth (which waits for a boot in progress), the huge cache, the CPUs.
        global::fork_lock();
        huge::fork_lock();
        if let Some(m) = global::booted() {
            // SAFETY: caller's contract.
            unsafe { m.stop_machine() };
        }
    }

    /// `pthread_atfork` parent handler.
    ///
    /// # Safety
    ///
    /// After [`fork_prepare`].
    pub unsafe fn fork_parent() {
        // SAFETY: after `fork_prepare` in this thread (caller's contract), which stopped the
        // machine if it had booted (nothing can boot it meanwhile: `GROW` is held) and took
        // both locks.
        unsafe {
            if let Some(m) = global::booted() {
                m.restart_machine();
            }
            huge::fork_unlock();
            global::fork_unlock();
        }
    }

    /// `pthread_atfork` child handler.
    ///
    /// # Safety
    ///
    /// After [`fork_prepare`], in the child.
    pub unsafe fn fork_child() {
        // SAFETY: as in `fork_parent`; the child's only thread is the forking one's copy.
        unsafe {
            if let Some(m) = global::booted() {
                m.restart_machine_in_child();
            }
            huge::fork_unlock();
            global::fork_unlock();
        }
    }
}
