//! Cache lifetime: the boot cache (`kmem_cache_init`), `kmem_cache_create` with merging
//! (`find_mergeable`, `__kmem_cache_alias`), and `kmem_cache_destroy`.

use core::panic::Location;
use core::ptr::NonNull;

use super::cache::{Cache, CacheInit, Ctor, KmemCache, CACHE_NAME_MAX};
use super::flags::SlabFlags;
use super::layout::{calculate_alignment, calculate_sizes, LayoutError, MAX_OBJECT_SIZE, WORD};
use super::sheaf::{sheaf_capacity_for, CpuSheaves, Sheaf};
use super::slub_debug::slub_debug_flags;
use super::CacheError;
use crate::addr::PAGE_SIZE;
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::percpu::PercpuPtr;
use crate::platform::{Platform, ReportKind};
use crate::sync::{Ordering, SpinGuard};

/// What `create_cache` is asked for: `kmem_cache_create`'s arguments plus how to allocate
/// (kmalloc creates its caches on first use, possibly from atomic context) and whether the
/// new cache may become an alias of an existing one.
pub(crate) struct CreateArgs<'a> {
    pub name: &'a str,
    pub size: usize,
    pub align: usize,
    pub flags: SlabFlags,
    pub ctor: Option<Ctor>,
    pub gfp: Gfp,
    pub mergeable: bool,
    /// Created by kmem itself (kmalloc): allowed from interrupt context.
    pub internal: bool,
    /// Objects a CPU's sheaf holds, if the creator asked ([`KmemCacheArgs::sheaf_capacity`]).
    pub sheaf_capacity: Option<u32>,
}

