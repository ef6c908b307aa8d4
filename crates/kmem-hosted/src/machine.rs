//! [`Machine`]: a booted hosted machine, owning its RAM.

use std::ops::Deref;
use std::sync::Arc;

use kmem::{Kmem, MemRegion};

use crate::builder::Preset;
use crate::platform::{HostedPlatform, ReportLog};
use crate::ram::Ram;

/// A kmem machine living in this process. Derefs to [`Kmem`] for the whole API; share it
/// between threads by reference (`std::thread::scope`) or in an `Arc`.
#[derive(Debug)]
pub struct Machine {
    // Field order matters: the Kmem (and its state inside RAM) goes before the RAM mapping.
    kmem: Kmem<HostedPlatform>,
    ram: Ram,
    log: Arc<ReportLog>,
    regions: Vec<MemRegion>,
    preset: Preset,
}

impl Machine {
    pub(crate) fn new(
        kmem: Kmem<HostedPlatform>,
        ram: Ram,
        log: Arc<ReportLog>,
        regions: Vec<MemRegion>,
        preset: Preset,
    ) -> Self {
        Self { kmem, ram, log, regions, preset }
    }
    /// The reports made so far, with their texts.
    pub fn reports(&self) -> &ReportLog {
        &self.log
    }
    /// The memory map the machine booted from.
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions
    }
    /// The architecture preset.
    pub fn preset(&self) -> Preset {
        self.preset
    }
    /// Bytes of the RAM mapping (the physical address space).
    pub fn ram_mapping_len(&self) -> usize {
        self.ram.len()
    }
}

impl Deref for Machine {
    type Target = Kmem<HostedPlatform>;
    fn deref(&self) -> &Kmem<HostedPlatform> {
        &self.kmem
    }
}
