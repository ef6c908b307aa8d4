//! The life of sheaves: the internal cache they come from (`kmem_sheaf`), giving a CPU its
//! sheaves, and flushing them (a CPU's, for `kmem_cache_shrink`/`destroy`/`validate` and CPU
//! offline; a node barn's).
//!
//! Flushing another CPU's sheaves runs as that CPU ([`Platform::run_on_cpu`], Linux's
//! `flush_all_cpus_locked` queues work on each CPU), so a CPU's sheaves are only ever touched
//! by the CPU itself.

use super::cache::KmemCache;
use super::sheaf::{Sheaf, SlubStat};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{CpuId, Platform};
use crate::sync::Ordering;

impl<P: Platform> Kmem<P> {
    /// The `kmem_sheaf` cache (created at boot, by `kmem_cache_init`).
    pub(crate) fn sheaf_cache(&self) -> &KmemCache {
        let p = self.slab().sheaf_cache.load(Ordering::Acquire);
        assert!(p != 0, "slab allocator used before kmem_cache_init");
        // SAFETY: set once by `kmem_cache_init` to a descriptor living as long as the machine.
        unsafe { &*(p as *const KmemCache) }
    }

    /// A new empty sheaf for `s` (`alloc_empty_sheaf`), or `None` without memory. Call with
    /// the CPU unpinned.
    pub(crate) fn alloc_sheaf(&self, s: &KmemCache, gfp: Gfp) -> Option<usize> {
        let gfp = gfp.without(Gfp::ZERO).union(Gfp::NOWARN);
        let sc = self.sheaf_cache();
        let req = super::alloc::Req {
            gfp,
            node: None,
            caller: core::panic::Location::caller(),
            orig_size: sc.object_size() as u32,
        };
        let p = self.alloc_direct(sc, req).ok()?;
        debug_assert!(s.sheaf_capacity <= self.slab().sheaf_max());
        // SAFETY: a fresh `kmem_sheaf` object, ours: `Sheaf::bytes_for(sheaf_max)` bytes (its
        // size), at least the capacity's (no cache's exceeds the maximum), Sheaf-aligned.
        unsafe { Sheaf::init(p, s.sheaf_capacity) };
        let pin = self.platform().pin_cpu();
        s.pcs(self, pin.cpu.index()).stat(SlubStat::SheafAlloc);
        self.platform().unpin_cpu(pin);
        Some(p)
    }

    /// Frees an empty sheaf (0: nothing to free).
    pub(crate) fn free_sheaf(&self, sheaf: usize) {
        if sheaf == 0 {
            return;
        }
        let sc = self.sheaf_cache();
        match self.addr_to_slab(sheaf) {
            Some((slab, c)) if core::ptr::eq(c, sc) => {
                let base = sc.obj_base(self, slab);
                self.free_single(sc, slab, (sheaf - base) as u32, base);
            }
            _ => debug_assert!(false, "a sheaf that is no kmem_sheaf object"),
        }
    }

    /// Gives this CPU a new empty sheaf as its main (or spare) sheaf; frees it if the CPU
    /// already has both.
    pub(crate) fn install_sheaf(&self, s: &KmemCache, sheaf: usize) {
        let p = self.platform().pin_cpu();
        let pcs = s.pcs(self, p.cpu.index());
        let spill = if pcs.main().is_none() {
            pcs.set_main(sheaf);
            // Its fast-table entries name it (the class entry mirrored no sheaf).
            self.fast_table_fill(s, p.cpu.index(), pcs);
            0
        } else if pcs.spare().is_none() {
            pcs.set_spare(sheaf);
            0
        } else {
            sheaf
        };
        self.platform().unpin_cpu(p);
        self.free_sheaf(spill);
    }

