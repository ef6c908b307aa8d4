//! The slab allocator's boot options of [`MachineBuilder`] (`kmem::slab::SlabBootConfig`).

use super::MachineBuilder;

impl MachineBuilder {
    /// The `slub_debug=` boot option (`""` for full debugging of every cache, `"FZ"`,
    /// `"P,kmalloc-*"`, `"FZPU;-,dentry"`...).
    pub fn slub_debug(mut self, opts: &str) -> Self {
        self.slub_debug = Some(opts.to_owned());
        self
    }
    /// The `slab_nomerge` boot option: never merge slab caches.
    pub fn slab_nomerge(mut self, on: bool) -> Self {
        self.slab_nomerge = on;
        self
    }
    /// Slab objects keep their free pointer at their start instead of their middle
    /// ([`kmem::slab::SlabBootConfig::freeptr_at_start`]): one cache line of an object touched per
    /// allocation and free instead of two. Off by default (Linux's placement).
    pub fn slab_freeptr_at_start(mut self, on: bool) -> Self {
        self.slab_freeptr_at_start = on;
        self
    }
    /// Bytes of objects each slab cache's per-CPU sheaves aim to hold
    /// ([`kmem::slab::SlabBootConfig::sheaf_bytes`]; 16 KiB by default): larger sheaves
    /// trade at the shared barn less often when threads allocate and free in bursts.
    pub fn slab_sheaf_bytes(mut self, bytes: u32) -> Self {
        self.slab_sheaf_bytes = Some(bytes);
        self
    }
    /// The most objects a slab sheaf holds ([`kmem::slab::SlabBootConfig::sheaf_max`]; 128
    /// by default, a power of two up to [`kmem::slab::SHEAF_MAX_CEILING`]): every sheaf of
    /// the machine has this many slots, 8 bytes each.
    pub fn slab_sheaf_max(mut self, objects: u32) -> Self {
        self.slab_sheaf_max = Some(objects);
        self
    }
    /// Sheaves each CPU keeps per slab cache beyond its main and spare
    /// ([`kmem::slab::SlabBootConfig::cpu_stash`]; 0 by default, as Linux).
    pub fn slab_cpu_stash(mut self, sheaves: u8) -> Self {
        self.slab_cpu_stash = sheaves;
        self
    }
    /// Bytes of objects each node's barn keeps per slab cache in full sheaves
    /// ([`kmem::slab::SlabBootConfig::barn_bytes`]; 0 by default: 4096 objects, at most
    /// 4 MiB): a thread that frees a hundred thousand blocks parks them there, whole sheaves,
    /// for its next allocations, instead of sending them back to their slabs.
    pub fn slab_barn_bytes(mut self, bytes: u32) -> Self {
        self.slab_barn_bytes = bytes;
        self
    }
    /// The `slab_min_objects=` boot option: the fewest objects a slab should hold when its
    /// order is chosen ([`kmem::slab::SlabBootConfig::min_objects`]; 0, the default, is
    /// Linux's `4 * (fls(nr_cpus) + 1)`).
    pub fn slab_min_objects(mut self, objects: u32) -> Self {
        self.slab_min_objects = objects;
        self
    }
}
