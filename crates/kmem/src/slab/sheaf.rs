//! Sheaves (Linux 6.18, `mm/slub.c`): per-CPU arrays of free objects in front of the slabs,
//! and each node's barn of full and empty sheaves.
//!
//! - A [`Sheaf`] holds up to `capacity` object addresses (a stack). Sheaves are objects of
//!   the internal cache `kmem_sheaf`, which has no sheaves of its own: a header and the
//!   slots after it, as many as the machine's [`SlabBootConfig::sheaf_max`](super::SlabBootConfig::sheaf_max)
//!   (128 by default; kmem-alloc's process machine: 256), whatever the cache's capacity.
//! - Each CPU has, per cache, a [`CpuSheaves`]: a `main` sheaf that allocations pop from and
//!   frees push to, and a `spare` (Linux's `pcs->main`/`pcs->spare`). Only the CPU touches
//!   them, inside [`Platform::pin_cpu`](crate::Platform::pin_cpu) (or as that CPU, through
//!   `run_on_cpu`): no lock, no atomic read-modify-write.
//! - Each node has a [`Barn`]: full and empty sheaves under a spinlock, up to
//!   [`barn_sheaves`] of each (4096 objects, at least [`MAX_FULL_SHEAVES`] sheaves, at most
//!   4 MiB of objects). A CPU whose main sheaf is empty trades it for a full
//!   one; one whose main sheaf is full trades it for an empty one. So objects freed on one
//!   CPU reach another (producer/consumer) in whole sheaves, and random-order frees never
//!   touch a slab.
//! - Only when the barn cannot help does a CPU refill its sheaf from the node's partial slabs
//!   (`refill_sheaf`) or flush it back to their slabs (`sheaf_flush`), a sheaf at a time
//!   under the node's `list_lock`.
//! - A CPU going offline [`park`]s its sheaves in the barn (Linux flushes them), and a CPU
//!   without sheaves takes one from there ([`take_main`]) before allocating a new one.
//!
//! The fields are atomics because other CPUs read them racily (statistics) and the loom
//! models need them; the owner reads and writes them with plain relaxed loads and stores.

use crate::sync::{const_fn_unless_loom, AtomicU32, AtomicUsize, Ordering, RawSpinLock, SpinGuard};

pub(crate) use super::cpu_sheaves::CpuSheaves;

/// Most objects a sheaf holds by default ([`SlabBootConfig::sheaf_max`](super::SlabBootConfig::sheaf_max)):
/// a `kmem_sheaf` object is a sheaf's 16-byte header and this many slots (1040 bytes).
pub const SHEAF_MAX_DEFAULT: u32 = 128;
/// Most objects a machine's sheaves may hold ([`SlabBootConfig::sheaf_max`](super::SlabBootConfig::sheaf_max)
/// is clamped to it): 8 KiB of slots a sheaf.
pub const SHEAF_MAX_CEILING: u32 = 1024;
/// Fewest full sheaves a barn keeps (Linux's `MAX_FULL_SHEAVES` is 10); caches of small
/// objects keep more (see [`barn_sheaves`]).
pub(crate) const MAX_FULL_SHEAVES: u32 = 40;
/// Fewest empty sheaves a barn keeps (Linux's `MAX_EMPTY_SHEAVES` is 10).
pub(crate) const MAX_EMPTY_SHEAVES: u32 = 40;
/// Fewest sheaves a barn keeps whatever their bytes (Linux's `MAX_FULL_SHEAVES`).
pub(crate) const MIN_BARN_SHEAVES: u32 = 10;
/// Objects a barn's full sheaves may hold: a node's share of the bursts of frees of every
/// thread. threadtest's threads each free 1000 blocks of 8-1000 bytes at once, about 490 of
/// them into the 1 KiB bucket: 4096 objects hold eight threads' bursts there. Counted in
/// objects, not bytes, so that the small-object caches, whose bursts are as many objects but
/// which one thread can fill with hundreds of thousands, keep only [`MAX_FULL_SHEAVES`].
pub(crate) const BARN_OBJECTS: u32 = 4096;
/// Bytes of objects a barn may keep in full sheaves at most (the machine's RAM bounds it too:
/// [`barn_bytes`]).
pub(crate) const BARN_BYTES_MAX: usize = 4 << 20;

