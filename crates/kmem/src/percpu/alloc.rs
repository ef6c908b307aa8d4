//! The Linux-shaped raw API: `__alloc_percpu`, `free_percpu`, `per_cpu_ptr`; chunk creation
//! and destruction through the page allocator; the warnings.

use super::chunk::{Chunk, ChunkKind, ChunkPtr, HEADER_ORDER, MAP_BITS};
use super::state::{Freed, PercpuState, PercpuStats};
use super::{
    PercpuError, PercpuErrorKind, PercpuPtr, Request, PCPU_MIN_ALLOC_SIZE, PCPU_MIN_UNIT_SIZE, PCPU_UNIT_PAGES,
};
use crate::addr::{Order, VirtAddr};
use crate::gfp::Gfp;
use crate::machine::{Kmem, NR_CPUS};
use crate::mm::page::pg;
use crate::mm::page_ref::AllocError;
use crate::platform::{Platform, ReportKind};
use crate::sync::Ordering;

/// Order of a dynamic chunk's unit: one block per CPU.
const UNIT_ORDER: Order = Order::for_bytes(PCPU_MIN_UNIT_SIZE).expect("a unit fits a block");

impl<P: Platform> Kmem<P> {
    pub(super) fn pcpu(&self) -> &PercpuState {
        &self.state().percpu
    }

    /// `__alloc_percpu(size, align)`: `size` bytes (1 to [`PCPU_MIN_UNIT_SIZE`]) aligned to
    /// `align` (a power of two up to `PAGE_SIZE`; anything below 4, 0 and 3 included, is
    /// raised to 4 first, as Linux does) on every CPU, zeroed, with `GFP_KERNEL`.
    ///
    /// ```
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    /// let p = m.__alloc_percpu(8, 8).unwrap();
    /// for cpu in 0..m.nr_cpus() {
    ///     // SAFETY: `p` is live and `cpu` is a CPU of this machine; the area is 8 bytes.
    ///     unsafe { *(m.per_cpu_ptr(p, cpu) as *mut u64) = cpu as u64 };
    /// }
    /// // SAFETY: `p` is ours and no longer used.
    /// unsafe { m.free_percpu(p) };
    /// ```
    pub fn __alloc_percpu(&self, size: usize, align: usize) -> Result<PercpuPtr, PercpuError> {
        self.pcpu_alloc(size, align, false, Gfp::KERNEL)
    }

    /// `__alloc_percpu_gfp(size, align, gfp)`. A request that may not block
    /// (`!gfp.allows_blocking()`, e.g. `GFP_ATOMIC`) only uses room in existing chunks.
    /// `__GFP_NOWARN` silences the warnings.
    pub fn __alloc_percpu_gfp(&self, size: usize, align: usize, gfp: Gfp) -> Result<PercpuPtr, PercpuError> {
        self.pcpu_alloc(size, align, false, gfp)
    }

    /// `pcpu_alloc()`: `reserved` allocates from the first chunk's reserved region only.
    pub(super) fn pcpu_alloc(
        &self,
        size: usize,
        align: usize,
        reserved: bool,
        gfp: Gfp,
    ) -> Result<PercpuPtr, PercpuError> {
        let do_warn = !gfp.contains(Gfp::NOWARN);
        let req = match Request::new(size, align) {
            Ok(r) => r,
            Err(e) => {
                if do_warn {
                    self.pcpu_warn("pcpu_alloc", &|w| {
                        write!(w, "illegal size ({}) or align ({}) for percpu allocation", e.size, e.align)
                    });
                }
                return Err(e);
            }
        };
        let atomic = !gfp.allows_blocking();
        let pcpu = self.pcpu();
        if reserved {
            let got = pcpu.lock(self.platform()).alloc_reserved(req.bits, req.align_bits);
            return match got {
                Some((c, off, dirty)) => Ok(self.pcpu_populated(c, off, req, dirty)),
                None => Err(self.pcpu_fail(req, atomic, do_warn, PercpuErrorKind::ReservedFull)),
            };
        }
        loop {
            let got = pcpu.lock(self.platform()).alloc(req.bits, req.align_bits);
            if let Some((c, off, dirty)) = got {
                return Ok(self.pcpu_populated(c, off, req, dirty));
            }
            if atomic {
                return Err(self.pcpu_fail(req, atomic, do_warn, PercpuErrorKind::AtomicNoSpace));
            }
            // No lock held here: the page allocator may take zone locks (lock order).
            match self.pcpu_create_chunk(gfp) {
                Ok(c) => pcpu.lock(self.platform()).add_chunk(c),
                Err(e) => return Err(self.pcpu_fail(req, atomic, do_warn, PercpuErrorKind::NewChunk(e))),
            }
        }
    }

