//! Fault injection (`failslab`, `fail_page_alloc`, fail-nth; `kmem::fault`): the filters and
//! messages, the armed fast paths, the boot options, and systematic fail-nth sweeps over
//! compound operations: for N = 1, 2, ... the N-th allocation of the operation fails, until
//! it succeeds with nothing injected. Every failure must come back as an error, leave
//! nothing behind (free pages, vmalloc areas and per-CPU allocations back to the start once
//! kmem's caches are shrunk) and leave the machine working, with no report.

use std::ptr::NonNull;

use kmem::{AllocErrorKind, Gfp, KmemCache, Order, ReportKind, SlabAllocError, SlabFlags, PAGE_SIZE};
use kmem_hosted::{Machine, MachineBuilder};

use crate::common;
use common::assert_still_works;

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(64).cpus(4).vmalloc_size(256 << 20).build().unwrap()
}

/// Every failure of a sleeping request may be injected, every order, quietly.
fn inject_everything(m: &Machine) {
    m.failslab().unwrap().set_ignore_gfp_wait(false).set_verbose(0);
    m.fail_page_alloc().unwrap().set_ignore_gfp_wait(false).set_min_order(0).set_verbose(0);
}

/// Reports of anything but an allocation failure (the per-CPU allocator's
/// `percpu: allocation failed` warning is what Linux prints for one).
fn problems(m: &Machine) -> u64 {
    let warnings = m.reports().texts(ReportKind::Warning);
    let other_warnings = warnings.iter().filter(|t| !t.starts_with("percpu: allocation failed")).count();
    [ReportKind::BadPage, ReportKind::SleepInAtomic, ReportKind::SlabBug]
        .iter()
        .map(|&k| m.report_count(k))
        .sum::<u64>()
        + other_warnings as u64
}

/// What is in use once kmem has given back all it keeps for later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    free_pages: usize,
    vmalloc_busy: usize,
    percpu_allocs: usize,
}

fn usage(m: &Machine) -> Usage {
    let free = || m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum::<usize>();
    let mut last = usize::MAX;
    while free() != last {
        last = free();
        m.vm_unmap_aliases();
        m.pcpu_free_empty_chunks();
        let mut caches = Vec::new();
        m.for_each_cache(|c| caches.push(c as *const KmemCache as usize));
        for c in caches {
            // SAFETY: kmem's and the test's caches outlive this call (none is destroyed meanwhile).
            m.kmem_cache_shrink(unsafe { &*(c as *const KmemCache) });
        }
        m.drain_all_pages();
    }
    // Page-table pages vmalloc keeps for the platform are never given back: count them used.
    Usage {
        free_pages: last + m.vmalloc_stats().pagetables,
        vmalloc_busy: m.vmalloc_stats().busy_areas,
        percpu_allocs: m.pcpu_stats().nr_alloc,
    }
}

/// Runs `op` with its N-th allocation failing, N = 1, 2, ..., until it succeeds with nothing
/// injected. `op` returns whether it succeeded, and frees what it made either way. Returns
/// the number of failure points found.
fn sweep(m: &Machine, what: &str, mut op: impl FnMut(&Machine) -> bool) -> u32 {
    // Once, unobserved, to create what first uses create and keep (caches, tables), and the
    // vmalloc layer's caches, which a fallback path may be the first to need.
    assert!(op(m), "{what} fails with nothing injected");
    // SAFETY: ours, unused afterwards.
    unsafe { m.vfree(m.vmalloc(PAGE_SIZE).unwrap().as_ptr()) };
    inject_everything(m);
    let start = usage(m);
    let mut points = 0;
    for n in 1.. {
        assert!(n < 10_000, "{what}: no end to the failure points");
        m.set_fail_nth(n).unwrap();
        let ok = op(m);
        let fired = m.fail_nth() == 0;
        m.set_fail_nth(0).unwrap();
        if !fired {
            assert!(ok, "{what} failed with nothing injected (N = {n})");
            break;
        }
        points += 1;
        let now = usage(m);
        assert_eq!(now, start, "{what}: leak after failing allocation {n} (ok: {ok})");
        assert_eq!(problems(m), 0, "{what}: a report at N = {n}: {:?}", m.reports().last());
        m.verify().unwrap();
    }
    assert!(points > 0, "{what} made no allocation that could fail");
    assert_still_works(m);
    points
}

