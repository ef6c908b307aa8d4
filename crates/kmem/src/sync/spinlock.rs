//! A test-and-test-and-set spinlock with IRQ save/restore, as `spin_lock_irqsave`.
//!
//! The lock protects no data of its own: the structures it guards (zone free lists) are made of
//! atomics whose *writers* must hold the lock; they take a `&SpinGuard` as proof. This keeps
//! the policy code that edits them free of `unsafe` while readers of counters stay lock-free.

use super::{const_fn_unless_loom, spin_loop, AtomicBool, Ordering};
use crate::platform::{IrqState, Platform};

/// A raw spinlock. Acquire it with [`RawSpinLock::lock_irqsave`].
#[derive(Debug, Default)]
pub struct RawSpinLock {
    locked: AtomicBool,
}

impl RawSpinLock {
    const_fn_unless_loom! {
        /// An unlocked lock.
        pub fn new() -> Self {
            Self { locked: AtomicBool::new(false) }
        }
    }

    /// Disables local interrupts, then spins until the lock is ours (`spin_lock_irqsave`).
    /// While spinning, the platform's `cpu_relax` is called so a hosted thread can yield to a
    /// preempted holder.
    #[inline]
    pub fn lock_irqsave<'a, P: Platform>(&'a self, platform: &'a P) -> SpinGuard<'a, P> {
        let irq = platform.local_irq_save();
        platform.preempt_disable();
        if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_slow(platform);
        }
        SpinGuard { lock: self, platform, irq, nolock: false }
    }

    /// `spin_trylock()` for the any-context paths (`kmalloc_nolock`, `alloc_pages_nolock`):
    /// takes the lock if it is free, touching neither preemption nor interrupts, so it never
    /// waits for anything (on a hosted machine, disabling interrupts takes the CPU, which may
    /// mean waiting). Safe because every context that may interrupt the holder takes the
    /// lock the same way (a trylock that fails), never by spinning.
    #[inline]
    pub fn try_lock_nolock<'a, P: Platform>(&'a self, platform: &'a P) -> Option<SpinGuard<'a, P>> {
        self.try_lock_raw().then(|| SpinGuard { lock: self, platform, irq: IrqState(false), nolock: true })
    }

    #[cold]
    fn lock_slow<P: Platform>(&self, platform: &P) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins % 64 == 0 {
                    platform.cpu_relax();
                } else {
                    spin_loop();
                }
            }
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }

    /// Takes the lock if it is free, without touching preemption or interrupts (the caller
    /// has pinned its CPU already). Pair with [`RawSpinLock::unlock`].
    #[inline]
    pub fn try_lock_raw(&self) -> bool {
        self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Spins until the lock is ours, without touching preemption or interrupts (the caller has
    /// disabled them). Pair with [`RawSpinLock::unlock`].
    #[inline]
    pub fn lock_raw<P: Platform>(&self, platform: &P) {
        if !self.try_lock_raw() {
            self.lock_slow(platform);
        }
    }

    /// Releases a lock taken with [`RawSpinLock::try_lock_raw`] or [`RawSpinLock::lock_raw`].
    /// Releasing a lock the caller does not hold breaks mutual exclusion of whatever the lock
    /// guards (kmem guards only atomics with its locks, so this is a logic error, not UB).
    #[inline]
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// True while some CPU holds the lock (for assertions).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// Proof that a [`RawSpinLock`] is held; unlocks and restores IRQs on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct SpinGuard<'a, P: Platform> {
    lock: &'a RawSpinLock,
    platform: &'a P,
    irq: IrqState,
    /// Taken with [`RawSpinLock::try_lock_nolock`]: nothing to restore.
    nolock: bool,
}

impl<P: Platform> SpinGuard<'_, P> {
    /// True if this guard holds `lock` (the `lockdep_assert_held` of kmem).
    #[inline]
    pub fn holds(&self, lock: &RawSpinLock) -> bool {
        core::ptr::eq(self.lock, lock)
    }
}

impl<P: Platform> Drop for SpinGuard<'_, P> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        if self.nolock {
            return;
        }
        self.platform.preempt_enable();
        self.platform.local_irq_restore(self.irq);
    }
}

impl<P: Platform> core::fmt::Debug for SpinGuard<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinGuard").field("lock", &(self.lock as *const _)).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::RawSpinLock;
    use crate::testing;

    #[test]
    fn try_lock_nolock_takes_a_free_lock_and_leaves_a_held_one_alone() {
        let k = testing::machine(16);
        let lock = RawSpinLock::new();
        let g = lock.try_lock_nolock(k.platform()).expect("free");
        assert!(lock.is_locked());
        assert!(lock.try_lock_nolock(k.platform()).is_none(), "held: refused");
        assert!(lock.is_locked(), "a refused trylock must not release the holder's lock");
        drop(g);
        assert!(!lock.is_locked());
        let held = lock.lock_irqsave(k.platform());
        assert!(lock.try_lock_nolock(k.platform()).is_none());
        assert!(lock.is_locked(), "still the holder's");
        drop(held);
    }
}