    /// Zeroes a new area on every CPU (its first `dirty` granules: the rest was never used
    /// and is zero already) and makes its pointer.
    fn pcpu_populated(&self, c: ChunkPtr, granule: usize, req: Request, dirty: usize) -> PercpuPtr {
        let off = granule * PCPU_MIN_ALLOC_SIZE;
        let chunk = c.chunk();
        let bytes = req.size.min(dirty * PCPU_MIN_ALLOC_SIZE);
        if bytes > 0 {
            for cpu in 0..self.nr_cpus() {
                // SAFETY: the area `[off, off + size)` of every unit was just marked allocated
                // under the lock, so nobody else uses it; units are RAM mapped for the machine's
                // life and `off + bytes <= off + size <= PCPU_MIN_UNIT_SIZE`.
                unsafe { core::ptr::write_bytes((chunk.unit(cpu) + off) as *mut u8, 0, bytes) };
            }
        }
        PercpuPtr { chunk: c.addr(), off: off as u32 }
    }

    /// Counts and reports a failed allocation (`fail:` in `pcpu_alloc`).
    fn pcpu_fail(&self, req: Request, atomic: bool, do_warn: bool, kind: PercpuErrorKind) -> PercpuError {
        let limit = &self.pcpu().warn_limit;
        let took = do_warn && limit.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
        if took {
            let last = limit.load(Ordering::Relaxed) == 0;
            self.report(ReportKind::Warning, &|w| {
                writeln!(
                    w,
                    "percpu: allocation failed, size={} align={} atomic={}, {}",
                    req.size,
                    req.align,
                    u8::from(atomic),
                    kind.reason()
                )?;
                if last {
                    writeln!(w, "percpu: limit reached, disable warning")?;
                }
                Ok(())
            });
        }
        req.error(kind)
    }

    /// A `WARNING:` from `mm/percpu.c`, in the shape of the page allocator's.
    pub(super) fn pcpu_warn(&self, func: &str, what: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result) {
        let p = self.platform();
        let (cpu, task) = (p.current_cpu().0, p.current_task());
        self.report(ReportKind::Warning, &|w| {
            write!(w, "WARNING: CPU: {cpu} PID: {} at mm/percpu.c {func}: ", task.pid)?;
            what(w)?;
            writeln!(w)
        });
    }

