//! The kernel proper (built for `x86_64-unknown-none`): boot CPU and AP entry points, the
//! machine, the timer interrupt's allocations, panic.
//!
//! Boot order (`kmain`): serial console; PVH start info (E820, command line, RSDP); per-CPU
//! area and GS base; IDT and the TSS (double-fault stack); TSC calibration; ACPI MADT (CPUs)
//! and SRAT (nodes, `crate::numa`); direct map (and the kmap area's tables with `highmem`);
//! the boot stack's guard page; `Kmem::boot` on the E820 map with memblock reserving the
//! low 64 KiB (BIOS data, PVH start info, the AP trampoline page) and the kernel image;
//! local APIC and timer, `sti`; APs started by INIT-SIPI-SIPI on vmap stacks; the tests
//! (`tests/`); the `/proc` files; `isa-debug-exit` with the result.
//!
//! Command-line options (`-append`): `highmem` (RAM above 4 GiB is HighMem, reached through
//! kmap); `slub_debug=...` (Linux's, handed to kmem's slab boot configuration);
//! `stack_overflow` (instead of the tests, CPU 1 overflows its stack: the double-fault report
//! must end the run).

pub mod acpi;
pub mod apic;
pub mod arch;
pub mod entry;
pub mod idt;
pub mod paging;
pub mod percpu;
pub mod platform;
pub mod pvh;
#[macro_use]
pub mod serial;
mod smp;
mod tests;

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kmem::{BootConfig, DirectMap, Gfp, Kmem, MemRegion, Order, PhysAddr, RegionKind, VirtAddr, ZoneLayout};

use crate::numa;

use platform::BootPlatform;

/// The machine, once booted.
struct Machine {
    kmem: UnsafeCell<MaybeUninit<Kmem<BootPlatform>>>,
    ready: AtomicBool,
}

// SAFETY: written once by the boot CPU before `ready` is set (Release); read only after
// `ready` is seen (Acquire); `Kmem` itself is shared between CPUs by design.
unsafe impl Sync for Machine {}

static MACHINE: Machine = Machine { kmem: UnsafeCell::new(MaybeUninit::uninit()), ready: AtomicBool::new(false) };
static DM_LIMIT: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts allocate while this is set.
pub static IRQ_ALLOCS_ON: AtomicBool = AtomicBool::new(false);
/// The `ap_late` boot option, implied by `stack_overflow`: each AP waits 100 ms after it
/// marks itself online, so the boot CPU publishes the first concurrent test while the APs
/// are still starting; an AP that missed that test would hang the boot (scripts/boot.sh's
/// `stack-overflow` configuration, which publishes its test right after start-up, is the
/// regression test of that race).
pub static AP_LATE: AtomicBool = AtomicBool::new(false);

/// The machine, if booted.
pub fn machine_opt() -> Option<&'static Kmem<BootPlatform>> {
    // SAFETY: initialised before `ready` was set (see `Machine`).
    MACHINE.ready.load(Ordering::Acquire).then(|| unsafe { (*MACHINE.kmem.get()).assume_init_ref() })
}

/// The direct map, once built.
pub fn direct_map_opt() -> Option<DirectMap> {
    let limit = DM_LIMIT.load(Ordering::Acquire);
    (limit != 0).then(|| DirectMap { base: VirtAddr::new(paging::PAGE_OFFSET), limit: PhysAddr::new(limit) })
}

/// Timer period in APIC-timer ticks (bus clock / 16): about 10 ms under QEMU.
pub const TIMER_COUNT: u32 = 625_000;

