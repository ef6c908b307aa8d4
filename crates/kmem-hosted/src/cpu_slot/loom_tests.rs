//! Loom models of the hosted CPU slot (`scripts/loom.sh`): threads that share one CPU and
//! run per-CPU critical sections on it.
//!
//! Per-CPU data is touched only inside a section, by a separate load and store. A model fails
//! on a lost update, and, for the `UnsafeCell` data, on any access not ordered after the
//! previous section's (loom's causality check): the slot must give mutual exclusion and
//! acquire/release ordering between the threads that share a CPU.
//!
//! Two threads per model: exclusion is a pairwise property, and with two waiters spinning on
//! a third, loom's scheduler (which wakes a yielded thread whenever another runs) can bounce
//! between the waiters forever and the model never ends.

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

use super::*;

/// Runs `f` under loom over every interleaving (no preemption bound unless
/// `LOOM_MAX_PREEMPTIONS` sets one; other settings from the environment, `LOOM_*`).
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    loom::model::Builder::new().check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let name = std::thread::current().name().unwrap_or("model").to_owned();
    eprintln!("{name}: {} executions explored", runs.load(std::sync::atomic::Ordering::Relaxed));
}

/// One CPU: its slot and its per-CPU data.
#[derive(Default)]
struct Cpu {
    slot: Slot,
    /// Plain per-CPU data (a pageset's fields, say).
    data: UnsafeCell<u64>,
    /// A `this_cpu_*` counter: an atomic updated by load and store, as kmem's per-CPU event
    /// counters are (no locked instruction; the section makes it exclusive).
    counter: AtomicU64,
}

// SAFETY: `data` is meant to be touched only by the thread that owns `slot`; whether the slot
// really serialises those accesses is what the models check.
unsafe impl Sync for Cpu {}

impl Cpu {
    /// `data += 1` as a load and a separate store; the caller owns the CPU (except in the
    /// negative model).
    fn bump_data(&self) {
        // SAFETY: loom checks that no other access to `data` is concurrent with this read.
        let v = self.data.with(|p| unsafe { *p });
        // SAFETY: as above, for the write.
        self.data.with_mut(|p| unsafe { *p = v + 1 });
    }
    /// `this_cpu_add(counter, 1)` as a load and a store.
    fn this_cpu_inc(&self) {
        self.counter.store(self.counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    fn data(&self) -> u64 {
        // SAFETY: called after every other thread was joined.
        self.data.with(|p| unsafe { *p })
    }
}

/// Runs `body(cpu, me)` on `n` threads numbered 1..=n, all on `cpu`, and joins them. (The
/// main thread only joins: a failed assertion in a worker then ends the model cleanly.)
fn on_one_cpu(n: u32, cpu: &Arc<Cpu>, body: fn(&Cpu, u32)) {
    let threads: Vec<_> = (1..=n)
        .map(|me| {
            let cpu = cpu.clone();
            thread::spawn(move || body(&cpu, me))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Two threads share a CPU; each runs one section (`preempt_disable` ... `preempt_enable`)
/// that increments the CPU's plain data: no lost update, no unordered access.
#[test]
fn sections_on_a_shared_cpu_exclude() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        on_one_cpu(2, &cpu, |cpu, me| {
            let d = cpu.slot.enter(0, me);
            assert_eq!(cpu.slot.owner.load(Ordering::Relaxed), held_word(me));
            cpu.bump_data();
            assert_eq!(cpu.slot.exit(d), 0);
        });
        assert_eq!(cpu.data(), 2);
        assert_eq!(cpu.slot.owner.load(Ordering::Relaxed), 0);
    });
}

/// `this_cpu_*` read-modify-writes under a held slot, with nesting: `preempt_disable`, inc,
/// `local_irq_save` (nested: must not wait for the CPU it owns), inc, `local_irq_restore`
/// (nested: must keep the CPU), inc, `preempt_enable`. Another thread doing the same on the
/// CPU must not slip in between: no lost update.
#[test]
fn this_cpu_rmw_under_nested_sections() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        on_one_cpu(2, &cpu, |cpu, me| {
            let d = cpu.slot.enter(0, me);
            cpu.this_cpu_inc();
            let d = cpu.slot.enter(d, me);
            assert_eq!(d, 2);
            cpu.this_cpu_inc();
            let d = cpu.slot.exit(d);
            assert_eq!(cpu.slot.owner.load(Ordering::Relaxed), held_word(me), "a nested exit kept the CPU");
            cpu.this_cpu_inc();
            assert_eq!(cpu.slot.exit(d), 0);
        });
        assert_eq!(cpu.counter.load(Ordering::Relaxed), 6);
    });
}

/// The models have teeth: a thread that touches the CPU's data without taking the CPU is
/// caught.
#[test]
#[should_panic(expected = "Causality violation")]
fn per_cpu_access_outside_a_section_is_caught() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        on_one_cpu(2, &cpu, |cpu, me| {
            if me == 1 {
                let d = cpu.slot.enter(0, me);
                cpu.bump_data();
                cpu.slot.exit(d);
            } else {
                cpu.bump_data();
            }
        });
        assert_eq!(cpu.data(), 2);
    });
}

/// `try_pin_cpu` on a shared CPU as its two callers use it: the fast pin, or (CPU busy) the
/// waiting section.
fn fast_or_slow(cpu: &Cpu, me: u32, body: impl FnOnce(&Cpu)) {
    if cpu.slot.try_take(held_word(me)) {
        body(cpu);
        leave(&cpu.slot.owner);
    } else {
        let d = cpu.slot.enter(0, me);
        body(cpu);
        assert_eq!(cpu.slot.exit(d), 0);
    }
}