#[test]
fn sweep_kmem_cache_create() {
    let m = machine();
    let points = sweep(&m, "kmem_cache_create", |m| {
        match m.kmem_cache_create("fi_sweep", 200, 0, SlabFlags::NO_MERGE, None) {
            Ok(c) => {
                let p = m.kmem_cache_alloc(&c, Gfp::KERNEL);
                if let Ok(p) = p {
                    // SAFETY: from `c`, unused.
                    unsafe { m.kmem_cache_free(&c, p) };
                }
                drop(c);
                p.is_ok()
            }
            Err(_) => false,
        }
    });
    assert!(points >= 2, "creating a cache and its first object allocate more than once: {points}");
}

#[test]
fn sweep_vmalloc_100_pages() {
    let m = machine();
    let points = sweep(&m, "vmalloc(100 pages)", |m| match m.vmalloc(100 * PAGE_SIZE) {
        Ok(p) => {
            // SAFETY: our 100 pages.
            unsafe { p.as_ptr().write_bytes(0x5a, 100 * PAGE_SIZE) };
            // SAFETY: ours, unused afterwards.
            unsafe { m.vfree(p.as_ptr()) };
            true
        }
        Err(_) => false,
    });
    assert!(points >= 3, "the area, its page array, its pages: {points}");
}

#[test]
fn sweep_krealloc_chain() {
    let m = machine();
    sweep(&m, "krealloc chain", |m| {
        let Ok(mut p) = m.kmalloc(8, Gfp::KERNEL) else { return false };
        // SAFETY: 8 bytes of ours.
        unsafe { p.as_ptr().write_bytes(0xc3, 8) };
        let mut ok = true;
        for size in [16usize, 64, 200, 1024, 5000, 20_000, 100, 3 * PAGE_SIZE] {
            // SAFETY: `p` is our live block.
            match unsafe { m.krealloc(p.as_ptr(), size, Gfp::KERNEL) } {
                Ok(q) => p = q,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
            // SAFETY: at least 8 bytes of ours, the first 8 carried over.
            assert_eq!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 8) }, &[0xc3; 8], "krealloc lost data");
        }
        // SAFETY: on failure krealloc leaves the old block live; ours either way.
        unsafe { m.kfree(p.as_ptr()) };
        ok
    });
}

#[test]
fn sweep_alloc_percpu() {
    let m = machine();
    sweep(&m, "alloc_percpu", |m| {
        // A whole unit: never fits the first chunk, so a new chunk is made each time.
        match m.__alloc_percpu(kmem::percpu::PCPU_MIN_UNIT_SIZE, 8) {
            Ok(p) => {
                // SAFETY: live and ours, unused afterwards.
                unsafe { m.free_percpu(p) };
                true
            }
            Err(_) => false,
        }
    });
}

#[test]
fn sweep_kernel_stack() {
    let m = machine();
    // Four at once: more than the CPU keeps cached (Linux's NR_CACHED_STACKS is 2), so
    // some are made each time.
    sweep(&m, "alloc_thread_stack", |m| {
        let mut stacks = Vec::new();
        for _ in 0..4 {
            match m.alloc_thread_stack(None) {
                Ok(s) => {
                    // SAFETY: the stack's bytes are ours.
                    unsafe { s.base().write_bytes(0x11, kmem::THREAD_SIZE) };
                    stacks.push(s);
                }
                Err(_) => return false,
            }
        }
        true
    });
}

