//! Machines with a CPU per thread (`MachineBuilder::thread_cpus`): every thread owns its CPU,
//! other threads reach its per-CPU data only by running as it (`run_on_cpu`), threads beyond
//! the pool share the overflow CPUs or borrow owned ones, and a thread's exit takes its CPU
//! offline with its caches drained. The overflow CPUs' own tests, and those of a thread that
//! claims a CPU once one is free, are in `thread_cpus_overflow.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use kmem::{CpuId, Gfp, Order, Platform};
use kmem_hosted::MachineBuilder;

/// Per-CPU counters bumped by a plain load and store inside sections, by the owners and by
/// a thread that runs as each CPU in turn: a lost update means two threads were inside one
/// CPU's section at once.
fn hammer(possible: usize, overflow: usize, threads: usize, remote_rounds: u64) {
    const ITERS: u64 = 20_000;
    let m = MachineBuilder::new().ram_mib(16).thread_cpus(possible).thread_cpus_overflow(overflow).build().unwrap();
    assert!(m.platform().cpu_per_thread(), "membarrier is available on this host");
    let p = m.platform();
    let counters: Vec<AtomicU64> = (0..possible).map(|_| AtomicU64::new(0)).collect();
    let bump = |cpu: usize| {
        let c = &counters[cpu];
        let v = c.load(Ordering::Relaxed);
        std::hint::spin_loop();
        c.store(v + 1, Ordering::Relaxed);
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..ITERS {
                    let cpu = if i % 2 == 0 {
                        let pin = p.pin_cpu();
                        let cpu = pin.cpu.index();
                        bump(cpu);
                        assert_eq!(p.current_cpu().index(), cpu);
                        p.unpin_cpu(pin);
                        cpu
                    } else {
                        let cpu = p.preempt_disable_cpu().index();
                        bump(cpu);
                        p.preempt_enable();
                        cpu
                    };
                    assert!(cpu < possible);
                }
            });
        }
        s.spawn(|| {
            for r in 0..remote_rounds {
                let target = CpuId((r % possible as u64) as u32);
                assert!(p.run_on_cpu(target, &mut || {
                    assert_eq!(p.current_cpu(), target, "runs as the target CPU");
                    bump(target.index());
                    // A nested section inside stays on the target.
                    let cpu = p.preempt_disable_cpu();
                    assert_eq!(cpu, target);
                    p.preempt_enable();
                }));
            }
        });
    });
    let total: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(total, threads as u64 * ITERS + remote_rounds, "lost updates");
}

#[test]
fn owners_and_remote_runners_never_share_a_cpu() {
    hammer(4, 0, 3, 2_000);
}

#[test]
fn threads_beyond_the_pool_borrow_cpus() {
    hammer(2, 0, 5, 500);
}

#[test]
fn threads_beyond_the_pool_share_the_overflow_cpus() {
    // Two owned CPUs, two overflow CPUs, six threads: four share the overflow CPUs, while a
    // remote runner runs as each of the four CPUs in turn.
    hammer(4, 2, 6, 2_000);
}