/// A fast pin (one compare-exchange, ended by `leave`'s decrement) against another thread's
/// section or `run_on_cpu` on the CPU (`Slot::enter`, which waits): no lost update, no
/// unordered access, and the CPU is free at the end.
#[test]
fn fast_pin_and_a_section_exclude() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        on_one_cpu(2, &cpu, |cpu, me| {
            if me == 1 {
                fast_or_slow(cpu, me, Cpu::bump_data);
            } else {
                let d = cpu.slot.enter(0, me);
                cpu.bump_data();
                cpu.slot.exit(d);
            }
        });
        assert_eq!(cpu.data(), 2);
        assert!(is_free(cpu.slot.owner.load(Ordering::Relaxed)));
    });
}

/// Two threads whose home is the CPU both pin it fast (falling back to the waiting section
/// when the other has it), with a section nested inside (`preempt_disable` inside the pin:
/// it must find the CPU held by its own tag, and must not wait for it) between `this_cpu_*`
/// updates: no lost update, the other thread never looks like the holder, and the CPU is
/// free at the end.
#[test]
fn sections_nested_in_fast_pins_find_their_cpu() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        on_one_cpu(2, &cpu, |cpu, me| {
            fast_or_slow(cpu, me, |cpu| {
                cpu.this_cpu_inc();
                // The nested section's test (`enter_slow`): held by this thread's tag.
                assert!(cpu.slot.held_as(held_word(me)), "a nested section would wait for its own CPU");
                assert!(!cpu.slot.held_as(held_word(3 - me)), "the other thread looks like the holder");
                cpu.this_cpu_inc();
            });
            // Outside: not held by this thread any more (a later section must take the CPU).
            assert!(!cpu.slot.held_as(held_word(me)));
        });
        assert_eq!(cpu.counter.load(Ordering::Relaxed), 4);
        assert!(is_free(cpu.slot.owner.load(Ordering::Relaxed)));
    });
}

/// A fast pin against the any-context pin (`try_pin_cpu_nolock`'s `try_acquire`): neither
/// waits, at most one holds the CPU, each bumps only if it got it.
#[test]
fn fast_pin_and_nolock_pin_never_both_hold() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        let got = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (1..=2u32)
            .map(|me| {
                let (cpu, got) = (cpu.clone(), got.clone());
                thread::spawn(move || {
                    let took = if me == 1 { cpu.slot.try_take(held_word(me)) } else { cpu.slot.try_acquire(me) };
                    if took {
                        cpu.bump_data();
                        got.fetch_add(1, Ordering::Relaxed);
                        if me == 1 {
                            leave(&cpu.slot.owner);
                        } else {
                            cpu.slot.exit(1);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cpu.data(), got.load(Ordering::Relaxed));
        assert!(got.load(Ordering::Relaxed) >= 1, "a free CPU was pinned by nobody");
    });
}

/// The fast-pin models have teeth: a fast pin that tests the word and then stores its own
/// (no compare-exchange) lets two threads in at once, and is caught.
#[test]
#[should_panic(expected = "Causality violation")]
fn a_fast_pin_without_its_compare_exchange_is_caught() {
    model(|| {
        let cpu = Arc::new(Cpu::default());
        on_one_cpu(2, &cpu, |cpu, me| {
            if is_free(cpu.slot.owner.load(Ordering::Acquire)) {
                cpu.slot.owner.store(held_word(me), Ordering::Relaxed);
                cpu.bump_data();
                leave(&cpu.slot.owner);
            }
        });
    });
}

/// Reads the CPU's data after its bring-up returned, while the other thread may still run.
fn read_after_bring_up(cpu: &Cpu) -> u64 {
    // SAFETY: the only write is the preparation's, before the bring-up's publication; loom
    // reports this read if it is not ordered after that write.
    cpu.data.with(|p| unsafe { *p })
}

/// An overflow CPU's bring-up (`Slot::bring_up`): two threads need a CPU that is down at
/// once; the preparation runs exactly once, the CPU is online while it runs, and whatever it
/// wrote (plain data, as the CPU's fast table) is visible to both when they return (loom's
/// causality check on the cell).
#[test]
fn bring_up_prepares_once_and_publishes_it() {
    model(|| {
        let cpu = Arc::new(Cpu { slot: Slot::new_down(0), ..Cpu::default() });
        let prepared = Arc::new(AtomicU64::new(0));
        assert!(!cpu.slot.online());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (cpu, prepared) = (cpu.clone(), prepared.clone());
                thread::spawn(move || {
                    cpu.slot.bring_up(|| {
                        assert!(cpu.slot.online(), "online while its preparation runs");
                        prepared.fetch_add(1, Ordering::Relaxed);
                        cpu.bump_data();
                    });
                    assert!(cpu.slot.online());
                    assert_eq!(read_after_bring_up(&cpu), 1, "the preparation's writes are visible after bring_up");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(prepared.load(Ordering::Relaxed), 1, "prepared exactly once");
    });
}

/// The bring-up model has teeth: publishing `UP` with a relaxed store lets a waiter read
/// the preparation's data unordered, and is caught.
#[test]
#[should_panic(expected = "Causality violation")]
fn bring_up_with_a_relaxed_publication_is_caught() {
    model(|| {
        let cpu = Arc::new(Cpu { slot: Slot::new_down(0), ..Cpu::default() });
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let cpu = cpu.clone();
                thread::spawn(move || {
                    let s = &cpu.slot;
                    if s.up.compare_exchange(DOWN, COMING_UP, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                        cpu.bump_data();
                        s.up.store(UP, Ordering::Relaxed);
                    } else {
                        while s.up.load(Ordering::Relaxed) != UP {
                            thread::yield_now();
                        }
                    }
                    let _ = read_after_bring_up(&cpu);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}
