//! Running as other CPUs: `run_on_cpu`, `stop_machine` and the restart after a `fork`.

use super::{thread_no, Cpus, Held, CTX};
use crate::cpu_owner::OwnedCpu;

impl Cpus {
    /// `run_on_cpu`: runs `f` as `cpu`, holding its per-CPU data. See
    /// `Platform::run_on_cpu` for the rules (no section of this machine may be open).
    pub(crate) fn run_on(&self, cpu: u32, f: &mut dyn FnMut()) {
        CTX.with(|c| {
            debug_assert!(c.held_mut(self.id).is_none(), "run_on_cpu inside a critical section");
            if c.own_machine.get() == self.id {
                // SAFETY: as in `enter`.
                let st = unsafe { &*c.own_state.get() };
                debug_assert!(!st.busy(), "run_on_cpu inside a critical section");
                if c.own_cpu.get() == cpu {
                    c.enter_owned(st);
                    f();
                    st.exit();
                    return;
                }
            }
            // A CPU that never came up is prepared first (its page lists and fast table are
            // written as it comes up: `Kmem::cpu_up_prepare`, idempotent), as its owner would.
            if self.per_thread() {
                self.cpu_up(cpu);
            }
            // Run as `cpu`: hold it as an outermost section of this thread, with the owned
            // fast path suspended so that every query inside `f` finds the held CPU.
            let (own, own_gate) = (c.own_machine.get(), c.own_gate.get());
            c.set_own_machine(0, 0);
            if (cpu as usize) < self.owned.len() {
                self.owned[cpu as usize].stop();
                c.push_held(Held { machine: self.id, cpu, depth: 1, stopped: true, in_fast: false });
            } else {
                let depth = self.slot(cpu).enter(0, thread_no(c));
                c.push_held(Held { machine: self.id, cpu, depth, stopped: false, in_fast: false });
            }
            f();
            self.exit_slow(c);
            c.set_own_machine(own, own_gate);
        })
    }

    /// `stop_machine()`: takes every CPU of the machine for the calling thread, waiting for
    /// each holder to leave its section. Until [`Cpus::start_all`], no other thread is inside
    /// a critical section of this machine, so it holds none of its locks (every kmem lock is
    /// taken with interrupts or preemption off). The caller must not enter critical sections
    /// of this machine meanwhile (it would wait for itself).
    pub(crate) fn stop_all(&self) {
        // The owned CPUs first: once they are stopped, no owner holds a lock that an
        // overflow CPU's holder could be waiting for.
        if self.per_thread() {
            OwnedCpu::stop_many(&self.owned);
        }
        let me = CTX.with(thread_no);
        for slot in self.slots.iter() {
            slot.enter(0, me);
        }
    }

    /// Gives back every CPU taken by [`Cpus::stop_all`].
    pub(crate) fn start_all(&self) {
        for c in self.owned.iter() {
            c.start();
        }
        for slot in self.slots.iter() {
            slot.exit(1);
        }
    }

    /// In a `fork()` child, after [`Cpus::start_all`]: CPUs owned by threads the child does
    /// not have become free (their per-CPU caches stay warm for the next owner; every owner
    /// was outside its sections when the parent stopped the machine).
    pub(crate) fn after_fork_child(&self) {
        let me = CTX.with(thread_no);
        for c in self.owned.iter() {
            let o = c.owner();
            if o != crate::cpu_owner::FREE && o != me {
                c.release();
            }
        }
    }
}
