//! The calling thread's CPU context read from a machine id alone, with no `Cpus` to follow:
//! the fast paths of pinning and the context queries the platform answers on every
//! allocation (one thread-local access each).

use std::sync::atomic::{AtomicPtr, Ordering};

use super::CTX;
use crate::Machine;

/// [`Cpus::pin`]'s fast path, from the machine's id alone (no `Cpus` pointer to follow): the
/// calling thread's own CPU of machine `machine`, entered, if it has one and is not running
/// as another CPU of it.
#[inline(always)]
pub(crate) fn pin_owned(machine: usize) -> Option<(u32, usize)> {
    CTX.with(|c| {
        if c.own_machine.get() != machine {
            return None;
        }
        let st = c.own_state.get();
        // SAFETY: `own_state` points into the CPUs of machine `own_machine`, which the caller's
        // platform (machine `machine`) keeps alive.
        let st = unsafe { &*st };
        c.enter_owned(st);
        Some((c.own_cpu.get(), st.depth_token()))
    })
}

/// `try_pin_cpu`: [`pin_owned`] without the wait, and the shared CPUs' fast pin. Makes no
/// call and never waits: `None` (the caller's slow path then pins with [`Cpus::pin`]) when a
/// stopper holds the owned CPU, or on a shared machine when the thread has no fast home on
/// it (a first use, a migrating machine), holds a CPU through its table (a section,
/// `run_on_cpu`) or its home CPU is held by anyone (itself included).
///
/// The shared pin takes the home CPU's slot with one compare-exchange and records nothing
/// in the thread's table: sections nested inside it find it by the slot's tag
/// (`cpu_slot.rs`). The token, in both models, is the address of the word the pin set (an
/// owned CPU's fast word, a shared slot's word), the CPU's number after it ([`crate::cpu_slot::pinned_cpu`], [`Cpus::unpin_fast`]): the two models'
/// results merge with no instruction for the choice.
///
/// [`try_pin_fast_area`] without the area word (the compiler drops its unused loads).
#[inline(always)]
pub(crate) fn try_pin_fast(gate: usize) -> Option<usize> {
    try_pin_fast_area(gate).map(|(token, _)| token)
}

/// [`try_pin_fast`] that also returns the pinned CPU's area word (`Platform::try_pin_cpu_area`):
/// an owned CPU's from the thread's copy (read with its other words: the fast paths' chain
/// of loads no longer waits for the CPU's line), a shared CPU's from its slot.
///
/// The owned CPU's words are read in a closure of their own, which is always inlined (one
/// closure holding both models was sometimes called out of line, at a call, a return and a
/// few moves on the order-0 page free).
///
/// The owned CPU's pin compares the machine's gate token (`gate`: its id, or
/// [`PROCESS_GATE`] for the process machine) with the thread's fast gate (`Ctx::own_fast`),
/// which is open only while no careful section of the owned CPU runs on the thread, so it
/// reads the CPU's `stop` word alone. A closed gate of an owned CPU of this machine is
/// opened here when the CPU's depth is 0 (the first fast pin after a careful section).
#[inline(always)]
pub(crate) fn try_pin_fast_area(gate: usize) -> Option<(usize, usize)> {
    let (open, st, area) = CTX.with(|c| (c.own_fast.get(), c.own_state.get(), c.own_area.get()));
    if open == gate {
        // SAFETY: as in `pin_owned` (the gate holds `gate` only while `own_gate` does, the
        // token of `own_machine`, the machine whose fast pin this is: closed, it is 0, which
        // is no machine's token).
        let st = unsafe { &*st };
        return st.try_enter_idle().then(|| (st.fast_token(), area));
    }
    if let Some(pin) = try_open_gate(gate) {
        return pin;
    }
    // SAFETY: a token `try_pin_shared` just returned: a slot's address.
    // (A shared machine's token is its id.)
    try_pin_shared(gate).map(|token| (token, unsafe { crate::cpu_slot::pinned_area(token) }))
}