#[test]
fn each_thread_gets_its_own_cpu_and_exit_takes_it_offline() {
    let m = MachineBuilder::new().ram_mib(64).thread_cpus(8).build().unwrap();
    let p = m.platform();
    let cpus: Vec<CpuId> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    // Leave pages on this CPU's per-CPU lists.
                    let pages: Vec<_> = (0..20).map(|_| m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
                    for pg in pages {
                        // SAFETY: ours, unused afterwards.
                        unsafe { m.__free_pages(pg, Order::ZERO) };
                    }
                    let cpu = p.current_cpu();
                    assert!(p.cpu_online(cpu));
                    let cached: usize = m.zones().filter_map(|z| z.pageset(cpu.index())).map(|p| p.count()).sum();
                    assert!(cached > 0, "pages cached on the CPU");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    cpu
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut distinct = cpus.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four live threads, four CPUs: {cpus:?}");
    for cpu in cpus {
        assert!(!p.cpu_online(cpu), "CPU {cpu:?} offline after its thread exited");
        for z in m.zones() {
            if let Some(pcp) = z.pageset(cpu.index()) {
                assert_eq!(pcp.count(), 0, "CPU {cpu:?}'s lists drained at thread exit");
            }
        }
    }
    m.verify().expect("free lists consistent");
}

#[test]
fn a_thread_that_outlives_its_machine_exits_cleanly() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let m = std::sync::Arc::new(MachineBuilder::new().ram_mib(16).thread_cpus(2).build().unwrap());
    let mc = m.clone();
    let h = std::thread::spawn(move || {
        let p = mc.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
        // SAFETY: ours, unused afterwards.
        unsafe { mc.__free_pages(p, Order::ZERO) };
        drop(mc);
        ready_tx.send(()).unwrap();
        rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    // The last reference: the machine goes while a thread that owns one of its CPUs lives;
    // that thread's exit then has nothing to give back.
    drop(m);
    tx.send(()).unwrap();
    h.join().unwrap();
}

#[test]
fn warm_cpus_keep_their_caches_for_the_next_thread() {
    let m = MachineBuilder::new().ram_mib(64).thread_cpus(8).thread_cpus_warm(1).build().unwrap();
    let p = m.platform();
    let cached = |cpu: CpuId| -> usize { m.zones().filter_map(|z| z.pageset(cpu.index())).map(|p| p.count()).sum() };
    let leave_pages = || {
        let pages: Vec<_> = (0..20).map(|_| m.alloc_pages(Gfp::KERNEL, kmem::Order::ZERO).unwrap()).collect();
        for pg in pages {
            // SAFETY: ours, unused afterwards.
            unsafe { m.__free_pages(pg, kmem::Order::ZERO) };
        }
        p.current_cpu()
    };
    // Two threads exit while both CPUs are held: one stays warm, the other tears down.
    let barrier = std::sync::Barrier::new(2);
    let (a, b) = std::thread::scope(|s| {
        let h: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let cpu = leave_pages();
                    barrier.wait();
                    cpu
                })
            })
            .collect();
        let v: Vec<_> = h.into_iter().map(|h| h.join().unwrap()).collect();
        (v[0], v[1])
    });
    assert_ne!(a, b);
    let (warm, cold) = if cached(a) > 0 { (a, b) } else { (b, a) };
    assert!(cached(warm) > 0, "one CPU keeps its page lists");
    assert_eq!(cached(cold), 0, "the other went through the offline teardown");
    assert!(!p.cpu_online(warm) && !p.cpu_online(cold), "both are free");
    // The next thread takes the warm CPU, caches and all.
    let next = std::thread::scope(|s| s.spawn(|| p.current_cpu()).join().unwrap());
    assert_eq!(next, warm, "a new thread prefers the warm CPU");
    // Memory pressure still reaches a free warm CPU.
    m.drain_all_pages();
    assert_eq!(cached(warm), 0);
    m.verify().unwrap();
}

