//! The decision logic of `should_fail_ex`, without a machine.

use super::attr::{FaultAttr, Injected, TaskFault};

fn attr(probability: u32, interval: u64, times: i32, space: i32) -> FaultAttr {
    let a = FaultAttr::new();
    a.set_probability(probability);
    a.set_interval(interval);
    a.set_times(times);
    a.set_space(space);
    a
}

/// Which of `n` calls of `size` fail, by a task with nothing pending.
fn failures(a: &FaultAttr, n: usize, size: i64) -> [bool; 64] {
    let mut out = [false; 64];
    let mut t = TaskFault::default();
    for f in out.iter_mut().take(n) {
        *f = a.should_fail(size, &mut t, true).is_some();
    }
    out
}

fn count(a: &FaultAttr, n: usize, size: i64) -> usize {
    failures(a, n, size).iter().filter(|&&f| f).count()
}

#[test]
fn defaults_are_linux_initializer_and_inert() {
    let a = FaultAttr::new();
    assert_eq!((a.probability(), a.interval(), a.times(), a.space(), a.verbose()), (0, 1, 1, 0, 2));
    assert!(!a.task_filter());
    assert_eq!(count(&a, 64, 1), 0, "probability 0 never fails");
}

#[test]
fn times_limits_failures_and_minus_one_is_unlimited() {
    let a = attr(100, 1, 3, 0);
    let f = failures(&a, 10, 1);
    assert_eq!(&f[..4], &[true, true, true, false]);
    assert_eq!(a.times(), 0);
    let a = attr(100, 1, -1, 0);
    assert_eq!(count(&a, 50, 1), 50);
    assert_eq!(a.times(), -1);
}

#[test]
fn interval_fails_every_nth_eligible_call() {
    let a = attr(100, 4, -1, 0);
    let f = failures(&a, 12, 1);
    let at: [usize; 3] = [3, 7, 11];
    for (i, &x) in f.iter().take(12).enumerate() {
        assert_eq!(x, at.contains(&i), "call {i}");
    }
}

#[test]
fn space_is_used_up_before_any_failure() {
    // Linux: while space > size, space -= size and the call passes.
    let a = attr(100, 1, -1, 100);
    let f = failures(&a, 6, 30);
    assert_eq!(&f[..6], &[false, false, false, true, true, true]);
    assert_eq!(a.space(), 10);
}

#[test]
fn probability_is_about_right_and_repeats_with_the_seed() {
    let a = attr(30, 1, -1, 0);
    a.set_seed(42);
    let mut t = TaskFault::default();
    let runs: usize = (0..10_000).filter(|_| a.should_fail(1, &mut t, true).is_some()).count();
    assert!((2_700..3_300).contains(&runs), "30% of 10000 calls failed {runs} times");
    let b = attr(30, 1, -1, 0);
    b.set_seed(42);
    a.set_seed(42);
    assert_eq!(failures(&a, 64, 1), failures(&b, 64, 1), "same seed, same calls fail");
}

#[test]
fn checks_run_in_linux_order() {
    // times 0 stops before space is consumed.
    let a = attr(100, 1, 0, 100);
    assert_eq!(count(&a, 5, 10), 0);
    assert_eq!(a.space(), 100, "times is tested before space");
    // Calls eaten by space do not advance the interval count.
    let a = attr(100, 2, -1, 25);
    let f = failures(&a, 6, 10);
    assert_eq!(&f[..6], &[false, false, false, true, false, true]);
}

#[test]
fn fail_nth_overrides_probability_and_counts_down() {
    let a = FaultAttr::new(); // probability 0
    let mut t = TaskFault { fail_nth: 3, make_it_fail: false };
    assert!(a.should_fail(1, &mut t, true).is_none());
    assert_eq!(t.fail_nth, 2);
    assert!(a.should_fail(1, &mut t, true).is_none());
    let got = a.should_fail(1, &mut t, true).expect("the third call fails");
    assert_eq!(got, Injected { interval: 1, probability: 0, space: 0, times: 1, verbose: 2 });
    assert_eq!(t.fail_nth, 0);
    assert_eq!(a.times(), 0, "a fail-nth failure uses up times as Linux's does");
    assert!(a.should_fail(1, &mut t, true).is_none());
    // Not in task context: fail-nth is not consulted.
    let mut t = TaskFault { fail_nth: 1, make_it_fail: false };
    assert!(a.should_fail(1, &mut t, false).is_none());
    assert_eq!(t.fail_nth, 1);
}