/// [`try_pin_fast_area`] with the fast gate closed: `None` if the thread owns no CPU of
/// `machine` (the shared pin's turn), else the owned pin's outcome: declined while a careful
/// section of the CPU runs (`Ctx::own_fast`), else the gate opened and the section tried.
/// Inlined, off the straight path: a call would make every fast path that pins save
/// registers (they make none).
#[inline(always)]
fn try_open_gate(gate: usize) -> Option<Option<(usize, usize)>> {
    CTX.with(|c| {
        if c.own_gate.get() != gate {
            return None;
        }
        // SAFETY: as in `pin_owned`.
        let st = unsafe { &*c.own_state.get() };
        if !st.idle() {
            return Some(None);
        }
        c.own_fast.set(gate);
        Some(st.try_enter_idle().then(|| (st.fast_token(), c.own_area.get())))
    })
}

/// [`try_pin_fast`]'s shared-CPU half.
#[inline(always)]
fn try_pin_shared(machine: usize) -> Option<usize> {
    CTX.with(|c| {
        if c.fast_machine.get() != machine || c.active.get() != 0 {
            return None;
        }
        let slot = c.fast_slot.get();
        // SAFETY: `fast_slot` points into the CPUs of machine `fast_machine`, which the
        // caller's platform (machine `machine`) keeps alive.
        let slot = unsafe { &*slot };
        if !slot.try_take(c.fast_word.get()) {
            return None;
        }
        Some(slot as *const _ as usize)
    })
}

/// [`Cpus::current`]'s fast path, as [`pin_owned`].
#[inline(always)]
pub(crate) fn current_owned(machine: usize) -> Option<u32> {
    CTX.with(|c| (c.own_machine.get() == machine).then(|| c.own_cpu.get()))
}

/// `preempt_count()` of the thread (all machines).
#[inline]
pub(crate) fn preempt_count() -> u32 {
    CTX.with(|c| c.preempt.get())
}

/// `current->flags & PF_MEMALLOC` of this thread.
pub(crate) fn in_reclaim() -> bool {
    CTX.with(|c| c.memalloc.get())
}

/// Sets this thread's `PF_MEMALLOC`; returns the previous value.
pub(crate) fn set_in_reclaim(on: bool) -> bool {
    CTX.with(|c| c.memalloc.replace(on))
}

/// `in_atomic() || irqs_disabled()` in one TLS access.
#[inline]
pub(crate) fn atomic_context() -> bool {
    CTX.with(|c| c.atomic.get() != 0)
}

#[inline]
pub(crate) fn irqs_off() -> bool {
    CTX.with(|c| c.irqs_off.get())
}

#[inline]
pub(crate) fn in_interrupt() -> bool {
    CTX.with(|c| c.in_irq.get() > 0)
}

/// The process machine's gate token (`HostedPlatform::gate`; other machines' tokens are
/// their ids, which start above it): the thread's fast gate holds it while it is open on
/// the process machine, so the process allocator's fast paths ([`ProcessCpu`]) find the
/// thread's gate open on it without the machine.
pub(crate) const PROCESS_GATE: usize = 1;

/// The process machine (null: none), set before its gate token becomes [`PROCESS_GATE`].
static PROCESS: AtomicPtr<Machine> = AtomicPtr::new(core::ptr::null_mut());

/// The process machine's free map (`kmem::FreeMap`), set with it before its gate token:
/// what a thread's context copies when it takes the token ([`ProcessCpu::free_map`]).
static PROCESS_MAP: std::sync::OnceLock<kmem::FreeMap> = std::sync::OnceLock::new();

/// The process machine's free map ([`kmem::FreeMap::EMPTY`] before there is one).
pub(super) fn process_map() -> kmem::FreeMap {
    PROCESS_MAP.get().copied().unwrap_or(kmem::FreeMap::EMPTY)
}

