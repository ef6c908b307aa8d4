//! The fast pin on shared CPUs (`Platform::try_pin_cpu` of a machine built with
//! `MachineBuilder::cpus`): one compare-exchange on the thread's home CPU when it is free and
//! the thread holds no CPU, with every guarantee of the slow `pin_cpu`: exclusion against
//! other threads' sections, `run_on_cpu` and `stop_machine`, nesting, and no pin for a thread
//! that already holds a CPU (a section, `run_on_cpu` as another CPU).

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kmem::{CpuId, Gfp, Order, Platform};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

fn shared(cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(32).cpus(cpus).build().unwrap()
}

/// The thread's first section computes its home; from then on `try_pin_cpu` pins it.
fn warm_home(p: &impl Platform) {
    p.preempt_disable();
    p.preempt_enable();
}

#[test]
fn fast_pin_takes_the_home_cpu_and_nests() {
    let m = shared(2);
    let p = m.platform();
    pin_current_thread(1);
    warm_home(p);
    let pin = p.try_pin_cpu().expect("a free home CPU pins fast on a shared machine");
    assert_eq!(pin.cpu, CpuId(1));
    assert_eq!(p.current_cpu(), CpuId(1));
    assert_eq!(p.held_cpu(), None, "a pin is no section (as pin_cpu's on a CPU per thread)");
    assert_eq!(p.preempt_count(), 0, "a pin keeps the preempt count, as pin_cpu does");
    assert!(!p.atomic_context() && !p.irqs_disabled());
    assert!(p.try_pin_cpu().is_none(), "a held CPU is not pinned fast again");
    assert!(p.try_pin_cpu_nolock().is_none(), "nor by the any-context pin");

    // Sections nested inside the fast pin run on its CPU and keep it.
    assert_eq!(p.preempt_disable_cpu(), CpuId(1));
    assert_eq!(p.preempt_count(), 1);
    assert_eq!(p.held_cpu(), Some(CpuId(1)), "a section nested in the fast pin holds its CPU");
    let irq = p.local_irq_save();
    assert!(p.irqs_disabled() && p.atomic_context());
    let inner = p.pin_cpu();
    assert_eq!(inner.cpu, CpuId(1));
    assert_eq!(p.migrate_disable(), CpuId(1));
    p.migrate_enable();
    p.unpin_cpu(inner);
    p.local_irq_restore(irq);
    p.preempt_enable();
    assert_eq!(p.preempt_count(), 0);
    assert!(p.try_pin_cpu().is_none(), "nested exits keep the fast pin's CPU");

    // Another thread's section on that CPU waits for the unpin.
    let entered = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread(1);
            warm_or_wait(p, &entered);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!entered.load(Ordering::SeqCst), "another thread entered the fast-pinned CPU");
        p.unpin_cpu_fast(pin);
    });
    assert!(entered.load(Ordering::SeqCst));
    let again = p.try_pin_cpu().expect("free again");
    p.unpin_cpu_fast(again);
}

/// `pin_cpu` on a shared machine takes the thread's free home CPU as the fast pin does (a
/// token, no entry in the thread's table), also right after `pin_current_thread` (which
/// forgets the home: the pin computes it); sections nest in it, and another thread's
/// section on that CPU waits for the unpin. Inside a section it is the table's pin (token 0).
#[test]
fn pin_cpu_on_a_shared_machine_takes_the_fast_pin() {
    let m = shared(2);
    let p = m.platform();
    for cpu in [1, 0] {
        pin_current_thread(cpu);
        let pin = p.pin_cpu();
        assert_eq!(pin.cpu, CpuId(cpu));
        assert_ne!(pin.token, 0, "the free home CPU is pinned fast");
        assert_eq!(p.held_cpu(), None, "a pin is no section");
        assert!(p.try_pin_cpu().is_none() && p.try_pin_cpu_nolock().is_none(), "the CPU is held");
        assert_eq!(p.preempt_disable_cpu(), CpuId(cpu));
        assert_eq!(p.held_cpu(), Some(CpuId(cpu)));
        let irq = p.local_irq_save();
        let inner = p.pin_cpu();
        assert_eq!((inner.cpu, inner.token), (CpuId(cpu), 0), "nested: through the table");
        p.unpin_cpu(inner);
        p.local_irq_restore(irq);
        p.preempt_enable();
        assert!(p.try_pin_cpu().is_none(), "nested exits keep the pin's CPU");
        let entered = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                pin_current_thread(cpu);
                warm_or_wait(p, &entered);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(!entered.load(Ordering::SeqCst), "another thread entered the pinned CPU");
            p.unpin_cpu(pin);
        });
        assert!(entered.load(Ordering::SeqCst));
    }
    let pin = p.try_pin_cpu().expect("free again");
    p.unpin_cpu_fast(pin);
}