/// Bytes of objects a sheaf aims to hold by default ([`SlabBootConfig::sheaf_bytes`](super::SlabBootConfig::sheaf_bytes)).
pub const SHEAF_BYTES_DEFAULT: u32 = 16 << 10;

/// The sheaf capacity kmem gives a cache of `size`-byte slots: about 16 KiB of objects,
/// between 32 and [`SHEAF_MAX_DEFAULT`] (Linux leaves sheaves to caches that ask, with
/// capacities like 32; kmem gives every cache without debugging one, and bursts of frees from
/// many threads, as a process allocator sees, overflow small sheaves: each overflow is a trade
/// at the barn, under its lock, which every CPU of the node shares).
#[cfg(test)]
pub(crate) const fn sheaf_capacity(size: u32) -> u32 {
    sheaf_capacity_for(size, SHEAF_BYTES_DEFAULT, SHEAF_MAX_DEFAULT)
}

/// [`sheaf_capacity`] for sheaves of about `bytes` of objects and at most `max` objects (the
/// machine's [`SlabBootConfig::sheaf_max`](super::SlabBootConfig::sheaf_max)).
pub(crate) const fn sheaf_capacity_for(size: u32, bytes: u32, max: u32) -> u32 {
    let c = bytes / if size == 0 { 1 } else { size };
    let c = if c < 32 { 32 } else { c };
    if c > max {
        max
    } else {
        c
    }
}

/// The bytes of objects a barn may keep in full sheaves on a machine of `totalram` bytes:
/// [`BARN_BYTES_MAX`], or a 32nd of the RAM on small machines (so that freed objects parked
/// in barns cannot starve a small machine's page allocator).
pub(crate) const fn barn_bytes(totalram: usize) -> usize {
    let b = totalram / 32;
    if b > BARN_BYTES_MAX {
        BARN_BYTES_MAX
    } else {
        b
    }
}

/// How many full (and empty) sheaves a barn of a cache with `capacity`-object sheaves of
/// `size`-byte slots keeps: [`BARN_OBJECTS`] objects but at least [`MAX_FULL_SHEAVES`]
/// sheaves, and `bytes` of objects but at least [`MIN_BARN_SHEAVES`] sheaves. A burst of
/// frees larger than that flushes sheaves to the slabs under the node's `list_lock`, and the
/// next burst of allocations refills them from there.
pub(crate) const fn barn_sheaves(capacity: u32, size: u32, bytes: usize) -> u32 {
    const fn max(a: usize, b: usize) -> usize {
        if a > b {
            a
        } else {
            b
        }
    }
    if capacity == 0 {
        return MAX_FULL_SHEAVES;
    }
    let by_objects = max((BARN_OBJECTS / capacity) as usize, MAX_FULL_SHEAVES as usize);
    let sheaf_bytes = capacity as usize * if size == 0 { 1 } else { size as usize };
    let by_bytes = max(bytes / sheaf_bytes, MIN_BARN_SHEAVES as usize);
    (if by_objects < by_bytes { by_objects } else { by_bytes }) as u32
}