/// Makes `m` (whose CPUs are `cpus`) the process machine unless another is: whether it is
/// now. Its gate token becomes [`PROCESS_GATE`] (`Release`, after [`PROCESS`]: a thread
/// that reads it with `Acquire`, then opens its gate with it, sees the machine), in `cpus`
/// (what a thread's `own_gate` copies when it takes its CPU) and the caller's platform (what
/// its fast pins compare); the calling thread's `own_gate` too, if it owns a CPU of `m`
/// already (the machine's boot runs on one). Another thread that owns one keeps the former
/// token until it takes a CPU again (the process allocator's machine has no other thread
/// then).
pub(crate) fn set_process_machine(m: &'static Machine, cpus: &super::Cpus) -> bool {
    let ptr = m as *const Machine as *mut Machine;
    let map = m.free_map();
    if let Err(cur) = PROCESS.compare_exchange(core::ptr::null_mut(), ptr, Ordering::Relaxed, Ordering::Relaxed) {
        return cur == ptr;
    }
    // Before the token: a thread that sees the token sees the map.
    let _ = PROCESS_MAP.set(map);
    cpus.set_gate(PROCESS_GATE);
    CTX.with(|c| {
        if c.own_machine.get() == cpus.id() {
            c.set_own_machine(cpus.id(), PROCESS_GATE);
        }
    });
    true
}

/// The calling thread's CPU of the process machine (`Machine::make_process_machine`) as the
/// process allocator's fast paths take it ([`ProcessCpu::fast`]): whatever the thread's fast
/// gate says. Open, it is the thread's owned CPU; closed (no process machine yet, the
/// thread's first allocation, a careful section under way or just ended, a thread running as
/// another CPU, its gate on another machine), it is a CPU stopped for good (the thread's
/// own, `Ctx::closed`; the process-wide `CLOSED` before its first allocation), so
/// [`ProcessCpu::try_pin`] fails and the caller takes its slow path: the stop test every
/// fast pin makes is the gate's test too, with no test of the gate word (two instructions in
/// each `malloc` and `free`), no "is the machine booted" test and no load of the machine.
///
/// It carries nothing: its methods read the thread's words themselves, so that a free's
/// checks between them keep no register for them (kept, they made `free` save two
/// registers: four instructions more than the loads). Nothing here assumes the process
/// machine exists: [`ProcessCpu::machine_unchecked`] is for what a pin, or a free map that
/// found a block, proves.
#[derive(Clone, Copy, Debug)]
pub struct ProcessCpu {
    _private: (),
}

impl ProcessCpu {
    /// The calling thread's CPU of the process machine, as its gate has it (no test).
    #[inline(always)]
    pub fn fast() -> Self {
        Self { _private: () }
    }

    /// The calling thread's CPU of the process machine if its fast gate is open on it (it
    /// owns a CPU of the process machine and runs no careful section of it; the machine's
    /// own fast pin opens the gate, which a careful section closes), `None` otherwise: a
    /// query, which the fast paths do not make ([`ProcessCpu::is_open`] tells whether they
    /// would find the CPU without opening the gate themselves).
    pub fn current() -> Option<Self> {
        CTX.with(|c| (c.own_fast.get() == PROCESS_GATE).then_some(Self { _private: () }))
    }

    /// The process machine's free map, from the thread's context: [`kmem::FreeMap::EMPTY`]
    /// (which finds no block) until the thread has taken the process machine's gate token,
    /// so a map that finds a block proves the machine exists.
    #[inline(always)]
    pub fn free_map(self) -> kmem::FreeMap {
        CTX.with(|c| c.own_map.get())
    }

    /// The fast pin of the thread's CPU (the handshake with stoppers alone), for the process
    /// machine's `*_with` fast paths, which end it; `None` while the gate is closed or a
    /// stopper holds the CPU.
    ///
    /// A closed gate is opened here, as the machine's own fast pin opens it
    /// (`try_pin_fast_area`), when the thread owns a CPU of the process machine whose
    /// careful sections are over (the first fast path after one): otherwise a free that found
    /// its block would take the careful way, and leave the gate closed, every time.
    ///
    /// # Safety
    ///
    /// The pin goes to the fast paths of the process machine (its CPU and fast table are that
    /// machine's), or is ended by one of them.
    #[inline(always)]
    pub unsafe fn try_pin(self) -> Option<kmem::FastPin> {
        let (state, area) = CTX.with(|c| (c.own_proc.get(), c.own_area.get()));
        // SAFETY: `own_proc` is `CLOSED` (a static), the thread's stopped CPU (in its
        // context, which lives as long as the thread) or, while the gate is open on the process
        // machine, the thread's owned CPU of it (`own_state`), which the machine keeps alive
        // while the thread owns it (the gate closes at every change of `own_machine` and at
        // every outermost careful entry).
        let st = unsafe { &*state };
        if st.try_enter_idle() {
            // SAFETY: entered, so `st` is the owned CPU (a stopped one never is).
            return Some(unsafe { fast_pin(st, area) });
        }
        // Inlined, off the straight path (as `try_open_gate`: a call would make the fast
        // paths save registers).
        CTX.with(|c| {
            if c.own_gate.get() != PROCESS_GATE {
                return None;
            }
            // SAFETY: as in `pin_owned`: the thread owns CPU `own_state` of the process
            // machine, whose token `own_gate` holds.
            let st = unsafe { &*c.own_state.get() };
            if !st.idle() {
                return None;
            }
            c.open_process_gate(st);
            // SAFETY: entered: the owned CPU and its area word.
            st.try_enter_idle().then(|| unsafe { fast_pin(st, c.own_area.get()) })
        })
    }

