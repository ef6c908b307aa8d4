//! The configuration handles: Linux's debugfs files of `failslab` and `fail_page_alloc`
//! as methods. Every setter re-evaluates the armed flags (module docs).

#![forbid(unsafe_code)]

use super::attr::{FaultAttr, FaultParseError};
use super::FaultState;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::Ordering;

/// `/sys/kernel/debug/failslab/`: from [`Kmem::failslab`].
#[derive(Clone, Copy)]
pub struct FailslabHandle<'m, P: Platform> {
    pub(super) kmem: &'m Kmem<P>,
    pub(super) f: &'m FaultState,
}

/// `/sys/kernel/debug/fail_page_alloc/`: from [`Kmem::fail_page_alloc`].
#[derive(Clone, Copy)]
pub struct FailPageAllocHandle<'m, P: Platform> {
    pub(super) kmem: &'m Kmem<P>,
    pub(super) f: &'m FaultState,
}

/// The files every capability has.
macro_rules! common_files {
    ($handle:ident, $field:ident) => {
        impl<'m, P: Platform> $handle<'m, P> {
            fn attr_ref(&self) -> &'m FaultAttr {
                &self.f.$field.attr
            }
            /// The attribute's current values (read-only).
            pub fn attr(&self) -> &'m FaultAttr {
                self.attr_ref()
            }
            /// `probability`: percent of eligible calls that fail (capped at 100; 0 disarms
            /// unless a fail-nth is pending).
            pub fn set_probability(&self, percent: u32) -> &Self {
                self.attr_ref().set_probability(percent);
                self.kmem.fault_rearm();
                self
            }
            /// `interval`: only every `interval`-th call that passes the other tests may
            /// fail (resets the count).
            pub fn set_interval(&self, interval: u64) -> &Self {
                self.attr_ref().set_interval(interval);
                self
            }
            /// `times`: failures left (-1: no limit).
            pub fn set_times(&self, times: i32) -> &Self {
                self.attr_ref().set_times(times);
                self
            }
            /// `space`: a budget that calls use up (bytes for failslab, pages for
            /// fail_page_alloc) before any may fail.
            pub fn set_space(&self, space: i32) -> &Self {
                self.attr_ref().set_space(space);
                self
            }
            /// `verbose`: 0 silent, 1 one message per failure, 2 the message and a trace.
            pub fn set_verbose(&self, verbose: u8) -> &Self {
                self.attr_ref().set_verbose(verbose);
                self
            }
            /// `task-filter`: only tasks with `make-it-fail` ([`Kmem::set_make_it_fail`]).
            pub fn set_task_filter(&self, on: bool) -> &Self {
                self.attr_ref().set_task_filter(on);
                self
            }
            /// Seeds the attribute's random stream (kmem's addition: runs repeat exactly).
            pub fn set_seed(&self, seed: u64) -> &Self {
                self.attr_ref().set_seed(seed);
                self
            }
            /// The boot option's syntax, `<interval>,<probability>,<space>,<times>`
            /// (`setup_fault_attr`); nothing changes on a parse error.
            pub fn setup(&self, s: &str) -> Result<&Self, FaultParseError> {
                self.attr_ref().setup(s)?;
                self.kmem.fault_rearm();
                Ok(self)
            }
            /// `ignore-gfp-wait`: leave allocations that may sleep (`__GFP_DIRECT_RECLAIM`)
            /// alone (default on).
            pub fn set_ignore_gfp_wait(&self, on: bool) -> &Self {
                self.f.$field.ignore_gfp_reclaim.store(on, Ordering::Relaxed);
                self
            }
            /// Whether `ignore-gfp-wait` is on.
            pub fn ignore_gfp_wait(&self) -> bool {
                self.f.$field.ignore_gfp_reclaim.load(Ordering::Relaxed)
            }
        }

        impl<P: Platform> core::fmt::Debug for $handle<'_, P> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($handle)).field("attr", self.attr_ref()).finish()
            }
        }
    };
}

common_files!(FailslabHandle, failslab);
common_files!(FailPageAllocHandle, page);

impl<P: Platform> FailslabHandle<'_, P> {
    /// `cache-filter`: only caches created with `SLAB_FAILSLAB` (or given it by
    /// `slub_debug=A`) fail.
    pub fn set_cache_filter(&self, on: bool) -> &Self {
        self.f.failslab.cache_filter.store(on, Ordering::Relaxed);
        self
    }
    /// Whether `cache-filter` is on.
    pub fn cache_filter(&self) -> bool {
        self.f.failslab.cache_filter.load(Ordering::Relaxed)
    }
}

impl<P: Platform> FailPageAllocHandle<'_, P> {
    /// `ignore-gfp-highmem`: leave `__GFP_HIGHMEM` allocations alone (default on).
    pub fn set_ignore_gfp_highmem(&self, on: bool) -> &Self {
        self.f.page.ignore_gfp_highmem.store(on, Ordering::Relaxed);
        self
    }
    /// Whether `ignore-gfp-highmem` is on.
    pub fn ignore_gfp_highmem(&self) -> bool {
        self.f.page.ignore_gfp_highmem.load(Ordering::Relaxed)
    }
    /// `min-order`: smaller requests never fail (default 1).
    pub fn set_min_order(&self, order: u32) -> &Self {
        self.f.page.min_order.store(order, Ordering::Relaxed);
        self
    }
    /// The `min-order` setting.
    pub fn min_order(&self) -> u32 {
        self.f.page.min_order.load(Ordering::Relaxed)
    }
}