/// A sheaf (`struct slab_sheaf`): a stack of free objects of one cache.
///
/// The struct is the sheaf's header; its slots (one `AtomicUsize` each, `capacity` of them)
/// follow it in the same `kmem_sheaf` object ([`Sheaf::bytes_for`]), as Linux's
/// `objects[]` flexible array member follows `struct slab_sheaf`: a machine sizes its
/// sheaves at boot ([`SlabBootConfig::sheaf_max`](super::SlabBootConfig::sheaf_max)), so a
/// kernel's sheaves stay small and a process allocator's hold 256 objects. The slots are
/// reached by address (machine memory, whose addresses kmem exposes as it carves it), never
/// through a reference to the header, which covers only the header.
///
/// The count every fast allocation and free loads and stores sits at offset 8, not 0:
/// sheaves are cache-line aligned `kmem_sheaf` objects (16-byte aligned whatever the cache's
/// flags: the struct says so), the first of each `kmem_sheaf` slab starts a page, and the
/// first object of every slab keeps its free word there (its tag, written by each free).
/// A load of the count after a store to an address with the same low 12 bits waits as if the
/// two overlapped (4 KiB aliasing): with the count at offset 0, the hot pair of a CPU whose
/// main sheaf started a page and whose hot block started a slab ran 14.4 ns instead of 12.4
/// (Rust `pair/16` and `pair/64`, measured). At offset 8 (and the capacity, which frees
/// read, at 12) they share their low bits only with the free words of 8-byte objects.
#[repr(C, align(16))]
#[derive(Debug)]
pub(crate) struct Sheaf {
    /// Link in a barn list (address of the next sheaf, 0 at the end).
    pub(super) next: AtomicUsize,
    /// Objects held.
    size: AtomicU32,
    /// Objects it may hold (the cache's capacity): the slots that follow the header.
    capacity: u32,
}

/// Bytes from a sheaf's address to its first slot.
const SLOTS_OFFSET: usize = core::mem::size_of::<Sheaf>();
const _: () = assert!(SLOTS_OFFSET % core::mem::align_of::<AtomicUsize>() == 0);

/// The sheaf every empty fast-table entry names (`fast_table.rs`): no objects and no room
/// (and no slots), so that the fast paths' pop and push fail on it as on an empty or full
/// sheaf, with no test of the entry itself. Never written: a pop needs an object, a push room.
#[cfg(not(loom))]
static EMPTY_SHEAF: Sheaf = Sheaf::header(0);

/// The address of the empty sheaf ([`EMPTY_SHEAF`]). Under loom (whose atomics cannot be
/// built in a static) a dangling address: the models store and compare entries but run no
/// fast path, the only code that follows one.
#[inline(always)]
pub(crate) fn empty_sheaf() -> usize {
    #[cfg(not(loom))]
    {
        &EMPTY_SHEAF as *const Sheaf as usize
    }
    #[cfg(loom)]
    {
        core::ptr::NonNull::<Sheaf>::dangling().as_ptr() as usize
    }
}

