//! The kernel's 4-level page tables (Linux: `arch/x86/mm/init_64.c`, `mm/vmalloc.c`'s
//! `vmap_pages_range`, `arch/x86/mm/tlb.c`).
//!
//! One PML4 (`BOOT_PML4`) serves every CPU:
//! - entry 0: the identity map of the first 4 GiB the PVH entry built (2 MiB pages), where
//!   the image, the ACPI tables and the local APIC live;
//! - entry 273: the direct map at [`PAGE_OFFSET`] (`0xffff888000000000`, Linux's
//!   `page_offset_base`), 2 MiB pages over every 2 MiB chunk that holds E820 RAM, NX, tables
//!   from the image's `.bss`;
//! - entry 468: the vmemmap at [`VMEMMAP_START`] (`0xffffea0000000000`), each section's page
//!   descriptors at its slot, tables from the image ([`map_vmemmap_section`]);
//! - entry 402 on: vmalloc at [`VMALLOC_START`] (`0xffffc90000000000`), 4 KiB pages mapped
//!   and unmapped at run time; page-table pages come from kmem ([`kmem::PageTableAlloc`]) and
//!   are installed with a compare-and-swap, so CPUs populating the same entry at once agree
//!   (the loser keeps its page for next time).
//!
//! The page below the boot CPU's stack is unmapped (the 2 MiB identity page there is split
//! into 4 KiB pages): a write past the stack faults. AP stacks are vmalloc areas, which have
//! a guard page after them, as with Linux's `CONFIG_VMAP_STACK`.
//!
//! TLB: an unmap returns kmem's `TlbFlush`; the flush does `invlpg` on this CPU (a CR3 reload
//! above 32 pages) and a shootdown NMI to every other running CPU (`flush_tlb_kernel_range`;
//! `platform.rs` says why an NMI).

use core::sync::atomic::{AtomicU64, Ordering};

use kmem::{DirectMap, MemRegion, PageTableAlloc, Pfn, PhysAddr, RegionKind, VirtAddr, PAGE_SIZE};

use super::entry::{BOOT_PML4, BOOT_STACK_BOTTOM};
use super::percpu;

/// Virtual address of physical 0 in the direct map.
pub const PAGE_OFFSET: usize = 0xffff_8880_0000_0000;
/// First vmalloc address.
pub const VMALLOC_START: usize = 0xffff_c900_0000_0000;
/// One past the last vmalloc address (64 GiB of area).
pub const VMALLOC_END: usize = VMALLOC_START + (64 << 30);
/// The kmap area (pkmap slots, then the per-CPU `kmap_local` slots), with the `highmem` boot
/// option only: PML4 slot 400, below vmalloc.
pub const KMAP_START: usize = 0xffff_c800_0000_0000;
/// Bytes of the kmap area: 8 MiB, at least `kmem::highmem::kmap_area_bytes(MAX_CPUS)`.
pub const KMAP_BYTES: usize = 8 << 20;
const _: () = assert!(KMAP_BYTES >= kmem::highmem::kmap_area_bytes(super::percpu::MAX_CPUS));

const PRESENT: u64 = 1;
const WRITE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Most RAM the direct map covers: one PD (1 GiB) per entry of this pool.
const DM_GIB: usize = 64;

#[repr(C, align(4096))]
struct Table([AtomicU64; 512]);

impl Table {
    const fn new() -> Self {
        Table([const { AtomicU64::new(0) }; 512])
    }
}

static DM_PDPT: Table = Table::new();
static DM_PDS: [Table; DM_GIB] = [const { Table::new() }; DM_GIB];
/// The kmap area's tables, populated once at boot (kmem maps kmap slots without page-table
/// pages, as Linux's `permanent_kmaps_init` prepares them).
static KMAP_PDPT: Table = Table::new();
static KMAP_PD: Table = Table::new();
static KMAP_PTS: [Table; KMAP_BYTES >> 21] = [const { Table::new() }; KMAP_BYTES >> 21];
/// The 4 KiB table that replaces the 2 MiB identity page holding the boot stack's guard.
static STACK_PT: Table = Table::new();

/// The vmemmap (SPARSEMEM_VMEMMAP, Linux's `vmemmap_base`): section `nr`'s page descriptors
/// at `VMEMMAP_START + nr * 1 MiB` (`kmem::boot::MEMMAP_BYTES_PER_SECTION`), 4 KiB pages over
/// the RAM the core carved for them, so that the memory map is one array even with holes in
/// the physical map (kmem's `pfn_to_page` is then one multiply-add). PML4 slot 468.
pub const VMEMMAP_START: usize = 0xffff_ea00_0000_0000;
/// Page tables of the vmemmap: one per two sections (a table maps 2 MiB), from the image:
/// as many as the direct map's [`DM_GIB`] of RAM has sections (1 MiB of tables).
const VMEMMAP_PTS: usize = DM_GIB * (1 << 30) / kmem::boot::PAGES_PER_SECTION_BYTES as usize / 2;
/// Bytes of the vmemmap: a slot for every section the direct map can cover.
pub const VMEMMAP_BYTES: usize = VMEMMAP_PTS << 21;
static VMEMMAP_PDPT: Table = Table::new();
static VMEMMAP_PD: Table = Table::new();
static VMEMMAP_PT: [Table; VMEMMAP_PTS] = [const { Table::new() }; VMEMMAP_PTS];
const _: () = assert!(kmem::boot::MEMMAP_BYTES_PER_SECTION == 1 << 20 && VMEMMAP_BYTES <= 1 << 30);

