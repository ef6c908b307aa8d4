//! CPU hotplug: what happens to a CPU's per-CPU caches when it goes offline.
//!
//! Linux runs its `CPUHP_*_DEAD` teardown callbacks for a CPU that goes away:
//! `page_alloc_cpu_dead` drains its per-CPU page lists, `slub_cpu_dead` flushes its slab
//! state. kmem's [`Kmem::cpu_offline`] does the same for one CPU, from any thread (through
//! [`Platform::run_on_cpu`]): the slab caches' per-CPU objects go back to their slabs, the
//! per-CPU page lists go back to the buddy allocator, and vmalloc's per-CPU caches (recycled
//! areas, kernel stacks) are freed. Platforms whose CPUs come and go call it; a hosted
//! machine with a CPU per thread does when a thread exits (`kmem-hosted`).
//!
//! The CPU may come back (or another thread take it) at any time after: its caches simply
//! refill. Per-CPU variables keep their values, as Linux's do for offline CPUs.

use crate::machine::Kmem;
use crate::platform::{CpuId, Platform};

impl<P: Platform> Kmem<P> {
    /// Takes CPU `cpu`'s per-CPU caches back (Linux's CPU-dead teardown): slab sheaves,
    /// per-CPU page lists in every zone, vmalloc's recycled areas and cached kernel stacks.
    /// Returns false if the platform cannot run code as that CPU.
    ///
    /// Call it with no kmem lock held and outside any preemption- or interrupt-disabled
    /// section (it runs [`Platform::run_on_cpu`]).
    pub fn cpu_offline(&self, cpu: CpuId) -> bool {
        if cpu.index() >= self.nr_cpus() {
            return false;
        }
        let ran = self.platform().run_on_cpu(cpu, &mut || {
            self.slab_cpu_dead();
            self.drain_this_cpu();
        });
        // Lock-free slots: emptied from here, outside the CPU's section (freeing an area
        // takes vmalloc's locks and may purge).
        if ran {
            self.recycle_drain_cpu(cpu.index());
            self.stack_cache_drain_cpu(cpu.index());
        }
        ran
    }

    /// Prepares CPU `cpu` to come online (Linux's `CPUHP_*_PREPARE` callbacks): its per-CPU
    /// page lists are written (`boot/pagesets.rs`), and its slab fast table (every entry
    /// naming the empty sheaf: the fast paths test no entry, so a CPU's table must be
    /// written before its first fast pin). Boot does it for every CPU, unless the platform's
    /// CPUs come up later
    /// ([`Platform::cpus_come_up_later`]: a hosted machine with a CPU per thread): then for
    /// those online at boot, and the platform calls this before each other CPU's first
    /// section. Idempotent, and cheap once done.
    ///
    /// ```
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    /// m.cpu_up_prepare(kmem::CpuId(1)); // online since boot: nothing to do
    /// ```
    pub fn cpu_up_prepare(&self, cpu: CpuId) {
        for zone in self.zones() {
            zone.pagesets().prepare(cpu.index(), || self.zone_pcp_sizes(zone));
        }
        self.fast_table_up(cpu.index());
    }

    /// A second handle on this machine, sharing its state: what a platform keeps to run
    /// [`Kmem::cpu_offline`] from a thread-exit hook, where the owner's handle cannot be
    /// reached.
    ///
    /// # Safety
    ///
    /// The alias must not be used once the machine's memory is gone (after the owner's
    /// handle and the RAM it was booted on are dropped).
    pub unsafe fn alias(&self) -> Kmem<P>
    where
        P: Clone,
    {
        Kmem::from_parts(self.platform().clone(), self.state_ptr())
    }
}