/// The boot CPU's Rust entry, from `bsp_long_entry` with the PVH start info's address.
#[unsafe(no_mangle)]
extern "C" fn kmain(start_info: u64) -> ! {
    serial::init();
    kprintln!("kmem-boot: x86-64 PVH entry, start info at {start_info:#x}");
    // SAFETY: the loader's start info; the entry identity-mapped the first 4 GiB.
    let info = match unsafe { pvh::read(start_info) } {
        Ok(i) => i,
        Err(e) => {
            kprintln!("kmem-boot: bad PVH start info: {e}");
            arch::qemu_exit(1);
        }
    };
    // SAFETY: once, on the boot CPU, before anything reads gs:.
    unsafe { percpu::init_this_cpu(0, apic::id()) };
    idt::init();
    idt::load();
    // SAFETY: once, on the boot CPU (CPU 0).
    unsafe { idt::load_tss(0) };
    apic::calibrate_tsc();
    for r in info.regions() {
        kprintln!(
            "BIOS-e820: [mem {:#018x}-{:#018x}] {}",
            r.start.as_u64(),
            r.end().as_u64() - 1,
            match r.kind {
                RegionKind::Usable => "usable",
                RegionKind::Reserved => "reserved",
            }
        );
    }
    kprintln!("Command line: {}", info.cmdline);
    kprintln!("tsc: Detected {} MHz processor", apic::TSC_PER_US.load(Ordering::Relaxed));

    let mut acpi = acpi::read_tables(info.rsdp, apic::id());
    // The boot CPU is CPU 0.
    if let Some(i) = acpi.apic_ids[..acpi.nr_cpus].iter().position(|&a| a == apic::id()) {
        acpi.apic_ids.swap(0, i);
        acpi.cpu_pxm.swap(0, i);
    }
    let srat = &acpi.mem[..acpi.nr_mem];
    let nodes = numa::NodeMap::new(srat);
    let nr_nodes = nodes.nr_nodes();
    let mut regions = [MemRegion::reserved(0, 0); 96];
    let nr_regions = numa::split_regions(info.regions(), srat, &nodes, &mut regions);
    let mut cpu_to_node = [0u8; percpu::MAX_CPUS];
    for (node, &pxm) in cpu_to_node.iter_mut().zip(&acpi.cpu_pxm).take(acpi.nr_cpus) {
        *node = nodes.node(pxm);
    }
    kprintln!("smpboot: {} CPUs (MADT), {} NUMA node(s) (SRAT)", acpi.nr_cpus, nr_nodes);

    // `highmem` on the command line: RAM above 4 GiB is HighMem (outside the direct map,
    // reached through kmap), so the page-table path of kmap runs on this machine.
    let highmem = info.cmdline.split_ascii_whitespace().any(|w| w == "highmem");
    let layout = if highmem {
        ZoneLayout { highmem_start: Some(PhysAddr::new(4 << 30)), ..ZoneLayout::X86_64 }
    } else {
        ZoneLayout::X86_64
    };
    // SAFETY: once, on the boot CPU, no other CPU runs.
    let dm = unsafe { paging::init_direct_map(&regions[..nr_regions], if highmem { 4 << 30 } else { u64::MAX }) };
    if highmem {
        // SAFETY: as above.
        unsafe { paging::init_kmap_tables() };
    }
    DM_LIMIT.store(dm.limit.as_u64(), Ordering::Release);
    // SAFETY: as above.
    let guard = unsafe { paging::guard_boot_stack() };
    idt::BOOT_STACK_GUARD.store(guard, Ordering::Relaxed);

    let platform = BootPlatform::new(dm, acpi.nr_cpus, highmem);
    let mut cfg = BootConfig::new(&regions[..nr_regions], layout);
    cfg.nr_nodes = nr_nodes;
    // `slub_debug=<flags>[,<caches>]`, as Linux's boot option (kmem parses it).
    cfg.slab.slub_debug = info.cmdline.split_ascii_whitespace().find_map(|w| w.strip_prefix("slub_debug="));
    cfg.cpu_to_node = Some(&cpu_to_node[..acpi.nr_cpus]);
    // KFENCE's pool in the vmalloc range, its faults handed over by the page-fault handler
    // (`idt.rs`). Enabled with an hour's interval, so that the tests' objects land in the
    // pool once at most by chance (the gate's first opening goes early in boot); the KFENCE
    // test forces its allocations (`kfence_force_next`). Interval 0 would disable it.
    cfg.kfence = Some(kmem::kfence::KfenceConfig { sample_interval_ms: 3_600_000, num_objects: 15 });
    let image = (&raw const entry::__kernel_start) as u64;
    let image_end = (&raw const entry::__kernel_end) as u64;
    // SAFETY: every usable E820 byte below the direct-map limit is mapped read-write at
    // PAGE_OFFSET + phys and used by nothing but kmem, once the hook has reserved the low
    // 64 KiB (BIOS data, the PVH start info, the AP trampoline) and the kernel image.
    let booted = unsafe {
        Kmem::boot(platform, &cfg, |mb| {
            mb.reserve(PhysAddr::new(0), 64 << 10)?;
            mb.reserve(PhysAddr::new(image), image_end - image)
        })
    };
    let m = match booted {
        Ok(m) => m,
        Err(e) => {
            kprintln!("kmem-boot: Kmem::boot failed: {e:?}");
            arch::qemu_exit(1);
        }
    };
    // SAFETY: written once, before `ready`.
    unsafe { (*MACHINE.kmem.get()).write(m) };
    MACHINE.ready.store(true, Ordering::Release);
    let m = machine_opt().expect("just booted");
    kprintln!("kmem: booted, {} pages free", m.zones().map(|z| z.free_pages()).sum::<usize>());

    apic::init_this_cpu();
    percpu::this_cpu().stack_bottom.store((&raw const entry::BOOT_STACK_BOTTOM) as usize, Ordering::Relaxed);
    percpu::this_cpu().online.store(true, Ordering::Release);
    apic::start_timer(TIMER_COUNT);
    arch::sti();

    AP_LATE.store(
        info.cmdline.split_ascii_whitespace().any(|w| w == "ap_late" || w == "stack_overflow"),
        Ordering::Relaxed,
    );
    smp::start_aps(m, &acpi);
    if info.cmdline.split_ascii_whitespace().any(|w| w == "stack_overflow") {
        tests::stack_overflow(m);
        arch::qemu_exit(1);
    }
    let (passed, failed) = tests::run(m);
    kprintln!("{passed} passed, {failed} failed");
    IRQ_ALLOCS_ON.store(false, Ordering::Release);
    tests::print_proc(m);
    arch::qemu_exit(if failed == 0 { 0 } else { 1 });
}