/// The platform's `pin_current_thread` computes the machine's home at once: the next
/// `try_pin_cpu` pins the new CPU fast, where after the plain call (which forgets the home)
/// it declines until a section or `pin_cpu` computes it.
#[test]
fn platform_pin_current_thread_keeps_the_fast_pin() {
    let m = shared(2);
    let p = m.platform();
    for cpu in [1, 0, 1] {
        pin_current_thread(cpu);
        assert!(p.try_pin_cpu().is_none(), "the home is forgotten");
        p.pin_current_thread(1 - cpu);
        let pin = p.try_pin_cpu().expect("the new home is known");
        assert_eq!(pin.cpu, CpuId(1 - cpu));
        assert_eq!(p.current_cpu(), CpuId(1 - cpu));
        p.unpin_cpu_fast(pin);
    }
    // Inside a section the CPU stays the held one until the section ends.
    p.pin_current_thread(0);
    assert_eq!(p.preempt_disable_cpu(), CpuId(0));
    p.pin_current_thread(1);
    assert_eq!(p.current_cpu(), CpuId(0), "the section holds CPU 0");
    p.preempt_enable();
    assert_eq!(p.current_cpu(), CpuId(1));
    let pin = p.try_pin_cpu().expect("CPU 1 is free");
    assert_eq!(pin.cpu, CpuId(1));
    p.unpin_cpu_fast(pin);
}

/// A section of this thread (it waits for the CPU), flagged once inside.
fn warm_or_wait(p: &impl Platform, entered: &AtomicBool) {
    p.preempt_disable();
    entered.store(true, Ordering::SeqCst);
    p.preempt_enable();
}

#[test]
fn no_fast_pin_for_a_thread_that_holds_a_cpu() {
    let m = shared(2);
    let p = m.platform();
    pin_current_thread(1);
    warm_home(p);
    p.preempt_disable();
    assert!(p.try_pin_cpu().is_none(), "inside a section");
    p.preempt_enable();
    let irq = p.local_irq_save();
    assert!(p.try_pin_cpu().is_none(), "with interrupts off");
    p.local_irq_restore(irq);
    let slow = p.pin_cpu();
    assert!(p.try_pin_cpu().is_none(), "inside pin_cpu");
    p.unpin_cpu(slow);
    let mut ran = false;
    assert!(p.run_on_cpu(CpuId(0), &mut || {
        assert!(p.try_pin_cpu().is_none(), "running as another CPU");
        assert_eq!(p.current_cpu(), CpuId(0));
        assert_eq!(p.pin_cpu_and_unpin(), CpuId(0));
        ran = true;
    }));
    assert!(ran);
    // Another thread holds the home CPU: no pin without waiting.
    let (held, release) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread(1);
            p.preempt_disable();
            held.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            p.preempt_enable();
        });
        while !held.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        assert!(p.try_pin_cpu().is_none(), "the home CPU is another thread's");
        release.store(true, Ordering::SeqCst);
    });
    let pin = p.try_pin_cpu().expect("free once the other thread left");
    p.unpin_cpu_fast(pin);
}

trait PinTwice {
    fn pin_cpu_and_unpin(&self) -> CpuId;
}

impl<P: Platform> PinTwice for P {
    fn pin_cpu_and_unpin(&self) -> CpuId {
        let pin = self.pin_cpu();
        let cpu = pin.cpu;
        self.unpin_cpu(pin);
        cpu
    }
}

#[test]
fn migrating_threads_keep_the_slow_pin() {
    let m = MachineBuilder::new().ram_mib(32).cpus(2).migrate_every(3).build().unwrap();
    let p = m.platform();
    for _ in 0..10 {
        warm_home(p);
        assert!(p.try_pin_cpu().is_none(), "a migrating machine counts every section");
    }
}