/// On an owned CPU, whose fast paths serve without a call, every `GFP_KERNEL` request in an
/// interrupt handler (which holds no section: only the fast paths' atomic-context test sends
/// it to the careful path) or under `preempt_disable` or `local_irq_save` is still reported
/// (and served), `GFP_ATOMIC` is not, and nothing is once the context ends.
#[test]
fn a_sleeping_allocation_on_an_owned_cpu_in_atomic_context_is_reported() {
    use kmem::{ReportKind, SlabFlags};
    let m = MachineBuilder::new().ram_mib(32).thread_cpus(2).build().unwrap();
    let c = m.kmem_cache_create("owned-atomic", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let sleeps = || m.report_count(ReportKind::SleepInAtomic);
    assert_eq!(sleeps(), 0);
    let round = |atomic: bool| {
        let gfp = if atomic { Gfp::ATOMIC } else { Gfp::KERNEL };
        let o = m.kmem_cache_alloc(&c, gfp).unwrap();
        (o, m.kmalloc(64, gfp).unwrap(), m.alloc_pages(gfp, Order::ZERO).unwrap())
    };
    let give_back = |(o, k, p): (std::ptr::NonNull<u8>, std::ptr::NonNull<u8>, kmem::PageRef<'_>)| {
        // SAFETY: all ours, freed once.
        unsafe {
            m.kmem_cache_free(&c, o);
            m.kfree(k.as_ptr());
            m.__free_pages(p, Order::ZERO);
        }
    };
    // Warm every fast path: the sheaves and the per-CPU page list then have what to give.
    for _ in 0..2 {
        give_back(round(false));
    }
    let g = m.preempt_disable();
    let kernel = round(false);
    let atomic = round(true);
    drop(g);
    assert_eq!(sleeps(), 3, "slab, kmalloc and page GFP_KERNEL under preempt_disable, GFP_ATOMIC not");
    give_back(kernel);
    give_back(atomic);
    let g = m.local_irq_save();
    let kernel = round(false);
    drop(g);
    assert_eq!(sleeps(), 6, "the same with interrupts off");
    give_back(kernel);
    let (kernel, atomic) = kmem_hosted::in_irq(|| (round(false), round(true)));
    assert_eq!(sleeps(), 9, "GFP_KERNEL in hard-IRQ context, GFP_ATOMIC not");
    give_back(kernel);
    give_back(atomic);
    let after = round(false);
    assert_eq!(sleeps(), 9, "nothing once the contexts end");
    give_back(after);
}

/// The owned CPU's fast pin (`Platform::try_pin_cpu`) declines inside every careful section
/// of its thread (the thread's fast gate, which each outermost careful entry closes:
/// `cpus/ctx.rs`), and pins again once the sections end (the first fast pin after them finds
/// the depth 0 and opens the gate), also after a careful section nested in a fast one.
#[test]
fn the_owned_fast_pin_declines_inside_careful_sections_and_returns_after() {
    let m = MachineBuilder::new().ram_mib(32).thread_cpus(2).build().unwrap();
    let p = m.platform();
    p.preempt_disable();
    p.preempt_enable();
    let fast_pins = |why: &str| {
        let pin = p.try_pin_cpu().unwrap_or_else(|| panic!("the fast pin is back {why}"));
        p.unpin_cpu_fast(pin);
    };
    fast_pins("once the thread owns its CPU");
    p.preempt_disable();
    assert!(p.try_pin_cpu().is_none(), "inside preempt_disable");
    p.preempt_disable();
    p.preempt_enable();
    assert!(p.try_pin_cpu().is_none(), "inside preempt_disable, after a nested section ended");
    p.preempt_enable();
    fast_pins("after preempt_enable");
    let irq = p.local_irq_save();
    assert!(p.try_pin_cpu().is_none(), "with interrupts off");
    p.local_irq_restore(irq);
    fast_pins("after local_irq_restore");
    let slow = p.pin_cpu();
    assert!(p.try_pin_cpu().is_none(), "inside pin_cpu");
    p.unpin_cpu(slow);
    fast_pins("after unpin_cpu");
    let own = p.current_cpu();
    for cpu in [own, CpuId(1 - own.0)] {
        assert!(p.run_on_cpu(cpu, &mut || assert!(p.try_pin_cpu().is_none(), "running on {cpu:?}")));
        fast_pins("after run_on_cpu");
    }
    let fast = p.try_pin_cpu().expect("fast pin");
    p.preempt_disable();
    p.preempt_enable();
    p.unpin_cpu_fast(fast);
    fast_pins("after a careful section nested in a fast one");
}

/// A CPU comes online as a thread takes it (`Kmem::cpu_up_prepare`), before any fast path
/// runs on it: here the thread's first section is a page allocation's (careful, no slab
/// fill), and its next a slab fast path, which reads the CPU's fast table untested.
#[test]
fn a_cpu_taken_by_a_careful_section_is_up_before_its_first_fast_path() {
    let m = MachineBuilder::new().ram_mib(32).thread_cpus(4).build().unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
                let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
                // SAFETY: ours, freed once each.
                unsafe {
                    m.kfree(p.as_ptr());
                    m.__free_pages(page, Order::ZERO);
                }
                let q = m.kmalloc(64, Gfp::KERNEL).unwrap();
                assert_eq!(q, p, "the fast paths work on the new CPU");
                // SAFETY: as above.
                unsafe { m.kfree(q.as_ptr()) };
            });
        }
    });
    assert_eq!(m.report_count(kmem::ReportKind::SlabBug), 0);
}