#[test]
fn sweep_kvmalloc_and_bulk() {
    let m = machine();
    // kvmalloc: kmalloc first (quietly, without retrying), vmalloc when that fails.
    sweep(&m, "kvmalloc(256 KiB)", |m| match m.kvmalloc(256 << 10, Gfp::KERNEL) {
        Ok(p) => {
            // SAFETY: ours, unused afterwards.
            unsafe { m.kvfree(p.as_ptr()) };
            true
        }
        Err(_) => false,
    });
    let c = m.kmem_cache_create("fi_bulk", 512, 0, SlabFlags::NONE, None).unwrap();
    // All or nothing: a failure frees what the call had taken.
    sweep(&m, "kmem_cache_alloc_bulk(64)", |m| {
        let mut objs = [None; 64];
        if m.kmem_cache_alloc_bulk(&c, Gfp::KERNEL, &mut objs) == 0 {
            assert!(objs.iter().all(Option::is_none), "a failed bulk allocation hands out nothing");
            return false;
        }
        // SAFETY: every object is ours, from `c`.
        unsafe { m.kmem_cache_free_bulk(&c, &mut objs) };
        true
    });
}

#[test]
fn sweep_debug_cache() {
    // slub_debug caches allocate through their own path (no sheaves, tracking, poisoning).
    let m = MachineBuilder::new().ram_mib(64).cpus(1).slub_debug("FZPU,fi_dbg_sweep").build().unwrap();
    sweep(&m, "debug cache create + alloc", |m| {
        let Ok(c) = m.kmem_cache_create("fi_dbg_sweep", 300, 0, SlabFlags::NONE, None) else { return false };
        let mut got = Vec::new();
        let mut ok = true;
        for _ in 0..40 {
            match m.kmem_cache_alloc(&c, Gfp::KERNEL) {
                Ok(p) => got.push(p),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        for p in got {
            // SAFETY: from `c`, unused.
            unsafe { m.kmem_cache_free(&c, p) };
        }
        drop(c);
        ok
    });
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

#[test]
fn nofail_is_never_injected() {
    let m = machine();
    let c = m.kmem_cache_create("fi_nofail", 64, 0, SlabFlags::NONE, None).unwrap();
    inject_everything(&m);
    m.failslab().unwrap().set_probability(100).set_times(-1);
    m.fail_page_alloc().unwrap().set_probability(100).set_times(-1);
    assert_eq!(m.kmem_cache_alloc(&c, Gfp::KERNEL), Err(SlabAllocError::FaultInjected));
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL | Gfp::NOFAIL).unwrap();
    let page = m.alloc_pages(Gfp::KERNEL | Gfp::NOFAIL, Order::of(1)).unwrap();
    assert_eq!(m.alloc_pages(Gfp::KERNEL, Order::of(1)).unwrap_err().kind, AllocErrorKind::FaultInjected);
    m.set_fail_nth(1).unwrap();
    let q = m.kmem_cache_alloc(&c, Gfp::KERNEL | Gfp::NOFAIL).unwrap();
    assert_eq!(m.fail_nth(), 1, "a NOFAIL call does not reach the decision: fail-nth not counted");
    m.set_fail_nth(0).unwrap();
    // SAFETY: ours, unused afterwards.
    unsafe {
        m.kmem_cache_free(&c, p);
        m.kmem_cache_free(&c, q);
        m.__free_pages(page, Order::of(1));
    }
    m.failslab().unwrap().set_probability(0);
    m.fail_page_alloc().unwrap().set_probability(0);
    drop(c);
    assert_eq!(problems(&m), 0);
}

#[test]
fn armed_failslab_reaches_the_fast_path_and_disarms() {
    let m = machine();
    let c = m.kmem_cache_create("fi_fast", 64, 0, SlabFlags::NONE, None).unwrap();
    // Warm the CPU's sheaf: the next allocation would be a fast-path pop.
    let p = m.kmem_cache_alloc(&c, Gfp::ATOMIC).unwrap();
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&c, p) };
    m.failslab().unwrap().set_probability(100).set_times(-1).set_verbose(0);
    for _ in 0..10 {
        assert_eq!(m.kmem_cache_alloc(&c, Gfp::ATOMIC), Err(SlabAllocError::FaultInjected));
        assert_eq!(c.alloc(Gfp::ATOMIC), Err(SlabAllocError::FaultInjected), "through the handle too");
        assert!(m.kmalloc(64, Gfp::ATOMIC).is_err());
    }
    // A cache created while armed is armed too.
    let d = m.kmem_cache_create("fi_fast_new", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    assert_eq!(m.kmem_cache_alloc(&d, Gfp::ATOMIC), Err(SlabAllocError::FaultInjected));
    m.failslab().unwrap().set_probability(0);
    let p = m.kmem_cache_alloc(&c, Gfp::ATOMIC).unwrap();
    let q = m.kmem_cache_alloc(&d, Gfp::ATOMIC).unwrap();
    // SAFETY: ours.
    unsafe {
        m.kmem_cache_free(&c, p);
        m.kmem_cache_free(&d, q);
    }
}

#[test]
fn armed_fail_page_alloc_reaches_order_zero_fast_path() {
    let m = machine();
    m.fail_page_alloc().unwrap().set_min_order(0).set_verbose(0).set_probability(100).set_times(2);
    // Order 0 from the per-CPU list would not reach prepare_alloc unless armed.
    let e = m.alloc_pages(Gfp::ATOMIC, Order::ZERO).unwrap_err();
    assert_eq!(e.kind, AllocErrorKind::FaultInjected);
    assert!(m.__get_free_pages(Gfp::ATOMIC, Order::ZERO).is_err());
    // times is used up.
    let p = m.alloc_pages(Gfp::ATOMIC, Order::ZERO).unwrap();
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert_eq!(m.fail_page_alloc().unwrap().attr().times(), 0);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0, "no warn_alloc for an injected failure");
    // set_pcp_enabled keeps the flag right both ways.
    m.set_pcp_enabled(false);
    m.set_pcp_enabled(true);
    m.fail_page_alloc().unwrap().set_times(1);
    assert!(m.alloc_pages(Gfp::ATOMIC, Order::ZERO).is_err(), "still armed after set_pcp_enabled");
}

