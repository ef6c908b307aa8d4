//! The threads beyond a CPU-per-thread machine's pool of owned CPUs
//! (`MachineBuilder::thread_cpus_overflow`): they share the overflow CPUs, which come up when
//! first needed, never wait for an owner's section, and claim an owned CPU once one is free
//! (its owner exited, or died without its exit handlers).

use kmem::{CpuId, Gfp, Order, Platform};
use kmem_hosted::MachineBuilder;

/// Runs sections (`preempt_disable`) until one runs on `cpu`, at most `n`; returns the CPU
/// of the last.
fn sections_until(p: &impl Platform, cpu: CpuId, n: usize) -> CpuId {
    let mut last = p.preempt_disable_cpu();
    p.preempt_enable();
    for _ in 1..n {
        if last == cpu {
            break;
        }
        last = p.preempt_disable_cpu();
        p.preempt_enable();
    }
    last
}

/// A machine of `possible` CPUs, the last `overflow` of them overflow CPUs, and the CPU that
/// the calling thread (which booted it) owns.
fn overflow_machine(possible: usize, overflow: usize) -> (kmem_hosted::Machine, CpuId) {
    let m = MachineBuilder::new().ram_mib(32).thread_cpus(possible).thread_cpus_overflow(overflow).build().unwrap();
    let mine = m.platform().preempt_disable_cpu();
    m.platform().preempt_enable();
    (m, mine)
}

/// The overflow CPUs' point: a thread beyond the pool never waits for an owner's section.
/// Both owners sit inside a section until the third thread has run a thousand sections of
/// its own; a thread that borrowed an owned CPU would wait for them forever (here: the
/// owners give up after 20 s and the test fails).
#[test]
fn a_thread_beyond_the_pool_never_waits_for_an_owner() {
    use std::sync::mpsc::channel;
    use std::time::Duration;
    // Three owned CPUs (the test's thread owns one), one overflow.
    let (m, mine) = overflow_machine(4, 1);
    let p = m.platform();
    let (done_tx, done_rx) = channel::<CpuId>();
    let (in_tx, in_rx) = channel::<CpuId>();
    let done_rx = std::sync::Mutex::new(done_rx);
    std::thread::scope(|s| {
        let owners: Vec<_> = (0..2)
            .map(|_| {
                let in_tx = in_tx.clone();
                let done = &done_rx;
                s.spawn(move || {
                    let cpu = p.preempt_disable_cpu();
                    in_tx.send(cpu).unwrap();
                    // Hold the CPU until the overflow thread reports (or give up).
                    let r = done.lock().unwrap().recv_timeout(Duration::from_secs(20));
                    p.preempt_enable();
                    r.ok()
                })
            })
            .collect();
        let a = in_rx.recv().unwrap();
        let b = in_rx.recv().unwrap();
        assert!(a != b && a != mine && b != mine, "each owner has its own CPU: {mine:?} {a:?} {b:?}");
        assert!(a.index() < 3 && b.index() < 3, "the owned CPUs are 0 to 2: {a:?} {b:?}");
        let third = s.spawn(|| {
            let mut cpus = Vec::new();
            for i in 0..1000 {
                let cpu = if i % 2 == 0 {
                    let pin = p.pin_cpu();
                    let cpu = pin.cpu;
                    p.unpin_cpu(pin);
                    cpu
                } else {
                    let cpu = p.preempt_disable_cpu();
                    p.preempt_enable();
                    cpu
                };
                cpus.push(cpu);
            }
            let pg = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
            // SAFETY: ours, unused afterwards.
            unsafe { m.__free_pages(pg, Order::ZERO) };
            cpus
        });
        let cpus = third.join().unwrap();
        assert!(cpus.iter().all(|&c| c == CpuId(3)), "the third thread ran on the overflow CPU");
        // Release both owners (one message each).
        done_tx.send(CpuId(3)).unwrap();
        done_tx.send(CpuId(3)).unwrap();
        for o in owners {
            assert!(o.join().unwrap().is_some(), "the owners were released by the third thread, not by the timeout");
        }
    });
    m.verify().expect("free lists consistent");
}

/// A thread on the overflow CPUs takes a CPU of its own once one is free (it retries every
/// few hundred slow entries).
#[test]
fn an_overflow_thread_claims_a_cpu_once_one_is_free() {
    use std::sync::mpsc::channel;
    // Two owned CPUs (the test's thread owns one), one overflow.
    let (m, mine) = overflow_machine(3, 1);
    let p = m.platform();
    let (go_tx, go_rx) = channel::<()>();
    let (took_tx, took_rx) = channel::<CpuId>();
    std::thread::scope(|s| {
        let owner = s.spawn(move || {
            let cpu = p.preempt_disable_cpu();
            p.preempt_enable();
            took_tx.send(cpu).unwrap();
            // (Gives up after a while: a failed assertion below must not hang the test.)
            let _ = go_rx.recv_timeout(std::time::Duration::from_secs(20));
            cpu
        });
        let owned = took_rx.recv().unwrap();
        assert!(owned != mine && owned.index() < 2, "the owner's CPU is the other owned one: {mine:?} {owned:?}");
        let other = s.spawn(|| {
            let first = p.preempt_disable_cpu();
            p.preempt_enable();
            go_tx.send(()).unwrap();
            let owner_cpu = owner.join().unwrap();
            // The owner has exited: its CPU is free, and within a few thousand sections this
            // thread owns it.
            (first, sections_until(p, owner_cpu, 5_000))
        });
        let (first, last) = other.join().unwrap();
        assert_eq!(first, CpuId(2), "the overflow CPU while both owned ones were taken");
        assert_eq!(last, owned, "the owner's CPU claimed once its owner exited");
    });
}

