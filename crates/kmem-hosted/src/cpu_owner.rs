//! One CPU owned by one thread (`MachineBuilder::thread_cpus`): the protocol that lets the
//! owner run per-CPU sections with plain loads and stores, while any other thread can still
//! stop the CPU to work on its per-CPU data (a remote drain or flush, `fork`, a thread that
//! found no CPU of its own).
//!
//! The owner has two words a stopper reads: `depth`, its careful sections' nesting count
//! (`preempt_disable`, `local_irq_save`, `pin_cpu`), and `fast`, 1 while a fast path's section
//! runs (`try_pin_cpu`: the allocation and free fast paths). An outermost careful section
//! stores `depth = 1` (nested ones increment it), then (after a compiler fence) loads
//! `stop`; a fast section stores `fast = 1`, then loads `stop`. A careful section under way,
//! the fast path's own thread's, makes it decline: the thread's context says so without a
//! look at `depth` (its fast gate, closed by every outermost careful entry and opened again
//! by a fast path that finds `depth == 0`: `cpus/ctx.rs`). A stopper stores
//! `stop = 1`, then runs a process-wide memory barrier
//! (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every running thread execute a
//! full fence) and waits for `depth == 0` and `fast == 0`. This is Dekker's mutual exclusion
//! with the fence moved to the rare side (the asymmetric fences of user-space RCU): either
//! the owner's load sees `stop` and it backs off until the stopper is done, or the stopper's
//! wait sees the owner's word and waits for its section to end. Nothing on the owner's side
//! is a locked instruction.
//!
//! Why two words: with one, the fast path had to read the depth before storing it (a
//! section already under way, of its own thread, must not be overwritten): a load, a test
//! and a branch more on every fast section than storing its own word and reading the other
//! with `stop`. A fast section nests in nothing and nothing of the same kind nests in it
//! (the fast paths make no calls); careful sections may nest inside one (a `this_cpu`
//! counter under a fast pin), and then take no part in the handshake (the fast word keeps
//! the stopper out). The hosted NMI (`kmalloc_nolock` from a signal handler) checks both
//! words before it enters, so it never takes a CPU whose section it interrupted.
//!
//! Ordering of the per-CPU data: the owner's section writes happen-before its `depth = 0` or
//! `fast = 0` release store, which the stopper's acquire load reads; the stopper's writes
//! happen-before its `stop = 0` release store, which the owner's next outermost section reads
//! with acquire.
//!
//! The loom models (`cpu_owner/loom_tests.rs`, `scripts/loom.sh`) check the protocol, with
//! both barriers modelled as sequentially consistent fences (what the asymmetric pair
//! guarantees together).

#[cfg(not(loom))]
use std::{
    sync::atomic::{compiler_fence, AtomicI32, AtomicU32, Ordering},
    thread::yield_now,
};

#[cfg(loom)]
use loom::{
    sync::atomic::{fence, AtomicI32, AtomicU32, Ordering},
    thread::yield_now,
};

/// A CPU nobody owns.
pub(crate) const FREE: u32 = 0;

/// One owned CPU. A cache line each: the owner writes `fast` or `depth` on every section.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct OwnedCpu {
    /// 1 while a fast section ([`OwnedCpu::try_enter`]) runs. Written only by the owner (a
    /// stopper never writes it). First, and the CPU's number next, as in a shared CPU's slot:
    /// a fast pin's token is either (`cpu_slot::leave_outermost`, `cpu_slot::pinned_cpu`).
    fast: AtomicU32,
    /// The CPU's number (never changes).
    cpu: u32,
    /// The owner's careful sections' depth. Written only by the owner. At [`DEPTH_OFFSET`],
    /// the CPU's number again after it: a careful pin's token (`cpu_slot::leave`).
    depth: AtomicU32,
    /// The CPU's number (a copy, for a careful pin's token).
    depth_cpu: u32,
    /// 1 while a stopper holds the CPU.
    stop: AtomicU32,
    /// Serialises stoppers: 0 free, 1 held.
    stopper: AtomicU32,
    /// Thread number of the owner, [`FREE`] if none.
    owner: AtomicU32,
    /// The owner's OS thread id (to tell whether it still lives).
    tid: AtomicI32,
    /// 1 while the CPU is free but keeps its per-CPU caches (given back without the offline
    /// teardown, for the next thread).
    warm: AtomicU32,
    /// The CPU's area word (`Platform::set_cpu_area`), at `cpu_slot::AREA_OFFSET` from a fast
    /// pin's token: written once at boot, read by the fast paths on the line their pin
    /// writes anyway.
    pub(crate) area: std::sync::atomic::AtomicUsize,
}