#[test]
fn ignore_gfp_wait_highmem_and_min_order() {
    let m = machine();
    m.fail_page_alloc().unwrap().set_probability(100).set_times(-1).set_verbose(0);
    // Defaults: ignore-gfp-wait on, min-order 1.
    assert!(m.fail_page_alloc().unwrap().ignore_gfp_wait() && m.fail_page_alloc().unwrap().ignore_gfp_highmem());
    assert_eq!(m.fail_page_alloc().unwrap().min_order(), 1);
    let sleeping = m.alloc_pages(Gfp::KERNEL, Order::of(2)).unwrap();
    let small = m.alloc_pages(Gfp::ATOMIC, Order::ZERO).unwrap();
    let high = m.alloc_pages(Gfp::ATOMIC | Gfp::HIGHMEM, Order::of(1)).unwrap();
    assert!(m.alloc_pages(Gfp::ATOMIC, Order::of(1)).is_err());
    m.fail_page_alloc().unwrap().set_min_order(3);
    let below = m.alloc_pages(Gfp::ATOMIC, Order::of(2)).unwrap();
    assert!(m.alloc_pages(Gfp::ATOMIC, Order::of(3)).is_err());
    m.fail_page_alloc().unwrap().set_ignore_gfp_wait(false);
    assert!(m.alloc_pages(Gfp::KERNEL, Order::of(3)).is_err());
    m.fail_page_alloc().unwrap().set_ignore_gfp_highmem(false);
    assert!(m.alloc_pages(Gfp::ATOMIC | Gfp::HIGHMEM, Order::of(3)).is_err());
    m.fail_page_alloc().unwrap().set_probability(0);
    // SAFETY: ours.
    unsafe {
        m.__free_pages(sleeping, Order::of(2));
        m.__free_pages(small, Order::ZERO);
        m.__free_pages(high, Order::of(1));
        m.__free_pages(below, Order::of(2));
    }
    // failslab's ignore-gfp-wait (default on).
    let c = m.kmem_cache_create("fi_wait", 32, 0, SlabFlags::NONE, None).unwrap();
    m.failslab().unwrap().set_probability(100).set_times(-1).set_verbose(0);
    assert!(m.failslab().unwrap().ignore_gfp_wait());
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(m.kmem_cache_alloc(&c, Gfp::NOWAIT), Err(SlabAllocError::FaultInjected));
    m.failslab().unwrap().set_probability(0);
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&c, p) };
}

