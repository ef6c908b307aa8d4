//! Reclaim on the hosted platform: the wait queue `__GFP_NOFAIL` allocations sleep on, the
//! per-thread `PF_MEMALLOC` flag, and kswapd threads owned by the machine.
//!
//! - Free-memory waiters sleep on one condition variable per machine: the core evaluates
//!   its condition under the mutex (`Platform::wait_for_free_memory`), frees that reach the
//!   buddy lists while someone sleeps take the mutex and notify every sleeper, so no wake-up
//!   is lost between a sleeper's check and its sleep.
//! - kswapd ([`crate::MachineBuilder::kswapd`], off by default so that tests and programs
//!   that do not ask for background reclaim stay deterministic): one thread per node, named
//!   `kswapd<N>`, started after boot and stopped and joined when the [`crate::Machine`]
//!   drops. `Platform::wake_kswapd` sets the node's bit and notifies; the thread runs
//!   [`kmem::Kmem::kswapd_run_once`] until [`kmem::Kmem::kswapd_try_to_sleep`] lets it sleep.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use kmem::Kmem;

use crate::platform::HostedPlatform;

/// `PF_MEMALLOC` of the calling thread.
pub(crate) fn in_reclaim() -> bool {
    crate::cpus::in_reclaim()
}

/// Sets `PF_MEMALLOC` of the calling thread; returns the previous value.
pub(crate) fn set_in_reclaim(on: bool) -> bool {
    crate::cpus::set_in_reclaim(on)
}

#[derive(Debug, Default)]
struct KswapdState {
    /// Nodes with a wake-up not taken yet.
    wake: u64,
    /// Nodes whose kswapd is working.
    busy: u64,
    stop: bool,
}

/// The reclaim state a machine's platform shares with its kswapd threads.
#[derive(Debug, Default)]
pub(crate) struct HostedReclaim {
    free_lock: Mutex<()>,
    free_cv: Condvar,
    kswapd_on: std::sync::atomic::AtomicBool,
    kswapd: Mutex<KswapdState>,
    kswapd_cv: Condvar,
    idle_cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HostedReclaim {
    /// `Platform::wait_for_free_memory`.
    pub(crate) fn wait_for_free_memory(&self, ready: &dyn Fn() -> bool) {
        let mut g = lock(&self.free_lock);
        while !ready() {
            g = self.free_cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// `Platform::wake_free_memory_waiters`.
    pub(crate) fn wake_free_memory_waiters(&self) {
        let _g = lock(&self.free_lock);
        self.free_cv.notify_all();
    }

    /// `Platform::wake_kswapd`: true if this machine runs kswapd threads.
    pub(crate) fn wake_kswapd(&self, nid: usize) -> bool {
        if !self.kswapd_on.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let mut st = lock(&self.kswapd);
        st.wake |= 1 << (nid % 64);
        self.kswapd_cv.notify_all();
        true
    }

    /// Blocks until no kswapd of the machine has work pending or in progress.
    pub(crate) fn wait_kswapd_idle(&self) {
        let mut st = lock(&self.kswapd);
        while !st.stop && (st.wake | st.busy) != 0 {
            st = self.idle_cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The kswapd threads of a machine.
#[derive(Debug, Default)]
pub(crate) struct Kswapd {
    threads: Vec<JoinHandle<()>>,
    shared: Option<Arc<HostedReclaim>>,
}

impl Kswapd {
    /// Starts one kswapd per node of `kmem`.
    ///
    /// # Safety
    ///
    /// The threads use an alias of `kmem`: the returned value must be stopped
    /// ([`Kswapd::stop`]) before the machine's state and RAM go away.
    pub(crate) unsafe fn start(kmem: &Kmem<HostedPlatform>) -> Kswapd {
        let shared = kmem.platform().reclaim().clone();
        shared.kswapd_on.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut threads = Vec::new();
        for nid in 0..kmem.nr_nodes() {
            // SAFETY: the alias lives in the thread, which `stop` joins before the machine's
            // state and RAM go away (the caller's contract).
            let alias = unsafe { kmem.alias() };
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("kswapd{nid}"))
                .spawn(move || kswapd_thread(&alias, &shared, nid))
                .expect("spawn kswapd");
            threads.push(t);
        }
        Kswapd { threads, shared: Some(shared) }
    }

    /// Stops and joins the threads.
    pub(crate) fn stop(&mut self) {
        if let Some(s) = self.shared.take() {
            lock(&s.kswapd).stop = true;
            s.kswapd_cv.notify_all();
            s.idle_cv.notify_all();
            s.kswapd_on.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `kswapd()`: sleep until woken, balance the node, try to sleep.
fn kswapd_thread(kmem: &Kmem<HostedPlatform>, s: &HostedReclaim, nid: usize) {
    let bit = 1u64 << (nid % 64);
    set_in_reclaim(true);
    loop {
        {
            let mut st = lock(&s.kswapd);
            while st.wake & bit == 0 && !st.stop {
                st = s.kswapd_cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                return;
            }
            st.wake &= !bit;
            st.busy |= bit;
        }
        // The housekeeping point for RCU (`kmem::rcu`): memory that waits for a grace period
        // (kfree_rcu blocks, TYPESAFE_BY_RCU slabs, call_rcu callbacks) is freed here too.
        kmem.rcu_poll();
        loop {
            kmem.kswapd_run_once(nid);
            if kmem.kswapd_try_to_sleep(nid) || lock(&s.kswapd).stop {
                break;
            }
        }
        let mut st = lock(&s.kswapd);
        st.busy &= !bit;
        s.idle_cv.notify_all();
    }
}
