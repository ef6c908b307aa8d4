//! Synchronisation primitives of the core, behind one facade.
//!
//! Everything in the core that is shared between CPUs goes through this module, so that a
//! `cfg(loom)` build can swap in loom's model-checked atomics without touching the users.
//!
//! Under `cfg(loom)` (`scripts/loom.sh`) the atomics are loom's, `spin_loop` yields to loom's
//! scheduler (a spinning model thread must let the holder run, or the model never ends), and
//! constructors of structures made of atomics stop being `const`: loom registers each atomic
//! with the model checker when it is created, which a constant context cannot do. Such
//! constructors are written with `const_fn_unless_loom!` and build their arrays with
//! `array_of!`. A loom build is for the models only (`*::loom_tests`); a machine is never
//! booted under it.

mod spinlock;

#[cfg(all(test, loom))]
mod loom_tests;

pub use spinlock::{RawSpinLock, SpinGuard};

#[cfg(not(loom))]
pub use core::sync::atomic::fence;
#[cfg(loom)]
pub use loom::sync::atomic::fence;

#[cfg(not(loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI32, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// Busy-wait hint (`cpu_relax` of a spinning waiter). Under loom it yields to the scheduler.
#[cfg(not(loom))]
pub use core::hint::spin_loop;

/// Marks the branch that calls it as rare (stable `core::hint::cold_path` is newer than the
/// workspace's minimum Rust): the call, inlined, leaves the branch weights behind, so the
/// compiler lays the other side out as the straight path.
#[cold]
#[inline(always)]
pub(crate) fn cold_path() {}

/// Busy-wait hint (`cpu_relax` of a spinning waiter). Under loom it yields to the scheduler.
#[cfg(loom)]
pub use loom::hint::spin_loop;

/// Defines a function that is `const` in ordinary builds and a plain `fn` under `cfg(loom)`,
/// whose atomics cannot be created in a constant context. For constructors of structures made
/// of facade atomics:
///
/// ```ignore
/// const_fn_unless_loom! {
///     /// An empty list.
///     pub fn new() -> Self { Self { len: AtomicUsize::new(0) } }
/// }
/// ```
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $name:ident $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $name $($rest)*
        #[cfg(loom)]
        $(#[$attr])* $vis fn $name $($rest)*
    };
}
pub(crate) use const_fn_unless_loom;

/// `[value; N]` for a value that is not `Copy` (atomics, structures of atomics): an inline
/// `const` repeat in ordinary builds (usable in `const fn`), `core::array::from_fn` under
/// `cfg(loom)`, where every element must be created at run time.
macro_rules! array_of {
    ($e:expr; $n:expr) => {{
        #[cfg(not(loom))]
        let a = [const { $e }; $n];
        #[cfg(loom)]
        let a = core::array::from_fn::<_, { $n }, _>(|_| $e);
        a
    }};
}
pub(crate) use array_of;
