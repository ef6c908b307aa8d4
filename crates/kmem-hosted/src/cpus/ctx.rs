//! The calling thread's context on the hosted CPUs: one `Cell`-based struct in a
//! thread-local with no destructor (valid from a thread's first instruction to its last), so
//! each query is a single TLS access. What it holds: the CPUs the thread holds outside the
//! owned fast path, the CPU it owns on each CPU-per-thread machine and the owned fast path's
//! words (with its fast gate), the shared fast pin's home, the preemption, interrupt and
//! reclaim state.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cpu_owner::OwnedCpu;
use crate::cpu_slot::Slot;

static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);

/// How many CPUs (of different machines) one thread may hold at once: shared-mode sections,
/// CPUs it runs as through `run_on_cpu`, and borrowed CPUs.
pub(super) const MAX_HELD: usize = 4;

/// A CPU a thread holds outside the owned fast path.
#[derive(Clone, Copy, Default)]
pub(super) struct Held {
    pub(super) machine: usize,
    pub(super) cpu: u32,
    pub(super) depth: u32,
    /// Held by stopping an owned CPU (`run_on_cpu`, or a thread with no CPU of its own):
    /// [`OwnedCpu::start`] at the outermost exit instead of a slot release.
    pub(super) stopped: bool,
    /// Sections nested in this thread's fast pin of the CPU (`try_pin_fast`), which holds
    /// it: the outermost exit leaves the slot to `unpin_cpu_fast`.
    pub(super) in_fast: bool,
}

/// A CPU this thread owns (CPU-per-thread machines).
#[derive(Clone, Copy)]
pub(super) struct Own {
    pub(super) machine: usize,
    pub(super) cpu: u32,
    pub(super) state: *const OwnedCpu,
}

pub(super) const NO_OWN: Own = Own { machine: 0, cpu: 0, state: core::ptr::null() };

/// How many CPU-per-thread machines a thread may own a CPU of at once.
const MAX_OWNED: usize = 8;