fn pml4() -> &'static [AtomicU64; 512] {
    // SAFETY: the PML4 is a page of the image's .bss, live for ever; every access to it after
    // boot goes through these atomics.
    unsafe { &*(&raw const BOOT_PML4).cast::<[AtomicU64; 512]>() }
}

/// Builds the direct map over the usable regions of `map` below `cap`; returns its
/// description (limit: the end of the highest usable region below `cap`). RAM above `cap`
/// is HighMem: in no mapping until kmap maps it.
///
/// # Safety
///
/// Once, on the boot CPU, before any other CPU runs.
pub unsafe fn init_direct_map(map: &[MemRegion], cap: u64) -> DirectMap {
    let mut limit = 0u64;
    for r in map.iter().filter(|r| r.kind == RegionKind::Usable && r.size > 0 && r.start.as_u64() < cap) {
        let end = r.end().as_u64().min((DM_GIB as u64) << 30).min(cap);
        limit = limit.max(end);
        let mut chunk = r.start.as_u64() & !((2 << 20) - 1);
        while chunk < end {
            let gib = (chunk >> 30) as usize;
            DM_PDS[gib].0[(chunk >> 21) as usize & 511].store(chunk | PRESENT | WRITE | HUGE | NX, Ordering::Relaxed);
            chunk += 2 << 20;
        }
    }
    for (gib, pd) in DM_PDS.iter().enumerate().take((limit as usize).div_ceil(1 << 30)) {
        DM_PDPT.0[gib].store(pd as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
    }
    pml4()[(PAGE_OFFSET >> 39) & 511].store(&DM_PDPT as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
    reload_cr3();
    DirectMap { base: VirtAddr::new(PAGE_OFFSET), limit: PhysAddr::new(limit) }
}

/// Populates the kmap area's page tables (PDPT, PD, PTs from the image).
///
/// # Safety
///
/// Once, on the boot CPU, before any other CPU runs.
pub unsafe fn init_kmap_tables() {
    for (i, pt) in KMAP_PTS.iter().enumerate() {
        KMAP_PD.0[((KMAP_START >> 21) & 511) + i].store(pt as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
    }
    KMAP_PDPT.0[(KMAP_START >> 30) & 511].store(&KMAP_PD as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
    pml4()[(KMAP_START >> 39) & 511].store(&KMAP_PDPT as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
}

/// Maps section `nr`'s descriptors, 1 MiB of RAM at physical `pa` (page aligned), at its
/// vmemmap slot; returns the slot's address, or `None` past the vmemmap.
///
/// # Safety
///
/// At boot, on the boot CPU (the core carves and maps the memory map before other CPUs
/// run); `pa` is that RAM, used for nothing else.
pub unsafe fn map_vmemmap_section(nr: usize, pa: u64) -> Option<usize> {
    const SECTION: usize = kmem::boot::MEMMAP_BYTES_PER_SECTION;
    if nr >= 2 * VMEMMAP_PTS || pa & (PAGE_SIZE as u64 - 1) != 0 {
        return None;
    }
    let va = VMEMMAP_START + nr * SECTION;
    if pml4()[(VMEMMAP_START >> 39) & 511].load(Ordering::Relaxed) == 0 {
        VMEMMAP_PDPT.0[(VMEMMAP_START >> 30) & 511]
            .store(&VMEMMAP_PD as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
        pml4()[(VMEMMAP_START >> 39) & 511]
            .store(&VMEMMAP_PDPT as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
    }
    let pt = &VMEMMAP_PT[nr / 2];
    VMEMMAP_PD.0[(va >> 21) & 511].store(pt as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed);
    for i in 0..SECTION / PAGE_SIZE {
        pt.0[((va >> 12) & 511) + i].store((pa + (i * PAGE_SIZE) as u64) | PRESENT | WRITE | NX, Ordering::Release);
    }
    // New mappings only: nothing cached to flush.
    Some(va)
}

/// Unmaps the page below the boot stack (splitting its 2 MiB identity page).
///
/// # Safety
///
/// Once, on the boot CPU, before any other CPU runs.
pub unsafe fn guard_boot_stack() -> usize {
    let guard = (&raw const BOOT_STACK_BOTTOM) as usize - PAGE_SIZE;
    let big = guard & !((2 << 20) - 1);
    for i in 0..512 {
        let pa = (big + i * PAGE_SIZE) as u64;
        let v = if pa as usize == guard { 0 } else { pa | PRESENT | WRITE };
        STACK_PT.0[i].store(v, Ordering::Relaxed);
    }
    // The identity map's PD: PML4[0] -> PDPT -> PD[gib] (tables in the image, identity mapped).
    let pdpt = (pml4()[0].load(Ordering::Relaxed) & ADDR_MASK) as *const AtomicU64;
    // SAFETY: the entry's PDPT and PD are the image's boot tables (identity mapped).
    let pd = unsafe { (*pdpt.add(big >> 30)).load(Ordering::Relaxed) } & ADDR_MASK;
    // SAFETY: as above.
    unsafe {
        (*(pd as *const AtomicU64).add((big >> 21) & 511))
            .store(&STACK_PT as *const Table as u64 | PRESENT | WRITE, Ordering::Relaxed)
    };
    reload_cr3();
    guard
}

fn reload_cr3() {
    // SAFETY: reloading CR3 with its own value only flushes non-global TLB entries.
    unsafe { core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
}

fn table_at(dm: DirectMap, pa: u64) -> &'static [AtomicU64; 512] {
    let va = dm.phys_to_virt(PhysAddr::new(pa)).expect("page tables are direct mapped");
    // SAFETY: a page-table page (the image's or one kmem gave us for tables): 512 entries,
    // direct mapped, live for ever (tables are never freed), accessed atomically.
    unsafe { &*va.as_mut_ptr::<[AtomicU64; 512]>() }
}

/// The PTE slot of `va` (vmalloc range), populating tables from `tables` (`None`: look up).
fn pte(dm: DirectMap, va: usize, mut tables: Option<&mut dyn PageTableAlloc>) -> Option<&'static AtomicU64> {
    let mut t: &'static [AtomicU64; 512] = pml4();
    for shift in [39, 30, 21] {
        let e = &t[(va >> shift) & 511];
        let mut v = e.load(Ordering::Acquire);
        if v & PRESENT == 0 {
            let tables = tables.as_mut()?;
            let spare = &percpu::this_cpu().spare_table;
            let pfn = match spare.swap(0, Ordering::Relaxed) {
                0 => tables.alloc_table()?.as_usize(),
                p => p,
            };
            let new = (Pfn::new(pfn).phys().as_u64()) | PRESENT | WRITE;
            match e.compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => v = new,
                Err(cur) => {
                    spare.store(pfn, Ordering::Relaxed);
                    v = cur;
                }
            }
        }
        t = table_at(dm, v & ADDR_MASK);
    }
    Some(&t[(va >> 12) & 511])
}

/// Maps `n` frames from `pfn` at `va` (`vmap_pages_range`).
pub fn map(dm: DirectMap, va: usize, pfn: Pfn, n: usize, write: bool, tables: &mut dyn PageTableAlloc) -> bool {
    for i in 0..n {
        let Some(e) = pte(dm, va + i * PAGE_SIZE, Some(&mut *tables)) else { return false };
        let flags = PRESENT | NX | if write { WRITE } else { 0 };
        e.store(Pfn::new(pfn.as_usize() + i).phys().as_u64() | flags, Ordering::Release);
    }
    true
}

/// Clears the PTEs of `n` pages at `va` (`vunmap_range_noflush`).
pub fn unmap(dm: DirectMap, va: usize, n: usize) {
    for i in 0..n {
        if let Some(e) = pte(dm, va + i * PAGE_SIZE, None) {
            e.store(0, Ordering::Release);
        }
    }
}

/// The frame mapped at `va`, if any (a walk, as `vmalloc_to_page`).
pub fn translate(dm: DirectMap, va: usize) -> Option<Pfn> {
    let v = pte(dm, va, None)?.load(Ordering::Acquire);
    (v & PRESENT != 0).then(|| Pfn::new(((v & ADDR_MASK) >> 12) as usize))
}

/// Flushes `[start, end)` on this CPU.
pub fn flush_local(start: usize, end: usize) {
    if (end - start) / PAGE_SIZE > 32 {
        reload_cr3();
    } else {
        let mut a = start;
        while a < end {
            super::arch::invlpg(a);
            a += PAGE_SIZE;
        }
    }
}

/// Flushes this CPU's whole TLB (what a shootdown does).
pub fn flush_all_local() {
    reload_cr3();
}

/// True if `va` is unmapped and the page below it mapped: the guard page after a vmalloc
/// area (or a vmap stack, which grows down into the guard of the area below... and upward
/// overflows into its own trailing guard).
pub fn is_guard_page(va: usize) -> bool {
    let Some(dm) = super::direct_map_opt() else { return false };
    let page = va & !(PAGE_SIZE - 1);
    translate(dm, page).is_none() && page >= VMALLOC_START + PAGE_SIZE && translate(dm, page - PAGE_SIZE).is_some()
}
