//! `struct fault_attr` and `should_fail_ex()`: one fault-injection capability's settings and
//! its decision, as `lib/fault-inject.c` makes it.
//!
//! The order of the tests is Linux's: the task's `fail-nth` first (it overrides everything
//! else), then `probability == 0` (off), `task-filter`, `times`, `space`, `interval`,
//! `probability`. The random draw is a splitmix64 stream per attribute (seed
//! [`FaultAttr::set_seed`]), so a run with the same settings and the same sequence of calls
//! injects at the same calls.

#![forbid(unsafe_code)]

use crate::sync::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The settings of one capability (`failslab`, `fail_page_alloc`), Linux's `struct fault_attr`
/// minus the stack-trace filter. All fields are atomics: the decision is lock-free, and the
/// counters (`times`, `space`, the interval count) change as Linux's do, with races between
/// CPUs resolved the same loose way.
#[derive(Debug)]
pub struct FaultAttr {
    probability: AtomicU32,
    interval: AtomicU64,
    times: AtomicI32,
    space: AtomicI32,
    verbose: AtomicU8,
    task_filter: AtomicBool,
    count: AtomicU64,
    rng: AtomicU64,
}

/// The state of the current task that fault injection reads (Linux's `current->fail_nth` and
/// `current->make_it_fail`; see `Platform::task_fault`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskFault {
    /// `/proc/self/task/<tid>/fail-nth`: the N-th call of this task that reaches a
    /// capability's decision fails (0: none pending).
    pub fail_nth: u32,
    /// `/proc/<pid>/make-it-fail`: the task is eligible when `task-filter` is set.
    pub make_it_fail: bool,
}

/// What `fail_dump()` prints about a decision that injected a failure (the values before
/// `times` is decremented, as Linux reads them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Injected {
    pub interval: u64,
    pub probability: u32,
    pub space: i32,
    pub times: i32,
    pub verbose: u8,
}

/// A boot string that is not `<interval>,<probability>,<space>,<times>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultParseError;

impl core::fmt::Display for FaultParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FAULT_INJECTION: failed to parse arguments")
    }
}

impl core::error::Error for FaultParseError {}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for FaultAttr {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultAttr {
    crate::sync::const_fn_unless_loom! {
        /// `FAULT_ATTR_INITIALIZER`: interval 1, times 1, probability 0 (off), space 0,
        /// verbose 2, no task filter.
        pub fn new() -> Self {
            Self {
                probability: AtomicU32::new(0),
                interval: AtomicU64::new(1),
                times: AtomicI32::new(1),
                space: AtomicI32::new(0),
                verbose: AtomicU8::new(2),
                task_filter: AtomicBool::new(false),
                count: AtomicU64::new(0),
                rng: AtomicU64::new(GOLDEN),
            }
        }
    }

    /// Likelihood of a failure, in percent (0: off unless a task's fail-nth is pending).
    pub fn probability(&self) -> u32 {
        self.probability.load(Ordering::Relaxed)
    }
    /// Calls that pass every other test between two failures (1: every one).
    pub fn interval(&self) -> u64 {
        self.interval.load(Ordering::Relaxed)
    }
    /// Failures left (-1: no limit).
    pub fn times(&self) -> i32 {
        self.times.load(Ordering::Relaxed)
    }
    /// Budget of bytes (or pages) that calls consume before any may fail.
    pub fn space(&self) -> i32 {
        self.space.load(Ordering::Relaxed)
    }
    /// 0: silent; 1: one message per failure; 2: the message and a call trace.
    pub fn verbose(&self) -> u8 {
        self.verbose.load(Ordering::Relaxed)
    }
    /// Only tasks with `make-it-fail` are failed.
    pub fn task_filter(&self) -> bool {
        self.task_filter.load(Ordering::Relaxed)
    }

    pub(crate) fn set_probability(&self, percent: u32) {
        self.probability.store(percent.min(100), Ordering::Relaxed);
    }
    pub(crate) fn set_interval(&self, interval: u64) {
        self.interval.store(interval, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }
    pub(crate) fn set_times(&self, times: i32) {
        self.times.store(times, Ordering::Relaxed);
    }
    pub(crate) fn set_space(&self, space: i32) {
        self.space.store(space, Ordering::Relaxed);
    }
    pub(crate) fn set_verbose(&self, verbose: u8) {
        self.verbose.store(verbose.min(2), Ordering::Relaxed);
    }
    pub(crate) fn set_task_filter(&self, on: bool) {
        self.task_filter.store(on, Ordering::Relaxed);
    }
    pub(crate) fn set_seed(&self, seed: u64) {
        self.rng.store(seed, Ordering::Relaxed);
    }

    /// `setup_fault_attr()`: `<interval>,<probability>,<space>,<times>` (the `failslab=` and
    /// `fail_page_alloc=` boot options). Nothing changes on a parse error.
    pub(crate) fn setup(&self, s: &str) -> Result<(), FaultParseError> {
        // sscanf("%lu,%lu,%d,%d"): anything after the fourth number is ignored.
        let mut it = s.trim().split(',').map(str::trim);
        let mut next = || it.next().ok_or(FaultParseError);
        let interval: u64 = next()?.parse().map_err(|_| FaultParseError)?;
        let probability: u64 = next()?.parse().map_err(|_| FaultParseError)?;
        let space: i32 = next()?.parse().map_err(|_| FaultParseError)?;
        let times: i32 = next()?.parse().map_err(|_| FaultParseError)?;
        self.set_probability(probability.min(100) as u32);
        self.set_interval(interval);
        self.set_times(times);
        self.set_space(space);
        Ok(())
    }

    /// `get_random_u32_below(100)` from this attribute's stream (splitmix64).
    fn random_below_100(&self) -> u32 {
        let mut z = self.rng.fetch_add(GOLDEN, Ordering::Relaxed).wrapping_add(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (((z >> 32) * 100) >> 32) as u32
    }

    /// `should_fail_ex(attr, size, flags)` for a call of `size` units by a task whose state is
    /// `task` (updated in place: a pending fail-nth counts down). `in_task`: not in interrupt
    /// context (fail-nth and task-filter apply to tasks only). `Some` when the call must fail.
    pub(crate) fn should_fail(&self, size: i64, task: &mut TaskFault, in_task: bool) -> Option<Injected> {
        if in_task && task.fail_nth != 0 {
            task.fail_nth -= 1;
            if task.fail_nth == 0 {
                return Some(self.fail());
            }
            return None;
        }
        let probability = self.probability();
        if probability == 0 {
            return None;
        }
        if self.task_filter() && !(in_task && task.make_it_fail) {
            return None;
        }
        if self.times() == 0 {
            return None;
        }
        let space = self.space() as i64;
        if space > size {
            self.space.fetch_sub(size.min(i32::MAX as i64) as i32, Ordering::Relaxed);
            return None;
        }
        let interval = self.interval();
        if interval > 1 {
            let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            if n % interval != 0 {
                return None;
            }
        }
        if probability <= self.random_below_100() {
            return None;
        }
        Some(self.fail())
    }

    /// The `fail:` label: what to print, then `times` goes down unless it is -1 (never below 0).
    fn fail(&self) -> Injected {
        let got = Injected {
            interval: self.interval(),
            probability: self.probability(),
            space: self.space(),
            times: self.times(),
            verbose: self.verbose(),
        };
        // atomic_dec_not_zero, unless unlimited.
        let _ = self.times.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| match t {
            -1 | 0 => None,
            t => Some(t - 1),
        });
        got
    }
}