/// An AP's Rust entry (from the trampoline), on a vmap stack.
#[unsafe(no_mangle)]
extern "C" fn ap_main(cpu: u64) -> ! {
    smp::ap_main(cpu as usize)
}

/// The timer interrupt (hard-IRQ context, interrupts off): counts the tick and, while the
/// tests ask for it, allocates and frees a small object and a page with `GFP_ATOMIC`.
pub fn timer_interrupt() {
    let me = percpu::this_cpu();
    me.ticks.fetch_add(1, Ordering::Relaxed);
    if !IRQ_ALLOCS_ON.load(Ordering::Acquire) {
        return;
    }
    let Some(m) = machine_opt() else { return };
    let ok_ctx = m.platform_in_irq_context();
    let size = 16 + (me.ticks.load(Ordering::Relaxed) as usize % 8) * 40;
    match m.kmalloc(size, Gfp::ATOMIC) {
        Ok(p) => {
            // SAFETY: `size` bytes of a fresh object, ours.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0x3c, size) };
            // SAFETY: from kmalloc, freed once.
            unsafe { m.kfree(p.as_ptr()) };
            me.irq_allocs.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            me.irq_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    match m.alloc_pages(Gfp::ATOMIC, Order::ZERO) {
        // SAFETY: ours, order 0, unused.
        Ok(page) => unsafe { m.__free_pages(page, Order::ZERO) },
        Err(_) => {
            me.irq_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    // With HighMem: a kmap_local_page nested on whatever the interrupted code had mapped.
    if let Ok(page) = m.alloc_pages(Gfp::ATOMIC | Gfp::HIGHMEM, Order::ZERO) {
        if let Ok(va) = m.kmap_local_page(page) {
            // SAFETY: the page is ours, mapped at `va` until kunmap_local.
            unsafe { va.as_mut_ptr::<u64>().write_volatile(me.ticks.load(Ordering::Relaxed)) };
            m.kunmap_local(va);
        } else {
            me.irq_errors.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: ours, order 0, unmapped.
        unsafe { m.__free_pages(page, Order::ZERO) };
    }
    if !ok_ctx {
        me.irq_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Context checks the timer handler makes.
trait IrqContext {
    fn platform_in_irq_context(&self) -> bool;
}

impl IrqContext for Kmem<BootPlatform> {
    fn platform_in_irq_context(&self) -> bool {
        use kmem::Platform;
        let p = self.platform();
        p.in_interrupt() && p.irqs_disabled() && p.atomic_context()
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    serial::emergency(format_args!("Kernel panic - not syncing: {info}\n"));
    arch::qemu_exit(2)
}