impl Sheaf {
    const_fn_unless_loom! {
        /// The header of an empty sheaf of `capacity` objects.
        fn header(capacity: u32) -> Self {
            Self { next: AtomicUsize::new(0), size: AtomicU32::new(0), capacity }
        }
    }
    /// Bytes of a sheaf of `capacity` objects: the header and its slots (the `kmem_sheaf`
    /// object size of a machine whose sheaves hold at most `capacity`).
    pub(crate) const fn bytes_for(capacity: u32) -> usize {
        SLOTS_OFFSET + capacity as usize * core::mem::size_of::<AtomicUsize>()
    }
    /// Makes the memory at `addr` an empty sheaf of `capacity` objects and returns it.
    ///
    /// # Safety
    ///
    /// `addr` is [`Sheaf`]-aligned, with [`Sheaf::bytes_for`]`(capacity)` bytes of memory the
    /// caller owns (exposed: reached by address), which stay valid and unused by anything
    /// else while the sheaf lives.
    pub(crate) unsafe fn init<'a>(addr: usize, capacity: u32) -> &'a Sheaf {
        let p = addr as *mut Sheaf;
        // SAFETY: the caller gives us the memory, aligned and large enough.
        unsafe { p.write(Sheaf::header(capacity)) };
        // Under loom a slot is an object with state of its own: build each. (Elsewhere an
        // `AtomicUsize` is a word, valid whatever it holds, and a slot is written before
        // it is read.)
        #[cfg(loom)]
        for i in 0..capacity as usize {
            // SAFETY: slot `i` is in the caller's memory (`bytes_for`), aligned (the
            // header's size is a multiple of the slot's alignment).
            unsafe { ((addr + SLOTS_OFFSET) as *mut AtomicUsize).add(i).write(AtomicUsize::new(0)) };
        }
        // SAFETY: just written; the caller's memory lives as long as the sheaf.
        unsafe { &*p }
    }
    /// Objects held.
    #[inline(always)]
    pub(crate) fn size(&self) -> u32 {
        self.size.load(Ordering::Relaxed)
    }
    /// Capacity.
    #[inline(always)]
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }
    /// The address of slot `i` (a pointer made from the sheaf's address, so that it reaches
    /// the slots after the header: a pointer derived from `&self` would cover the header
    /// alone).
    #[inline(always)]
    fn slot_ptr(&self, i: usize) -> *const AtomicUsize {
        (self as *const Sheaf as usize + SLOTS_OFFSET + i * core::mem::size_of::<AtomicUsize>()) as *const AtomicUsize
    }
    /// Slot `i`, unchecked.
    ///
    /// # Safety
    ///
    /// `i` is below the capacity.
    #[inline(always)]
    unsafe fn slot(&self, i: usize) -> &AtomicUsize {
        // SAFETY: the sheaf's memory holds `capacity` slots after the header (`init`'s
        // contract), and `i` is below it (the caller's); the memory is reached by address.
        unsafe { &*self.slot_ptr(i) }
    }
    /// Pops an object, if any (owner only).
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<usize> {
        let n = self.size().checked_sub(1)?;
        debug_assert!(n < self.capacity);
        // SAFETY: `n` is below the size, which `push` and `push_many` (its only writers but
        // `pop` and `clear`, which lower it) keep at most the capacity.
        let obj = unsafe { self.slot(n as usize) }.load(Ordering::Relaxed);
        self.size.store(n, Ordering::Relaxed);
        Some(obj)
    }
    /// Pushes an object if there is room (owner only).
    #[inline(always)]
    pub(crate) fn push(&self, obj: usize) -> bool {
        let n = self.size();
        if n >= self.capacity {
            return false;
        }
        // SAFETY: `n` is below the capacity.
        unsafe { self.slot(n as usize) }.store(obj, Ordering::Relaxed);
        self.size.store(n + 1, Ordering::Relaxed);
        true
    }
    /// Pushes `f(0)`, `f(1)`, ... for as many objects as there is room for, at most `k`, with
    /// one update of the size (owner only). Returns how many were pushed.
    #[inline]
    pub(crate) fn push_many(&self, k: u32, f: impl FnMut(u32) -> usize) -> u32 {
        let n = self.size();
        let k = k.min(self.capacity.saturating_sub(n));
        for (slot, o) in self.slots(n as usize, (n + k) as usize).iter().zip((0..k).map(f)) {
            slot.store(o, Ordering::Relaxed);
        }
        self.size.store(n + k, Ordering::Relaxed);
        k
    }
    /// Reverses the order of the objects from position `start` on (owner only): a refill
    /// pushes a slab's freelist in chain order, and the chain's head should be popped first
    /// (the most recently freed object, the likeliest to be cache-hot).
    pub(crate) fn reverse_from(&self, start: u32) {
        let s = self.slots(0, self.size() as usize);
        let (mut i, mut j) = (start as usize, s.len());
        while i + 1 < j {
            j -= 1;
            let a = s[i].load(Ordering::Relaxed);
            s[i].store(s[j].load(Ordering::Relaxed), Ordering::Relaxed);
            s[j].store(a, Ordering::Relaxed);
            i += 1;
        }
    }
    /// The objects held, oldest first.
    #[cfg(test)]
    pub(crate) fn objects(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots(0, self.size() as usize).iter().map(|o| o.load(Ordering::Relaxed))
    }
    /// The slots of positions `from..to` (`from <= to <=` the capacity; owner only).
    #[inline(always)]
    pub(crate) fn slots(&self, from: usize, to: usize) -> &[AtomicUsize] {
        assert!(from <= to && to <= self.capacity as usize, "slots {from}..{to} of a sheaf of {}", self.capacity);
        if from == to {
            return &[];
        }
        // SAFETY: `from` and `to` are within the capacity (tested): the slots exist.
        unsafe { core::slice::from_raw_parts(self.slot_ptr(from), to - from) }
    }
    /// The object at position `i` (below [`Sheaf::size`]; owner only).
    #[inline]
    pub(crate) fn object(&self, i: usize) -> usize {
        assert!(i < self.capacity as usize, "slot {i} of a sheaf of {}", self.capacity);
        // SAFETY: tested just above.
        unsafe { self.slot(i) }.load(Ordering::Relaxed)
    }
    /// Forgets every object (they were given back elsewhere).
    pub(crate) fn clear(&self) {
        self.size.store(0, Ordering::Relaxed);
    }
}