#[test]
fn cache_filter_fails_only_slab_failslab_caches() {
    let m = machine();
    let plain = m.kmem_cache_create("fi_plain", 96, 0, SlabFlags::NONE, None).unwrap();
    let opted = m.kmem_cache_create("fi_opted", 96, 0, SlabFlags::FAILSLAB, None).unwrap();
    m.failslab().unwrap().set_cache_filter(true).set_probability(100).set_times(-1).set_verbose(0);
    assert!(m.failslab().unwrap().cache_filter());
    let p = m.kmem_cache_alloc(&plain, Gfp::ATOMIC).unwrap();
    let k = m.kmalloc(96, Gfp::ATOMIC).expect("kmalloc caches lack SLAB_FAILSLAB");
    // SAFETY: ours.
    unsafe { m.kfree(k.as_ptr()) };
    assert_eq!(m.kmem_cache_alloc(&opted, Gfp::ATOMIC), Err(SlabAllocError::FaultInjected));
    m.failslab().unwrap().set_cache_filter(false);
    assert_eq!(m.kmem_cache_alloc(&plain, Gfp::ATOMIC), Err(SlabAllocError::FaultInjected));
    m.failslab().unwrap().set_probability(0);
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&plain, p) };
}

#[test]
fn slub_debug_a_opts_a_cache_in() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).slub_debug("A,fi_dbg").build().unwrap();
    let dbg = m.kmem_cache_create("fi_dbg", 64, 0, SlabFlags::NONE, None).unwrap();
    let other = m.kmem_cache_create("fi_other", 64, 0, SlabFlags::NONE, None).unwrap();
    m.failslab().unwrap().set_cache_filter(true).set_probability(100).set_times(-1).set_verbose(0);
    assert_eq!(m.kmem_cache_alloc(&dbg, Gfp::ATOMIC), Err(SlabAllocError::FaultInjected));
    let p = m.kmem_cache_alloc(&other, Gfp::ATOMIC).unwrap();
    m.failslab().unwrap().set_probability(0);
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&other, p) };
}

#[test]
fn verbose_messages_are_linuxs() {
    let m = machine();
    let c = m.kmem_cache_create("fi_msg", 128, 0, SlabFlags::NONE, None).unwrap();
    m.failslab().unwrap().set_probability(100).set_times(3).set_verbose(1);
    let info = m.report_count(ReportKind::Info);
    assert!(m.kmem_cache_alloc(&c, Gfp::ATOMIC).is_err());
    assert_eq!(m.report_count(ReportKind::Info), info + 1);
    assert_eq!(
        m.reports().last().unwrap(),
        "FAULT_INJECTION: forcing a failure.\nname failslab, interval 1, probability 100, space 0, times 3\n"
    );
    // __GFP_NOWARN: failed, silently.
    assert!(m.kmem_cache_alloc(&c, Gfp::ATOMIC | Gfp::NOWARN).is_err());
    assert_eq!(m.report_count(ReportKind::Info), info + 1);
    // verbose 2: the message and a trace naming the hook and the call site.
    m.failslab().unwrap().set_verbose(2);
    assert!(m.kmem_cache_alloc(&c, Gfp::ATOMIC).is_err());
    let text = m.reports().last().unwrap();
    assert!(text.starts_with(
        "FAULT_INJECTION: forcing a failure.\nname failslab, interval 1, probability 100, space 0, times 1\nCPU: "
    ));
    assert!(text.contains("Call Trace:\n <TASK>\n dump_stack_lvl\n should_fail_ex\n should_failslab\n"), "{text}");
    assert!(text.contains("fault_injection.rs:"), "the caller's location: {text}");
    // times is used up: nothing fails, nothing is said.
    let p = m.kmem_cache_alloc(&c, Gfp::ATOMIC).unwrap();
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&c, p) };
    // verbose 0: silent.
    m.fail_page_alloc().unwrap().set_probability(100).set_verbose(0);
    let n = m.report_count(ReportKind::Info);
    assert!(m.alloc_pages(Gfp::ATOMIC, Order::of(1)).is_err());
    assert_eq!(m.report_count(ReportKind::Info), n);
    // fail-nth prints the attribute as it is (probability 0, the brief's example line).
    m.fail_page_alloc().unwrap().set_probability(0).set_times(1).set_verbose(1).set_ignore_gfp_wait(false);
    m.set_fail_nth(1).unwrap();
    assert!(m.alloc_pages(Gfp::KERNEL, Order::of(1)).is_err());
    assert_eq!(
        m.reports().last().unwrap(),
        "FAULT_INJECTION: forcing a failure.\nname fail_page_alloc, interval 1, probability 0, space 0, times 1\n"
    );
    assert_eq!(problems(&m), 0);
}

