//! Hosted CPUs: threads run "on" CPUs, and disabling preemption (or interrupts) really owns
//! the CPU.
//!
//! Each machine has one slot per CPU (`cpu_slot.rs`, the part loom checks). The outermost
//! `preempt_disable()` or `local_irq_save()` of a thread takes the slot of the CPU the thread
//! runs on (waiting, with `yield`, while another thread that shares the CPU holds it); the
//! matching outermost enable gives it back. While a thread holds its CPU, `current_cpu()`
//! cannot change and no other thread can run per-CPU code on that CPU: exactly the guarantee
//! a kernel's per-CPU data relies on. Between critical sections a thread may migrate to another CPU (see
//! `MachineBuilder::migrate_every`).
//!
//! Thread-local state is one `Cell`-based struct, so each query is a single TLS access.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::cpu_slot::Slot;

static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);
static NEXT_MACHINE: AtomicUsize = AtomicUsize::new(1);

/// How many machines one thread may be inside a critical section of at once.
const MAX_HELD: usize = 4;

#[derive(Clone, Copy, Default)]
struct Held {
    machine: usize,
    cpu: u32,
    depth: u32,
}

struct Ctx {
    thread: Cell<u32>,
    pinned: Cell<Option<u32>>,
    preempt: Cell<u32>,
    irqs_off: Cell<bool>,
    in_irq: Cell<u32>,
    migration: Cell<u32>,
    enables: Cell<u32>,
    /// Entries of `held` in use; with 0 (the common case) nothing needs searching.
    active: Cell<u32>,
    held: [Cell<Held>; MAX_HELD],
    /// `preempt + in_irq + irqs_off`, kept up to date by every change of them, so that
    /// `atomic_context()` is one load (the slab fast paths ask on every call).
    atomic: Cell<u32>,
    /// The last home CPU computed, and for which machine (0: none): `current()` outside a
    /// critical section is then one compare. Cleared when the home can change (migration,
    /// pinning).
    home_machine: Cell<usize>,
    home_cpu: Cell<u32>,
}

impl Ctx {
    #[inline]
    fn update_atomic(&self) {
        self.atomic.set(self.preempt.get().wrapping_add(self.in_irq.get()).wrapping_add(self.irqs_off.get() as u32));
    }
}

thread_local! {
    static CTX: Ctx = const {
        Ctx {
            thread: Cell::new(0),
            pinned: Cell::new(None),
            preempt: Cell::new(0),
            irqs_off: Cell::new(false),
            in_irq: Cell::new(0),
            migration: Cell::new(0),
            enables: Cell::new(0),
            active: Cell::new(0),
            held: [const { Cell::new(Held { machine: 0, cpu: 0, depth: 0 }) }; MAX_HELD],
            atomic: Cell::new(0),
            home_machine: Cell::new(0),
            home_cpu: Cell::new(0),
        }
    };
}

fn thread_no(c: &Ctx) -> u32 {
    let t = c.thread.get();
    if t != 0 {
        return t;
    }
    let t = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    c.thread.set(t);
    t
}

/// Runs the calling thread on `cpu` (modulo each machine's CPU count) from its next critical
/// section on; it no longer migrates.
pub fn pin_current_thread(cpu: u32) {
    CTX.with(|c| {
        c.pinned.set(Some(cpu));
        c.home_machine.set(0);
    });
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

/// The CPUs of one machine.
#[derive(Debug)]
pub(crate) struct Cpus {
    id: usize,
    slots: Box<[Slot]>,
    migrate_every: u32,
}

impl Cpus {
    pub(crate) fn new(nr: usize, migrate_every: u32) -> Self {
        Self {
            id: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
            slots: (0..nr).map(|_| Slot::default()).collect(),
            migrate_every,
        }
    }

    pub(crate) fn nr(&self) -> usize {
        self.slots.len()
    }

    /// The CPU the thread runs on now: the held one inside a critical section, else its
    /// (possibly migrated) home.
    #[inline]
    pub(crate) fn current(&self) -> u32 {
        CTX.with(|c| {
            if c.active.get() != 0 {
                if let Some(h) = c.held.iter().map(Cell::get).find(|h| h.depth > 0 && h.machine == self.id) {
                    return h.cpu;
                }
            }
            if c.home_machine.get() == self.id {
                return c.home_cpu.get();
            }
            self.home(c)
        })
    }

    fn home(&self, c: &Ctx) -> u32 {
        let base = c.pinned.get().unwrap_or_else(|| thread_no(c).wrapping_add(c.migration.get()));
        let cpu = base % self.slots.len() as u32;
        c.home_machine.set(self.id);
        c.home_cpu.set(cpu);
        cpu
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
            if c.active.get() != 0 {
                for cell in &c.held {
                    let mut h = cell.get();
                    if h.depth > 0 && h.machine == self.id {
                        h.depth = self.slots[h.cpu as usize].enter(h.depth, thread_no(c));
                        cell.set(h);
                        return h.cpu;
                    }
                }
            }
            let cpu = self.home(c);
            let depth = self.slots[cpu as usize].enter(0, thread_no(c));
            let free =
                c.held.iter().find(|h| h.get().depth == 0).expect("critical sections of more than 4 machines nested");
            free.set(Held { machine: self.id, cpu, depth });
            c.active.set(c.active.get() + 1);
            cpu
        })
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
            for cell in &c.held {
                let mut h = cell.get();
                if h.depth > 0 && h.machine == self.id {
                    h.depth = self.slots[h.cpu as usize].exit(h.depth);
                    cell.set(h);
                    if h.depth == 0 {
                        c.active.set(c.active.get() - 1);
                        if self.migrate_every != 0 {
                            let n = c.enables.get().wrapping_add(1);
                            c.enables.set(n);
                            if n % self.migrate_every == 0 {
                                c.migration.set(c.migration.get().wrapping_add(1));
                                c.home_machine.set(0);
                            }
                        }
                    }
                    return;
                }
            }
            debug_assert!(false, "critical-section exit without enter");
        })
    }

    /// `stop_machine()`: takes every CPU of the machine for the calling thread, waiting for
    /// each holder to leave its section. Until [`Cpus::start_all`], no other thread is inside
    /// a critical section of this machine, so it holds none of its locks (every kmem lock is
    /// taken with interrupts or preemption off). The caller must not enter critical sections
    /// of this machine meanwhile (it would wait for itself).
    pub(crate) fn stop_all(&self) {
        let me = CTX.with(thread_no);
        for slot in self.slots.iter() {
            slot.enter(0, me);
        }
    }

    /// Gives back every CPU taken by [`Cpus::stop_all`].
    pub(crate) fn start_all(&self) {
        for slot in self.slots.iter() {
            slot.exit(1);
        }
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

/// `preempt_count()` of the thread (all machines).
#[inline]
pub(crate) fn preempt_count() -> u32 {
    CTX.with(|c| c.preempt.get())
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
