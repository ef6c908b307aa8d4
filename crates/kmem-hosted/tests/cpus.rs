//! Hosted execution contexts: preemption-disabled sections own their CPU, even with more
//! threads than CPUs and threads migrating between CPUs.

use std::sync::atomic::{AtomicU64, Ordering};

use kmem::Platform;
use kmem_hosted::{in_irq, MachineBuilder};

/// Per-CPU counters updated with a plain load and store (not an atomic add): if two threads
/// were ever inside a critical section on the same CPU at once, updates would be lost and the
/// total would come out short.
fn hammer(threads: usize, cpus: usize, migrate_every: u32) {
    const ITERS: u64 = 20_000;
    let m = MachineBuilder::new().ram_mib(16).cpus(cpus).migrate_every(migrate_every).build().unwrap();
    let p = m.platform();
    let counters: Vec<AtomicU64> = (0..cpus).map(|_| AtomicU64::new(0)).collect();
    let seen: Vec<AtomicU64> = (0..cpus).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..ITERS {
                    p.preempt_disable();
                    let cpu = p.current_cpu().index();
                    let c = &counters[cpu];
                    let v = c.load(Ordering::Relaxed);
                    std::hint::spin_loop();
                    c.store(v + 1, Ordering::Relaxed);
                    assert_eq!(p.current_cpu().index(), cpu, "CPU changed inside a critical section");
                    p.preempt_enable();
                    seen[cpu].store(1, Ordering::Relaxed);
                }
            });
        }
    });
    let total: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(total, threads as u64 * ITERS, "lost updates: two threads shared a CPU's critical section");
    if migrate_every > 0 {
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "migration reached every CPU");
    }
}

#[test]
fn more_threads_than_cpus_never_share_a_critical_section() {
    hammer(6, 2, 0);
}

#[test]
fn migrating_threads_never_share_a_critical_section() {
    hammer(5, 3, 7);
}

#[test]
fn preempt_and_irq_state() {
    let m = MachineBuilder::new().ram_mib(16).cpus(2).build().unwrap();
    let p = m.platform();
    assert!(!p.in_atomic() && !p.irqs_disabled() && !p.in_interrupt());
    p.preempt_disable();
    p.preempt_disable();
    assert_eq!(p.preempt_count(), 2);
    assert!(p.in_atomic());
    p.preempt_enable();
    p.preempt_enable();
    assert_eq!(p.preempt_count(), 0);
    let s = p.local_irq_save();
    assert!(p.irqs_disabled() && !s.0);
    let inner = p.local_irq_save();
    assert!(inner.0);
    p.local_irq_restore(inner);
    assert!(p.irqs_disabled());
    p.local_irq_restore(s);
    assert!(!p.irqs_disabled());
    in_irq(|| {
        assert!(p.in_interrupt() && p.in_atomic() && p.irqs_disabled());
    });
    assert!(!p.in_interrupt() && !p.irqs_disabled());
}

#[test]
fn two_machines_nest_critical_sections() {
    let a = MachineBuilder::new().ram_mib(16).cpus(2).build().unwrap();
    let b = MachineBuilder::new().ram_mib(16).cpus(3).build().unwrap();
    a.platform().preempt_disable();
    b.platform().preempt_disable();
    assert_eq!(a.platform().preempt_count(), 2);
    b.platform().preempt_enable();
    a.platform().preempt_enable();
    assert_eq!(a.platform().preempt_count(), 0);
}

#[test]
fn guards_restore_state_on_drop() {
    let m = MachineBuilder::new().ram_mib(16).cpus(2).build().unwrap();
    let p = m.platform();
    {
        let irq = m.local_irq_save();
        assert!(p.irqs_disabled() && !irq.were_disabled());
        let inner = m.local_irq_save();
        assert!(inner.were_disabled());
        drop(inner);
        assert!(p.irqs_disabled(), "inner restore keeps IRQs off");
        let pre = m.preempt_disable();
        assert_eq!(p.preempt_count(), 1);
        assert_eq!(p.current_cpu(), pre.cpu());
    }
    assert!(!p.irqs_disabled());
    assert_eq!(p.preempt_count(), 0);
}