/// The owner's half of the fence pair: keeps the compiler from moving the load of `stop`
/// above the store of `depth` (the stopper's `membarrier` orders them on the hardware).
#[inline(always)]
fn light_barrier() {
    #[cfg(not(loom))]
    compiler_fence(Ordering::SeqCst);
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// Marks the path that calls it as rare (stable Rust's `cold_path`: the call, inlined,
/// leaves the branch weights behind).
#[cold]
#[inline(always)]
fn unlikely() {}

/// The stopper's half: a full fence on every running thread of the process.
fn heavy_barrier() {
    #[cfg(not(loom))]
    {
        // Registered by `membarrier_available` before any CPU could be owned; if the call
        // failed now the protocol would be broken, so that is fatal.
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited)
            .expect("membarrier(PRIVATE_EXPEDITED) failed after registration");
    }
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// Whether this process can use owned CPUs: registers for
/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED` (once; later calls are cheap).
///
/// Registering when the machine is built (for the process's allocator: at its first
/// allocation), not at the first stop, is deliberate. It is cheap then: measured 0.3-2 us, the
/// test barrier 0.2 us, of a ~0.5 ms start-up, because a process that boots its allocator is
/// nearly always single-threaded, and the kernel registers a single-user mm with a store and
/// a barrier. Registering lazily, at the first stop, would be correct (the owners' side never
/// depends on it: only the stopper's barrier does, and it would come after the registration
/// returned), but it would happen in a multi-threaded process, where the kernel's
/// `sync_runqueues_membarrier_state` runs `synchronize_rcu()` and IPIs every CPU running the
/// process: milliseconds in the middle of a `fork` or a thread exit. And a host that refuses
/// the call (seccomp) must be known before any CPU is handed out, to choose shared CPUs.
#[cfg(not(loom))]
pub(crate) fn membarrier_available() -> bool {
    use std::sync::atomic::AtomicU8;
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = rustix::thread::membarrier(rustix::thread::MembarrierCommand::RegisterPrivateExpedited).is_ok()
                && rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited).is_ok();
            STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// Under loom (models only) the barriers are fences.
#[cfg(loom)]
pub(crate) fn membarrier_available() -> bool {
    true
}

// (Loom's atomics are larger: under the models, which never pin through a token, the
// layout differs.)
#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::offset_of!(OwnedCpu, fast) == crate::cpu_slot::WORD_OFFSET);
    assert!(core::mem::offset_of!(OwnedCpu, cpu) == crate::cpu_slot::CPU_OFFSET);
    assert!(core::mem::offset_of!(OwnedCpu, depth) == DEPTH_OFFSET + crate::cpu_slot::WORD_OFFSET);
    assert!(core::mem::offset_of!(OwnedCpu, depth_cpu) == DEPTH_OFFSET + crate::cpu_slot::CPU_OFFSET);
    assert!(core::mem::offset_of!(OwnedCpu, area) == crate::cpu_slot::AREA_OFFSET);
};

/// Where the depth word is, from the CPU's address: a careful pin's token is the CPU's
/// address plus this (a fast pin's is the CPU's address: the fast paths add nothing).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const DEPTH_OFFSET: usize = 8;

/// A CPU that no thread owns and that is stopped for good (`stop = 1`): what the process
/// allocator's fast paths find through a thread's closed fast gate (`Ctx::own_proc`), so that
/// the stop test they make anyway sends them to their slow paths, with no test of the gate
/// of its own. Its `fast` word is written (1, then 0 again) by every fast path that finds
/// it: only on the way to a slow path. Each thread has one in its context (`Ctx::closed`),
/// which its gate closes to, so that threads refilling or flushing their caches at once
/// write no shared line; [`CLOSED`], one for all, is a thread's gate before its first
/// allocation (a thread-local's address is no constant). Not under loom (its atomics are not
/// `const`; the models never take the process allocator's fast paths).
#[cfg(not(loom))]
pub(crate) const fn stopped_cpu() -> OwnedCpu {
    OwnedCpu {
        fast: AtomicU32::new(0),
        cpu: 0,
        depth: AtomicU32::new(0),
        depth_cpu: 0,
        stop: AtomicU32::new(1),
        stopper: AtomicU32::new(1),
        owner: AtomicU32::new(FREE),
        tid: AtomicI32::new(0),
        warm: AtomicU32::new(0),
        area: std::sync::atomic::AtomicUsize::new(0),
    }
}

/// The [`stopped_cpu`] of threads that have not allocated yet (written once by each thread,
/// at its first fast path).
#[cfg(not(loom))]
pub(crate) static CLOSED: OwnedCpu = stopped_cpu();

/// [`CLOSED`]'s address (null under loom).
#[inline(always)]
pub(crate) const fn closed() -> *const OwnedCpu {
    #[cfg(not(loom))]
    {
        &raw const CLOSED
    }
    #[cfg(loom)]
    {
        core::ptr::null()
    }
}

impl OwnedCpu {
    /// CPU `cpu`, free.
    pub(crate) fn new(cpu: u32) -> Self {
        Self { cpu, depth_cpu: cpu, ..Self::default() }
    }

    /// A fast pin's token: the address of the fast word, the CPU's own
    /// (`cpu_slot::leave_outermost` ends the pin through it, `cpu_slot::pinned_cpu` reads
    /// the CPU's number after it).
    #[cfg_attr(loom, allow(dead_code))]
    #[inline(always)]
    pub(crate) fn fast_token(&self) -> usize {
        &self.fast as *const AtomicU32 as usize
    }

    /// A careful pin's token: the address of the depth word (`cpu_slot::leave` ends the pin
    /// through it, `cpu_slot::pinned_cpu` reads the CPU's number after it).
    #[cfg_attr(loom, allow(dead_code))]
    #[inline(always)]
    pub(crate) fn depth_token(&self) -> usize {
        &self.depth as *const AtomicU32 as usize
    }

    /// The owner enters a careful section; `true` if it is the outermost careful one (it
    /// may still run inside a fast section of the owner).
    #[inline(always)]
    pub(crate) fn enter(&self) -> bool {
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d + 1, Ordering::Relaxed);
        if d == 0 {
            light_barrier();
            if self.stop.load(Ordering::Acquire) != 0 {
                self.stopped();
            }
            return true;
        }
        false
    }

    /// An outermost careful section found a stopper: it backs off, unless it runs inside the
    /// owner's own fast section, whose word keeps the stopper waiting (backing off would wait
    /// for a stopper that waits for it). Out of line: the fast word is read only here.
    #[cold]
    #[inline(never)]
    fn stopped(&self) {
        if self.fast.load(Ordering::Relaxed) == 0 {
            self.back_off();
        }
    }

    /// A fast section: gives up instead of waiting, false (and nothing entered) when a
    /// careful section of the owner runs, or a stopper holds the CPU; a section it enters
    /// ends with [`OwnedCpu::exit_outermost`] (through the token,
    /// `cpu_slot::leave_outermost`). A fast path under `local_irq_save` or nested in a
    /// careful section declines, and its caller's careful path nests with
    /// [`OwnedCpu::enter`]. A fast section must not be entered inside another (the fast
    /// paths make no calls; the hosted NMI checks [`OwnedCpu::busy`] first).
    ///
    /// The owner's careful sections are the owner's own business: the allocation fast paths
    /// (`try_pin_cpu`) know there is none from the thread's context ([`OwnedCpu::enter`]'s
    /// callers close the thread's fast gate, `cpus/ctx.rs`) and call
    /// [`OwnedCpu::try_enter_idle`], the handshake with the stoppers alone.
    #[inline(always)]
    pub(crate) fn try_enter(&self) -> bool {
        self.depth.load(Ordering::Relaxed) == 0 && self.try_enter_idle()
    }

    /// [`OwnedCpu::try_enter`] for an owner that knows no careful section of its own runs
    /// (owner only): a stopper alone makes it decline. (No assertion of `depth == 0`: a
    /// signal handler's fast path may run between an outermost careful entry's store of the
    /// depth and its close of the thread's gate, before the section touches anything.)
    ///
    /// It stores a constant: `fast = 1`, and the exit `fast = 0`. Incrementing and
    /// decrementing a word (`incl`, `decl`) made every section's store wait for the previous
    /// section's, through memory: four such links a malloc + free pair, a chain across the
    /// whole loop (measured: 0.4 ns of a 9.9 ns pair, for three more instructions). It reads
    /// nothing before its store, and `stop` after it.
    #[inline(always)]
    pub(crate) fn try_enter_idle(&self) -> bool {
        self.fast.store(1, Ordering::Relaxed);
        light_barrier();
        if self.stop.load(Ordering::Acquire) != 0 {
            // No call (the fast paths make none, so they save no registers); the mark keeps
            // the entered path the straight one (malloc's had a jump more).
            unlikely();
            self.fast.store(0, Ordering::Release);
            return false;
        }
        true
    }

    /// Ends a section [`OwnedCpu::try_enter`] entered: `fast = 0`. (The fast paths do the
    /// same through their token, `cpu_slot::leave_outermost`; the loom models call this.)
    #[cfg_attr(not(all(loom, test)), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn exit_outermost(&self) {
        debug_assert_eq!(self.fast.load(Ordering::Relaxed), 1, "not a fast section");
        self.fast.store(0, Ordering::Release);
    }

    /// A stopper holds the CPU: leave it until the stopper is done, then enter again.
    #[cold]
    #[inline(never)]
    fn back_off(&self) {
        loop {
            self.depth.store(0, Ordering::Release);
            while self.stop.load(Ordering::Acquire) != 0 {
                yield_now();
            }
            self.depth.store(1, Ordering::Relaxed);
            light_barrier();
            if self.stop.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }

    /// The owner leaves a section.
    #[inline(always)]
    pub(crate) fn exit(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        debug_assert!(d > 0, "owned-CPU section exit without enter");
        self.depth.store(d.wrapping_sub(1), Ordering::Release);
    }

    /// Whether no careful section of the owner runs (owner only).
    #[inline]
    pub(crate) fn idle(&self) -> bool {
        self.depth.load(Ordering::Relaxed) == 0
    }

    /// Whether a section of the owner runs, careful or fast (owner only; the hosted NMI asks
    /// before it enters, `cpus/nolock.rs`).
    #[inline]
    pub(crate) fn busy(&self) -> bool {
        self.depth.load(Ordering::Relaxed) | self.fast.load(Ordering::Relaxed) != 0
    }

    /// Stops the CPU: returns once no section of its owner runs and none can start until
    /// [`OwnedCpu::start`]. The caller may then use the CPU's per-CPU data as its own.
    pub(crate) fn stop(&self) {
        self.lock_stopper();
        self.stop.store(1, Ordering::SeqCst);
        heavy_barrier();
        self.wait_quiet();
    }

    /// Ends [`OwnedCpu::stop`].
    pub(crate) fn start(&self) {
        self.stop.store(0, Ordering::Release);
        self.stopper.store(0, Ordering::Release);
    }

    /// [`OwnedCpu::stop`] for many CPUs with one barrier (`stop_machine`).
    pub(crate) fn stop_many(cpus: &[OwnedCpu]) {
        for c in cpus {
            c.lock_stopper();
            c.stop.store(1, Ordering::SeqCst);
        }
        heavy_barrier();
        for c in cpus {
            c.wait_quiet();
        }
    }

    fn lock_stopper(&self) {
        while self.stopper.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            yield_now();
        }
    }

    fn wait_quiet(&self) {
        while self.depth.load(Ordering::Acquire) != 0 || self.fast.load(Ordering::Acquire) != 0 {
            yield_now();
        }
    }

    /// The owner's thread number ([`FREE`] if none).
    #[inline]
    pub(crate) fn owner(&self) -> u32 {
        self.owner.load(Ordering::Acquire)
    }

    /// Claims a free CPU for thread `me` (OS thread id `tid`); false if it has an owner.
    pub(crate) fn claim(&self, me: u32, tid: i32) -> bool {
        // A load first: a scan of a full pool then writes no other thread's line.
        if self.owner.load(Ordering::Relaxed) != FREE
            || self.owner.compare_exchange(FREE, me, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return false;
        }
        self.tid.store(tid, Ordering::Relaxed);
        true
    }

    /// Takes the CPU of a dead owner `old` for `me`; false if someone else did.
    pub(crate) fn claim_from(&self, old: u32, me: u32, tid: i32) -> bool {
        if self.owner.compare_exchange(old, me, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        self.tid.store(tid, Ordering::Relaxed);
        true
    }

    /// The owner's OS thread id.
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }

    /// Whether the CPU is free with warm caches; `take` clears the mark.
    pub(crate) fn warm(&self, take: bool) -> bool {
        if take {
            self.warm.swap(0, Ordering::AcqRel) != 0
        } else {
            self.warm.load(Ordering::Relaxed) != 0
        }
    }

    /// Marks the CPU as keeping its caches while free (before [`OwnedCpu::release`]).
    pub(crate) fn set_warm(&self) {
        self.warm.store(1, Ordering::Relaxed);
    }

    /// Gives the CPU back to the pool (its owner, outside any section; or anyone after a
    /// `fork`, for CPUs whose owners the child does not have).
    pub(crate) fn release(&self) {
        debug_assert!(!self.busy(), "CPU released inside a section");
        self.owner.store(FREE, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
