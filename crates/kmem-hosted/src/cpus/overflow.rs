//! The overflow CPUs of a CPU-per-thread machine (`MachineBuilder::thread_cpus_overflow`):
//! the last few possible CPUs, which no thread owns. Threads that find every other CPU
//! owned share them as slots (`cpu_slot.rs`), each with a home chosen by the host CPU it
//! runs on; an overflow CPU comes online when a thread first needs it. See
//! docs/architecture/cpus.md, "Overflow CPUs".

use super::{Cpus, Ctx};
use crate::cpu_slot::{self, Slot};

/// The host CPU the calling thread runs on (`sched_getcpu`), if the host says.
pub(super) fn host_cpu() -> Option<u32> {
    // SAFETY: reading this thread's errno, restored below if the call sets it (a process
    // allocator's caller must find it unchanged).
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
        return None;
    }
    Some(cpu as u32)
}

impl Cpus {
    /// Whether this CPU-per-thread machine has overflow CPUs (else its threads beyond the
    /// pool borrow owned ones).
    #[inline]
    pub(super) fn has_overflow(&self) -> bool {
        self.per_thread() && !self.slots.is_empty()
    }

    /// Brings overflow CPU `s` online before its first use: the first thread to need it runs
    /// the CPU-online preparation (as a thread that claims an owned CPU does); one that comes
    /// meanwhile waits for it. One load once it is up.
    #[inline]
    pub(super) fn overflow_up(&self, s: &Slot) {
        s.bring_up(|| self.cpu_up(s.cpu()));
    }

    /// The overflow CPU this thread holds by its fast pin (a CPU-per-thread machine), if it
    /// does: sections nested in the pin, and `current()` inside it, are on that CPU
    /// whatever the thread's home would be now (its host CPU may have changed since the
    /// pin's home was chosen), and the thread claims no CPU of its own meanwhile.
    pub(super) fn fast_overflow_pin(&self, c: &Ctx) -> Option<u32> {
        if c.fast_machine.get() != self.gate() {
            return None;
        }
        // SAFETY: `fast_slot` points into the CPUs of the machine whose gate token
        // `fast_machine` holds (set together in `home`): this one.
        let slot = unsafe { &*c.fast_slot.get() };
        slot.held_as(cpu_slot::held_word(super::thread_no(c))).then(|| slot.cpu())
    }

    /// An outermost section of an overflow thread (no CPU of its own) from its home `cpu`:
    /// the home slot if free, else the first free overflow CPU after it, else a wait for
    /// the home (a holder descheduled inside its section holds up only the threads that
    /// find every overflow CPU held). Returns the CPU taken.
    pub(super) fn enter_overflow(&self, cpu: u32, me: u32) -> u32 {
        let n = self.slots.len();
        let first = cpu as usize - self.owned.len();
        for i in 0..n {
            let s = &self.slots[(first + i) % n];
            self.overflow_up(s);
            if s.try_acquire(me) {
                return s.cpu();
            }
        }
        self.slot(cpu).enter(0, me);
        cpu
    }
}