/// A CPU-per-thread machine writes a CPU's per-CPU page lists as the CPU comes up, not at
/// boot (`boot/pagesets.rs`: 16 pages of a 256-CPU process machine's start-up). Until then
/// the CPU has no pageset to walk and `/proc/zoneinfo` shows the sizes it will start with;
/// once a thread takes it, or `run_on_cpu` borrows it, its lists work with the zone's sizes.
#[test]
fn a_cpu_s_page_lists_are_written_as_it_comes_up() {
    const CPUS: usize = 8;
    // 256 MiB: a zone of 32 MiB has a batch of 1, as a new pageset's.
    let m = MachineBuilder::new().ram_mib(256).thread_cpus(CPUS).build().unwrap();
    let p = m.platform();
    let mine = p.preempt_disable_cpu();
    p.preempt_enable();
    let zone = m.zones().max_by_key(|z| z.managed_pages()).expect("a zone");
    let written = |z: &kmem::mm::zone::Zone| (0..CPUS).filter(|&c| z.pageset(c).is_some()).count();
    assert_eq!(written(zone), 1, "only the building thread's CPU is up");
    let (batch, high) = {
        let own = zone.pageset(mine.index()).unwrap();
        (own.batch(), own.high())
    };
    assert!(batch > 1, "the zone's batch is set ({batch})");
    let mut zi = String::new();
    kmem::proc::zoneinfo(&m, &mut zi).unwrap();
    let cpu7 = zi.split("cpu: 7").nth(1).expect("CPU 7 listed");
    assert!(cpu7.contains(&format!("batch:    {batch}")), "CPU 7 shows its batch to come:{cpu7}");

    // A thread's CPU comes up: its pageset is written with the zone's sizes and holds pages.
    let cpu = std::thread::scope(|s| {
        s.spawn(|| {
            let cpu = p.preempt_disable_cpu();
            p.preempt_enable();
            let pages: Vec<_> = (0..4).map(|_| m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap()).collect();
            for page in pages {
                // SAFETY: ours, freed once.
                unsafe { m.__free_pages(page, Order::ZERO) };
            }
            let pcp = zone.pageset(cpu.index()).expect("written as the CPU came up");
            assert_eq!((pcp.batch(), pcp.high()), (batch, high));
            assert!(pcp.count() >= 4, "the frees went on the new CPU's lists");
            cpu
        })
        .join()
        .unwrap()
    });
    assert_ne!(cpu, mine);
    assert_eq!(written(zone), 2);

    // A CPU no thread took, borrowed: written first, then its lists serve the borrower.
    let never = (0..CPUS).find(|&c| zone.pageset(c).is_none()).unwrap();
    assert!(p.run_on_cpu(CpuId(never as u32), &mut || {
        let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
        // SAFETY: ours, freed once.
        unsafe { m.__free_pages(page, Order::ZERO) };
    }));
    let pcp = zone.pageset(never).expect("written before the borrower ran");
    assert_eq!(pcp.batch(), batch);
    assert!(m.verify().is_ok(), "{:?}", m.verify());
}
