//! Tests that run on every CPU at once, and the per-CPU and interrupt checks.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kmem::{Gfp, Kmem, Order, PerCpuBox, PAGE_SIZE};

use super::{check, on_every_cpu, TestResult};
use crate::kernel::platform::BootPlatform;
use crate::kernel::{arch, percpu};

fn stress_one(m: &'static Kmem<BootPlatform>, cpu: usize, _shared: usize) -> TestResult {
    let mut seed = 0x9e37_79b9u32.wrapping_mul(cpu as u32 + 1);
    let mut objs: [Option<(NonNull<u8>, usize)>; 64] = [None; 64];
    let tag = cpu as u8 + 1;
    for round in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let i = seed as usize % objs.len();
        if let Some((p, size)) = objs[i].take() {
            // SAFETY: ours, `size` bytes written with `tag`.
            let ok = unsafe { core::slice::from_raw_parts(p.as_ptr(), size) }.iter().all(|&b| b == tag);
            // SAFETY: from kmalloc, freed once.
            unsafe { m.kfree(p.as_ptr()) };
            check(ok, "another CPU wrote into this CPU's object")?;
        } else {
            let size = 8 + (seed as usize >> 8) % 2000;
            let p = m.kmalloc(size, Gfp::KERNEL).map_err(|_| "kmalloc failed")?;
            // SAFETY: `size` bytes, ours.
            unsafe { core::ptr::write_bytes(p.as_ptr(), tag, size) };
            objs[i] = Some((p, size));
        }
        if round % 16 == 0 {
            let order = Order::of(seed % 4);
            let page = m.alloc_pages(Gfp::KERNEL, order).map_err(|_| "alloc_pages failed")?;
            // SAFETY: ours, this order.
            unsafe { m.__free_pages(page, order) };
        }
        if round % 200 == 0 {
            let v = m.vmalloc(3 * PAGE_SIZE).map_err(|_| "vmalloc failed")?;
            // SAFETY: 3 pages of a fresh area, ours.
            unsafe { core::ptr::write_bytes(v.as_ptr(), tag, 3 * PAGE_SIZE) };
            // SAFETY: from vmalloc, freed once.
            unsafe { m.vfree(v.as_ptr()) };
        }
    }
    for (p, _) in objs.iter().flatten() {
        // SAFETY: from kmalloc, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    Ok(())
}

/// Every online CPU runs 3000 rounds of kmalloc/kfree (objects checked for cross-CPU
/// writes), pages of orders 0-3 and vmalloc areas, at once.
pub fn stress(m: &'static Kmem<BootPlatform>) -> TestResult {
    let (cpus, fails) = on_every_cpu(m, stress_one, 0);
    kprintln!("    {cpus} CPU(s)");
    check(fails == 0, "a CPU failed")
}

fn guard_one(_m: &'static Kmem<BootPlatform>, cpu: usize, _shared: usize) -> TestResult {
    if cpu == 0 {
        return Ok(());
    }
    let bottom = percpu::this_cpu().stack_bottom.load(Ordering::Relaxed);
    check(bottom != 0, "no stack bottom")?;
    super::vm::expect_fault(bottom - 1)
}

/// Each AP writes just below its vmap stack: a page fault on that CPU, fixed up.
pub fn ap_stack_guards(m: &'static Kmem<BootPlatform>) -> TestResult {
    let (cpus, fails) = on_every_cpu(m, guard_one, 0);
    check(cpus == m.nr_cpus(), "not every CPU of the MADT is running")?;
    check(fails == 0, "an AP's stack guard did not fault")
}