#[test]
fn task_filter_and_make_it_fail() {
    let m = machine();
    m.fail_page_alloc().unwrap().set_probability(100).set_times(-1).set_verbose(0).set_task_filter(true);
    let p = m.alloc_pages(Gfp::ATOMIC, Order::of(1)).unwrap();
    m.set_make_it_fail(true).unwrap();
    assert!(m.alloc_pages(Gfp::ATOMIC, Order::of(1)).is_err());
    // Another thread is another task.
    std::thread::scope(|s| {
        s.spawn(|| {
            let q = m.alloc_pages(Gfp::ATOMIC, Order::of(1)).unwrap();
            // SAFETY: ours.
            unsafe { m.__free_pages(q, Order::of(1)) };
        });
    });
    m.set_make_it_fail(false).unwrap();
    m.fail_page_alloc().unwrap().set_probability(0);
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::of(1)) };
}

#[test]
fn fail_nth_is_per_thread() {
    let m = machine();
    inject_everything(&m);
    m.set_fail_nth(1).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(m.fail_nth(), 0, "another thread has none pending");
            let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
            // SAFETY: ours.
            unsafe { m.kfree(p.as_ptr()) };
        });
    });
    assert_eq!(m.fail_nth(), 1);
    assert!(m.kmalloc(64, Gfp::KERNEL).is_err());
    assert_eq!(m.fail_nth(), 0);
    let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(p.as_ptr()) };
}

#[test]
fn boot_options_in_linux_syntax() {
    // failslab=<interval>,<probability>,<space>,<times>: every 3rd eligible call, no limit.
    let m =
        MachineBuilder::new().ram_mib(64).cpus(1).failslab("3,100,0,-1").fail_page_alloc("1,100,0,2").build().unwrap();
    let a = m.failslab().unwrap().attr();
    assert_eq!((a.interval(), a.probability(), a.space(), a.times()), (3, 100, 0, -1));
    // fail_page_alloc=1,100,0,2: the first two eligible calls fail, then times is used up.
    assert!(m.alloc_pages(Gfp::ATOMIC | Gfp::NOWARN, Order::of(1)).is_err());
    assert!(m.alloc_pages(Gfp::ATOMIC | Gfp::NOWARN, Order::of(1)).is_err());
    let p = m.alloc_pages(Gfp::ATOMIC, Order::of(1)).unwrap();
    // SAFETY: ours.
    unsafe { m.__free_pages(p, Order::of(1)) };
    let c = m.kmem_cache_create("fi_boot", 64, 0, SlabFlags::NONE, None).unwrap();
    let got: Vec<bool> = (0..6)
        .map(|_| match m.kmem_cache_alloc(&c, Gfp::ATOMIC | Gfp::NOWARN) {
            Ok(p) => {
                // SAFETY: ours.
                unsafe { m.kmem_cache_free(&c, p) };
                true
            }
            Err(_) => false,
        })
        .collect();
    assert_eq!(got, [true, true, false, true, true, false]);
    // Sleeping requests are left alone (ignore-gfp-wait), so boot and kmem's own caches work.
    let p = m.kmalloc(100, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(p.as_ptr()) };
    // A string that does not parse: Linux's warning, nothing armed.
    let bad = MachineBuilder::new().ram_mib(64).cpus(1).fail_page_alloc("10,100").build().unwrap();
    assert_eq!(bad.report_count(ReportKind::Warning), 1);
    assert!(bad.reports().texts(ReportKind::Warning)[0].contains("FAULT_INJECTION: failed to parse arguments"));
    assert_eq!(bad.fail_page_alloc().unwrap().attr().probability(), 0);
}

