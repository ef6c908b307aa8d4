//! The console: which reports a hosted machine echoes to stderr, and the rate limit on
//! them, as printk's console shows kernel messages.
//!
//! By default a machine echoes its problem reports (`BUG:`, `WARNING:`, allocation failures,
//! sleeping in atomic context) to stderr, as a kernel's console does, and keeps every report
//! in its [`crate::ReportLog`] whatever is echoed. Informational reports (`SLAB_TRACE`
//! lines) are not echoed unless asked for: a console booted with `quiet`. Echoes are limited to
//! Linux's `printk_ratelimit` (10 per 5 seconds); when a window with dropped echoes ends,
//! one line says how many were suppressed. Counting and logging are never limited.
//!
//! Tests that misuse kmem on purpose need nothing: the test harness captures stderr of
//! passing tests (and of the threads they spawn), so their reports show only when a test
//! fails. Use [`crate::MachineBuilder::quiet_reports`] where nothing may reach stderr.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kmem::ReportKind;

/// Which reports a machine echoes to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportEcho {
    /// None: reports are only counted and logged.
    #[default]
    Off,
    /// Problems: every kind but [`ReportKind::Info`] (the builder's default).
    Problems,
    /// Every report, informational ones (`SLAB_TRACE` lines) included.
    All,
}

impl ReportEcho {
    /// Whether a report of `kind` is echoed.
    pub fn shows(self, kind: ReportKind) -> bool {
        match self {
            Self::Off => false,
            Self::Problems => kind != ReportKind::Info,
            Self::All => true,
        }
    }
}

/// `DEFAULT_RATELIMIT_INTERVAL` and `DEFAULT_RATELIMIT_BURST`.
const INTERVAL: Duration = Duration::from_secs(5);
const BURST: u32 = 10;

/// The echo rate limit (`printk_ratelimit()`'s state) and its counters.
#[derive(Debug, Default)]
pub(crate) struct Console {
    window: Mutex<Option<(Instant, u32, u32)>>,
    echoed: AtomicU64,
    suppressed: AtomicU64,
}

impl Console {
    /// Whether one more echo may be written now; if a window with suppressed echoes just
    /// ended, also the line that says how many.
    pub(crate) fn admit(&self) -> (bool, Option<String>) {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let mut note = None;
        let (start, used, missed) = w.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= INTERVAL {
            if *missed > 0 {
                note = Some(format!(
                    "kmem: {missed} reports suppressed (printk_ratelimit); the report log has them all\n"
                ));
            }
            (*start, *used, *missed) = (now, 0, 0);
        }
        let ok = *used < BURST;
        if ok {
            *used += 1;
            self.echoed.fetch_add(1, Ordering::Relaxed);
        } else {
            *missed += 1;
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        (ok, note)
    }

    /// Reports echoed so far.
    pub(crate) fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// Reports not echoed because of the rate limit.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}
