//! `/proc/slabinfo` version 2.1 (`mm/slab_common.c`: `slab_show`; `mm/slub.c`: `get_slabinfo`).

use core::fmt::{self, Write};

use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::KmemCache;

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
pub fn slab_info<P: Platform>(k: &Kmem<P>, s: &KmemCache) -> SlabInfo {
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
/// Unlike the other views this one takes a lock: the cache list's (`slab_mutex`, as
/// Linux's `slab_start` does), and each node's `list_lock` to count free objects. The sink
/// must not create or destroy caches of the same machine.
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
    let mut res = Ok(());
    k.for_each_cache(|s| {
        if res.is_ok() {
            let i = slab_info(k, s);
            res = writeln!(
                w,
                "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
                s.name(),
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
            );
        }
    });
    res
}