#[test]
fn task_filter_needs_make_it_fail() {
    let a = attr(100, 1, -1, 0);
    a.set_task_filter(true);
    let mut plain = TaskFault::default();
    let mut marked = TaskFault { fail_nth: 0, make_it_fail: true };
    assert!(a.should_fail(1, &mut plain, true).is_none());
    assert!(a.should_fail(1, &mut marked, true).is_some());
    assert!(a.should_fail(1, &mut marked, false).is_none(), "interrupts are not tasks");
}

#[test]
fn boot_string_parses_as_setup_fault_attr() {
    let a = FaultAttr::new();
    a.setup("10,50,4096,-1").unwrap();
    assert_eq!((a.interval(), a.probability(), a.space(), a.times()), (10, 50, 4096, -1));
    a.setup("2, 100 ,0,5,junk").unwrap();
    assert_eq!((a.interval(), a.probability(), a.space(), a.times()), (2, 100, 0, 5));
    for bad in ["", "1,2,3", "a,1,0,1", "1,1,0,x", "-1,1,0,1"] {
        assert!(a.setup(bad).is_err(), "{bad:?}");
    }
    assert_eq!((a.interval(), a.probability(), a.space(), a.times()), (2, 100, 0, 5), "unchanged");
    a.setup("1,250,0,1").unwrap();
    assert_eq!(a.probability(), 100, "capped at 100%");
}

/// The default platform hooks (no per-task state): the machine's one cell holds fail-nth;
/// arming clears what the fast paths test, disarming restores it, caches included.
#[test]
fn machine_cell_and_armed_flags() {
    use crate::gfp::Gfp;
    use crate::platform::Platform;
    use crate::slab::{KmemCache, SlabFlags};
    use crate::sync::Ordering;
    use crate::Order;

    let m = crate::testing::machine(32);
    let c = m.kmem_cache_create("fi_unit", 48, 0, SlabFlags::NONE, None).unwrap();
    let keys = |m: &crate::Kmem<_>| {
        let mut v = crate::testing::std::vec::Vec::new();
        m.for_each_cache(|k: &KmemCache| v.push(k.machine.load(Ordering::Relaxed)));
        v
    };
    let id = m.machine_id();
    assert!(m.page_fast_ok());
    assert!(m.fault_state().is_none(), "nothing configured: no state allocated");
    assert_eq!(m.fail_nth(), 0);
    assert!(keys(&m).iter().all(|&k| k == id), "nothing armed: every key is the machine id");

    m.set_fail_nth(2).unwrap();
    assert_eq!(m.platform().task_fault(), None, "the test platform keeps no task state");
    assert_eq!(m.fail_nth(), 2, "kept in the machine's cell");
    assert!(!m.page_fast_ok(), "a pending fail-nth arms fail_page_alloc");
    assert!(keys(&m).iter().all(|&k| k == id | KmemCache::ARMED), "and every cache's key");
    // fail_page_alloc's defaults ignore sleeping and order-0 requests: not counted.
    let p = m.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.fail_nth(), 2);
    m.fail_page_alloc().unwrap().set_ignore_gfp_wait(false).set_min_order(0).set_verbose(0);
    let q = m.alloc(Gfp::KERNEL, Order::ZERO).unwrap();
    assert_eq!(m.fail_nth(), 1);
    let e = m.alloc(Gfp::KERNEL, Order::ZERO).unwrap_err();
    assert_eq!(e.kind, crate::AllocErrorKind::FaultInjected);
    assert_eq!(m.fail_nth(), 0);
    // Fired: still armed until the next configuration call, which disarms.
    assert!(!m.page_fast_ok());
    m.set_fail_nth(0).unwrap();
    assert!(m.page_fast_ok());
    assert!(keys(&m).iter().all(|&k| k == id));
    // Probability arms only its own capability.
    m.failslab().unwrap().set_probability(50);
    assert!(m.page_fast_ok());
    assert!(keys(&m).iter().all(|&k| k == id | KmemCache::ARMED));
    m.failslab().unwrap().set_probability(0);
    assert!(keys(&m).iter().all(|&k| k == id));
    // pcp off keeps the page fast path off whatever fault injection says.
    m.set_pcp_enabled(false);
    assert!(!m.page_fast_ok());
    m.set_pcp_enabled(true);
    assert!(m.page_fast_ok());
    drop((p, q, c));
}