/// A sheaf in memory of its own, for tests and loom models (the machine's sheaves are
/// `kmem_sheaf` objects).
#[cfg(test)]
pub(crate) struct OwnedSheaf {
    buf: crate::testing::std::vec::Vec<u128>,
}

#[cfg(test)]
impl OwnedSheaf {
    /// An empty sheaf of `capacity` objects.
    pub(crate) fn new(capacity: u32) -> Self {
        let words = Sheaf::bytes_for(capacity).div_ceil(16);
        let mut buf = crate::testing::std::vec![0u128; words];
        // SAFETY: `buf` is 16-byte aligned (`u128`), `bytes_for(capacity)` long, ours, and
        // lives (its heap block unmoved) as long as `self`; its address is exposed here.
        unsafe { Sheaf::init(buf.as_mut_ptr() as usize, capacity) };
        Self { buf }
    }
    /// The sheaf's address.
    pub(crate) fn addr(&self) -> usize {
        self.buf.as_ptr() as usize
    }
}

#[cfg(test)]
impl core::ops::Deref for OwnedSheaf {
    type Target = Sheaf;
    fn deref(&self) -> &Sheaf {
        // SAFETY: initialised by `new`, alive with `self`.
        unsafe { &*(self.addr() as *const Sheaf) }
    }
}

/// A node's store of sheaves (`struct node_barn`).
#[derive(Debug)]
pub(crate) struct Barn {
    lock: RawSpinLock,
    full: AtomicUsize,
    nr_full: AtomicU32,
    empty: AtomicUsize,
    nr_empty: AtomicU32,
    /// Most sheaves each list keeps ([`barn_sheaves`]; set once at cache creation).
    max: AtomicU32,
}