/// Linux 6.18's `struct kmem_cache_args`: what [`Kmem::kmem_cache_create_args`] takes beyond
/// the name, the size and the flags. `Default` asks for nothing: the word's alignment, no
/// constructor, kmem's sheaf capacity.
#[derive(Clone, Copy, Debug, Default)]
pub struct KmemCacheArgs {
    /// The objects' alignment: 0 for the word, else a power of two (`kmem_cache_create`'s
    /// `align`).
    pub align: usize,
    /// Run on each object as its slab is made (`ctor`).
    pub ctor: Option<Ctor>,
    /// Objects each of a CPU's sheaves holds (`sheaf_capacity`): 0 for kmem's default (about
    /// 16 KiB of objects, at least 32), else at most the machine's largest sheaf
    /// ([`SlabBootConfig::sheaf_max`](super::SlabBootConfig::sheaf_max)). A cache of large
    /// objects asks for a few, so that the objects the CPUs keep stay few. A cache that asks
    /// is never merged with another (Linux merges no cache with sheaves).
    pub sheaf_capacity: u32,
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_init()`: creates the boot caches in memory carved at boot: `kmem_cache`,
    /// whose objects are every other cache's descriptor, and `kmem_sheaf`, whose objects are
    /// every cache's sheaves. Neither has sheaves itself.
    pub(crate) fn kmem_cache_init(&self) -> Result<(), CacheError> {
        let st = self.slab();
        self.state().kmalloc.init_slots();
        self.fast_table_init()?;
        let nr_nodes = self.nr_nodes();
        let size = KmemCache::alloc_size(nr_nodes);
        let boot = [
            ("kmem_cache", size, 64, st.boot_cache_mem, super::registry::BOOT_CACHE_ID, &st.boot_cache),
            (
                "kmem_sheaf",
                Sheaf::bytes_for(st.sheaf_max()),
                core::mem::align_of::<Sheaf>(),
                st.sheaf_cache_mem,
                super::registry::SHEAF_CACHE_ID,
                &st.sheaf_cache,
            ),
        ];
        for (name, size, align, mem, id, slot) in boot {
            // `slub_debug=` applies to the boot caches too, as `kmem_cache_open` does.
            let flags = self.kmem_cache_flags(SlabFlags::HWCACHE_ALIGN | SlabFlags::NO_MERGE, name);
            let layout =
                st.place_freeptr(calculate_sizes(size, align, flags, false, st.order).map_err(CacheError::Layout)?);
            let cpu_sheaves = self.alloc_cpu_sheaves(Gfp::KERNEL)?;
            let mem = NonNull::new(mem as *mut u8).expect("boot cache memory carved at boot");
            let init = CacheInit {
                name,
                layout,
                ctor: None,
                cpu_sheaves,
                machine: self.machine_id(),
                sheaf_capacity: 0,
                random: st.next_random(mem.as_ptr() as u64),
                id,
                nr_nodes,
                refcount: -1,
                meminit: self.cache_meminit(layout.flags, false),
            };
            // SAFETY: the memory is carved RAM of `alloc_size(nr_nodes)` bytes, 64-aligned,
            // used for nothing else, living as long as the machine.
            let c = unsafe { KmemCache::init(mem, init) };
            // SAFETY: just initialised; lives as long as the machine.
            let c = unsafe { c.as_ref() };
            let g = st.list_lock.lock_irqsave(self.platform());
            st.link_locked(&g, c);
            self.failslab_key_locked(&g, c);
            slot.store(c as *const _ as usize, Ordering::Release);
        }
        Ok(())
    }

    /// The boot cache of cache descriptors.
    pub(crate) fn boot_cache(&self) -> &KmemCache {
        let p = self.slab().boot_cache.load(Ordering::Acquire);
        assert!(p != 0, "slab allocator used before kmem_cache_init");
        // SAFETY: set once by `kmem_cache_init` to a descriptor living as long as the machine.
        unsafe { &*(p as *const KmemCache) }
    }

    /// A per-CPU allocation of one [`CpuSheaves`] per CPU, initialised (no sheaves yet).
    ///
    /// The per-CPU allocator hands out zeroed areas, and a `CpuSheaves` of zero bytes is
    /// `CpuSheaves::new()` (two null sheaf addresses and zero statistics: integers only, no
    /// padding; `cpu_sheaves_of_zero_bytes_are_new` checks it), so nothing is written: a
    /// machine of many possible CPUs does not touch the per-CPU memory of CPUs that never
    /// allocate (the per-CPU allocator does not either, on fresh RAM). Loom's atomics are not
    /// plain integers: models write.
    fn alloc_cpu_sheaves(&self, gfp: Gfp) -> Result<PercpuPtr, CacheError> {
        let size = core::mem::size_of::<CpuSheaves>();
        let p = self
            .__alloc_percpu_gfp(size, core::mem::align_of::<CpuSheaves>(), gfp | Gfp::NOWARN)
            .map_err(|_| CacheError::NoMemory)?;
        // Every CPU's area already is this value.
        #[cfg(not(loom))]
        let _fresh: fn() -> CpuSheaves = CpuSheaves::new;
        #[cfg(loom)]
        for cpu in 0..self.nr_cpus() {
            // SAFETY: a fresh per-CPU area of `size` bytes aligned for CpuSheaves on every
            // CPU, ours alone; CpuSheaves has no drop glue.
            unsafe { (self.per_cpu_ptr_unchecked(p, cpu) as *mut CpuSheaves).write(CpuSheaves::new()) };
        }
        Ok(p)
    }

    /// `kmem_cache_create(name, size, align, flags, ctor)`: a cache of `size`-byte objects
    /// aligned to at least `align` (0: the word). The name is shown as given in
    /// `/proc/slabinfo` (at most [`CACHE_NAME_MAX`] bytes). A compatible existing cache is
    /// reused (merged) unless merging is off, `ctor` is given, or a debug flag or
    /// [`SlabFlags::NO_MERGE`] is set.
    ///
    /// Fails, with an `Err` and (for bad arguments) Linux's `kmem_cache_create(<name>)
    /// integrity check failed` warning, on an empty name, size 0 or above 4 MiB, an
    /// alignment that is not a power of two up to `PAGE_SIZE`, unknown flags, or a call
    /// from interrupt context. With [`SlabFlags::PANIC`] a failure panics instead.
    ///
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let c = m.kmem_cache_create("inode_cache", 600, 0, SlabFlags::RECLAIM_ACCOUNT, None).unwrap();
    /// assert_eq!(c.name(), "inode_cache");
    /// assert_eq!((c.order(), c.objects_per_slab()), (2, 27)); // as Linux picks for 4 CPUs
    /// drop(c); // kmem_cache_destroy
    /// ```
    #[track_caller]
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<Cache<'_, P>, CacheError> {
        self.kmem_cache_create_args(name, size, &KmemCacheArgs { align, ctor, sheaf_capacity: 0 }, flags)
    }

    /// `kmem_cache_create(name, size, &args, flags)`, Linux 6.18's form: as
    /// [`Kmem::kmem_cache_create`], with the alignment, constructor and sheaf capacity in
    /// [`KmemCacheArgs`].
    ///
    /// ```
    /// use kmem::{Gfp, KmemCacheArgs, SlabFlags};
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
    /// let args = KmemCacheArgs { align: 16384, sheaf_capacity: 4, ..Default::default() };
    /// let c = m.kmem_cache_create_args("buffers-16k", 16384, &args, SlabFlags::empty()).unwrap();
    /// assert_eq!(c.sheaf_capacity(), 4);
    /// let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 16384, 0);
    /// // SAFETY: ours, freed once.
    /// unsafe { m.kmem_cache_free(&c, p) };
    /// ```
    #[track_caller]
    pub fn kmem_cache_create_args(
        &self,
        name: &str,
        size: usize,
        args: &KmemCacheArgs,
        flags: SlabFlags,
    ) -> Result<Cache<'_, P>, CacheError> {
        let KmemCacheArgs { align, ctor, sheaf_capacity } = *args;
        let args = CreateArgs {
            name,
            size,
            align,
            flags,
            ctor,
            gfp: Gfp::KERNEL,
            mergeable: sheaf_capacity == 0,
            internal: false,
            sheaf_capacity: (sheaf_capacity > 0).then_some(sheaf_capacity),
        };
        match self.create_cache(args) {
            Ok(c) => Ok(c),
            Err(e) => {
                if flags.contains(SlabFlags::PANIC) {
                    panic!("kmem_cache_create: Failed to create slab '{name}'. Error {e}");
                }
                Err(e)
            }
        }
    }

    fn integrity_check_failed(&self, name: &str) {
        let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
        self.report(ReportKind::Warning, &|w| {
            writeln!(
                w,
                "WARNING: CPU: {cpu} PID: {pid} at mm/slab_common.c: kmem_cache_create({name}) integrity check failed"
            )
        });
    }

    /// `do_kmem_cache_create()`.
    pub(crate) fn create_cache(&self, a: CreateArgs<'_>) -> Result<Cache<'_, P>, CacheError> {
        let CreateArgs { name, size, align, flags, ctor, gfp, .. } = a;
        let irq = self.platform().in_interrupt() && !a.internal;
        if name.is_empty() || irq || size == 0 || size > MAX_OBJECT_SIZE as usize {
            self.integrity_check_failed(name);
            return Err(if irq { CacheError::InInterrupt } else { CacheError::Invalid });
        }
        if !SlabFlags::PERMITTED.contains(flags) {
            return Err(CacheError::BadFlags(flags.without(SlabFlags::PERMITTED)));
        }
        if !(align == 0 || align.is_power_of_two()) || align > MAX_OBJECT_SIZE as usize {
            self.integrity_check_failed(name);
            return Err(CacheError::Layout(LayoutError::BadAlign(align)));
        }
        if name.len() > CACHE_NAME_MAX {
            return Err(CacheError::NameTooLong(name.len()));
        }
        if name.contains(' ') {
            let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
            self.report(ReportKind::Warning, &|w| {
                writeln!(w, "WARNING: CPU: {cpu} PID: {pid} at mm/slab_common.c: cache name '{name}' contains a space")
            });
        }
        let flags = self.kmem_cache_flags(flags, name);
        let st = self.slab();
        self.ensure_id_table(gfp)?;
        if flags.contains(SlabFlags::STORE_USER) {
            // Without a depot, tracks just have no call site.
            let _ = self.install_table(&st.depot, 0, core::mem::size_of::<super::debug::CallerDepot>(), gfp, |_| {});
        }
        let id = {
            let g = st.list_lock.lock_irqsave(self.platform());
            if let Some(c) = self.find_mergeable_locked(&g, size, align, flags, ctor).filter(|_| a.mergeable) {
                c.refcount.fetch_add(1, Ordering::Relaxed);
                c.object_size.fetch_max(size as u32, Ordering::Relaxed);
                return Ok(Cache { kmem: self, cache: NonNull::from(c) });
            }
            st.reserve_id_locked(&g).ok_or(CacheError::TooManyCaches)?
        };
        let release_id = || {
            let g = st.list_lock.lock_irqsave(self.platform());
            st.release_id_locked(&g, id);
        };
        let layout = match calculate_sizes(size, align, flags, ctor.is_some(), st.order) {
            Ok(l) => st.place_freeptr(l),
            Err(e) => {
                release_id();
                return Err(CacheError::Layout(e));
            }
        };
        let mem = match self.kmem_cache_alloc(self.boot_cache(), gfp | Gfp::NOWARN) {
            Ok(m) => m,
            Err(_) => {
                release_id();
                return Err(CacheError::NoMemory);
            }
        };
        let cpu_sheaves = match self.alloc_cpu_sheaves(gfp) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `mem` was just allocated from the boot cache and is unused.
                unsafe { self.kmem_cache_free(self.boot_cache(), mem) };
                release_id();
                return Err(e);
            }
        };
        let init = CacheInit {
            name,
            layout,
            ctor,
            cpu_sheaves,
            machine: self.machine_id(),
            sheaf_capacity: match a.sheaf_capacity {
                Some(c) => c.clamp(1, st.sheaf_max()),
                None => sheaf_capacity_for(layout.size, st.sheaf_bytes(), st.sheaf_max()),
            },
            random: st.next_random(mem.as_ptr() as u64 ^ self.platform().now_ns()),
            id,
            nr_nodes: self.nr_nodes(),
            refcount: 1,
            meminit: self.cache_meminit(layout.flags, ctor.is_some()),
        };
        // SAFETY: `mem` is a boot-cache object: `alloc_size(nr_nodes)` bytes, 64-aligned
        // (HWCACHE_ALIGN), ours until destroy frees it.
        let c = unsafe { KmemCache::init(mem, init) };
        // SAFETY: just initialised.
        let cr = unsafe { c.as_ref() };
        let barn_max = st.barn_max(cr.sheaf_capacity, layout.size, self.totalram_pages() * PAGE_SIZE);
        for (_, n) in cr.nodes() {
            n.barn.set_max(barn_max);
        }
        let g = st.list_lock.lock_irqsave(self.platform());
        st.link_locked(&g, cr);
        self.failslab_key_locked(&g, cr);
        Ok(Cache { kmem: self, cache: c })
    }

    /// Installs the cache-id table unless it is there (the first `kmem_cache_create`, or
    /// [`Kmem::free_map`](crate::Kmem::free_map)), with the boot caches registered in it.
    pub(crate) fn ensure_id_table(&self, gfp: Gfp) -> Result<(), CacheError> {
        let st = self.slab();
        if st.id_table().is_none() {
            self.install_table(&st.ids, 0, core::mem::size_of::<super::registry::IdTable>(), gfp, |a| {
                // SAFETY: `a` is the fresh block, of an IdTable's size and page-aligned, the
                // caller's alone until installed.
                super::registry::SlabState::init_id_table(unsafe { &*(a as *const super::registry::IdTable) })
            })?;
            let g = st.list_lock.lock_irqsave(self.platform());
            st.register_boot_caches_locked(&g);
        }
        Ok(())
    }

    /// Allocates a zeroed, never-freed table of `bytes` for `slot` unless it has one (`slot`
    /// holds `none` until then); `init` prepares the block (its address) before it is
    /// published.
    fn install_table(
        &self,
        slot: &crate::sync::AtomicUsize,
        none: usize,
        bytes: usize,
        gfp: Gfp,
        init: impl FnOnce(usize),
    ) -> Result<(), CacheError> {
        if slot.load(Ordering::Acquire) != none {
            return Ok(());
        }
        let order = crate::Order::for_bytes(bytes).expect("registry tables fit a block");
        let addr = self.__get_free_pages(gfp | Gfp::ZERO | Gfp::NOWARN, order).map_err(|_| CacheError::NoMemory)?;
        init(addr.as_usize());
        if slot.compare_exchange(none, addr.as_usize(), Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: our block lost the race and is unused.
            unsafe { self.free_pages(addr, order) };
        }
        Ok(())
    }

    /// `kmem_cache_flags()`: the creation flags plus what `slub_debug=` gives this cache.
    fn kmem_cache_flags(&self, flags: SlabFlags, name: &str) -> SlabFlags {
        let Some(opts) = self.slab().debug_string() else { return flags };
        if flags.contains(SlabFlags::NO_USER_FLAGS) {
            return flags;
        }
        flags | slub_debug_flags(opts, name).0
    }

    /// `find_mergeable()`: the oldest cache a new one of this shape can share. `g` holds the
    /// list lock.
    fn find_mergeable_locked(
        &self,
        g: &SpinGuard<'_, P>,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Option<&KmemCache> {
        let st = self.slab();
        if st.nomerge || ctor.is_some() || flags.intersects(SlabFlags::NEVER_MERGE) {
            return None;
        }
        let size = (size as u32).next_multiple_of(WORD);
        let align = calculate_alignment(flags, align as u32, size);
        let size = size.next_multiple_of(align);
        let mut found = None;
        // The list is newest first; the last match is the oldest (Linux scans in reverse).
        st.for_each_locked(g, |s| {
            let l = s.layout;
            let mergeable = !l.flags.intersects(SlabFlags::NEVER_MERGE)
                && s.ctor.is_none()
                && s.refcount.load(Ordering::Relaxed) > 0
                && size <= l.size
                && flags.intersection(SlabFlags::MERGE_SAME) == l.flags.intersection(SlabFlags::MERGE_SAME)
                && l.size % align == 0
                && l.size - size < WORD;
            if mergeable {
                found = Some(s as *const KmemCache);
            }
        });
        // SAFETY: list members are live while the caller holds the list lock.
        found.map(|p| unsafe { &*p })
    }

    /// `kmem_cache_destroy(s)`: drops this handle's reference; the last one shuts the cache
    /// down. A cache that still has objects is reported (`Objects remaining in ..`, then
    /// `kmem_cache_destroy <name>: Slab cache still has objects`) and kept, as Linux does.
    #[track_caller]
    pub fn kmem_cache_destroy(&self, cache: Cache<'_, P>) {
        if !cache.is_of(self) {
            // Reported, and destroyed by the machine it belongs to (dropping the handle).
            self.cache_of_other_machine("kmem_cache_destroy", &cache);
            drop(cache);
            return;
        }
        let c = cache.into_raw();
        // SAFETY: the handle owned one reference, given up by `into_raw`.
        unsafe { self.destroy_cache_ref(c, Location::caller()) };
    }

    /// The destroy half of a [`Cache`]'s drop.
    ///
    /// # Safety
    ///
    /// `c` must be a cache of this machine whose reference the caller owns and gives up.
    pub(crate) unsafe fn destroy_cache_ref(&self, c: NonNull<KmemCache>, caller: &'static Location<'static>) {
        // SAFETY: the caller owns a reference, so the descriptor is live.
        let s = unsafe { c.as_ref() };
        // In-flight `kfree_rcu`s may hold objects of this cache; a TYPESAFE_BY_RCU cache's
        // slabs wait for a grace period (Linux: `kvfree_rcu_barrier_on_cache`, `rcu_barrier`).
        self.rcu_barrier_before_destroy();
        // Objects kfree_nolock deferred (this cache's among them) are freed first.
        self.free_deferred_if_pending();
        let st = self.slab();
        {
            let _g = st.list_lock.lock_irqsave(self.platform());
            let rc = s.refcount.load(Ordering::Relaxed);
            if rc != 1 {
                if rc > 1 {
                    s.refcount.store(rc - 1, Ordering::Relaxed);
                }
                return;
            }
            s.refcount.store(0, Ordering::Relaxed);
        }
        if !self.kmem_cache_shutdown(s) {
            let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
            self.report(ReportKind::Warning, &|w| {
                writeln!(w, "WARNING: CPU: {cpu} PID: {pid} at mm/slab_common.c:")?;
                writeln!(w, "kmem_cache_destroy {}: Slab cache still has objects when called from {caller}", s.name())
            });
            return;
        }
        // Its live KFENCE objects become zombies, its freed ones forget it.
        self.kfence_shutdown_cache(s, caller);
        {
            let g = st.list_lock.lock_irqsave(self.platform());
            st.unlink_locked(&g, s);
        }
        self.fast_table_forget(s);
        let cpu_sheaves = s.cpu_sheaves;
        // SAFETY: the cache has no slab left, is unregistered, and the caller's reference was
        // the last: nothing uses its per-CPU part or descriptor any more.
        unsafe {
            self.free_percpu(cpu_sheaves);
            self.kmem_cache_free(self.boot_cache(), c.cast());
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// Calls `f` on every cache, newest first, holding the cache list lock (`slab_mutex`).
    pub fn for_each_cache(&self, mut f: impl FnMut(&KmemCache)) {
        let st = self.slab();
        let g = st.list_lock.lock_irqsave(self.platform());
        st.for_each_locked(&g, &mut f);
    }

    /// Number of caches (merged creations count once).
    pub fn nr_caches(&self) -> usize {
        let mut n = 0;
        self.for_each_cache(|_| n += 1);
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CpuSheaves;

    /// `alloc_cpu_sheaves` writes nothing into the zeroed per-CPU area: that is only right
    /// while a fresh `CpuSheaves` is all zero bytes (and has no padding to leave undefined).
    #[test]
    fn cpu_sheaves_of_zero_bytes_are_new() {
        let fresh = CpuSheaves::new();
        let n = core::mem::size_of::<CpuSheaves>();
        assert_eq!(n % 8, 0);
        // SAFETY: CpuSheaves is made of 8-byte atomics only (no padding), so all its bytes are
        // initialised; `fresh` is a local nobody else accesses.
        let bytes = unsafe { core::slice::from_raw_parts(&fresh as *const CpuSheaves as *const u8, n) };
        assert!(bytes.iter().all(|&b| b == 0), "CpuSheaves::new() is not all zero bytes");
    }
}
