//! Hosted CPUs: threads run "on" CPUs, and disabling preemption (or interrupts) really owns
//! the CPU. Two models:
//!
//! - **Shared CPUs** (`MachineBuilder::cpus`, the default): a fixed number of CPUs that
//!   threads share and migrate between, as a kernel's tasks do. Each CPU has a slot
//!   (`cpu_slot.rs`, loom-checked); the outermost `preempt_disable()` or `local_irq_save()`
//!   of a thread takes the slot of the CPU it runs on (waiting while another thread holds
//!   it), the matching outermost enable gives it back. Between sections a thread may migrate
//!   (`MachineBuilder::migrate_every`). For tests, tools and the demo. `try_pin_cpu` is a
//!   fast pin here too (`thread.rs`'s `try_pin_fast`): the thread's free home CPU, taken with
//!   one compare-exchange when it holds no CPU; sections nested in it find the CPU by the
//!   slot's tag (`cpu_slot.rs`) and enter the table as `in_fast`. `pin_cpu` tries the same
//!   pin before the table (`Cpus::pin_slow`).
//! - **A CPU per thread** (`MachineBuilder::thread_cpus`): a pool of possible CPUs; a thread
//!   takes one at its first use of the machine (the CPU comes online), keeps it, and gives
//!   it back at thread exit after the machine's CPU-offline teardown (`owned.rs`). Its
//!   sections are then plain loads and stores on its own CPU, and no thread ever waits for
//!   another to finish a per-CPU fast path; other threads stop the CPU to reach its data
//!   (`cpu_owner.rs`, loom-checked). What a process's allocator uses. Threads beyond the
//!   pool run on the machine's **overflow CPUs** (`MachineBuilder::thread_cpus_overflow`):
//!   the last few possible CPUs, which no thread owns and the overflow threads share as
//!   slots, as on a shared machine (a compare-exchange a section; a thread whose home slot
//!   is held takes any free one, and waits only when every one is held). A machine without
//!   them makes such a thread borrow an owned CPU for each section (stopping it with a
//!   process-wide barrier), slowly but correctly.
//!
//! In both, while a thread holds its CPU, `current_cpu()` cannot change and no other thread
//! can run per-CPU code on that CPU: exactly the guarantee a kernel's per-CPU data relies on.
//! `run_on_cpu` lets a thread run code as another CPU, holding that CPU's data.
//!
//! Thread-local state is one `Cell`-based struct with no destructor (valid from a thread's
//! first instruction to its last), so each query is a single TLS access (`ctx.rs`).

mod ctx;
mod nolock;
mod overflow;
mod owned;
mod remote;
mod thread;
pub use thread::ProcessCpu;
pub(crate) use thread::{
    atomic_context, current_owned, in_interrupt, in_reclaim, irqs_off, pin_owned, preempt_count, set_in_reclaim,
    try_pin_fast, try_pin_fast_area,
};
pub(crate) use thread::{set_process_machine, single_threaded, PROCESS_GATE};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::cpu_owner::OwnedCpu;
use crate::cpu_slot::{self, Slot};
use ctx::{thread_no, Ctx, Held, Own, CTX, MAX_HELD, NO_OWN};

/// Machine ids start above [`thread::PROCESS_GATE`], the process machine's gate token.
static NEXT_MACHINE: AtomicUsize = AtomicUsize::new(thread::PROCESS_GATE + 1);

/// Runs the calling thread on `cpu` (modulo each machine's CPU count) from its next critical
/// section on; it no longer migrates. (Shared-CPU machines only: on a CPU-per-thread
/// machine a thread always runs on its own CPU.)
pub fn pin_current_thread(cpu: u32) {
    CTX.with(|c| {
        c.pinned.set(Some(cpu));
        c.home_machine.set(0);
        c.fast_machine.set(0);
    });
}

/// An address that names the calling thread while it lives (its context's).
#[inline]
pub(crate) fn thread_key() -> usize {
    CTX.with(|c| c as *const Ctx as usize)
}

