//! The calling thread's CPU context read from a machine id alone, with no `Cpus` to follow:
//! the fast paths of pinning and the context queries the platform answers on every
//! allocation (one thread-local access each).

use super::CTX;

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
pub(crate) fn try_pin_fast(machine: usize) -> Option<usize> {
    try_pin_fast_area(machine).map(|(token, _)| token)
}

/// [`try_pin_fast`] that also returns the pinned CPU's area word (`Platform::try_pin_cpu_area`):
/// an owned CPU's from the thread's copy (read with its other words: the fast paths' chain
/// of loads no longer waits for the CPU's line), a shared CPU's from its slot.
///
/// The owned CPU's words are read in a closure of their own, which is always inlined (one
/// closure holding both models was sometimes called out of line, at a call, a return and a
/// few moves on the order-0 page free).
///
/// The owned CPU's pin compares the machine with the thread's fast gate (`Ctx::own_fast`),
/// which is open only while no careful section of the owned CPU runs on the thread, so it
/// reads the CPU's `stop` word alone. A closed gate of an owned CPU of this machine is
/// opened here when the CPU's depth is 0 (the first fast pin after a careful section).
#[inline(always)]
pub(crate) fn try_pin_fast_area(machine: usize) -> Option<(usize, usize)> {
    let (gate, st, area) = CTX.with(|c| (c.own_fast.get(), c.own_state.get(), c.own_area.get()));
    if gate == machine {
        // SAFETY: as in `pin_owned` (the gate equals `machine` only while it is
        // `own_machine`: closed, it is 0, which names no machine).
        let st = unsafe { &*st };
        return st.try_enter_idle().then(|| (st.fast_token(), area));
    }
    if let Some(pin) = try_open_gate(machine) {
        return pin;
    }
    // SAFETY: a token `try_pin_shared` just returned: a slot's address.
    try_pin_shared(machine).map(|token| (token, unsafe { crate::cpu_slot::pinned_area(token) }))
}

/// [`try_pin_fast_area`] with the fast gate closed: `None` if the thread owns no CPU of
/// `machine` (the shared pin's turn), else the owned pin's outcome: declined while a careful
/// section of the CPU runs (`Ctx::own_fast`), else the gate opened and the section tried.
/// Inlined, off the straight path: a call would make every fast path that pins save
/// registers (they make none).
#[inline(always)]
fn try_open_gate(machine: usize) -> Option<Option<(usize, usize)>> {
    CTX.with(|c| {
        if c.own_machine.get() != machine {
            return None;
        }
        // SAFETY: as in `pin_owned`.
        let st = unsafe { &*c.own_state.get() };
        if !st.idle() {
            return Some(None);
        }
        c.own_fast.set(machine);
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