impl Barn {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                lock: RawSpinLock::new(),
                full: AtomicUsize::new(0),
                nr_full: AtomicU32::new(0),
                empty: AtomicUsize::new(0),
                nr_empty: AtomicU32::new(0),
                max: AtomicU32::new(MAX_FULL_SHEAVES),
            }
        }
    }
    /// Full sheaves kept (racy).
    pub(crate) fn nr_full(&self) -> u32 {
        self.nr_full.load(Ordering::Relaxed)
    }
    /// Empty sheaves kept (racy).
    pub(crate) fn nr_empty(&self) -> u32 {
        self.nr_empty.load(Ordering::Relaxed)
    }
    /// Sets how many full (and empty) sheaves the barn keeps (cache creation, before any
    /// CPU uses the cache).
    pub(crate) fn set_max(&self, n: u32) {
        self.max.store(n.max(MAX_FULL_SHEAVES.min(MAX_EMPTY_SHEAVES)), Ordering::Relaxed);
    }
    /// How many full (and empty) sheaves the barn keeps.
    pub(crate) fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }
    /// The barn's lock (taken with the caller's CPU pinned or interrupts off).
    pub(crate) fn lock(&self) -> &RawSpinLock {
        &self.lock
    }

    fn list(&self, full: bool) -> (&AtomicUsize, &AtomicU32) {
        if full {
            (&self.full, &self.nr_full)
        } else {
            (&self.empty, &self.nr_empty)
        }
    }
    /// Takes a full (or empty) sheaf; `g` holds the barn's lock.
    pub(crate) fn take_locked<P: crate::Platform>(&self, g: &SpinGuard<'_, P>, full: bool) -> usize {
        debug_assert!(g.holds(&self.lock));
        let (head, nr) = self.list(full);
        let p = head.load(Ordering::Relaxed);
        if p != 0 {
            // SAFETY: barn lists hold live sheaves owned by the barn (lock held).
            let s = unsafe { &*(p as *const Sheaf) };
            head.store(s.next.load(Ordering::Relaxed), Ordering::Relaxed);
            nr.store(nr.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        }
        p
    }
    /// Puts a full (or empty) sheaf in, if the list has room; `g` holds the barn's lock.
    pub(crate) fn put_locked<P: crate::Platform>(&self, g: &SpinGuard<'_, P>, sheaf: usize, full: bool) -> bool {
        debug_assert!(g.holds(&self.lock));
        let (head, nr) = self.list(full);
        let max = self.max();
        let n = nr.load(Ordering::Relaxed);
        if n >= max {
            return false;
        }
        // SAFETY: the caller gives us a live sheaf it owned.
        let s = unsafe { &*(sheaf as *const Sheaf) };
        s.next.store(head.load(Ordering::Relaxed), Ordering::Relaxed);
        head.store(sheaf, Ordering::Relaxed);
        nr.store(n + 1, Ordering::Relaxed);
        true
    }
    /// Objects in the full sheaves; `g` holds the barn's lock.
    pub(crate) fn objects_locked<P: crate::Platform>(&self, g: &SpinGuard<'_, P>) -> usize {
        debug_assert!(g.holds(&self.lock));
        let mut n = 0;
        let mut p = self.full.load(Ordering::Relaxed);
        while p != 0 {
            // SAFETY: as in `take_locked`.
            let s = unsafe { &*(p as *const Sheaf) };
            n += s.size() as usize;
            p = s.next.load(Ordering::Relaxed);
        }
        n
    }
}

/// `barn_replace_empty_sheaf()` for an allocation whose main sheaf is empty (the caller's CPU
/// pinned): a full sheaf from the barn becomes the main one, the empty main goes to the barn's
/// empty list. Returns whether a full sheaf was had, and an empty sheaf the barn had no room
/// for (0: none), which the caller frees once unpinned.
pub(crate) fn trade_for_full<P: crate::Platform>(pcs: &CpuSheaves, barn: &Barn, p: &P) -> (bool, usize) {
    let g = barn.lock().lock_irqsave(p);
    let full = barn.take_locked(&g, true);
    let mut retired = 0;
    if full != 0 {
        let empty = pcs.set_main(full);
        if !barn.put_locked(&g, empty, false) {
            retired = empty;
        }
    }
    drop(g);
    (full != 0, retired)
}

/// `barn_replace_full_sheaf()` for a free whose main sheaf is full (the caller's CPU pinned):
/// the full main goes to the barn if it has room, and an empty sheaf from the barn (or none:
/// 0) becomes the main one. False, with nothing changed, if the barn is full.
pub(crate) fn trade_for_empty<P: crate::Platform>(pcs: &CpuSheaves, barn: &Barn, p: &P) -> bool {
    let g = barn.lock().lock_irqsave(p);
    let main = pcs.set_main(0);
    if !barn.put_locked(&g, main, true) {
        pcs.set_main(main);
        return false;
    }
    pcs.set_main(barn.take_locked(&g, false));
    drop(g);
    true
}

