//! Reports: Linux-format messages about misuse and failures, counted per kind.
//!
//! Every report is counted in the machine (tests assert on [`Reports::count`]) and then handed
//! to [`Platform::report`] unless its rate limit is exhausted, as `printk_ratelimited` would
//! drop it. Counting never stops; only the text is throttled.

#![forbid(unsafe_code)]

use core::fmt;

use crate::machine::Kmem;
use crate::platform::{Platform, ReportKind};
use crate::sync::{array_of, const_fn_unless_loom, AtomicU64, Ordering};

impl<P: Platform> Kmem<P> {
    /// A handle of another machine (a cache, a per-CPU pointer, a page reference) was
    /// passed to `func` of `file`: one Linux-style `WARNING` line, counted as
    /// [`ReportKind::Warning`]. The caller then refuses the call, changing nothing on
    /// either machine.
    #[cold]
    #[inline(never)]
    pub(crate) fn other_machine(&self, file: &str, func: &str, what: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        let p = self.platform();
        let (cpu, pid) = (p.current_cpu().0, p.current_task().pid);
        self.report(ReportKind::Warning, &|w| {
            write!(w, "WARNING: CPU: {cpu} PID: {pid} at {file} {func}: ")?;
            what(w)?;
            writeln!(w, " belongs to another machine")
        });
    }
}

/// Per-kind counters and rate limits of one machine.
#[derive(Debug)]
pub struct Reports {
    counts: [AtomicU64; ReportKind::COUNT],
    bad_page_limit: RateLimit,
    alloc_fail_limit: RateLimit,
}

impl Default for Reports {
    fn default() -> Self {
        Self::new()
    }
}

impl Reports {
    const_fn_unless_loom! {
        /// Zeroed counters; rate limits as Linux's (`bad_page`: 60 per minute; `warn_alloc`: 10
        /// per 5 s, `DEFAULT_RATELIMIT_BURST` over `DEFAULT_RATELIMIT_INTERVAL`).
        pub fn new() -> Self {
            Self {
                counts: array_of![AtomicU64::new(0); ReportKind::COUNT],
                bad_page_limit: RateLimit::new(60_000, 60),
                alloc_fail_limit: RateLimit::new(5_000, 10),
            }
        }
    }

    /// How many reports of `kind` this machine has made.
    pub fn count(&self, kind: ReportKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Counts a report and, unless rate-limited, delivers its text.
    pub fn emit<P: Platform>(&self, platform: &P, kind: ReportKind, body: &dyn Fn(&mut dyn fmt::Write) -> fmt::Result) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        let limit = match kind {
            ReportKind::BadPage => Some(&self.bad_page_limit),
            ReportKind::PageAllocFailure => Some(&self.alloc_fail_limit),
            _ => None,
        };
        if limit.is_none_or(|l| l.allow(platform.now_ns())) {
            platform.report(kind, body);
        }
    }
}

/// `struct ratelimit_state`: at most `burst` events per `interval_ms` milliseconds. The
/// constants are 32-bit: the machine state that holds two of these is counted to the byte by
/// the golden /proc tests' boot layout.
#[derive(Debug)]
struct RateLimit {
    interval_ms: u32,
    burst: u32,
    window_start: AtomicU64,
    used: AtomicU64,
}

impl RateLimit {
    const_fn_unless_loom! {
        fn new(interval_ms: u32, burst: u32) -> Self {
            Self { interval_ms, burst, window_start: AtomicU64::new(0), used: AtomicU64::new(0) }
        }
    }

    fn allow(&self, now: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) >= self.interval_ms as u64 * 1_000_000
            && self.window_start.compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < self.burst as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_bursts_then_refills() {
        const MS: u64 = 1_000_000;
        let r = RateLimit::new(100, 3);
        assert!(r.allow(1000 * MS));
        assert!(r.allow(1001 * MS));
        assert!(r.allow(1002 * MS));
        assert!(!r.allow(1003 * MS));
        assert!(!r.allow(1099 * MS + MS / 2));
        assert!(r.allow(1100 * MS));
    }
}
