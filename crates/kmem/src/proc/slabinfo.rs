//! `/proc/slabinfo` version 2.1 (`mm/slab_common.c`: `slab_show`; `mm/slub.c`: `get_slabinfo`).

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::{KmemCache, CACHE_NAME_MAX};

/// One cache's slabinfo numbers (`struct slabinfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabInfo {
    /// Objects in use: all objects minus the free ones on partial lists.
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Bytes per object slot (`s->size`).
    pub objsize: usize,
    /// Objects per slab of the preferred order.
    pub objperslab: usize,
    /// Pages per slab of the preferred order.
    pub pagesperslab: usize,
    /// Slabs (SLUB reports every slab as active).
    pub num_slabs: usize,
}

/// `get_slabinfo()`: SLUB's numbers for one cache. Objects free on CPUs' active slabs count
/// as active, as in Linux.
/// A cache of another machine is reported and gets zeros.
pub fn slab_info<P: Platform>(k: &Kmem<P>, s: &KmemCache) -> SlabInfo {
    if !s.is_of(k) {
        k.cache_of_other_machine("slab_info", s);
        return SlabInfo::default();
    }
    let (mut slabs, mut objs, mut free) = (0, 0, 0);
    for (_, n) in s.nodes() {
        slabs += n.nr_slabs();
        objs += n.total_objects();
        free += k.count_partial_free(n);
    }
    SlabInfo {
        active_objs: objs.saturating_sub(free),
        num_objs: objs,
        objsize: s.size(),
        objperslab: s.objects_per_slab(),
        pagesperslab: 1 << s.order(),
        num_slabs: slabs,
    }
}

/// Writes `/proc/slabinfo`: the header, then one line per cache, newest first
/// (`slab_caches` order); merged caches appear once, under the first name. `tunables` and
/// `sharedavail` are 0, as SLUB leaves them.
///
/// The cache list is read under its lock (`slab_mutex`) in batches of a few caches, and
/// each batch is written after the lock is dropped, so the sink may allocate (even from the
/// same machine). Caches created or destroyed meanwhile may be missed or shown twice, as
/// with Linux's seq_file read in several `read()` calls.
///
/// ```
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let _c = m.kmem_cache_create("my_cache", 100, 0, kmem::SlabFlags::NO_MERGE, None).unwrap();
/// let mut s = String::new();
/// kmem::proc::slabinfo(&m, &mut s).unwrap();
/// assert!(s.starts_with("slabinfo - version: 2.1\n"));
/// assert!(s.lines().nth(2).unwrap().starts_with("my_cache "));
/// ```
pub fn slabinfo<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    writeln!(w, "slabinfo - version: 2.1")?;
    writeln!(
        w,
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> \
         <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
    )?;
    const BATCH: usize = 16;
    let mut skip = 0;
    loop {
        let mut batch = [([0u8; CACHE_NAME_MAX], 0usize, SlabInfo::default()); BATCH];
        let mut n = 0;
        let mut seen = 0;
        k.for_each_cache(|s| {
            if seen >= skip && n < BATCH {
                let name = s.name().as_bytes();
                batch[n].0[..name.len()].copy_from_slice(name);
                batch[n].1 = name.len();
                batch[n].2 = slab_info(k, s);
                n += 1;
            }
            seen += 1;
        });
        for (name, len, i) in &batch[..n] {
            writeln!(
                w,
                "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
                core::str::from_utf8(&name[..*len]).unwrap_or("?"),
                i.active_objs,
                i.num_objs,
                i.objsize,
                i.objperslab,
                i.pagesperslab,
                0,
                0,
                0,
                i.num_slabs,
                i.num_slabs,
                0
            )?;
        }
        if n < BATCH {
            return Ok(());
        }
        skip += BATCH;
    }
}