/// Per-CPU counters bumped with a separate load and store by fast pins (one thread per
/// CPU), by `pin_cpu` and `preempt_disable` sections of threads sharing those CPUs, by
/// `run_on_cpu` from elsewhere and by `stop_machine`: a lost update would mean two of them
/// held a CPU at once.
#[test]
fn fast_pins_exclude_sections_run_on_cpu_and_stop_machine() {
    const ITERS: u64 = 20_000;
    const CPUS: usize = 2;
    let m = shared(CPUS);
    let p = m.platform();
    let counters: Vec<AtomicU64> = (0..CPUS).map(|_| AtomicU64::new(0)).collect();
    let bump = |cpu: CpuId| {
        let c = &counters[cpu.index()];
        let v = c.load(Ordering::Relaxed);
        std::hint::spin_loop();
        c.store(v + 1, Ordering::Relaxed);
    };
    let fast = AtomicU64::new(0);
    let mut expected = 0;
    std::thread::scope(|s| {
        for cpu in 0..CPUS as u32 {
            let (bump, fast) = (&bump, &fast);
            // A fast pinner and a slow one per CPU.
            s.spawn(move || {
                pin_current_thread(cpu);
                warm_home(p);
                for _ in 0..ITERS {
                    match p.try_pin_cpu() {
                        Some(pin) => {
                            assert_eq!(pin.cpu, CpuId(cpu));
                            bump(pin.cpu);
                            p.unpin_cpu_fast(pin);
                            fast.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            let pin = p.pin_cpu();
                            bump(pin.cpu);
                            p.unpin_cpu(pin);
                        }
                    }
                }
            });
            s.spawn(move || {
                pin_current_thread(cpu);
                for i in 0..ITERS / 4 {
                    if i % 2 == 0 {
                        let c = p.preempt_disable_cpu();
                        bump(c);
                        p.preempt_enable();
                    } else {
                        let pin = p.pin_cpu();
                        bump(pin.cpu);
                        p.unpin_cpu(pin);
                    }
                }
            });
        }
        expected += CPUS as u64 * (ITERS + ITERS / 4);
        let bump = &bump;
        s.spawn(move || {
            for i in 0..ITERS / 4 {
                let cpu = CpuId(i as u32 % CPUS as u32);
                assert!(p.run_on_cpu(cpu, &mut || bump(cpu)));
            }
        });
        expected += ITERS / 4;
        s.spawn(|| {
            for _ in 0..200 {
                // SAFETY: this thread does not use the machine until the restart.
                unsafe { m.stop_machine() };
                for cpu in 0..CPUS {
                    bump(CpuId(cpu as u32));
                }
                // SAFETY: after our stop_machine.
                unsafe { m.restart_machine() };
            }
        });
        expected += 200 * CPUS as u64;
    });
    let total: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(total, expected, "lost updates: a fast pin shared its CPU");
    assert!(fast.load(Ordering::Relaxed) > 0, "the fast pin never succeeded");
}

/// The allocators' inline fast paths (order-0 pages, slab sheaves, kmalloc) now run on
/// shared CPUs: threads sharing two CPUs, without migration, allocate and free across each
/// other's lists, and every page and object is accounted for.
#[test]
fn allocation_fast_paths_on_shared_cpus_keep_everything_accounted() {
    let m = MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    let boot = common::free_pages(&m);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let m = &m;
            s.spawn(move || {
                let mut pages = Vec::new();
                let mut objs = Vec::new();
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match x % 4 {
                        0 if pages.len() < 64 => pages.push(m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()),
                        1 if objs.len() < 64 => {
                            let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
                            // SAFETY: 64 bytes of ours.
                            unsafe { p.as_ptr().write_bytes(t as u8, 64) };
                            objs.push(p);
                        }
                        2 if !pages.is_empty() => {
                            let p = pages.swap_remove((x >> 20) as usize % pages.len());
                            // SAFETY: ours.
                            unsafe { m.__free_pages(p, Order::ZERO) };
                        }
                        _ if !objs.is_empty() => {
                            let p = objs.swap_remove((x >> 20) as usize % objs.len());
                            // SAFETY: ours, written above.
                            assert_eq!(unsafe { p.as_ptr().read() }, t as u8, "object changed under us");
                            // SAFETY: ours.
                            unsafe { m.kfree(p.as_ptr()) };
                        }
                        _ => {}
                    }
                }
                for p in pages {
                    // SAFETY: ours.
                    unsafe { m.__free_pages(p, Order::ZERO) };
                }
                for p in objs {
                    // SAFETY: ours.
                    unsafe { m.kfree(p.as_ptr()) };
                }
            });
        }
    });
    m.verify().unwrap();
    assert_eq!(m.report_count(kmem::ReportKind::BadPage), 0);
    assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
    // Every page is back: nothing but kmalloc's slabs keeps any (a few hundred KiB at most).
    assert!(boot - common::free_pages(&m) < 256, "pages lost: {} of {boot}", boot - common::free_pages(&m));
}