    /// Whether the fast paths would find the thread's own CPU (the gate open for them), not
    /// the stopped one: a diagnostic (the fast paths never ask, their pin tells).
    pub fn is_open(self) -> bool {
        CTX.with(|c| {
            let p = c.own_proc.get();
            !core::ptr::eq(p, crate::cpu_owner::closed()) && !core::ptr::eq(p, c.closed_cpu())
        })
    }

    /// The process machine, if there is one yet.
    #[inline(always)]
    pub fn machine(self) -> Option<&'static Machine> {
        let p = PROCESS.load(Ordering::Acquire);
        // SAFETY: a non-null `PROCESS` is the process machine, which lives as long as the
        // process and never changes.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The process machine, with no test.
    ///
    /// # Safety
    ///
    /// The process machine exists: a [`ProcessCpu::try_pin`] of this thread succeeded, or
    /// its [`ProcessCpu::free_map`] found a block (each implies the thread took the
    /// machine's gate token, which is set after the machine).
    #[inline(always)]
    pub unsafe fn machine_unchecked(self) -> &'static Machine {
        // SAFETY: the caller's contract: the gate was open with the process machine's token,
        // which is set after `PROCESS`, to a machine that lives as long as the process and
        // never changes. A plain read (the store happened before, so it races with nothing):
        // an atomic load, even unused, is never dropped.
        unsafe { &**PROCESS.as_ptr() }
    }
}

/// The fast pin of the owned CPU `st`, entered, with its area word `area`.
///
/// # Safety
///
/// `st` is the thread's owned CPU of the process machine, entered by its fast path, and
/// `area` its area word.
#[inline(always)]
unsafe fn fast_pin(st: &crate::cpu_owner::OwnedCpu, area: usize) -> kmem::FastPin {
    let token = st.fast_token();
    // SAFETY: the caller's contract: what the process machine's `try_pin_cpu_area` returns
    // for it.
    unsafe { kmem::FastPin::new(kmem::Pinned { cpu: kmem::CpuId(crate::cpu_slot::pinned_cpu(token)), token }, area) }
}

/// Whether the process has one thread (`Platform::sole_thread`): glibc's
/// `__libc_single_threaded` (2.32 and later), which its `pthread_create` clears for good
/// before the second thread starts, so a thread that reads it set is the only one until it
/// makes another (which no kmem call does). Threads made without `pthread_create` (a raw
/// `clone`, some language runtimes) are not seen: in such a process a double free racing on
/// two threads may hand a block out twice, as any racing double free could before
/// 2026-12-06. `false` off glibc (always the locked claim).
#[inline(always)]
pub(crate) fn single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(loom)))]
    {
        extern "C" {
            static __libc_single_threaded: core::ffi::c_char;
        }
        // SAFETY: a byte glibc defines for the process's life, written only by glibc (a
        // plain read, as `<sys/single_threaded.h>` documents).
        unsafe { core::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", not(loom))))]
    {
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// The test harness runs each test on a thread of its own: the process has several, and
    /// the byte read must say so (a wrong symbol or a misread would say "alone", and the
    /// mapped frees would drop their locked claim).
    #[test]
    fn a_process_with_threads_is_not_single_threaded() {
        assert!(!super::single_threaded());
        std::thread::spawn(|| assert!(!super::single_threaded())).join().unwrap();
    }
}