fn percpu_one(_m: &'static Kmem<BootPlatform>, cpu: usize, shared: usize) -> TestResult {
    // SAFETY: the boot CPU's box, alive until every CPU is done (on_every_cpu waits).
    let bx = unsafe { &*(shared as *const PerCpuBox<'static, BootPlatform, AtomicU64>) };
    for _ in 0..1000 + cpu {
        bx.this_cpu().fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `alloc_percpu`: each CPU adds 1000 + its number to its own slot; every slot holds exactly
/// its CPU's count.
pub fn percpu_every_cpu(m: &'static Kmem<BootPlatform>) -> TestResult {
    let bx = m.alloc_percpu_with(|_| AtomicU64::new(0)).map_err(|_| "alloc_percpu failed")?;
    let (cpus, fails) = on_every_cpu(m, percpu_one, &bx as *const _ as usize);
    check(fails == 0, "a CPU failed")?;
    for cpu in 0..cpus {
        check(bx.per_cpu(cpu).load(Ordering::Relaxed) == 1000 + cpu as u64, "a slot holds another CPU's count")?;
    }
    check(cpus == percpu::online_count(), "not every CPU ran")
}

/// `drain_all_pages()` runs on each CPU through a call-function IPI: afterwards no CPU's
/// per-CPU page lists hold pages (the timer's allocations are paused meanwhile).
pub fn drain_all(m: &'static Kmem<BootPlatform>) -> TestResult {
    crate::kernel::IRQ_ALLOCS_ON.store(false, Ordering::Release);
    m.drain_all_pages();
    let left: usize = m.zones().map(|z| z.pcp_pages()).sum();
    crate::kernel::IRQ_ALLOCS_ON.store(true, Ordering::Release);
    check(left == 0, "pages left on per-CPU lists")
}

/// Every online CPU's timer interrupt has allocated (kmalloc and a page, `GFP_ATOMIC`) in
/// hard-IRQ context (`in_interrupt()`, interrupts off) without a failure.
pub fn timer_allocs(_m: &'static Kmem<BootPlatform>) -> TestResult {
    let cpus = percpu::online_count();
    let deadline = arch::rdtsc() + 3_000_000 * crate::kernel::apic::TSC_PER_US.load(Ordering::Relaxed);
    while (0..cpus).any(|c| percpu::cpu(c).irq_allocs.load(Ordering::Relaxed) < 5) && arch::rdtsc() < deadline {
        core::hint::spin_loop();
    }
    let mut errors = 0;
    for c in 0..cpus {
        let a = percpu::cpu(c);
        let (ticks, allocs, errs) = (
            a.ticks.load(Ordering::Relaxed),
            a.irq_allocs.load(Ordering::Relaxed),
            a.irq_errors.load(Ordering::Relaxed),
        );
        kprintln!("    CPU {c}: {ticks} ticks, {allocs} allocations in IRQ context, {errs} errors");
        check(allocs >= 5, "a CPU's timer made too few allocations")?;
        errors += errs;
    }
    check(errors == 0, "an allocation in IRQ context failed or ran in the wrong context")
}

const HIGH_PAGES: usize = 600;

/// CPUs done with their kmap rounds: none frees its pages before all are done, so no CPU
/// gets another's freed pages (still in the page-address hash) and every page needs a slot.
static KMAP_DONE: AtomicUsize = AtomicUsize::new(0);

fn kmap_one(m: &'static Kmem<BootPlatform>, cpu: usize, _shared: usize) -> TestResult {
    let list = m.kmalloc(HIGH_PAGES * size_of::<usize>(), Gfp::KERNEL).map_err(|_| "kmalloc failed")?;
    // SAFETY: a fresh kmalloc object of HIGH_PAGES words, ours until kfree below.
    let pfns = unsafe { core::slice::from_raw_parts_mut(list.as_ptr().cast::<usize>(), HIGH_PAGES) };
    pfns.fill(0);
    let tag = |i: usize| ((cpu as u64) << 32) | i as u64;
    let r = (|| {
        for (i, slot) in pfns.iter_mut().enumerate() {
            let page = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).map_err(|_| "GFP_HIGHUSER allocation failed")?;
            *slot = page.pfn().as_usize();
            let va = m.kmap_local_page(page).map_err(|_| "kmap_local_page failed")?;
            // SAFETY: the page is ours, mapped at `va` until kunmap_local.
            unsafe {
                va.as_mut_ptr::<u64>().write_volatile(tag(i));
                va.as_mut_ptr::<u64>().add(511).write_volatile(!tag(i));
            }
            m.kunmap_local(va);
        }
        for _ in 0..3 {
            for (i, &pfn) in pfns.iter().enumerate() {
                let page = m.pfn_to_page(kmem::Pfn::new(pfn)).ok_or("a pfn without a page")?;
                let va = m.kmap(page).map_err(|_| "kmap failed")?;
                // SAFETY: the page is ours, kmapped at `va` until kunmap.
                let (a, b) = unsafe {
                    (va.as_mut_ptr::<u64>().read_volatile(), va.as_mut_ptr::<u64>().add(511).read_volatile())
                };
                m.kunmap(page);
                check(a == tag(i) && b == !tag(i), "a kmap address showed another page (stale TLB entry?)")?;
            }
        }
        Ok(())
    })();
    KMAP_DONE.fetch_add(1, Ordering::AcqRel);
    while KMAP_DONE.load(Ordering::Acquire) < percpu::online_count() {
        core::hint::spin_loop();
    }
    for &pfn in pfns.iter().filter(|&&p| p != 0) {
        if let Some(page) = m.pfn_to_page(kmem::Pfn::new(pfn)) {
            // SAFETY: allocated above, order 0, unmapped.
            unsafe { m.__free_pages(page, Order::ZERO) };
        }
    }
    // SAFETY: from kmalloc, freed once.
    unsafe { m.kfree(list.as_ptr()) };
    r
}

/// With HighMem: every CPU kmaps 600 pages of its own, three times over, checking each page's
/// contents through the kmap address. More distinct pages than pkmap slots (1024) make the
/// slot ring wrap under concurrent use, so slots are unmapped, flushed (shootdown NMIs,
/// counted and printed) and reused while other CPUs map. A page showing another page's bytes
/// fails the test. It cannot prove the shootdowns necessary: QEMU's TCG evicts its software
/// TLB entries quickly, and a run with shootdowns switched off passed too. Without HighMem
/// (x86-64's default) there is nothing to test.
pub fn kmap_every_cpu(m: &'static Kmem<BootPlatform>) -> TestResult {
    if !m.zones().any(|z| z.zone_type() == kmem::ZoneType::HighMem && z.managed_pages() > 0) {
        kprintln!("    no HighMem (boot option `highmem`): nothing to map");
        return Ok(());
    }
    let flushes = crate::kernel::platform::SHOOTDOWNS.load(Ordering::Relaxed);
    KMAP_DONE.store(0, Ordering::Relaxed);
    let (cpus, fails) = on_every_cpu(m, kmap_one, 0);
    let shot = crate::kernel::platform::SHOOTDOWNS.load(Ordering::Relaxed) - flushes;
    kprintln!("    {cpus} CPU(s) x {HIGH_PAGES} HighMem pages, {shot} TLB shootdowns meanwhile");
    check(fails == 0, "a CPU failed")
}
