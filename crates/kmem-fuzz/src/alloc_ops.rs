//! Target `alloc_ops`: bytes become a sequence of calls on a small hosted machine (2 CPUs,
//! 24 MiB): kmalloc, krealloc, kfree, two slab caches (one with a constructor), pages of
//! orders 0-4, vmalloc and per-CPU areas, moves between the CPUs, allocations from IRQ
//! context, and misuse that kmem must report and survive:
//!
//! - a double free right after the free (every API);
//! - a free of an interior pointer (kmalloc, slab, large kmalloc, vmalloc, a tail page);
//! - a free to the wrong cache (the object goes back to its own cache, reported);
//! - a `kfree`/`vfree` of a stack address, a static, or a free page;
//! - a sleeping allocation in IRQ context;
//! - `kmalloc_array` whose size overflows;
//! - a `krealloc` of a block just freed.
//!
//! Properties: no panic; every legal call makes no report and every misuse at least one;
//! every live block keeps its content (a stamp checked before each free and at the end);
//! after freeing everything `verify()` passes and the free pages are back at the baseline.
//! - a double free with other frees in between (`free(a); free(b); free(a)`), which the slab
//!   layer's free-pointer check catches (issue 12, hole 2).

use std::ptr::NonNull;

use kmem::{Gfp, KmemCache, Order, PageRef, PercpuPtr, ReportKind, SlabFlags, PAGE_SIZE};
use kmem_hosted::{in_irq, pin_current_thread, Machine, MachineBuilder};

/// Byte patterns that steer mutations (opcodes are `byte % 16`).
pub const DICT: &[&[u8]] = &[&[0, 0xff, 0xff], &[12, 0], &[13, 0], &[14, 1], &[15, 2], &[2, 0, 0, 0], &[7, 3]];

static GLOBAL: u64 = 0x5a5a;

const CTOR_BYTE: u8 = 0x6b;

fn ctor(obj: &mut [u8]) {
    obj.fill(CTOR_BYTE);
}

#[derive(Clone, Copy, Debug)]
enum Kind<'m> {
    Kmalloc,
    Slab(usize),
    Pages(PageRef<'m>, u32),
    Vmalloc,
    Percpu(PercpuPtr),
}

#[derive(Clone, Copy, Debug)]
struct Live<'m> {
    kind: Kind<'m>,
    addr: usize,
    len: usize,
    tag: u8,
}

/// Offsets a block's stamp covers: both ends and every 61st byte.
fn stamp_offsets(len: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(61).chain(len.checked_sub(1))
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
}

struct Run<'m> {
    m: &'m Machine,
    caches: [&'m KmemCache; 2],
    live: Vec<Live<'m>>,
    tag: u8,
    reports: u64,
}

impl<'m> Run<'m> {
    fn reports_now(&self) -> u64 {
        ReportKind::ALL.iter().filter(|&&k| k != ReportKind::Info).map(|&k| self.m.report_count(k)).sum()
    }

    /// Asserts that the last call reported (`misuse`) or did not.
    fn expect(&mut self, misuse: bool, what: &str) {
        let now = self.reports_now();
        if misuse {
            assert!(now > self.reports, "misuse not reported: {what}");
        } else {
            assert_eq!(now, self.reports, "a legal call reported ({what}): {:?}", self.m.reports().take());
        }
        self.reports = now;
    }

    fn add(&mut self, kind: Kind<'m>, addr: usize, len: usize) {
        self.tag = self.tag.wrapping_add(1).max(1);
        for off in stamp_offsets(len) {
            self.write(kind, addr, off, self.tag);
        }
        self.live.push(Live { kind, addr, len, tag: self.tag });
    }

    fn cpu_addr(&self, kind: Kind<'m>, addr: usize, cpu: usize) -> usize {
        match kind {
            // SAFETY: a live per-CPU block; `cpu` is a CPU of the machine.
            Kind::Percpu(p) => unsafe { self.m.per_cpu_ptr(p, cpu) as usize },
            _ => addr,
        }
    }