pub(super) struct Ctx {
    pub(super) thread: Cell<u32>,
    pub(super) pinned: Cell<Option<u32>>,
    pub(super) preempt: Cell<u32>,
    pub(super) irqs_off: Cell<bool>,
    pub(super) in_irq: Cell<u32>,
    pub(super) migration: Cell<u32>,
    pub(super) enables: Cell<u32>,
    /// Entries of `held` in use; with 0 (the common case) nothing needs searching.
    pub(super) active: Cell<u32>,
    pub(super) held: [Cell<Held>; MAX_HELD],
    /// `preempt + in_irq + irqs_off`, kept up to date by every change of them, so that
    /// `atomic_context()` is one load (the slab fast paths ask on every call).
    pub(super) atomic: Cell<u32>,
    /// The last home CPU computed, and for which machine (0: none): `current()` outside a
    /// critical section is then one compare. Cleared when the home can change (migration,
    /// pinning).
    pub(super) home_machine: Cell<usize>,
    pub(super) home_cpu: Cell<u32>,
    /// The owned fast path: the CPU-per-thread machine (0: none) whose CPU `own_cpu` this
    /// thread owns, and that CPU's state. Cleared while the thread runs as another CPU of
    /// that machine (`run_on_cpu`), so every query then takes the slow path.
    pub(super) own_machine: Cell<usize>,
    /// The owned fast path's gate: `own_gate` (the gate token of `own_machine`) while it is
    /// open, 0 while closed. Open, it says that no careful section of the owned CPU runs on
    /// this thread, so the fast pin (`thread::try_pin_fast_area`) compares its machine's
    /// token with this word and has no depth to read. Every outermost careful entry closes it ([`Ctx::enter_owned`], after its store
    /// of `depth`: a signal handler in between finds the gate open and the section not
    /// started, which is as if it had come before); an exit leaves it closed, and the next
    /// fast pin that finds the CPU's depth 0 opens it (a cold branch once after each
    /// careful section: cheaper than a word to keep on every exit, which ends through a
    /// token shared with the slots). Closed (0) whenever `own_machine` changes.
    ///
    /// A machine's gate token (`HostedPlatform::gate`) is its id, or
    /// [`PROCESS_GATE`](super::thread::PROCESS_GATE) for the process machine, which the
    /// process allocator's fast paths test without the machine (`ProcessCpu`).
    pub(super) own_fast: Cell<usize>,
    /// The gate token of `own_machine` (`Cpus::gate`; 0 with no machine): what opens the
    /// gate, so that a fast pin compares its machine's token alone, and the process
    /// allocator's fast paths a constant.
    pub(super) own_gate: Cell<usize>,
    pub(super) own_state: Cell<*const OwnedCpu>,
    /// The process allocator's fast gate, as a CPU: `own_state` while the fast gate is open
    /// on the process machine (`own_fast` holds [`PROCESS_GATE`](super::thread::PROCESS_GATE)),
    /// else a CPU stopped for good: the thread's own `closed` once its gate has closed, the
    /// process-wide [`CLOSED`](crate::cpu_owner::CLOSED) before. The process allocator's
    /// fast paths enter it with no test of the gate: on a stopped CPU their stop test fails
    /// ([`ProcessCpu`](super::thread::ProcessCpu)). Closed with `own_fast`; opened only by
    /// the process allocator's own fast pin ([`Ctx::open_process_gate`]), so it is open
    /// only while `own_fast` is.
    pub(super) own_proc: Cell<*const OwnedCpu>,
    /// The thread's stopped CPU ([`stopped_cpu`](crate::cpu_owner::stopped_cpu)), which
    /// `own_proc` holds while the gate is closed: the fast path that finds it writes its
    /// `fast` word, a line of this thread's (all threads' `CLOSED` was one line that every
    /// thread wrote after each careful section).
    #[cfg(not(loom))]
    pub(super) closed: OwnedCpu,
    /// What the gate closes to: `closed`'s address from the thread's first CPU on
    /// ([`Ctx::set_own_machine`]), [`CLOSED`](crate::cpu_owner::CLOSED) before. A copy, so
    /// that closing the gate is a load and a store, as with a static (the address of a
    /// thread-local field takes one instruction more: the thread pointer's load).
    pub(super) closed_at: Cell<*const OwnedCpu>,
    pub(super) own_cpu: Cell<u32>,
    /// The owned CPU's area word (`OwnedCpu::area`), copied with `own_state`: the fast paths
    /// read it with the thread's other words, not after the CPU's line.
    pub(super) own_area: Cell<usize>,
    /// The process machine's free map (`kmem::FreeMap`) while `own_gate` is its token
    /// ([`Ctx::set_own_machine`] copies it): the process allocator's frees read it with the
    /// thread's other words ([`ProcessCpu::free_map`](super::thread::ProcessCpu::free_map)).
    pub(super) own_map: Cell<kmem::FreeMap>,
    /// The shared fast pin (`try_pin_fast`): the shared-CPU machine (0: none) whose CPU
    /// with slot `fast_slot` is the thread's home, taken as `fast_word`
    /// (`cpu_slot::held_word`). Set with the home of a machine that does not migrate threads,
    /// cleared with it.
    pub(super) fast_machine: Cell<usize>,
    pub(super) fast_slot: Cell<*const Slot>,
    pub(super) fast_word: Cell<u32>,
    /// Every CPU-per-thread machine this thread owns a CPU of.
    pub(super) owned: [Cell<Own>; MAX_OWNED],
    /// Outermost sections run on a borrowed CPU since the last attempt to claim one.
    pub(super) borrowed: Cell<u32>,
    /// Attempts to claim a CPU that found none free, since the last look for CPUs of dead
    /// threads (which asks the kernel about each owner: [`DEAD_SCAN_EVERY`] attempts apart).
    ///
    /// [`DEAD_SCAN_EVERY`]: super::owned::DEAD_SCAN_EVERY
    pub(super) failed_claims: Cell<u32>,
    /// `PF_MEMALLOC`: the thread is reclaiming (`crate::reclaim`). Here, not in a
    /// thread-local of its own, so that the shared library's build gets it in the
    /// initial-exec model like the rest (a local-exec access cannot link into a `.so`).
    pub(super) memalloc: Cell<bool>,
}