    /// `pcpu_create_chunk()` (percpu-km): a header block and one unit block per CPU on the
    /// CPU's node. Called with no lock held.
    fn pcpu_create_chunk(&self, gfp: Gfp) -> Result<ChunkPtr, AllocError> {
        // The flags Linux lets through to the backing allocator; units must be direct-mapped.
        let gfp = gfp & (Gfp::KERNEL | Gfp::NORETRY | Gfp::NOWARN);
        let header = self.alloc_pages(gfp, HEADER_ORDER)?;
        // PG_percpu on each block head (header and units) says who owns the block (frame maps).
        header.page().set_exclusive(pg::PERCPU);
        let mut units = [0usize; NR_CPUS];
        for cpu in 0..self.nr_cpus() {
            match self.alloc_pages_node(Some(self.cpu_to_node(cpu)), gfp, UNIT_ORDER) {
                Ok(p) => {
                    p.page().set_exclusive(pg::PERCPU);
                    units[cpu] = self.page_address(p).expect("GFP_KERNEL pages are direct-mapped").as_usize();
                }
                Err(e) => {
                    for &u in &units[..cpu] {
                        self.pcpu_free_block(u, UNIT_ORDER);
                    }
                    header.page().clear_exclusive(pg::PERCPU);
                    // SAFETY: the header block was allocated above and is not used.
                    unsafe { self.__free_pages(header, HEADER_ORDER) };
                    return Err(e);
                }
            }
        }
        let at = self.page_address(header).expect("GFP_KERNEL pages are direct-mapped");
        // SAFETY: the header block is ours, direct-mapped, page-aligned and large enough (const
        // assert in chunk.rs); each unit is a freshly allocated unit-size block.
        let c = unsafe { Chunk::init(at.as_mut_ptr::<Chunk>(), &units, ChunkKind::Dynamic, 0, MAP_BITS, false) };
        self.pcpu().nr_pages.fetch_add(self.nr_cpus() * PCPU_UNIT_PAGES, Ordering::Relaxed);
        Ok(c)
    }

    /// `pcpu_destroy_chunk()`: gives a chunk's pages back. Called with no lock held.
    ///
    /// # Safety
    ///
    /// `c` must be a dynamic chunk unlinked from the list, with no live allocation.
    unsafe fn pcpu_destroy_chunk(&self, c: ChunkPtr) {
        let chunk = c.chunk();
        debug_assert_eq!(chunk.kind, ChunkKind::Dynamic);
        let units = *chunk.units();
        for &u in &units[..self.nr_cpus()] {
            self.pcpu_free_block(u, UNIT_ORDER);
        }
        self.pcpu().nr_pages.fetch_sub(self.nr_cpus() * PCPU_UNIT_PAGES, Ordering::Relaxed);
        self.pcpu_free_block(c.addr(), HEADER_ORDER);
    }

    /// Frees a block this module allocated, by its direct-map address.
    fn pcpu_free_block(&self, addr: usize, order: Order) {
        let page = self.virt_to_page(VirtAddr::new(addr)).expect("percpu blocks are direct-mapped RAM");
        page.page().clear_exclusive(pg::PERCPU);
        // SAFETY: `addr` starts a block of `order` that this module allocated and no longer uses
        // (callers: a failed chunk creation, or a chunk being destroyed).
        unsafe { self.__free_pages(page, order) };
    }

    /// `free_percpu(ptr)`: frees a per-CPU allocation; [`PercpuPtr::NULL`] is ignored. A pointer
    /// that names no live allocation (double free, a made-up offset) or belongs to another
    /// machine is reported as a `WARNING` and changes nothing. An emptied dynamic chunk goes back to the page allocator
    /// if another empty chunk exists.
    ///
    /// # Safety
    ///
    /// `ptr` must come from an allocation of this machine, and nothing may use the area
    /// afterwards (in particular not a [`super::PerCpuBox`] or [`super::PerCpuVar`] owning it).
    pub unsafe fn free_percpu(&self, ptr: PercpuPtr) {
        if ptr.is_null() {
            return;
        }
        if !self.owns_percpu(ptr) {
            self.other_machine("mm/percpu.c", "free_percpu", &|w| write!(w, "{ptr:?}"));
            return;
        }
        let freed = self.pcpu().lock(self.platform()).free(ptr.chunk, ptr.off as usize);
        match freed {
            Freed::Done => {}
            Freed::Destroy(c) => {
                // SAFETY: `free` unlinked the chunk, which has no allocation left.
                unsafe { self.pcpu_destroy_chunk(c) }
            }
            Freed::Invalid => self
                .pcpu_warn("free_percpu", &|w| write!(w, "invalid percpu pointer {ptr:?}: no allocation starts there")),
        }
    }