#[test]
fn boot_with_everything_failing_still_boots() {
    // Boot's own allocations are carved or sleeping (GFP_KERNEL, left alone by the default
    // ignore-gfp-wait): a machine that fails every eligible call still comes up and serves
    // sleeping requests.
    let m =
        MachineBuilder::new().ram_mib(64).cpus(2).failslab("1,100,0,-1").fail_page_alloc("1,100,0,-1").build().unwrap();
    m.failslab().unwrap().set_verbose(0);
    assert!(m.kmalloc(64, Gfp::ATOMIC).is_err());
    let c = m.kmem_cache_create("fi_boot_all", 64, 0, SlabFlags::NONE, None).unwrap();
    let p: NonNull<u8> = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&c, p) };
    drop(c);
    m.failslab().unwrap().set_probability(0);
    m.fail_page_alloc().unwrap().set_probability(0);
    assert_still_works(&m);
}

#[test]
#[should_panic(expected = "leak after failing allocation 1")]
fn the_sweep_catches_a_leaky_error_path() {
    // An operation whose error path forgets a page: the sweep must say so.
    let m = machine();
    sweep(&m, "leaky", |m| {
        // NOFAIL: never injected, never counted by fail-nth.
        let page = m.alloc_pages(Gfp::KERNEL | Gfp::NOFAIL, Order::ZERO).unwrap();
        match m.kmalloc(5000, Gfp::KERNEL) {
            Ok(p) => {
                // SAFETY: ours, unused afterwards.
                unsafe {
                    m.kfree(p.as_ptr());
                    m.__free_pages(page, Order::ZERO);
                }
                true
            }
            Err(_) => false, // the page leaks
        }
    });
}

/// kmem-alloc's `malloc` enters through `kmalloc_try_fast`: armed failslab sends it to the
/// careful path (where the hook runs) on a machine whose threads own their CPUs, the one
/// shape where the fast path serves at all.
#[test]
fn armed_failslab_reaches_kmalloc_try_fast() {
    let m = MachineBuilder::new().ram_mib(64).thread_cpus(4).build().unwrap();
    let warm = m.kmalloc(64, Gfp::ATOMIC).unwrap();
    // SAFETY: ours, not used afterwards.
    unsafe { m.kfree(warm.as_ptr()) };
    let p = m.kmalloc_try_fast(64, Gfp::ATOMIC).expect("warm: served on the fast path");
    m.failslab().unwrap().set_probability(100).set_times(-1).set_verbose(0);
    assert!(m.kmalloc_try_fast(64, Gfp::ATOMIC).is_none(), "armed: the careful path's");
    assert!(m.kmalloc(64, Gfp::ATOMIC).is_err());
    m.failslab().unwrap().set_probability(0);
    // Disarming gives the CPUs' class entries back lazily: the class's next allocation on
    // this CPU is careful and fills it, the one after is fast again.
    let r = m.kmalloc(64, Gfp::ATOMIC).expect("disarmed");
    let q = m.kmalloc_try_fast(64, Gfp::ATOMIC).expect("disarmed: the fast path again");
    // SAFETY: ours, not used afterwards.
    unsafe {
        m.kfree(p.as_ptr());
        m.kfree(q.as_ptr());
        m.kfree(r.as_ptr());
    }
}
