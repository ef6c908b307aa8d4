//! `__GFP_NOFAIL`'s last resort: when reclaim and the OOM path found nothing, the allocation
//! sleeps until memory is freed, and is woken by the frees.
//!
//! Protocol (no lost wake-up). The sleeper counts itself in every zone it may allocate from
//! (`Zone::nofail_waiters`), then a SeqCst fence, then looks for memory (after draining the
//! per-CPU lists), and sleeps with [`Platform::wait_for_free_memory`] on the condition "some
//! zone passes the watermark the retry uses". A free that reaches the buddy lists releases
//! the zone lock, then a SeqCst fence, then reads the zone's count and, if non-zero, calls
//! [`Platform::wake_free_memory_waiters`]. Either the sleeper's check sees the pages, or the
//! free sees the sleeper; the platform evaluates the condition under the lock its wake-up
//! takes, so a wake-up between the check and the sleep is not lost.
//!
//! Frees that stay on a per-CPU list would not wake anyone, and the sleeper could not use
//! those pages: while anyone sleeps, every pageset's `high` is 0 (Linux lowers it the same way
//! for a zone under reclaim), so each free goes on to the buddy lists. The free fast path
//! itself is unchanged: it already compares the list's count with `high`.
//!
//! The loom model (`reclaim/loom_tests.rs`, `scripts/loom.sh`) runs this protocol (these
//! functions, the real zone, buddy lists and [`Zone::has_nofail_waiters`]) with a blocking
//! wait queue like the hosted platform's, and catches a free that looks for sleepers before
//! its pages are on the lists (the lost wake-up).

#![forbid(unsafe_code)]

use crate::machine::Kmem;
use crate::mm::zone::Zone;
use crate::platform::Platform;
use crate::sync::{fence, Ordering};

/// Calls its argument with every zone a request may allocate from.
pub(crate) type ForEachZone<'a> = &'a dyn Fn(&mut dyn FnMut(&Zone));

/// The sleeper's side of the protocol, before it looks for memory: counted in every zone it
/// may use, then the fence that pairs with [`Zone::has_nofail_waiters`]'s.
pub(crate) fn nofail_enter(zones: ForEachZone<'_>) {
    zones(&mut |z| {
        z.nofail_waiters.fetch_add(1, Ordering::SeqCst);
    });
    fence(Ordering::SeqCst);
}

/// The sleeper got its memory: no longer counted.
pub(crate) fn nofail_leave(zones: ForEachZone<'_>) {
    zones(&mut |z| {
        z.nofail_waiters.fetch_sub(1, Ordering::Relaxed);
    });
}

impl<P: Platform> Kmem<P> {
    /// Sleeps until `ready()` (some eligible zone has memory for the request) and the retry,
    /// `try_alloc`, succeeds. `zones` are the zones the request may use; `reclaim` runs direct
    /// reclaim once and returns the pages it got back.
    pub(crate) fn nofail_wait<T>(
        &self,
        zones: ForEachZone<'_>,
        ready: &dyn Fn() -> bool,
        try_alloc: &dyn Fn() -> Option<T>,
        reclaim: &dyn Fn() -> usize,
    ) -> T {
        self.count_reclaim(|e| &e.nofail_waits, 1);
        nofail_enter(zones);
        self.nofail_pcp(true);
        let mut progress_rounds = 0;
        let got = loop {
            self.drain_all_pages();
            if let Some(p) = try_alloc() {
                break p;
            }
            if progress_rounds < super::MAX_RECLAIM_RETRIES && reclaim() > 0 {
                progress_rounds += 1;
                continue;
            }
            progress_rounds = 0;
            self.platform().wait_for_free_memory(ready);
            self.count_reclaim(|e| &e.nofail_wakeups, 1);
        };
        nofail_leave(zones);
        self.nofail_pcp(false);
        got
    }

    /// The first sleeper lowers every pageset's `high` to 0, the last restores it.
    fn nofail_pcp(&self, sleeping: bool) {
        let r = self.reclaim();
        let g = r.nofail_lock.lock_irqsave(self.platform());
        let n = r.nofail_sleepers.load(Ordering::Relaxed);
        let n2 = if sleeping { n + 1 } else { n - 1 };
        r.nofail_sleepers.store(n2, Ordering::Relaxed);
        if (n == 0) != (n2 == 0) {
            for z in self.zones() {
                for cpu in 0..self.nr_cpus() {
                    if let Some(pcp) = z.pageset(cpu) {
                        pcp.set_nofail_sleeping(sleeping);
                    }
                }
            }
        }
        drop(g);
    }
}
