//! Where a machine keeps its fault-injection state: a small [`FaultCell`] in the machine
//! state (the armed flags the hooks test, and the address of the rest), and the
//! [`FaultState`] itself, allocated with kmalloc the first time anything is configured.
//! A machine that never uses fault injection spends 16 bytes on it.

use super::FaultState;
use crate::alloc::KBox;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// The part of the fault-injection state that lives in the machine state.
#[derive(Debug)]
pub(crate) struct FaultCell {
    /// Address of the machine's [`FaultState`]; 0 until the first configuration.
    state: AtomicUsize,
    /// failslab armed: caches' keys carry the armed bit (module docs).
    pub(crate) slab_armed: AtomicBool,
    /// fail_page_alloc armed: `page_fast` is false.
    pub(crate) page_armed: AtomicBool,
}

/// The first configuration call could not allocate the fault-injection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultStateError;

impl core::fmt::Display for FaultStateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no memory for the fault-injection state")
    }
}

impl core::error::Error for FaultStateError {}

impl FaultCell {
    crate::sync::const_fn_unless_loom! {
        /// Nothing configured, nothing armed.
        pub(crate) fn new() -> Self {
            Self { state: AtomicUsize::new(0), slab_armed: AtomicBool::new(false), page_armed: AtomicBool::new(false) }
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// The machine's fault-injection state, if anything was ever configured.
    #[inline]
    pub(crate) fn fault_state(&self) -> Option<&FaultState> {
        let p = self.state().fault.state.load(Ordering::Acquire);
        if p == 0 {
            return None;
        }
        // SAFETY: a non-zero address is a FaultState written by `fault_state_init` (published
        // with Release) in a kmalloc block that is never freed while the machine lives.
        Some(unsafe { &*(p as *const FaultState) })
    }

    /// The machine's fault-injection state, allocated (`GFP_KERNEL`) on first use.
    pub(crate) fn fault_state_init(&self) -> Result<&FaultState, FaultStateError> {
        if let Some(f) = self.fault_state() {
            return Ok(f);
        }
        let b = KBox::new(self, FaultState::new(), Gfp::KERNEL | Gfp::NOWARN).map_err(|_| FaultStateError)?;
        let p = KBox::into_raw(b);
        let cell = &self.state().fault.state;
        if let Err(_other) = cell.compare_exchange(0, p.as_ptr() as usize, Ordering::AcqRel, Ordering::Acquire) {
            // Another thread installed one first: ours goes back.
            // SAFETY: `p` came from `KBox::into_raw` just above and was never shared.
            drop(unsafe { KBox::<P, FaultState>::from_raw(self, p) });
        }
        self.fault_state().ok_or(FaultStateError)
    }
}