impl Ctx {
    #[inline]
    pub(super) fn update_atomic(&self) {
        self.atomic.set(self.preempt.get().wrapping_add(self.in_irq.get()).wrapping_add(self.irqs_off.get() as u32));
    }
    #[inline]
    pub(super) fn held_mut(&self, machine: usize) -> Option<&Cell<Held>> {
        if self.active.get() == 0 {
            return None;
        }
        self.held.iter().find(|h| {
            let h = h.get();
            h.depth > 0 && h.machine == machine
        })
    }
    /// Enters a careful section of the owned CPU `st` ([`OwnedCpu::enter`]) and, at the
    /// outermost, closes the fast gate (`own_fast`). The gate's store comes after the depth's
    /// and `enter`'s compiler fence, which keeps it there.
    #[inline(always)]
    pub(super) fn enter_owned(&self, st: &OwnedCpu) {
        if st.enter() {
            self.close_gate();
        }
    }
    /// Closes the fast gate (`own_fast`, and the process allocator's `own_proc`, to the
    /// thread's stopped CPU).
    #[inline(always)]
    pub(super) fn close_gate(&self) {
        self.own_fast.set(0);
        self.own_proc.set(self.closed_at.get());
    }
    /// The thread's stopped CPU (`closed`; null under loom, as [`closed`](crate::cpu_owner::closed)).
    #[inline(always)]
    pub(super) fn closed_cpu(&self) -> *const OwnedCpu {
        #[cfg(not(loom))]
        {
            &self.closed
        }
        #[cfg(loom)]
        {
            core::ptr::null()
        }
    }
    /// Opens the fast gate on the process machine's owned CPU `st` (`own_gate` holds
    /// [`PROCESS_GATE`](super::thread::PROCESS_GATE)), for the process allocator's fast
    /// paths too (`own_proc`). The machine's own fast pin opens `own_fast` alone
    /// (`thread::try_open_gate`): `own_proc` then stays closed until the process allocator's
    /// next fast path opens it here.
    #[inline(always)]
    pub(super) fn open_process_gate(&self, st: *const OwnedCpu) {
        self.own_fast.set(super::thread::PROCESS_GATE);
        self.own_proc.set(st);
    }
    /// Sets `own_machine` and its gate token `own_gate` (0, 0: none), the fast gate closed;
    /// with the process machine's token, `own_map` to its free map (before the gate can
    /// open with the token).
    #[inline]
    pub(super) fn set_own_machine(&self, machine: usize, gate: usize) {
        self.closed_at.set(self.closed_cpu());
        self.close_gate();
        self.own_machine.set(machine);
        if gate == super::thread::PROCESS_GATE {
            self.own_map.set(super::thread::process_map());
        }
        self.own_gate.set(gate);
    }
    pub(super) fn push_held(&self, h: Held) {
        let free =
            self.held.iter().find(|e| e.get().depth == 0).expect("critical sections of more than 4 machines nested");
        free.set(h);
        self.active.set(self.active.get() + 1);
    }
}

thread_local! {
    pub(super) static CTX: Ctx = const {
        Ctx {
            thread: Cell::new(0),
            pinned: Cell::new(None),
            preempt: Cell::new(0),
            irqs_off: Cell::new(false),
            in_irq: Cell::new(0),
            migration: Cell::new(0),
            enables: Cell::new(0),
            active: Cell::new(0),
            held: [const { Cell::new(Held { machine: 0, cpu: 0, depth: 0, stopped: false, in_fast: false }) }; MAX_HELD],
            atomic: Cell::new(0),
            home_machine: Cell::new(0),
            home_cpu: Cell::new(0),
            own_machine: Cell::new(0),
            own_fast: Cell::new(0),
            own_gate: Cell::new(0),
            own_state: Cell::new(core::ptr::null()),
            own_proc: Cell::new(crate::cpu_owner::closed()),
            #[cfg(not(loom))]
            closed: crate::cpu_owner::stopped_cpu(),
            closed_at: Cell::new(crate::cpu_owner::closed()),
            own_cpu: Cell::new(0),
            own_area: Cell::new(0),
            own_map: Cell::new(kmem::FreeMap::EMPTY),
            fast_machine: Cell::new(0),
            fast_slot: Cell::new(core::ptr::null()),
            fast_word: Cell::new(0),
            owned: [const { Cell::new(NO_OWN) }; MAX_OWNED],
            borrowed: Cell::new(0),
            failed_claims: Cell::new(0),
            memalloc: Cell::new(false),
        }
    };
}

pub(super) fn thread_no(c: &Ctx) -> u32 {
    let t = c.thread.get();
    if t != 0 {
        return t;
    }
    let t = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    c.thread.set(t);
    // A thread's first use of any machine: with KFENCE machines about, it gets a signal
    // stack large enough for their fault handler (`crate::kfence`).
    crate::kfence::thread_first_use();
    t
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CTX;
    use crate::cpu_owner::closed;

    /// After its first CPU, a thread's gate closes to a stopped CPU of its own, never the
    /// process-wide one, which every thread would write at once (each fast path that finds
    /// the gate closed writes the stopped CPU's `fast` word).
    #[test]
    fn each_thread_closes_its_gate_to_a_stopped_cpu_of_its_own() {
        let barrier = std::sync::Barrier::new(2);
        let run = || {
            CTX.with(|c| {
                assert!(core::ptr::eq(c.own_proc.get(), closed()), "before its first CPU");
                c.set_own_machine(usize::MAX, 0);
                let p = c.own_proc.get();
                assert!(core::ptr::eq(p, c.closed_cpu()), "the thread's own stopped CPU");
                // SAFETY: the thread's own context, alive while the thread runs.
                assert!(!unsafe { &*p }.try_enter_idle(), "a stopped CPU is never entered");
                c.set_own_machine(0, 0);
                // Both threads alive: their contexts are distinct.
                barrier.wait();
                p as usize
            })
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(run);
            let b = s.spawn(run);
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_ne!(a, b);
        assert_ne!(a, closed() as usize);
    }
}
