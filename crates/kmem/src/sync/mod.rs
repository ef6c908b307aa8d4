//! Synchronisation primitives of the core, behind one facade.
//!
//! Everything in the core that is shared between CPUs goes through this module, so that a
//! `cfg(loom)` build can swap in loom's model-checked atomics without touching the users.

mod spinlock;

pub use spinlock::{RawSpinLock, SpinGuard};

#[cfg(not(loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicIsize, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI32, AtomicIsize, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