/// `barn_get_full_or_empty_sheaf()` for a CPU that has no main sheaf (its first use of the
/// cache since it came online; the caller's CPU pinned): a sheaf from the barn becomes the
/// main one, a full one for an allocation (`full`), an empty one for a free. False, with
/// nothing changed, if the CPU has a main sheaf or the barn has none of the kind.
pub(crate) fn take_main<P: crate::Platform>(pcs: &CpuSheaves, barn: &Barn, p: &P, full: bool) -> bool {
    if pcs.main().is_some() || (if full { barn.nr_full() } else { barn.nr_empty() }) == 0 {
        return false;
    }
    let g = barn.lock().lock_irqsave(p);
    let sheaf = barn.take_locked(&g, full);
    drop(g);
    if sheaf != 0 {
        pcs.set_main(sheaf);
    }
    sheaf != 0
}

/// A sheaf leaving a CPU that goes offline (the caller runs as that CPU, pinned, and has
/// unlinked the sheaf from it): into the barn, with its objects (in the full list, which
/// allocations take from, even when not full) or empty, if the barn has room. False if it
/// has none: the caller flushes and frees the sheaf.
pub(crate) fn park<P: crate::Platform>(barn: &Barn, p: &P, sheaf: usize) -> bool {
    // SAFETY: the caller's sheaf, live until it is freed or handed over here.
    let full = unsafe { &*(sheaf as *const Sheaf) }.size() > 0;
    let g = barn.lock().lock_irqsave(p);
    let ok = barn.put_locked(&g, sheaf, full);
    drop(g);
    ok
}

/// Slab events counted per CPU (Linux's `CONFIG_SLUB_STATS` items of the sheaf slow paths;
/// the fast paths count nothing, as Linux without `CONFIG_SLUB_STATS`), written by the CPU's
/// owner only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum SlubStat {
    /// `ALLOC_SLOWPATH`: allocations that found the main sheaf empty.
    AllocSlowpath,
    /// `FREE_SLOWPATH`: frees that found the main sheaf full (or bypassed it).
    FreeSlowpath,
    /// `ALLOC_FROM_PARTIAL`: a sheaf refilled from a node's partial slabs.
    AllocFromPartial,
    /// `ALLOC_SLAB`: a new slab from the page allocator.
    AllocSlab,
    /// `ORDER_FALLBACK`: a new slab had to use the minimum order.
    OrderFallback,
    /// `SHEAF_FLUSH`: a sheaf's objects went back to their slabs.
    SheafFlush,
    /// `SHEAF_REFILL`: a sheaf was refilled from slabs.
    SheafRefill,
    /// `SHEAF_ALLOC`: a new sheaf was allocated.
    SheafAlloc,
    /// `BARN_GET`: a full (alloc) or empty (free) sheaf came from the barn.
    BarnGet,
    /// `BARN_GET_FAIL`: the barn had none.
    BarnGetFail,
    /// `BARN_PUT`: a sheaf went to the barn.
    BarnPut,
    /// `BARN_PUT_FAIL`: the barn was full.
    BarnPutFail,
    /// `CPUSLAB_FLUSH`: a CPU's sheaves were flushed (shrink, destroy, validate, offline).
    CpuslabFlush,
}

impl SlubStat {
    /// Number of counters.
    pub const COUNT: usize = 13;
    /// Every counter with its Linux name, in order.
    pub const ALL: [(SlubStat, &'static str); Self::COUNT] = [
        (SlubStat::AllocSlowpath, "alloc_slowpath"),
        (SlubStat::FreeSlowpath, "free_slowpath"),
        (SlubStat::AllocFromPartial, "alloc_from_partial"),
        (SlubStat::AllocSlab, "alloc_slab"),
        (SlubStat::OrderFallback, "order_fallback"),
        (SlubStat::SheafFlush, "sheaf_flush"),
        (SlubStat::SheafRefill, "sheaf_refill"),
        (SlubStat::SheafAlloc, "sheaf_alloc"),
        (SlubStat::BarnGet, "barn_get"),
        (SlubStat::BarnGetFail, "barn_get_fail"),
        (SlubStat::BarnPut, "barn_put"),
        (SlubStat::BarnPutFail, "barn_put_fail"),
        (SlubStat::CpuslabFlush, "cpuslab_flush"),
    ];
}

// Two cache lines per CPU and cache (the percpu tests count on it).

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(test)]
mod tests;