/// Runs `f` as if from a hardware interrupt handler on the current CPU: `in_interrupt()` and
/// `irqs_disabled()` are true while it runs.
pub fn in_irq<R>(f: impl FnOnce() -> R) -> R {
    let was = CTX.with(|c| {
        c.in_irq.set(c.in_irq.get() + 1);
        let was = c.irqs_off.replace(true);
        c.update_atomic();
        was
    });
    let r = f();
    CTX.with(|c| {
        c.irqs_off.set(was);
        c.in_irq.set(c.in_irq.get() - 1);
        c.update_atomic();
    });
    r
}

/// Called when a thread takes its CPU off a CPU-per-thread machine (thread exit): the
/// machine's CPU-offline teardown for that CPU, run by the owner on its own CPU.
pub(crate) type OfflineHook = Box<dyn Fn(u32) + Send + Sync>;

/// The CPUs of one machine.
pub(crate) struct Cpus {
    id: usize,
    /// The gate token ([`Cpus::gate`]).
    gate: AtomicUsize,
    nr: usize,
    /// Shared CPUs: all of a shared machine's; a CPU-per-thread machine's overflow CPUs,
    /// numbered after the owned ones ([`Cpus::slot`]).
    slots: Box<[Slot]>,
    /// Owned CPUs, numbered from 0 (empty for a shared-CPU machine).
    owned: Box<[OwnedCpu]>,
    migrate_every: u32,
    /// The CPU-offline teardown; `None` once the machine is gone.
    hook: RwLock<Option<OfflineHook>>,
    /// What a CPU needs before it comes online (`Kmem::cpu_up_prepare`), run as a thread
    /// takes a CPU; `None` before the machine is booted and once it is gone.
    up_hook: RwLock<Option<OfflineHook>>,
    /// Free CPUs that thread exits may leave warm (caches kept for the next thread) before
    /// they run the teardown; and how many are warm now.
    warm_limit: AtomicUsize,
    warm_free: AtomicUsize,
}

impl std::fmt::Debug for Cpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpus")
            .field("id", &self.id)
            .field("nr", &self.nr)
            .field("per_thread", &self.per_thread())
            .finish()
    }
}

