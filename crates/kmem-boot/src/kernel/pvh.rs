//! The PVH boot protocol's start info (`xen/include/public/arch-x86/hvm/start_info.h`):
//! where the loader put the memory map (E820 types), the command line and the ACPI RSDP.

use kmem::MemRegion;

/// `XEN_HVM_START_MAGIC_VALUE`.
const MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Most E820 entries kept.
pub const MAX_E820: usize = 64;

/// What the loader told the kernel.
#[derive(Debug)]
pub struct BootInfo {
    /// The E820 map: type 1 is usable RAM, everything else reserved.
    pub e820: [MemRegion; MAX_E820],
    /// Entries of `e820` in use.
    pub nr_e820: usize,
    /// ACPI RSDP, 0 if none.
    pub rsdp: u64,
    /// The command line (`-append`), empty if none.
    pub cmdline: &'static str,
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "magic {m:#x}, not XEN_HVM_START_MAGIC_VALUE"),
            Self::NoMemmap => write!(f, "start info version 0: no memory map"),
        }
    }
}

impl BootInfo {
    /// The memory map.
    pub fn regions(&self) -> &[MemRegion] {
        &self.e820[..self.nr_e820]
    }
}

/// Why the start info could not be read.
#[derive(Clone, Copy, Debug)]
pub enum PvhError {
    /// Not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// Version 0 has no memory map.
    NoMemmap,
}

/// Reads the start info at physical `pa` (identity mapped).
///
/// # Safety
///
/// `pa` is what the PVH loader passed in `%ebx`, and the first 4 GiB are identity mapped.
pub unsafe fn read(pa: u64) -> Result<BootInfo, PvhError> {
    // SAFETY: the loader's start info, identity mapped (caller).
    let si = unsafe { (pa as *const StartInfo).read_unaligned() };
    if si.magic != MAGIC {
        return Err(PvhError::BadMagic(si.magic));
    }
    if si.version < 1 || si.memmap_paddr == 0 {
        return Err(PvhError::NoMemmap);
    }
    let mut info =
        BootInfo { e820: [MemRegion::reserved(0, 0); MAX_E820], nr_e820: 0, rsdp: si.rsdp_paddr, cmdline: "" };
    for i in 0..(si.memmap_entries as usize).min(MAX_E820) {
        // SAFETY: entry `i` of the loader's table (identity mapped, caller).
        let e = unsafe { (si.memmap_paddr as *const MemmapEntry).add(i).read_unaligned() };
        info.e820[i] =
            if e.kind == 1 { MemRegion::usable(e.addr, e.size) } else { MemRegion::reserved(e.addr, e.size) };
        info.nr_e820 += 1;
    }
    if si.cmdline_paddr != 0 {
        let p = si.cmdline_paddr as *const u8;
        let mut n = 0;
        // SAFETY: a NUL-terminated string the loader wrote, identity mapped (caller); at most
        // 4 KiB is read.
        while n < 4096 && unsafe { p.add(n).read() } != 0 {
            n += 1;
        }
        // SAFETY: the `n` bytes just scanned; the loader's memory is never reused (memblock
        // keeps it reserved below 1 MiB or the kernel reserves it).
        let bytes = unsafe { core::slice::from_raw_parts(p, n) };
        info.cmdline = core::str::from_utf8(bytes).unwrap_or("");
    }
    Ok(info)
}
