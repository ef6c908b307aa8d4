//! The lock of the replay's live tables ([`crate::oom`]): a flag and the data, cheaper than a
//! `std::sync::Mutex` on the replay's path (one atomic swap and a release store per lock; no
//! poison check, which reads a thread-local on every lock). The replaying thread takes it a
//! few times per operation and is the only user in practice; the machine's callbacks only
//! [`TableLock::try_lock`], so a blocking [`TableLock::lock`] spins at most while another
//! thread's callback counts or frees.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// `T` behind a flag.
pub(crate) struct TableLock<T> {
    busy: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, and a guard exists only while `busy` is
// set by its creator (acquire swap) until its drop (release store): one thread at a time, so
// `T: Send` is enough, as for `Mutex`.
unsafe impl<T: Send> Sync for TableLock<T> {}

impl<T> TableLock<T> {
    pub(crate) fn new(data: T) -> Self {
        Self { busy: AtomicBool::new(false), data: UnsafeCell::new(data) }
    }

    /// Takes the lock, spinning while another thread holds it.
    #[inline]
    pub(crate) fn lock(&self) -> TableGuard<'_, T> {
        while self.busy.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        TableGuard { lock: self }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<TableGuard<'_, T>> {
        (!self.busy.swap(true, Ordering::Acquire)).then_some(TableGuard { lock: self })
    }
}

/// The lock held; dropped (also on unwinding), it releases it.
pub(crate) struct TableGuard<'a, T> {
    lock: &'a TableLock<T>,
}

impl<T> Deref for TableGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock: no other reference to the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for TableGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for TableGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let l = TableLock::new(5);
        {
            let mut g = l.lock();
            *g += 1;
            assert!(l.try_lock().is_none(), "held");
        }
        assert_eq!(*l.try_lock().expect("free again"), 6);
        let l = std::sync::Arc::new(TableLock::new(0u64));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*l.lock(), 40_000);
    }
}