impl Cpus {
    /// `nr` CPUs shared by every thread, which move to the next CPU every `migrate_every`
    /// sections (0: never).
    pub(crate) fn shared(nr: usize, migrate_every: u32) -> Arc<Self> {
        let id = NEXT_MACHINE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Self {
            id,
            gate: AtomicUsize::new(id),
            nr,
            slots: (0..nr).map(|i| Slot::new(i as u32)).collect(),
            owned: Box::new([]),
            migrate_every,
            hook: RwLock::new(None),
            up_hook: RwLock::new(None),
            warm_limit: AtomicUsize::new(0),
            warm_free: AtomicUsize::new(0),
        })
    }

    /// A pool of `nr` possible CPUs, one per thread but the last `overflow` (at most
    /// `nr - 1`), which threads that find no free CPU share; `None` if the host lacks what
    /// the protocol needs (`membarrier`).
    pub(crate) fn one_per_thread(nr: usize, overflow: usize) -> Option<Arc<Self>> {
        if !crate::cpu_owner::membarrier_available() {
            return None;
        }
        owned::prepare();
        let id = NEXT_MACHINE.fetch_add(1, Ordering::Relaxed);
        let cpus = Arc::new(Self {
            id,
            gate: AtomicUsize::new(id),
            nr,
            // Down until a thread needs them (`Cpus::overflow_up`): a process that never has
            // more threads than owned CPUs prepares none (4 of them cost the first `malloc`
            // 9 faults).
            slots: (nr - overflow.min(nr - 1)..nr).map(|i| Slot::new_down(i as u32)).collect(),
            owned: (0..nr - overflow.min(nr - 1)).map(|i| OwnedCpu::new(i as u32)).collect(),
            migrate_every: 0,
            hook: RwLock::new(None),
            up_hook: RwLock::new(None),
            warm_limit: AtomicUsize::new(0),
            warm_free: AtomicUsize::new(0),
        });
        owned::register(&cpus);
        Some(cpus)
    }

    pub(crate) fn nr(&self) -> usize {
        self.nr
    }

    /// The slot of shared CPU `cpu` (a shared machine's CPU, or an overflow CPU).
    #[inline]
    fn slot(&self, cpu: u32) -> &Slot {
        &self.slots[cpu as usize - self.owned.len()]
    }

    /// Records CPU `cpu`'s area word (`Platform::set_cpu_area`) where its fast pins find it.
    pub(crate) fn set_area(&self, cpu: u32, area: usize) {
        if let Some(s) = (cpu as usize).checked_sub(self.owned.len()).and_then(|i| self.slots.get(i)) {
            s.area.store(area, Ordering::Relaxed);
        }
        if let Some(o) = self.owned.get(cpu as usize) {
            o.area.store(area, Ordering::Relaxed);
            // Boot runs before any other thread can use the machine, but the booting thread
            // may own this CPU already: its copy follows.
            CTX.with(|c| {
                if core::ptr::eq(c.own_state.get(), o) {
                    c.own_area.set(area);
                }
            });
        }
    }

    /// The machine's id (unique in the process, never reused).
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// The machine's gate token (`HostedPlatform`'s `gate`): its id, or
    /// [`PROCESS_GATE`] once it is the process machine.
    #[inline]
    pub(crate) fn gate(&self) -> usize {
        self.gate.load(Ordering::Acquire)
    }

    /// Sets the gate token (`thread::set_process_machine`).
    pub(crate) fn set_gate(&self, gate: usize) {
        self.gate.store(gate, Ordering::Release);
    }

    /// Whether each thread gets a CPU of its own.
    #[inline]
    pub(crate) fn per_thread(&self) -> bool {
        !self.owned.is_empty()
    }

    /// Installs the CPU-offline teardown run when a thread gives its CPU back.
    pub(crate) fn set_offline_hook(&self, hook: OfflineHook) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Lets thread exits leave up to `n` free CPUs warm (see `MachineBuilder::thread_cpus_warm`).
    pub(crate) fn set_warm_limit(&self, n: usize) {
        self.warm_limit.store(n, Ordering::Relaxed);
    }

    /// Installs what a CPU needs before it comes online, run as a thread takes a CPU.
    pub(crate) fn set_up_hook(&self, hook: OfflineHook) {
        *self.up_hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Runs the CPU-online preparation for CPU `cpu` (a thread takes it).
    fn cpu_up(&self, cpu: u32) {
        if let Some(h) = self.up_hook.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h(cpu);
        }
    }

    /// Removes the teardown and the online preparation (the machine is going away):
    /// threads that exit later just give their CPUs back.
    pub(crate) fn clear_offline_hook(&self) {
        let old = self.hook.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(old);
        let old = self.up_hook.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(old);
    }

    /// Whether `cpu` is online: an owned CPU while a thread owns it, an overflow CPU once a
    /// thread first needed it, a shared machine's always.
    pub(crate) fn online(&self, cpu: u32) -> bool {
        match self.owned.get(cpu as usize) {
            Some(c) => c.owner() != crate::cpu_owner::FREE,
            None => (cpu as usize) < self.nr && self.slot(cpu).online(),
        }
    }

    /// The CPU the thread runs on now: the held one inside a critical section, else its
    /// own (per-thread) or its possibly migrated home (shared).
    #[inline]
    pub(crate) fn current(&self) -> u32 {
        CTX.with(|c| {
            if c.own_machine.get() == self.id {
                return c.own_cpu.get();
            }
            self.current_slow(c)
        })
    }

    #[cold]
    fn current_slow(&self, c: &Ctx) -> u32 {
        if let Some(h) = c.held_mut(self.id) {
            return h.get().cpu;
        }
        if self.per_thread() {
            if let Some(cpu) = self.fast_overflow_pin(c) {
                return cpu;
            }
            if let Some(cpu) = self.claim(c) {
                return cpu;
            }
            if !self.has_overflow() {
                return self.borrow_cpu_no(c);
            }
        }
        if c.home_machine.get() == self.id {
            return c.home_cpu.get();
        }
        self.home(c)
    }

    /// The thread's home among the shared CPUs (all of a shared machine's, or the
    /// overflow CPUs of a CPU-per-thread machine), recorded with the fast pin's.
    ///
    /// An overflow thread's home follows the host CPU it runs on now (`sched_getcpu`, a
    /// load from glibc's rseq area), and every careful entry computes it again: threads on
    /// different host CPUs then use different overflow CPUs (there are at least as many),
    /// so their compare-exchanges neither collide nor pull the slot's line across cores;
    /// only a thread descheduled inside its section makes the next one on its host CPU take
    /// another. (By thread number, 400 threads on 4 overflow CPUs of 2 host CPUs: 18 ns a
    /// `malloc` + `free` pair; see docs/architecture/cpus.md, "Overflow CPUs".)
    fn home(&self, c: &Ctx) -> u32 {
        let me = thread_no(c);
        let base = match self.per_thread() {
            true => overflow::host_cpu().unwrap_or(me),
            false => c.pinned.get().unwrap_or_else(|| me.wrapping_add(c.migration.get())),
        };
        let cpu = self.owned.len() as u32 + base % self.slots.len() as u32;
        if self.per_thread() {
            self.overflow_up(self.slot(cpu));
        }
        c.home_machine.set(self.id);
        c.home_cpu.set(cpu);
        // The fast pin's home: on a machine whose threads never migrate (a migrating thread
        // counts its sections in `exit_slow`, which a fast pin skips), for a thread with a
        // tag. Keyed by the machine's gate token, which the fast pin compares.
        if self.migrate_every == 0 && cpu_slot::tag(me) != 0 {
            c.fast_slot.set(self.slot(cpu));
            c.fast_word.set(cpu_slot::held_word(me));
            c.fast_machine.set(self.gate());
        }
        cpu
    }

    /// [`pin_current_thread`]`(cpu)`, then this machine's home for the thread (shared CPUs:
    /// the fast pin's home too) in the same thread-local access.
    pub(crate) fn pin_thread(&self, cpu: u32) {
        CTX.with(|c| {
            c.pinned.set(Some(cpu));
            c.home_machine.set(0);
            c.fast_machine.set(0);
            if !self.per_thread() {
                self.home(c);
            }
        });
    }

    /// Enters a critical section on this machine (outermost: take the CPU) and returns the
    /// CPU; `preempt` also raises the preempt count. One TLS access.
    #[inline]
    pub(crate) fn enter(&self, preempt: bool) -> u32 {
        CTX.with(|c| {
            if preempt {
                c.preempt.set(c.preempt.get() + 1);
                c.update_atomic();
            }
            if c.own_machine.get() == self.id {
                // SAFETY: `own_state` points into this machine's CPUs (set with `own_machine`).
                c.enter_owned(unsafe { &*c.own_state.get() });
                return c.own_cpu.get();
            }
            self.enter_slow(c)
        })
    }

    #[cold]
    fn enter_slow(&self, c: &Ctx) -> u32 {
        if let Some(cell) = c.held_mut(self.id) {
            let mut h = cell.get();
            h.depth = if h.stopped { h.depth + 1 } else { self.slot(h.cpu).enter(h.depth, thread_no(c)) };
            cell.set(h);
            return h.cpu;
        }
        if self.per_thread() {
            // Nested in the thread's fast pin of an overflow CPU: that CPU (neither a CPU of
            // its own claimed now nor the home the host CPU would give it now).
            if let Some(cpu) = self.fast_overflow_pin(c) {
                c.push_held(Held { machine: self.id, cpu, depth: 1, stopped: false, in_fast: true });
                return cpu;
            }
            if let Some(cpu) = self.claim(c) {
                // SAFETY: just set by `claim`.
                c.enter_owned(unsafe { &*c.own_state.get() });
                return cpu;
            }
            if !self.has_overflow() {
                let cpu = self.borrow_cpu_no(c);
                self.owned[cpu as usize].stop();
                c.push_held(Held { machine: self.id, cpu, depth: 1, stopped: true, in_fast: false });
                return cpu;
            }
        }
        let cpu = self.home(c);
        let slot = self.slot(cpu);
        if slot.held_as(cpu_slot::held_word(thread_no(c))) {
            // Inside this thread's fast pin of the CPU (no entry in the table: this is the
            // only way a thread holds a CPU it has no entry for), which holds it already.
            c.push_held(Held { machine: self.id, cpu, depth: 1, stopped: false, in_fast: true });
            return cpu;
        }
        let (cpu, depth) = if self.per_thread() {
            (self.enter_overflow(cpu, thread_no(c)), 1)
        } else {
            (cpu, slot.enter(0, thread_no(c)))
        };
        c.push_held(Held { machine: self.id, cpu, depth, stopped: false, in_fast: false });
        cpu
    }

    /// Leaves a critical section (outermost: give the CPU back, maybe migrate); `preempt` also
    /// lowers the preempt count. One TLS access.
    #[inline]
    pub(crate) fn exit(&self, preempt: bool) {
        CTX.with(|c| {
            if preempt {
                c.preempt.set(c.preempt.get().wrapping_sub(1));
                c.update_atomic();
            }
            if c.own_machine.get() == self.id {
                // SAFETY: as in `enter`.
                unsafe { &*c.own_state.get() }.exit();
                return;
            }
            self.exit_slow(c)
        })
    }

    #[cold]
    fn exit_slow(&self, c: &Ctx) {
        let Some(cell) = c.held_mut(self.id) else {
            debug_assert!(false, "critical-section exit without enter");
            return;
        };
        let mut h = cell.get();
        if h.in_fast {
            h.depth -= 1;
            cell.set(h);
            if h.depth == 0 {
                c.active.set(c.active.get() - 1);
            }
            return;
        }
        if h.stopped {
            h.depth -= 1;
            cell.set(h);
            if h.depth == 0 {
                c.active.set(c.active.get() - 1);
                self.owned[h.cpu as usize].start();
            }
            return;
        }
        h.depth = self.slot(h.cpu).exit(h.depth);
        cell.set(h);
        if h.depth == 0 {
            c.active.set(c.active.get() - 1);
            if self.migrate_every != 0 {
                let n = c.enables.get().wrapping_add(1);
                c.enables.set(n);
                if n % self.migrate_every == 0 {
                    c.migration.set(c.migration.get().wrapping_add(1));
                    c.home_machine.set(0);
                    c.fast_machine.set(0);
                }
            }
        }
    }

    /// The CPU this thread holds on this machine (inside a section), if any. One TLS access.
    #[inline]
    pub(crate) fn held_cpu(&self) -> Option<u32> {
        CTX.with(|c| {
            if c.own_machine.get() == self.id {
                // SAFETY: as in `enter`. Every section of the owner on this machine runs on
                // its own CPU, so a busy CPU is a held section.
                let busy = unsafe { &*c.own_state.get() }.busy();
                return busy.then(|| c.own_cpu.get());
            }
            c.held_mut(self.id).map(|h| h.get().cpu)
        })
    }

    /// `pin_cpu`: a section without the preempt-count bookkeeping (nothing inside asks).
    /// Returns the CPU and a token for [`Cpus::unpin`]: the owned CPU's depth word, the slot of a
    /// shared CPU taken by the fast pin (as `try_pin_fast` takes it: the thread's free home
    /// CPU when it holds no CPU, one compare-exchange, nothing in the table), or 0.
    #[inline]
    pub(crate) fn pin(&self) -> (u32, usize) {
        CTX.with(|c| {
            if c.own_machine.get() == self.id {
                let st = c.own_state.get();
                // SAFETY: as in `enter`.
                let st = unsafe { &*st };
                c.enter_owned(st);
                return (c.own_cpu.get(), st.depth_token());
            }
            self.pin_slow(c)
        })
    }

    /// [`Cpus::pin`] but for the owned CPU. Cold as `enter_slow` (which it replaces there):
    /// the owned pin, inlined everywhere, keeps its code and registers.
    #[cold]
    #[inline(never)]
    fn pin_slow(&self, c: &Ctx) -> (u32, usize) {
        if c.home_machine.get() != self.id && c.active.get() == 0 && !self.per_thread() {
            // The home is not known (a first use, or `pin_current_thread` forgot it):
            // computing it sets the fast pin's home.
            self.home(c);
        }
        // (An overflow thread takes the careful way, which may claim a CPU of its own.)
        if c.fast_machine.get() == self.gate() && c.active.get() == 0 && !self.per_thread() {
            // SAFETY: `fast_slot` points into this machine's CPUs (set with `fast_machine`).
            let slot = unsafe { &*c.fast_slot.get() };
            if slot.try_take(c.fast_word.get()) {
                return (slot.cpu(), slot as *const Slot as usize);
            }
        }
        let cpu = self.enter_slow(c);
        // A first use claims the CPU and enters it as the owner: unpin takes the fast way.
        // SAFETY: as in `enter`.
        let token = if c.own_machine.get() == self.id { unsafe { &*c.own_state.get() }.depth_token() } else { 0 };
        (cpu, token)
    }

    /// Ends [`Cpus::pin`]: a token is ended by one decrement of the word it names (an owned
    /// CPU's careful exit and a shared fast pin's [`cpu_slot::leave`] are the same), 0
    /// through the thread's table.
    #[inline]
    pub(crate) fn unpin(&self, token: usize) {
        if token != 0 {
            // SAFETY: a non-zero token is the address of a word of this machine's owned CPU
            // or CPU slot (`pin`: an owned CPU's depth word or a slot's word; `try_pin_fast`,
            // `try_pin_alone`: an owned CPU's fast word or a slot's word), which
            // lives as long as `self`; each an `AtomicU32` (`repr(C)`). The section may be
            // nested: one decrement.
            cpu_slot::leave(unsafe { &*(token as *const cpu_slot::Word) });
        } else {
            CTX.with(|c| self.exit_slow(c));
        }
    }

    /// Ends a [`try_pin_fast`] pin. Its token is the word the pin set to 1 (an owned CPU's
    /// fast word, a shared slot's word): one store of 0 ends either.
    #[inline(always)]
    pub(crate) fn unpin_fast(&self, token: usize) {
        debug_assert_ne!(token, 0, "unpin_cpu_fast of a pin try_pin_cpu did not make");
        // SAFETY: `try_pin_fast` returned the address of an `AtomicU32` of this machine's
        // owned CPU (its fast word) or CPU slot (its word), which lives as long as `self`.
        cpu_slot::leave_outermost(unsafe { &*(token as *const cpu_slot::Word) });
    }

    /// Takes the CPU for `local_irq_save` and sets the IRQ-off flag; returns the old flag.
    #[inline]
    pub(crate) fn irq_save(&self) -> bool {
        let was = CTX.with(|c| {
            let was = c.irqs_off.replace(true);
            c.update_atomic();
            was
        });
        self.enter(false);
        was
    }

    /// Restores the IRQ flag and gives the CPU back (`local_irq_restore`).
    #[inline]
    pub(crate) fn irq_restore(&self, was_off: bool) {
        CTX.with(|c| {
            c.irqs_off.set(was_off);
            c.update_atomic();
        });
        self.exit(false);
    }
}

impl Drop for Cpus {
    fn drop(&mut self) {
        if self.per_thread() {
            owned::unregister(self.id);
        }
    }
}