    /// Gives every empty dynamic chunk back to the page allocator, the one `free_percpu` keeps
    /// included (Linux's `pcpu_balance_free()` under memory pressure). Returns how many.
    pub fn pcpu_free_empty_chunks(&self) -> usize {
        let mut n = 0;
        loop {
            let Some(c) = self.pcpu().lock(self.platform()).take_empty() else { return n };
            // SAFETY: `take_empty` unlinked an empty dynamic chunk.
            unsafe { self.pcpu_destroy_chunk(c) };
            n += 1;
        }
    }

    /// `per_cpu_ptr(ptr, cpu)`: the address of `cpu`'s copy of the area. A table lookup and
    /// an add, after two cheap checks that turn a wrong argument into a report: a pointer of
    /// another machine and a CPU the machine does not have get a `WARNING` and a null
    /// pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live (not freed) allocation of this machine and `cpu < nr_cpus()`.
    /// Accesses through the result must stay inside the allocated size and are the caller's
    /// to synchronise.
    #[inline]
    pub unsafe fn per_cpu_ptr(&self, ptr: PercpuPtr, cpu: usize) -> *mut u8 {
        if !self.owns_percpu(ptr) {
            self.other_machine("mm/percpu.c", "per_cpu_ptr", &|w| write!(w, "{ptr:?}"));
            return core::ptr::null_mut();
        }
        if cpu >= self.nr_cpus() {
            self.pcpu_warn("per_cpu_ptr", &|w| write!(w, "CPU {cpu} out of range (nr_cpus {})", self.nr_cpus()));
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded caller contract (the checks above hold).
        unsafe { self.per_cpu_ptr_unchecked(ptr, cpu) }
    }

    /// [`Kmem::per_cpu_ptr`] without the checks, for kmem's own handles (the slab's sheaves:
    /// its cache was checked to be this machine's).
    ///
    /// # Safety
    ///
    /// As [`Kmem::per_cpu_ptr`].
    #[inline(always)]
    pub(crate) unsafe fn per_cpu_ptr_unchecked(&self, ptr: PercpuPtr, cpu: usize) -> *mut u8 {
        debug_assert!(!ptr.is_null() && cpu < self.nr_cpus());
        // SAFETY: a live allocation keeps its chunk (and its immutable unit table) alive
        // (caller's contract), and chunk headers are only ever shared once built.
        let chunk = unsafe { &*(ptr.chunk as *const Chunk) };
        (chunk.unit(cpu) + ptr.off as usize) as *mut u8
    }

    /// Whether `ptr` can be this machine's: its chunk header lies in this machine's RAM (the
    /// first chunk's is carved from it, a dynamic chunk's is a block of its page allocator),
    /// which no other machine's does. A range check.
    #[inline]
    fn owns_percpu(&self, ptr: PercpuPtr) -> bool {
        self.virt_to_phys(VirtAddr::new(ptr.chunk)).is_some()
    }

    /// `this_cpu_ptr(ptr)`: [`Kmem::per_cpu_ptr`] for the current CPU. Only meaningful while
    /// the caller cannot migrate (preemption disabled).
    ///
    /// # Safety
    ///
    /// As for [`Kmem::per_cpu_ptr`].
    #[inline]
    pub unsafe fn this_cpu_ptr(&self, ptr: PercpuPtr) -> *mut u8 {
        // SAFETY: the caller's contract; the platform returns a CPU below nr_cpus.
        unsafe { self.per_cpu_ptr(ptr, self.platform().current_cpu().index()) }
    }

    /// `pcpu_nr_pages()`: pages backing every chunk's units, the first chunk included
    /// (`/proc/meminfo`'s `Percpu:`; chunk headers and maps are not counted, as in Linux).
    pub fn pcpu_nr_pages(&self) -> usize {
        self.pcpu().nr_pages.load(Ordering::Relaxed)
    }

    /// A snapshot of the per-CPU allocator. Walks every chunk's maps under the lock and
    /// panics if an invariant does not hold (a test and debugging aid).
    pub fn pcpu_stats(&self) -> PercpuStats {
        let nr_pages = self.pcpu_nr_pages();
        self.pcpu().lock(self.platform()).stats(nr_pages)
    }
}
