//! A lock without a guard, for the few global structures of this crate that live outside
//! the machine's CPU sections (the huge-mapping cache, growth and giving memory back):
//! `fork_prepare` must take them and the parent and child handlers give them back, which
//! `std::sync::Mutex` (guard-scoped) cannot do. Waiters yield; no holder blocks or allocates.

use core::sync::atomic::{AtomicBool, Ordering};

/// A test-and-test-and-set lock whose waiters yield the CPU.
#[derive(Debug)]
pub(crate) struct RawLock(AtomicBool);

impl RawLock {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Takes the lock, yielding while another thread holds it.
    pub(crate) fn lock(&self) {
        while self.0.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.0.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> bool {
        self.0.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Gives the lock back.
    ///
    /// # Safety
    ///
    /// The caller holds the lock (took it with `lock` or a successful `try_lock`, or is the
    /// forked child of the thread that did).
    pub(crate) unsafe fn unlock(&self) {
        debug_assert!(self.0.load(Ordering::Relaxed), "unlock of a RawLock nobody holds");
        self.0.store(false, Ordering::Release);
    }
}