/// A thread that dies without its exit handlers (a raw `exit` system call) leaves its CPU
/// owned by no live thread: a thread that finds no free CPU takes it over (its look for
/// dead owners comes every few thousand slow entries, not at its first).
#[test]
fn a_dead_owner_s_cpu_is_taken_over() {
    use std::sync::mpsc::channel;
    // Two owned CPUs (the test's thread owns one), one overflow.
    // Leaked: the dead thread keeps its reference (it never drops anything).
    let m: &'static kmem_hosted::Machine =
        Box::leak(Box::new(MachineBuilder::new().ram_mib(32).thread_cpus(3).thread_cpus_overflow(1).build().unwrap()));
    let p = m.platform();
    let mine = p.preempt_disable_cpu();
    p.preempt_enable();
    let (tx, rx) = channel::<(CpuId, i32)>();
    // Not joined: a thread that leaves by a raw exit never reports to its handle.
    drop(std::thread::spawn(move || {
        let cpu = p.preempt_disable_cpu();
        p.preempt_enable();
        tx.send((cpu, rustix::thread::gettid().as_raw_nonzero().get())).unwrap();
        // SAFETY: ends this thread at once, running nothing more of it (what the test is
        // about); it holds no lock and no CPU section.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }));
    let (dead_cpu, tid) = rx.recv().unwrap();
    assert_ne!(dead_cpu, mine);
    // Wait for the kernel to have reaped the thread.
    // SAFETY: tgkill with signal 0 only checks that the thread exists.
    while unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) } == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let (first, last) = std::thread::scope(|s| {
        s.spawn(|| {
            let first = p.preempt_disable_cpu();
            p.preempt_enable();
            (first, sections_until(p, dead_cpu, 20_000))
        })
        .join()
        .unwrap()
    });
    assert_eq!(first, CpuId(2), "the overflow CPU first: the dead thread's CPU still looks owned");
    assert_eq!(last, dead_cpu, "the dead thread's CPU taken over");
    m.verify().expect("free lists consistent");
}

/// Overflow CPUs come online when a thread first needs one, not at boot (a process that
/// never has more threads than owned CPUs prepares none of them).
#[test]
fn overflow_cpus_come_up_when_first_needed() {
    // One owned CPU (the test's thread's), two overflow CPUs.
    let (m, mine) = overflow_machine(3, 2);
    let p = m.platform();
    assert_eq!(mine, CpuId(0));
    assert!(!p.cpu_online(CpuId(1)) && !p.cpu_online(CpuId(2)), "overflow CPUs down after boot");
    let cpu = std::thread::scope(|s| {
        s.spawn(|| {
            let pg = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
            // SAFETY: ours, unused afterwards.
            unsafe { m.__free_pages(pg, Order::ZERO) };
            let b = m.kmalloc(64, Gfp::KERNEL).unwrap();
            // SAFETY: ours.
            unsafe { m.kfree(b.as_ptr()) };
            p.current_cpu()
        })
        .join()
        .unwrap()
    });
    assert!(cpu == CpuId(1) || cpu == CpuId(2), "the second thread ran on an overflow CPU: {cpu:?}");
    assert!(p.cpu_online(cpu), "and brought it up");
    m.verify().expect("free lists consistent");
}

/// A careful section nested in an overflow thread's fast pin runs on the pinned CPU, even
/// when the thread has moved to another host CPU since (whose overflow CPU would be its
/// home now). Needs two host CPUs to move between; with one it checks the plain case.
#[test]
fn a_section_nested_in_an_overflow_fast_pin_stays_on_its_cpu() {
    fn run_on_host_cpu(cpu: usize) -> bool {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
        let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    }
    // One owned CPU (the test's thread's), two overflow CPUs.
    let (m, _) = overflow_machine(3, 2);
    let p = m.platform();
    std::thread::scope(|s| {
        s.spawn(|| {
            let two = run_on_host_cpu(0);
            for round in 0..50 {
                // A careful entry sets the home (and the fast pin's) from the host CPU.
                let home = p.preempt_disable_cpu();
                p.preempt_enable();
                assert!(home.index() >= 1, "an overflow CPU: {home:?}");
                let Some(pin) = p.try_pin_cpu() else { continue };
                assert_eq!(pin.cpu, home, "the fast pin takes the home");
                let moved = two && run_on_host_cpu(1 - round % 2);
                let nested = p.preempt_disable_cpu();
                assert_eq!(nested, pin.cpu, "the nested section runs on the pinned CPU (moved: {moved})");
                p.preempt_enable();
                p.unpin_cpu_fast(pin);
            }
        });
    });
}

/// `try_pin_cpu_nolock` (a signal handler's `kmalloc_nolock`) on an overflow thread: its
/// home overflow CPU when it holds no CPU, nothing inside one of its sections (whatever it
/// interrupted may be using the CPU).
#[test]
fn an_overflow_thread_pins_its_cpu_for_nolock_only_outside_its_sections() {
    let (m, _) = overflow_machine(2, 1);
    let p = m.platform();
    std::thread::scope(|s| {
        s.spawn(|| {
            let home = p.preempt_disable_cpu();
            assert!(p.try_pin_cpu_nolock().is_none(), "inside a section: no pin");
            p.preempt_enable();
            assert_eq!(home, CpuId(1), "the overflow CPU");
            let pin = p.try_pin_cpu_nolock().expect("outside its sections, an overflow thread pins its home");
            assert_eq!(pin.cpu, home);
            assert_eq!(p.current_cpu(), home);
            p.unpin_cpu(pin);
            // The CPU is free again: a careful section takes it at once.
            assert_eq!(p.preempt_disable_cpu(), home);
            p.preempt_enable();
        });
    });
}