    /// `pcs_flush_all()` for the CPU the caller runs as: the main and spare sheaves' objects
    /// go back to their slabs; with `free`, the sheaves themselves are freed too.
    pub(crate) fn flush_cpu_sheaves(&self, s: &KmemCache, free: bool) {
        if s.sheaf_capacity == 0 {
            return;
        }
        let p = self.platform().pin_cpu();
        let pcs = s.pcs(self, p.cpu.index());
        let (main, spare) = (pcs.main().map(|m| m as *const Sheaf), pcs.spare().map(|m| m as *const Sheaf));
        let any = main.is_some() || spare.is_some();
        for sh in [main, spare].into_iter().flatten() {
            // SAFETY: the CPU's own sheaves, alive while it holds them (pinned).
            self.flush_sheaf(s, unsafe { &*sh });
        }
        let (m, sp) = if free { (pcs.set_main(0), pcs.set_spare(0)) } else { (0, 0) };
        // The stash: flushed, and its sheaves freed either way (a CPU refills it as it goes).
        let mut stashed = [0usize; super::CPU_STASH_MAX as usize];
        let mut n = 0;
        while n < stashed.len() {
            let sh = pcs.stash_pop();
            if sh == 0 {
                break;
            }
            // SAFETY: taken out of the CPU's stash: ours until freed.
            self.flush_sheaf(s, unsafe { &*(sh as *const Sheaf) });
            stashed[n] = sh;
            n += 1;
        }
        if any || n > 0 {
            pcs.stat(SlubStat::CpuslabFlush);
        }
        self.platform().unpin_cpu(p);
        self.free_sheaf(m);
        self.free_sheaf(sp);
        for &sh in &stashed[..n] {
            self.free_sheaf(sh);
        }
    }

    /// `slub_cpu_dead()`'s part for one cache, for the CPU the caller runs as (going
    /// offline): its main and spare sheaves go to its node's barn, objects and all, where the
    /// next CPU to use the cache takes them (a pool of short-lived threads then keeps its
    /// objects off the node's lists); what the barn has no room for is flushed to the slabs
    /// and freed, as Linux does with all of them.
    pub(crate) fn retire_cpu_sheaves(&self, s: &KmemCache) {
        if s.sheaf_capacity == 0 {
            return;
        }
        let p = self.platform().pin_cpu();
        let pcs = s.pcs(self, p.cpu.index());
        let barn = &s.node(self.numa_node_id()).barn;
        let (main, spare) = (pcs.set_main(0), pcs.set_spare(0));
        let mut spill = [0usize; super::CPU_STASH_MAX as usize + 2];
        let mut n = 0;
        let mut any = main != 0 || spare != 0;
        let mut park_or_spill = |sh: usize, n: &mut usize| {
            if sh != 0 && !super::sheaf::park(barn, self.platform(), sh) {
                // SAFETY: unlinked from the CPU: ours until freed.
                self.flush_sheaf(s, unsafe { &*(sh as *const Sheaf) });
                spill[*n] = sh;
                *n += 1;
            }
        };
        park_or_spill(main, &mut n);
        park_or_spill(spare, &mut n);
        loop {
            let sh = pcs.stash_pop();
            if sh == 0 {
                break;
            }
            any = true;
            park_or_spill(sh, &mut n);
        }
        if any {
            pcs.stat(SlubStat::CpuslabFlush);
        }
        self.platform().unpin_cpu(p);
        for &sh in &spill[..n] {
            self.free_sheaf(sh);
        }
    }

    /// Empties every node's barn: full sheaves are flushed to their slabs; with `free`, every
    /// sheaf is freed, else the emptied ones stay as the barn's empty sheaves.
    pub(crate) fn flush_barns(&self, s: &KmemCache, free: bool) {
        for (_, n) in s.nodes() {
            loop {
                let g = n.barn.lock().lock_irqsave(self.platform());
                let mut sh = n.barn.take_locked(&g, true);
                let from_full = sh != 0;
                if !from_full && free {
                    sh = n.barn.take_locked(&g, false);
                }
                drop(g);
                if sh == 0 {
                    break;
                }
                if from_full {
                    // SAFETY: taken out of the barn: ours.
                    self.flush_sheaf(s, unsafe { &*(sh as *const Sheaf) });
                }
                let keep = !free && {
                    let g = n.barn.lock().lock_irqsave(self.platform());
                    let ok = n.barn.put_locked(&g, sh, false);
                    drop(g);
                    ok
                };
                if !keep {
                    self.free_sheaf(sh);
                }
            }
        }
    }

    /// `flush_all()`: every online CPU's sheaves and every barn back to the slabs. Runs as
    /// each CPU in turn: the caller must hold no lock and no CPU.
    pub(crate) fn flush_all(&self, s: &KmemCache, free: bool) {
        if s.sheaf_capacity == 0 {
            return;
        }
        let p = self.platform();
        for cpu in 0..self.nr_cpus() {
            let id = CpuId(cpu as u32);
            if !p.cpu_online(id) && !free && s.pcs(self, cpu).objects() == 0 {
                continue;
            }
            p.run_on_cpu(id, &mut || self.flush_cpu_sheaves(s, free));
        }
        self.flush_barns(s, free);
    }
}
