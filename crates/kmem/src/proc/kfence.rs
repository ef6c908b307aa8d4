//! `/sys/kernel/debug/kfence/stats` and `/sys/kernel/debug/kfence/objects`
//! (`mm/kfence/core.c`: `stats_show`, `show_object`).
//!
//! `stats` is `enabled: 0|1` then the counters in Linux's order and words; `objects` prints
//! every pool object that is or was allocated (`kfence-#N: 0x...-0x..., size=.., cache=..`,
//! its allocation record, its free record once freed), each followed by a dashed line. A
//! machine without a pool prints `enabled: 0` and zero counters, and no objects.
//!
//! ```
//! use kmem::kfence::KfenceConfig;
//! let cfg = KfenceConfig { sample_interval_ms: 100, num_objects: 7 };
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).kfence(cfg).build().unwrap();
//! let mut s = String::new();
//! kmem::proc::kfence_stats(&m, &mut s).unwrap();
//! assert!(s.starts_with("enabled: 1\ncurrently allocated: 0\n"));
//! ```

use core::fmt::{self, Write};

use crate::machine::Kmem;
use crate::platform::Platform;

/// Writes `/sys/kernel/debug/kfence/stats`.
pub fn kfence_stats<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    let s = k.kfence_stats();
    writeln!(w, "enabled: {}", s.enabled as u8)?;
    for (name, v) in [
        ("currently allocated", s.allocated),
        ("total allocations", s.allocs),
        ("total frees", s.frees),
        ("zombie allocations", s.zombies),
        ("total bugs", s.bugs),
        ("skipped allocations (incompatible)", s.skip_incompat),
        ("skipped allocations (capacity)", s.skip_capacity),
        ("skipped allocations (covered)", s.skip_covered),
    ] {
        writeln!(w, "{name}: {v}")?;
    }
    Ok(())
}

/// Writes `/sys/kernel/debug/kfence/objects`.
pub fn kfence_objects<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    k.kfence_write_objects(w)
}