    fn write(&self, kind: Kind<'m>, addr: usize, off: usize, v: u8) {
        for cpu in 0..self.m.nr_cpus() {
            // SAFETY: `off` is inside a live block of ours (every CPU's copy for per-CPU).
            unsafe { ((self.cpu_addr(kind, addr, cpu) + off) as *mut u8).write(v) };
        }
    }

    fn check(&self, b: &Live<'m>) {
        for off in stamp_offsets(b.len) {
            for cpu in 0..self.m.nr_cpus() {
                // SAFETY: as in `write`.
                let v = unsafe { ((self.cpu_addr(b.kind, b.addr, cpu) + off) as *const u8).read() };
                assert_eq!(v, b.tag, "{b:?} changed at offset {off} (CPU {cpu})");
            }
        }
    }

    /// Takes a live block out (checking it), `pick` reduced modulo the live blocks accepted
    /// by `filter`.
    fn take(&mut self, pick: u8, filter: impl Fn(&Live<'m>) -> bool) -> Option<Live<'m>> {
        let idx: Vec<usize> = (0..self.live.len()).filter(|&i| filter(&self.live[i])).collect();
        let i = *idx.get(pick as usize % idx.len().max(1))?;
        let b = self.live.swap_remove(i);
        self.check(&b);
        Some(b)
    }

    /// Frees a block with its own API (restoring a constructed object first).
    fn free(&self, b: &Live<'m>) {
        if matches!(b.kind, Kind::Slab(1)) {
            // SAFETY: the object is ours and live.
            unsafe { std::ptr::write_bytes(b.addr as *mut u8, CTOR_BYTE, b.len) };
        }
        self.free_raw(b);
    }

    /// Calls the free of a block's API on its address.
    fn free_raw(&self, b: &Live<'m>) {
        let m = self.m;
        // The block is ours and live (or, for the misuse ops, deliberately not: kmem must
        // report and ignore the call).
        match b.kind {
            // SAFETY: see above.
            Kind::Kmalloc => unsafe { m.kfree(b.addr as *const u8) },
            // SAFETY: see above.
            Kind::Slab(c) => unsafe { m.kmem_cache_free(self.caches[c], NonNull::new(b.addr as *mut u8).unwrap()) },
            // SAFETY: see above.
            Kind::Pages(p, o) => unsafe { m.__free_pages(p, Order::of(o)) },
            // SAFETY: see above.
            Kind::Vmalloc => unsafe { m.vfree(b.addr as *const u8) },
            // SAFETY: see above.
            Kind::Percpu(p) => unsafe { m.free_percpu(p) },
        }
    }

    fn kmalloc_size(inp: &mut Input<'_>) -> usize {
        let (mode, v) = (inp.byte(), inp.u16() as usize);
        match mode % 4 {
            0 => v % 64,
            1 => v % 8192,
            2 => v << 7, // up to 8 MiB: above 4 MiB must fail
            _ => v,
        }
    }

    fn step(&mut self, op: u8, inp: &mut Input<'_>) {
        let m = self.m;
        let nowarn = Gfp::NOWARN;
        match op % 16 {
            0 => {
                let size = Self::kmalloc_size(inp);
                let g = [Gfp::KERNEL, Gfp::KERNEL | Gfp::ZERO, Gfp::KERNEL | Gfp::DMA, Gfp::ATOMIC]
                    [inp.byte() as usize % 4];
                let r = m.kmalloc(size, g | nowarn);
                self.expect(false, "kmalloc");
                match r {
                    Ok(p) if size > 0 => self.add(Kind::Kmalloc, p.as_ptr() as usize, size),
                    Ok(p) => assert_eq!(p.as_ptr() as usize, kmem::ZERO_SIZE_PTR),
                    Err(e) => assert!(size > 0, "kmalloc(0) failed: {e}"),
                }
            }
            1 => {
                let (pick, size) = (inp.byte(), Self::kmalloc_size(inp));
                let Some(b) = self.take(pick, |b| matches!(b.kind, Kind::Kmalloc)) else { return };
                // SAFETY: a live kmalloc block of ours; only the result is used afterwards.
                let r = unsafe { m.krealloc(b.addr as *mut u8, size, Gfp::KERNEL | nowarn) };
                self.expect(false, "krealloc");
                match r {
                    Ok(_) if size == 0 => {}
                    Ok(p) => {
                        let keep = b.len.min(size);
                        for off in stamp_offsets(b.len).filter(|&o| o < keep) {
                            // SAFETY: inside the new block's first `keep` bytes.
                            assert_eq!(unsafe { p.as_ptr().add(off).read() }, b.tag, "krealloc lost byte {off}");
                        }
                        self.add(Kind::Kmalloc, p.as_ptr() as usize, size);
                    }
                    Err(_) => {
                        self.check(&b);
                        self.live.push(b);
                    }
                }
            }
            2 => {
                let c = inp.byte() as usize % 2;
                let r = m.kmem_cache_alloc(self.caches[c], Gfp::KERNEL | nowarn);
                self.expect(false, "kmem_cache_alloc");
                if let Ok(p) = r {
                    let len = self.caches[c].object_size();
                    if c == 1 {
                        // SAFETY: a fresh object of ours.
                        let obj = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
                        assert!(obj.iter().all(|&x| x == CTOR_BYTE), "object not constructed");
                    }
                    self.add(Kind::Slab(c), p.as_ptr() as usize, len);
                }
            }
            3 => {
                let order = inp.byte() as u32 % 5;
                let g =
                    [Gfp::KERNEL, Gfp::KERNEL | Gfp::DMA, Gfp::ATOMIC, Gfp::HIGHUSER_MOVABLE][inp.byte() as usize % 4];
                let r = m.alloc_pages(g | nowarn, Order::of(order));
                self.expect(false, "alloc_pages");
                if let Ok(p) = r {
                    let a = m.page_address(p).expect("direct-mapped").as_usize();
                    self.add(Kind::Pages(p, order), a, PAGE_SIZE << order);
                }
            }
            4 => {
                let size = 1 + inp.u16() as usize * 4;
                let r = m.__vmalloc(size, Gfp::KERNEL | nowarn);
                self.expect(false, "vmalloc");
                if let Ok(p) = r {
                    self.add(Kind::Vmalloc, p.as_ptr() as usize, size);
                }
            }
            5 => {
                let (size, align) = (1 + inp.byte() as usize * 8, 1usize << (inp.byte() % 13));
                let r = m.__alloc_percpu_gfp(size, align, Gfp::KERNEL | nowarn);
                self.expect(false, "__alloc_percpu");
                if let Ok(p) = r {
                    self.add(Kind::Percpu(p), 0, size);
                }
            }
            6 => {
                let (pick, irq) = (inp.byte(), inp.byte() & 1 == 1);
                let Some(b) = self.take(pick, |_| true) else { return };
                if irq && !matches!(b.kind, Kind::Percpu(_)) {
                    in_irq(|| self.free(&b));
                } else {
                    self.free(&b);
                }
                self.expect(false, "free");
            }
            7 => pin_current_thread(inp.byte() as u32 % 2),
            8 => {
                let size = inp.u16() as usize % 4096 + 1;
                let r = in_irq(|| m.kmalloc(size, Gfp::ATOMIC | nowarn));
                self.expect(false, "kmalloc from IRQ");
                if let Ok(p) = r {
                    self.add(Kind::Kmalloc, p.as_ptr() as usize, size);
                }
            }
            // Misuse from here on.
            9 => {
                // Double free, right after the free.
                let pick = inp.byte();
                let Some(b) = self.take(pick, |_| true) else { return };
                self.free(&b);
                self.expect(false, "free before the double free");
                self.free_raw(&b);
                self.expect(true, &format!("double free of {b:?}"));
            }
            10 => {
                // Interior pointer.
                let (pick, off) = (inp.byte(), inp.u16() as usize);
                let Some(b) = self.take(pick, |b| b.len >= 2 && !matches!(b.kind, Kind::Percpu(_) | Kind::Pages(_, 0)))
                else {
                    return;
                };
                match b.kind {
                    Kind::Pages(p, o) => {
                        let tail = m.pfn_to_page(p.pfn().add(1 + off % ((1 << o) - 1))).unwrap();
                        // SAFETY: deliberate misuse: a page inside a block we own.
                        unsafe { m.__free_pages(tail, Order::ZERO) };
                    }
                    _ => self.free_raw(&Live { addr: b.addr + 1 + off % (b.len - 1), ..b }),
                }
                self.expect(true, &format!("interior free of {b:?}"));
                self.check(&b);
                self.live.push(b);
            }
            11 => {
                // Wrong cache: reported, and freed to the object's own cache.
                let pick = inp.byte();
                // A large block (even one krealloc shrank in place) is no slab object: not a
                // wrong-cache case.
                let slab_backed = |b: &Live<'m>| {
                    // SAFETY: a live kmalloc block of ours.
                    unsafe { m.ksize(b.addr as *const u8) <= kmem::kmalloc::KMALLOC_MAX_CACHE_SIZE }
                };
                let Some(b) = self.take(pick, |b| {
                    matches!(b.kind, Kind::Slab(_)) || (matches!(b.kind, Kind::Kmalloc) && slab_backed(b))
                }) else {
                    return;
                };
                let own = if let Kind::Slab(c) = b.kind { c } else { 2 };
                if own == 1 {
                    // SAFETY: the object is ours; constructed objects go back constructed.
                    unsafe { std::ptr::write_bytes(b.addr as *mut u8, CTOR_BYTE, b.len) };
                }
                let other = self.caches[if own == 0 { 1 } else { 0 }];
                // SAFETY: deliberate misuse: an object of ours, freed to another cache.
                unsafe { m.kmem_cache_free(other, NonNull::new(b.addr as *mut u8).unwrap()) };
                self.expect(true, &format!("free of {b:?} to the wrong cache"));
            }
            12 => {
                // A pointer kmem never handed out.
                let local = 7u64;
                let page = m.alloc_pages(Gfp::KERNEL | nowarn, Order::ZERO).ok();
                let free_page = page.map(|p| {
                    let a = m.page_address(p).unwrap().as_usize();
                    // SAFETY: ours.
                    unsafe { m.__free_pages(p, Order::ZERO) };
                    a
                });
                self.expect(false, "a page to free");
                let which = inp.byte() % 4;
                let addr = match which {
                    0 => &local as *const u64 as usize,
                    1 => &GLOBAL as *const u64 as usize,
                    _ => match free_page {
                        Some(a) => a,
                        None => return,
                    },
                };
                if which == 3 {
                    // SAFETY: deliberate misuse: not a vmalloc address.
                    unsafe { m.vfree(addr as *const u8) };
                } else {
                    // SAFETY: deliberate misuse: not a kmalloc address.
                    unsafe { m.kfree(addr as *const u8) };
                }
                self.expect(true, &format!("free of wild pointer {addr:#x} ({which})"));
            }
            13 => {
                // A sleeping allocation in IRQ context: reported (it is served all the same).
                let size = inp.byte() as usize + 1;
                let r = in_irq(|| m.kmalloc(size, Gfp::KERNEL | nowarn));
                self.expect(true, "GFP_KERNEL kmalloc in IRQ context");
                if let Ok(p) = r {
                    self.add(Kind::Kmalloc, p.as_ptr() as usize, size);
                }
            }
            14 if inp.byte() % 2 == 1 => {
                // krealloc of a block just freed: reported, refused, and nothing handed out
                // twice (the live blocks' stamps would show it).
                let Some(a) = self.take(inp.byte(), |b| matches!(b.kind, Kind::Kmalloc)) else { return };
                self.free(&a);
                self.expect(false, "free before the krealloc");
                let size = 1 + inp.byte() as usize % a.len.max(1);
                // SAFETY: deliberate misuse: `a` was freed; kmem must refuse it unwritten.
                let r = unsafe { m.krealloc(a.addr as *mut u8, size, Gfp::KERNEL | nowarn) };
                assert!(r.is_err(), "krealloc of freed {a:?} returned {r:?}");
                self.expect(true, &format!("krealloc of freed {a:?}"));
            }
            14 => {
                let n = usize::MAX / 2 + inp.byte() as usize;
                let r = m.kmalloc_array(n, 3, Gfp::KERNEL);
                assert!(r.is_err(), "kmalloc_array({n}, 3) must overflow");
                self.expect(false, "kmalloc_array overflow");
            }
            _ => {
                let (p1, p2) = (inp.byte(), inp.byte());
                let Some(a) = self.take(p1, |b| matches!(b.kind, Kind::Kmalloc | Kind::Slab(_))) else { return };
                self.free(&a);
                if let Some(b) = self.take(p2, |b| matches!(b.kind, Kind::Kmalloc | Kind::Slab(_))) {
                    self.free(&b);
                }
                self.expect(false, "frees before the double free");
                self.free_raw(&a);
                self.expect(true, &format!("non-adjacent double free of {a:?}"));
            }
        }
    }
}

/// Free pages, with the per-CPU lists drained, after every cache gave back its empty slabs,
/// lazily freed vmalloc areas were purged and empty per-CPU chunks freed (repeated until it
/// settles: each can free objects of another).
pub(crate) fn settled_free_pages(m: &Machine) -> usize {
    let free = || m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum::<usize>();
    let mut last = usize::MAX;
    while free() != last {
        last = free();
        m.vm_unmap_aliases();
        m.pcpu_free_empty_chunks();
        let mut caches = Vec::new();
        m.for_each_cache(|c| caches.push(c as *const KmemCache as usize));
        for c in caches {
            // SAFETY: nothing destroys a cache while this runs (one thread owns the machine).
            m.kmem_cache_shrink(unsafe { &*(c as *const KmemCache) });
        }
        m.drain_all_pages();
    }
    last
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let m = MachineBuilder::new().ram_mib(24).cpus(2).vmalloc_size(64 << 20).build().expect("boot");
    pin_current_thread(0);
    let a = m.kmem_cache_create("fuzz_a", 32, 0, SlabFlags::NO_MERGE, None).expect("cache");
    let b = m.kmem_cache_create("fuzz_b", 200, 0, SlabFlags::NO_MERGE, Some(ctor)).expect("cache");
    for g in [Gfp::KERNEL, Gfp::KERNEL | Gfp::DMA] {
        // SAFETY: ours.
        unsafe { m.kfree(m.kmalloc(8, g).expect("kmalloc").as_ptr()) };
    }
    // SAFETY: ours.
    unsafe { m.vfree(m.vmalloc(1).expect("vmalloc").as_ptr()) };
    let baseline = settled_free_pages(&m);
    let mut run = Run { m: &m, caches: [&a, &b], live: Vec::new(), tag: 0, reports: 0 };
    run.reports = run.reports_now();
    let mut inp = Input(data);
    while !inp.0.is_empty() {
        let op = inp.byte();
        run.step(op, &mut inp);
    }
    while let Some(b) = run.live.pop() {
        run.check(&b);
        run.free(&b);
    }
    run.expect(false, "freeing everything");
    m.verify().expect("free lists after the run");
    assert_eq!(settled_free_pages(&m), baseline, "every page came back");
    pin_current_thread(0);
}
