//! `try_pin_cpu_nolock` on hosted CPUs: whether a signal handler (the hosted NMI) may take
//! its thread's CPU for `kmalloc_nolock`, answered without waiting and right even when the
//! handler interrupted the thread's own section bookkeeping.

use super::{thread_no, Cpus, Held, CTX, MAX_HELD};

impl Cpus {
    /// `try_pin_cpu_nolock` (`local_trylock`): a pin only if this thread holds no CPU of
    /// this machine (so whatever it interrupted, a signal handler's thread was in no section
    /// of it) and taking one needs no wait. Returns the CPU and the token for
    /// [`Cpus::unpin`].
    ///
    /// Async-signal safety, the point of it: the owned CPU's depth and fast words are stored
    /// by the owner only, with plain loads and stores, so a handler that finds both 0
    /// interrupted no section (a fast section that was about to enter stores its word after
    /// the handler has restored 0, and a careful one reads the fast word after its own
    /// store); its own fast section ends by storing 0 before it returns; a shared CPU's slot is taken with a compare-exchange from a free word, which fails
    /// while the interrupted context owns it, before and after its bookkeeping of the held
    /// entry; a thread with no CPU of its own (which would have to claim or borrow one) gets
    /// `None`, unless it runs on the overflow CPUs already (then it tries its home one's
    /// slot, as a shared machine's thread).
    pub(crate) fn try_pin_alone(&self) -> Option<(u32, usize)> {
        CTX.with(|c| {
            if c.own_machine.get() == self.id {
                let st = c.own_state.get();
                // SAFETY: as in `enter`.
                let owned = unsafe { &*st };
                if owned.busy() || !owned.try_enter() {
                    return None;
                }
                return Some((c.own_cpu.get(), owned.fast_token()));
            }
            // A thread of a CPU-per-thread machine without a CPU of its own: only one known
            // to run on its overflow CPUs (its home computed).
            let overflow = self.has_overflow() && c.home_machine.get() == self.id;
            if (self.per_thread() && !overflow) || c.held_mut(self.id).is_some() || c.active.get() as usize >= MAX_HELD
            {
                return None;
            }
            let cpu = if c.home_machine.get() == self.id { c.home_cpu.get() } else { self.home(c) };
            if !self.slot(cpu).try_acquire(thread_no(c)) {
                return None;
            }
            c.push_held(Held { machine: self.id, cpu, depth: 1, stopped: false, in_fast: false });
            Some((cpu, 0))
        })
    }
}
